"""api/imaging.py: uploads become MNIST-style 28x28 digits, as MNIST itself was made."""

import io

import numpy as np
import pytest
from PIL import Image

from api import imaging
from shared.mnist import Mnist
from tests.digits import dark_on_light_png


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
