"""bench/device_check.py, the one-run GPU check of issue 19, works before a GPU is lent: run here on
the CPU device with small sizes, it measures every model against the ncnn reference, runs the
big-photo section in its child process and writes both result files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_check_script_runs_end_to_end_on_the_cpu_device(models_installed, tmp_path):
    env = {**os.environ, "ENHANCELAYER_MODELS": str(models_installed), "ENHANCELAYER_HOME": str(tmp_path / "home")}
    p = subprocess.run([sys.executable, str(REPO / "bench" / "device_check.py"), "--out", str(tmp_path / "out"),
                        "--devices", "cpu", "--quick", "--minutes", "3"],
                       capture_output=True, text=True, env=env, timeout=400)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = res["fidelity"]
    assert {r["model"] for r in rows} == {"photo-x2", "anime-video-x2", "photo-x4"}
    # ORT float32 against the ncnn float32 reference: the importer's bound holds, speed is measured
    assert all(r["device"] == "cpu" and r["pass"] and r["psnr_db"] > 45 and r["ms_per_mp"] > 0 for r in rows)
    big = res["big"][0]
    assert "error" not in big, big
    assert big["out"] == [96 * 4, 144 * 4, 3] and big["runtime"] == "cpu"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "photo-x4 end to end, 144x96 on cpu" in md and "| photo-x2 | cpu |" in md


def test_without_a_gpu_the_check_says_so_and_fails(models_installed, tmp_path):
    env = {**os.environ, "ENHANCELAYER_MODELS": str(models_installed), "ENHANCELAYER_HOME": str(tmp_path / "home")}
    p = subprocess.run([sys.executable, str(REPO / "bench" / "device_check.py"), "--out", str(tmp_path / "out"),
                        "--devices"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    assert "No GPU device found" in (tmp_path / "out" / "results.md").read_text()
