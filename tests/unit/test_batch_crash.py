"""``kill -9`` a real ``enhancelayer run --resume`` many times: the final resume must give
exactly the outputs of a run that was never killed, leave no temp file, keep no cut file,
and redo only what was not complete (each image processed once after the last kill).

Kills land at seeded random times spread over one whole run (start-up, read, model run,
write, rename), so no test hook is needed in the engine. PNG, TIFF, JPEG and WebP encoding
are deterministic for the same pixels and settings, so the outputs are compared byte for byte."""
from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from engine import imageio

REPO = Path(__file__).resolve().parents[2]
EXE = REPO / ".venv" / "bin" / "enhancelayer"
ROUNDS = 5              # each round: a fresh output folder, KILLS kills, then the final resume
KILLS = 8
SEED = 20260


def _inputs(folder: Path, coffee: np.ndarray, astronaut: np.ndarray, chelsea: np.ndarray) -> None:
    """Six small real photos in the formats and depths a batch meets."""
    alpha = np.linspace(30, 255, 160, dtype=np.float64)[None].repeat(144, 0).astype(np.uint8)
    imageio.write(folder / "a8.png", imageio.Image(coffee[100:244, 200:360]))
    imageio.write(folder / "b16.png", imageio.Image(astronaut[40:184, 180:340].astype(np.uint16) * 257 + 5))
    imageio.write(folder / "c.jpg", imageio.Image(chelsea[60:204, 120:280]))
    imageio.write(folder / "d16.tif", imageio.Image(coffee[200:344, 300:460].astype(np.uint16) * 257))
    imageio.write(folder / "e.webp", imageio.Image(astronaut[300:444, 100:260]))
    imageio.write(folder / "f.png", imageio.Image(np.dstack([chelsea[150:294, 250:410], alpha])))


def _run(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), "run", str(src), "-m", "denoise", "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=180, env=dict(os.environ, COLUMNS="160"))


def _summary(stderr: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) written, (\d+) skipped, (\d+) failed", stderr)
    assert m, stderr
    return int(m[1]), int(m[2]), int(m[3])


def _outputs(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out) if not n.startswith(".")) if out.exists() else []


def _temps(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.endswith(".part")) if out.exists() else []


def _stamp(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_ino, st.st_mtime_ns


@pytest.mark.slow
def test_kill_9_many_times_then_resume_gives_the_reference(tmp_path, coffee, astronaut, chelsea):
    src, ref, out = tmp_path / "in", tmp_path / "ref", tmp_path / "out"
    src.mkdir()
    _inputs(src, coffee, astronaut, chelsea)
    t0 = time.monotonic()
    r = _run(src, ref)
    full_s = time.monotonic() - t0
    assert r.returncode == 0 and _summary(r.stderr) == (6, 0, 0), r.stderr
    names = _outputs(ref)
    assert len(names) == 6
    reference = {n: (ref / n).read_bytes() for n in names}
    t0 = time.monotonic()
    r = _run(src, ref, "--resume")                  # nothing to do: start-up + resume checks
    start_s = time.monotonic() - t0
    assert _summary(r.stderr) == (0, 6, 0), r.stderr

    rng = random.Random(SEED)
    for rnd in range(ROUNDS):
        out = tmp_path / f"out{rnd}"
        _kill_round(src, out, reference, rng, start_s, full_s)
        _killed_mid_write(out / "d16.tif")
        _final_resume(src, out, reference)

    # and once more after a finished run: a cut output is found and redone, nothing else touched
    victim = names[-1]
    (out / victim).write_bytes(reference[victim][:-200])
    stamps = {n: _stamp(out / n) for n in names if n != victim}
    r = _run(src, out, "--resume")
    assert r.returncode == 0 and _summary(r.stderr) == (1, 5, 0), r.stderr
    assert (out / victim).read_bytes() == reference[victim]
    assert {n: _stamp(out / n) for n in names if n != victim} == stamps
    assert _temps(out) == []


def _kill_delay(rng: random.Random, start_s: float, full_s: float, left: int) -> float:
    """A fifth of the kills anywhere in start-up; the others in the part of a run that still
    has work (reads, model runs, writes, renames of the ``left`` images not done yet)."""
    if rng.random() < 0.2:
        return rng.uniform(0.02, start_s)
    work = max(0.05, full_s - start_s) * max(left, 1) / 6
    return rng.uniform(start_s * 0.85, start_s + work * 1.15)


def _kill_round(src: Path, out: Path, reference: dict[str, bytes], rng: random.Random,
                start_s: float, full_s: float) -> None:
    """KILLS runs with --resume, each killed with SIGKILL after a random delay; after each,
    whatever output exists must be complete and exactly the reference (writes are atomic)."""
    seen = []
    for _ in range(KILLS):
        delay = _kill_delay(rng, start_s, full_s, 6 - len(_outputs(out)))
        p = subprocess.Popen([str(EXE), "run", str(src), "-m", "denoise", "-o", str(out), "--resume", "-q"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()                                        # SIGKILL: no cleanup runs
        p.wait()
        for n in _outputs(out):
            assert (out / n).read_bytes() == reference[n], (n, delay)
        seen.append(f"{delay:.2f}s:{len(_outputs(out))}+{len(_temps(out))}")
    print(f"{out.name}: kill -9 at (delay: outputs+temps) {' '.join(seen)} "
          f"(start-up {start_s:.2f} s, a whole run {full_s:.2f} s)")


def _killed_mid_write(target: Path) -> None:
    """A writer of ``target`` killed for sure while its temp exists: a real stale .part (the
    batch's own writes are too quick to be hit reliably by random kills). A big TIFF is written
    straight into its temp, so there is time to see the temp appear and kill then."""
    code = ("import sys, numpy as np; from engine import imageio; "
            "px = np.random.default_rng(0).integers(0, 65535, (2500, 2500, 3), dtype=np.uint16); "
            "imageio.write(sys.argv[1], imageio.Image(px))")
    p = subprocess.Popen([str(REPO / ".venv" / "bin" / "python"), "-c", code, str(target)])
    t_end = time.monotonic() + 60
    while not _temps(target.parent) and p.poll() is None and time.monotonic() < t_end:
        time.sleep(0.005)
    p.kill()
    p.wait()
    assert _temps(target.parent), "the writer finished before it could be killed"
    assert not target.exists() or target.read_bytes() != b""


def _final_resume(src: Path, out: Path, reference: dict[str, bytes]) -> None:
    """One output cut by hand (when there is one), then --resume to the end: the reference
    bytes, no temp, and the outputs complete before it untouched (same inode and mtime)."""
    done_before = _outputs(out)
    cut = None
    if done_before:
        cut = done_before[0]
        (out / cut).write_bytes(reference[cut][: len(reference[cut]) // 2])
    kept = {n: _stamp(out / n) for n in done_before if n != cut}
    r = _run(src, out, "--resume")
    assert r.returncode == 0, r.stderr
    assert _summary(r.stderr) == (6 - len(kept), len(kept), 0), (r.stderr, sorted(kept), cut)
    assert _outputs(out) == sorted(reference) and _temps(out) == [], os.listdir(out)
    assert all((out / n).read_bytes() == reference[n] for n in reference)
    assert {n: _stamp(out / n) for n in kept} == kept                   # not rewritten
