"""deblur-focus: given the width of a Gaussian blur, held-out photos (the benchmark's own crops,
blur and noise) come back sharper than Richardson-Lucy and Wiener given the same true blur at
their best settings; an over-large radius is flagged; tiles agree with a whole-image run;
cancel stops it; the CLI runs it with --blur-radius."""
from __future__ import annotations

import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import BadInput, Cancelled
from engine.pipeline import EnhanceOptions, enhance
from engine.tasks import TaskRequest, get
from engine.tasks import deblur_focus as df
from engine.tasks import deconvolution as dc
from tests.conftest import bench_module

EXE = Path(sys.executable).parent / "enhancelayer"


def _case(photo: np.ndarray, name: str, radius: float):
    """The benchmark's case exactly: its crop, its blur + noise, its seed."""
    q = bench_module("quality")
    case = next(c for c in q.all_cases() if c.name == f"blur-g{radius}")
    clean = q.detail_crop(photo.astype(np.float32) / 255.0, 256)
    blurred = case.degrade(clean, np.random.default_rng(zlib.crc32(f"{case.name}/{name}".encode())))
    return q, case, clean, blurred


def _psnr(q, ref: np.ndarray, out: np.ndarray) -> float:
    return q.metrics(ref, q.q8(out), 8)[0]


HELD_OUT = ["astronaut", "coffee", "chelsea", "camera", "grace_hopper"]   # the benchmark's, none of the mate ones


@pytest.mark.parametrize("radius", [1.0, 1.6])
def test_a_given_radius_beats_richardson_lucy_and_wiener_given_the_true_blur(radius):
    """Mean over the benchmark's five non-mate held-out photos, against bench/quality.py's own
    baselines (the true PSF, reflect-padded, each at its best setting FOR EACH PHOTO, chosen
    with the reference). Per photo it is not ahead everywhere (chelsea: 0.2-0.4 dB behind
    Wiener), nor at 2.0 on these five by more than 0.1 dB: README, "Soft focus"."""
    q = bench_module("quality")
    photos, _notes = q.load_photos(HELD_OUT, 256, None)
    assert sorted(photos) == sorted(HELD_OUT)
    case = next(c for c in q.all_cases() if c.name == f"blur-g{radius}")
    mine, classical, inputs = [], [], []
    for name, clean in photos.items():
        blurred = case.degrade(clean, np.random.default_rng(zlib.crc32(f"{case.name}/{name}".encode())))
        ctx = {"clean": clean}
        mine.append(_psnr(q, clean, q.m_deblur_focus(blurred, case, ctx)))
        rl, wiener = q.m_rl(blurred, case, ctx), q.m_wiener(blurred, case, ctx)
        classical.append(max(_psnr(q, clean, rl), _psnr(q, clean, wiener)))
        inputs.append(_psnr(q, clean, blurred))
    assert np.mean(mine) > np.mean(classical) + 0.15, (mine, classical)
    assert np.mean(mine) > np.mean(inputs) + 1.0


def _run(rgb: np.ndarray, values: dict, cancel=None):
    req = TaskRequest(rgb=lambda y0, y1, x0, x1: rgb[y0:y1, x0:x1], height=rgb.shape[0], width=rgb.shape[1],
                      values=values, cancel=cancel)
    out = get("deblur-focus").run(req)
    return out, list(out.rows)


def test_the_radius_is_used_and_an_over_large_one_is_flagged(coffee):
    q, _case_, _clean, blurred = _case(coffee, "coffee", 1.6)
    out, rows = _run(blurred, {"blur_radius": 1.6})
    direct = dc.deconvolve(blurred, df.gaussian_kernel(1.6), lam=dc.data_weight(dc.noise_sigma(blurred)) * 1.6)
    assert np.array_equal(rows[0][1], direct)
    assert out.info["blur_radius"] == 1.6 and not out.info.get("notice")
    over, _ = _run(blurred, {"blur_radius": 3.2})
    assert over.info["notice"] and "lower it" in over.info["note"] and over.info["edge_contrast_ratio"] > 2.0


def test_kernel_and_tiles(chelsea):
    k = df.gaussian_kernel(1.6)
    assert k.shape == (11, 11) and abs(k.sum() - 1.0) < 1e-12 and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    _q, _c, _clean, blurred = _case(chelsea, "chelsea", 1.6)
    whole = dc.deconvolve(blurred, k, tile=4096)
    tiled = dc.deconvolve(blurred, k, tile=96)
    diff = np.abs(tiled - whole) * 255
    assert diff.max() < 2.0 and np.percentile(diff, 99.9) < 0.5


def test_cancel_bad_sizes_and_bad_radius(coffee):
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        _run(coffee[:200, :200].astype(np.float32) / 255.0, {}, cancel=ev)
    with pytest.raises(BadInput):
        _run(np.zeros((8, 40, 3), np.float32), {})
    with pytest.raises(BadInput, match="blur_radius"):
        EnhanceOptions(model="deblur-focus", blur_radius=20.0)
    with pytest.raises(BadInput, match="blur_radius"):
        enhance(np.zeros((32, 32, 3), np.float32), EnhanceOptions(model="deblur-focus", blur_radius=0.0))


def test_cli_runs_it_with_a_radius(tmp_path, coffee):
    _q, _c, _clean, blurred = _case(coffee, "coffee", 1.0)
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray((blurred * 255 + 0.5).astype(np.uint8)).save(src / "soft.png")
    r = subprocess.run([str(EXE), "run", str(src), "-o", str(dst), "--model", "deblur-focus", "--blur-radius", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "blur of radius 1 px removed" in r.stdout + r.stderr
    out = np.asarray(Image.open(dst / "soft.png"), np.float32) / 255.0
    assert out.shape == blurred.shape and np.abs(out - blurred).mean() > 1.0 / 255
