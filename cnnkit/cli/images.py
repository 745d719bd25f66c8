"""Image files named on the command line: folders expanded, each read as the model's input.

:func:`open_image` reads what Pillow reads and refuses, in one line, what it cannot read
faithfully: empty files, decompression bombs (more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS``,
whose value the message states), images over 4x smaller than the model's input on a side, and
modes without a grey or colour meaning (32-bit integer or float pixels). It converts the rest:
8-bit grey and colour as they are, 16-bit grey scaled from 0..65535 (Pillow's own conversion
would clip it), CMYK and YCbCr to RGB, palette images through their colours, alpha dropped.
Animated images (GIF, APNG, WebP) are read as their first frame.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from cnnkit.cli.errors import UsageError
from cnnkit.imagenet import center_crop_resize

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
# How much smaller than the model's input an image may be on each side (it is scaled up).
MAX_UPSCALE = 4


def image_files(paths: list[str]) -> list[Path]:
    """The image files named, with folders expanded to the images inside them (sorted)."""
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                raise UsageError(
                    f"folder {path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"image {path} does not exist")
    return files


def _bomb_message(path: Path, error: Exception) -> str:
    from PIL import Image

    return (
        f"cannot read image {path}: {error} (Pillow's limit Image.MAX_IMAGE_PIXELS is "
        f"{Image.MAX_IMAGE_PIXELS:,} pixels); refused as a possible decompression bomb"
    )


def _converted(image, channels: int):
    """``image`` as mode L (1 channel) or RGB (3), or F with values 0..255 for 16-bit grey."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT:
        grey = np.asarray(image, dtype=np.float32) * np.float32(255 / 65535)
        return Image.fromarray(grey, mode="F")  # one channel; pixels() repeats it for RGB
    if image.mode in ("I", "F"):
        raise UsageError(
            f"image mode {image.mode} ({'32-bit integer' if image.mode == 'I' else 'float'} "
            "pixels) has no fixed grey range; expected 8-bit or 16-bit grey, or colour"
        )
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("L" if channels == 1 else "RGB")


def open_image(path: Path, channels: int, size: tuple[int, int]):
    """Open ``path`` for a model of ``channels`` (1 or 3) and input ``size`` (H, W); see the
    module docstring. Returns a Pillow image of mode L, RGB or F (16-bit grey as 0..255)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise UsageError(f"predict supports models with 1 or 3 input channels, got {channels}")
    if path.stat().st_size == 0:
        raise UsageError(f"cannot read image {path}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.seek(0)
                width, height = image.size
                least = [math.ceil(side / MAX_UPSCALE) for side in size]
                if height < least[0] or width < least[1]:
                    raise UsageError(
                        f"image {path} is {width}x{height} pixels, too small for the model's "
                        f"{size[1]}x{size[0]} input; expected at least {least[1]}x{least[0]} "
                        f"(at most {MAX_UPSCALE}x enlarged)"
                    )
                image.load()
                return _converted(image, channels)
    except UsageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UsageError(_bomb_message(path, error)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        raise UsageError(f"cannot read image {path}: {error}") from None


def pixels(image, channels: int) -> np.ndarray:
    """float32 (C, H, W) of a Pillow image from :func:`open_image`, values as stored (0..255)."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[None] if channels == 1 else np.repeat(array[None], 3, axis=0)
    else:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)


def read_image(path: Path, shape: list[int], crop: bool = False) -> np.ndarray:
    """Read one image as float32 (C, H, W) in [0, 1], converted and resized to ``shape``
    (stretched, or with ``crop`` its shorter side resized and the centre cut out)."""
    channels, height, width = shape
    image = open_image(Path(path), channels, (height, width))
    if crop:
        image = center_crop_resize(image, (height, width))
    else:
        image = image.resize((width, height))
    return pixels(image, channels) / np.float32(255)
