"""Non-blind deconvolution with a sparse gradient prior, shared by the deblur tasks.

``deblur-motion`` (engine/tasks/deblur.py) finds a straight smear and ``deblur-focus``
(engine/tasks/deblur_focus.py) takes a soft-focus width from the user; both then undo a KNOWN
blur kernel the same way, which lives here once:

minimise lam/2 |k*x - y|^2 + sum |grad x|^0.8 by half-quadratic splitting (Krishnan & Fergus,
NIPS 2009): alternately a per-pixel shrinkage of the gradients and a closed-form FFT solve,
with the penalty weight rising geometrically. The heavy-tailed prior keeps edges sharp without
the ringing of Wiener or Richardson-Lucy. Boundaries: a kernel symmetric about both axes is
exact under a mirrored extension; any other (an oblique segment mirrors into another angle)
gets a reflect pad whose outer part is blended into its own blur by the kernel ("edge taper"),
so the FFT's wrap-around agrees with the model. Large images go in tiles with a margin of
several kernel sizes.

The data weight follows the photo's measured noise (:func:`noise_sigma`, :func:`data_weight`).
Constants (lam = 3000, p = 0.8, the noise law) were chosen on development photos
(mate-backgrounds training photos, never the benchmark's held-out ones) for motion blur, and
checked unchanged on Gaussian blur there (ahead of Richardson-Lucy and Wiener given the true
kernel at their best settings by 0.6-0.8 dB at sigma 1.0/1.6/2.0).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from scipy import fft as sfft

from engine.pipeline.formats import LUMA as _LUMA

_LAM, _P = 3000.0, 0.8     # data weight and prior exponent (development photos, noise sigma 1/255)
# The data weight follows the noise: _LAM where the estimator below reads _NOISE_REF (what it
# reads on those photos at sigma 1/255 + 8-bit rounding), times (ref / measured)^_NOISE_POWER
# (1.5 suited long blurs, 2 short ones at sigma 2-6/255 on the development photos; a fixed
# weight lost up to 11 dB at sigma 6/255). Never more weight than at the calibration point: a
# cleaner reading is mostly a smooth JPEG, whose compression error the estimator does not see.
_NOISE_REF, _NOISE_POWER, _NOISE_FLOOR = 0.70 / 255, 1.75, 0.70 / 255
_BETA0, _BETA_MAX, _BETA_RATE = 1.0, 256.0, 2.0 * math.sqrt(2.0)
TILE = 768                # tile core, px
_WORKERS = -1             # FFT threads: all cores


def noise_sigma(rgb: np.ndarray) -> float:
    """The luma's noise standard deviation (0..1): Immerkaer's Laplacian-difference estimate per
    32 px block, the 20th percentile of the blocks (texture reads as noise; the flattest blocks
    show the noise alone; a blurred photo has many)."""
    import cv2

    lum = np.asarray(rgb, np.float32) @ _LUMA
    lap = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(lum, -1, lap, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
    b = 32
    h, w = (r.shape[0] // b) * b, (r.shape[1] // b) * b
    if h == 0 or w == 0:
        return float(math.sqrt(math.pi / 2) / 6 * r.mean())
    blocks = r[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))
    return float(math.sqrt(math.pi / 2) / 6 * np.percentile(blocks, 20))


def data_weight(sigma: float) -> float:
    """The deconvolution's data weight for a photo whose :func:`noise_sigma` is ``sigma``."""
    return _LAM * (_NOISE_REF / max(sigma, _NOISE_FLOOR)) ** _NOISE_POWER


# --------------------------------------------------------------------------- deconvolution
def _otf(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The kernel's transfer function on a ``shape`` grid (centre moved to the origin), for rfft2."""
    pad = np.zeros(shape)
    pad[:k.shape[0], :k.shape[1]] = k
    pad = np.roll(pad, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))
    return sfft.rfft2(pad)


def _symmetric(k: np.ndarray) -> bool:
    return bool(np.allclose(k, k[::-1], atol=1e-7) and np.allclose(k, k[:, ::-1], atol=1e-7))


def _extend(y: np.ndarray, k: np.ndarray, mirror: bool = True) -> tuple[np.ndarray, int, int]:
    """The tile extended so that circular convolution models it (see the module docstring):
    (extended, top-left offset y, x). ``mirror=False`` tapers even a symmetric kernel's tile
    (the mirror quadruples the area the FFTs work on)."""
    h, w = y.shape[:2]
    if mirror and _symmetric(k):
        top = np.concatenate([y, y[:, ::-1]], 1)
        return np.concatenate([top, top[::-1]], 0), 0, 0
    pad = max(3 * k.shape[0], 24)
    yp = np.pad(y, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    blurred = sfft.irfft2(_otf(k, yp.shape[:2])[..., None] * sfft.rfft2(yp, axes=(0, 1)), s=yp.shape[:2],
                          axes=(0, 1))

    def ramp(n: int) -> np.ndarray:
        i = np.arange(n + 2 * pad)
        inside = np.minimum(i - pad + 1, n + pad - i)          # > 0 on the tile itself
        return 0.5 - 0.5 * np.cos(np.pi * np.clip(0.5 + inside / pad, 0.0, 1.0))

    a = np.outer(ramp(h), ramp(w))[..., None]
    return a * yp + (1.0 - a) * blurred, pad, pad


def _shrink(v: np.ndarray, t: float) -> np.ndarray:
    """Generalised shrinkage for |.|^p (p < 1): the gradients' per-pixel step."""
    mag = np.abs(v) + 1e-12
    return np.sign(v) * np.maximum(mag - t ** (2.0 - _P) * mag ** (_P - 1.0), 0.0)


def _deconvolve_tile(y: np.ndarray, k: np.ndarray, lam: float, mirror: bool = True) -> np.ndarray:
    h, w = y.shape[:2]
    ext, oy, ox = _extend(y.astype(np.float64), k, mirror)
    shape = ext.shape[:2]
    kf = _otf(k, shape)[..., None]
    dx = _otf(np.array([[0.0, 1.0, -1.0]]), shape)[..., None]        # x[n] - x[n-1], circular
    dy = _otf(np.array([[0.0], [1.0], [-1.0]]), shape)[..., None]
    dtd = np.abs(dx) ** 2 + np.abs(dy) ** 2
    kty = lam * np.conj(kf) * sfft.rfft2(ext, axes=(0, 1), workers=_WORKERS)
    k2 = lam * np.abs(kf) ** 2
    x = ext
    beta = _BETA0
    while beta < _BETA_MAX:
        fx = sfft.rfft2(x, axes=(0, 1), workers=_WORKERS)
        gx = sfft.irfft2(dx * fx, s=shape, axes=(0, 1), workers=_WORKERS)
        gy = sfft.irfft2(dy * fx, s=shape, axes=(0, 1), workers=_WORKERS)
        num = kty + beta * (np.conj(dx) * sfft.rfft2(_shrink(gx, 1.0 / beta), axes=(0, 1), workers=_WORKERS)
                            + np.conj(dy) * sfft.rfft2(_shrink(gy, 1.0 / beta), axes=(0, 1), workers=_WORKERS))
        x = sfft.irfft2(num / (k2 + beta * dtd), s=shape, axes=(0, 1), workers=_WORKERS)
        beta *= _BETA_RATE
    return x[oy:oy + h, ox:ox + w]


def tile_margin(k: np.ndarray) -> int:
    """Context a tile needs so that its core matches a whole-image run: a segment's spectrum has
    near-zeros, and what they leave undetermined reaches far along the motion (measured on a
    640 px development photo, 256 px tiles: 4 kernel sizes left seams of 31 levels for a 16 px
    horizontal blur, 12 sizes 2 levels, 0.6 at the 99.9th percentile)."""
    return 12 * k.shape[0] + 32


def deconvolve(rgb: np.ndarray, k: np.ndarray, lam: float = _LAM, tile: int = TILE,
               on_tile: Optional[Any] = None, margin: Optional[int] = None, mirror: bool = True) -> np.ndarray:
    """``rgb`` (HxWx3, 0..1) deconvolved by ``k``; in tiles of ``tile`` px with a margin of
    ``margin`` px (default :func:`tile_margin`); ``on_tile(done, total)`` after each (it may
    raise to stop); ``mirror``: see :func:`_extend`."""
    h, w = rgb.shape[:2]
    m = tile_margin(k) if margin is None else margin
    out = np.empty(rgb.shape, np.float32)
    boxes = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    for i, (y, x) in enumerate(boxes):
        y0, y1, x0, x1 = max(0, y - m), min(h, y + tile + m), max(0, x - m), min(w, x + tile + m)
        res = _deconvolve_tile(rgb[y0:y1, x0:x1], k, lam, mirror)
        out[y:y + tile, x:x + tile] = res[y - y0:y - y0 + min(tile, h - y), x - x0:x - x0 + min(tile, w - x)]
        if on_tile is not None:
            on_tile(i + 1, len(boxes))
    return np.clip(out, 0.0, 1.0)
