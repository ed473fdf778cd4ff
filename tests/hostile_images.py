"""Images built to cost as much as the limits allow, or to sit just outside them."""

from __future__ import annotations

import io
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, colour_type: int = 6, bit_depth: int = 16) -> bytes:
    """A PNG of one flat colour written row by row, so that even a 40-megapixel, 16-bit RGBA image
    takes a few hundred kilobytes on disk and little memory to make."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\x00" + bytes([0x80, 0x40]) * (width * channels * bit_depth // 16)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def worst_under_the_limits() -> bytes:
    """6,300 x 6,300 16-bit RGBA: 39.7 megapixels, just under the 40 MP limit."""
    return png(6300, 6300)


if __name__ == "__main__":
    data = worst_under_the_limits()
    print(len(data))
    from PIL import Image

    print(Image.open(io.BytesIO(data)).mode, Image.open(io.BytesIO(data)).size)
