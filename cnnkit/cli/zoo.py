"""Zoo models built for a command line's ``--input-shape`` (summary, gradcheck)."""

from __future__ import annotations

from cnnkit import models
from cnnkit.cli.errors import UsageError


def build_model(name: str, input_shape: tuple[int, int, int], **options):
    """Zoo model ``name`` for inputs of ``input_shape``, refused (naming --input-shape) when its
    layers cannot take that shape; the shapes are traced without computing (models.trace)."""
    channels, height, width = input_shape
    if models.takes_option(name, "input_size"):
        options.setdefault("input_size", [height, width])
    shown = ",".join(str(v) for v in input_shape)
    try:
        model = models.get(name, in_channels=channels, **options)
        models.trace(model, input_shape)
    except (ValueError, TypeError) as error:
        raise UsageError(f"argument --input-shape: {name} cannot take {shown}: {error}") from None
    return model
