"""`cnnkit models`: the model zoo with parameter counts."""

from __future__ import annotations

from cnnkit import models


def add_parser(commands) -> None:
    """Add `cnnkit models` to the sub-parsers ``commands``."""
    commands.add_parser(
        "models",
        help="list the model zoo",
        description="List the zoo models with their parameter counts.",
    )


def run(args) -> int:
    """Run `cnnkit models`: one line per zoo model."""
    for name in models.list():
        model = models.get(name, num_classes=10, in_channels=1)
        print(f"{name:16s} {model.num_parameters():>12,d} parameters (10 classes, 1 channel)")
    return 0
