"""Dust & scratch repair for scanned prints and film (catalog id ``restore-dust``).

Why classical: no learned inpainter ships its weights inside a wheel we can use, and dust
and scratches are described well by shape and contrast: thin (1-3 px) bright or dark lines
and small specks (up to ~13 px across) that stand out against their whole neighbourhood.

Detection (luminance):

1. morphological top-hat (bright) and black-hat (dark) residuals with a 19 px disk, larger
   than any speck; openings/closings keep step edges, so plain edges leave no residual;
2. per-pixel *significance*: residual / (mean residual in a 41 px ring around the pixel,
   which leaves the defect itself out, + 2 x noise); fur, foliage and gravel have many
   similar residuals around them and score low;
3. candidates = hysteresis regions grown from significant seeds; big candidates are cut
   along a 24 px grid so a scratch crossing a busy region is judged piece by piece;
4. each piece gets 12 features (peak significance, contrast, *excess* over the brightest /
   darkest background within 13 px, calmness of its ring, edge strength of the defect-free
   background under it, area, thickness, elongation, boundary sharpness, plateau share,
   flatness) and a linear score fitted by ``bench/quality_restore.py --fit`` on real photos
   (clean ones as negatives). ``sensitivity`` moves the score threshold; 0.5 is calibrated
   so that clean real photos lose < 0.1 % of their pixels to false positives;
5. scratch tracing: long thin lines found by oriented 21 px line filters (16 directions,
   best minus median direction, less the ring level) with hysteresis per orientation band
   are taken whole when they contain an accepted thin, elongated piece of the same
   polarity, so a scratch found where the background is calm is followed through fur,
   wrinkles and foliage.

Single-image dust detection is ambiguous (a catch-light or a star on a flag *is* a bright
speck), so the default is conservative: high precision, modest recall; raising the
sensitivity finds more and the returned mask lets the retoucher paint off mistakes.

Filling: OpenCV Navier-Stokes inpainting per channel on 16-bit data (OpenCV's float path
assumes a 0..255 range), then grain: noise whose amplitude follows the high-pass energy of
the surroundings, lightly correlated like film grain, so a filled scratch is not a smooth line.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from engine.errors import BadInput
from engine.pipeline.formats import LUMA as _LUMA

_DISK_RADIUS = 9          # larger than the largest speck we repair (radius ~6, irregular)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadInput(f"restore-dust needs an RGB image (HxWx3), got shape {rgb.shape}")
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise BadInput("restore-dust needs an image of at least 8x8 pixels")
    return np.ascontiguousarray(rgb, dtype=np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb @ _LUMA, dtype=np.float32)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _noise_sigma(y: np.ndarray) -> float:
    """Global noise estimate: MAD of a fine high-pass (robust to edges and defects)."""
    hp = y - cv2.GaussianBlur(y, (0, 0), 1.0)
    return float(1.4826 * np.median(np.abs(hp)) + 1e-4)


def _ring_mean(x: np.ndarray, outer: int = 41, inner: int = 17) -> np.ndarray:
    """Mean of x over a square ring: the surroundings of a pixel without the defect itself."""
    so = cv2.boxFilter(x, -1, (outer, outer), normalize=False, borderType=cv2.BORDER_REFLECT)
    si = cv2.boxFilter(x, -1, (inner, inner), normalize=False, borderType=cv2.BORDER_REFLECT)
    return np.maximum(so - si, 0.0) / float(outer * outer - inner * inner)


def _significance(resid: np.ndarray, sigma: float) -> np.ndarray:
    """Residual relative to the same residual's level around it (texture) and the noise.

    (A two-pass variant that leaves already-outstanding pixels out of the yardstick was
    tried: it raised false positives in textures more than it helped scratches.)
    """
    return resid / (_ring_mean(resid) + 2.0 * sigma + 0.004)


def _gradmag(b: np.ndarray) -> np.ndarray:
    return np.hypot(cv2.Sobel(b, -1, 1, 0), cv2.Sobel(b, -1, 0, 1)) / 8.0


# Weights of the piece score: a logistic regression fitted by bench/quality_restore.py
# (``--fit``) on candidate pieces of 7 clean real photos (negatives, weighted by area) and of
# the same photos with synthetic damage (seeds 1, 2; positives); the benchmark reports seed 3
# and leave-one-photo-out figures. Feature order: ``FEATURES``.
FEATURES = ("log_peak_sig", "contrast", "excess", "log_calm", "log_edge", "log_area",
            "thickness", "log_elong", "boundary_sharpness", "plateau", "log_flat_vs_ring",
            "flat_vs_contrast")
_W = np.array([3.6805, 0.1681, 5.7022, -0.8801, -0.7705, -0.3933, -0.6558, -0.2143, -0.4564, 4.1686,
               -0.1566, -1.4593])
_B = -6.5684
_TILE = 24                # pieces of large candidates are judged per 24 px tile
_DEFAULT_T = 4.0
_PROPAGATE = 0.0   # extra allowance for thin pieces of an accepted component (0: off; 1.5 doubled coffee FP)


def _score_threshold(sensitivity: float) -> float:
    """Score a piece must exceed: 0.5 is the calibrated default (< 0.1 % false positives on
    clean photos); each 0.1 of sensitivity moves it by 0.6."""
    return _DEFAULT_T + (0.5 - sensitivity) * 6.0


def _quantile(x: np.ndarray, q: float) -> float:
    """np.percentile(x, 100 q) with linear interpolation, without its per-call overhead."""
    n = x.size
    k = q * (n - 1)
    lo, hi = int(math.floor(k)), int(math.ceil(k))
    part = np.partition(x, (lo, hi)) if hi != lo else np.partition(x, lo)
    return float(part[lo] + (part[hi] - part[lo]) * (k - lo))


def _upper_bound(known: dict[int, float], contrast: float, sigma: float) -> float:
    """Largest score a piece can reach given its cheap features (the rest at their extremes).

    Lets ``detect_defects`` skip the costly features of pieces that cannot pass.
    """
    lo_hi = {3: (math.log(contrast / (0.5 + sigma + 0.003)), math.log(contrast / (sigma + 0.003))),
             4: (math.log(0.01), math.inf), 6: (0.9, _DISK_RADIUS + 1.0),
             7: (math.log(1.4 / (_DISK_RADIUS + 1.0)), math.log(4 * _TILE)), 8: (0.0, math.inf),
             10: (math.log(sigma / (0.5 + sigma)), math.log((0.5 + sigma) / sigma)), 11: (0.0, math.inf)}
    total = _B
    for i, w in enumerate(_W):
        if i in known:
            total += w * known[i]
        else:
            lo, hi = lo_hi[i]
            total += w * (hi if w > 0 else lo)
    return total


def _candidate_pieces(y: np.ndarray, resid: np.ndarray, excess: np.ndarray, bg: np.ndarray,
                      sigma: float, grad_y: np.ndarray, threshold: float | None = None):
    """Yield (slice, bool mask in slice, feature vector, component id) per candidate piece.

    With ``threshold``, pieces whose score cannot exceed it are skipped early.
    """
    sig = _significance(resid, sigma)
    seeds = (sig > 2.5) & (resid > 0.05)
    grow = ((sig > 1.2) & (resid > 0.03)) | seeds
    n, lab, st, _ = cv2.connectedComponentsWithStats(grow.astype(np.uint8), connectivity=8)
    if n <= 1:
        return
    has_seed = np.zeros(n, bool)
    has_seed[np.unique(lab[seeds])] = True
    has_seed[0] = False
    big = (st[:, cv2.CC_STAT_AREA] > 150) | (np.maximum(st[:, 2], st[:, 3]) > _TILE)
    # Large candidates are cut along a tile grid: a scratch that crosses a busy region is
    # judged piece by piece instead of inheriting the busy region's statistics.
    hh, ww = y.shape
    tiles = (np.arange(hh)[:, None] // _TILE) * ((ww + _TILE - 1) // _TILE) + (np.arange(ww)[None, :] // _TILE)
    piece = np.where(big[lab] & has_seed[lab], lab.astype(np.int64) * 1_000_000 + tiles + 1,
                     np.where(has_seed[lab], lab.astype(np.int64) * 1_000_000, 0))
    ids, inv = np.unique(piece, return_inverse=True)
    inv = inv.reshape(piece.shape)
    gbg = _gradmag(cv2.GaussianBlur(bg, (0, 0), 1.0))
    ys, xs = np.nonzero(inv > 0) if ids[0] == 0 else np.nonzero(np.ones_like(inv, bool))
    lbl = inv[ys, xs]
    order = np.argsort(lbl, kind="stable")
    ys, xs, lbl = ys[order], xs[order], lbl[order]
    bounds = np.searchsorted(lbl, np.arange(len(ids) + 1))
    k5 = np.ones((5, 5), np.uint8)
    k13 = np.ones((13, 13), np.uint8)
    for j in range(1 if ids[0] == 0 else 0, len(ids)):
        py, px = ys[bounds[j]:bounds[j + 1]], xs[bounds[j]:bounds[j + 1]]
        if len(py) == 0:
            continue
        y0, y1 = max(int(py.min()) - 8, 0), min(int(py.max()) + 9, hh)
        x0, x1 = max(int(px.min()) - 8, 0), min(int(px.max()) + 9, ww)
        sl = (slice(y0, y1), slice(x0, x1))
        sel = np.zeros((y1 - y0, x1 - x0), bool)
        sel[py - y0, px - x0] = True
        area = len(py)
        rr = resid[sl][sel]
        contrast = _quantile(rr, 0.9) + 1e-4
        peak = math.log(max(float(sig[sl][sel].max()), 1e-3))
        exc = float(np.median(excess[sl][sel]))
        plateau = float((rr > 0.7 * rr.max()).mean())
        if threshold is not None and _upper_bound(
                {0: peak, 1: contrast, 2: exc, 5: math.log(area), 9: plateau}, contrast, sigma) <= threshold:
            continue
        near = cv2.dilate(sel.astype(np.uint8), k5).astype(bool)
        ring = cv2.dilate(sel.astype(np.uint8), k13).astype(bool) & ~near & ~grow[sl]
        dist = cv2.distanceTransform(np.pad(sel, 1).astype(np.uint8), cv2.DIST_L2, 3)
        thick = float(dist.max())
        ringstd = float(y[sl][ring].std()) if ring.sum() > 5 else 1.0
        edge_in = float(np.median(gbg[sl][sel]))
        bnd = near & ~sel
        sharp = _quantile(grad_y[sl][bnd], 0.9) / contrast if bnd.any() else 0.0
        core = rr > 0.5 * contrast
        yin = y[sl][sel][core] if core.sum() >= 2 else y[sl][sel]
        inner = float(yin.std())
        ext = math.hypot(int(py.max()) - int(py.min()) + 1, int(px.max()) - int(px.min()) + 1)
        f = np.array([
            peak, contrast, exc,
            math.log(contrast / (ringstd + sigma + 0.003)),
            math.log(edge_in / contrast + 0.01), math.log(area), thick,
            math.log(ext / max(thick, 0.5)), sharp, plateau,
            math.log((inner + sigma) / (ringstd + sigma)), inner / contrast,
        ])
        yield sl, sel, f, int(ids[j] // 1_000_000)


def _prepare(rgb: np.ndarray):
    y = _luma(rgb)
    sigma = _noise_sigma(y)
    disk = _disk(_DISK_RADIUS)
    opened = cv2.morphologyEx(y, cv2.MORPH_OPEN, disk, borderType=cv2.BORDER_REFLECT)
    closed = cv2.morphologyEx(y, cv2.MORPH_CLOSE, disk, borderType=cv2.BORDER_REFLECT)
    # Dust is an outlier against its whole neighbourhood, not only against the background
    # right under it: a rim highlight next to a white cup, or the tip of a dark wedge, has
    # equally bright/dark background within a few pixels ("excess" stays low).
    hood = _disk(_DISK_RADIUS + 4)
    bright_excess = y - cv2.dilate(opened, hood, borderType=cv2.BORDER_REFLECT)
    dark_excess = cv2.erode(closed, hood, borderType=cv2.BORDER_REFLECT) - y
    grad_y = _gradmag(cv2.GaussianBlur(y, (0, 0), 0.7))
    return y, sigma, ((y - opened, bright_excess, opened), (closed - y, dark_excess, closed)), grad_y


def _line_kernels(length: int = 21, n: int = 16) -> list[np.ndarray]:
    """Anti-aliased straight segments through the centre at n orientations (each sums to 1)."""
    ks, ss, c = [], 4, length // 2
    for i in range(n):
        th = math.pi * i / n
        big = np.zeros((length * ss, length * ss), np.float32)
        p0 = (c - c * math.cos(th), c - c * math.sin(th))
        p1 = (c + c * math.cos(th), c + c * math.sin(th))
        cv2.line(big, (round(p0[0] * ss + ss / 2), round(p0[1] * ss + ss / 2)),
                 (round(p1[0] * ss + ss / 2), round(p1[1] * ss + ss / 2)), 1.0, ss)
        k = cv2.resize(big, (length, length), interpolation=cv2.INTER_AREA)
        ks.append(k / k.sum())
    return ks


_LINE_KERNELS = _line_kernels()
_LINE_MIN_EXTENT = 40     # px: a traced line component must be at least this long (bbox diagonal)
_BAND_HALF = 2            # orientation band: +-2 of 16 directions (+-22.5 deg); 1 and 3 measured worse
_TRACE_MAX_THICK = 3.0    # an accepted piece starts a trace only if thin (distance-transform max)
_TRACE_MIN_ELONG = 1.5    # ... and elongated: log(bbox diagonal / thickness)
_LINE_BAND_ROWS = 256     # rows per band of the oriented line filters (memory, see _line_components)
_TRACE_MARGIN = 0.0       # score allowance for trace seeds (1.0: coffee FP 0.49 %, camera 0.13 %)


def _line_components(yy: np.ndarray) -> list[np.ndarray]:
    """Long thin bright lines of ``yy`` (pass 1 - y for dark ones), as label images (int32,
    0 = none), one per orientation band.

    Thin residual (opening with a 5 px disk removes everything narrower than ~4 px) averaged
    along 21 px segments at 16 orientations: a scratch adds up along its own direction only,
    so (best orientation - median orientation) is high on lines and low on specks and on
    isotropic texture; twice its level in a ring around is subtracted (oriented texture such
    as fur or hair). Hysteresis (seeds > 0.15 grown into > 0.06) within each of 8 overlapping
    orientation bands (5 of the 16 directions each), so a scratch that crosses a real line
    (a rim, a wire) at an angle is not merged with it; components whose bounding-box diagonal
    is under ``_LINE_MIN_EXTENT`` are dropped.
    """
    r = yy - cv2.morphologyEx(yy, cv2.MORPH_OPEN, _disk(2), borderType=cv2.BORDER_REFLECT)
    n_dir = len(_LINE_KERNELS)
    direction = np.empty(yy.shape, np.int64)
    z = np.empty(yy.shape, np.float32)
    # the 16 oriented responses per pixel are the memory peak (64 bytes/px, and as much again
    # for their median): computed in bands of rows, each with enough rows of context that its
    # own rows come out as the whole image's (line kernel half-length + ring half-width)
    pad = _LINE_KERNELS[0].shape[0] // 2 + 21
    for y0 in range(0, yy.shape[0], _LINE_BAND_ROWS):
        y1 = min(yy.shape[0], y0 + _LINE_BAND_ROWS)
        a, b = max(0, y0 - pad), min(yy.shape[0], y1 + pad)
        rc = np.minimum(r[a:b], 0.5)
        resp = np.stack([cv2.filter2D(rc, -1, k, borderType=cv2.BORDER_REFLECT) for k in _LINE_KERNELS])
        ls = resp.max(0) - np.median(resp, 0)
        zb = ls - 2.0 * _ring_mean(np.minimum(ls, 0.1))
        direction[y0:y1] = resp.argmax(0)[y0 - a:y1 - a]
        z[y0:y1] = zb[y0 - a:y1 - a]
        del resp, ls, zb
    seeds = (z > 0.15) & (r > 0.05)
    grow = ((z > 0.06) & (r > 0.03)) | seeds
    out = []
    for c in range(0, n_dir, 2):
        d = np.abs(direction - c)
        band = grow & (np.minimum(d, n_dir - d) <= _BAND_HALF)
        n, lab, st, _ = cv2.connectedComponentsWithStats(band.astype(np.uint8), connectivity=8)
        keep = np.zeros(n, bool)
        keep[np.unique(lab[seeds & band])] = True
        keep &= np.hypot(st[:, 2], st[:, 3]) >= _LINE_MIN_EXTENT
        keep[0] = False
        if keep.any():
            out.append(np.where(keep[lab], lab, 0).astype(np.int32))
    return out


def candidate_features(rgb: np.ndarray, threshold: float | None = None):
    """Candidate pieces with their features (all of them when ``threshold`` is None: the
    benchmark fits ``_W`` on these)."""
    rgb = _check_rgb(rgb)
    yield from _features(_prepare(rgb), threshold)


def _features(prepared, threshold: float | None = None):
    y, sigma, pols, grad_y = prepared
    for k, (resid, excess, bg) in enumerate(pols):
        for sl, sel, f, comp in _candidate_pieces(y, resid, excess, bg, sigma, grad_y, threshold):
            yield sl, sel, f, (k, comp)


def detect_defects(rgb: np.ndarray, sensitivity: float = 0.5, *, dilate: int = 1) -> np.ndarray:
    """Boolean HxW mask of dust specks and scratches (bright and dark)."""
    rgb = _check_rgb(rgb)
    th = _score_threshold(float(np.clip(sensitivity, 0.0, 1.0)))
    prepared = _prepare(rgb)
    polmask = np.zeros((2,) + rgb.shape[:2], bool)
    traceseed = np.zeros_like(polmask)
    pieces = [(sl, sel, float(f @ _W) + _B, f, comp)
              for sl, sel, f, comp in _features(prepared, th - max(_PROPAGATE, _TRACE_MARGIN))]
    accepted = {comp for _, _, sc, f, comp in pieces if sc > th and f[6] <= _DISK_RADIUS + 0.5}
    for sl, sel, sc, f, comp in pieces:
        # A scratch is judged per tile; once part of it is certain, its thin continuation
        # through busier areas needs less evidence.
        if (sc > th and f[6] <= _DISK_RADIUS + 0.5) or (
                comp in accepted and sc > th - _PROPAGATE and f[6] <= 3.0):
            polmask[comp[0]][sl] |= sel
        if sc > th - _TRACE_MARGIN and f[6] <= _TRACE_MAX_THICK and f[7] >= _TRACE_MIN_ELONG:
            traceseed[comp[0]][sl] |= sel
    # Scratch tracing: a long thin line (same polarity, same orientation band) that contains
    # an accepted thin, elongated piece (a speck that happens to sit on a real line does not
    # count) is taken whole, so a scratch found in its calm part is followed through busy
    # texture, where its tiles alone score too low. Clean photos have few accepted pieces and
    # a real line rarely contains one: on the benchmark photos this adds no false-positive
    # area at the default sensitivity.
    y = prepared[0]
    for k in range(2):
        if not traceseed[k].any():
            continue
        for lab in _line_components(y if k == 0 else 1.0 - y):
            hit = np.unique(lab[traceseed[k]])
            hit = hit[hit > 0]
            if hit.size:
                polmask[k] |= np.isin(lab, hit)
    mask = polmask[0] | polmask[1]
    if dilate > 0 and mask.any():
        mask = cv2.dilate(mask.astype(np.uint8), _disk(dilate)).astype(bool)
    return mask


def _grain(filled: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise whose high-pass energy matches the surroundings' (per pixel), lightly correlated.

    Measured on the already filled image, away from the mask by 3 px, so the defect's own
    edges (or an anti-aliased rim the mask missed) do not count as grain.
    """
    y = _luma(filled)
    hp = y - cv2.GaussianBlur(y, (0, 0), 1.5)
    near = cv2.dilate(mask.astype(np.uint8), _disk(3)).astype(bool)
    valid = (~near).astype(np.float32)
    win = (25, 25)
    num = cv2.boxFilter(hp * hp * valid, -1, win, normalize=False, borderType=cv2.BORDER_REFLECT)
    den = cv2.boxFilter(valid, -1, win, normalize=False, borderType=cv2.BORDER_REFLECT)
    local = np.sqrt(np.maximum(num, 0.0) / np.maximum(den, 1.0))
    # Clip the amplitude at twice the image's typical grain so an edge next to the defect
    # does not turn into a burst of noise inside it.
    g = float(np.median(local[~near])) if (~near).any() else 0.0
    local = np.minimum(local, 2.0 * g + 1e-4)
    # Film grain is slightly correlated: blur white noise a little, then scale it so that
    # its high-pass (same filter as above) has unit energy.
    n = cv2.GaussianBlur(rng.standard_normal(y.shape).astype(np.float32), (0, 0), 0.6)
    n_hp = n - cv2.GaussianBlur(n, (0, 0), 1.5)
    n = n / np.float32(float(n_hp.std()) + 1e-8)
    return (n * local)[..., None] * np.ones(3, np.float32)


def inpaint(rgb: np.ndarray, mask: np.ndarray, *, radius: int = 4, grain: float = 1.0,
            seed: int = 0) -> np.ndarray:
    """Fill ``mask`` (bool HxW) from its surroundings; float32 in, float32 out."""
    rgb = _check_rgb(rgb)
    if not mask.any():
        return rgb.copy()
    m8 = mask.astype(np.uint8)
    out = np.empty_like(rgb)
    # OpenCV's float32 inpainting assumes a 0..255 range; 16-bit keeps our precision.
    q = np.round(np.clip(rgb, 0, 1) * 65535.0).astype(np.uint16)
    for c in range(3):
        out[..., c] = cv2.inpaint(np.ascontiguousarray(q[..., c]), m8, radius,
                                  cv2.INPAINT_NS).astype(np.float32) / 65535.0
    if grain > 0:
        out += grain * _grain(out, mask, np.random.default_rng(seed))
    res = rgb.copy()
    res[mask] = np.clip(out[mask], 0.0, 1.0)
    return res


def repair(rgb: np.ndarray, sensitivity: float = 0.5, *, grain: float = 1.0,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Detect and fill dust & scratches.

    Returns ``(repaired float32 HxWx3 0..1, defect mask float32 HxW 0..1)``; the mask is
    what the hosts use as the new layer's mask, so the retoucher can paint off a repair.
    """
    rgb = _check_rgb(rgb)
    rgb = np.clip(rgb, 0.0, 1.0)
    mask = detect_defects(rgb, sensitivity)
    repaired = inpaint(rgb, mask, grain=grain, seed=seed)
    return repaired, mask.astype(np.float32)


# --- synthetic damage for the benchmark and tests ------------------------------------------

def add_synthetic_defects(rgb: np.ndarray, seed: int = 0, n_scratches: int = 6,
                          n_specks: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Damage a clean photo the way old scans are damaged, at known positions.

    Scratches: smooth random curves (quadratic Bezier with a random bend), 1-3 px wide,
    bright or dark. Specks: radius 1-6 px, bright or dark, slightly irregular. Each defect
    is drawn anti-aliased as an alpha map and blended towards near-white/near-black.
    Returns ``(damaged, alpha)`` where alpha (float32 HxW 0..1) is the drawn coverage.
    """
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    ss = 4   # supersampling for anti-aliased drawing
    out = rgb.copy()
    alpha_all = np.zeros((h, w), np.float32)

    def blend(a_big: np.ndarray) -> None:
        nonlocal out, alpha_all
        a = cv2.resize(a_big, (w, h), interpolation=cv2.INTER_AREA)
        bright = rng.random() < 0.5
        level = rng.uniform(0.85, 0.98) if bright else rng.uniform(0.02, 0.15)
        opacity = rng.uniform(0.7, 1.0)
        a = a * opacity
        out = out * (1 - a[..., None]) + level * a[..., None]
        alpha_all = np.maximum(alpha_all, a)

    for _ in range(n_scratches):
        a_big = np.zeros((h * ss, w * ss), np.float32)
        length = rng.uniform(0.3, 0.8) * min(h, w)
        x0, y0 = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        ang = rng.uniform(0, math.pi)
        x2, y2 = x0 + length * math.cos(ang), y0 + length * math.sin(ang)
        bend = rng.uniform(-0.25, 0.25) * length
        mx, my = (x0 + x2) / 2 - bend * math.sin(ang), (y0 + y2) / 2 + bend * math.cos(ang)
        tt = np.linspace(0, 1, 200)[:, None]
        pts = ((1 - tt) ** 2 * [x0, y0] + 2 * (1 - tt) * tt * [mx, my] + tt ** 2 * [x2, y2])
        width = rng.uniform(1.0, 3.0)
        cv2.polylines(a_big, [np.round(pts * ss).astype(np.int32)], False, 1.0,
                      max(1, int(round(width * ss))), cv2.LINE_8)
        blend(a_big)
    for _ in range(n_specks):
        a_big = np.zeros((h * ss, w * ss), np.float32)
        r = rng.uniform(1.0, 6.0)
        cx, cy = rng.uniform(0.03, 0.97) * w, rng.uniform(0.03, 0.97) * h
        k = 9
        angs = np.linspace(0, 2 * math.pi, k, endpoint=False)
        rad = r * rng.uniform(0.7, 1.2, k)
        poly = np.stack([cx + rad * np.cos(angs), cy + rad * np.sin(angs)], 1)
        cv2.fillPoly(a_big, [np.round(poly * ss).astype(np.int32)], 1.0)
        blend(a_big)
    return np.clip(out, 0, 1).astype(np.float32), alpha_all


# --------------------------------------------------------------------------- the task
def _run_task(rgb: np.ndarray, values: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    repaired, defects = repair(rgb, sensitivity=float(values["sensitivity"]))
    return repaired, {"defects": defects}


def _task():
    from engine.options import Option
    from engine.tasks.base import WHOLE_IMAGE, TaskInfo, WholeImageTask

    sensitivity = Option("sensitivity", "float", 0.5, "Sensitivity",
                         "How readily specks and scratches count as damage: higher finds more, and "
                         "more false spots.", minimum=0, maximum=1)
    info = TaskInfo(id="restore-dust", title="Dust & scratch repair (detect + inpaint)", group="restore",
                    kind="classical", scale=1, margin=WHOLE_IMAGE, skips=("scale",),
                    license="MIT (EnhanceLayer code, OpenCV inpainting)",
                    source="engine/tasks/restore_dust.py", ms_per_mp_cpu=1_200.0, tile_invariant=False,
                    options=(sensitivity,),
                    notes="Detection weighs each spot against the whole photo's noise level, so the hosts send "
                          "the whole layer: a selection gets exactly what the whole image gets there.",
                    purpose="dust", label="Automatic detection",
                    description="Detects small specks and thin scratches and fills them from around; the "
                                "layer mask shows each repair, so paint out a wrong one.")
    return WholeImageTask(info=info, fn=_run_task, verb="repairing")


TASK = _task()
