"""MNIST test digits rendered the way people photograph or draw them."""

import io

import numpy as np
from PIL import Image


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
