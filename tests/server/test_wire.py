"""The frame format: engine side vs the stdlib client side, channel order, gray+alpha."""
from __future__ import annotations

import importlib
import struct

import numpy as np
import pytest

from engine.server import wire

from .conftest import elc

cw = importlib.import_module(elc.__name__ + ".wire")


def test_prefix_is_identical_on_both_sides():
    h = {"model": "photo-x2", "width": 3, "height": 2, "channels": 4, "dtype": "f32", "mask": True}
    assert cw.frame_prefix(h) == wire.pack(h)
    body = wire.pack(h, b"abc")
    hh, rest = cw.split_frame(body)
    assert hh == h and bytes(rest) == b"abc"
    assert struct.unpack(">I", body[:4])[0] == len(body) - 7


@pytest.mark.parametrize("dtype,np_dt", [("u8", "<u1"), ("u16", "<u2"), ("f32", "<f4")])
def test_bgra_becomes_rgba_and_back(dtype, np_dt):
    rgba = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 7).astype(np_dt)
    bgra = rgba[..., [2, 1, 0, 3]].copy()
    hdr = wire.JobHeader(model="identity", width=3, height=2, channels=4, dtype=dtype, channel_order="BGRA")
    got = wire.to_array(hdr, bytearray(bgra.tobytes()))
    assert np.array_equal(got, rgba) and got.dtype == np.dtype(np_dt).newbyteorder("=")
    assert wire.from_array(got, "BGRA") == bgra.tobytes()
    assert wire.from_array(got, "RGBA") == rgba.tobytes()
    assert hdr.pixel_bytes() == cw.pixel_bytes(3, 2, 4, dtype) == rgba.nbytes


def test_bgr_three_channels_and_gray_untouched():
    bgr = np.array([[[1, 2, 3]]], np.uint8)
    h3 = wire.JobHeader(model="identity", width=1, height=1, channels=3, dtype="u8", channel_order="BGRA")
    assert wire.to_array(h3, bgr.tobytes()).tolist() == [[[3, 2, 1]]]
    h1 = wire.JobHeader(model="identity", width=2, height=1, channels=1, dtype="u8", channel_order="BGRA")
    assert wire.to_array(h1, bytes([5, 6])).tolist() == [[[5], [6]]]


def test_gray_alpha_round_trip():
    ga = np.array([[[10, 200], [70, 0]]], np.uint16)
    rgba = wire.gray_alpha_to_rgba(ga)
    assert rgba.tolist() == [[[10, 10, 10, 200], [70, 70, 70, 0]]]
    assert np.array_equal(wire.rgba_to_gray_alpha(rgba), ga)
