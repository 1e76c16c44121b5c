"""deblur-motion: a real photo smeared by a straight motion (bench/quality.py's blur model) has
its blur found (length and angle) and comes back sharper than Richardson-Lucy and Wiener given
the TRUE blur; tiles agree with a whole-image run; a given length and angle are used as given;
cancel stops it; the CLI runs it and names the blur it found."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import BadInput, Cancelled
from engine.pipeline import EnhanceOptions, enhance
from engine.tasks import deblur as db
from engine.tasks import deconvolution as dc
from tests.conftest import bench_module, run_task

EXE = Path(sys.executable).parent / "enhancelayer"


def _blurred(photo: np.ndarray, length: int, angle: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = bench_module("quality")
    clean = photo.astype(np.float32) / 255.0
    psf = q.motion_psf(length, angle)
    return clean, q._blur(psf)(clean, np.random.default_rng(seed)), psf     # the benchmark's blur cases


def _psnr(ref: np.ndarray, out: np.ndarray, border: int = 8) -> float:
    q = bench_module("quality")
    return q.metrics(ref, q.q8(out), border)[0]


def _angle_error(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def test_the_kernel_is_a_centred_segment_of_the_asked_length_and_direction():
    k = db.motion_kernel(12.0, 60.0)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and abs(k.sum() - 1.0) < 1e-9
    ys, xs = np.mgrid[:k.shape[0], :k.shape[1]] - (k.shape[0] - 1) / 2.0
    assert abs((k * xs).sum()) < 1e-6 and abs((k * ys).sum()) < 1e-6
    cov = np.array([[(k * xs * xs).sum(), (k * xs * -ys).sum()], [(k * xs * -ys).sum(), (k * ys * ys).sum()]])
    vals, vecs = np.linalg.eigh(cov)
    major = vecs[:, 1]
    assert _angle_error(np.degrees(np.arctan2(major[1], major[0])) % 180.0, 60.0) < 1.0
    # a uniform segment of length L has variance L^2/12 along it (+ the bilinear spread)
    assert abs(vals[1] - 12.0 ** 2 / 12.0) < 0.5
    assert db.motion_kernel(0.0, 0.0).max() == 1.0      # no length: the identity


@pytest.mark.parametrize("length, angle", [(9, 110.0), (13, 60.0), (17, 0.0)])
def test_the_blur_of_a_held_out_photo_is_found(coffee, length, angle):
    _clean, blurred, _psf = _blurred(coffee[:256, 100:356], length, angle)
    est = db.estimate_motion(blurred)
    # bench/quality.py's "length L" is a path of L - 1 px between its end samples
    assert abs(est.length - (length - 1)) <= 1.0 and _angle_error(est.angle, angle) <= 3.0
    assert est.fit > 0.3 and est.ripple > 0.3
    assert db.plausible(blurred, est, dc.data_weight(dc.noise_sigma(blurred)))[0]


@pytest.mark.parametrize("blur", [None, 1.0, 2.0])
def test_a_sharp_or_defocused_photo_is_left_as_it_is_and_the_user_told(astronaut, blur):
    """Every photo fits SOME segment; deconvolving a wrong one adds streaks (this photo: -15 dB),
    so without the signs of a real smear the task leaves the photo alone and says why."""
    q = bench_module("quality")
    clean = astronaut[100:356, 100:356].astype(np.float32) / 255.0
    photo = clean if blur is None else q.q8(q.convolve_rgb(clean, q.gauss_psf(blur))
                                            + np.random.default_rng(3).normal(0, 1 / 255, clean.shape))
    out, rows = _run(photo, {})
    assert np.array_equal(rows[0][1], photo)
    assert out.info["note"].startswith("no clear straight motion blur found: left as it is") and out.info["notice"]
    assert out.info["blur_length"] == 0.0


@pytest.mark.parametrize("length, angle", [(9, 110.0), (13, 60.0)])
def test_blind_deblur_beats_richardson_lucy_and_wiener_given_the_true_blur(coffee, length, angle):
    """Against the benchmark's own baselines (bench/quality.py m_rl / m_wiener: the true blur,
    reflect-padded, each at its best setting for this photo)."""
    q = bench_module("quality")
    clean, blurred, psf = _blurred(coffee[:256, 100:356], length, angle)
    ours = enhance(blurred, EnhanceOptions(model="deblur-motion", strength=1.0, grain=0.0, device="cpu")).image
    case, ctx = q.Case(f"blur-m{length}", "blur", q._blur(psf), psf=psf), {"clean": clean}
    rl, wi = _psnr(clean, q.m_rl(blurred, case, ctx)), _psnr(clean, q.m_wiener(blurred, case, ctx))
    mine = _psnr(clean, ours)
    assert mine > _psnr(clean, blurred) + 3.0
    assert mine > max(rl, wi) + 0.5, (mine, rl, wi)


def test_tiles_agree_with_the_whole_image(chelsea):
    _clean, blurred, _psf = _blurred(chelsea[:300, :440], 9, 110.0)
    k = db.motion_kernel(8.0, 110.0)
    whole = dc.deconvolve(blurred, k, tile=4096)
    tiled = dc.deconvolve(blurred, k, tile=128)
    diff = np.abs(tiled - whole) * 255
    assert diff.max() < 2.0 and np.percentile(diff, 99.9) < 0.5


def _run(rgb: np.ndarray, values: dict, cancel=None, progress=None):
    return run_task("deblur-motion", rgb, values, cancel, progress)


def test_a_given_length_and_angle_are_used_and_said(coffee):
    _clean, blurred, _psf = _blurred(coffee[:256, 100:356], 9, 110.0)
    seen: list[str] = []
    out, rows = _run(blurred, {"blur_length": 8.0, "blur_angle": 110.0}, progress=lambda d, t, w: seen.append(w))
    assert out.info["blur_length"] == 8.0 and out.info["blur_angle"] == 110.0 and "as given" in out.info["note"]
    assert "finding the blur" not in seen and "removing the blur" in seen
    direct = dc.deconvolve(blurred, db.motion_kernel(8.0, 110.0), lam=dc.data_weight(dc.noise_sigma(blurred)))
    assert np.array_equal(rows[0][1], direct)
    found, _ = _run(blurred, {})
    assert "found a motion blur of" in found.info["note"] and abs(found.info["blur_length"] - 8.0) <= 1.0


@pytest.mark.parametrize("task", ["deblur-motion", "deblur-focus"])
def test_cancel_stops_it_and_tiny_images_are_refused(coffee, task):
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        run_task(task, coffee[:200, :200].astype(np.float32) / 255.0, {}, cancel=ev)
    with pytest.raises(BadInput):
        run_task(task, np.zeros((8, 40, 3), np.float32), {})


def test_an_area_too_small_to_measure_is_left_and_said_but_a_given_blur_still_runs(coffee):
    _clean, blurred, _psf = _blurred(coffee[:100, :300], 9, 110.0)
    out, rows = _run(blurred, {})
    assert np.array_equal(rows[0][1], blurred) and out.info["notice"]
    assert out.info["note"].startswith("the area is too small to find the blur in")
    given, rows = _run(blurred, {"blur_length": 8.0, "blur_angle": 110.0})
    assert given.info["blur_length"] == 8.0 and not np.array_equal(rows[0][1], blurred)


def test_the_cli_runs_it_and_names_the_blur(tmp_path, coffee):
    _clean, blurred, _psf = _blurred(coffee[:200, :200], 13, 60.0)
    src, dst = tmp_path / "shake.png", tmp_path / "fixed.png"
    Image.fromarray((blurred * 255 + 0.5).astype(np.uint8)).save(src)
    r = subprocess.run([str(EXE), "run", str(src), "-m", "deblur-motion", "-o", str(dst), "--strength", "100"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    said = re.search(r"found a motion blur of ([0-9.]+) px at ([0-9.]+) degrees", r.stdout + r.stderr)
    assert said is not None, r.stderr
    assert abs(float(said.group(1)) - 12.0) <= 1.0 and _angle_error(float(said.group(2)), 60.0) <= 3.0
    assert Image.open(dst).size == (200, 200)
