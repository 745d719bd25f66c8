"""Image files named on the command line: folders expanded, each read as the model's input."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnkit.cli.errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def image_files(paths: list[str]) -> list[Path]:
    """The image files named, with folders expanded to the images inside them (sorted)."""
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
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


def read_image(path: Path, shape: list[int]) -> np.ndarray:
    """Read one image as float32 (C, H, W) in [0, 1], converted and resized to ``shape``."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    if channels not in (1, 3):
        raise UsageError(f"predict supports models with 1 or 3 input channels, got {channels}")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
            pixels = np.asarray(image, dtype=np.float32) / 255
    except (UnidentifiedImageError, OSError) as error:
        raise UsageError(f"cannot read image {path}: {error}") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
