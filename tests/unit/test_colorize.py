"""colorize: a real colour photo made black-and-white gets its colours back from a few dozen
hint strokes (CIEDE2000 far below the gray image's, no worse than the paper's method), keeps
its brightness, and every bad hints input is refused in words; the CLI takes --hints."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import imageio
from engine.errors import BadInput
from engine.pipeline import EnhanceOptions, enhance
from engine.tasks import colorize as cz
from tests.conftest import bench_module

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "enhancelayer"


def _bench():
    return bench_module("quality_colorize")


def test_hints_bring_the_colours_back_and_the_brightness_stays(chelsea):
    """A test photo of bench/quality_colorize.py (there: dE00 3.29 vs gray 15.88, Levin 3.16)."""
    q = _bench()
    truth = chelsea.astype(np.float32) / 255.0
    gray = q.gray_of(truth)
    hints = q.strokes(truth)
    colours, where = cz.hints_of(hints, gray.shape[:2])
    out = cz.colorize(gray, colours, where)
    de, _ab, _rgb = q.metrics(out, truth)
    de_gray = q.metrics(gray, truth)[0]
    de_levin = q.metrics(q.levin_yuv(gray, hints), truth)[0]
    assert de < 0.3 * de_gray
    assert de < de_levin + 0.5
    luma = out @ q.Y601
    diff = np.abs(luma - gray[..., 0])
    assert diff.mean() < 0.003 and np.percentile(diff, 99) < 2 / 255


def _hints(h, w, dtype=np.uint8):
    hi = np.zeros((h, w, 4), dtype)
    top = np.iinfo(dtype).max if dtype != np.float32 else 1.0
    hi[10:14, 10:30] = (top, 0, 0, top)
    hi[40:44, 10:30] = (0, 0, top, top)
    return hi


def test_the_pipeline_colours_along_edges_and_says_when_the_photo_had_colour():
    img = np.full((64, 48, 3), 100, np.uint8)
    img[32:] = 180                                    # two gray areas: red hint above, blue below
    res = enhance(img, EnhanceOptions(model="colorize", hints=_hints(64, 48), strength=1.0))
    top, bottom = res.image[5:25].reshape(-1, 3).mean(0), res.image[40:60].reshape(-1, 3).mean(0)
    assert top[0] > top[2] + 20 and bottom[2] > bottom[0] + 20, (top, bottom)
    assert "the photo already had colour" not in res.info["note"] and not res.info.get("notice")
    colour = img.copy()
    colour[..., 0] = 200
    res = enhance(colour, EnhanceOptions(model="colorize", hints=_hints(64, 48, np.uint16), strength=1.0))
    assert "the photo already had colour" in res.info["note"] and res.info["notice"] is True


@pytest.mark.parametrize("hints, words", [
    (None, "needs colour hints"),
    (np.zeros((64, 48, 4), np.uint8), "has no hints"),
    (np.zeros((32, 48, 4), np.uint8), "must be the same size"),
    (np.zeros((64, 48, 3), np.uint8), "must be RGBA"),
])
def test_bad_hints_are_refused_in_words(hints, words):
    with pytest.raises(BadInput, match=words):
        enhance(np.zeros((64, 48, 3), np.uint8), EnhanceOptions(model="colorize", hints=hints))


def test_hints_for_another_task_are_refused():
    with pytest.raises(BadInput, match="takes no colour hints"):
        enhance(np.zeros((64, 48, 3), np.uint8), EnhanceOptions(model="restore-color", hints=_hints(64, 48)))


def test_cli_takes_hints_and_refuses_hints_without_alpha(tmp_path):
    img = np.full((64, 48), 100, np.uint8)
    img[32:] = 180
    imageio.write(tmp_path / "bw.png", imageio.Image(img))
    imageio.write(tmp_path / "hints.png", imageio.Image(_hints(64, 48)))
    imageio.write(tmp_path / "flat.png", imageio.Image(_hints(64, 48)[..., :3].copy()))
    r = subprocess.run([str(EXE), "run", str(tmp_path / "bw.png"), "-m", "colorize", "--hints",
                        str(tmp_path / "flat.png"), "-o", str(tmp_path / "a.png")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "must have an alpha channel" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([str(EXE), "run", str(tmp_path / "bw.png"), "-m", "colorize", "--hints",
                        str(tmp_path / "hints.png"), "--strength", "100", "-o", str(tmp_path / "b.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = imageio.read(tmp_path / "b.png").pixels
    assert out.ndim == 3 and out[5:25, :, 0].mean() > out[5:25, :, 2].mean() + 20


def test_the_plugins_send_the_hints_layer_only_for_colorize():
    from plugin.client import errors, messages, options, output

    cat = {"models": [{"id": "colorize", "installed": True, "needs_hints": True, "layer_blend": "color",
                       "options": []}, {"id": "photo-x2", "installed": True, "options": []}], "options": []}
    plan = options.plan(cat, options.Request(model="colorize", hints_layer="7"))
    assert plan.needs_hints and plan.request.hints_layer == "7"
    assert options.hints_input(plan, lambda: b"\x01\x02") == b"\x01\x02"
    with pytest.raises(errors.UserError) as e:
        options.hints_input(plan, None)
    assert str(e.value) == messages.NEEDS_HINTS
    other = options.plan(cat, options.Request(model="photo-x2"))
    assert options.hints_input(other, None) is None
    # the one rule both hosts call: only what the task needs travels, as submit keywords
    assert options.job_inputs(plan, False, lambda: b"", lambda: b"\x05") == {"hints": b"\x05"}
    assert options.job_inputs(other, True, lambda: b"\xff", None) == {}
    assert output.layer_blend(cat["models"][0]) == "color" and output.layer_blend(cat["models"][1]) == "normal"
