"""Soft-focus removal with a known width (catalog id ``deblur-focus``): undo a Gaussian blur
whose radius the retoucher gives.

Why a separate, non-blind task: a slight defocus, lens softness or an enlarged image is close
to a Gaussian blur, and given its width the sparse-prior deconvolution that ``deblur-motion``
uses (engine/tasks/deconvolution.py) restores it better than Richardson-Lucy or Wiener given
the same true kernel at their best settings (bench/results/quality.md). Unlike a straight
smear, a Gaussian leaves no zeros in the photo's spectrum to read its width from: a blind
estimate tried here (edge-width ratios, Zhuo & Sim 2011) was no better than the learned
``sharpen`` at 3-6 times its cost, and a width too LARGE ruins a photo (on development photos
a 25 % overestimate cost 2-4 dB, twice the width 10-12 dB: halos and etched edges), while one
too small only sharpens less. So the width is the retoucher's, found by eye: start low, raise
it until edges are crisp, back off at the first halo; the result's info says when the edge
contrast jumped as it does past the true width.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.errors import BadInput
from engine.options import Option
from engine.tasks.base import TaskInfo, WholeImageTask
from engine.tasks.deblur import total_variation
from engine.tasks.deconvolution import TILE, data_weight, deconvolve, noise_sigma

# Edge contrast (total variation) of the result over the input's above which the info warns of
# an over-large radius. Development photos (mate training photos, sigma 1.0/1.6/2.0 blurs): at
# the true radius 0.81-1.69; at 1.25-1.6 times it 1.0-2.5; a sharp photo at radius 1.0 1.05-3.4.
_TV_WARN = 2.0
# The data weight scales with the radius between 1 and 2 px: on the development photos the
# shared weight was best at radius 1.0 (x0.7-1.0 within 0.1 dB), x1.5 at 1.6 (+0.08 dB over
# x1) and x2.5 at 2.0 (+0.24 dB; x2 within 0.05 dB), the prior p = 0.8 within 0.1 dB of the best.
_LAM_SCALE = (1.0, 2.0)

BLUR_RADIUS = Option("blur_radius", "float", 1.0, "Blur radius",
                     "How wide the softness is, in pixels (a Gaussian's sigma). Start at 1 and raise it until "
                     "edges are crisp; too large a value gives halos and etched edges.",
                     minimum=0.3, maximum=8.0, unit="px")

_INFO = TaskInfo(
    id="deblur-focus", title="Soft-focus removal (known radius)", group="sharpen", kind="classical", scale=1,
    margin=64, license="MIT (EnhanceLayer code)", source="engine/tasks/deblur_focus.py", ms_per_mp_cpu=5000.0,
    tile_invariant=False, skips=("scale",), options=(BLUR_RADIUS,),
    notes="Undoes a Gaussian blur of the radius you give (sparse-gradient deconvolution).",
    purpose="sharpen", label="Fix soft focus (you set the blur radius)",
    description="For a slightly out-of-focus or soft photo: undoes a blur of the width you set. Start with "
                "a small radius and raise it; halos mean it is too large.")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised Gaussian of standard deviation ``sigma`` px, 3 sigma each side (odd size)."""
    r = max(1, int(math.ceil(3.0 * sigma)))
    ax = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-ax ** 2 / (2.0 * sigma ** 2))
    k = np.outer(g, g)
    return k / k.sum()


def _run_task(rgb: np.ndarray, values: dict[str, Any], step: Any) -> tuple[np.ndarray, dict, dict[str, Any]]:
    """The task: deconvolve the given radius tile by tile; ``step(done, total, what)`` reports
    progress and raises Cancelled when the job is cancelled."""
    h, w = rgb.shape[:2]
    if h < 16 or w < 16:
        raise BadInput("deblur-focus needs an image of at least 16x16 pixels")
    radius = float(values.get(BLUR_RADIUS.name) or BLUR_RADIUS.default)
    sigma = noise_sigma(rgb)
    tiles = math.ceil(h / TILE) * math.ceil(w / TILE)
    step(0, tiles, "removing the blur")
    lam = data_weight(sigma) * min(max(radius, _LAM_SCALE[0]), _LAM_SCALE[1])
    result = deconvolve(rgb, gaussian_kernel(radius), lam=lam,
                        on_tile=lambda d, t: step(d, t, "removing the blur"))
    ratio = total_variation(result) / max(total_variation(rgb), 1e-6)
    info: dict[str, Any] = {"noise_sigma": round(sigma * 255, 2), "blur_radius": radius,
                            "edge_contrast_ratio": round(ratio, 2)}
    if ratio > _TV_WARN:
        info.update(note=f"blur of radius {radius:g} px removed, but edge contrast rose {ratio:.1f}x: the radius is "
                         "probably larger than the photo's blur. If you see halos, lower it", notice=True)
    else:
        info["note"] = f"blur of radius {radius:g} px removed (halos would mean the radius is too large)"
    return result, {}, info


TASK = WholeImageTask(info=_INFO, fn=_run_task, verb="removing the blur", steps=True)
