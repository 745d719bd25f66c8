"""Checkpoints: arrays in one .npz (loaded with allow_pickle=False) and the rest as embedded JSON.

A checkpoint file holds the model config (enough to rebuild it with ``cnnkit.models.get``), its
state_dict, and any nested training state (optimizer, scheduler, RNG states, epoch, history).
Nested state is split into JSON (numbers, strings, lists, dicts) and arrays (stored under
"state/<path>" keys). Files are written atomically: a temporary file in the same directory,
flushed to disk, then renamed over the target, so a crash never leaves a half-written checkpoint.

:func:`load_weights` / :func:`save_weights` read and write bare weights (.safetensors or .npz)
in cnnkit's, timm's or Keras' layout; the conversions live in :mod:`cnnkit.weights`.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnkit import models
from cnnkit.nn.module import Module
from cnnkit.weights import (
    DAMAGED_NPZ,
    LAYOUTS,
    WeightsError,
    convert_state,
    detect_layout,
    export_state,
    flavor_mismatch,
    read_arrays,
    read_names,
    to_bytes,
)

FORMAT_VERSION = 1
META_KEY = "__meta__"
MODEL_PREFIX = "model/"
STATE_PREFIX = "state/"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model it is loaded into."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    config: dict
    model_state: dict[str, np.ndarray]
    training_state: dict = field(default_factory=dict)


def _split_arrays(value, path: str, arrays: dict[str, np.ndarray]):
    """Replace every ndarray inside ``value`` by a reference, collecting the arrays."""
    if isinstance(value, np.ndarray):
        key = STATE_PREFIX + path
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _split_arrays(v, f"{path}/{k}", arrays) for k, v in value.items()}
        return {
            "__items__": [[k, _split_arrays(v, f"{path}/{k}", arrays)] for k, v in value.items()]
        }
    if isinstance(value, (list, tuple)):
        return [_split_arrays(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join_arrays(value, archive):
    """Inverse of :func:`_split_arrays`."""
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return archive[value["__array__"]]
        if set(value) == {"__items__"}:
            return {k: _join_arrays(v, archive) for k, v in value["__items__"]}
        return {k: _join_arrays(v, archive) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_arrays(v, archive) for v in value]
    return value


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    training_state: dict | None = None,
    config: dict | None = None,
) -> Path:
    """Write model config, weights and training state to ``path`` (.npz) atomically."""
    config = dict(getattr(model, "config", {}) if config is None else config)
    arrays = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    state = _split_arrays(training_state or {}, "", arrays)
    meta = {"format_version": FORMAT_VERSION, "config": config, "training_state": state}
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint` (no pickle is ever loaded).

    A truncated, bit-flipped (the zip's CRC-32 of every array is checked) or otherwise damaged
    file raises a one-line CheckpointError; nothing is half-loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except DAMAGED_NPZ as error:
        raise CheckpointError(
            f"checkpoint {path} is not a readable .npz file ({type(error).__name__}: {error})"
        ) from None
    if META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} has no {META_KEY} entry; not a cnnkit checkpoint")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata ({error})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise CheckpointError(
            f"checkpoint {path} has format version {found!r}, expected {FORMAT_VERSION}"
        )
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("training_state"), dict):
        raise CheckpointError(
            f"checkpoint {path} has corrupt metadata (expected a config and a training_state "
            "object)"
        )
    try:
        training_state = _join_arrays(meta["training_state"], arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} has corrupt metadata (training state refers to a missing array "
            f"{error})"
        ) from None
    model_state = {
        k[len(MODEL_PREFIX) :]: v for k, v in arrays.items() if k.startswith(MODEL_PREFIX)
    }
    return Checkpoint(meta["config"], model_state, training_state)


def load_model_state(model: Module, checkpoint: Checkpoint, source: str = "checkpoint") -> None:
    """Load the checkpoint's weights into ``model``, failing clearly on another architecture."""
    expected = getattr(model, "config", {}).get("name")
    found = checkpoint.config.get("name")
    if expected and found and expected != found:
        raise CheckpointError(f"{source} holds model {found!r}, but the model is {expected!r}")
    try:
        model.load_state_dict(checkpoint.model_state)
    except ValueError as error:
        raise CheckpointError(f"{source} does not fit the model: {error}") from None


def save(model: Module, path: str | os.PathLike) -> Path:
    """Save a zoo model's config and weights (no training state) to ``path`` atomically."""
    return save_checkpoint(path, model)


def load(path: str | os.PathLike) -> Module:
    """Rebuild a zoo model from a checkpoint's config and load its weights."""
    checkpoint = load_checkpoint(path)
    if "name" not in checkpoint.config:
        raise CheckpointError(f"checkpoint {path} has no model config to rebuild the model from")
    try:
        model = models.get(**checkpoint.config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} holds a model config cnnkit cannot build ({error})"
        ) from None
    load_model_state(model, checkpoint, source=f"checkpoint {path}")
    return model


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint written by :func:`save_checkpoint` (an .npz with meta)."""
    return path.suffix.lower() == ".npz" and META_KEY in read_names(path)


def load_weights(model: Module, path: str | os.PathLike, layout: str = "cnnkit") -> str:
    """Load the weights in ``path`` (.safetensors or .npz) into ``model``; returns the layout.

    ``layout`` names the file's convention: "cnnkit" (cnnkit's state_dict names, or a checkpoint
    of :func:`save_checkpoint`), "timm" (timm's legacy_xception state_dict) or "keras"
    (keras.applications.Xception's ``layer/variable`` names, channels-last kernels); "auto"
    guesses it from the names (:func:`cnnkit.weights.detect_layout`). Every name and shape is
    checked before anything is copied: a WeightsError names the first mismatch and the model is
    left unchanged. Warns when an Xception's flavor would not reproduce the source framework's
    numbers (build it with ``flavor="keras"`` or ``"timm"`` to match). docs/weights.md has the
    name tables.
    """
    if layout not in (*LAYOUTS, "auto"):
        raise WeightsError(
            f"unknown weights layout {layout!r}; choose from {', '.join(LAYOUTS)} or auto"
        )
    path = Path(path)
    if _is_checkpoint(path):
        if layout not in ("cnnkit", "auto"):
            raise WeightsError(f"{path} is a cnnkit checkpoint; load it with layout 'cnnkit'")
        arrays, layout = load_checkpoint(path).model_state, "cnnkit"
    else:
        arrays = read_arrays(path)
        if layout == "auto":
            layout = detect_layout(arrays)
    state = convert_state(model, arrays, layout, source=f"weights file {path}")
    message = flavor_mismatch(model, layout)
    if message:
        warnings.warn(message, stacklevel=2)
    model.load_state_dict(state, strict=False)  # every name and shape checked above
    return layout


def save_weights(model: Module, path: str | os.PathLike, layout: str = "cnnkit") -> Path:
    """Write ``model``'s weights to ``path`` (.safetensors or .npz) in ``layout``, atomically.

    The inverse of :func:`load_weights`: "timm" and "keras" files load into those frameworks'
    Xception (a Keras file still needs its arrays assigned by name, see docs/weights.md).
    """
    data = to_bytes(export_state(model, layout), path)
    return atomic_write(path, lambda f: f.write(data))


def load_pretrained(
    name: str, path: str | os.PathLike, layout: str = "auto", **options
) -> tuple[Module, str]:
    """Build zoo model ``name`` for ImageNet and load the weights file ``path``: (model, layout).

    ``num_classes`` defaults to 1000 and ``in_channels`` to 3; other ``options`` go to the
    builder. With layout "auto" the file's names decide (a checkpoint is "cnnkit"). Unless
    ``flavor`` is given, a model that takes one gets the flavor of the file's framework ("keras"
    or "timm"), so that it reproduces that framework's outputs. Returns the model in eval mode.
    """
    if layout not in (*LAYOUTS, "auto"):
        raise WeightsError(
            f"unknown weights layout {layout!r}; choose from {', '.join(LAYOUTS)} or auto"
        )
    path = Path(path)
    if layout == "auto":
        layout = "cnnkit" if _is_checkpoint(path) else detect_layout(read_names(path))
    options = {"num_classes": 1000, "in_channels": 3, **options}
    if layout in ("keras", "timm") and "flavor" not in options:
        if name in models.list() and models.takes_option(name, "flavor"):
            options["flavor"] = layout
    try:
        model = models.get(name, **options)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"cannot build model {name!r} with {options}: {error}") from None
    load_weights(model, path, layout)
    return model.eval(), layout
