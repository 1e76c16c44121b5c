"""Dust & scratch repair on real photos with synthetic damage at known positions.

Thresholds are the figures of bench/results/quality_restore.md (held-out seed 3) with a
margin; each assertion fails if detection or filling regresses.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from real_photos import real_photo

from engine.errors import BadInput
from engine.tasks import restore_dust as R

SEED = 3          # not used to fit the piece classifier (seeds 1, 2)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {n: real_photo(n) for n in ("astronaut", "coffee", "chelsea", "camera", "rocket", "grace_hopper")}


def _gt(clean: np.ndarray, damaged: np.ndarray) -> np.ndarray:
    return np.abs(R._luma(damaged) - R._luma(clean)) > 0.08


def _psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(((a - b) ** 2)[m].mean()), 1e-12)))


@pytest.fixture(scope="module")
def damaged(photos):
    out = {}
    for n in ("astronaut", "camera", "rocket", "grace_hopper"):
        dam, _ = R.add_synthetic_defects(photos[n], seed=SEED)
        rep, mask = R.repair(dam, grain=0.0)
        out[n] = (photos[n], dam, _gt(photos[n], dam), rep, mask)
    return out


def test_false_positive_area_on_clean_photos_below_0_1_percent(photos):
    for name, img in photos.items():
        _, mask = R.repair(img)
        assert mask.mean() < 0.001, f"{name}: {mask.mean() * 100:.3f} % of a clean photo flagged"


def test_recall_and_precision_on_synthetic_damage(damaged):
    recalls, precisions = [], []
    for name, (_clean, _dam, gt, _rep, mask) in damaged.items():
        m = mask > 0.5
        near = cv2.dilate(gt.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        recalls.append((m & gt).sum() / gt.sum())
        precisions.append((m & near).sum() / max(m.sum(), 1))
        assert precisions[-1] > 0.9, f"{name}: precision {precisions[-1]:.3f}"
    # measured: mean recall 0.306 (0.202..0.415; 0.229 before scratch tracing), mean
    # precision 0.968 (0.954..0.988)
    assert np.mean(recalls) > 0.26, recalls
    assert np.mean(precisions) > 0.93, precisions


def test_scratches_are_followed_through_texture(photos):
    """A scratch accepted where the background is calm is traced along its whole length."""
    recalls = []
    for name in ("astronaut", "camera", "rocket", "grace_hopper"):
        dam, _ = R.add_synthetic_defects(photos[name], seed=SEED, n_specks=0)
        gt = _gt(photos[name], dam)
        recalls.append((R.detect_defects(dam) & gt).sum() / gt.sum())
    # measured: mean scratch-pixel recall 0.326 (0.175..0.538); 0.202 without tracing
    assert np.mean(recalls) > 0.28, recalls


def test_repair_restores_the_detected_defects(damaged):
    gains_detected, gains_all = [], []
    for name, (clean, dam, gt, rep, mask) in damaged.items():
        hit = gt & (mask > 0.5)
        assert hit.sum() > 50, name
        gains_detected.append(_psnr(rep, clean, hit) - _psnr(dam, clean, hit))
        gains_all.append(_psnr(rep, clean, gt) - _psnr(dam, clean, gt))
        assert gains_detected[-1] > 15.0, f"{name}: only {gains_detected[-1]:.1f} dB better on detected pixels"
    # measured: +17.5..+24.1 dB on detected damage, +1.9..+3.9 dB over all damage
    # (+1.4..+2.8 dB before scratch tracing)
    assert min(gains_all) > 1.5, gains_all


def test_untouched_pixels_stay_identical(damaged):
    for name, (_clean, dam, _gt, rep, mask) in damaged.items():
        outside = mask < 0.5
        assert rep.dtype == np.float32 and mask.dtype == np.float32
        assert rep.shape == dam.shape and mask.shape == dam.shape[:2]
        assert np.array_equal(rep[outside], dam[outside]), name
        assert 0.0 <= mask.min() and mask.max() <= 1.0


def test_higher_sensitivity_finds_more(photos):
    img = photos["grace_hopper"]
    dam, _ = R.add_synthetic_defects(img, seed=SEED)
    gt = _gt(img, dam)
    rec = {}
    for s in (0.2, 0.5, 0.9):
        m = R.detect_defects(dam, s)
        rec[s] = (m & gt).sum() / gt.sum()
    assert rec[0.2] <= rec[0.5] < rec[0.9], rec
    assert rec[0.9] > rec[0.5] + 0.2, rec   # measured: 0.025, 0.215, 0.528


def test_filled_scratch_keeps_the_grain(photos):
    """A scratch through a grainy area is filled with grain of the surroundings' strength."""
    rng = np.random.default_rng(5)
    img = photos["rocket"][20:180, 20:300].copy()           # dusk sky: smooth
    grainy = np.clip(img + rng.normal(0, 0.03, img.shape[:2])[..., None].astype(np.float32), 0, 1)
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.line(mask, (10, 80), (270, 95), 1, 3)
    mask = mask.astype(bool)
    dam = grainy.copy()
    dam[mask] = 0.95
    hp = lambda a: R._luma(a) - cv2.GaussianBlur(R._luma(a), (0, 0), 1.5)  # noqa: E731
    inner = mask & (cv2.erode(mask.astype(np.uint8), np.ones((3, 1), np.uint8)) > 0)
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    ref = hp(grainy)[ring].std()
    with_grain = hp(R.inpaint(dam, mask, grain=1.0))[inner].std()
    smooth = hp(R.inpaint(dam, mask, grain=0.0))[inner].std()
    assert smooth < 0.5 * ref, (smooth, ref)
    assert 0.6 * ref < with_grain < 1.6 * ref, (with_grain, ref)


def test_bad_input_is_a_user_error():
    with pytest.raises(BadInput):
        R.repair(np.zeros((32, 32), np.float32))
