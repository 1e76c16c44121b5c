"""Faded-colour recovery for old prints and scans (catalog id ``restore-color``).

Why classical: fading is a physical process with few parameters, and its inverse is best
estimated from the photo itself; no learned model ships offline weights for it. A colour
print fades dye by dye (cyan first, so reds take over), its paper yellows (less blue in the
highlights), its blacks lift and its contrast drops. Dye loss scales each dye's density, so
in light it is a gain and a power law per channel (Beer-Lambert); a power law of linear light
is a power law of sRGB-encoded values too, so the inverse is estimated on the encoded values
the photo holds, with three numbers per channel:

1. black and white points: robust percentiles of each channel (``clip`` % of the pixels
   may clip at each end), mapped to 0 and 1; ``cast`` mixes per-channel endpoints (removes
   the cast in the shadows and highlights) with endpoints shared by the three channels
   (contrast only);
2. a per-channel gamma for the mid-tones: on the pixels closest to neutral in the current
   estimate (the least saturated 20 % of the mid-tones), ``log channel`` is fitted to
   ``log`` of their geometric mean (least squares through the origin, 3 rounds, each round
   picking the neutrals again from the improved image), normalised so that the three gammas
   change colour, not overall brightness, and scaled by ``cast``;
3. statistics come from a <= 512 px copy, so a 20 MP scan costs about as much as a
   thumbnail to analyse; the mapping is one curve per channel, applied to every pixel.

Other spaces were measured on development photos that are not in the test set
(skimage's motorcycle_left/right) under four fading models (bench/quality_color.py): fitting in
linear light wins when blacks are lifted by additive flare but loses badly when dyes fade
(a power law); in log density the reverse; sRGB-encoded values were the most even over all
four. ``clip`` 0.1 % was best of 0.05-2 % on those photos.

A cast that belongs to the scene is the weak point of every automatic colour balance. The
guard here: after levels, a faded photo still has pixels that are nearly grey (its mid-tone
cast is mild); a photo that is one colour all over (wood and a red cup, a fundus photo) has
none, and then ``cast`` is lowered towards 0 (:func:`neutral_evidence`, :func:`_trust`). A
scene cast with some grey in it (a warm-lit cat with white whiskers) is still removed: lower
``cast`` or the strength, or mask the layer.

Because the curves are global, the statistics come from the region sent: the task is not
tile invariant, and a host sends the selection (margin 0), so selecting the faded print on a
scanned page measures the print, not the page.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from engine.errors import BadInput
from engine.pipeline.formats import LUMA as _LUMA
from engine.pipeline.formats import linear_to_srgb, srgb_to_linear

_STATS_SIDE = 512         # statistics from a copy whose longest side is at most this
_GAMMA_LIMITS = (0.5, 2.0)
_NEUTRAL_SHARE = 0.2      # the least saturated 20 % of the mid-tone pixels count as neutral
_ROUNDS = 3
_FLAT = 1e-3              # a channel whose black and white points are closer than this is left as it is
_SURE_GREY, _NO_GREY = 0.2, 0.4   # neutral_evidence: full cast removal below, none above


def _stats_copy(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    f = _STATS_SIDE / max(h, w)
    if f >= 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def _levels(small: np.ndarray, clip: float, cast: float) -> tuple[np.ndarray, np.ndarray]:
    """Black and white point per channel, per-channel and shared endpoints mixed by ``cast``."""
    flat = small.reshape(-1, 3)
    lo_c = np.percentile(flat, clip, axis=0)
    hi_c = np.percentile(flat, 100.0 - clip, axis=0)
    lo = cast * lo_c + (1.0 - cast) * lo_c.min()
    hi = cast * hi_c + (1.0 - cast) * hi_c.max()
    return lo.astype(np.float32), hi.astype(np.float32)


def _apply(rgb: np.ndarray, lo: np.ndarray, hi: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """corrected_c = ((x_c - lo_c) / (hi_c - lo_c)) ** (1 / gamma_c), clipped to 0..1."""
    span = hi - lo
    out = np.empty_like(rgb)
    for c in range(3):
        if span[c] < _FLAT:          # a flat channel (a blank page, one colour): leave it
            out[..., c] = rgb[..., c]
            continue
        n = np.clip((rgb[..., c] - lo[c]) / span[c], 0.0, 1.0)
        out[..., c] = n ** (1.0 / gamma[c]) if gamma[c] != 1.0 else n
    return out


def _log_spread(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logs of the mid-tone pixels of ``x`` (0..1, HxWx3) and their log-chroma (0 for grey)."""
    v = np.clip(x.reshape(-1, 3), 1e-4, 1.0)
    luma = v @ _LUMA
    logs = np.log(v[(luma > 0.1) & (luma < 0.92) & (v.min(axis=1) > 0.02)])
    return logs, logs.max(axis=1) - logs.min(axis=1) if len(logs) else np.zeros(0)


def neutral_evidence(levelled: np.ndarray) -> float:
    """How much of the photo could be grey after levels: the 5th percentile of the mid-tones'
    log-chroma. Faded photos measure 0.03-0.16 (a cast the levels left in the mid-tones); a
    scene that is one colour all over (a fundus photo, a sunset) 0.5 and more."""
    _, spread = _log_spread(levelled)
    return float(np.percentile(spread, 5)) if len(spread) >= 64 else math.inf


def _trust(evidence: float) -> float:
    """1 when near-grey pixels exist, falling to 0: with nothing grey in it the cast is the scene's."""
    return float(np.clip((_NO_GREY - evidence) / (_NO_GREY - _SURE_GREY), 0.0, 1.0))


def _neutral_gamma(levelled: np.ndarray) -> np.ndarray:
    """Per-channel gamma that brings the near-neutral mid-tones to grey (see the module doc).

    ``levelled`` is the statistics copy after levels (0..1); returns g with
    corrected_c = levelled_c ** (1 / g_c) and a geometric mean of 1."""
    logs, _ = _log_spread(levelled)
    g = np.ones(3)
    if len(logs) < 64:
        return g.astype(np.float32)
    for _ in range(_ROUNDS):
        cur = logs / g                                  # log of the current estimate
        spread = cur.max(axis=1) - cur.min(axis=1)
        # the least saturated pixels, but only those about as grey as the greyest: a white cup
        # on a wooden table, not the wood
        k = max(32, int(_NEUTRAL_SHARE * len(cur)))
        order = np.argpartition(spread, k - 1)[:k]
        limit = max(2.0 * float(np.percentile(spread, 5)), 0.05)
        pick = order[spread[order] <= limit]
        if len(pick) < 32:
            pick = order
        target = cur[pick].mean(axis=1)                 # log of their geometric mean
        for c in range(3):
            lc = logs[pick, c]
            inv = float(lc @ target) / max(float(lc @ lc), 1e-12)   # lc / g_c ~ target
            if inv > 0 and math.isfinite(inv):
                g[c] = 1.0 / inv
        g = np.clip(g, *_GAMMA_LIMITS)
        g /= float(np.exp(np.log(g).mean()))            # a common tone curve is not a cast
    return g.astype(np.float32)


def estimate(rgb: np.ndarray, clip: float = 0.1, cast: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fading inverse for this photo: (black, white, gamma) per channel of the sRGB values.

    ``cast`` is lowered by the evidence that grey exists in the photo (:func:`neutral_evidence`)."""
    small = _stats_copy(rgb)
    lo, hi = _levels(small, clip, cast)
    levelled = _apply(small, lo, hi, np.ones(3, np.float32))
    trust = _trust(neutral_evidence(levelled))
    if trust < 1.0:
        cast *= trust
        lo, hi = _levels(small, clip, cast)
        levelled = _apply(small, lo, hi, np.ones(3, np.float32))
    gamma = _neutral_gamma(levelled) if cast > 0 else np.ones(3, np.float32)
    return lo, hi, (gamma ** cast).astype(np.float32)


def restore_color(rgb: np.ndarray, clip: float = 0.1, cast: float = 1.0) -> np.ndarray:
    """Recover faded colour: float32 HxWx3 sRGB 0..1 in, the same out.

    ``clip``: % of the pixels allowed to clip at each end of each channel (0..5);
    ``cast``: 0 = contrast and black/white only, 1 = full per-channel cast removal."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadInput(f"restore-color needs an RGB image (HxWx3), got shape {rgb.shape}")
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise BadInput("restore-color needs an image of at least 2x2 pixels")
    if not (0.0 <= clip <= 5.0) or not (0.0 <= cast <= 1.0):
        raise BadInput(f"restore-color: clip must be 0..5 and cast 0..1, got {clip} and {cast}")
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    lo, hi, gamma = estimate(rgb, clip, cast)
    return _apply(rgb, lo, hi, gamma)


# --------------------------------------------------------------------------- synthetic fading
# Four hypotheses of how a print lost its colour, for tests and bench/quality_color.py; the
# restoration is not fitted to any one of them. All take and return sRGB float32 0..1.
FADE_MODELS = ("flare", "density", "curve", "yellowed")


def fade(rgb: np.ndarray, model: str) -> np.ndarray:
    """A faded copy of ``rgb`` under one of :data:`FADE_MODELS`.

    flare: additive black lift + per-channel gain and gamma in linear light (scanner flare on a
    print whose cyan faded); density: dye loss (each channel's density scaled, Beer-Lambert)
    under a yellowed paper; curve: contrast squeezed and blue/green lost in the encoded values
    (a cheap print); yellowed: a yellow stain multiplied over lifted, flattened tones."""
    x = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    if model == "flare":
        black, white, g = np.array([0.06, 0.03, 0.02]), np.array([0.92, 0.80, 0.60]), np.array([0.8, 1.0, 1.25])
        out = linear_to_srgb(black + (white - black) * srgb_to_linear(x) ** g)
    elif model == "density":
        paper, k = np.array([0.95, 0.88, 0.70]), np.array([0.55, 0.75, 0.85])
        out = linear_to_srgb(0.01 + paper * srgb_to_linear(x) ** k)
    elif model == "curve":
        out = 0.12 + 0.78 * x * np.array([1.0, 0.9, 0.72]) + np.array([0.0025, 0.001, 0.0])
    elif model == "yellowed":
        out = (0.08 + 0.85 * x ** 1.15) * np.array([0.98, 0.90, 0.68])
    else:
        raise ValueError(f"unknown fading model {model!r}; one of {FADE_MODELS}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- the task
def _run_task(rgb: np.ndarray, values: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return restore_color(rgb, clip=float(values["clip"]), cast=float(values["cast"])), {}


def _task():
    from engine.options import Option
    from engine.tasks.base import FULL_STRENGTH, TaskInfo, WholeImageTask

    clip = Option("clip", "float", 0.1, "Clip", "How much of the darkest and brightest pixels may clip to "
                  "black and white in each channel: higher gives more contrast.", minimum=0, maximum=5, unit="%")
    cast = Option("cast", "float", 1.0, "Cast removal", "How much of the colour cast to remove: 0 restores "
                  "contrast only, 1 also neutralises the cast.", minimum=0, maximum=1)
    info = TaskInfo(id="restore-color", title="Faded colour recovery (levels + cast removal)", group="restore",
                    kind="classical", scale=1, margin=0, license="MIT (EnhanceLayer code)", skips=("scale",),
                    source="engine/tasks/restore_color.py", ms_per_mp_cpu=150.0, tile_invariant=False,
                    options=(clip, cast),
                    notes="One curve per channel, estimated from the region sent (the selection): select the faded "
                          "photo, not the page around it. A photo with nothing grey in it keeps its colour; "
                          "a scene's own cast (a sunset) is removed too: lower Cast removal.",
                    defaults=FULL_STRENGTH, purpose="old-photo", label="Automatic levels + cast removal",
                    description="Stretches each colour back to full range and removes the overall cast; "
                                "select the photo itself, not the page or border around it.")
    return WholeImageTask(info=info, fn=_run_task, verb="recovering colour")


TASK = _task()
