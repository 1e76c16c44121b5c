"""restore-dust's defect mask travels in the result frame (issue 9): a real photo damaged
with synthetic dust and scratches, a real engine over real HTTP, compared with calling the
pipeline directly on the same pixels."""
from __future__ import annotations

import numpy as np

from .conftest import elc


def _dusty(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    from engine.tasks.restore_dust import add_synthetic_defects
    damaged, _alpha = add_synthetic_defects(photo.astype(np.float32) / 255.0, seed=seed)
    return np.rint(np.clip(damaged, 0, 1) * 255).astype(np.uint8)


def _direct(img, **kw):
    from engine.pipeline import EnhanceOptions, enhance
    return enhance(img, EnhanceOptions(**kw))


def test_restore_dust_result_carries_the_defect_mask(model_engine, coffee):
    img = np.ascontiguousarray(_dusty(coffee[60:300, 80:440], seed=1))          # 360x240 real photo
    h, w = img.shape[:2]
    c = model_engine.client()
    r = c.enhance(img.tobytes(), w, h, 3, "u8", model="restore-dust", strength=100, scale=1)
    ref = _direct(img, model="restore-dust", strength=1.0, scale=1)
    assert ref.defects is not None and ref.defects.shape == (h, w)
    assert ref.defects.max() > 0 and ref.defects.min() == 0, "the detector found nothing: the test proves nothing"
    assert isinstance(r, elc.Result) and r.defects is not None
    assert (r.defects_width, r.defects_height) == (w, h)
    assert r.info["defects"] == {"width": w, "height": h, "dtype": "u8", "bytes": w * h}
    got = np.frombuffer(r.defects, np.uint8).reshape(h, w).astype(np.float64) / 255.0
    assert np.abs(got - ref.defects).max() <= 1 / 255 + 1e-9
    # the pixels are the pipeline's too, and the repair changed exactly where the mask says
    px = np.frombuffer(r.pixels, np.uint8).reshape(h, w, 3)
    assert np.abs(px.astype(int) - ref.image.astype(int)).max() <= 1
    changed = np.abs(px.astype(int) - img.astype(int)).max(axis=2) > 1
    assert changed.any() and not changed[got == 0].any()
    assert r.review is None                                  # not asked for


def test_defect_mask_follows_the_review_map_bgra_u16(model_engine, astronaut):
    """Both extras in one frame (review first, then defects), Krita's 16-bit B,G,R,A."""
    rgb = _dusty(astronaut[100:292, 150:406], seed=2).astype(np.uint16) * 257
    h, w = rgb.shape[:2]
    rgba = np.dstack([rgb, np.full((h, w), 65535, np.uint16)])
    bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).astype("<u2")
    c = model_engine.client()
    r = c.enhance(bgra.tobytes(), w, h, 4, "u16", channel_order="BGRA", model="restore-dust",
                  strength=80, scale=1, review=True)
    ref = _direct(rgba, model="restore-dust", strength=0.8, scale=1, review=True)
    assert ref.defects is not None and ref.defects.max() > 0
    assert r.review is not None and (r.review_width, r.review_height) == (w, h)
    rv = np.frombuffer(r.review, np.uint8).reshape(h, w)
    assert np.abs(rv.astype(int) - np.rint(ref.review * 255).astype(int)).max() <= 1
    assert r.defects is not None and (r.defects_width, r.defects_height) == (w, h)
    d = np.frombuffer(r.defects, np.uint8).reshape(h, w).astype(np.float64) / 255.0
    assert np.abs(d - ref.defects).max() <= 1 / 255 + 1e-9


def test_other_models_send_no_defect_mask(bare_engine, chelsea):
    img = np.ascontiguousarray(chelsea[:40, :60])
    r = bare_engine.client().enhance(img.tobytes(), 60, 40, 3, "u8", model="identity", review=True)
    assert r.defects is None and r.info["defects"] is None
    assert r.review is not None and len(r.review) == 60 * 40
