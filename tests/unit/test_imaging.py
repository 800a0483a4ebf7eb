"""api/imaging.py: uploads become MNIST-style 28x28 digits, as MNIST itself was made."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from api import imaging
from bench import hostile
from shared.data.mnist import Mnist
from tests.digits import dark_on_light_png
from tests.procs import REPO


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    (image.convert(mode) if mode else image).save(buffer, "PNG")
    return buffer.getvalue()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a).astype(float), np.ravel(b).astype(float))[0, 1])


def _near(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation of ``b`` shifted by at most one pixel (centring rounds)."""
    b = np.asarray(b).reshape(28, 28)
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return max(_corr(a, np.roll(b, shift, axis=(0, 1))) for shift in shifts)


def test_mnist_digits_are_a_near_fixed_point(mnist_data: Mnist) -> None:
    """MNIST digits already fit 20x20 and sit at their centre of mass: little changes."""
    digits = mnist_data.test_images[:200]
    out = np.stack([imaging.to_mnist(d.reshape(28, 28).astype(np.float32)) for d in digits])
    assert out.shape == (200, 28, 28) and out.dtype == np.uint8
    assert np.mean([_corr(a, b) for a, b in zip(digits, out, strict=True)]) > 0.95


def test_dark_on_light_shifted_and_scaled_comes_back(mnist_data: Mnist) -> None:
    for digit in mnist_data.test_images[:20]:
        a = imaging.image_to_mnist(dark_on_light_png(digit, 4, (300, 200), (10, 70)))
        b = imaging.image_to_mnist(dark_on_light_png(digit, 4, (300, 200), (180, 5)))
        np.testing.assert_array_equal(a, b)  # where it sits on the page does not matter
        c = imaging.image_to_mnist(dark_on_light_png(digit, 3, (150, 400), (20, 300), paper=200))
        assert _near(a, c) > 0.9  # nor its size, nor the paper's shade
        assert _near(a, digit) > 0.85  # and it looks like the original


def test_output_is_centred_by_mass_and_fits_20x20(mnist_data: Mnist) -> None:
    for digit in mnist_data.test_images[:50]:
        out = imaging.image_to_mnist(dark_on_light_png(digit, 5, (400, 300), (37, 91)))
        row, col = imaging.centre_of_mass(out.astype(np.float64))
        assert abs(row - 14) <= 1 and abs(col - 14) <= 1
        rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21
        assert out.max() == 255


def test_aspect_ratio_is_kept() -> None:
    """A tall thin bar (a '1') stays a tall thin bar: 20 high, not stretched to 20 wide."""
    sheet = np.full((300, 300), 255, np.uint8)
    sheet[50:250, 140:160] = 0  # 200 x 20, dark on white
    out = imaging.image_to_mnist(_png(sheet))
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20
    assert cols[-1] - cols[0] + 1 <= 3
    assert abs(imaging.centre_of_mass(out.astype(np.float64))[1] - 14) <= 1


def test_polarity_colour_and_transparency(mnist_data: Mnist) -> None:
    digit = mnist_data.test_images[0].reshape(28, 28)
    big = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC))
    light_on_dark = imaging.image_to_mnist(_png(big))
    for data in (
        _png(255 - big),  # dark on light
        _png(255 - big, "RGB"),
        _png(np.stack([big, big, big, np.full_like(big, 255)], axis=-1)),  # opaque RGBA
        # ink as alpha: black strokes on a transparent canvas, and white ones
        _png(np.stack([np.zeros_like(big)] * 3 + [big], axis=-1)),
        _png(np.stack([np.full_like(big, 255)] * 3 + [big], axis=-1)),
    ):
        assert _corr(imaging.image_to_mnist(data), light_on_dark) > 0.97
    jpeg = io.BytesIO()
    Image.fromarray(255 - big).save(jpeg, "JPEG", quality=80)
    assert _corr(imaging.image_to_mnist(jpeg.getvalue()), light_on_dark) > 0.9


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", imaging.NoDigit, "empty"),
        (b"this is not an image at all", imaging.UnreadableImage, "not an image"),
        (_png(np.zeros((50, 50)))[:60], imaging.UnreadableImage, "could not be decoded"),
        (_png(np.full((50, 50), 255)), imaging.NoDigit, "no digit"),
        (_png(np.full((50, 50), 90)), imaging.NoDigit, "no digit"),
        (b"\x89PNG" + bytes(imaging.MAX_IMAGE_BYTES), imaging.ImageTooLarge, "bytes"),
    ],
    ids=["empty", "garbage", "truncated", "blank-white", "blank-grey", "too-many-bytes"],
)
def test_bad_uploads(data: bytes, error: type[imaging.ImageError], message: str) -> None:
    with pytest.raises(error, match=message):
        imaging.image_to_mnist(data)


def test_too_many_pixels_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("1", (8000, 4000)).save(buffer, "PNG")  # a few kB on disk, 32 megapixels
    assert len(buffer.getvalue()) < imaging.MAX_IMAGE_BYTES
    with pytest.raises(imaging.ImageTooLarge, match="8000x4000"):
        imaging.image_to_mnist(buffer.getvalue())
    assert imaging.ImageTooLarge.status == 413 and imaging.UnreadableImage.status == 415


def test_long_sides_and_bombs_are_413_from_the_header() -> None:
    """Issue 10: a 16 KB PNG of 1 x 16,777,216 pixels (within the pixel count) cost
    +256 MB to decode; a 30000x30000 one trips Pillow's bomb check, which was a 415."""
    for data, message in (
        (hostile.one_row_grey(), "pixels a side"),
        (hostile.one_row_rgba16(), "pixels a side"),
        (hostile.png(8193, 100), "pixels a side"),
        (hostile.bomb(), "decompression-bomb"),
    ):
        assert len(data) < imaging.MAX_IMAGE_BYTES
        with pytest.raises(imaging.ImageTooLarge, match=message):
            imaging.decode(data)


def test_a_large_16_bit_rgba_picture_decodes_within_its_bound() -> None:
    """4096x4096 16-bit RGBA is within the limits: it is decoded (blank: no digit), and
    the decode's peak is measured in a fresh process (getrusage), where nothing else
    muddles it: the picture (64 MB) and two 8-bit planes, not 200+ MB as before."""
    code = (
        "import resource, sys\n"
        "from api import imaging\n"
        "from bench import hostile\n"
        "data = hostile.square_rgba16()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "grey = imaging.decode(data)\n"
        "assert grey.shape == (1024, 1024) and grey.max() == 0, grey.shape\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    growth_mb = float(out.stdout.split()[-1])
    assert growth_mb < 150, f"decoding 4096x4096 RGBA grew the process by {growth_mb:.0f} MB"


def test_transparency_shrunk_premultiplied_equals_compositing_first() -> None:
    """Large RGBA pictures are shrunk as grey·alpha and alpha planes: the same as
    compositing at full size and shrinking then (up to 8-bit rounding)."""
    side = 2 * imaging.WORK_SIDE  # shrunk by 2
    alpha = np.zeros((side, side), np.uint8)
    # odd bounds: the 2x2 blocks that are averaged mix ink with invisible pixels
    alpha[601:1401, 901:1101] = 255  # a bar of opaque ink ...
    alpha[601:1401, 1101:1110] = 128  # ... with a half-transparent edge
    grey = np.full((side, side), 255, np.uint8)  # invisible white: must not bleed in
    grey[alpha > 0] = 20  # dark ink
    data = _png(np.stack([grey, grey, grey, alpha], axis=-1))
    out = imaging.decode(data)
    a = alpha / 255.0
    composited = grey * a + 255.0 * (1 - a)  # dark ink: onto white
    expected = composited.reshape(imaging.WORK_SIDE, 2, imaging.WORK_SIDE, 2).mean(axis=(1, 3))
    assert out.shape == expected.shape and out.dtype == np.float32
    assert np.abs(out - expected).max() <= 2.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pillow_applies_it(orientation: int) -> None:
    grey = np.zeros((60, 90), np.uint8)
    grey[5:20, 10:70] = 200  # not symmetric under any flip or rotation
    grey[20:55, 10:25] = 120
    image = Image.fromarray(grey)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
    np.testing.assert_array_equal(imaging.decode(buffer.getvalue()), expected)
