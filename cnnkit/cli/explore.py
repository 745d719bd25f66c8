"""`cnnkit explore`: a local web page of a network at work on one image (see cnnkit.explore)."""

from __future__ import annotations


def add_parser(commands) -> None:
    """Add `cnnkit explore` to the sub-parsers ``commands``."""
    from cnnkit.explore import add_arguments

    add_arguments(
        commands.add_parser(
            "explore",
            help="a local web page showing a network at work on one image",
            description="Serve a local web page that shows a network at work on one image: "
            "feature maps, filters, probabilities, saliency, Grad-CAM and the equation of any "
            "conv output value (see docs/explore.md). Needs the explore extra.",
        )
    )


def run(args) -> int:
    """Run `cnnkit explore` until Ctrl-C."""
    from cnnkit.explore import command

    return command(args)
