"""Large-damage repair for old prints: fill a tear, hole or missing corner with the photo's own
texture (catalog id ``restore-fill``). The area to repair is the host's selection (the job's mask).

Why patches and not diffusion: a tear or a missing corner is tens to hundreds of pixels wide;
diffusion inpainting (OpenCV's Telea, Navier-Stokes) continues the border's colours smoothly
into it, which reads as a blurred smear on anything with texture (grass, fabric, film grain).
Exemplar filling copies texture from the rest of the photo instead, the way GIMP's
Resynthesizer "heal selection" and Photoshop's content-aware fill do. This one is the
multi-scale patch-voting method of Wexler, Shechtman & Irani (2007) with the randomised
nearest-neighbour search of Barnes et al. (PatchMatch, 2009), written from the papers:

1. a pyramid down to where the hole is a few pixels thick; the coarsest hole starts as a
   diffusion fill (structure at that scale is all a diffusion can get right anyway);
2. at each level, for every patch that touches the hole, PatchMatch finds the most similar
   patch lying wholly outside it (propagation from neighbours + random search, vectorised
   over all patches at once: Jacobi-style rather than scan-line order, with more rounds);
3. every hole pixel becomes the weighted vote of the pixels the overlapping patches copy
   there (weights favour good matches); steps 2-3 alternate a few times;
4. the next finer level starts from the upsampled matches, so structure found coarse is kept
   and texture is refined fine. The last vote at the finest level takes each pixel from its
   best-matching patch alone, so film grain and fine texture are copied, not averaged away.
5. the result keeps the patches' detail but takes its large-scale shading and colour from a
   diffusion fill (:func:`with_smooth_structure`), so a patch from a differently lit place fits in.

Tried on the development photos and not adopted: texture features in the patch distance
(Newson et al. 2017; they made fills too busy where the original is smooth, -0.1..-1.0 dB),
larger or smaller patches (5, 7 px), a deeper or shallower pyramid, sharp votes at every level.

Stains that are tints rather than holes (detail still under them) are restore-stain's job
(engine/tasks/restore_stain.py): filling would throw the picture under them away.

The fill looks at the region the host sends (the selection's box plus :data:`MARGIN`), so
the result depends on it: the task is not tile invariant.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from engine.errors import BadInput

PATCH = 9                 # patch side (px): 9 kept texture best at equal PSNR on the dev photos (5, 7, 9 tried)
MARGIN = 160              # context px a host sends around the selection: the texture source
_COARSE_THICK = 12.0      # the pyramid stops where the hole is at most this thick (px): 3-24 tried
_MIN_SIDE = 24            # nor goes below this image side
_PM_ROUNDS = 6            # PatchMatch rounds per EM step
_EM_COARSE, _EM_FINE = 6, 3
_CONF_BASE = 1.3          # confidence falls by this factor per px into the hole
_SEED = 1234              # fills are deterministic (the same selection gives the same layer)
_STRUCTURE_SIGMA = 16.0   # px: coarser than this from a diffusion fill, finer from the patches (2-24 tried)
_BLOCK = 8192             # patches compared per block (bounds the memory of one comparison: ~16 MB)


# --------------------------------------------------------------------------- helpers

def hole_of(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The hole (bool HxW) from the job's mask (its presence is checked by the pipeline:
    tasks.require_inputs), or BadInput with what to do instead."""
    from engine.tasks.base import selected

    hole = selected(mask, shape)
    if not hole.any():
        raise BadInput("the selection to repair is empty: select the damaged area first")
    known = ~hole
    free = cv2.erode(known.astype(np.uint8), np.ones((PATCH, PATCH), np.uint8), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0)
    if free.sum() < 4 * PATCH * PATCH:
        raise BadInput("the selection covers (nearly) the whole area sent, so there is nothing left to "
                       "copy texture from: select only the damage, or a larger area around it")
    return hole


def _thickness(hole: np.ndarray) -> float:
    """How far inside the hole its farthest pixel is (px)."""
    d = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    return float(d.max())


def _levels(hole: np.ndarray) -> int:
    h, w = hole.shape
    n = 0
    t = _thickness(hole)
    while t > _COARSE_THICK and min(h, w) / 2 >= _MIN_SIDE:
        t, h, w, n = t / 2, h // 2, w // 2, n + 1
    return n


def _down(img: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half size: pixels area-averaged, the hole grown (any hole pixel makes a hole pixel)."""
    h, w = hole.shape
    size = (max(1, w // 2), max(1, h // 2))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    hs = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    return small, hs


def _box(hole: np.ndarray, pad: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(hole)
    h, w = hole.shape
    return (slice(max(0, ys.min() - pad), min(h, ys.max() + pad + 1)),
            slice(max(0, xs.min() - pad), min(w, xs.max() + pad + 1)))


# --------------------------------------------------------------------------- one level

class _Level:
    """The patch search and vote at one pyramid level.

    Coordinates are patch centres in an image padded by r = PATCH // 2, so every patch is in
    bounds; targets (patches touching the hole) and their matches are kept as flat arrays."""

    def __init__(self, img: np.ndarray, hole: np.ndarray, rng: np.random.Generator):
        self.r = r = PATCH // 2
        self.h, self.w = hole.shape
        self.rng = rng
        self.img = cv2.copyMakeBorder(img, r, r, r, r, cv2.BORDER_REFLECT_101)
        self.hole = hole
        known = (~hole).astype(np.uint8)
        k = np.ones((PATCH, PATCH), np.uint8)
        # a source patch lies wholly on known pixels of the image (not on the reflected border)
        self.valid = cv2.erode(known, k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        self.src_y, self.src_x = np.nonzero(self.valid)
        touch = cv2.dilate(hole.astype(np.uint8), k).astype(bool)
        self.ty, self.tx = np.nonzero(touch)
        self.index = np.full((self.h, self.w), -1, np.int64)
        self.index[self.ty, self.tx] = np.arange(len(self.ty))
        oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
        self.offsets = list(zip(oy.ravel().tolist(), ox.ravel().tolist()))
        # windows[y, x] is the PATCH x PATCH patch centred on (y, x) of the unpadded image (a
        # view: it follows every write into self.img)
        self.windows = np.lib.stride_tricks.sliding_window_view(self.img, (PATCH, PATCH), axis=(0, 1))
        self.sy = np.zeros(len(self.ty), np.int64)
        self.sx = np.zeros(len(self.ty), np.int64)
        self.dist = np.full(len(self.ty), np.inf, np.float32)
        # Wexler et al.'s confidence: patches centred deep in the hole count less in the vote
        depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
        self.conf = (_CONF_BASE ** -depth[self.ty, self.tx]).astype(np.float32)

    # -- matches
    def random_sources(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        i = self.rng.integers(0, len(self.src_y), n)
        return self.src_y[i], self.src_x[i]

    def snap(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates clipped into the image, and which of them are valid sources."""
        y = np.clip(y, 0, self.h - 1)
        x = np.clip(x, 0, self.w - 1)
        return y, x, self.valid[y, x]

    def distance(self, sel: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Sum of squared differences between target patches ``sel`` and sources (y, x).

        Each patch is gathered whole from a strided window view of the padded image (one C-level
        copy per block of patches), not offset by offset: 81 small gathers per call made this
        the fill's cost (93 % of it, 2.5 s of 2.7 s for a 4000 px hole)."""
        ty, tx = self.ty[sel], self.tx[sel]
        d = np.empty(len(ty), np.float32)
        win = self.windows
        for a in range(0, len(ty), _BLOCK):
            b = a + _BLOCK
            diff = win[ty[a:b], tx[a:b]] - win[y[a:b], x[a:b]]
            d[a:b] = np.einsum("ijkl,ijkl->i", diff, diff)
        return d

    def consider(self, y: np.ndarray, x: np.ndarray, sel: Optional[np.ndarray] = None) -> None:
        """Keep the candidates (one per target of ``sel``) that beat the current matches."""
        if sel is None:
            sel = np.arange(len(self.ty))
        y, x, ok = self.snap(y, x)
        sel, y, x = sel[ok], y[ok], x[ok]
        if len(sel) == 0:
            return
        d = self.distance(sel, y, x)
        better = d < self.dist[sel]
        s = sel[better]
        self.sy[s], self.sx[s], self.dist[s] = y[better], x[better], d[better]

    def start(self, sy: Optional[np.ndarray] = None, sx: Optional[np.ndarray] = None) -> None:
        n = len(self.ty)
        if sy is None or sx is None:
            sy, sx = self.random_sources(n)
        y, x, ok = self.snap(sy, sx)
        ry, rx = self.random_sources(n)
        self.sy, self.sx = np.where(ok, y, ry), np.where(ok, x, rx)
        self.dist = self.distance(np.arange(n), self.sy, self.sx)

    def refresh(self) -> None:
        """Distances again after the hole's pixels changed."""
        self.dist = self.distance(np.arange(len(self.ty)), self.sy, self.sx)

    def search(self, rounds: int) -> None:
        n = len(self.ty)
        for k in range(rounds):
            step = 1 if k % 2 else max(1, 1 << (rounds // 2 - k // 2))   # long jumps first, then 1 px
            for dy, dx in ((0, step), (step, 0), (0, -step), (-step, 0)):
                ny, nx = self.ty - dy, self.tx - dx
                inside = (ny >= 0) & (ny < self.h) & (nx >= 0) & (nx < self.w)
                j = np.full(n, -1, np.int64)
                j[inside] = self.index[ny[inside], nx[inside]]
                sel = np.nonzero(j >= 0)[0]
                self.consider(self.sy[j[sel]] + dy, self.sx[j[sel]] + dx, sel)
            radius = max(self.h, self.w)
            while radius >= 1:
                self.consider(self.sy + self.rng.integers(-radius, radius + 1, n),
                              self.sx + self.rng.integers(-radius, radius + 1, n))
                radius //= 2

    # -- the vote
    def vote(self, best_only: bool = False) -> None:
        """Hole pixels = the weighted mean of what the overlapping patches copy there (or, with
        ``best_only``, the pixel of the best-matching patch that covers it)."""
        r = self.r
        hole = self.hole
        c = self.img.shape[2]
        num = np.zeros((self.h, self.w, c), np.float32)
        den = np.zeros((self.h, self.w), np.float32)
        best = np.full((self.h, self.w), np.inf, np.float32)
        if best_only:
            wgt = None
        else:
            s2 = max(float(np.percentile(self.dist, 75)), 1e-8)
            wgt = (np.exp(-self.dist / (2.0 * s2)) * self.conf).astype(np.float32) + 1e-6
        for oy, ox in self.offsets:
            py, px = self.ty + oy, self.tx + ox
            inside = (py >= 0) & (py < self.h) & (px >= 0) & (px < self.w)
            inside &= hole[np.clip(py, 0, self.h - 1), np.clip(px, 0, self.w - 1)]
            t = np.nonzero(inside)[0]
            py, px = py[t], px[t]
            val = self.img[self.sy[t] + r + oy, self.sx[t] + r + ox]
            if wgt is None:
                d = self.dist[t]
                win = d < best[py, px]           # positions are distinct for one offset
                best[py[win], px[win]] = d[win]
                num[py[win], px[win]] = val[win]
                den[py[win], px[win]] = 1.0
            else:
                num[py, px] += wgt[t, None] * val
                den[py, px] += wgt[t]
        hy, hx = np.nonzero(hole & (den > 0))
        self.img[hy + r, hx + r] = num[hy, hx] / den[hy, hx, None]

    def image(self) -> np.ndarray:
        r = self.r
        return self.img[r:r + self.h, r:r + self.w]


# --------------------------------------------------------------------------- the two modes

_SHARP = "finest"          # which votes copy the best patch's pixel ("last", "finest", "all" tried on the dev photos)


def _sharp_vote(lv: int, n: int, em: int, rounds: int) -> bool:
    if _SHARP == "all":
        return True
    if _SHARP == "finest":
        return lv == 0
    return lv == 0 and em == rounds - 1


def fill_texture(rgb: np.ndarray, hole: np.ndarray, seed: int = _SEED) -> np.ndarray:
    """The exemplar fill of ``hole`` (bool HxW) in ``rgb`` (float32 HxWx3 0..1)."""
    rng = np.random.default_rng(seed)
    # work on the hole's box plus room for sources: cost follows the hole, not the photo
    span = max(np.ptp(np.nonzero(hole)[0]), np.ptp(np.nonzero(hole)[1])) + 1
    ys, xs = _box(hole, max(MARGIN, 2 * span))
    img0, hole0 = np.ascontiguousarray(rgb[ys, xs], np.float32), hole[ys, xs]
    n = _levels(hole0)
    pyr = [(img0, hole0)]
    for _ in range(n):
        pyr.append(_down(*pyr[-1]))
    img, hl = pyr[-1]
    u8 = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    start = cv2.inpaint(u8, hl.astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    cur = np.where(hl[..., None], start, img)
    prev: Optional[_Level] = None
    for lv in range(n, -1, -1):
        img, hl = pyr[lv]
        if prev is None:
            level = _Level(cur, hl, rng)
            level.start()
        else:
            # this level's hole starts from the coarser level's matches, doubled
            fine = np.where(hl[..., None], cv2.resize(prev.image(), (hl.shape[1], hl.shape[0]),
                                                      interpolation=cv2.INTER_LINEAR), img)
            level = _Level(fine, hl, rng)
            cy = np.clip(level.ty // 2, 0, prev.h - 1)
            cx = np.clip(level.tx // 2, 0, prev.w - 1)
            j = prev.index[cy, cx]
            have = j >= 0
            sy = np.where(have, prev.sy[np.maximum(j, 0)] * 2 + (level.ty - cy * 2), -1)
            sx = np.where(have, prev.sx[np.maximum(j, 0)] * 2 + (level.tx - cx * 2), -1)
            level.start(np.where(have, sy, 0), np.where(have, sx, 0))
            level.vote()
            level.refresh()
        rounds = _EM_COARSE if lv == n else _EM_FINE
        for em in range(rounds):
            level.search(_PM_ROUNDS if em == 0 else 2)
            level.vote(best_only=_sharp_vote(lv, n, em, rounds))
            level.refresh()
        prev = level
    assert prev is not None
    filled = with_smooth_structure(prev.image(), img0, hole0)
    out = np.array(rgb, dtype=np.float32, copy=True)
    out[ys, xs] = np.where(hole0[..., None], np.clip(filled, 0.0, 1.0), out[ys, xs])
    return out


def with_smooth_structure(patches: np.ndarray, img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The patch fill's detail on a diffusion fill's large-scale shading.

    Structure + texture inpainting (Bertalmio, Vese, Sapiro & Osher 2003): the slow variations
    (shading, the colour of the area) are continued smoothly from the border, where a diffusion is
    hard to beat, and only the detail finer than :data:`_STRUCTURE_SIGMA` comes from the copied
    patches. A patch copied from a differently lit or coloured part of the photo then keeps its
    texture but takes the surroundings' brightness and colour. Both low-passes run over the whole
    box, so a hole narrower than a few sigma gets part of the correction only; correcting fully
    (low-passes of the hole's pixels alone) measured worse. On the development photos (camera,
    stereo_motorcycle and 6 mate-backgrounds photos that no benchmark uses; 72 cases), fills within
    1 dB of Telea: 42 without, 51 with this (sigma 8 / 16 / 32: 50 / 51 / 49; full correction 39-46),
    mean +0.2 dB, texture within 0.5-1.5x: 37 -> 36.
    """
    known = np.where(hole[..., None], 0.0, img).astype(np.float32)
    m = hole.astype(np.uint8)
    smooth = np.dstack([cv2.inpaint(np.ascontiguousarray(known[..., c]), m, 5, cv2.INPAINT_TELEA)
                        for c in range(img.shape[2])])
    return patches - _low(patches) + _low(smooth)


def _low(a: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), _STRUCTURE_SIGMA, borderType=cv2.BORDER_REFLECT)


def _run_task(rgb: np.ndarray, values: dict[str, Any], mask: Optional[np.ndarray] = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    assert mask is not None                  # the pipeline refuses a job without one
    hole = hole_of(mask, rgb.shape[:2])
    return fill_texture(rgb, hole), {}, {"note": f"{int(hole.sum())} px filled from the photo's own texture"}


def _task():
    from engine.tasks.base import TaskInfo, WholeImageTask

    info = TaskInfo(id="restore-fill", title="Tear and hole repair (content-aware fill)", group="restore",
                    kind="classical", scale=1, margin=MARGIN, license="MIT (EnhanceLayer code)",
                    # the cost follows the selection's area, not the region's: 20 s per region MP is
                    # within ~3x for selections of 100-500 px (bench/results/quality_fill.md:
                    # ~120 s per filled MP)
                    source="engine/tasks/restore_fill.py", ms_per_mp_cpu=20000.0, tile_invariant=False,
                    notes="Fills the selection with patches copied from around it (multi-scale PatchMatch); "
                          "the cost follows the size of the selection, not of the photo.",
                    needs_mask=True, skips=("strength", "grain", "keep_color", "protect", "scale"),
                    purpose="damage", label="Fill tears and holes",
                    description="Select a tear, a hole or a missing corner: it is rebuilt from the photo's own "
                                "texture around it.")
    return WholeImageTask(info=info, fn=_run_task, verb="filling")


TASK = _task()
