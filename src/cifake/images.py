"""Decoding images: any file Pillow reads becomes a (32, 32, 3) uint8 RGB array.

Training, evaluation and prediction all decode through :func:`decode_image`, so
an image is resized the same way everywhere. Labels: 0 = Real, 1 = Fake (the
positive class), mapped explicitly from the folder names, whatever order a
directory listing gives.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifake.errors import CifakeError

IMAGE_SIZE = 32
CLASSES = ("REAL", "FAKE")
LABEL_OF_CLASS = {"REAL": 0, "FAKE": 1}
LABEL_NAMES = ("Real", "Fake")  # index = label; what the CSVs say
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# Header-declared size above which an image is refused before any pixel is decoded.
MAX_PIXELS = 64_000_000


class ImageError(CifakeError, ValueError):
    """An input file that is not a usable image; the message says why."""


def decode_image(data: bytes) -> np.ndarray:
    """Decode any image Pillow reads into a ``(32, 32, 3)`` uint8 RGB array.

    EXIF orientation is applied; animated images give their first frame; grey,
    palette, CMYK, alpha and 16-bit images are converted to 8-bit RGB; other sizes
    are resized with bicubic, antialiased resampling (the same for training and
    prediction). Raises :class:`ImageError` for empty, corrupt, truncated,
    non-image or absurdly large inputs.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"refused: header claims {width}x{height} pixels (limit {MAX_PIXELS:,})")
                if img.format == "JPEG":
                    img.draft("RGB", (IMAGE_SIZE * 2, IMAGE_SIZE * 2))
                img.load()
                rgb = _to_rgb(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can identify") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


# Inputs much larger than CIFAKE's 32x32 (a longer side of 4x or more) lose their detail when downscaled:
# the detector then judges a thumbnail of a kind it never saw, and is at chance (the model card measures it).
MUCH_LARGER = 4 * IMAGE_SIZE


def source_size(source: bytes | str | Path) -> tuple[int, int, str] | None:
    """(width, height, mode) of image bytes or a file, from its header alone; None if unreadable."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return img.size[0], img.size[1], img.mode
    except Exception:  # any failure is the decoder's to report
        return None


def much_larger(source: bytes | str | Path) -> bool:
    """True for an image (bytes or a file) whose longer side is at least :data:`MUCH_LARGER` pixels."""
    size = source_size(source)
    return size is not None and max(size[:2]) >= MUCH_LARGER


def load_image(path: str | Path) -> np.ndarray:
    """Read and decode one file; see :func:`decode_image`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from None
    return decode_image(data)
