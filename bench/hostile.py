"""Small files that decode huge, and requests that never end (issue 10), written from
scratch so that neither the benchmark nor the tests need Pillow to make them.

A PNG is a signature, an ``IHDR`` chunk (size, bit depth, colour type), ``IDAT``
chunks holding the deflated rows (each row a filter byte then its pixels) and
``IEND``. Rows of zeros deflate about 1,000:1, so a few hundred KB can declare
hundreds of MB of pixels; the rows are fed to zlib one at a time, so making one
costs no more memory than one row.
"""

import socket
import struct
import time
import zlib

GREY, RGBA = 0, 6
"""PNG colour types used here."""
_CHANNELS = {GREY: 1, RGBA: 4}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, *, bit_depth: int = 8, colour: int = GREY) -> bytes:
    """A valid PNG of ``width`` x ``height`` black (zero) pixels."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    row = bytes(1 + width * _CHANNELS[colour] * bit_depth // 8)
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(row) for _ in range(height)]
    parts.append(deflate.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def one_row_grey() -> bytes:
    """1 x 16,777,216 8-bit grey: ~16 KB of file, 16 MB of pixels in one row."""
    return png(16_777_216, 1)


def one_row_rgba16() -> bytes:
    """1 x 16,777,216 16-bit RGBA: ~130 KB of file, one 128 MB row (the issue's +500 MB)."""
    return png(16_777_216, 1, bit_depth=16, colour=RGBA)


def square_rgba16(side: int = 4096) -> bytes:
    """``side`` x ``side`` 16-bit RGBA: within the pixel limit, 64 MB once decoded."""
    return png(side, side, bit_depth=16, colour=RGBA)


def bomb(side: int = 30_000) -> bytes:
    """``side`` x ``side`` 8-bit grey (900 megapixels for 30,000): above Pillow's
    decompression-bomb threshold; under 1 MB of file."""
    return png(side, side)


def endless_header(port: int, seconds: float, chunk: int = 64 * 1024) -> tuple[int, str]:
    """Send one request whose header never ends, for at most ``seconds``.

    Returns (bytes sent, outcome): the server's status line if it answered, or how
    the connection ended (``closed``, ``reset``, ``still open``).
    """
    filler = b"X-Filler: " + b"a" * (chunk - 12) + b"\r\n"
    sent = 0
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(1.0)
        try:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() < deadline:
                sock.sendall(filler)
                sent += len(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except TimeoutError:
            pass  # the server stopped reading: it holds no more of ours
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            return sent, "reset"
        except TimeoutError:
            return sent, "still open"
    if not answer:
        return sent, "closed"
    return sent, answer.split(b"\r\n", 1)[0].decode(errors="replace")
