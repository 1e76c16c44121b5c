"""restore-color on real photos faded by four models, through the pipeline and the CLI.

The photos are the evaluation set of bench/results/quality_color.md (not the development
photos the method was chosen on); thresholds are its figures with a margin.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from real_photos import real_photo
from skimage import color

from engine import imageio, tasks
from engine.errors import BadInput
from engine.pipeline import EnhanceOptions, enhance
from engine.tasks import restore_color as rc

REPO = Path(__file__).resolve().parents[2]
EVAL = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper")


def _small(x: np.ndarray, side: int = 256) -> np.ndarray:
    f = side / max(x.shape[:2])
    return cv2.resize(x, (round(x.shape[1] * f), round(x.shape[0] * f)), interpolation=cv2.INTER_AREA)


def _delta_e(a: np.ndarray, b: np.ndarray) -> float:
    return float(color.deltaE_ciede2000(color.rgb2lab(a), color.rgb2lab(b)).mean())


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {n: _small(real_photo(n)) for n in EVAL}


@pytest.mark.parametrize("model", rc.FADE_MODELS)
def test_faded_colour_comes_back_closer_to_the_original(photos, model):
    faded = [_delta_e(x, rc.fade(x, model)) for x in photos.values()]
    restored = [_delta_e(x, rc.restore_color(rc.fade(x, model))) for x in photos.values()]
    # measured at 512 px (bench/results/quality_color.md): restored / faded 0.59-0.68 per model
    assert np.mean(restored) < 0.8 * np.mean(faded), (faded, restored)


def test_a_photo_with_nothing_grey_keeps_its_colour(photos):
    # coffee: wood and a red cup; its warmth is the scene's, not a cast (measured dE 0.05)
    assert _delta_e(photos["coffee"], rc.restore_color(photos["coffee"])) < 1.0
    evidence = rc.neutral_evidence(photos["coffee"])
    assert evidence > rc.neutral_evidence(photos["astronaut"])


def test_cast_zero_restores_contrast_but_not_the_cast(photos):
    x = photos["astronaut"]
    faded = rc.fade(x, "yellowed")
    full, contrast_only = rc.restore_color(faded, cast=1.0), rc.restore_color(faded, cast=0.0)
    blue_gap = lambda im: float(im[..., 0].mean() - im[..., 2].mean())  # noqa: E731 - the yellow cast
    assert abs(blue_gap(full) - blue_gap(x)) < abs(blue_gap(contrast_only) - blue_gap(x))
    assert contrast_only.std() > faded.std() * 1.1                      # levels still stretched


def test_through_the_pipeline_8_and_16_bit(photos):
    faded = rc.fade(photos["rocket"], "density")
    u8 = np.round(faded * 255).astype(np.uint8)
    u16 = np.round(faded * 65535).astype(np.uint16)
    r8 = enhance(u8, EnhanceOptions(model="restore-color", strength=1.0)).image
    r16 = enhance(u16, EnhanceOptions(model="restore-color", strength=1.0)).image
    assert r8.dtype == np.uint8 and r16.dtype == np.uint16 and r16.shape == u16.shape
    assert len(np.unique(r16)) > 4 * len(np.unique(r8))                 # 16-bit is not squeezed to 8
    assert np.abs(r16 / 65535.0 - r8 / 255.0).max() < 3 / 255
    half = enhance(u8, EnhanceOptions(model="restore-color", strength=0.5)).image.astype(float)
    assert np.abs(half - (u8 * 0.5 + r8 * 0.5)).max() <= 2               # strength blends with the input


def test_published_with_its_options():
    row = next(r for r in tasks.published()["models"] if r["id"] == "restore-color")
    assert row["task"] == "restore" and row["kind"] == "classical" and row["installed"]
    assert {"clip", "cast", "strength"} <= set(row["options"])
    opts = {o["name"]: o for o in tasks.published()["options"]}
    assert (opts["clip"]["minimum"], opts["clip"]["maximum"], opts["clip"]["default"]) == (0, 5, 0.1)
    assert "restore-color" in opts["cast"]["tasks"] and "restore-dust" not in opts["cast"]["tasks"]
    with pytest.raises(BadInput, match="cast"):
        EnhanceOptions(model="restore-color", cast=2.0)
    with pytest.raises(BadInput):
        rc.restore_color(np.zeros((4, 4), np.float32))


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_runs_it_and_refuses_a_bad_value_in_one_line(tmp_path, photos):
    src = tmp_path / "faded.png"
    faded = rc.fade(photos["astronaut"], "flare")
    imageio.write(src, imageio.Image(np.round(faded * 255).astype(np.uint8)))
    r = _run(src, "-m", "restore-color", "--strength", "100", "--cast", "0.8", "-o", tmp_path / "out.png", "-q")
    assert r.returncode == 0, r.stderr
    out = imageio.read(tmp_path / "out.png").pixels[..., :3].astype(np.float32) / 255
    assert _delta_e(photos["astronaut"], out) < 0.7 * _delta_e(photos["astronaut"], faded)
    r = _run(src, "-m", "restore-color", "--clip", "9", "-o", tmp_path / "bad.png", "-q")
    assert r.returncode == 2 and "clip" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad.png").exists()
