"""Image folders: one sub-folder per class (torchvision's ImageFolder layout), read with Pillow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import Dataset, DatasetError

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def _size_pair(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    pair = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(
            f"image_size must be a positive int or (height, width), got {image_size!r}"
        )
    return int(pair[0]), int(pair[1])


def load_image_folder(
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool = False,
    name: str | None = None,
) -> Dataset:
    """Images under ``path/<class>/`` as uint8 (N, H, W, C); classes sorted by folder name.

    Files with an image extension are read (others are ignored), converted to RGB (or to one
    grey channel), and resized bilinearly to ``image_size`` = (height, width) when given;
    without it all images must share one size.
    """
    try:
        from PIL import Image
    except ImportError as e:
        raise DatasetError("load_image_folder needs Pillow: pip install pillow") from e
    root = Path(path).expanduser()
    size = _size_pair(image_size)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder does not exist or is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders, expected {root}/<class name>/<images>")
    images, labels, first = [], [], None
    for label, cls in enumerate(classes):
        files = sorted(
            f
            for f in (root / cls).iterdir()
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()
        )
        if not files:
            raise DatasetError(
                f"{root / cls}: class folder has no images, expected files ending in "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
            )
        for file in files:
            try:
                with Image.open(file) as im:
                    im = im.convert("L" if grayscale else "RGB")
                    if size is not None:
                        im = im.resize((size[1], size[0]), Image.BILINEAR)
                    array = np.asarray(im, dtype=np.uint8)
            except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
                raise DatasetError(f"{file}: unreadable image ({e})") from e
            if first is None:
                first = (file, array.shape)
            elif array.shape != first[1]:
                raise DatasetError(
                    f"{file}: image is {array.shape[1]}x{array.shape[0]} (WxH) but {first[0]} is "
                    f"{first[1][1]}x{first[1][0]}; pass image_size to resize all images to one size"
                )
            images.append(array)
            labels.append(label)
    stacked = np.stack(images)
    if grayscale:
        stacked = stacked[..., None]
    return Dataset(stacked, np.asarray(labels, np.int64), classes, name or root.name)
