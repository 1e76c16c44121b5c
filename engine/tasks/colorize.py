"""Colorization from the retoucher's colour hints (catalog id ``colorize``).

The retoucher paints a few strokes of colour on a separate layer (CLI: ``--hints FILE``, an
RGBA image whose opaque pixels are hints); the colours are spread over the black-and-white
photo along its own structure: neighbouring pixels of similar brightness get similar colour
(Levin, Lischinski & Weiss, "Colorization using optimization", SIGGRAPH 2004, written here
from the paper). The photo's brightness is kept exactly; only the chroma comes from the hints.

The optimisation: for every pixel r without a hint, its chroma equals the weighted mean of
its 8 neighbours s, with weights exp(-(Y_r - Y_s)^2 / (2 var_r)) from the local brightness
variance (edges stop the colour); hint pixels are fixed. One sparse linear system per chroma
channel, factorised once. To keep large photos fast the system is solved on a copy of at most
:data:`WORK_MP` megapixels, and the chroma brought back to full size with a guided filter
whose guide is the full-size brightness, so colour edges snap to the photo's edges.

Chroma is propagated as CIELAB a*, b* (measured against the paper's YUV on the development
photo, bench/quality_colorize.py); the luminance stays the input's (BT.601 luma of the
result equals the input's gray within rounding), so in a host the layer works in Color
blend mode or Normal alike.

Tried and not adopted (development photos only: stereo_motorcycle and 8 mate-backgrounds
photos, two hint seeds each; CIEDE2000 relative to the gray image's, 0.288 for this method):
nonlocal affinities (8 nearest neighbours in brightness / local mean / local contrast /
position, as in AppProp and KNN matting, mixed in at 10 % or 30 %: 0.290 / 0.292), spreading
a*b* relative to the lightness so shading keeps its saturation (0.283-0.291), and even hints
that are exactly right at every stroke pixel (0.276): the error lies far from the strokes, in
colours no stroke shows, which no propagation can know.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from engine.errors import BadInput

WORK_MP = 0.35            # the system is solved on a copy of at most this many megapixels
_HINT_ALPHA = 0.5         # hint pixels: alpha at least this
_GUIDE_RADIUS = 4         # guided-filter window (full-size px) and its regulariser
_GUIDE_EPS = 1e-4
_COLOUR_AT = 0.02         # a photo whose pixels differ from gray by more than this is in colour
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def hints_of(hints: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(float32 HxWx3 colours 0..1, bool HxW where a hint is) from an RGBA hints image, or BadInput
    (their presence is checked by the pipeline: tasks.require_inputs)."""
    h = np.asarray(hints)
    if h.ndim != 3 or h.shape[2] != 4:
        raise BadInput("the hints image must be RGBA (its opaque pixels are the hints)")
    if h.shape[:2] != shape:
        raise BadInput(f"the hints image is {h.shape[1]}x{h.shape[0]} px but the photo is {shape[1]}x{shape[0]}: "
                       "they must be the same size")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(h.dtype, 1.0)
    f = h.astype(np.float32) / np.float32(scale)
    where = f[..., 3] >= _HINT_ALPHA
    if not where.any():
        raise BadInput("the hints layer has no hints: paint a few strokes of colour on it (opaque pixels)")
    return np.clip(f[..., :3], 0.0, 1.0), where


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2Lab)


def _weights(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-neighbour affinity matrix rows as (rows, cols, values), each row summing to 1."""
    from numpy.lib.stride_tricks import sliding_window_view

    h, w = y.shape
    pad = np.pad(y, 1, mode="edge")
    win = sliding_window_view(pad, (3, 3)).reshape(h, w, 9)
    var = win.var(axis=2)
    diff2 = (win - y[..., None]) ** 2
    diff2[..., 4] = np.inf                                         # not its own neighbour
    # the paper's floor: sigma never below what makes the closest neighbour's weight 0.01
    mgv = np.min(diff2, axis=2)
    sig2 = np.maximum(0.6 * var, np.maximum(mgv / np.log(100.0), 2e-6))
    wt = np.exp(-diff2 / sig2[..., None])
    wt[..., 4] = 0.0
    wt /= np.maximum(wt.sum(axis=2, keepdims=True), 1e-12)
    idx = np.arange(h * w).reshape(h, w)
    pidx = np.pad(idx, 1, mode="edge")
    nb = sliding_window_view(pidx, (3, 3)).reshape(h * w, 9)
    rows = np.repeat(np.arange(h * w), 9)
    return rows, nb.ravel(), wt.reshape(-1)


def propagate(y: np.ndarray, chroma: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Levin et al.'s optimisation: chroma (HxWxC) spread from ``where`` over gray ``y`` (HxW)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import factorized

    h, w = y.shape
    n = h * w
    rows, cols, vals = _weights(y.astype(np.float64))
    fixed = where.ravel()
    vals = np.where(fixed[rows], 0.0, vals)                        # a hint pixel's row is the identity
    W = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    A = (sp.identity(n, format="csr") - W).tocsc()
    solve = factorized(A)
    out = np.empty((h, w, chroma.shape[2]), np.float32)
    for c in range(chroma.shape[2]):
        b = np.where(fixed, chroma[..., c].ravel(), 0.0).astype(np.float64)
        out[..., c] = solve(b).reshape(h, w)
    return out


def _guided(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter of each channel of ``src`` with the gray ``guide``."""
    k = (2 * r + 1, 2 * r + 1)
    mi = cv2.boxFilter(guide, -1, k)
    vi = cv2.boxFilter(guide * guide, -1, k) - mi * mi
    out = np.empty_like(src)
    for c in range(src.shape[2]):
        p = np.ascontiguousarray(src[..., c])
        mp = cv2.boxFilter(p, -1, k)
        cov = cv2.boxFilter(guide * p, -1, k) - mi * mp
        a = cov / (vi + eps)
        b = mp - a * mi
        out[..., c] = cv2.boxFilter(a, -1, k) * guide + cv2.boxFilter(b, -1, k)
    return out


def colorize(gray_rgb: np.ndarray, colours: np.ndarray, where: np.ndarray, work_mp: float = WORK_MP) -> np.ndarray:
    """RGB 0..1 with ``gray_rgb``'s brightness and the hints' colours spread over it."""
    h, w = where.shape
    y = gray_rgb @ _LUMA
    lab_hint = _lab(colours)
    f = min(1.0, float(np.sqrt(work_mp * 1e6 / (h * w))))
    if f < 1.0:
        size = (max(8, round(w * f)), max(8, round(h * f)))
        ys = cv2.resize(y, size, interpolation=cv2.INTER_AREA)
        cover = cv2.resize(where.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        summed = cv2.resize(np.ascontiguousarray(lab_hint[..., 1:] * where[..., None]), size,
                            interpolation=cv2.INTER_AREA)
        wh = cover > 0.25
        ch = summed / np.maximum(cover, 1e-6)[..., None]
        ab = propagate(ys, ch, wh)
        ab = cv2.resize(ab, (w, h), interpolation=cv2.INTER_CUBIC)
        ab = _guided(y, ab, _GUIDE_RADIUS, _GUIDE_EPS)
    else:
        ab = propagate(y, lab_hint[..., 1:], where)
    return with_luma(y, ab)


def with_luma(y: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """RGB whose BT.601 luma is ``y`` and whose a*b* chroma is ``ab`` (as near as the gamut allows)."""
    lab = np.concatenate([_lab(np.repeat(y[..., None], 3, axis=2))[..., :1], ab], axis=2)
    rgb = np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)
    # Lab's L is not BT.601 luma: shift each pixel so its luma is exactly the photo's (gray
    # keeps its brightness in any blend mode), then keep it in range
    rgb = rgb + (y - rgb @ _LUMA)[..., None]
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def is_colour(rgb: np.ndarray) -> bool:
    return float(np.percentile(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max(axis=2), 99)) > _COLOUR_AT


def _run_task(rgb: np.ndarray, values: dict[str, Any], hints: Optional[np.ndarray] = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    assert hints is not None                 # the pipeline refuses a job without them
    colours, where = hints_of(hints, rgb.shape[:2])
    out = colorize(rgb, colours, where)
    note = f"colour spread from {int(where.sum())} hint px"
    if is_colour(rgb):
        note = "the photo already had colour: it was treated as black and white (its brightness kept); " + note
        return out, {}, {"note": note, "notice": True}
    return out, {}, {"note": note}


def _task():
    from engine.tasks.base import FULL_STRENGTH, TaskInfo, WholeImageTask

    info = TaskInfo(id="colorize", title="Colorize from colour hints", group="restore", kind="classical",
                    scale=1, margin=0, license="MIT (EnhanceLayer code)", source="engine/tasks/colorize.py",
                    ms_per_mp_cpu=8000.0, tile_invariant=False,
                    needs_hints=True, colour_output=True, layer_blend="color",
                    notes="Spreads the colours of a hints image over the photo along its own edges "
                          "(Levin et al. 2004); the photo's brightness is kept.",
                    skips=("grain", "keep_color", "protect", "scale"),
                    defaults=FULL_STRENGTH, purpose="colorize", label="Colorize from my colour strokes",
                    description="Paint a few strokes of colour on a separate layer and choose it as the hints: "
                                "the colours spread over the photo along its edges.")
    return WholeImageTask(info=info, fn=_run_task, verb="colorizing")


TASK = _task()
