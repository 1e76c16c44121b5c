"""Hand-made PNG files for tests of hostile input (shared by tests; imported as a module).

Written byte by byte here, not with the engine's own writer (engine/imageio.py), so that a bug in
that writer cannot make a reader test agree with it.
"""
from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC over type and body."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def header_only_png(width: int, height: int, bit_depth: int = 8, colour_type: int = 2,
                    idat: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose pixel data is ``idat`` (zlib-
    compressed here): a decompression bomb's header, which a reader must refuse before it
    allocates the image."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b"")
