"""Pixel formats and the one resampler the pipeline uses.

Why its own resampler: the pipeline streams the image in horizontal strips (so a 50 MP
photo never needs a full-size float copy), and "strength 0 == plainly resampled original"
must hold bit for bit. A separable resampler whose weights are computed per output row
and column gives exactly the same value for a pixel whichever strip it is computed in,
so ``resample()`` on the whole image and the strip-wise pipeline agree exactly.

Kernels (the same definitions as PIL's ``Image.resize``, in float32 arithmetic):

- ``lanczos3``: the "good" filter for the original and for model output that must be
  brought to another scale (windowed sinc, 3 lobes; antialiased when shrinking because
  the kernel is stretched by the shrink factor).
- ``area``: exact pixel-area averaging (box filter); used when a model's output is larger
  than asked by an integer factor (a 4x model used for 2x), like cv2's INTER_AREA.
- ``linear``: the "plain" filter for alpha and masks (triangle, no overshoot).

Pixel centres are at ``i + 0.5``; taps that fall outside the image are dropped and the
remaining weights renormalised (PIL's border rule). Same size in and out is a copy.

Formats: gray (HxW or HxWx1), RGB, RGBA; uint8, uint16 or float32. Integers map to 0..1
by dividing by 255 / 65535 (uint16 never passes through 8 bits: float32 holds 24 bits);
float32 is used as it is (values outside 0..1 are kept, only the model's input is
clipped to 0..1).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.errors import BadInput

# BT.601 luma: the YCbCr-like space used for gray conversion and keep-colour.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_MAXVAL = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


@dataclass(frozen=True)
class PixelFormat:
    """What the caller gave us, so the result goes back in the same layout and depth."""

    dtype: np.dtype
    channels: int           # 1 (gray), 3 (RGB), 4 (RGBA)
    squeeze: bool           # gray given as HxW (not HxWx1)

    @property
    def gray(self) -> bool:
        return self.channels == 1

    @property
    def alpha(self) -> bool:
        return self.channels == 4

    @property
    def work_channels(self) -> int:
        """Colour channels blended (1 for gray, 3 otherwise; alpha is handled apart)."""
        return 1 if self.gray else 3


def describe(image: np.ndarray) -> PixelFormat:
    """Check the layout and dtype of an input image; a clear BadInput otherwise."""
    if not isinstance(image, np.ndarray):
        raise BadInput("image must be a numpy array")
    dt = image.dtype
    if dt not in (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)):
        if dt == np.dtype(np.float64):
            raise BadInput("float64 images are not accepted: convert to float32")
        raise BadInput(f"unsupported pixel type {dt}: use uint8, uint16 or float32")
    if image.ndim == 2:
        return PixelFormat(dt, 1, True)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        return PixelFormat(dt, image.shape[2], False)
    raise BadInput(f"unsupported image shape {image.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 0..1; float32 unchanged (a copy only when needed)."""
    m = _MAXVAL.get(pixels.dtype)
    if m is None:
        return pixels.astype(np.float32, copy=False)
    return pixels.astype(np.float32) * np.float32(1.0 / m)


def from_float(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 -> the caller's dtype: integers are clipped and rounded, float32 kept."""
    m = _MAXVAL.get(np.dtype(dtype))
    if m is None:
        return x.astype(np.float32, copy=False)
    y = np.clip(x, 0.0, 1.0) * np.float32(m)
    np.rint(y, out=y)
    return y.astype(dtype)


class Source:
    """Row access to the caller's image as float working channels, without a full copy."""

    def __init__(self, image: np.ndarray):
        self.fmt = describe(image)
        self.image = image if not self.fmt.squeeze else image[:, :, None]
        self.h, self.w = image.shape[:2]

    def color(self, y0: int, y1: int, x0: int = 0, x1: int | None = None) -> np.ndarray:
        """Working channels (1 or 3) as float32."""
        c = self.fmt.work_channels
        return to_float(self.image[y0:y1, x0:x1, :c])

    def rgb(self, y0: int, y1: int, x0: int = 0, x1: int | None = None) -> np.ndarray:
        """RGB float32 for the model: gray is repeated to 3 channels."""
        x = self.color(y0, y1, x0, x1)
        if x.shape[2] == 1:
            x = np.repeat(x, 3, axis=2)
        return x

    def alpha(self, y0: int, y1: int) -> np.ndarray:
        return to_float(self.image[y0:y1, :, 3:4])


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded 0..1 to linear light (the IEC 61966-2-1 curve), in x's float dtype."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(x.dtype, copy=False)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light to sRGB-encoded 0..1 (clipped to 0..1 first), in x's float dtype."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(x.dtype, copy=False)


def luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxWx1 BT.601 luma (float32)."""
    return (rgb[..., 0:1] * LUMA[0] + rgb[..., 1:2] * LUMA[1] + rgb[..., 2:3] * LUMA[2]).astype(np.float32)


# ---------------------------------------------------------------------------- resampler
def _lanczos3(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    out = np.sinc(x) * np.sinc(x / 3.0)
    out[x >= 3.0] = 0.0
    return out


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


_KERNELS = {"lanczos3": (_lanczos3, 3.0), "linear": (_triangle, 1.0)}


def _weights(in_size: int, out_size: int, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """For each output index: the input indices it reads and their weights (sum 1)."""
    scale = in_size / out_size
    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    if kernel == "area" and scale > 1.0:
        lo, hi = centre - scale / 2, centre + scale / 2
        first = np.floor(lo).astype(np.int64)
        taps = int(np.ceil(scale)) + 1
        j = first[:, None] + np.arange(taps)[None, :]
        w = np.minimum(j + 1, hi[:, None]) - np.maximum(j, lo[:, None])
        w = np.maximum(w, 0.0)
    else:
        if kernel == "area":          # enlarging by area == linear interpolation
            kernel = "linear"
        fn, support = _KERNELS[kernel]
        fscale = max(scale, 1.0)
        radius = support * fscale
        first = np.floor(centre - radius).astype(np.int64)
        taps = int(np.ceil(2 * radius)) + 2
        j = first[:, None] + np.arange(taps)[None, :]
        w = fn((j + 0.5 - centre[:, None]) / fscale)
    w[(j < 0) | (j >= in_size)] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    # drop all-zero tap columns at the ends (cheaper loops)
    used = np.nonzero(np.any(w != 0.0, axis=0))[0]
    j, w = j[:, used[0]:used[-1] + 1], w[:, used[0]:used[-1] + 1]
    return np.clip(j, 0, in_size - 1), w.astype(np.float32)


class Resampler:
    """Resample rows of an (in_h x in_w) image to (out_h x out_w), strip by strip.

    ``rows(y0, y1, get)`` returns output rows y0..y1; ``get(r0, r1)`` must return input
    rows r0..r1 (float32, HxWxC). ``need(y0, y1)`` says which input rows that takes.
    """

    def __init__(self, in_h: int, in_w: int, out_h: int, out_w: int, kernel: str = "lanczos3"):
        if kernel not in ("lanczos3", "linear", "area"):
            raise ValueError(kernel)
        self.in_h, self.in_w, self.out_h, self.out_w = in_h, in_w, out_h, out_w
        self.same_h, self.same_w = in_h == out_h, in_w == out_w
        if not self.same_h:
            self.jy, self.wy = _weights(in_h, out_h, kernel)
        if not self.same_w:
            self.jx, self.wx = _weights(in_w, out_w, kernel)

    def need(self, y0: int, y1: int) -> tuple[int, int]:
        if self.same_h:
            return y0, y1
        j = self.jy[y0:y1]
        return int(j.min()), int(j.max()) + 1

    def rows(self, y0: int, y1: int, get: Callable[[int, int], np.ndarray]) -> np.ndarray:
        r0, r1 = self.need(y0, y1)
        src = get(r0, r1)
        if not self.same_h:
            jy, wy = self.jy[y0:y1] - r0, self.wy[y0:y1]
            acc = np.zeros((y1 - y0,) + src.shape[1:], np.float32)
            for t in range(jy.shape[1]):
                acc += src[jy[:, t]] * wy[:, t, None, None]
            src = acc
        if not self.same_w:
            acc = np.zeros((src.shape[0], self.out_w, src.shape[2]), np.float32)
            for t in range(self.jx.shape[1]):
                acc += src[:, self.jx[:, t]] * self.wx[None, :, t, None]
            src = acc
        return np.ascontiguousarray(src, dtype=np.float32)


def resample(x: np.ndarray, out_h: int, out_w: int, kernel: str = "lanczos3") -> np.ndarray:
    """Whole-image resample (float32 HxWxC or HxW) with the pipeline's exact arithmetic."""
    squeeze = x.ndim == 2
    src = to_float(x[:, :, None] if squeeze else x)
    r = Resampler(src.shape[0], src.shape[1], out_h, out_w, kernel)
    out = np.empty((out_h, out_w, src.shape[2]), np.float32)
    step = 256
    for y0 in range(0, out_h, step):
        y1 = min(out_h, y0 + step)
        out[y0:y1] = r.rows(y0, y1, lambda a, b: src[a:b])
    return out[:, :, 0] if squeeze else out
