"""Halftone screen removal for magazine and newspaper scans (catalog id ``descreen``).

Why classical: a printed halftone is the picture multiplied by a periodic screen, and in the
Fourier domain a period is a handful of sharp peaks (the screen frequency, its harmonics and,
for colour print, the rosette of four inks at their own angles). Removing those peaks, and
what lies above the screen frequency (where a halftone holds nothing but dot structure), keeps
every frequency of the picture below the screen untouched; the usual descreen, a Gaussian blur
strong enough to hide the dots, also takes away much of that band. No learned model with
offline weights exists for it.

1. Detect: the power spectrum of each colour channel is estimated from up to
   :data:`_MAX_BLOCKS` Hann-windowed 256x256 blocks (Welch), in log power; a bin that stands
   :data:`_PEAK` above the spectrum's floor (a 5x5 median, smoothed) and is the maximum of its
   5x5 neighbourhood, at :data:`_R_MIN` cycles/px or more (lower is picture content), and not
   on the 8 px grid of JPEG blocks (the jpeg tasks handle those), is a screen peak. Peaks of
   the three channels are pooled (a colour print's inks show in every channel, each at its
   angle). Unless the strongest stands :data:`_PRESENT` above the floor (a printed screen is far
   stronger than any texture of a photo), there is no screen: the image is returned unchanged
   and the result says so.
2. Remove: the screen frequency is the lowest among the strong peaks (:func:`screen_frequency`);
   one whole-image FFT per channel (reflect-padded) is multiplied by a Gaussian notch at every
   peak from half the screen frequency up (and its mirror; weaker peaks further in are mostly
   picture) and a raised-cosine low-pass from :data:`_PASS` to :data:`_STOP` times the screen
   frequency.
3. Colour: the filtering is done on BT.601 Y, Cb, Cr (the same as on R, G, B, the filter being
   linear), and the two chroma channels get a lower low-pass, :data:`_CHROMA` times the
   brightness one's. Why: the four inks' screens beat with each other below half the screen
   frequency, where the brightness filter keeps the picture, and show as colour mottling; the
   eye sees colour at a lower resolution than brightness, so taking the chroma lower costs
   little (development photos' colour prints: +0.01 to +0.33 dB on RGB, brightness unchanged; a
   gray image has no chroma and is filtered as before).

Parameters were chosen on development photos (skimage's camera and stereo_motorcycle's left
view, halftoned by bench/quality_descreen.py), never on its test photos. The statistics come from the region
sent, so the task is not tile invariant: a host sends the selection with its margin.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from engine.pipeline.formats import LUMA as _LUMA
from engine.tasks.spectrum import welch_power

_BLOCK = 256
_MAX_BLOCKS = 48
_R_MIN = 0.06            # cycles/px: a screen coarser than ~16 px per period is left alone
_PEAK = math.log(30.0)   # a peak is 30x (in power) above the spectrum's floor
_PRESENT = math.log(200.0)   # ... and a screen's strongest peak 200x: else there is no screen
_MAX_PEAKS = 64
_NOTCH = 1.0 / _BLOCK    # Gaussian notch sigma, cycles/px
_PASS, _STOP = 0.45, 0.80   # low-pass roll-off, as fractions of the screen frequency
# the chroma's low-pass as a fraction of the brightness one's: development photos' colour
# prints at periods 4/6/8 px, 0.9/0.8/0.7/0.6/0.5/0.35/0.25 tried: 0.7 best or within 0.01 dB
_CHROMA = 0.7
# BT.601 Y, Cb, Cr from the project's luma weights (Cb, Cr: B - Y and R - Y scaled to +-0.5)
_TO_YCC = np.stack([_LUMA, (np.eye(3, dtype=np.float32)[2] - _LUMA) / (2 * (1 - _LUMA[2])),
                    (np.eye(3, dtype=np.float32)[0] - _LUMA) / (2 * (1 - _LUMA[0]))]).astype(np.float32)
_FROM_YCC = np.linalg.inv(_TO_YCC).astype(np.float32)
_NOTCH_FROM = 0.5        # peaks under half the screen frequency are not notched: mostly picture
_PAD = 32
_STRONG = math.log(20.0)   # peaks within 20x (power) of the strongest count for the screen frequency


def _welch(ch: np.ndarray) -> np.ndarray:
    """fftshifted log power spectrum (DC at the centre) of ``_BLOCK`` blocks."""
    return np.fft.fftshift(np.log(welch_power(ch, _BLOCK, _MAX_BLOCKS, dense=True) + 1e-12)).astype(np.float32)


def find_peaks(rgb: np.ndarray) -> np.ndarray:
    """Screen peaks as (fy, fx, excess) rows: cycles/px, one of each mirror pair, and how far
    above the floor it stands (log power), strongest first."""
    f = (np.arange(_BLOCK) - _BLOCK // 2) / _BLOCK
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.hypot(fy, fx)
    near = 1.5 / _BLOCK
    jpeg_grid = np.zeros(radius.shape, bool)
    for m in range(1, 5):
        jpeg_grid |= (np.abs(np.abs(fy) - m / 8) < near) & (np.abs(fx) < near)
        jpeg_grid |= (np.abs(np.abs(fx) - m / 8) < near) & (np.abs(fy) < near)
    allowed = (radius >= _R_MIN) & ~jpeg_grid & ((fy > 0) | ((fy == 0) & (fx > 0)))
    found: list[tuple[float, float, float]] = []
    for c in range(rgb.shape[2]):
        log_p = _welch(np.ascontiguousarray(rgb[..., c], dtype=np.float32))
        floor = cv2.GaussianBlur(cv2.medianBlur(log_p, 5), (0, 0), 3)
        local_max = log_p >= cv2.dilate(log_p, np.ones((5, 5), np.uint8))
        excess = log_p - floor
        hit = (excess > _PEAK) & local_max & allowed
        for y, x in zip(*np.nonzero(hit)):
            found.append((float(excess[y, x]), float(fy[y, x]), float(fx[y, x])))
    found.sort(reverse=True)
    if not found or found[0][0] < _PRESENT:
        return np.zeros((0, 3), np.float64)
    peaks: list[tuple[float, float, float]] = []
    for e, py, px in found:
        if all(math.hypot(py - qy, px - qx) > 2.5 / _BLOCK for qy, qx, _q in peaks):
            peaks.append((py, px, e))
        if len(peaks) >= _MAX_PEAKS:
            break
    return np.asarray(peaks, np.float64).reshape(-1, 3)


def screen_frequency(peaks: np.ndarray) -> float:
    """The screen's fundamental, cycles/px: the lowest frequency among the strong peaks (within
    :data:`_STRONG` of the strongest). Weak peaks nearer the centre are beats between inks or
    picture structure; taking them for the screen would blur the picture."""
    strong = peaks[peaks[:, 2] >= peaks[:, 2].max() - _STRONG]
    return float(np.min(np.hypot(strong[:, 0], strong[:, 1])))


def screen_filter(h: int, w: int, peaks: np.ndarray, fs: float) -> np.ndarray:
    """The multiplier of an h x w spectrum (numpy FFT layout): notches at the peaks and their
    mirrors, and the low-pass under the lowest screen frequency."""
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.fftfreq(w).astype(np.float32)[None, :]
    out = np.ones((h, w), np.float32)
    two_s2 = np.float32(2 * _NOTCH * _NOTCH)
    fs_r = np.hypot(peaks[:, 0], peaks[:, 1])
    for py, px in peaks[fs_r >= _NOTCH_FROM * fs, :2]:
        for s in (1.0, -1.0):
            dy = (fy - np.float32(s * py)) ** 2
            dx = (fx - np.float32(s * px)) ** 2
            out *= 1.0 - np.exp(-(dy + dx) / two_s2)
    return out * _lowpass(h, w, _PASS * fs, _STOP * fs)


def _lowpass(h: int, w: int, a: float, b: float) -> np.ndarray:
    """A raised-cosine low-pass of an h x w spectrum (numpy FFT layout): 1 under ``a``
    cycles/px, 0 from ``b``."""
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.fftfreq(w).astype(np.float32)[None, :]
    ramp = np.clip((np.sqrt(fy * fy + fx * fx) - a) / (b - a), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * ramp))).astype(np.float32)


def descreen(rgb: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """``rgb`` as Y, Cb, Cr, each filtered by :func:`screen_filter` (the chroma also by the lower
    low-pass of step 3), one FFT each, reflect-padded; back to RGB."""
    h, w = rgb.shape[:2]
    ph, pw = cv2.getOptimalDFTSize(h + 2 * _PAD), cv2.getOptimalDFTSize(w + 2 * _PAD)
    fs = screen_frequency(peaks)
    filt = screen_filter(ph, pw, peaks, fs)
    chroma = filt * _lowpass(ph, pw, _CHROMA * _PASS * fs, _CHROMA * _STOP * fs)
    ycc = np.asarray(rgb, np.float32) @ _TO_YCC.T
    out = np.empty_like(ycc)
    for c, f in enumerate((filt, chroma, chroma)):
        ch = cv2.copyMakeBorder(np.ascontiguousarray(ycc[..., c]), _PAD, ph - h - _PAD,
                                _PAD, pw - w - _PAD, cv2.BORDER_REFLECT_101)
        spec = cv2.dft(ch, flags=cv2.DFT_COMPLEX_OUTPUT)
        spec *= f[..., None]
        back = cv2.idft(spec, flags=cv2.DFT_SCALE | cv2.DFT_REAL_OUTPUT)
        out[..., c] = back[_PAD:_PAD + h, _PAD:_PAD + w]
    return np.clip(out @ _FROM_YCC.T, 0.0, 1.0)


def _run_task(rgb: np.ndarray, values: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    peaks = find_peaks(rgb)
    if len(peaks) == 0:
        return rgb, {}, {"note": "no halftone screen found: left as it is", "notice": True}
    fs = screen_frequency(peaks)
    return descreen(rgb, peaks), {}, {
        "note": f"screen of {1 / fs:.1f} px per period removed ({len(peaks)} peaks)",
        "screen_period_px": round(1 / fs, 2), "peaks": len(peaks)}


def _task():
    from engine.tasks.base import FULL_STRENGTH, TaskInfo, WholeImageTask

    info = TaskInfo(id="descreen", title="Halftone screen removal (descreen)", group="restore",
                    kind="classical", scale=1, margin=32, license="MIT (EnhanceLayer code)", skips=("scale",),
                    source="engine/tasks/descreen.py", ms_per_mp_cpu=900.0, tile_invariant=False,
                    notes="Finds the print screen's frequencies in the region sent and removes them and what "
                          "lies above them; a photo without a screen is left as it is.",
                    defaults=FULL_STRENGTH, purpose="descreen", label="Remove halftone dots (printed scans)",
                    description="For scans of magazines, newspapers and printed photos: removes the dot "
                                "pattern of the print without blurring the picture under it.")
    return WholeImageTask(info=info, fn=_run_task, verb="removing the screen")


TASK = _task()
