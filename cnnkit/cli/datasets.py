"""`cnnkit datasets`: the data set names `train --dataset` accepts."""

from __future__ import annotations

from cnnkit.data import describe_datasets


def add_parser(commands) -> None:
    """Add `cnnkit datasets` to the sub-parsers ``commands``."""
    commands.add_parser(
        "datasets",
        help="list the data sets",
        description="List the data set names `train --dataset` accepts.",
    )


def run(args) -> int:
    """Run `cnnkit datasets`: one line per data set name."""
    for name, text in describe_datasets().items():
        print(f"{name:16s} {text}")
    return 0
