"""The binary body format, client side (stdlib only; mirrors ``engine/server/wire.py``).

A frame is a 4-byte big-endian header length N, N bytes of UTF-8 JSON, then raw bytes:
pixels row-major with interleaved channels (little-endian for u16/f32), then optional
extras (the u8 mask in a request; the u8 review map, then the u8 defect mask, in a result).
"""
from __future__ import annotations

import json
import struct

DTYPE_SIZE = {"u8": 1, "u16": 2, "f32": 4}
CHANNELS = (1, 2, 3, 4)
ORDERS = ("RGBA", "BGRA")


def pixel_bytes(width: int, height: int, channels: int, dtype: str) -> int:
    """How many bytes the pixels of a layer of this shape take on the wire."""
    return int(width) * int(height) * int(channels) * DTYPE_SIZE[dtype]


def frame_prefix(header: dict) -> bytes:
    """Length prefix + JSON header; the payload parts are sent after it unchanged."""
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return struct.pack(">I", len(h)) + h


def split_frame(body: bytes):
    """(header dict, memoryview of the payload) of a whole frame."""
    if len(body) < 4:
        raise ValueError("frame too short")
    (n,) = struct.unpack(">I", body[:4])
    if 4 + n > len(body):
        raise ValueError("frame header longer than the frame")
    header = json.loads(body[4:4 + n].decode("utf-8"))
    return header, memoryview(body)[4 + n:]
