"""Pixel arithmetic on plain bytes, for hosts whose Python has no numpy (Krita, GIMP).

Sample sizes, the mask products both hosts need (the defect mask times the selection; a
layer's alpha times the selection when no mask can be made), half-float conversion (Krita's
F16 travels as f32: the wire has u8/u16/f32 only), the sRGB transfer (the models expect
sRGB-encoded values; Krita's linear-light profiles are converted on the way) and the red
review overlay. Little-endian samples, interleaved channels, the alpha channel last.
"""
from __future__ import annotations

import struct
import sys
from array import array
from typing import Optional

# Bytes per sample of every dtype a host holds (the wire's are u8, u16 and f32).
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
_ARRAY_CODE = {"u8": "B", "u16": "H", "f32": "f"}
_HALF_MAX = 65504.0


def bytes_per_pixel(channels: int, dtype: str) -> int:
    return int(channels) * SAMPLE_BYTES[dtype]


def multiply_masks(a: bytes, b: bytes) -> bytes:
    """Product of two u8 masks of one size (255 = 1), rounded: e.g. the defect mask times the
    selection."""
    if len(a) != len(b):
        raise ValueError(f"masks of {len(a)} and {len(b)} bytes cannot be multiplied")
    if not a.translate(None, b"\x00\xff"):
        # a is only 0 and 255 (restore-dust's mask today): the product is b where a is 255,
        # a bitwise AND, done on two big integers in C instead of a Python loop
        return (int.from_bytes(a, "big") & int.from_bytes(b, "big")).to_bytes(len(a), "big")
    return bytes((x * y + 127) // 255 for x, y in zip(a, b))


def _native_array(code: str, data: bytes) -> array:
    arr = array(code)
    arr.frombytes(data)
    if sys.byteorder != "little" and code != "B":  # pragma: no cover - no big-endian hosts today
        arr.byteswap()
    return arr


def _little_bytes(arr: array) -> bytes:
    if sys.byteorder != "little" and arr.typecode != "B":  # pragma: no cover
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def alpha_times(data: bytes, dtype: str, selection: bytes, channels: int = 4) -> bytes:
    """Pixels with their alpha (the last channel) multiplied by a u8 selection, one byte per
    pixel (integers rounded as ``multiply_masks`` does). For a host that cannot make a mask."""
    a = channels - 1
    if dtype == "u8":
        out = bytearray(data)
        for i, s in enumerate(selection):
            j = channels * i + a
            out[j] = (out[j] * s + 127) // 255
        return bytes(out)
    if dtype == "f16":
        vals = list(struct.unpack(f"<{len(data) // 2}e", data))
        for i, s in enumerate(selection):
            vals[channels * i + a] *= s / 255.0
        return struct.pack(f"<{len(vals)}e", *vals)
    arr = _native_array(_ARRAY_CODE[dtype], data)
    for i, s in enumerate(selection):
        j = channels * i + a
        arr[j] = (arr[j] * s + 127) // 255 if dtype == "u16" else arr[j] * (s / 255.0)
    return _little_bytes(arr)


def to_rgba8(data: bytes, dtype: str, order: str = "RGBA") -> bytes:
    """4-channel pixels of any host depth (u8 / u16 / f16 / f32, RGBA or Krita's BGRA) as RGBA
    u8: what a colour-hints layer is sent as (hints are colours a retoucher painted, so 8
    bits are plenty)."""
    if dtype == "u8":
        out = bytearray(data)
    elif dtype == "u16":
        out = bytearray((v * 255 + 32767) // 65535 for v in _native_array("H", data))
    else:
        vals = struct.unpack(f"<{len(data) // 2}e", data) if dtype == "f16" else _native_array("f", data)
        out = bytearray(min(255, max(0, int(v * 255.0 + 0.5))) if v == v else 0 for v in vals)
    if order == "BGRA":
        out[0::4], out[2::4] = out[2::4], out[0::4]
    return bytes(out)


def f16_to_f32(data: bytes) -> bytes:
    """Half floats -> 32-bit floats (little-endian both)."""
    n = len(data) // 2
    return _little_bytes(array("f", struct.unpack(f"<{n}e", data)))


def f32_to_f16(data: bytes) -> bytes:
    """32-bit floats -> half floats; values beyond the half range are clamped first (struct
    refuses them)."""
    vals = _native_array("f", data)
    lim = _HALF_MAX
    return struct.pack(f"<{len(vals)}e", *(lim if v > lim else (-lim if v < -lim else v) for v in vals))


def srgb_encode(v: float) -> float:
    if v <= 0.0031308:
        return v * 12.92
    return 1.055 * v ** (1 / 2.4) - 0.055


def srgb_decode(v: float) -> float:
    if v <= 0.04045:
        return v / 12.92
    return ((v + 0.055) / 1.055) ** 2.4


_LUTS: dict[tuple[str, bool], list[int]] = {}


def _lut(dtype: str, encode: bool) -> list[int]:
    key = (dtype, encode)
    if key not in _LUTS:
        top = 255 if dtype == "u8" else 65535
        f = srgb_encode if encode else srgb_decode
        _LUTS[key] = [min(top, max(0, int(f(i / top) * top + 0.5))) for i in range(top + 1)]
    return _LUTS[key]


def srgb_transfer(data: bytes, dtype: str, encode: bool, channels: int = 4) -> bytes:
    """Linear light -> sRGB (``encode``) or back, on the colour channels of u8/u16/f32
    pixels; alpha (the last channel of 2 or 4) is left alone. Integers go through a table."""
    colour = channels - 1 if channels in (2, 4) else channels
    if dtype == "f32":
        floats = _native_array("f", data)
        f = srgb_encode if encode else srgb_decode

        def signed(v: float) -> float:
            return f(v) if v >= 0 else -f(-v)
        for c in range(colour):
            floats[c::channels] = array("f", map(signed, floats[c::channels]))
        return _little_bytes(floats)
    code = _ARRAY_CODE[dtype]
    ints = _native_array(code, data)
    lut = _lut(dtype, encode)
    for c in range(colour):
        ints[c::channels] = array(code, map(lut.__getitem__, ints[c::channels]))
    return _little_bytes(ints)


def review_u8(review: Optional[bytes], width: int, height: int) -> Optional[bytes]:
    """A result's review map as u8 (0 = fine, 255 = look here) when it covers ``width`` x
    ``height`` pixels: u8 as sent, or float32 0..1 converted; None otherwise."""
    if review is None:
        return None
    data = bytes(review)
    n = width * height
    if len(data) == n:
        return data
    if len(data) == 4 * n:
        vals = _native_array("f", data)
        return bytes(max(0, min(255, int(v * 255 + 0.5))) for v in vals)
    return None


def red_overlay(review: bytes, layout: str) -> bytes:
    """The review layer's pixels: red (white for gray images), alpha = the review value.
    ``layout``: "RGBA", "BGRA" (Krita's integer order) or "YA" (gray + alpha), 8 bits."""
    n = len(review)
    if layout == "YA":
        px = bytearray(2 * n)
        px[0::2] = b"\xff" * n
        px[1::2] = review
        return bytes(px)
    red = {"RGBA": 0, "BGRA": 2}[layout]
    px = bytearray(4 * n)
    px[red::4] = b"\xff" * n
    px[3::4] = review
    return bytes(px)

