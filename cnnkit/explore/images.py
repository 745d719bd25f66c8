"""Pictures in and out of the explorer: uploads decoded safely, arrays as small coloured PNGs.

An upload is at most ``MAX_UPLOAD_BYTES``; Pillow opens only PNG and JPEG, refuses images over
its decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) when it reads the header, and images
over ``MAX_PIXELS`` are refused before their pixels are decoded, so a small file cannot expand to
gigabytes.

Feature maps are drawn on one diverging scale per layer (Wang et al., CNN Explainer, 2020):
blue for negative, white for zero, red for positive, the strongest |value| of the layer at full
colour. Saliency and Grad-CAM maps are drawn as heat (transparent black to yellow) over the input.
"""

from __future__ import annotations

import base64
import io

import numpy as np

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG")


class UploadError(ValueError):
    """An uploaded image cannot be used; the message says why in a few words."""


def decode_upload(data: bytes):
    """Decode PNG or JPEG bytes into a PIL image (fully loaded), or raise UploadError."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"upload of {len(data):,} bytes is over the limit of {limit_text()}")
    if not data:
        raise UploadError("empty upload: expected a PNG or JPEG image")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise UploadError(
                f"image of {width} x {height} pixels is over the limit of {MAX_PIXELS:,} pixels"
            )
        image.load()
    except Image.DecompressionBombError as error:
        raise UploadError(f"image refused: {error}") from None
    except UnidentifiedImageError:
        raise UploadError("not a PNG or JPEG image") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadError(f"cannot decode the image: {error}") from None
    return image


def limit_text() -> str:
    """The upload limit in words, e.g. '2 MB (2,097,152 bytes)'."""
    return f"{MAX_UPLOAD_BYTES // 2**20} MB ({MAX_UPLOAD_BYTES:,} bytes)"


def png_data_url(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL of uint8 pixels (H, W), (H, W, 3) or (H, W, 4)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def display_pixels(pixels: np.ndarray) -> np.ndarray:
    """Pixels (C, H, W) in [0, 1] as uint8 (H, W) for one channel or (H, W, 3) for three; other
    channel counts show their first channel."""
    pixels = np.clip(np.asarray(pixels, np.float64), 0, 1)
    shown = pixels.transpose(1, 2, 0) if len(pixels) == 3 else pixels[0]
    return np.round(shown * 255).astype(np.uint8)


def diverging(values: np.ndarray, scale: float) -> np.ndarray:
    """Blue (-scale) - white (0) - red (+scale) colours, uint8 (..., 3)."""
    t = np.clip(np.asarray(values, np.float64) / (scale if scale > 0 else 1.0), -1, 1)
    fade = np.round(255 * (1 - np.abs(t))).astype(np.uint8)
    rgb = np.empty((*t.shape, 3), np.uint8)
    rgb[..., 0] = np.where(t < 0, fade, 255)
    rgb[..., 1] = fade
    rgb[..., 2] = np.where(t > 0, fade, 255)
    return rgb


def heat(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as RGBA uint8 (..., 4): transparent at 0, red, then opaque yellow at 1."""
    t = np.clip(np.asarray(values, np.float64), 0, 1)
    rgba = np.empty((*t.shape, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = np.round(255 * np.clip(2 * t - 1, 0, 1)).astype(np.uint8)
    rgba[..., 2] = 0
    rgba[..., 3] = np.round(235 * np.sqrt(t)).astype(np.uint8)
    return rgba


def unit(values: np.ndarray) -> np.ndarray:
    """Values divided by their maximum (all zeros stay zero), for a map in [0, 1]."""
    values = np.asarray(values, np.float64)
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)
