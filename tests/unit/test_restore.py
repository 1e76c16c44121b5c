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

SEED = 3          # the detector never saw these photos (nor this generator: models/train/train_dust.py)


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


def test_false_positives_on_clean_photos_stay_small(photos):
    """Measured at the calibrated default: 0 % on astronaut, chelsea, grace_hopper; 0.10 %
    camera, 0.10 % rocket, 0.36 % coffee (its specular saucer rim). The issue's 0.1 % target
    is missed on coffee (bench/results/quality_restore.md); this guards against getting worse."""
    fps = {}
    for name, img in photos.items():
        _, mask = R.repair(img)
        fps[name] = float(mask.mean())
    assert max(fps.values()) < 0.005, fps
    assert sum(v < 0.0001 for v in fps.values()) >= 3, fps
    assert np.mean(list(fps.values())) < 0.0015, fps


def test_recall_and_precision_on_synthetic_damage(damaged):
    recalls, precisions = [], []
    for name, (_clean, _dam, gt, _rep, mask) in damaged.items():
        m = mask > 0.5
        near = cv2.dilate(gt.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        recalls.append((m & gt).sum() / gt.sum())
        precisions.append((m & near).sum() / max(m.sum(), 1))
        assert precisions[-1] > 0.9, f"{name}: precision {precisions[-1]:.3f}"
    # measured: recall 0.555, 0.661, 0.777, 0.501 (mean 0.62; the classical detector had 0.31),
    # precision 0.929..1.000
    assert np.mean(recalls) > 0.55, recalls
    assert min(recalls) > 0.4, recalls
    assert np.mean(precisions) > 0.93, precisions


def test_scratches_are_found_through_texture(photos):
    """Scratches alone (no specks): most of their length is found, also where they cross fur,
    hair and the orange suit."""
    recalls = []
    for name in ("astronaut", "camera", "rocket", "grace_hopper"):
        dam, _ = R.add_synthetic_defects(photos[name], seed=SEED, n_specks=0)
        gt = _gt(photos[name], dam)
        recalls.append((R.detect_defects(dam) & gt).sum() / gt.sum())
    # measured: 0.468, 0.611, 0.766, 0.435 (mean 0.570; classical with tracing 0.326)
    assert np.mean(recalls) > 0.5, recalls


def test_repair_restores_the_detected_defects(damaged):
    gains_detected, gains_all = [], []
    for name, (clean, dam, gt, rep, mask) in damaged.items():
        hit = gt & (mask > 0.5)
        assert hit.sum() > 50, name
        gains_detected.append(_psnr(rep, clean, hit) - _psnr(dam, clean, hit))
        gains_all.append(_psnr(rep, clean, gt) - _psnr(dam, clean, gt))
        assert gains_detected[-1] > 14.0, f"{name}: only {gains_detected[-1]:.1f} dB better on detected pixels"
    # measured: +15.4..+16.7 dB on detected damage, +3.7..+7.5 dB over all damage (the
    # classical detector: +1.9..+3.9 dB, it found less)
    assert min(gains_all) > 3.0, gains_all


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
    assert rec[0.9] > rec[0.5] + 0.15, rec   # measured: 0.347, 0.501, 0.721


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


def test_detector_does_not_depend_on_the_tiling(photos, monkeypatch):
    """Tiles start at multiples of 4 and carry a 32 px halo (> the receptive field), so the
    probability map is the same whatever the tile size: a big photo (many tiles) is no
    different from a small one (one tile)."""
    from engine.tasks import local_net

    img = np.ascontiguousarray(photos["astronaut"][:300, :420])
    whole = R.defect_probability(img)
    monkeypatch.setattr(local_net, "TILE_CORE", 64)
    tiled = R.defect_probability(img)
    assert float(np.abs(tiled - whole).max()) < 1e-5


def test_default_threshold_is_the_calibrated_one():
    """The default (sensitivity 0.5) is what models/train/train_dust.py --calibrate chose on
    GIMP's patterns, not a value tuned on the benchmark photos."""
    import json

    from engine import paths

    cal = json.loads((paths.own_models_dir() / "dust_calibration.json").read_text())
    assert R._LOGIT_AT_DEFAULT == cal["default_logit"]
    chosen = next(c for c in cal["curve"] if c["logit"] == cal["default_logit"])
    assert chosen["pooled_share"] <= cal["target_share"]
    assert abs(R._threshold(0.5) - 1 / (1 + np.exp(-cal["default_logit"]))) < 1e-9
    assert R._threshold(0.9) < R._threshold(0.5) < R._threshold(0.1)


def test_changed_detector_weights_are_refused(tmp_path, monkeypatch):
    """dust.onnx is checked against the manifest like the catalog's own models."""
    import shutil

    from engine import paths
    from engine.errors import WeightsTampered
    from engine.models import registry

    src = paths.own_models_dir()
    shutil.copy(src / "manifest.json", tmp_path / "manifest.json")
    data = bytearray((src / "dust.onnx").read_bytes())
    data[-1] ^= 1
    (tmp_path / "dust.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(paths, "own_models_dir", lambda: tmp_path)
    with pytest.raises(WeightsTampered, match="dust"):
        registry.verified_own_weights("dust")


def test_bad_input_is_a_user_error():
    with pytest.raises(BadInput):
        R.repair(np.zeros((32, 32), np.float32))
