"""``enhancelayer run --ray`` against a REAL Ray cluster on loopback: a head (no CPUs) and two
worker nodes of one CPU each, started with ``ray start`` and stopped by the fixture (token
authentication on, usage statistics off, its own temp folder).

Checked: outputs byte-identical to the local batch on real photos of mixed formats and bit
depths, in both ways pixels travel (shared paths, object store); bad files reported and skipped
as the local batch does; a worker process killed (SIGKILL) mid-batch -> every output complete
and each written once; the driver killed mid-batch -> ``--resume`` finishes the rest. Bounded
in time: every process has a timeout and the fixture stops the cluster whatever happens.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import imageio

pytest.importorskip("ray", reason="the cluster extra (ray) is part of the test extra: pip install -e '.[test]'")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

BIN = Path(sys.executable).parent
EXE = BIN / "enhancelayer"
RAY = BIN / "ray"
MODEL = "denoise"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, models_dir):
    """A head + 2 one-CPU worker nodes on 127.0.0.1; yields (address, env for drivers)."""
    port = _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32), ENHANCELAYER_MODELS=str(models_dir), COLUMNS="160")
    addr = f"127.0.0.1:{port}"

    def ray(*args: str, timeout: float = 120) -> None:
        r = subprocess.run([str(RAY), *args], env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"ray {' '.join(args)}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"

    try:
        ray("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=0",
            "--include-dashboard=false", "--disable-usage-stats")
        for _ in range(2):
            ray("start", f"--address={addr}", "--node-ip-address=127.0.0.1", "--num-cpus=1")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:           # both workers registered
            r = subprocess.run([str(RAY), "status", f"--address={addr}"], env=env, capture_output=True,
                               text=True, timeout=60)
            if re.search(r"\b2\.0 CPU\b", r.stdout):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the worker nodes did not join:\n{r.stdout}")
        yield addr, env
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, coffee, astronaut, chelsea) -> Path:
    """Real photos in the formats and depths a batch meets, plus two bad files."""
    d = tmp_path_factory.mktemp("ray-in")
    alpha = np.linspace(30, 255, 200, dtype=np.float64)[None].repeat(180, 0).astype(np.uint8)
    imageio.write(d / "a8.png", imageio.Image(coffee[100:280, 200:400]))
    imageio.write(d / "b16.png", imageio.Image(astronaut[40:220, 180:380].astype(np.uint16) * 257 + 5))
    imageio.write(d / "c.jpg", imageio.Image(chelsea[60:240, 120:320]))
    imageio.write(d / "d16.tif", imageio.Image(coffee[200:380, 300:500].astype(np.uint16) * 257))
    imageio.write(d / "e.webp", imageio.Image(astronaut[300:480, 100:300]))
    imageio.write(d / "f.png", imageio.Image(np.dstack([chelsea[100:280, 200:400], alpha])))
    imageio.write(d / "g-gray.png", imageio.Image(np.ascontiguousarray(coffee[150:330, 100:300, 1])))
    good = (d / "a8.png").read_bytes()
    (d / "x-cut.png").write_bytes(good[: len(good) // 3])          # truncated
    (d / "y-text.jpg").write_text("not an image\n")                # not an image at all
    return d


def _run(src: Path, out: Path, env: dict, *extra: str, timeout: float = 300,
         model: str = MODEL) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), "run", str(src), "-m", model, "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _summary(stderr: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) written, (\d+) skipped, (\d+) failed", stderr)
    assert m, stderr
    return int(m[1]), int(m[2]), int(m[3])


def _failed(stderr: str) -> list[str]:
    return sorted(re.sub(r"\s+", " ", ln).strip() for ln in re.findall(r"failed:.*", stderr))


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory, cluster) -> tuple[dict[str, bytes], str]:
    """The local batch's outputs and its report."""
    _addr, env = cluster
    out = tmp_path_factory.mktemp("ray-ref") / "out"
    r = _run(photos, out, env)
    assert r.returncode == 2, r.stderr                       # two bad files
    assert _summary(r.stderr) == (7, 0, 2), r.stderr
    return _files(out), r.stderr


@pytest.mark.parametrize("io", ["shared", "store"])
def test_outputs_identical_to_the_local_batch(cluster, photos, reference, tmp_path, io):
    addr, env = cluster
    ref, ref_err = reference
    out = tmp_path / "out"
    r = _run(photos, out, env, "--ray", addr, "--ray-io", io)
    assert r.returncode == 2, r.stderr                       # the same exit code: bad files
    assert _summary(r.stderr) == (7, 0, 2), r.stderr
    assert _failed(r.stderr) == _failed(ref_err)             # the same one-line reports
    assert f"2 slots, {io}" in r.stderr
    got = _files(out)
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert got[name] == ref[name], f"{name} differs from the local batch ({io})"
    assert not [n for n in os.listdir(out) if n.endswith(".part")]
    m = re.search(r"Ray: (\d+) worker process\(es\), (\d+) model load", r.stderr)
    assert m and int(m[2]) == int(m[1]) <= 3, r.stderr        # one model load per worker process


class _Inodes(threading.Thread):
    """Watches an output folder: every inode each output name had (a second write = a new inode,
    the rename of a new temporary file)."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder = folder
        self.seen: dict[str, set[int]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for e in os.scandir(self.folder):
                    if not e.name.startswith("."):
                        self.seen.setdefault(e.name, set()).add(e.inode())
            except OSError:
                pass
            time.sleep(0.005)


def _worker_pids() -> list[int]:
    """Processes of Ray workers running one of our tasks (Ray names them ray::<function>)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes().startswith(b"ray::enhance_remote"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def _many(photos: Path, dst: Path, n: int) -> Path:
    dst.mkdir()
    for i in range(n):
        for name in ("a8.png", "b16.png", "c.jpg"):
            shutil.copy(photos / name, dst / f"{i:02d}-{name}")
    return dst


def test_a_worker_killed_mid_batch_loses_nothing_and_writes_each_once(cluster, photos, reference, tmp_path):
    addr, env = cluster
    src = _many(photos, tmp_path / "in", 6)                  # 18 images
    out = tmp_path / "out"
    out.mkdir()
    watch = _Inodes(out)
    watch.start()
    driver = subprocess.Popen([str(EXE), "run", str(src), "-m", MODEL, "-o", str(out), "--ray", addr,
                               "--ray-io", "shared"], env=env, stderr=subprocess.PIPE, text=True)
    killed = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            done = [n for n in os.listdir(out) if not n.startswith(".")]
            pids = _worker_pids()
            if len(done) >= 2 and pids:
                os.kill(pids[0], signal.SIGKILL)            # a worker dies with a task in hand
                killed.append(pids[0])
            time.sleep(0.05)
        _out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
        watch.stop.set()
        watch.join()
    assert killed, "no worker was seen running a task"
    assert driver.returncode == 0, err
    assert _summary(err) == (18, 0, 0), err
    m = re.search(r"Ray: (\d+) worker process", err)
    assert m and int(m[1]) >= 3, err                         # the killed worker was replaced
    ref, _err = reference
    for name, data in _files(out).items():
        assert imageio.is_complete(out / name)
        assert data == ref[name.split("-", 1)[1]], name
    assert len(watch.seen) == 18
    twice = {n: len(s) for n, s in watch.seen.items() if len(s) > 1}
    assert not twice, f"written more than once: {twice}"
    assert not [n for n in os.listdir(out) if n.endswith(".part")]


def test_driver_killed_then_resume_finishes_the_rest(cluster, photos, reference, tmp_path):
    addr, env = cluster
    src = _many(photos, tmp_path / "in", 5)                  # 15 images
    out = tmp_path / "out"
    driver = subprocess.Popen([str(EXE), "run", str(src), "-m", MODEL, "-o", str(out), "--ray", addr],
                              env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and len([n for n in os.listdir(out) if not n.startswith(".")]) >= 3:
                break
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    before = [n for n in os.listdir(out) if not n.startswith(".")]
    assert 3 <= len(before) < 15, before
    r = _run(src, out, env, "--ray", addr, "--resume")
    assert r.returncode == 0, r.stderr
    written, skipped, failed = _summary(r.stderr)
    assert failed == 0 and written + skipped == 15 and skipped >= 3, r.stderr
    ref, _err = reference
    got = _files(out)
    assert len(got) == 15
    for name, data in got.items():
        assert data == ref[name.split("-", 1)[1]], name
    assert not [n for n in os.listdir(out) if n.endswith(".part")]


def test_a_large_image_is_split_into_bands_across_the_workers(cluster, tmp_path, coffee):
    """One image over the split size (lowered to 0.05 MP here) runs as bands on both workers,
    comes back whole and matches the local batch (the bands carry enough context: identical
    here, within 1/255 by design), 16-bit kept, a mask honoured."""
    addr, env = cluster
    src = tmp_path / "in"
    src.mkdir()
    imageio.write(src / "big16.png", imageio.Image(coffee.astype(np.uint16) * 257 + 3))     # 400x600
    mask = np.zeros((400, 600), np.uint8)
    mask[50:350, 100:500] = 255
    imageio.write(tmp_path / "mask.png", imageio.Image(mask))
    local = _run(src, tmp_path / "local", env, "--mask", str(tmp_path / "mask.png"), "--feather", "6",
                 model="jpeg-clean-1")          # a tile-invariant network: the kind split into bands
    assert local.returncode == 0, local.stderr
    r = _run(src, tmp_path / "ray", dict(env, ENHANCELAYER_RAY_BAND_MP="0.05"), "--ray", addr,
             "--mask", str(tmp_path / "mask.png"), "--feather", "6", model="jpeg-clean-1")
    assert r.returncode == 0, r.stderr
    m = re.search(r"1 large image\(s\) split into (\d+) bands", r.stderr)
    assert m and int(m[1]) >= 4, r.stderr
    w = re.search(r"Ray: (\d+) worker process", r.stderr)
    assert w and int(w[1]) >= 2, r.stderr                     # one image kept both workers busy
    a = imageio.read(tmp_path / "local" / "big16.png").pixels
    b = imageio.read(tmp_path / "ray" / "big16.png").pixels
    assert b.dtype == np.uint16 and a.shape == b.shape
    assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 257
