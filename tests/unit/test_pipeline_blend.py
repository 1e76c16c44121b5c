"""Blend-back on real photos with real models: strength, grain, keep colour, mask."""
from __future__ import annotations

import numpy as np
import pytest

from engine.pipeline import GRAIN_DEFAULT, EnhanceOptions, enhance
from engine.pipeline.blend import hf_energy
from engine.pipeline.formats import LUMA, from_float, resample, to_float


@pytest.fixture(scope="module")
def crop(chelsea):
    return np.ascontiguousarray(chelsea[60:220, 120:300])      # cat fur, 160x180


def test_strength_zero_is_the_resampled_original_exactly(models_installed, crop):
    res = enhance(crop, EnhanceOptions(model="photo-x2", strength=0.0, tile=64))
    expected = from_float(resample(crop, 320, 360), np.uint8)
    assert res.image.dtype == np.uint8 and res.image.shape == (320, 360, 3)
    assert np.array_equal(res.image, expected)


def test_strength_zero_float_is_exact_in_float(models_installed, crop):
    x = crop.astype(np.float32) / 255
    res = enhance(x, EnhanceOptions(model="photo-x2", strength=0.0))
    assert np.array_equal(res.image, resample(x, 320, 360))


def test_strength_one_no_grain_is_the_raw_model_output(models_installed, crop):
    from engine.models.backends import load_model

    x = crop.astype(np.float32) / 255
    raw = load_model("photo-x2", "auto").run(x)     # the model enhance() runs (device auto)
    res = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0, grain=0.0, tile=0))
    assert np.array_equal(res.image, raw)
    # and in 8 bits: exactly the rounded model output
    res8 = enhance(crop, EnhanceOptions(model="photo-x2", strength=1.0, grain=0.0, tile=0))
    assert np.array_equal(res8.image, from_float(load_model("photo-x2", "auto").run(to_float(crop)), np.uint8))
    # and with device="cpu" the pipeline runs ORT: exactly ORT's output
    resc = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0, grain=0.0, tile=0, device="cpu"))
    assert np.array_equal(resc.image, load_model("photo-x2", "cpu").run(x))


def test_strength_mixes_linearly(models_installed, crop):
    x = crop.astype(np.float32) / 255
    a = enhance(x, EnhanceOptions(model="photo-x2", strength=0.0)).image
    b = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0)).image
    h = enhance(x, EnhanceOptions(model="photo-x2", strength=0.5)).image
    assert np.abs(h - (a + b) / 2).max() <= 1e-5
    assert np.abs(a - b).mean() > 1.0 / 255     # the model does change things


@pytest.mark.parametrize("model_id", ["jpeg-clean-3", "photo-x2"])
def test_default_grain_keeps_high_frequency_energy(models_installed, crop, model_id):
    """jpeg-clean-3 smooths fur (plastic); photo-x2 over-sharpens; grain pulls both to ~1x."""
    def ratio(grain: float) -> float:
        r = enhance(crop, EnhanceOptions(model=model_id, strength=0.6, grain=grain)).image
        return hf_energy(to_float(r)) / hf_energy(resample(to_float(crop), *r.shape[:2]))

    no_grain, with_grain = ratio(0.0), ratio(GRAIN_DEFAULT)
    print(f"{model_id}: HF energy ratio without grain {no_grain:.3f}, with default grain {with_grain:.3f}")
    assert 0.8 <= with_grain <= 1.2
    assert abs(with_grain - 1.0) < abs(no_grain - 1.0)


def test_keep_color_takes_chroma_from_the_original(models_installed, crop):
    x = crop.astype(np.float32) / 255
    res = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0, keep_color=True)).image
    orig = resample(x, *res.shape[:2])
    model = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0)).image

    def ycc(v):
        y = v @ LUMA
        return y, (v[..., 2] - y), (v[..., 0] - y)

    yr, cbr, crr = ycc(res)
    yo, cbo, cro = ycc(orig)
    ym, _, _ = ycc(model)
    assert np.abs(cbr - cbo).max() < 1e-5 and np.abs(crr - cro).max() < 1e-5   # colour: original
    assert np.abs(yr - ym).max() < 1e-5                                         # detail: model
    assert np.abs(yr - yo).mean() > 1e-3


def test_mask_zero_leaves_the_original_and_feathers(models_installed, crop):
    h, w = crop.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2:] = 255
    res = enhance(crop, EnhanceOptions(model="photo-x2", strength=1.0, mask=mask, feather=8)).image
    orig = from_float(resample(crop, 2 * h, 2 * w), np.uint8)
    full = enhance(crop, EnhanceOptions(model="photo-x2", strength=1.0)).image
    left = slice(0, 2 * (w // 2 - 16))          # beyond the feather: exactly the original
    assert np.array_equal(res[:, left], orig[:, left])
    right = slice(2 * (w // 2 + 16), 2 * w)      # well inside: the model
    assert np.abs(res[:, right].astype(int) - full[:, right]).max() <= 1
    # an all-zero float mask == strength 0
    z = enhance(crop, EnhanceOptions(model="photo-x2", strength=1.0, mask=np.zeros((h, w), np.float32))).image
    assert np.array_equal(z, orig)


def test_face_protection_and_review_map(models_installed, astronaut):
    """protect=("faces",) keeps most of the original on the astronaut's face (engine.review
    finds it); review=True returns the review map at output size."""
    review = pytest.importorskip("engine.review")
    img = np.ascontiguousarray(astronaut[:256, 96:352])
    res = enhance(img, EnhanceOptions(model="photo-x2", strength=1.0, protect=("faces",), review=True))
    full = enhance(img, EnhanceOptions(model="photo-x2", strength=1.0)).image
    plain = from_float(resample(img, 512, 512), np.uint8)
    pm = review.protection_mask(to_float(img), ("faces",))
    face = resample(pm, 512, 512, "linear") > 0.9
    assert 0.02 < face.mean() < 0.6
    changed_prot = np.abs(res.image.astype(int) - plain).mean(axis=2)[face].mean()
    changed_full = np.abs(full.astype(int) - plain).mean(axis=2)[face].mean()
    assert changed_prot < changed_full / 3           # 1 - 0.8 protection -> ~1/5 of the change
    away = resample(pm, 512, 512, "linear") == 0
    assert np.array_equal(res.image[away], full[away])
    assert res.review is not None and res.review.shape == (512, 512)
    assert 0.0 <= res.review.min() and res.review.max() <= 1.0
