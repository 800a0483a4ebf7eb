"""MNIST test digits rendered the way people photograph or draw them."""

import io

import numpy as np
from PIL import Image, ImageFilter


def dark_on_light_png(
    digit: np.ndarray,
    scale: float,
    canvas: tuple[int, int],
    offset: tuple[int, int],
    paper: int = 255,
    fmt: str = "PNG",
) -> bytes:
    """A 784-pixel MNIST digit inverted (dark ink on paper), scaled by ``scale`` and
    pasted at ``offset`` (x, y) into a ``canvas`` (width, height) of shade ``paper``."""
    ink = 255 - np.asarray(digit, dtype=np.uint8).reshape(28, 28)
    side = round(28 * scale)
    big = Image.fromarray(ink).resize((side, side), Image.Resampling.BICUBIC)
    sheet = Image.new("L", canvas, paper)
    # the digit's own background is white: darken-only paste keeps the paper's shade
    region = (offset[0], offset[1], offset[0] + side, offset[1] + side)
    sheet.paste(
        Image.fromarray(np.minimum(np.asarray(sheet.crop(region)), np.asarray(big))), region
    )
    buffer = io.BytesIO()
    sheet.convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def random_rendering(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Scaled 2x to 6x, anywhere on a canvas up to 320x240, on white or grey paper."""
    scale = float(rng.uniform(2, 6))
    side = round(28 * scale)
    width, height = int(rng.integers(side, 320)), int(rng.integers(side, 240))
    width, height = max(width, side + 1), max(height, side + 1)
    offset = (int(rng.integers(0, width - side)), int(rng.integers(0, height - side)))
    return dark_on_light_png(
        digit, scale, (width, height), offset, paper=int(rng.integers(180, 256))
    )


def photographed(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit drawn dark on light paper and photographed with a phone: grey paper lit
    unevenly from one side, grey ink, the lens's blur, sensor noise, a JPEG."""
    side = int(rng.integers(120, 200))
    ink = Image.fromarray(255 - np.asarray(digit, dtype=np.uint8).reshape(28, 28))
    sheet = np.asarray(ink.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    paper, pen = float(rng.uniform(200, 240)), float(rng.uniform(40, 90))
    shade = pen + sheet * ((paper - pen) / 255.0)
    light = np.linspace(float(rng.uniform(0.7, 0.85)), 1.0, side, dtype=np.float32)
    lit = shade * (light[None, :] if rng.random() < 0.5 else light[:, None])
    noisy = lit + rng.normal(0.0, 6.0, lit.shape).astype(np.float32)
    picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 2.0))))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, "JPEG", quality=int(rng.integers(60, 85)))
    return buffer.getvalue()


def shifted(images: np.ndarray, pixels: int = 6) -> np.ndarray:
    """Each digit moved ``pixels`` to the right (what falls off the edge is lost)."""
    square = images.reshape(-1, 28, 28)
    out = np.zeros_like(square)
    out[:, :, pixels:] = square[:, :, :-pixels]
    return out.reshape(len(images), 784)


def thickened(images: np.ndarray) -> np.ndarray:
    """Each stroke grown by a pixel all round (a 3x3 maximum filter): a thick pen."""
    square = images.reshape(-1, 28, 28)
    padded = np.pad(square, ((0, 0), (1, 1), (1, 1)))
    grown = np.max([padded[:, r : r + 28, c : c + 28] for r in range(3) for c in range(3)], axis=0)
    return grown.reshape(len(images), 784)
