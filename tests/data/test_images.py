"""Safe loading and normalisation of images on import (data/images.py)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from data import images
from data.errors import InputError
from data.images import load_for_import
from tests.data.conftest import png_bytes, random_rgb


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (a decompression bomb's signature), with tiny data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


RGB = random_rgb(1, 20, 30)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("cut.png", png_bytes(RGB)[:-60], "truncated"),  # truncated PNG
        ("cut.jpg", _encode(Image.fromarray(RGB), "JPEG")[:200], "truncated"),  # truncated JPEG
        ("notes.jpg", b"this is a text file, not a photo\n" * 5, "not an image"),  # text named .jpg
        ("empty.png", b"", "empty"),  # empty file
        ("bomb.png", _png_claiming(30000, 30000), "too large"),  # header claims 900 MP
        ("doc.pdf", b"%PDF-1.4", "unsupported file type"),  # not an image extension
    ],
    ids=["truncated-png", "truncated-jpg", "text-as-jpg", "empty", "bomb-header", "pdf"],
)
def test_bad_images_are_rejected_with_reason(name, content, reason):
    with pytest.raises(InputError, match=reason):
        load_for_import(content, name)


def test_pixel_limit_is_checked_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(InputError, match="decompression bomb"):
        load_for_import(png_bytes(RGB), "big.png")


@pytest.mark.parametrize(
    "name, content, ext, same_bytes",
    [
        ("rgb.png", png_bytes(RGB), ".png", True),  # 8-bit RGB PNG stored as is
        ("rgb.jpg", _encode(Image.fromarray(RGB), "JPEG"), ".jpg", True),  # JPEG stored as is
        ("rgb.jpeg", _encode(Image.fromarray(RGB), "JPEG"), ".jpg", True),  # .jpeg normalised to .jpg
        ("rgb.bmp", _encode(Image.fromarray(RGB), "BMP"), ".png", False),  # BMP re-encoded as PNG
        ("rgb.webp", _encode(Image.fromarray(RGB), "WEBP", lossless=True), ".png", False),  # WebP -> PNG
        ("rgb.tif", _encode(Image.fromarray(RGB), "TIFF"), ".png", False),  # TIFF -> PNG
    ],
    ids=["png", "jpg", "jpeg", "bmp", "webp", "tif"],
)
def test_plain_rgb_is_kept_or_reencoded_losslessly(name, content, ext, same_bytes):
    out = load_for_import(content, name)
    assert out.ext == ext and (out.width, out.height) == (30, 20)
    assert (out.content == content) == same_bytes
    if ext == ".png":
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(out.content))), RGB)


GREY16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
RGBA = np.dstack([RGB, np.full((20, 30), 0, np.uint8)])
RGBA[:10, :, 3] = 255


def _palette() -> bytes:
    return _encode(Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")


@pytest.mark.parametrize(
    "name, content, expect, note",
    [
        ("g16.png", _encode(Image.fromarray(GREY16), "PNG"),
         lambda: np.round(GREY16.astype(float) * 255 / 65535).astype(np.uint8), "16-bit"),  # 16-bit grey scaled
        ("grey.png", png_bytes(RGB[..., 0]), lambda: RGB[..., 0], "grey"),  # 8-bit grey
        ("pal.png", _palette(), lambda: np.asarray(Image.open(io.BytesIO(_palette())).convert("L")), "palette"),  # palette
        ("rgba.png", png_bytes(RGBA), lambda: np.asarray(Image.fromarray(np.where(
            RGBA[..., 3:] == 255, RGB, 255).astype(np.uint8)).convert("L")), "alpha"),  # RGBA over white
        ("cmyk.jpg", _encode(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=100), None, "CMYK"),  # CMYK
    ],
    ids=["grey16", "grey8", "palette", "rgba", "cmyk"],
)
def test_unusual_modes_are_converted_explicitly(name, content, expect, note):
    out = load_for_import(content, name)
    im = Image.open(io.BytesIO(out.content))
    assert out.ext == ".png" and im.mode == "RGB" and im.size == (30, 20)
    assert any(note in n for n in out.notes), out.notes
    if expect is not None:
        grey = np.asarray(im.convert("L")).astype(int)
        assert np.abs(grey - expect().astype(int)).max() <= 1


def test_exif_rotation_is_applied_once():
    # A 20x30 (h x w) photo whose EXIF says "rotate 90 CW to display" (orientation 6).
    raw = np.zeros((20, 30, 3), np.uint8)
    raw[:5, :5] = 255  # bright top-left corner in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    content = _encode(Image.fromarray(raw), "JPEG", quality=100, exif=exif.tobytes())
    out = load_for_import(content, "phone.jpg")
    assert (out.width, out.height) == (20, 30)  # width and height swapped
    shown = np.asarray(Image.open(io.BytesIO(out.content)).convert("L"))
    assert shown[:5, -5:].mean() > 200 and shown[:5, :5].mean() < 50  # corner moved to the top right, once
    assert Image.open(io.BytesIO(out.content)).getexif().get(0x0112) is None  # nothing left to rotate again
    again = load_for_import(out.content, "stored.png")
    assert again.content == out.content  # the stored image is stable: no second rotation


def test_hash_is_of_stored_content():
    out = load_for_import(png_bytes(RGB), "a.png")
    import hashlib

    assert out.sha256 == hashlib.sha256(out.content).hexdigest()
