"""Rectangles and row-major buffers: the selection box, the context region, crops.

Both hosts send the engine the selection's bounding box grown by the model's margin (so tile
borders see real context) and clamped to the layer or document, then cut the margin away
again from what comes back. Written once here so Krita and GIMP cut the same pixels.

A box is ``(x, y, width, height)`` in the host's pixel coordinates (Krita: document, GIMP:
drawable). Buffers are row-major with ``px_bytes`` bytes per pixel, no row padding.
"""
from __future__ import annotations

from typing import Optional

Box = tuple[int, int, int, int]


def clamp_box(box: Box, width: int, height: int) -> Optional[Box]:
    """``box`` cut to ``[0, width) x [0, height)``; None when nothing of it is left."""
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def context_region(box: Box, margin: int, width: int, height: int) -> Box:
    """The region to send: ``box`` grown by ``margin`` on every side, clamped to the image."""
    m = max(0, int(margin))
    x, y, w, h = box
    x0, y0 = max(0, x - m), max(0, y - m)
    x1, y1 = min(width, x + w + m), min(height, y + h + m)
    return (x0, y0, x1 - x0, y1 - y0)


def scale_box(box: Box, scale: int) -> Box:
    x, y, w, h = box
    return (x * scale, y * scale, w * scale, h * scale)


def box_within(inner: Box, outer: Box) -> Box:
    """``inner`` in the coordinates of ``outer``'s top-left corner (both in one space)."""
    return (inner[0] - outer[0], inner[1] - outer[1], inner[2], inner[3])


def crop(data: bytes, width: int, px_bytes: int, box: Box) -> bytes:
    """The pixels of ``box`` (relative to the buffer) from a row-major buffer ``width`` pixels
    wide; a box as wide as the buffer is one slice."""
    x, y, w, h = box
    row = width * px_bytes
    if x == 0 and w == width:
        return bytes(data[y * row:(y + h) * row])
    return b"".join(data[(y + j) * row + x * px_bytes:(y + j) * row + (x + w) * px_bytes] for j in range(h))


def upsample_nearest(data: bytes, width: int, height: int, scale: int) -> bytes:
    """A 1-byte-per-pixel map ``scale`` times larger, each pixel repeated (a selection that
    must follow an image the host scaled)."""
    out = bytearray()
    for y in range(height):
        big = bytes(b for b in data[y * width:(y + 1) * width] for _ in range(scale))
        out += big * scale
    return bytes(out)
