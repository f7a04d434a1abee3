"""Safe image loading and normalisation for import.

Every image enters a project through :func:`load_for_import`, which either returns
the bytes to store or raises :class:`InputError` with the reason. Stored images are
8-bit RGB PNG or JPEG with nothing left for a reader to interpret (no EXIF rotation,
no palette, no alpha, no 16-bit), so every layer sees the same pixels the user sees.

Choices:
- An 8-bit RGB PNG or JPEG with no EXIF rotation is stored byte for byte (fast, lossless).
- Everything else is decoded, converted explicitly and re-encoded as PNG (lossless with
  respect to the decoded pixels):
  EXIF orientation is applied once; 16-bit samples are scaled by ``v * 255 / 65535``
  (full range, no auto-contrast); grey, palette and CMYK become RGB; an alpha channel is
  composited over white (``ALPHA_BACKGROUND``), which is how documents and most viewers
  show transparency.
- The image size is checked from the header, before any pixel is decoded, against
  ``MAX_PIXELS`` (decompression bombs).
"""

from __future__ import annotations

import hashlib
import io
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data.errors import InputError

SUPPORTED_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 80_000_000  # about 9000 x 9000; larger images are refused as possible decompression bombs
MAX_FILE_BYTES = 512 * 1024 * 1024
ALPHA_BACKGROUND = (255, 255, 255)
_ORIENTATION_TAG = 0x0112
_PASS_THROUGH = {"PNG": ".png", "JPEG": ".jpg"}


@dataclass(frozen=True)
class NormalisedImage:
    """Bytes ready to store, their hash (the dedup key), size, and what was converted."""

    content: bytes
    ext: str
    sha256: str
    width: int
    height: int
    notes: tuple[str, ...] = ()


def is_supported(name: str) -> bool:
    return Path(name).suffix.lower() in SUPPORTED_EXTS


def load_for_import(source: str | Path | bytes, name: str) -> NormalisedImage:
    """Validate and normalise one image (a path or its bytes); ``name`` is used for the extension and messages."""
    if not is_supported(name):
        raise InputError(f"unsupported file type '{Path(name).suffix}' (supported: {' '.join(SUPPORTED_EXTS)}).")
    data = _read_bytes(source)
    im = _open_checked(data)
    notes: list[str] = []
    named = Path(name).suffix.lower()
    if _PASS_THROUGH.get(im.format) not in (named, ".jpg" if named == ".jpeg" else None):
        notes.append(f"content is {im.format} although named {named}")
    orientation = _orientation(im)
    if im.format in _PASS_THROUGH and im.mode == "RGB" and orientation == 1 and _png_depth_ok(data, im.format):
        return NormalisedImage(data, _PASS_THROUGH[im.format], _sha256(data), im.width, im.height, tuple(notes))
    if not _png_depth_ok(data, im.format) and im.mode == "RGB":
        notes.append("16-bit RGB reduced to 8-bit (high byte, as Pillow decodes it)")
    rgb = _to_rgb(im, orientation, notes)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=6)
    content = buf.getvalue()
    return NormalisedImage(content, ".png", _sha256(content), rgb.width, rgb.height, tuple(notes))


def _read_bytes(source: str | Path | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise InputError(f"file is larger than {MAX_FILE_BYTES // 2**20} MiB; not imported.")
            data = path.read_bytes()
        except OSError as err:
            raise InputError(f"cannot read the file ({err.strerror or err}).") from err
    if not data:
        raise InputError("the file is empty.")
    return data


def _pil_open(fp: io.BytesIO) -> Image.Image:
    """Pillow's own ``Image.open``.

    Ultralytics replaces ``PIL.Image.open`` on import with a wrapper that, on an
    unidentified file, tries to pip-install a HEIF plugin: offline that hangs or fails
    with an unrelated error. A non-image must simply be rejected, so use the original.
    """
    opener = Image.open
    if opener.__module__ != Image.__name__:
        opener = getattr(sys.modules.get(opener.__module__), "_image_open", opener)
    return opener(fp)


def _open_checked(data: bytes) -> Image.Image:
    """Open, check the pixel count from the header, then decode fully (so truncation shows)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = _pil_open(io.BytesIO(data))
    except UnidentifiedImageError as err:
        raise InputError("not an image: the content is not a readable PNG, JPEG, BMP, TIFF or WebP.") from err
    except Image.DecompressionBombError as err:
        raise InputError(f"image too large to decode safely ({err}); limit is {MAX_PIXELS:,} pixels.") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"corrupt or truncated image header ({err}).") from err
    if im.width * im.height > MAX_PIXELS:
        raise InputError(
            f"image too large to decode safely: {im.width}x{im.height} = {im.width * im.height:,} pixels "
            f"(limit {MAX_PIXELS:,}; possible decompression bomb)."
        )
    if im.width < 1 or im.height < 1:
        raise InputError(f"image has no pixels ({im.width}x{im.height}).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"corrupt or truncated image ({err}).") from err
    return im


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except (ValueError, TypeError, SyntaxError, OSError):  # malformed EXIF: treat as upright
        return 1
    return value if 1 <= value <= 8 else 1


def _png_depth_ok(data: bytes, fmt: str) -> bool:
    """PIL reads 16-bit RGB PNGs as mode RGB; the IHDR bit depth (byte 24) tells them apart."""
    return fmt != "PNG" or (len(data) > 24 and data[24] == 8)


def _to_rgb(im: Image.Image, orientation: int, notes: list[str]) -> Image.Image:
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
        notes.append(f"EXIF orientation {orientation} applied")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if mode == "F" or arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            raise InputError(f"unsupported pixel format {mode} (values outside 0..65535).")
        grey = np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        notes.append("16-bit grey scaled to 8-bit RGB")
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        notes.append("palette converted to RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        im = Image.alpha_composite(background, rgba)
        notes.append("alpha composited over white")
    elif im.mode in ("L", "1"):
        notes.append("grey converted to RGB")
    elif im.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif im.mode != "RGB":
        notes.append(f"{im.mode} converted to RGB")
    # fromarray drops info (EXIF, ICC), so the stored PNG carries nothing to reinterpret.
    return Image.fromarray(np.asarray(im.convert("RGB")), "RGB")


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
