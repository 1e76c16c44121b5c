"""The soak harness (issue 17): simulated hosts hammer a real engine on loopback while it is
killed with SIGKILL at random points, and every job is checked.

What runs: ``hosts`` threads, each a plug-in as Krita/GIMP use it (``EngineClient.local`` with a
launcher, ``with_restart``), submitting a seeded mix of REAL jobs (our denoise / sharpen ONNX
models, waifu2x photo-x2 and jpeg-clean, restore-dust, restore-color, identity; 8/16-bit and
float, gray / gray+alpha / RGB / RGBA, with and without a selection mask), cancels, dropped
result downloads (read a few bytes, hang up, fetch again) and malformed frames. A killer
thread sends SIGKILL to the engine at random moments; the next host call finds it gone and
starts it again (the plug-ins' own restart path).

Pass (``Report.failures`` empty): every job either completes with output byte-identical to
the same job run alone on a fresh engine, or ends in the right typed error (Cancelled for a
cancel, EngineStopped/EngineUnreachable for a kill, after which the host runs it again, so
every job is done in the end); malformed frames get 4xx; no 5xx at all; after the run (one
last kill-free phase) the engine's RSS is within a margin of its RSS after warm-up, it holds
no result that was downloaded, and no file descriptors or temporary files leaked.

``python tests/soak/soak.py --minutes 15 --write`` runs the long soak and writes
bench/results/soak.md and soak_rss.png.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.server.conftest import load_client  # noqa: E402

elc = load_client()

RSS_MARGIN = 1.30             # RSS at the end <= 1.30 x RSS after warm-up (+ FD_SLACK_MB)
RSS_SLACK_MB = 40.0
FD_SLACK = 6


@dataclass(frozen=True)
class Spec:
    """One kind of job: the model, the image it gets and its options."""

    model: str
    width: int
    height: int
    channels: int
    dtype: str
    mask: bool = False
    options: tuple[tuple[str, Any], ...] = ()
    order: str = "RGBA"

    def pixels(self) -> bytes:
        """Real photo pixels (scikit-image's public-domain astronaut), cropped, in this spec's layout."""
        from skimage import data
        y0, x0 = min(100, 512 - self.height), min(150, 512 - self.width)
        rgb = data.astronaut()[y0:y0 + self.height, x0:x0 + self.width].astype(np.float32) / 255.0
        gray = rgb @ np.float32([0.299, 0.587, 0.114])
        alpha = np.linspace(0.3, 1.0, self.width, dtype=np.float32)[None, :].repeat(self.height, 0)
        planes = {1: [gray], 2: [gray, alpha], 3: [rgb[..., 0], rgb[..., 1], rgb[..., 2]],
                  4: [rgb[..., 0], rgb[..., 1], rgb[..., 2], alpha]}[self.channels]
        a = np.stack(planes, axis=-1)
        if self.order == "BGRA" and self.channels >= 3:
            a = a[..., [2, 1, 0, 3][:self.channels]]
        if self.dtype == "u8":
            return np.rint(a * 255).astype("<u1").tobytes()
        if self.dtype == "u16":
            return np.rint(a * 65535).astype("<u2").tobytes()
        return a.astype("<f4").tobytes()

    def mask_bytes(self) -> Optional[bytes]:
        if not self.mask:
            return None
        yy, xx = np.mgrid[:self.height, :self.width]
        m = ((xx - self.width / 2) ** 2 + (yy - self.height / 2) ** 2) < (min(self.width, self.height) / 2.5) ** 2
        return (m * 255).astype(np.uint8).tobytes()

    def run(self, client: Any, progress: Any = None) -> Any:
        return client.enhance(self.pixels(), self.width, self.height, self.channels, self.dtype,
                              channel_order=self.order, model=self.model, mask=self.mask_bytes(),
                              progress=progress, poll=0.03, **dict(self.options))


SPECS = (
    Spec("denoise", 96, 80, 3, "u8"),
    Spec("denoise", 64, 64, 4, "u16", mask=True, options=(("strength", 80),)),
    Spec("sharpen", 72, 64, 3, "f32"),
    Spec("photo-x2", 48, 40, 3, "u8", order="BGRA"),
    Spec("jpeg-clean-1", 80, 64, 1, "u8"),
    Spec("restore-dust", 96, 96, 3, "u8"),
    Spec("restore-color", 128, 96, 4, "u16", options=(("strength", 70),)),
    Spec("identity", 120, 90, 2, "u8"),
    Spec("denoise", 64, 48, 2, "u16", mask=True),
    Spec("denoise", 384, 320, 3, "u8"),               # long enough for kills to land mid-job
    Spec("photo-x2", 160, 128, 4, "u8", mask=True),
)


def digest(res: Any) -> str:
    h = hashlib.sha256(res.pixels)
    h.update(f"{res.width}x{res.height}x{res.channels}{res.dtype}".encode())
    for extra in (res.review, res.defects):
        if extra is not None:
            h.update(extra)
    return h.hexdigest()


@dataclass
class Report:
    seconds: float = 0.0
    requests: int = 0
    jobs_done: int = 0
    jobs_recovered: int = 0            # cut by a kill, run again by with_restart (the plug-ins' path)
    jobs_interrupted: int = 0          # cut by a kill twice (or during a cancel/download): run again
    cancels: int = 0
    dropped_downloads: int = 0
    malformed: int = 0
    busy_retries: int = 0
    kills: int = 0
    restarts: int = 0
    status_5xx: int = 0
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0
    fds_warm: int = 0
    fds_end: int = 0
    rss_series: list[tuple[float, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.seconds:.0f} s: {self.requests} requests, {self.jobs_done} jobs done "
                f"({self.jobs_recovered} cut by a kill and recovered by with_restart, {self.jobs_interrupted} "
                f"more run again), {self.cancels} cancels, "
                f"{self.dropped_downloads} dropped downloads, {self.malformed} malformed frames, "
                f"{self.kills} engine kills ({self.restarts} restarts), {self.busy_retries} busy retries, "
                f"{self.status_5xx} 5xx, RSS {self.rss_warm_mb:.0f} -> {self.rss_end_mb:.0f} MB, "
                f"fds {self.fds_warm} -> {self.fds_end}, {len(self.failures)} failures")


def _proc_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _proc_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


MALFORMED = (
    b"",                                                     # no body
    b"\x00\x00",                                             # short prefix
    b"\x00\x00\x00\x05{\"a\"",                               # header cut
    b"\x7f\xff\xff\xff" + b"{}",                             # absurd header length
    struct.pack(">I", 2) + b"[]",                            # not an object
    struct.pack(">I", 12) + b'{"model": 1}',                 # wrong types
    struct.pack(">I", 9) + b"\xff\xfe{}{}{}{}",              # not UTF-8
)


class Soak:
    """One soak run against an engine the hosts start themselves (see the module docstring)."""

    def __init__(self, home: Path, *, hosts: int = 3, seconds: float = 60.0, kill_every: tuple = (8.0, 30.0),
                 calm_seconds: float = 20.0, seed: int = 17, specs: tuple = SPECS):
        self.home = home
        self.cfg = home / "config"
        self.hosts = hosts
        self.seconds = seconds
        self.kill_every = kill_every
        self.calm_seconds = calm_seconds
        self.seed = seed
        self.specs = specs
        self.expected: dict[Spec, str] = {}
        self.report = Report()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.calm = threading.Event()        # set: the killer rests (final phase)
        self.launcher = [sys.executable, "-m", "engine.cli", "serve", "--port", "0"]
        self.pids: set = set()

    # ------------------------------------------------------------------ engine
    def client(self) -> Any:
        c = elc.EngineClient.local(start=True, launcher=self.launcher, config_dir=str(self.cfg), timeout=90)
        with self.lock:
            self.pids.add(c.pid)              # every engine process the hosts met
        return c

    def restart(self) -> Any:
        """with_restart's restart: the engine was found gone during a job."""
        self.note(jobs_recovered=1)
        return self.client()

    def engine_pid(self) -> Optional[int]:
        try:
            pid = json.loads((self.cfg / "engine.json").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None
        return pid if _proc_rss_mb(pid) > 0 else None

    def kill_engine(self) -> bool:
        pid = self.engine_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        for _ in range(200):                 # reaped by init (its own session): wait for it
            if _proc_rss_mb(pid) == 0:
                break
            time.sleep(0.01)
        return True

    def note(self, **inc: int) -> None:
        with self.lock:
            for k, v in inc.items():
                setattr(self.report, k, getattr(self.report, k) + v)

    def fail(self, msg: str) -> None:
        with self.lock:
            if len(self.report.failures) < 50:
                self.report.failures.append(msg)

    # ------------------------------------------------------------------ the work
    def reference(self) -> None:
        """Every spec once, alone, on a fresh engine: the outputs every soak job must match."""
        c = self.client()
        for sp in self.specs:
            self.expected[sp] = digest(sp.run(c))
            self.note(requests=3)

    def one_job(self, rng: random.Random, box: dict) -> None:
        """A plug-in's run: with_restart around enhance (a killed engine is started again and the
        job run once more); a second loss is reported and the job is tried again."""
        sp = self.specs[rng.randrange(len(self.specs))]
        action = rng.random()
        why: list[str] = []
        for _attempt in range(6):
            try:
                if action < 0.12:
                    self._cancel(box, sp, rng)
                elif action < 0.24:
                    self._dropped_download(box, sp)
                else:
                    res, box["c"] = elc.with_restart(box["c"], sp.run, self.restart)
                    self._check(sp, res)
                return
            except elc.Busy:
                self.note(busy_retries=1)
                time.sleep(0.2)
            except (elc.EngineStopped, elc.EngineUnreachable, elc.JobNotFound) as e:
                # a kill cut this job (JobNotFound: the new engine never heard of it): again
                why.append(f"{type(e).__name__}: {e}")
                self.note(jobs_interrupted=1)
                box["c"] = self.client()
            except elc.EngineError as e:
                if e.status is not None and e.status >= 500:
                    self.note(status_5xx=1)
                self.fail(f"{sp}: {type(e).__name__}: {e}")
                return
        self.fail(f"{sp} (action {action:.2f}): never completed in 6 attempts: {why}")

    def _check(self, sp: Spec, res: Any) -> None:
        self.note(jobs_done=1, requests=3)
        if digest(res) != self.expected[sp]:
            self.fail(f"{sp}: output differs from the same job run alone")

    def _cancel(self, box: dict, sp: Spec, rng: random.Random) -> None:
        c = box["c"]
        job = c.submit(sp.pixels(), sp.width, sp.height, sp.channels, sp.dtype, channel_order=sp.order,
                       model=sp.model, mask=sp.mask_bytes(), **dict(sp.options))
        time.sleep(rng.random() * 0.1)
        c.cancel(job)
        self.note(requests=2, cancels=1)
        try:
            res = c.wait(job, poll=0.03)
        except (elc.Cancelled, elc.JobNotFound):
            return        # JobNotFound: it had finished, and the cancel forgot it (as asked)
        self._check(sp, res)                  # it had finished before the cancel arrived

    def _dropped_download(self, box: dict, sp: Spec) -> None:
        c = box["c"]
        job = c.submit(sp.pixels(), sp.width, sp.height, sp.channels, sp.dtype, channel_order=sp.order,
                       model=sp.model, mask=sp.mask_bytes(), **dict(sp.options))
        while True:
            st = c.status(job)
            self.note(requests=1)
            if st["state"] == "done":
                break
            if st["state"] in ("failed", "cancelled"):
                self.fail(f"{sp}: {st}")
                return
            time.sleep(0.03)
        try:
            s = socket.create_connection((c.host, c.port), timeout=10)
            try:
                s.sendall(f"GET /v1/jobs/{job}/result HTTP/1.1\r\nHost: {c.host}:{c.port}\r\n"
                          f"Authorization: Bearer {c.token}\r\n\r\n".encode())
                s.recv(64)
            finally:
                s.close()                     # hang up midway
        except OSError as e:
            # this harness's own raw socket met a kill (reset / refused): an interruption like
            # any other, so the job is tried again (the client library is not involved here)
            raise elc.EngineUnreachable(f"the engine went away during the dropped download: {e}") from None
        self.note(requests=1, dropped_downloads=1)
        self._check(sp, c.result(job))

    def malformed(self, box: dict, rng: random.Random) -> None:
        c = box["c"]
        body = MALFORMED[rng.randrange(len(MALFORMED))]
        conn = http.client.HTTPConnection(c.host, c.port, timeout=10)
        try:
            conn.request("POST", "/v1/jobs", body=body, headers={"Authorization": f"Bearer {c.token}",
                                                                 "Content-Type": "application/octet-stream"})
            st = conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return                            # the engine was killed meanwhile
        finally:
            conn.close()
        self.note(requests=1, malformed=1)
        if st >= 500:
            self.note(status_5xx=1)
        if not 400 <= st < 500:
            self.fail(f"malformed frame {body[:20]!r} answered {st}")

    def host(self, i: int) -> None:
        rng = random.Random(self.seed * 100 + i)
        box = {"c": self.client()}
        while not self.stop.is_set():
            try:
                if rng.random() < 0.1:
                    self.malformed(box, rng)
                else:
                    self.one_job(rng, box)
            except Exception as e:  # noqa: BLE001 - a soak reports, it does not stop at the first
                self.fail(f"host {i}: {type(e).__name__}: {e}")
                box["c"] = self.client()

    def killer(self) -> None:
        rng = random.Random(self.seed)
        while not self.stop.is_set() and not self.calm.is_set():
            if self.stop.wait(rng.uniform(*self.kill_every)) or self.calm.is_set():
                return
            if self.kill_engine():
                self.note(kills=1)

    def sampler(self, t0: float) -> None:
        while not self.stop.wait(1.0):
            pid = self.engine_pid()
            if pid is not None:
                with self.lock:
                    self.report.rss_series.append((round(time.monotonic() - t0, 1), round(_proc_rss_mb(pid), 1)))

    # ------------------------------------------------------------------ the run
    def run(self) -> Report:
        t0 = time.monotonic()
        self.reference()
        threading.Thread(target=self.sampler, args=(t0,), daemon=True).start()
        threads = [threading.Thread(target=self.host, args=(i,), daemon=True) for i in range(self.hosts)]
        threads.append(threading.Thread(target=self.killer, daemon=True))
        for t in threads:
            t.start()
        time.sleep(max(0.0, self.seconds - self.calm_seconds))
        self.calm.set()                        # last phase: no kills; measure memory over it
        pid = self._pid_after_warmup()
        time.sleep(self.calm_seconds)
        self.stop.set()
        for t in threads:
            t.join(120)
        self.report.seconds = time.monotonic() - t0
        self._final_checks(pid)
        self.report.restarts = len(self.pids) - 1
        return self.report

    def _pid_after_warmup(self) -> Optional[int]:
        """Make sure an engine runs, warm it with every spec, then record its RSS and fds."""
        c = self.client()
        for sp in self.specs:
            res, c = elc.with_restart(c, sp.run, self.client)
            self._check(sp, res)
        pid = self.engine_pid()
        if pid is not None:
            time.sleep(0.5)
            self.report.rss_warm_mb = _proc_rss_mb(pid)
            self.report.fds_warm = _proc_fds(pid)
        return pid

    def _final_checks(self, pid: Optional[int]) -> None:
        r = self.report
        if pid is None or self.engine_pid() != pid:
            self.fail("the engine changed during the kill-free phase")
            return
        time.sleep(1.0)
        r.rss_end_mb = _proc_rss_mb(pid)
        r.fds_end = _proc_fds(pid)
        if r.rss_end_mb > r.rss_warm_mb * RSS_MARGIN + RSS_SLACK_MB:
            self.fail(f"RSS grew from {r.rss_warm_mb:.0f} MB after warm-up to {r.rss_end_mb:.0f} MB")
        if r.fds_end > r.fds_warm + FD_SLACK:
            self.fail(f"file descriptors grew from {r.fds_warm} to {r.fds_end}")
        held = [j for j in self.client().jobs() if j.get("result_ready")]
        if held:
            self.fail(f"{len(held)} downloaded results still held by the engine")
        stray = [p for p in self.home.rglob("*") if p.name.endswith((".tmp", ".part"))]
        if stray:
            self.fail(f"temporary files left: {stray[:5]}")
        if r.status_5xx:
            self.fail(f"{r.status_5xx} answers were 5xx")

    def shutdown(self) -> None:
        pid = self.engine_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if _proc_rss_mb(pid) == 0:
                    return
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)


def write_results(rep: Report, out_dir: Path, minutes: float, hosts: int, seed: int) -> None:
    """bench/results/soak.md + soak_rss.png (RSS of the engine over time; kills show as drops)."""
    from PIL import Image, ImageDraw

    out_dir.mkdir(parents=True, exist_ok=True)
    w, h, pad = 900, 320, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    pts = rep.rss_series or [(0.0, 0.0)]
    tmax = max(p[0] for p in pts) or 1.0
    rmax = max(max(p[1] for p in pts), 1.0) * 1.1
    d.line([(pad, h - pad), (w - 10, h - pad)], fill="black")
    d.line([(pad, 10), (pad, h - pad)], fill="black")
    xy = [(pad + (w - pad - 10) * t / tmax, h - pad - (h - pad - 10) * r / rmax) for t, r in pts]
    if len(xy) > 1:
        d.line(xy, fill=(30, 90, 200), width=2)
    for frac in (0.0, 0.5, 1.0):
        d.text((2, h - pad - (h - pad - 10) * frac - 6), f"{rmax * frac:.0f}", fill="black")
        d.text((pad + (w - pad - 10) * frac - 10, h - pad + 6), f"{tmax * frac:.0f} s", fill="black")
    d.text((pad + 10, 12), "engine RSS (MB) over the soak; each drop to a low value is a kill -9 + restart",
           fill="black")
    img.save(out_dir / "soak_rss.png")
    text = f"""# Soak test (issue 17)

`python tests/soak/soak.py --minutes {minutes:g} --write` — {hosts} simulated hosts (threads
using the plug-ins' client and its restart path) against a real `enhancelayer serve` on loopback,
seed {seed}, on this project's 2-core CI machine. The engine is killed with SIGKILL at random
moments (uniform 8-30 s apart) and started again by the next host call; the last 60 s have no
kills, to measure memory. Jobs: {len(SPECS)} kinds, real models (denoise, sharpen, photo-x2,
jpeg-clean-1, restore-dust, restore-color, identity), u8/u16/f32, 1-4 channels, masks; 12 %
cancels, 12 % dropped downloads (read a few bytes, hang up, fetch again), 10 % malformed frames.

Every completed job's output is compared byte for byte with the same job run alone on a fresh
engine. A job cut by a kill is run again by its host, so every job completes in the end.

| measure | value |
|---|---|
| duration | {rep.seconds:.0f} s |
| requests sent | {rep.requests} |
| jobs completed (all byte-identical to the job run alone) | {rep.jobs_done} |
| jobs cut by a kill and run again at once by `with_restart` (the plug-ins' path) | {rep.jobs_recovered} |
| jobs cut again (or during a cancel / download test), run again by the host | {rep.jobs_interrupted} |
| cancels | {rep.cancels} |
| dropped downloads (then fetched whole) | {rep.dropped_downloads} |
| malformed frames (all answered 4xx) | {rep.malformed} |
| engine kills survived / restarts | {rep.kills} / {rep.restarts} |
| 429 busy answers (retried) | {rep.busy_retries} |
| 5xx answers | {rep.status_5xx} |
| lost results | {sum('lost' in f or 'never completed' in f for f in rep.failures)} |
| RSS after warm-up → after the kill-free phase | {rep.rss_warm_mb:.0f} MB → {rep.rss_end_mb:.0f} MB |
| file descriptors after warm-up → end | {rep.fds_warm} → {rep.fds_end} |
| failures | {len(rep.failures)} |

![engine RSS over the soak](soak_rss.png)
"""
    if rep.failures:
        text += "\nFailures:\n\n" + "\n".join(f"- {f}" for f in rep.failures) + "\n"
    (out_dir / "soak.md").write_text(text)


def main() -> int:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--write", action="store_true", help="write bench/results/soak.md + soak_rss.png")
    a = ap.parse_args()
    from engine import paths

    os.environ.setdefault("ENHANCELAYER_MODELS", str(paths.models_dir()))     # the imported models
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["ENHANCELAYER_HOME"] = str(home)
        os.environ.pop("ENHANCELAYER_TOKEN", None)
        soak = Soak(home, hosts=a.hosts, seconds=a.minutes * 60, calm_seconds=60.0, seed=a.seed)
        try:
            rep = soak.run()
        finally:
            soak.shutdown()
    print(rep.summary())
    for f in rep.failures:
        print("FAIL", f)
    if a.write:
        write_results(rep, REPO / "bench" / "results", a.minutes, a.hosts, a.seed)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
