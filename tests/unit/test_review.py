"""Review map, face/text detection and protection masks on real photos."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from real_photos import real_photo

from engine import review as RV
from engine.errors import BadInput


def _with_text(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real photo + three lines of text in DejaVu Sans Bold (matplotlib's copy); glyph mask."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")
    im = Image.fromarray(np.round(img * 255).astype(np.uint8))
    mask = Image.new("L", im.size, 0)
    d, dm = ImageDraw.Draw(im), ImageDraw.Draw(mask)
    h = im.size[1]
    for i, (txt, rel, col) in enumerate((("GATE 8B 1938", 0.055, (250, 250, 250)),
                                         ("Kodak 400 TX", 0.045, (12, 12, 12)),
                                         ("No. 4471", 0.065, (250, 250, 250)))):
        f = ImageFont.truetype(font, int(rel * h))
        xy = (int(0.05 * im.size[0]) + 40 * i, int((0.1 + 0.3 * i) * h))
        other = tuple(255 - c for c in col)
        d.text(xy, txt, font=f, fill=col, stroke_width=1, stroke_fill=other)
        dm.text(xy, txt, font=f, fill=255, stroke_width=1)
    return np.asarray(im).astype(np.float32) / 255.0, np.asarray(mask) > 0


@pytest.fixture(scope="module")
def detector(models_installed) -> str:
    from engine.models.registry import text_detector_path

    return str(text_detector_path())


# --- faces ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,center", [("astronaut", (223, 120)), ("grace_hopper", (262, 210))])
def test_faces_found_on_portraits(name, center):
    boxes = RV.detect_faces(real_photo(name))
    assert len(boxes) == 1, boxes
    x, y, w, h = boxes[0]
    assert x < center[0] < x + w and y < center[1] < y + h, boxes
    assert 60 < w < 300


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_faces_on_photos_without_people(name):
    assert RV.detect_faces(real_photo(name)) == []


# --- text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_text_found_on_photo_with_rendered_text(name, detector):
    img, glyphs = _with_text(real_photo(name))
    mask, boxes = RV.detect_text(img, detector_path=detector)
    assert mask.shape == glyphs.shape
    assert mask[glyphs].mean() > 0.95          # measured >= 0.99
    assert len(boxes) >= 3
    # the regions hug the text: not more than 3x the area of the lines' bounding boxes
    assert mask.sum() < 3.5 * glyphs.sum() * 2.5


def test_text_detector_finds_little_on_a_photo_without_text(detector):
    mask, _ = RV.detect_text(real_photo("coffee"), detector_path=detector)
    assert mask.mean() < 0.03


def test_registry_path_is_used_by_default(detector):
    img, glyphs = _with_text(real_photo("chelsea"))
    mask, _ = RV.detect_text(img)                 # path from engine.models.registry
    assert mask[glyphs].mean() > 0.95


# --- protection masks -----------------------------------------------------------------------

def test_protection_mask_faces_is_feathered_and_local():
    img = real_photo("astronaut")
    m = RV.protection_mask(img, ("faces",))
    assert m.dtype == np.float32 and m.shape == img.shape[:2]
    assert m[120, 223] == pytest.approx(1.0)          # middle of the face
    assert m[450, 450] == 0.0                        # helmet, far away
    soft = (m > 0.02) & (m < 0.98)
    assert soft.sum() > 200                          # a real feather, not a hard edge
    hard = RV.protection_mask(img, ("faces",), feather=0)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert (m >= hard).all()                         # feathering only grows the region


def test_protection_mask_text_covers_glyphs(detector):
    img, glyphs = _with_text(real_photo("coffee"))
    m = RV.protection_mask(img, ("text",), detector_path=detector)
    assert (m[glyphs] > 0.99).mean() > 0.95
    assert RV.protection_mask(img, ()).max() == 0.0


def test_missing_text_detector(tmp_path, monkeypatch, upscaled):
    """Protecting text without the detector is an actionable error; the review map still works."""
    from engine.errors import ModelNotInstalled

    monkeypatch.setenv("ENHANCELAYER_MODELS", str(tmp_path / "no-models"))
    img, up = upscaled
    with pytest.raises(ModelNotInstalled, match="enhancelayer import"):
        RV.protection_mask(img, ("text",))
    heat = RV.review_map(img, up, up)
    assert heat.shape == up.shape[:2] and heat.max() <= 1.0


def test_unknown_protect_kind_is_a_user_error():
    with pytest.raises(BadInput):
        RV.protection_mask(real_photo("coffee"), ("cars",))


# --- review map -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upscaled():
    img = real_photo("astronaut")[::2, ::2].copy()        # 256x256 keeps the test fast
    up = np.clip(cv2.resize(img, (512, 512), interpolation=cv2.INTER_CUBIC), 0, 1)
    return img, up


def test_review_map_flags_a_hallucinated_patch(upscaled):
    img, up = upscaled
    out = up.copy()
    out[380:440, 60:120] = up[40:100, 300:360]       # invented content (a pasted patch)
    heat = RV.review_map(img, up, out, kinds=())
    assert heat.shape == (512, 512) and heat.dtype == np.float32
    inside = heat[385:435, 65:115].mean()
    outside = heat[:, 200:].mean()
    assert inside > 0.6, inside
    assert outside < 0.05, outside
    assert inside > 10 * outside


def test_review_map_is_structure_aware_not_plain_difference(upscaled):
    img, up = upscaled
    shifted = np.clip(up * 0.85 + 0.08, 0, 1)           # big |diff|, same structure
    heat = RV.change_map(up, shifted)
    assert np.abs(shifted - up).mean() > 0.03
    assert heat.mean() < 0.1, heat.mean()
    assert RV.change_map(up, up).max() < 1e-3


def test_review_map_marks_faces_and_text(upscaled, detector):
    img, up = upscaled
    timg, glyphs = _with_text(img)
    tup = np.clip(cv2.resize(timg, (512, 512), interpolation=cv2.INTER_CUBIC), 0, 1)
    layers = RV.review_layers(timg, tup, tup, detector_path=detector)
    heat = RV.combine(layers)
    g2 = cv2.resize(glyphs.astype(np.uint8), (512, 512), interpolation=cv2.INTER_NEAREST) > 0
    assert (heat[g2] >= 0.25).mean() > 0.95              # nothing changed, but it is text
    assert heat[120, 223] >= 0.25                        # the face
    assert np.median(heat) < 0.05


def test_review_map_flags_text_the_model_changed(models_installed, detector):
    """photo-x2 on a photo with text: the changed glyph pixels are flagged (bench: >= 0.99)."""
    from engine.models.backends import load_model

    img, glyphs = _with_text(real_photo("chelsea"))
    m = load_model("photo-x2", device="cpu")
    out = np.clip(m.run(img), 0, 1)
    h, w = out.shape[:2]
    up = np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    heat = RV.review_map(img, up, out, detector_path=detector)
    g2 = cv2.resize(glyphs.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    changed = g2 & (np.abs(RV._luma(out) - RV._luma(up)) > 0.02)
    assert changed.sum() > 1000
    assert (heat[changed] >= 0.3).mean() > 0.95


def test_overlay_rendering(tmp_path, upscaled):
    img, up = upscaled
    heat = np.zeros((64, 96), np.float32)
    heat[:, 48:] = np.linspace(0, 1, 48)[None]
    rgba = RV.render_review_overlay(heat)
    assert rgba.shape == (64, 96, 4) and rgba.dtype == np.uint8
    assert rgba[:, :48, 3].max() == 0                # no heat: fully transparent
    assert rgba[0, 95, 3] > 150 and np.all(np.diff(rgba[0, 48:, 3].astype(int)) >= 0)
    opaque = RV.render_review_overlay(heat, base=up)
    assert opaque.shape == (64, 96, 4) and (opaque[..., 3] == 255).all()
    p = RV.save_review_png(tmp_path / "review.png", heat, base=up)
    back = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    assert back.shape == (64, 96, 4)
    assert not list(tmp_path.glob(".*tmp*"))
