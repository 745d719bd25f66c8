"""The `cnnkit` command: train, evaluate, predict, summary, export, gradcheck, models, datasets,
plot, explore.

Layout (each module imports only from the ones below it, never from a sibling command):

- ``app``: the parser of every sub-command and :func:`main`, the one error boundary;
- one module per command: ``train``, ``evaluate``, ``predict``, ``summary``, ``export``,
  ``gradcheck``, ``models``, ``datasets``, ``plot``, ``explore``; each has
  ``add_parser(commands)`` and ``run(args)``;
- shared helpers: ``checkpoint`` (rebuild a run's model and its preprocessing), ``images``
  (image files, read safely), ``onnx_model`` (an ONNX file and how to feed it), ``zoo`` (a
  model for an input shape), ``options`` (argument types and the one-line parser), ``errors``
  (what is the user's error, what is a bug).

Every user error (unknown name, missing or corrupt file, unusable directory, bad image) ends with
one line on stderr and exit status 2, without a traceback and without touching existing files.
"""

from cnnkit.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
