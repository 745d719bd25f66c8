"""ImageNet-1k class names and the input preprocessing of Keras' Xception.

The 1000 names (index order of the ILSVRC-2012 classes, i.e. sorted WordNet ids) ship in
``cnnkit/resources/imagenet_classes.json``; docs/weights.md records where they come from.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources

import numpy as np

NUM_CLASSES = 1000


class ImageError(ValueError):
    """An image file cannot be read."""


@functools.cache
def _class_names() -> tuple[str, ...]:
    text = resources.files("cnnkit").joinpath("resources/imagenet_classes.json").read_text("utf-8")
    return tuple(json.loads(text))


def class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in the index order of the classifier's outputs."""
    return list(_class_names())


def class_names_for(count: int) -> list[str]:
    """The ImageNet class names for a classifier of 1000 outputs, else ``class 0``, ``class 1``,
    ... for one of ``count`` outputs."""
    return class_names() if count == NUM_CLASSES else [f"class {i}" for i in range(count)]


def center_crop_resize(image, size) -> object:
    """Resize a PIL image so that it covers ``size`` (H, W), keeping its aspect, then crop the
    centre: for a square size, the shorter side becomes ``size`` and the longer one is cut."""
    from PIL import Image

    height, width = size
    scale = max(height / image.height, width / image.width)
    new = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(new, Image.BILINEAR)
    left, top = (new[0] - width) // 2, (new[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def preprocess(path: str | os.PathLike, size=(299, 299), channels: int = 3) -> np.ndarray:
    """Read an image as float32 (C, H, W) for Keras' Xception: resize the shorter side to fit
    ``size``, centre crop, scale pixels to [-1, 1] (x / 127.5 - 1, Keras' ``mode="tf"``)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ImageError(f"preprocess supports 1 or 3 channels, got {channels}")
    try:
        with Image.open(path) as image:
            image = center_crop_resize(image.convert("RGB" if channels == 3 else "L"), size)
            pixels = np.asarray(image, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as error:
        raise ImageError(f"cannot read image {path}: {error}") from None
    pixels = pixels / np.float32(127.5) - np.float32(1)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
