"""descreen: a real photo printed as a halftone (bench/quality_descreen.py's printing model) is
found to carry a screen of the right period and comes back closer to the print without its
screen than both the scan and the Gaussian blur that leaves as much screen; a photo without
a screen is left exactly as it is and the user is told; the CLI and the server say so too."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import imageio
from engine.pipeline import EnhanceOptions, enhance
from engine.tasks import descreen as ds
from tests.conftest import bench_module

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "enhancelayer"


def _bench():
    return bench_module("quality_descreen")


@pytest.mark.parametrize("colour, period", [(False, 6.0), (True, 4.0)])
def test_a_printed_photo_loses_its_screen_and_keeps_its_detail(chelsea, colour, period):
    q = _bench()
    rgb = chelsea[:256, :320].astype(np.float32) / 255.0
    printed = q.halftone(rgb, period, colour)
    truth = q.truth_of(rgb, colour)
    peaks = ds.find_peaks(printed)
    assert abs(1.0 / ds.screen_frequency(peaks) - period) < 0.05 * period
    out, _layers, info = ds._run_task(printed, {})
    assert "removed" in info["note"] and abs(info["screen_period_px"] - period) < 0.05 * period
    left = q.screen_energy(out, period, colour) / q.screen_energy(printed, period, colour)
    assert left < 1e-3
    _sigma, gauss = q.matched_gaussian(printed, q.screen_energy(out, period, colour), period, colour)
    assert q.psnr(out, truth) > q.psnr(printed, truth) + 8.0
    # bench/results/quality_descreen.md: -0.8..+1.6 dB against the blur that leaves as much
    # screen (this crop is one of the losses); far worse would mean the picture is cut too
    assert q.psnr(out, truth) > q.psnr(gauss, truth) - 1.0


def test_a_photo_without_a_screen_is_left_as_it_is(astronaut):
    rgb = astronaut[100:356, 100:356].astype(np.float32) / 255.0
    out, layers, info = ds._run_task(rgb, {})
    assert out is rgb and layers == {} and info["note"].startswith("no halftone screen found")
    assert info["notice"] is True            # GIMP says so in a message (Krita's docker shows every note)
    res = enhance((rgb * 65535).astype(np.uint16), EnhanceOptions(model="descreen", strength=1.0))
    assert res.info["note"].startswith("no halftone screen found")


def test_cli_says_what_it_found(tmp_path, chelsea, astronaut):
    q = _bench()
    printed = q.halftone(chelsea[:200, :240].astype(np.float32) / 255.0, 6.0, False)
    imageio.write(tmp_path / "in" / "print.png", imageio.Image(np.rint(printed * 255).astype(np.uint8)))
    imageio.write(tmp_path / "in" / "photo.png", imageio.Image(astronaut[:200, :240]))
    r = subprocess.run([str(EXE), "run", str(tmp_path / "in"), "-m", "descreen", "-o", str(tmp_path / "out"),
                        "--strength", "100"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stderr.split())
    assert "photo.png: no halftone screen found: left as it is" in text
    assert "print.png: screen of 6.0 px per period removed" in text


def test_the_server_result_carries_the_note(client_for_tests=None):
    from engine.server import wire

    assert "note" not in wire.result_header(np.zeros((2, 2, 3), np.uint8), _frame(), None)
    head = wire.result_header(np.zeros((2, 2, 3), np.uint8), _frame(), None, {"note": "no halftone screen found"})
    assert json.loads(json.dumps(head))["note"] == "no halftone screen found"


def _frame():
    from engine.server import wire

    return wire.JobFrame.model_validate({"width": 2, "height": 2, "channels": 3, "dtype": "u8",
                                         "model": "descreen"})


def _band_power(ch: np.ndarray, lo: float, hi: float) -> float:
    """Power of ``ch`` (Hann-windowed) between ``lo`` and ``hi`` cycles/px."""
    win = np.outer(np.hanning(ch.shape[0]), np.hanning(ch.shape[1]))
    power = np.abs(np.fft.fft2((ch - ch.mean()) * win)) ** 2
    r = np.hypot(np.fft.fftfreq(ch.shape[0])[:, None], np.fft.fftfreq(ch.shape[1])[None, :])
    return float(power[(r >= lo) & (r < hi)].sum())


def test_colour_print_loses_its_colour_mottling_and_keeps_its_brightness(chelsea):
    """The inks' beats show as colour mottling under the screen frequency: the chroma is taken
    lower than the brightness (step 3 of the module), and the brightness is what filtering it
    alone gives."""
    q = _bench()
    rgb = chelsea[:256, :320].astype(np.float32) / 255.0
    printed = q.halftone(rgb, 6.0, True)
    peaks = ds.find_peaks(printed)
    fs = ds.screen_frequency(peaks)
    out = ds.descreen(printed, peaks)
    ycc = out @ ds._TO_YCC.T
    lo, hi = ds._CHROMA * ds._STOP * fs, ds._STOP * fs        # kept in brightness, not in colour
    chroma = _band_power(ycc[..., 1], lo, hi) + _band_power(ycc[..., 2], lo, hi)
    assert chroma < 1e-3 * _band_power(ycc[..., 0], lo, hi)  # 1e-5 measured; 0.4 before step 3
    y = printed @ ds._TO_YCC[0]
    y_alone = ds.descreen(np.repeat(y[..., None], 3, axis=2), peaks)[..., 0]
    assert float(np.abs(ycc[..., 0] - y_alone).max()) < 1e-4     # 4e-7 measured
