"""Turn an uploaded picture of a digit into a 28x28 MNIST-style image.

MNIST was made from NIST's black-and-white scans like this (LeCun et al.): each
digit was size-normalised to fit a 20x20 box keeping its aspect ratio
(anti-aliasing gives grey levels), then centred in a 28x28 field by its centre of
mass. The network learnt exactly that distribution, so an upload goes through
the same steps:

1. :func:`decode`: Pillow reads PNG/JPEG/GIF/BMP/WebP..., applies the EXIF
   orientation, drops colour, composites transparency onto a background of the
   opposite shade of the ink, and shrinks huge photos early.
2. :func:`to_mnist` (pure NumPy apart from the resampling):
   - **polarity**: MNIST is light ink on black. If the background (the median of
     the border pixels) is nearer the brightest pixel than the darkest, the image
     is dark-on-light and is inverted;
   - **levels**: the background goes to 0 and the strongest ink to 255; faint
     speckle is cleared;
   - **crop** to the bounding box of the ink;
   - **scale** so that the longer side is 20 pixels (aspect ratio kept; Lanczos
     resampling, which anti-aliases when shrinking);
   - **centre** by centre of mass: the 20x20-or-smaller patch is placed so that its
     centre of mass lands on (14, 14), where MNIST's own digits have theirs
     (measured on the test set: 13.99, 14.01), kept inside the 28x28 field.

Every function is pure: bytes or arrays in, arrays out, errors as exceptions.
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SIDE = 28
BOX = 20
CENTRE = 14.0
"""Where MNIST puts a digit's centre of mass (row and column, 0-based)."""

MAX_IMAGE_BYTES = 3 * 1024 * 1024
"""Largest upload accepted, in bytes (3 MiB); larger: 413."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest image accepted, in pixels (width x height, 16.8 megapixels); larger: 413.
Checked from the header, before the image is decoded."""
WORK_SIDE = 1024
"""Larger images are shrunk to this longer side before the NumPy steps."""

MIN_CONTRAST = 32
"""Ink must differ from the background by this many grey levels (of 255)."""
NOISE = 0.12
"""Ink weaker than this share of the strongest is cleared."""
INK = 0.25
"""The bounding box is that of the ink at least this share of the strongest."""


class ImageError(ValueError):
    """An upload that cannot become a digit; ``status`` is the HTTP answer."""

    status = 422


class ImageTooLarge(ImageError):
    status = 413


class UnreadableImage(ImageError):
    status = 415


class NoDigit(ImageError):
    status = 422


def decode(data: bytes) -> np.ndarray:
    """Bytes of an image file to a float32 grey-level array (0..255), any polarity."""
    if not data:
        raise NoDigit("the file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"image larger than {MAX_IMAGE_BYTES} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(
                    f"image of {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} pixels"
                )
            opened.draft("L", (WORK_SIDE, WORK_SIDE))  # JPEG: decode at a reduced size
            image = ImageOps.exif_transpose(opened)
            image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            image = image.convert("LA" if has_alpha else "L")
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage("not an image file Pillow can read (PNG, JPEG, ...)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise UnreadableImage(f"the image could not be decoded: {exc}") from None
    pixels = np.asarray(image, dtype=np.float32)
    if not has_alpha:
        return pixels
    return flatten_alpha(pixels[..., 0], pixels[..., 1] / 255.0)


def flatten_alpha(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white if the visible ink is dark, onto black if it is light, so
    that ink drawn on a transparent background stays visible either way."""
    if alpha.sum() == 0:
        return np.zeros_like(grey)
    ink_level = float((grey * alpha).sum() / alpha.sum())
    background = 255.0 if ink_level < 128 else 0.0
    return grey * alpha + background * (1.0 - alpha)


def light_on_dark(grey: np.ndarray) -> np.ndarray:
    """MNIST's polarity: invert when the border is nearer the brightest than the darkest."""
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    background = float(np.median(border))
    if background - float(grey.min()) > float(grey.max()) - background:
        return 255.0 - grey
    return grey


def ink_levels(grey: np.ndarray) -> np.ndarray:
    """Background to 0, strongest ink to 255, faint speckle cleared (light-on-dark input)."""
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    ink = np.clip(grey - float(np.median(border)), 0, None)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise NoDigit("no digit found: the image is blank or its ink too faint")
    ink *= 255.0 / strongest
    ink[ink < NOISE * 255.0] = 0.0
    return ink


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the ink at least ``INK`` of the strongest."""
    rows = np.flatnonzero((ink >= INK * 255.0).any(axis=1))
    cols = np.flatnonzero((ink >= INK * 255.0).any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def fit_box(patch: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so that the longer side is ``box`` pixels, keeping the aspect ratio."""
    height, width = patch.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(patch.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    out = np.clip(np.asarray(resized, dtype=np.float32), 0, 255)
    strongest = float(out.max())
    return out * (255.0 / strongest) if strongest > 0 else out


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean position."""
    total = float(image.sum())
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def place_by_centre_of_mass(patch: np.ndarray, side: int = SIDE) -> np.ndarray:
    """A ``side`` x ``side`` field with ``patch`` placed so that its centre of mass
    lands on (``CENTRE``, ``CENTRE``), shifted back inside if it would stick out."""
    height, width = patch.shape
    row, col = centre_of_mass(patch)
    top = min(max(round(CENTRE - row), 0), side - height)
    left = min(max(round(CENTRE - col), 0), side - width)
    field = np.zeros((side, side), dtype=np.float32)
    field[top : top + height, left : left + width] = patch
    return field


def to_mnist(grey: np.ndarray) -> np.ndarray:
    """A grey-level image of one digit, either polarity, to MNIST's 28x28 uint8 form."""
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise NoDigit("no digit found: the image has no pixels")
    ink = ink_levels(light_on_dark(grey.astype(np.float32)))
    field = place_by_centre_of_mass(fit_box(crop_to_ink(ink)))
    return np.rint(field).astype(np.uint8)


def image_to_mnist(data: bytes) -> np.ndarray:
    """Bytes of an uploaded image to the 28x28 uint8 array the model sees."""
    return to_mnist(decode(data))
