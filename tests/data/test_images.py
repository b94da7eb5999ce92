"""The normalising loader and the reasons broken files are skipped."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explorer.data.images import BACKGROUND, ImageError, check_and_thumbnail, load_rgb

MAXPX = 10_000_000


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_applied() -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = load_rgb(_save(img, "JPEG", exif=exif), max_pixels=MAXPX)
    assert out.size == (20, 40)


def test_alpha_composited_on_fixed_background() -> None:
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    out = np.asarray(load_rgb(_save(img, "PNG"), max_pixels=MAXPX))
    assert out.shape == (8, 8, 3)
    assert (out == np.array(BACKGROUND)).all()
    half = Image.new("LA", (4, 4), (0, 128))
    assert np.asarray(load_rgb(_save(half, "PNG"), max_pixels=MAXPX))[0, 0, 0] == pytest.approx(127, abs=2)


def test_palette_transparency_and_cmyk() -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([10, 20, 30] * 256)
    pal.info["transparency"] = 0
    assert np.asarray(load_rgb(_save(pal, "PNG", transparency=0), max_pixels=MAXPX))[0, 0].tolist() == list(BACKGROUND)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = np.asarray(load_rgb(_save(cmyk, "TIFF"), max_pixels=MAXPX))[0, 0]
    assert r > 200 and g < 50 and b < 50


def test_16bit_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)
    out = np.asarray(load_rgb(_save(img, "PNG"), max_pixels=MAXPX))[0, :, 0]
    assert out.tolist() == [0, 128, 255]  # clipping would give [0, 255, 255]


def test_first_frame_of_animation() -> None:
    frames = [Image.new("RGB", (6, 6), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    r, g, b = np.asarray(load_rgb(buf.getvalue(), max_pixels=MAXPX))[0, 0]
    assert r > 200 and b < 50


def test_broken_files_give_reasons() -> None:
    good = _save(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError, match="(?i)broken image|truncated"):
        load_rgb(good[: len(good) // 2], max_pixels=MAXPX)
    with pytest.raises(ImageError, match="(?i)broken image|truncated"):
        check_and_thumbnail(good[: len(good) // 2], max_pixels=MAXPX)
    with pytest.raises(ImageError, match="not an image"):
        load_rgb(b"hello, I am a text file", max_pixels=MAXPX)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(ImageError, match="HEIC"):
        load_rgb(heic, max_pixels=MAXPX)


def test_pixel_bomb_refused_from_header() -> None:
    big = _save(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageError, match="pixel bomb"):
        check_and_thumbnail(big, max_pixels=1_000_000)


def test_thumbnail_is_small_rgb() -> None:
    thumb, size = check_and_thumbnail(_save(Image.new("RGB", (400, 200), (9, 9, 9)), "JPEG"), max_pixels=MAXPX)
    assert size == (400, 200) and max(thumb.size) <= 96 and thumb.mode == "RGB"


@pytest.mark.parametrize("mode", ["F", "I", "I;16"])
def test_a_high_bit_image_is_scaled_within_a_byte_a_pixel_more(mode: str) -> None:
    """A float or 16/32-bit image is scaled to 8 bits by blocks of rows: numpy's memory beyond the
    decoded image stays near one byte a pixel (it took several float64 copies: 1.3 GB at 40 MP)."""
    import tracemalloc

    h, w = 3000, 2000  # 6 megapixels
    dtype = {"F": np.float32, "I": np.int32, "I;16": np.uint16}[mode]
    arr = (np.arange(h * w, dtype=np.float64).reshape(h, w) % 60000).astype(dtype)
    if mode == "F":
        arr[0, :5] = [np.nan, np.inf, -np.inf, 1e6, -1e6]
    img = Image.fromarray(arr, mode) if mode != "I;16" else Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    data = buf.getvalue()
    tracemalloc.start()
    try:
        out = load_rgb(data, max_pixels=10**8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.mode == "RGB" and out.size == (w, h)
    assert peak < 1.6 * h * w + 16 * 1024**2, f"{peak / 1e6:.0f} MB traced for a {h * w / 1e6:.0f} MP image"
    px = np.asarray(out)[..., 0]
    assert px.min() == 0 and px.max() == 255 or mode != "F"
