"""Turn an uploaded picture of a digit into a 28x28 MNIST-style image.

MNIST was made from NIST's black-and-white scans like this (LeCun et al.): each
digit was size-normalised to fit a 20x20 box keeping its aspect ratio
(anti-aliasing gives grey levels), then centred in a 28x28 field by its centre of
mass. The network learnt exactly that distribution, so an upload goes through
the same steps:

1. :func:`decode`: Pillow reads PNG/JPEG/GIF/BMP/WebP..., drops colour, shrinks
   large pictures to ``WORK_SIDE`` at once (8-bit, before any float), applies the
   EXIF orientation, and composites transparency onto a background of the opposite
   shade of the ink.
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
from PIL import Image, ImageChops, UnidentifiedImageError

SIDE = 28
BOX = 20
CENTRE = 14.0
"""Where MNIST puts a digit's centre of mass (row and column, 0-based)."""

MAX_IMAGE_BYTES = 3 * 1024 * 1024
"""Largest upload accepted, in bytes (3 MiB); larger: 413."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest image accepted, in pixels (width x height, 16.8 megapixels); larger: 413.
Checked from the header, before the image is decoded."""
MAX_IMAGE_SIDE = 8192
"""Longest side accepted, in pixels; longer: 413. Pillow decodes a PNG row by row
into buffers of a whole row each, so a 1 x 16,777,216 16-bit RGBA picture (a 130 KB
file) would need two buffers of 128 MB; at 8192 pixels they are 64 KB."""
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
    """Bytes of an image file to a float32 grey-level array (0..255), any polarity.

    Memory is bounded by the limits, not by what the file declares. The size is read
    from the header and checked (``MAX_IMAGE_PIXELS``, ``MAX_IMAGE_SIDE``, Pillow's own
    decompression-bomb threshold: all 413) before any pixel is decoded. A JPEG is
    decoded at a reduced scale (``draft``). Anything else is decoded whole (Pillow
    cannot do less for PNG) and at once split into 8-bit grey (and alpha), which are
    shrunk to ``WORK_SIDE`` (``thumbnail``, reducing by whole factors first) before
    the orientation is applied and before anything becomes float32. The peak is the
    decoded picture (at most ``MAX_IMAGE_PIXELS`` x 4 bytes: 64 MB) plus two 8-bit
    planes of it, and Pillow's row buffers (at most ``MAX_IMAGE_SIDE`` x 8 bytes each).
    """
    if not data:
        raise NoDigit("the file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"image larger than {MAX_IMAGE_BYTES} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            check_size(*opened.size)
            opened.draft("L", (WORK_SIDE, WORK_SIDE))  # JPEG: decode at a reduced size
            opened.load()
            orientation = EXIF_TRANSPOSE.get(opened.getexif().get(ORIENTATION, 1))
            grey, alpha = grey_planes(opened)
            del opened  # the full-size decoded picture: only the 8-bit planes stay
            if alpha is not None:  # premultiplied: see grey_planes
                grey = ImageChops.multiply(grey, alpha)
            planes = [shrink(plane, orientation) for plane in (grey, alpha) if plane]
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"image above Pillow's decompression-bomb limit ({Image.MAX_IMAGE_PIXELS} "
            f"pixels); at most {MAX_IMAGE_PIXELS} pixels"
        ) from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image file Pillow can read (PNG, JPEG, ...)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise UnreadableImage(f"the image could not be decoded: {exc}") from None
    if len(planes) == 1:
        return planes[0].astype(np.float32)
    ink, coverage = planes
    return flatten_premultiplied(ink.astype(np.float32), coverage / np.float32(255.0))


ORIENTATION = 0x0112
"""The EXIF tag of the camera's orientation."""
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""What ``ImageOps.exif_transpose`` does for each orientation, applied here to the
shrunk planes rather than to a full-size copy of the picture."""


def check_size(width: int, height: int) -> None:
    """413 for a picture whose header declares too many pixels or too long a side."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(f"image of {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} pixels")
    if max(width, height) > MAX_IMAGE_SIDE:
        raise ImageTooLarge(
            f"image of {width}x{height} pixels; at most {MAX_IMAGE_SIDE} pixels a side"
        )


def grey_planes(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """8-bit planes of a decoded picture: its grey levels, and its alpha if it has
    transparency.

    The caller multiplies grey by alpha before shrinking, because shrinking averages
    pixels: averaged grey·alpha and alpha give exactly what compositing at full size
    and then shrinking would, and the grey of invisible pixels does not bleed into
    the ink (what Pillow's own RGBA resize does with a full-size premultiplied copy,
    4 bytes a pixel; these planes are 1 byte).
    """
    if not (image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info):
        return image.convert("L"), None
    if image.mode not in ("RGBA", "LA"):
        image = image.convert("RGBA")  # a palette or a transparent colour
    return image.convert("L"), image.getchannel("A")


def shrink(plane: Image.Image, orientation: Image.Transpose | None) -> np.ndarray:
    """An 8-bit plane fitted into ``WORK_SIDE`` (box filter: linear, so premultiplied
    planes stay premultiplied) and turned upright, as a uint8 array."""
    plane.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
    if orientation is not None:
        plane = plane.transpose(orientation)
    return np.asarray(plane, dtype=np.uint8)


def flatten_alpha(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white if the visible ink is dark, onto black if it is light, so
    that ink drawn on a transparent background stays visible either way."""
    return flatten_premultiplied(grey * alpha, alpha)


def flatten_premultiplied(ink: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """:func:`flatten_alpha` of grey levels already multiplied by ``alpha`` (0..1)."""
    if alpha.sum() == 0:
        return np.zeros_like(ink)
    ink_level = float(ink.sum() / alpha.sum())
    background = 255.0 if ink_level < 128 else 0.0
    return ink + background * (1.0 - alpha)


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
