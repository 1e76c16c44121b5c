"""Soft-focus removal (catalog id ``deblur-focus``): find how wide a Gaussian-like blur is, or
take the width from the retoucher, then undo it.

Why: a slight defocus or lens softness is close to a Gaussian blur, and given its width the
sparse-prior deconvolution that ``deblur-motion`` uses (engine/tasks/deconvolution.py) restores
it better than Richardson-Lucy or Wiener given the same true kernel at their best settings
(bench/results/quality.md). Not for an enlarged image: what it lacks is detail above its old
resolution (a hard cut-off, not a Gaussian fall-off), which only an upscaler can invent.

Finding the width (:func:`estimate_radius`, when ``blur_radius`` is 0): a Gaussian leaves no
zeros in the spectrum (the edge-width ratio estimate tried first, Zhuo & Sim 2011, was no better
than the learned ``sharpen``), but it bends the spectrum's fall-off in a known way. The luma's
power spectrum, averaged over Hann-windowed 64 px blocks and over frequency rings, is fitted by
``A f^-alpha exp(-4 pi^2 s^2 f^2) + N``: a natural photo's power law (alpha free), the blur's
Gaussian (s) and white noise (N), by least squares on the log over a grid of alpha and s. The
fitted s is the photo's whole softness: a sharp photo reads 0-0.8 px (its own optics and
resampling), so the width deconvolved is sqrt(s^2 - _OWN^2), and a photo reading under _SHARP
is left as it is. A width too LARGE ruins a photo (on development photos a 25 % overestimate
cost 2-4 dB, twice the width 10-12 dB: halos and etched edges) while one too small only
sharpens less, which is why the photo's own softness is taken off and every doubt leans low
(JPEG compression reads as LESS blur). The retoucher can always type the width instead; the
result's info says what was found and warns when the edge contrast jumped as it does past the
true width.

Tried and not adopted (development photos only: 76 wallpaper crops drawn with a fixed seed and
skimage brick, grass, gravel, rocket, Gaussian blur 1.0 / 1.6 / 2.0 px, 234 cases; PSNR RGB /
luma): backing the radius off by 20 % steps while the edge-contrast ratio exceeds
:data:`_TV_WARN`. It acts on 4 cases only: brick at 1.6 and 2.0 px +10.5 / +10.9 and +9.1 / +9.4
dB, grass and one wallpaper at 2.0 px -1.0 / -1.0 and -1.0 / -1.1 dB (mean +0.09 / +0.10 dB).
The worst over-reads (wallpapers read 1.8 px for a 1.0 px blur, ratio 1.2-1.5) do not raise the
edge contrast enough to be caught, and a lower trigger (1.6 / 1.8) costs correctly read photos up
to 2.7 / 1.4 dB RGB.
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
from engine.tasks.base import TaskInfo, WholeImageTask
from engine.tasks.deblur import total_variation
from engine.tasks.deconvolution import TILE, data_weight, deconvolve, noise_sigma
from engine.tasks.spectrum import welch_power

# Edge contrast (total variation) of the result over the input's above which the info warns of
# an over-large radius. Development photos (mate training photos, sigma 1.0/1.6/2.0 blurs): at
# the true radius 0.81-1.69; at 1.25-1.6 times it 1.0-2.5; a sharp photo at radius 1.0 1.05-3.4.
_TV_WARN = 2.0
# The data weight scales with the radius between 1 and 2 px: on the development photos the
# shared weight was best at radius 1.0 (x0.7-1.0 within 0.1 dB), x1.5 at 1.6 (+0.08 dB over
# x1) and x2.5 at 2.0 (+0.24 dB; x2 within 0.05 dB), the prior p = 0.8 within 0.1 dB of the best.
_LAM_SCALE = (1.0, 2.0)
# The width estimate (all chosen on the development photos, mate training photos at Gaussian
# 0/0.6/1.0/1.6/2.0/2.5 px, JPEG q75/85 and noise 5/255; never the benchmark's photos): read
# within -0.25/+0.15 px of the true total at 1.0-2.5 px.
_BLOCK, _MAX_BLOCKS = 64, 400
_BAND = (0.03, 0.5, 23)           # cycles/px: ring edges from, to, rings
_ALPHAS = np.linspace(0.5, 5.0, 46)
_WIDTHS = np.linspace(0.0, 4.0, 81)
_OWN = 0.5                        # px: the softness of a sharp photo, taken off in quadrature
_SHARP = 0.85                     # px: a total reading below this is a sharp photo (dev: 0-0.80)
_MIN_SIDE = 128                   # px: smaller areas hold too few blocks to read a width from
# Directional check: the same fit in 4 direction sectors of 45 degrees. A Gaussian blur read
# them within 1.05 px of each other on the development photos (0.6 at 1.6 px; a strongly
# oriented texture such as FreshFlower's at 1.0 px is the 1.05), straight smears of 5-9 px up
# to 2.55 (about half of them above 1.5). Added after the benchmark showed a panned photo
# (Storm, held out) read as a 2-3.7 px blur and deconvolved into ringing: the limit is from the
# development photos alone.
_SECTORS, _SPREAD = 4, 1.5
# Tiles: a Gaussian's inverse (with the prior) reaches far less than a segment's, so a margin of
# 4 kernel sizes and a tapered (not mirrored) border: on the development photos the same PSNR
# within 0.02 dB and tiles equal to a whole-image run within 0.005 levels, at 4.3 s/MP instead
# of 25 (a mirrored tile quadruples the FFTs' area).
_MARGIN_SIZES = 4

BLUR_RADIUS = Option("blur_radius", "float", 0.0, "Blur radius",
                     "How wide the softness is, in pixels (a Gaussian's sigma); 0 finds it in the photo. To set it "
                     "yourself, start at 1 and raise it until edges are crisp; too large a value gives halos.",
                     minimum=0.0, maximum=8.0, unit="px")

_INFO = TaskInfo(
    id="deblur-focus", title="Soft-focus removal", group="sharpen", kind="classical", scale=1,
    margin=64, license="MIT (EnhanceLayer code)", source="engine/tasks/deblur_focus.py", ms_per_mp_cpu=5700.0,
    tile_invariant=False, skips=("scale",), options=(BLUR_RADIUS,),
    notes="Finds how wide a soft-focus blur is (or takes the radius you give) and undoes it "
          "(sparse-gradient deconvolution); the result names the radius.",
    purpose="sharpen", label="Fix soft focus",
    description="For a slightly out-of-focus or soft photo: finds how soft it is and undoes it; a sharp "
                "photo is left as it is. Set the radius yourself if the result looks wrong.")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised Gaussian of standard deviation ``sigma`` px, 3 sigma each side (odd size)."""
    r = max(1, int(math.ceil(3.0 * sigma)))
    ax = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-ax ** 2 / (2.0 * sigma ** 2))
    k = np.outer(g, g)
    return k / k.sum()


@lru_cache(maxsize=1)
def _model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ring masks of a block's spectrum (all directions: [ring, y, x], and per _SECTORS direction
    sector: [sector, ring, y, x]) and the fall-off of every (alpha, width) pair at the rings'
    centre frequencies: (rings, sector_rings, basis[alpha, width, ring])."""
    fy, fx = np.fft.fftfreq(_BLOCK)[:, None], np.fft.fftfreq(_BLOCK)[None, :]
    fr = np.sqrt(fx ** 2 + fy ** 2)
    direction = np.mod(np.arctan2(fy, fx) + np.pi / (2 * _SECTORS), np.pi)
    sector = np.minimum((direction / (np.pi / _SECTORS)).astype(int), _SECTORS - 1)
    edges = np.linspace(*_BAND[:2], _BAND[2] + 1)
    rings = np.stack([(fr >= a) & (fr < b) for a, b in zip(edges[:-1], edges[1:])])
    f = 0.5 * (edges[1:] + edges[:-1])
    basis = f[None, None, :] ** -_ALPHAS[:, None, None] * np.exp(
        -4.0 * np.pi ** 2 * _WIDTHS[None, :, None] ** 2 * f[None, None, :] ** 2)
    return rings, np.stack([rings & (sector == k) for k in range(_SECTORS)]), basis


def _ring_means(power: np.ndarray, rings: np.ndarray) -> np.ndarray:
    """The mean of ``power`` over each mask of ``rings`` ([..., ring, y, x]; an empty one reads 0)."""
    return (power * rings).sum((-2, -1)) / np.maximum(rings.sum((-2, -1)), 1)


def _fit_width(p: np.ndarray) -> float:
    """The width whose fall-off, with a free power law and a white-noise floor, fits the ring
    power ``p`` best in the log domain. Scale and floor are solved per grid point by least
    squares on the relative error; the fit is judged on the log."""
    p = np.maximum(p, 1e-20)
    basis = _model()[2]
    b1, b2 = basis / p, np.broadcast_to(1.0 / p, basis.shape)
    s11, s12, s22 = (b1 * b1).sum(-1), (b1 * b2).sum(-1), (b2 * b2).sum(-1)
    t1, t2 = b1.sum(-1), b2.sum(-1)
    det = np.maximum(s11 * s22 - s12 ** 2, 1e-300)
    a, n = (t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det
    a = np.where(n > 0, a, t1 / s11)            # a negative floor: refit without it
    n = np.maximum(n, 0.0)
    model = np.maximum(a[..., None] * basis + n[..., None], 1e-30)
    err = np.where(a > 0, ((np.log(model) - np.log(p)) ** 2).sum(-1), np.inf)
    return float(_WIDTHS[np.unravel_index(int(np.argmin(err)), err.shape)[1]])


@dataclass(frozen=True)
class FocusEstimate:
    """The photo's whole softness in px (its own included) and the spread of the same fit made
    in each of _SECTORS direction sectors: a Gaussian blur softens every direction alike."""

    width: float
    sectors: tuple[float, ...]

    @property
    def spread(self) -> float:
        return max(self.sectors) - min(self.sectors)


def estimate_radius(rgb: np.ndarray) -> FocusEstimate:
    """The Gaussian softness of ``rgb`` (see the module docstring), overall and per direction."""
    power = welch_power(np.asarray(rgb, np.float32) @ _LUMA, _BLOCK, _MAX_BLOCKS)
    rings, sector_rings, _basis = _model()
    width = _fit_width(_ring_means(power, rings))
    sectors = tuple(_fit_width(p) for p in _ring_means(power, sector_rings))
    return FocusEstimate(width, sectors)


def _run_task(rgb: np.ndarray, values: dict[str, Any], step: Any) -> tuple[np.ndarray, dict, dict[str, Any]]:
    """The task: find (or take) the width, leave a sharp photo alone, undo the blur tile by tile;
    ``step(done, total, what)`` reports progress and raises Cancelled when the job is cancelled."""
    h, w = rgb.shape[:2]
    if h < 16 or w < 16:
        raise BadInput("deblur-focus needs an image of at least 16x16 pixels")
    given = float(values.get(BLUR_RADIUS.name) or 0.0)
    sigma = noise_sigma(rgb)
    tiles = math.ceil(h / TILE) * math.ceil(w / TILE)
    info: dict[str, Any] = {"noise_sigma": round(sigma * 255, 2)}
    if given > 0:
        radius, how = given, "as given"
    elif min(h, w) < _MIN_SIDE:
        info.update(note=f"the area is too small to measure its blur in (under {_MIN_SIDE} px across): left as it "
                         "is. Select more of it, or set the blur radius", notice=True, blur_radius=0.0)
        return rgb, {}, info
    else:
        step(0, tiles, "measuring the blur")
        est = estimate_radius(rgb)
        found = est.width
        info.update(blur_found=found, blur_spread=round(est.spread, 2))
        if found >= _WIDTHS[-1]:
            info.update(note=f"the blur looks wider than {_WIDTHS[-1]:g} px, more than it can measure: left as it "
                             "is. Set the blur radius (or use Enlarge's models on a smaller copy)", notice=True,
                        blur_radius=0.0)
            return rgb, {}, info
        if est.spread > _SPREAD or max(est.sectors) >= _WIDTHS[-1]:
            info.update(note=f"the softness is not the same in every direction (from {min(est.sectors):.1f} to "
                             f"{max(est.sectors):.1f} px): more like motion than focus blur, left as it is. Try Fix "
                             "motion blur, or set the blur radius", notice=True, blur_radius=0.0)
            return rgb, {}, info
        if found < _SHARP:
            info.update(note=f"no soft-focus blur found (the photo reads as sharp: {found:.2f} px): left as it is. "
                             "Set the blur radius to sharpen it anyway", notice=True, blur_radius=0.0)
            return rgb, {}, info
        radius = round(math.sqrt(found ** 2 - _OWN ** 2), 2)
        how = f"found: {found:.2f} px in all, less a sharp photo's own {_OWN:g}"
    step(0, tiles, "removing the blur")
    lam = data_weight(sigma) * min(max(radius, _LAM_SCALE[0]), _LAM_SCALE[1])
    k = gaussian_kernel(radius)
    result = deconvolve(rgb, k, lam=lam, on_tile=lambda d, t: step(d, t, "removing the blur"),
                        margin=_MARGIN_SIZES * k.shape[0] + 16, mirror=False)
    ratio = total_variation(result) / max(total_variation(rgb), 1e-6)
    info.update(blur_radius=radius, edge_contrast_ratio=round(ratio, 2))
    if ratio > _TV_WARN:
        info.update(note=f"blur of radius {radius:g} px ({how}) removed, but edge contrast rose {ratio:.1f}x: the "
                         "radius is probably larger than the photo's blur. If you see halos, set a smaller one",
                    notice=True)
    else:
        info["note"] = f"blur of radius {radius:g} px ({how}) removed; halos would mean it is too large"
    return result, {}, info


TASK = WholeImageTask(info=_INFO, fn=_run_task, verb="removing the blur", steps=True)
