"""Stain lifting for old prints: a water, tea or foxing stain that tints the photo but leaves its
detail (catalog id ``restore-stain``). The area is the host's selection (the job's mask).

Why not a fill: under a stain the picture is still there, only seen through a brownish film.
Filling (restore-fill) would throw that detail away; the stain has to be divided out.

The model (physical, as for a dye): the stain is a film of one colour over the print, so in
linear light it multiplies each channel, ``observed = photo * exp(-D(p) * k)``: a per-pixel
density ``D`` (how thick the film is there: a flat wash, often a darker rim, the *tide line*)
times one absorption colour ``k`` for the whole stain (brown: absorbs blue most). In optical
density (``-log`` of linear light) that is an addition, ``OD = OD_photo + D * k``, and the
correction is a subtraction of a smooth field, which keeps every detail of the photo.

How ``D`` and ``k`` are found, without knowing the photo under the stain:

1. the low frequencies of the OD (Gaussian, ``_SIGMA`` px) inside the selection are compared
   with a *membrane*: the smoothest surface that meets the low frequencies just outside the
   selection (a Laplace solve on a coarse grid). The difference ``r`` is the stain plus
   whatever the photo's own low frequencies do differently inside;
2. the photo's own differences are mostly changes of brightness (a shadow, a dark coat), a
   stain is mostly a change of colour: the *chromatic* part of ``r`` (what is left after
   taking out the grey axis) is dominated by the stain. Its main direction (weighted PCA) is
   the stain's tint (a brown prior replaces it when it points more than 30 degrees away), and
   ``D`` is the projection on it, so a dark object inside a selection is not taken for a stain;
3. the darkening that goes with the tint (the grey part of ``k``) is in a typical brown
   stain's proportion (fitting it to the data let the scene's brightness leak in);
4. a stain only adds density, so the negative values of ``D`` are the scene's own colour
   change: their spread is ``D``'s noise level, and ``D`` is shrunk by three times it; then
   it is damped by how much the scene's colours vary along the tint around the selection
   (on a colourful, busy photo the stain cannot be told from the scene, and it is safer to
   leave it than to paint the scene over); the correction ``D * k`` is taken out of the OD.

Where it works and where not (bench/results/quality_stain.md): on black-and-white and
low-colour prints (the usual stained old photo) the stain goes; on colourful busy photos the
correction is small, by design of step 4. A photo that is one colour inside the selection and
another around it (a red dress selected on a green lawn) breaks step 1: the difference is the
scene, not a stain. Select the stain
with a little of what surrounds it, on the same kind of subject, and mask the layer where
needed. The task is not tile invariant (the membrane needs the selection's surroundings);
hosts send :data:`MARGIN` px around the selection.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from engine.errors import BadInput
from engine.pipeline.formats import linear_to_srgb, srgb_to_linear

MARGIN = 48               # context px a host sends around the selection: the clean ring the membrane meets
_RING = 12                # px of clean surroundings used as the membrane's boundary
_SIGMA = 4.0              # low-pass of the OD (px): the stain's density varies slower than the photo
_COARSE_UNKNOWNS = 40000  # the membrane is solved on a grid with at most about this many unknowns
_SHRINK = 3.0             # soft threshold: this many times D's noise level (1-2 tried: more harm on busy colour)
_EPS = 1.0 / 1024         # linear-light floor before the log (black stays black)
_GREY = np.full(3, 1.0 / np.sqrt(3.0), np.float32)


def selection_of(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The selection (bool HxW) from the job's mask, or BadInput with what to do instead."""
    from engine.tasks.base import selected

    sel = selected(mask, shape)
    if not sel.any():
        raise BadInput("the selection is empty: select the stain first (with a little of its surroundings)")
    if _ring(sel).sum() < 4 * _RING:
        raise BadInput("the selection covers (nearly) the whole area sent, so there is nothing around the stain "
                       "to compare it with: select the stain with some of the clean photo around it")
    return sel


def _ring(sel: np.ndarray) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _RING + 1, 2 * _RING + 1))
    return cv2.dilate(sel.astype(np.uint8), k).astype(bool) & ~sel


def membrane(values: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """``values`` (HxWxC) with the ``unknown`` pixels replaced by the harmonic interpolation of the
    known ones around them (Laplace's equation, Dirichlet boundary), solved on a coarse grid
    (the field is smooth) and brought back bilinearly; known pixels are returned unchanged."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    h, w = unknown.shape
    f = max(1.0, float(np.sqrt(unknown.sum() / _COARSE_UNKNOWNS)))
    ch, cw = max(3, int(round(h / f))), max(3, int(round(w / f)))
    small = cv2.resize(values, (cw, ch), interpolation=cv2.INTER_AREA).reshape(ch, cw, -1)
    unk = cv2.resize(unknown.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA) > 0
    unk[0, :] = unk[-1, :] = unk[:, 0] = unk[:, -1] = False     # the image border is known
    if not unk.any():
        return values
    idx = -np.ones((ch, cw), np.int64)
    ys, xs = np.nonzero(unk)
    n = len(ys)
    idx[ys, xs] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.full(n, 4.0)]
    rhs = np.zeros((n, small.shape[2]), np.float64)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        j = idx[ny, nx]
        inner = j >= 0
        rows.append(np.arange(n)[inner])
        cols.append(j[inner])
        vals.append(np.full(int(inner.sum()), -1.0))
        rhs[~inner] += small[ny[~inner], nx[~inner]]
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    sol = spsolve(a, rhs).reshape(n, -1)
    filled = small.astype(np.float64).copy()
    filled[ys, xs] = sol
    up = cv2.resize(filled.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    return np.where(unknown[..., None], up, values).astype(np.float32)


# A typical stain's absorption colour (tea, coffee, the humic acids of water stains, foxing):
# blue absorbed most. The tint found in the data is used when it lies within _TINT_ANGLE of
# this one's; further off, the scene's own colours have won the estimate and this one is used.
_BROWN = np.array([0.35, 0.55, 1.0], np.float32)
_TINT_ANGLE = 30.0        # degrees
_SCENE_WEIGHT = 2.0       # how strongly the scene's own colour variation damps the correction


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _chroma(v: np.ndarray) -> np.ndarray:
    """The part of OD vectors (..., 3) off the grey axis."""
    return v - (v @ _GREY)[..., None] * _GREY


def _tint(chroma: np.ndarray) -> np.ndarray:
    """The stain's tint (unit, off the grey axis): the main direction of the chromatic residual
    (PCA weighted by its size), or the brown prior's where the data points elsewhere."""
    prior = _unit(_chroma(_BROWN))
    wgt = np.linalg.norm(chroma, axis=1)
    cov = (chroma * wgt[:, None]).T @ chroma / max(float(wgt.sum()), 1e-9)
    t = np.linalg.eigh(cov)[1][:, -1].astype(np.float32)
    if float(t @ prior) < 0:
        t = -t
    return t if float(t @ prior) >= np.cos(np.radians(_TINT_ANGLE)) else prior


def _absorption(tint: np.ndarray) -> np.ndarray:
    """The stain's full absorption colour ``k``: its tint plus the darkening that goes with it,
    in the brown prior's proportion, and at least enough that no channel gets lighter. Fitting
    the darkening to the data (least squares, or medians of the most and least tinted pixels)
    was tried on the development photos: the scene's own brightness changes leak into it and the
    stain's area came out too light (-5 dB on the gray photo)."""
    beta = float(_BROWN @ _GREY) / float(np.linalg.norm(_chroma(_BROWN)))
    beta = max(beta, -np.sqrt(3.0) * float(tint.min()))
    return (tint + beta * _GREY).astype(np.float32)


def estimate(rgb: np.ndarray, sel: np.ndarray, anyway: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(D: HxW density of the stain, k: its absorption colour, 3) for ``rgb`` (sRGB 0..1).
    ``anyway``: no damping by the scene's own colour variation (the user's "Lift anyway")."""
    od = -np.log(np.maximum(srgb_to_linear(rgb), _EPS))
    low = cv2.GaussianBlur(od, (0, 0), _SIGMA)
    # the membrane only needs the selection and its ring: cut the work to their box
    ys, xs = np.nonzero(sel | _ring(sel))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    m = np.zeros_like(low)
    m[y0:y1, x0:x1] = membrane(low[y0:y1, x0:x1], sel[y0:y1, x0:x1])
    chroma = _chroma((low - m)[sel])            # N x 3: the stain's tint plus the scene's own colour change
    tint = _tint(chroma)
    d = chroma @ tint
    # a stain only adds density, so what lies below 0 is the scene's own colour change: its
    # spread is the noise level D is shrunk by
    neg = d[d < 0]
    noise = 1.4826 * float(np.median(-neg)) if neg.size else 0.0
    d = np.maximum(d - _SHRINK * noise, 0.0)
    if (d > 0).any() and not anyway:
        # the more the scene's colours vary around the selection along the tint (a red tank, a
        # brown cupboard), the less D can be told from them: damp it by signal / (signal + scene)
        around = _chroma(low[~sel]) @ tint
        scene = _SCENE_WEIGHT * 1.4826 * float(np.median(np.abs(around - np.median(around))))
        signal = float(np.median(d[d > 0]))
        d = d * (signal * signal / (signal * signal + scene * scene))
    dens = np.zeros(sel.shape, np.float32)
    dens[sel] = d
    return dens, _absorption(tint)


_NOTHING = 0.02           # a density below this everywhere (2 % in blue) counts as "no stain found"


def lift(rgb: np.ndarray, sel: np.ndarray, anyway: bool = False) -> np.ndarray:
    """The photo with the stain in ``sel`` divided out (sRGB 0..1, same shape)."""
    return _lift(rgb, *estimate(rgb, sel, anyway))


def _lift(rgb: np.ndarray, dens: np.ndarray, k: np.ndarray) -> np.ndarray:
    lin = srgb_to_linear(rgb) * np.exp(dens[..., None] * k[None, None, :])
    return np.where((dens > 0)[..., None], linear_to_srgb(lin), rgb).astype(np.float32)


def _run_task(rgb: np.ndarray, values: dict[str, Any], mask: Optional[np.ndarray] = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    assert mask is not None                  # the pipeline refuses a job without one
    sel = selection_of(mask, rgb.shape[:2])
    anyway = bool(values.get("lift_anyway", False))
    dens, k = estimate(rgb, sel, anyway)
    strongest = float((dens[..., None] * k).max())
    if strongest < _NOTHING:
        hint = "select the stain with some clean photo around it" + ("" if anyway else ", or tick \"Lift anyway\"")
        return rgb, {}, {"note": "no stain could be told apart from the photo's own colours here: left as it is "
                                 f"({hint})", "notice": True}
    gone = 100.0 * (1.0 - float(np.exp(-strongest)))
    return _lift(rgb, dens, k), {}, {"note": f"stain lifted (it took up to {gone:.0f} % of the light in its "
                                             "strongest channel)"}


def _task():
    from engine.options import Option
    from engine.tasks.base import TaskInfo, WholeImageTask

    anyway = Option("lift_anyway", "bool", False, "Lift anyway",
                    "Normally a stain on a colourful, busy photo is left alone where it cannot be told from the "
                    "photo's own colours. Tick this to take out the tint found all the same (then check the "
                    "result, and mask it where the photo's own colours went).")

    info = TaskInfo(id="restore-stain", title="Stain lifting (keeps the detail under it)", group="restore",
                    kind="classical", scale=1, margin=MARGIN, license="MIT (EnhanceLayer code)",
                    source="engine/tasks/restore_stain.py", ms_per_mp_cpu=700.0, tile_invariant=False,
                    notes="Divides the stain's colour film out of the selection, keeping the picture under it.",
                    # a stain lifted at 60 % still shows: the layer's opacity is the way to regrade
                    needs_mask=True, skips=("strength", "grain", "keep_color", "protect", "scale"), options=(anyway,),
                    purpose="damage", label="Lift a stain",
                    description="Select a water or tea stain with a little of the clean photo around it: its "
                                "brownish film is taken out and the picture under it is kept.")
    return WholeImageTask(info=info, fn=_run_task, verb="lifting the stain")


TASK = _task()
