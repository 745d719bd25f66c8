"""An ONNX model on the command line (``--onnx FILE``): imported on cnnkit layers, with the data
description that tells how to prepare its images (cnnkit.onnx.inputs)."""

from __future__ import annotations

from cnnkit.cli.errors import UsageError


def onnx_package():
    """The cnnkit.onnx package, or a one-line error saying which extra to install."""
    try:
        import cnnkit.onnx
    except ImportError as error:
        raise UsageError(
            f"--onnx needs the onnx package ({error}); install it with pip install 'cnnkit[onnx]'"
        ) from None
    return cnnkit.onnx


def onnx_and_shape(path: str, input_shape: tuple[int, int, int] | None = None):
    """(model in eval mode, its image shape (C, H, W)): ``input_shape`` or the declared one."""
    package = onnx_package()
    from cnnkit.onnx.inputs import image_shape

    model = package.load(path)
    return model, image_shape(model, input_shape)


def restore_onnx(path: str, input_shape: tuple[int, int, int] | None = None):
    """(model in eval mode, data description) of the ONNX file ``path`` (see
    cnnkit.onnx.inputs.describe); ``input_shape`` (C, H, W) overrides the declared one."""
    package = onnx_package()
    from cnnkit.onnx.inputs import describe

    model = package.load(path)
    return model, describe(model, input_shape)
