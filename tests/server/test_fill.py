"""restore-fill and colorize over real HTTP: the selection travels as the job's mask, the colour
hints after it; without them the engine
refuses the job (422, plain words) before it reads a pixel."""
from __future__ import annotations

import numpy as np
import pytest

from engine.pipeline import EnhanceOptions, enhance

from .conftest import elc


def test_the_engine_refuses_a_fill_without_a_selection_before_reading_pixels(shared_engine):
    c = shared_engine.client()
    w, h = 48, 40
    with pytest.raises(elc.errors.BadRequest, match="works on the selected area"):
        c.enhance(bytes(w * h * 3), w, h, 3, "u8", model="restore-fill")


def _selection_job_as_pipeline(engine, img: np.ndarray, sel: np.ndarray, model: str):
    """Send ``img`` (u8 RGB) with ``sel`` as the job's mask to a task whose input the selection
    is: the answer equals the pipeline's own for the same mask, changes the selected pixels and
    no others. Returns the engine's answer (for its info)."""
    h, w = img.shape[:2]
    r = engine.client().enhance(img.tobytes(), w, h, 3, "u8", model=model, mask=sel.tobytes())
    ref = enhance(img, EnhanceOptions(model=model, mask=sel))
    got = np.frombuffer(r.pixels, np.uint8).reshape(h, w, 3)
    assert np.array_equal(got, ref.image)
    assert np.array_equal(got[sel == 0], img[sel == 0]) and not np.array_equal(got[sel > 0], img[sel > 0])
    return r


def test_the_engine_fills_the_selection_it_is_sent(shared_engine, astronaut):
    img = np.ascontiguousarray(astronaut[300:380, 200:300])
    sel = np.zeros(img.shape[:2], np.uint8)
    sel[30:50, 40:70] = 255
    _selection_job_as_pipeline(shared_engine, img, sel, "restore-fill")


def test_the_engine_lifts_the_stain_it_is_sent(shared_engine):
    """restore-stain: the selection is the job's mask, as for restore-fill; the answer is the
    pipeline's own, and nothing outside the selection changes."""
    from tests.conftest import bench_module

    q = bench_module("quality_stain")
    print_ = q.crop("brick")
    stained = np.rint(q.ellipse_stain(print_, (90, 100, 100, 70)) * 255).astype(np.uint8)
    sel = np.zeros(stained.shape[:2], np.uint8)
    sel[90:180, 80:200] = 255
    r = _selection_job_as_pipeline(shared_engine, stained, sel, "restore-stain")
    assert r.info.get("note", "").startswith("stain lifted"), r.info


def test_the_engine_colours_from_the_hints_it_is_sent(shared_engine):
    """colorize's hints travel after the pixels (header ``hints``), and a job without them
    is refused before a pixel is read."""
    h, w = 40, 48
    img = np.full((h, w, 3), 90, np.uint8)
    img[20:] = 170
    hints = np.zeros((h, w, 4), np.uint8)
    hints[5:8, 5:40] = (255, 0, 0, 255)
    hints[30:33, 5:40] = (0, 0, 255, 255)
    c = shared_engine.client()
    r = c.enhance(img.tobytes(), w, h, 3, "u8", model="colorize", strength=100, hints=hints.tobytes())
    ref = enhance(img, EnhanceOptions(model="colorize", hints=hints, strength=1.0))
    got = np.frombuffer(r.pixels, np.uint8).reshape(h, w, 3)
    assert np.array_equal(got, ref.image) and got[:15, :, 0].mean() > got[:15, :, 2].mean() + 20
    assert "note" in r.info and "notice" not in r.info
    colour = img.copy()
    colour[..., 0] = 220                       # a colour photo: coloured anyway, and the result says so
    r = c.enhance(colour.tobytes(), w, h, 3, "u8", model="colorize", strength=100, hints=hints.tobytes())
    assert r.info["notice"] is True and r.info["note"].startswith("the photo already had colour")
    with pytest.raises(elc.errors.BadRequest, match="needs colour hints"):
        c.enhance(img.tobytes(), w, h, 3, "u8", model="colorize")
    with pytest.raises(elc.errors.BadRequest, match="RGBA hints need"):
        c.enhance(img.tobytes(), w, h, 3, "u8", model="colorize", hints=b"\0" * 10)
