"""Images built to cost as much as the limits allow, or to sit just outside them; and files that
Pillow recognises by their first bytes but whose decoders fail in ways of their own."""

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


def dds_without_a_pixel_format() -> bytes:
    """A 64 x 64 DDS whose pixel format has no flags: Pillow raises NotImplementedError on opening it."""
    header = struct.pack("<4s7I44x", b"DDS ", 124, 0x1007, 64, 64, 0, 0, 0)
    pixel_format = struct.pack("<2I4s5I", 32, 0, b"\0" * 4, 0, 0, 0, 0, 0)
    caps = struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    return header + pixel_format + caps + bytes(64 * 64 * 4)


def blp_of_an_unknown_encoding() -> bytes:
    """A 64 x 64 BLP2 of encoding 9, which opens but raises BLPFormatError on decoding."""
    return b"BLP2" + struct.pack("<i4B2I", 1, 9, 0, 0, 0, 64, 64) + bytes(16 * 4 * 2 + 2000)


def spider_image_of_no_stack() -> bytes:
    """A 64 x 64 SPIDER image that says it is in a stack without one: AttributeError on opening."""
    header = [0.0] * 27
    header[0], header[1], header[4], header[11] = 1.0, 64.0, 1.0, 64.0  # 1 slice of 64 rows, 2D, 64 columns
    header[12] = 1.0  # 1 header record
    header[21] = header[22] = 256.0  # header and record length in bytes
    header[26] = 1.0  # image number 1 of a stack, with no stack
    return struct.pack(">27f", *header).ljust(256, b"\0") + bytes(64 * 64 * 4)


def avif_of_broken_pictures() -> bytes:
    """A 16 x 16 AVIF whose coded picture is zeros: RuntimeError from the AV1 decoder. Made with
    Pillow's AVIF encoder, which its wheels include."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(out, "AVIF")
    data = out.getvalue()
    picture = data.index(b"mdat") + 4
    return data[:picture] + bytes(len(data) - picture)


def undecodable() -> dict[str, bytes]:
    """Files in formats koclip does not read, each of which once escaped `open_image` as a traceback."""
    return {
        "DDS": dds_without_a_pixel_format(),
        "BLP": blp_of_an_unknown_encoding(),
        "SPIDER": spider_image_of_no_stack(),
        "AVIF": avif_of_broken_pictures(),
    }


if __name__ == "__main__":
    data = worst_under_the_limits()
    print(len(data))
    from PIL import Image

    print(Image.open(io.BytesIO(data)).mode, Image.open(io.BytesIO(data)).size)
