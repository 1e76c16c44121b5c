"""Motion-blur removal (catalog id ``deblur-motion``): find the blur, then undo it.

Why classical, in two steps (kernel estimation, then non-blind deconvolution with a sparse
gradient prior): a camera or subject moving in a straight line during the exposure smears
every point along a segment, and the segment's spectrum is a sinc: parallel dark stripes in
the photo's spectrum, across the motion, spaced 1/length apart. Those stripes tell both the
direction and the length; no offline pretrained deblur network exists on the registries, and
our own sharpen network (trained on 3-11 px motion among other blurs) gains little on motion
(bench/results/quality.md).

1. Estimate (:func:`estimate_motion`, unless the job gives ``blur_length``): the luma's power
   spectrum is averaged over Hann-windowed 128 px blocks (Welch), its isotropic part (the
   mean over each frequency ring) taken away, and what remains is correlated with the same
   residual of every candidate segment's own spectrum (angles every 4 degrees, lengths 2..31 px,
   then refined to 1 degree / 0.25 px). A natural photo's spectrum is nearly isotropic; what
   is left is the blur's signature.
2. Deconvolve (engine/tasks/deconvolution.py, shared with ``deblur-focus``): a sparse
   gradient prior (|grad x|^0.8) by half-quadratic splitting, which keeps edges sharp without
   the ringing of Wiener or Richardson-Lucy; in tiles with a margin of several kernel lengths.

The estimator's constants (the band, the grids, the plausibility limits) were chosen on development
photos (mate-backgrounds training photos, never the benchmark's held-out ones). Limits, said in
the README: the model is a straight segment (a curved hand-shake path is only approximated),
one blur for the whole region sent (a subject moving against a still background is not
separated), and a sharp photo still gets the best-fitting segment: the result's note names
what was found so the retoucher can judge it or type the length and angle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from engine.errors import BadInput
from engine.options import Option
from engine.pipeline.formats import LUMA as _LUMA
from engine.tasks.base import FULL_STRENGTH, TaskInfo, WholeImageTask
from engine.tasks.deconvolution import TILE, data_weight, deconvolve, noise_sigma
from engine.tasks.spectrum import welch_power

_BLOCK = 128              # Welch block, px: resolves stripes of segments up to ~_MAX_EST px
_MAX_BLOCKS = 64
_BAND = (0.03, 0.4)       # cycles/px used for the fit: below is picture layout, above mostly noise
_EPS = 3e-3               # floor of a candidate's |K|^2 (noise-to-signal, keeps its zeros finite)
_MIN_EST, _MAX_EST = 2.0, 31.0
_BLOCK_LONG, _MAX_EST_LONG = 256, 63.0   # the second search, for longer smears on larger images
_RIPPLE_SMOOTH = 3.0      # bins: the smoothing that separates a segment's ripple from its envelope
_RIPPLE_MIN, _TV_MAX, _PROBE = 0.3, 1.5, 640   # plausible(): development photos
_SHORTEST = 3.0           # px: a found smear shorter than this is no evidence of motion (the grid's floor)
_MAX_LENGTH = 120.0       # longest segment a job may give


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A straight motion path ``length`` px long at ``angle_deg`` (counter-clockwise from the
    +x axis, image rows pointing down), sampled finely and spread bilinearly onto the pixel grid;
    odd square size, centred, sums to 1. ``length`` 0 is the identity."""
    length = max(float(length), 0.0)
    size = int(math.ceil(length)) + 3
    size += 1 - size % 2
    c = (size - 1) / 2.0
    a = math.radians(angle_deg)
    t = np.linspace(-length / 2.0, length / 2.0, max(2, int(16 * (length + 1))))
    x, y = c + t * math.cos(a), c - t * math.sin(a)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    k = np.zeros((size, size))
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), wgt)
    return k / k.sum()


# --------------------------------------------------------------------------- estimation
@lru_cache(maxsize=2)
def _rings(block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = np.fft.fftfreq(block)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    ring = np.round(radius * block).astype(int)
    band = (radius > _BAND[0]) & (radius < _BAND[1])
    return ring, band, np.maximum(np.bincount(ring.ravel()), 1)


def _unit(r: np.ndarray) -> np.ndarray:
    r = r - r.mean()
    return r / (np.linalg.norm(r) + 1e-12)


def _anisotropic(logp: np.ndarray) -> np.ndarray:
    """``logp`` less its mean over each frequency ring, on the fit band, zero-mean, unit norm."""
    ring, band, count = _rings(logp.shape[0])
    return _unit((logp - (np.bincount(ring.ravel(), logp.ravel()) / count)[ring])[band])


def _ripple(logp: np.ndarray) -> np.ndarray:
    """The fine, periodic part of a log spectrum (itself less a Gaussian smoothing of it), on the
    fit band, zero-mean, unit norm: a segment's evenly spaced dips, which a photo's own
    anisotropy (a horizon, grass, a defocus) does not make."""
    from scipy.ndimage import gaussian_filter

    _, band, _ = _rings(logp.shape[0])
    return _unit((logp - gaussian_filter(logp, _RIPPLE_SMOOTH * logp.shape[0] / _BLOCK, mode="wrap"))[band])


def _log_power(length: float, angle: float, block: int) -> np.ndarray:
    k = motion_kernel(length, angle)
    pad = np.zeros((block, block))
    pad[:k.shape[0], :k.shape[1]] = k
    return np.log(np.abs(np.fft.fft2(pad)) ** 2 + _EPS)


def _best(target: np.ndarray, angles: np.ndarray, lengths: np.ndarray, block: int) -> tuple[float, float, float]:
    best = (-2.0, 0.0, 0.0)
    for a in angles:
        for n in lengths:
            s = float(_anisotropic(_log_power(float(n), float(a), block)) @ target)
            if s > best[0]:
                best = (s, float(n), float(a))
    return best


@dataclass(frozen=True)
class MotionEstimate:
    """What :func:`estimate_motion` found: the segment, how well its spectrum's anisotropy fits
    (``fit``, -1..1), how well its ripple (the periodic dips a segment alone makes) does
    (``ripple``, -1..1), and the longest segment the search could tell (``longest``)."""

    length: float
    angle: float
    fit: float
    ripple: float
    longest: float


def _search(luma: np.ndarray, block: int, shortest: float, longest: float, step: float) -> MotionEstimate:
    logp = np.log(welch_power(luma, block, _MAX_BLOCKS) + 1e-12)
    target = _anisotropic(logp)
    _, n0, a0 = _best(target, np.arange(0.0, 180.0, 4.0), np.arange(shortest, longest + 0.01, step), block)
    fit, n1, a1 = _best(target, np.arange(a0 - 4.0, a0 + 4.5, 1.0),
                        np.arange(max(shortest, n0 - step), min(longest, n0 + step) + 0.01, step / 4), block)
    return MotionEstimate(n1, a1 % 180.0, fit, float(_ripple(logp) @ _ripple(_log_power(n1, a1, block))), longest)


def estimate_motion(rgb: np.ndarray) -> MotionEstimate:
    """The straight motion blur (length px, angle degrees in [0, 180)) that best explains the
    anisotropy of the image's spectrum, with its fit and ripple scores. Searched up to
    _MAX_EST px in 128 px blocks; when the best is about that long and the image holds 256 px blocks,
    again up to _MAX_EST_LONG px in those (4x the cost, so only then)."""
    luma = np.asarray(rgb, np.float32) @ _LUMA
    est = _search(luma, _BLOCK, _MIN_EST, _MAX_EST, 1.0)
    if est.length >= _MAX_EST - 3.0 and min(luma.shape) >= 2 * _BLOCK_LONG:
        # near the top, a longer smear is often fitted short (development photo: 40 px read as 30)
        est = _search(luma, _BLOCK_LONG, _MAX_EST - 7.0, _MAX_EST_LONG, 2.0)
    return est


def total_variation(rgb: np.ndarray) -> float:
    lum = np.asarray(rgb, np.float32) @ _LUMA
    return float(np.abs(np.diff(lum, axis=0)).mean() + np.abs(np.diff(lum, axis=1)).mean())


def plausible(rgb: np.ndarray, est: MotionEstimate, lam: float) -> tuple[bool, float, str]:
    """Whether removing ``est`` is a deblur rather than a wrong guess, and the probe's total
    variation ratio. Every photo fits SOME segment; a real straight smear shows its ripple
    (ripple >= _RIPPLE_MIN), or, for a short one whose ripple lies mostly above the fit band,
    deconvolving it changes the picture moderately (total variation <= _TV_MAX times the input's,
    on a central probe of at most _PROBE px). A wrong segment deconvolved from a sharp or
    defocused photo multiplies it 2-5x with streaks (development photos: 1.5-4.8x for sharp and
    Gaussian-blurred ones, 1.1-1.7x for motion blur that was found). A best fit shorter than
    _SHORTEST px (the search starts at 2) says there is no smear worth removing."""
    if est.length < _SHORTEST:
        return False, 1.0, "no clear straight motion blur found"
    if est.length >= est.longest - 0.5:
        return False, 1.0, f"the smear looks longer than {est.longest:.0f} px, the most it can measure here"
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - _PROBE) // 2), max(0, (w - _PROBE) // 2)
    probe = rgb[y0:y0 + _PROBE, x0:x0 + _PROBE]
    ratio = total_variation(deconvolve(probe, motion_kernel(est.length, est.angle), lam=lam)) / max(
        total_variation(probe), 1e-6)
    return est.ripple >= _RIPPLE_MIN or ratio <= _TV_MAX, ratio, "no clear straight motion blur found"


# --------------------------------------------------------------------------- the task
BLUR_LENGTH = Option("blur_length", "float", 0.0, "Blur length",
                     "How far the picture was smeared, in pixels; 0 finds it in the photo. Give it (with the "
                     "angle) when the found blur, named in the result, looks wrong.",
                     minimum=0.0, maximum=_MAX_LENGTH, unit="px")
BLUR_ANGLE = Option("blur_angle", "float", 0.0, "Blur angle",
                    "Direction of the smear in degrees, counter-clockwise from horizontal (0 = left-right, "
                    "90 = up-down); used only with a blur length.", minimum=0.0, maximum=180.0)

_INFO = TaskInfo(
    id="deblur-motion", title="Motion blur removal", group="sharpen", kind="classical", scale=1, margin=96,
    license="MIT (EnhanceLayer code)", source="engine/tasks/deblur.py", ms_per_mp_cpu=8000.0,
    tile_invariant=False, skips=("scale",), options=(BLUR_LENGTH, BLUR_ANGLE),
    notes="Finds a straight motion blur (length and angle) in the region sent and undoes it "
          "(sparse-gradient deconvolution); the result names the blur it found.",
    defaults=FULL_STRENGTH, purpose="sharpen", label="Fix motion blur (camera or subject moved)",
    description="For a photo smeared in one direction by a moving camera or subject: finds how far and "
                "which way it moved and undoes it. Not for out-of-focus blur (use Sharpen).")


def _run_task(rgb: np.ndarray, values: dict[str, Any], step: Any) -> tuple[np.ndarray, dict, dict[str, Any]]:
    """The task: find (or take) the blur, check it is plausible, undo it tile by tile;
    ``step(done, total, what)`` reports progress and raises Cancelled when the job is cancelled."""
    h, w = rgb.shape[:2]
    if h < 16 or w < 16:
        raise BadInput("deblur-motion needs an image of at least 16x16 pixels")
    tiles = math.ceil(h / TILE) * math.ceil(w / TILE)
    sigma = noise_sigma(rgb)
    lam = data_weight(sigma)
    info: dict[str, Any] = {"noise_sigma": round(sigma * 255, 2)}
    given = float(values.get(BLUR_LENGTH.name) or 0.0)
    if given > 0:
        length, angle = given, float(values.get(BLUR_ANGLE.name) or 0.0)
        info["note"] = f"motion blur of {length:g} px at {angle:g} degrees (as given) removed"
    elif min(h, w) < _BLOCK:
        info.update(note=f"the area is too small to find the blur in (under {_BLOCK} px across): left as it is. "
                         "Select more of the smeared part, or type the blur length and angle",
                    notice=True, blur_length=0.0, blur_angle=0.0)
        return rgb, {}, info
    else:
        step(0, tiles, "finding the blur")
        est = estimate_motion(rgb)
        length, angle = est.length, est.angle
        ok, ratio, why = plausible(rgb, est, lam)
        info.update(blur_fit=round(est.fit, 3), blur_ripple=round(est.ripple, 3), blur_tv_ratio=round(ratio, 2))
        if not ok:
            info.update(note=f"{why}: left as it is (closest fit: {length:.1f} px at {angle:.0f} degrees). If the "
                             "photo is smeared, type the blur length and angle; for out-of-focus blur use Sharpen",
                        notice=True, blur_length=0.0, blur_angle=0.0)
            return rgb, {}, info
        info["note"] = (f"found a motion blur of {length:.1f} px at {angle:.0f} degrees and removed it "
                        "(type a length and angle if it looks wrong)")
    info.update(blur_length=length, blur_angle=angle)
    result = deconvolve(rgb, motion_kernel(length, angle), lam=lam,
                        on_tile=lambda d, t: step(d, t, "removing the blur"))
    return result, {}, info


TASK = WholeImageTask(info=_INFO, fn=_run_task, verb="removing the blur", steps=True)
