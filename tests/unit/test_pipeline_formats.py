"""Pixel formats, scale, and bad input through enhance() with real models."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import BadInput, EnhanceError, TooLarge, UnknownModel
from engine.pipeline import EnhanceOptions, enhance
from engine.pipeline.formats import Resampler, from_float, resample, to_float


def test_resampler_is_strip_invariant(astronaut):
    x = to_float(astronaut[:90, :70])
    whole = resample(x, 211, 157)
    r = Resampler(90, 70, 211, 157, "lanczos3")
    parts = np.concatenate([r.rows(a, min(211, a + 37), lambda p, q: x[p:q]) for a in range(0, 211, 37)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(resample(x, 90, 70), x)                  # same size: a copy
    # area 2:1 is the plain 2x2 mean
    y = resample(x, 45, 35, "area")
    assert np.allclose(y, x.reshape(45, 2, 35, 2, 3).mean(axis=(1, 3)), atol=1e-6)


def test_sixteen_bit_gradient_keeps_more_than_256_levels(models_installed):
    """A smooth 16-bit ramp in (a real-photo luminance ramp is too noisy to count levels)."""
    ramp = np.linspace(0, 65535, 600)[None, :].repeat(40, axis=0)
    img = np.dstack([ramp, ramp * 0.8, ramp[:, ::-1]]).astype(np.uint16)
    res = enhance(img, EnhanceOptions(model="photo-x2", strength=0.6, tile=64)).image
    assert res.dtype == np.uint16 and res.shape == (80, 1200, 3)
    levels = len(np.unique(res[40, :, 0]))
    assert levels > 1000, levels
    # and 8-bit input can't (sanity: the counting method can fail)
    res8 = enhance((img >> 8).astype(np.uint8), EnhanceOptions(model="photo-x2", strength=0.6)).image
    assert len(np.unique(res8[40, :, 0])) <= 256


def test_alpha_is_kept_apart_and_resized_plainly(models_installed, coffee):
    rgb = coffee[100:200, 200:320]
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < 35 ** 2, 255, 0).astype(np.uint8)
    rgba = np.dstack([rgb, alpha])
    res = enhance(rgba, EnhanceOptions(model="photo-x2", strength=1.0)).image
    assert res.shape == (2 * h, 2 * w, 4) and res.dtype == np.uint8
    exp_alpha = from_float(resample(alpha, 2 * h, 2 * w, "linear"), np.uint8)
    assert np.array_equal(res[..., 3], exp_alpha)
    rgb_only = enhance(rgb, EnhanceOptions(model="photo-x2", strength=1.0)).image
    assert np.array_equal(res[..., :3], rgb_only)


def test_gray_and_float_layouts(models_installed, astronaut):
    from skimage import data

    cam = data.camera()[200:300, 180:300]                 # 8-bit gray photo
    g = enhance(cam, EnhanceOptions(model="photo-x2", strength=0.8)).image
    assert g.shape == (200, 240) and g.dtype == np.uint8
    g1 = enhance(cam[:, :, None], EnhanceOptions(model="photo-x2", strength=0.8)).image
    assert g1.shape == (200, 240, 1) and np.array_equal(g1[..., 0], g)
    # float32 outside 0..1 survives where the model does not reach (strength 0)
    f = to_float(astronaut[:64, :64]) * 2.0 - 0.5
    r = enhance(f, EnhanceOptions(model="photo-x2", strength=0.0)).image
    assert r.dtype == np.float32 and r.min() < 0 and r.max() > 1


def test_any_scale(models_installed, chelsea):
    from engine.models.backends import load_model

    img = chelsea[100:180, 150:250]
    x = to_float(img)
    # 1x "detail" use of a 2x model: the model's output area-averaged back
    d = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0, scale=1.0, device="cpu")).image
    raw = load_model("photo-x2", "cpu").run(x)
    assert d.shape == (80, 100, 3)
    assert np.allclose(d, raw.reshape(80, 2, 100, 2, 3).mean(axis=(1, 3)), atol=1e-5)
    # a 2x model asked for 3x and 1.5x: the right sizes, close to the resampled model output
    for s in (3.0, 1.5):
        r = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0, scale=s, tile=32, device="cpu")).image
        assert r.shape == (round(80 * s), round(100 * s), 3)
        assert np.abs(r - resample(raw, *r.shape[:2])).max() < 1e-4


def test_bad_input(models_installed, chelsea):
    img = chelsea[:50, :60]
    with pytest.raises(BadInput, match="strength"):
        enhance(img, EnhanceOptions(strength=1.5))
    with pytest.raises(BadInput, match="strength"):
        enhance(img, EnhanceOptions(strength=-0.1))
    with pytest.raises(BadInput, match="mask"):
        enhance(img, EnhanceOptions(mask=np.zeros((10, 10), np.uint8)))
    with pytest.raises(BadInput, match="empty"):
        enhance(np.zeros((0, 10, 3), np.uint8), EnhanceOptions())
    with pytest.raises(TooLarge, match="over the limit"):
        enhance(img, EnhanceOptions(max_input_mp=0.001))
    with pytest.raises(TooLarge, match="result"):
        enhance(img, EnhanceOptions(scale=16, max_output_mp=0.1))
    with pytest.raises(BadInput, match="unsupported"):
        enhance(img.astype(np.int32), EnhanceOptions())
    with pytest.raises(UnknownModel):
        enhance(img, EnhanceOptions(model="no-such-model"))
    with pytest.raises(EnhanceError):
        enhance(img, EnhanceOptions(tile=4))


def test_restore_family_dispatches_to_engine_restore(coffee):
    """restore-dust is a task module (engine/tasks/restore_dust.py; its detector is a helper network,
    not a catalog model): the pipeline hands it the float RGB image and blends its repair like any
    model output."""
    restore = pytest.importorskip("engine.tasks.restore_dust")
    img = coffee[50:150, 100:220].copy()
    img[40:42, 10:110] = 250                           # a bright scratch
    repaired, mask = restore.repair(to_float(img), sensitivity=0.5)
    res = enhance(img, EnhanceOptions(model="restore-dust", strength=1.0))
    assert res.image.shape == img.shape and res.defects is not None
    assert np.array_equal(res.image, from_float(np.asarray(repaired, np.float32), np.uint8))
    assert np.array_equal(res.defects, mask)
    half = enhance(img, EnhanceOptions(model="restore-dust", strength=0.0)).image
    assert np.array_equal(half, img)                   # 1x, strength 0: the original itself


def test_identity_model_returns_the_input_unchanged(coffee):
    """The transport-check model must not reach any other code path (e.g. dust repair)."""
    from engine.pipeline import EnhanceOptions, enhance

    img = coffee[:64, :80]
    res = enhance(img, EnhanceOptions(model="identity", strength=1.0))
    assert res.image.dtype == img.dtype and np.array_equal(res.image, img)
