"""Still images: the one owner of Pillow. What an image file is, and its pixels in display orientation.

Every stage reads a still through here (curate probes and scores it, caption and train decode it), so an image
looks the same everywhere: EXIF orientation applied, transparency composited on white, 16-bit and palette
images as 8-bit RGB, the first frame of an animated or multi-page file. Usage::

    info = probe_image("photo.jpg")              # ImageInfo: format, display size, rotation, ... (header only)
    rgb = read_image("photo.jpg", size=(320, 240))   # (H, W, 3) uint8, display orientation, resized

A file is opened only with the decoders of :data:`FORMATS`, whatever its name: a video named ``.jpg`` (or a
still named ``.mp4``, which curate's video probe refuses) is an :class:`ImageError` naming the file and the fix.
Pillow is HPND-licensed (MIT-like).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

# Names curate treats as stills (the content must then be one of FORMATS).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# Pillow decoders allowed to open a still (a camera's MPO opens through JPEG).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
# Larger images are refused before decoding (a decompression bomb, or a scan no training set needs whole).
MAX_PIXELS = 150_000_000
# EXIF orientation tag -> (clockwise rotation in degrees, mirrored)
_ORIENTATION = {1: (0, False), 2: (0, True), 3: (180, False), 4: (180, True), 5: (90, True), 6: (90, False),
                7: (270, True), 8: (270, False)}


class ImageError(ValueError):
    """A still image is missing, unreadable, too large or not an image; the message names the file and the fix."""


@dataclass(frozen=True)
class ImageInfo:
    """Facts about one still image, from its header. Sizes are pixels."""

    format: str  # Pillow's format name: JPEG, PNG, WEBP, BMP, TIFF (MPO: a JPEG with a second view)
    mode: str  # Pillow's pixel mode: RGB, RGBA, L, P, I;16, CMYK, ...
    coded_width_px: int
    coded_height_px: int
    width_px: int  # display size: EXIF orientation applied
    height_px: int
    rotation_deg: int  # clockwise, from the EXIF orientation (0 without one)
    bit_depth: int
    frames: int  # frames in the file (an animated WebP/PNG or a multi-page TIFF: only the first is used)


def is_image_name(path: str) -> bool:
    """Whether ``path`` is named like a still image (curate then reads it as one)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def _open(path: str):
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ImageError(f"{path} does not exist or is not a file; check the path")
    Image.init()  # register every plugin (WebP, TIFF, MPO are not among the few Pillow preloads)
    try:
        img = Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError as exc:  # Pillow's own limit (~179M pixels) came first
        raise ImageError(f"{path} is too large to decode safely ({exc}); downscale it (e.g. to a 4096 px long side) "
                         f"or remove it from the input") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not a {', '.join(FORMATS)} image (named like one); rename it to what it is, "
                         f"or remove it from the input") from None
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}; re-copy it or remove it from the input") from exc
    if img.width * img.height > MAX_PIXELS:
        img.close()
        raise ImageError(f"{path} is {img.width}x{img.height} px, more than {MAX_PIXELS:,} pixels; downscale it "
                         f"(e.g. to a 4096 px long side) or remove it from the input")
    return img


def _bit_depth(mode: str) -> int:
    return 16 if mode.startswith("I;16") or mode in ("I", "RGB;16") else 32 if mode == "F" else \
        1 if mode == "1" else 8


def probe_image(path: str) -> ImageInfo:
    """Header facts of the still ``path`` (no pixels decoded); raises :class:`ImageError`."""
    with _open(path) as img:
        orientation = img.getexif().get(0x0112, 1) if img.format in ("JPEG", "MPO", "WEBP", "TIFF", "PNG") else 1
        rotation, _ = _ORIENTATION.get(orientation, (0, False))
        w, h = img.size
        disp = (h, w) if rotation in (90, 270) else (w, h)
        return ImageInfo(img.format, img.mode, w, h, disp[0], disp[1], rotation, _bit_depth(img.mode),
                         int(getattr(img, "n_frames", 1) or 1))


def read_image(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Pixels of the still ``path``: (H, W, 3) uint8 in display orientation, resized to ``size`` (width, height)
    with an area filter when given; raises :class:`ImageError` when it does not decode."""
    from PIL import Image, ImageOps

    with _open(path) as img:
        try:
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _rgb(img)
            if size is not None and tuple(size) != img.size:
                img = img.resize(tuple(int(s) for s in size), Image.Resampling.BOX if size[0] < img.width
                                 else Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.uint8).copy()
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged data
            raise ImageError(f"cannot decode image {path}: {exc}; re-copy it or remove it from the input") from exc


def _rgb(img):
    """8-bit RGB: transparency composited on white, 16-bit and float scaled down, palettes and CMYK converted."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale to 8 bits, not clip
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray((arr / (65535.0 if arr.max() > 255 else 255.0) * 255).round().clip(0, 255)
                              .astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(np.asarray(img).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
