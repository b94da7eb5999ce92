"""The one image loader: any supported file in, a plain 8-bit RGB PIL image out."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Transparent pixels are composited on this colour, so the same PNG always gives the same input.
BACKGROUND = (255, 255, 255)
THUMB_SIZE = 96

IMAGE_SUFFIXES = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
    ".heic", ".heif", ".avif", ".jfif",
)  # fmt: skip


class ImageError(ValueError):
    """An image could not be used; the message is the reason shown to the user."""


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("not an image, or a format Pillow cannot read (HEIC/AVIF need plugins)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"pixel bomb: {exc}") from exc
    except OSError as exc:
        raise ImageError(f"unreadable image: {exc}") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"pixel bomb: {w}x{h} = {w * h} pixels is over the limit of {max_pixels}")
    if w < 1 or h < 1:
        raise ImageError(f"empty image ({w}x{h})")
    return img


ROWS_AT_ONCE = 256  # rows of a 16/32-bit image scaled to 8 bits at a time


def _scale_high_bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float images are scaled to 8 bits, not clipped.

    Read and scaled by blocks of rows into the 8-bit result, in float32: beyond the decoded image
    this holds one byte a pixel and a block (a 40-megapixel float TIFF took several float64 copies
    of itself, 1.3 GB)."""
    lo, hi = _range(img)
    if img.mode == "F":
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
    else:
        lo, hi = 0.0, 65535.0 if hi <= 65535 else float(np.iinfo(np.int32).max)
    scale = 255.0 / max(hi - lo, 1e-12)
    out = np.empty((img.height, img.width), np.uint8)
    for start, block in _row_blocks(img):
        block = block.astype(np.float32)
        np.nan_to_num(block, copy=False, nan=lo, posinf=hi, neginf=lo)
        block -= lo
        block *= scale
        np.rint(block, out=block)
        np.clip(block, 0, 255, out=block)
        out[start : start + len(block)] = block
    return Image.fromarray(out, "L")


def _row_blocks(img: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, pixels) of each block of ROWS_AT_ONCE rows: a copy of that block only."""
    for start in range(0, img.height, ROWS_AT_ONCE):
        yield start, np.asarray(img.crop((0, start, img.width, min(start + ROWS_AT_ONCE, img.height))))


def _range(img: Image.Image) -> tuple[float, float]:
    """(min, max) of an image's finite pixels, a block of rows at a time; (0, 1) when none is."""
    lo, hi = np.inf, -np.inf
    for _, block in _row_blocks(img):
        finite = block[np.isfinite(block)] if block.dtype.kind == "f" else block
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else (0.0, 1.0)


def normalise(img: Image.Image) -> Image.Image:
    """Make any decoded PIL image a loaded 8-bit RGB image.

    EXIF orientation is applied; the first frame of an animation is used; alpha (and palette
    transparency) is composited on BACKGROUND; 16-bit and float images are scaled to 8 bits;
    CMYK, palette, greyscale and other modes are converted to RGB.

    Args:
        img: an opened PIL image (it is not modified).

    Returns:
        A new RGB image.
    """
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _scale_high_bit(img).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img if mode == "RGB" else img.convert("RGB")


def load_rgb(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode image bytes fully into a normalised RGB image.

    Args:
        data: the file's bytes.
        max_pixels: images with more pixels are refused as pixel bombs.

    Returns:
        An RGB PIL image.

    Raises:
        ImageError: with the reason the image cannot be used.
    """
    img = _open(data, max_pixels)
    try:
        img.load()
        return normalise(img)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"broken image ({img.format}): {exc}") from exc


def check_header(data: bytes, *, max_pixels: int) -> tuple[int, int]:
    """Validate an image without decoding it: a format Pillow reads, a size within the pixel-bomb
    limit. A file that passes can still fail to decode (truncated data): extraction, which decodes
    every image once, leaves such images out and reports them.

    Returns:
        The image's (width, height).

    Raises:
        ImageError: with the reason the image cannot be used.
    """
    return _open(data, max_pixels).size


def check_image(data: bytes, *, max_pixels: int, size: int = THUMB_SIZE) -> tuple[Image.Image, tuple[int, int]]:
    """Validate an image cheaply: decode it, at reduced scale where the format allows.

    JPEGs are decoded in draft mode (DCT scaling) to no less than `size`, which reads the whole
    entropy-coded stream, so truncation is still caught at a fraction of a full decode's cost.

    Args:
        data: the file's bytes.
        max_pixels: pixel-bomb limit.
        size: the smallest side the reduced decode may have.

    Returns:
        (normalised RGB image, possibly reduced; original (width, height)).

    Raises:
        ImageError: with the reason the image cannot be used.
    """
    img = _open(data, max_pixels)
    original = img.size
    try:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))
        img.load()
        return normalise(img), original
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"broken image ({img.format}): {exc}") from exc


def check_and_thumbnail(data: bytes, *, max_pixels: int, size: int = THUMB_SIZE) -> tuple[Image.Image, tuple[int, int]]:
    """check_image, then a thumbnail whose longest side is `size`.

    Returns:
        (thumbnail RGB image, original (width, height)).

    Raises:
        ImageError: with the reason the image cannot be used.
    """
    rgb, original = check_image(data, max_pixels=max_pixels, size=size)
    rgb.thumbnail((size, size))
    return rgb, original


def to_jpeg_bytes(img: Image.Image, quality: int = 80) -> bytes:
    """Encode an RGB image as JPEG bytes (for thumbnails in plots and reports)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
