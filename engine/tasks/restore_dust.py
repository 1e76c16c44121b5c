"""Dust & scratch repair for scanned prints and film (catalog id ``restore-dust``).

Detection is learned: a small U-Net (``engine/data/trained/dust.onnx``, 174 k parameters,
trained by ``models/train/train_dust.py`` on photos that are not the benchmark's) gives each
pixel the probability that it is dust, a hair or a scratch. Why learned: what tells a scratch
from a real thin line is context (does it continue across the texture's grain, does it sit on
the picture or over it), which the net sees; the earlier classical detector (top-hat residuals
+ a 12-feature piece score) found 30 % of the damage at its default, the net about twice as
much at comparable false positives (bench/results/quality_restore.md).

The mask is ``probability > threshold``, grown by 1 px to cover soft rims. ``sensitivity``
moves the threshold in logit space; its default 0.5 is calibrated on GIMP's photographic
patterns, neither training nor benchmark photos (``train_dust.py --calibrate``). The net runs in
512 px tiles with a 32 px halo, more than its receptive field (+-27 px), so the mask does not
depend on the tiling; a host crop still differs slightly with its offset (modulo 4 px), so the
task asks for the whole layer (bench/results/dust_context.md).

Single-image dust detection stays ambiguous (a catch-light, a specular rim on a cup or a
mortar line between bricks *looks* like a speck or a scratch), so the returned mask is the new
layer's mask: the retoucher paints off a wrong repair.

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

# Detector threshold at sensitivity 0.5, in logit space (see train_dust.py --calibrate), and how
# far each 0.1 of sensitivity moves it.
_LOGIT_AT_DEFAULT = 3.2
_LOGIT_PER_STEP = 0.8       # logit units per 0.1 of sensitivity


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


def probability_at(logit: float) -> float:
    """The detector's probability at a threshold given in logits (how the calibration and the
    benchmark's operating curve state thresholds)."""
    return 1.0 / (1.0 + math.exp(-logit))


def _threshold(sensitivity: float) -> float:
    """Probability a pixel must exceed: 0.5 is the calibrated default; higher finds more."""
    return probability_at(_LOGIT_AT_DEFAULT + (0.5 - float(np.clip(sensitivity, 0.0, 1.0))) * 10 * _LOGIT_PER_STEP)


def defect_probability(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel probability (float32 HxW 0..1) that the pixel is dust, a hair or a scratch:
    the trained detector, run in tiles that do not change its result (engine/tasks/local_net.py)."""
    from engine.tasks.local_net import run_tiled

    return run_tiled("dust", _check_rgb(rgb))[0]


def detect_defects(rgb: np.ndarray, sensitivity: float = 0.5, *, dilate: int = 1) -> np.ndarray:
    """Boolean HxW mask of dust specks, hairs and scratches (bright and dark)."""
    mask = defect_probability(rgb) > _threshold(sensitivity)
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
    from engine.tasks.base import FULL_STRENGTH, WHOLE_IMAGE, TaskInfo, WholeImageTask

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
                    defaults=FULL_STRENGTH, purpose="dust", label="Automatic detection",
                    description="Detects small specks and thin scratches and fills them from around; the "
                                "layer mask shows each repair, so paint out a wrong one.")
    return WholeImageTask(info=info, fn=_run_task, verb="repairing")


TASK = _task()
