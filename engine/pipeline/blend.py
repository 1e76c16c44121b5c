"""Blend-back: how much of the model's output reaches the result, per pixel.

With R = the plainly resampled original (``formats.Resampler``, Lanczos-3) and M = the
model's output at the same size, for a local strength s in 0..1 (strength x mask x
face/text protection) and grain g in 0..1:

    out = (1 - s) * R + s * M + g * s * (hf(R) - hf(M))

- s = 0 gives R bit for bit (outside a mask the output *is* the resampled original);
  s = 1, g = 0 gives M bit for bit (the raw model output).
- ``hf(x) = x - GaussianBlur(x, sigma)`` is the fine band. The grain term swaps the
  model's fine band for the original's in proportion g: at g = 1 the fine band of the
  result is exactly the original's (film grain and skin pores come back, the model's
  plastic look goes), while coarser detail (edges the model sharpened) stays the model's.
  sigma is ``GRAIN_SIGMA`` input pixels, i.e. scaled with the output scale, so "fine" means
  the original's finest texture whatever the zoom.
- keep colour: M is replaced by ``R + (Y(M) - Y(R))`` in BT.601 YCbCr: adding the same
  value to R, G and B changes Y and leaves Cb and Cr untouched, so the luminance detail
  is the model's and the colour is the original's.
"""
from __future__ import annotations

import cv2
import numpy as np

from engine.pipeline.formats import luma

GRAIN_DEFAULT = 0.75      # what ``--grain`` turns on: HF energy 0.9-1.1x the original (bench: tests)
GRAIN_SIGMA = 0.8         # input px


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur per channel (border: reflect-101, the same at strip and image edges)."""
    r = max(1, int(np.ceil(3 * sigma)))
    out = cv2.GaussianBlur(x, (2 * r + 1, 2 * r + 1), sigmaX=sigma, sigmaY=sigma,
                           borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(x.shape)


def blur_radius(sigma: float) -> int:
    return max(1, int(np.ceil(3 * sigma)))


def keep_color(r: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Luminance from the model, chroma from the original (RGB float, same shape)."""
    return r + (luma(m) - luma(r))


def combine(r: np.ndarray, m: np.ndarray, s, grain: float, sigma: float,
            top: int, bottom: int) -> np.ndarray:
    """Blend a strip; ``top``/``bottom`` rows are context for the blur and are dropped.

    ``s`` is a scalar or an (h x w x 1) map for the core rows.
    """
    core = slice(top, r.shape[0] - bottom)
    rc, mc = r[core], m[core]
    if np.isscalar(s) or getattr(s, "ndim", 1) == 0:
        s = np.float32(s)
        if s == 0.0:
            return rc.copy()
    out = (np.float32(1.0) - s) * rc + s * mc
    if grain > 0:
        g = np.float32(grain)
        d = (r - blur(r, sigma)) - (m - blur(m, sigma))
        out += (g * s) * d[core]
    return out.astype(np.float32, copy=False)


def feather_mask(mask: np.ndarray, feather: float) -> np.ndarray:
    """u8 (0..255), u16 or float mask -> float32 0..1, Gaussian-feathered by ``feather`` px.

    The feather sigma is feather/2 so that the visible ramp is about ``feather`` px wide.
    Exact zeros stay exact far from the mask (the blur is clipped at 1e-6).
    """
    if mask.dtype == np.uint8:
        m = mask.astype(np.float32) / 255.0
    elif mask.dtype == np.uint16:
        m = mask.astype(np.float32) / 65535.0
    else:
        m = mask.astype(np.float32)
    m = np.clip(m, 0.0, 1.0)
    if feather and feather > 0:
        sig = feather / 2.0
        r = max(1, int(np.ceil(3 * sig)))
        m = cv2.GaussianBlur(m, (2 * r + 1, 2 * r + 1), sigmaX=sig, sigmaY=sig,
                             borderType=cv2.BORDER_REPLICATE)
        m[m < 1e-6] = 0.0
        m = np.clip(m, 0.0, 1.0)
    return m


def hf_energy(rgb: np.ndarray, sigma: float = 1.0) -> float:
    """Mean squared fine-band luminance: the measure of "texture" used in the grain test.

    Independent of the grain band on purpose (sigma 1 output px on luma).
    """
    x = rgb.astype(np.float32)
    if x.ndim == 3 and x.shape[2] >= 3:
        x = luma(x[..., :3])[..., 0]
    elif x.ndim == 3:
        x = x[..., 0]
    hp = x - cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    return float(np.mean(hp.astype(np.float64) ** 2))
