"""``enhancelayer run --ray``: the same batch on a Ray cluster, with the local batch's pipeline.

What stays the same as ``enhancelayer run`` (engine/batch.py): the inputs, outputs, option
checks, ``--resume``, the atomic ``.part`` + rename writes, the one-line reports of bad files
and the exit codes; each image goes through :func:`engine.batch.enhance_one`, so an output is
bit-identical to the local batch's.

How it maps onto Ray (an existing scheduler, not a home-made one):

- one Ray task per image; Ray places it on any worker with a free CPU (or GPU, with
  ``--device cuda``: ``num_gpus=1``); at most :data:`IN_FLIGHT_PER_CPU` tasks per cluster CPU
  are in flight, so 20,000 scans are never all queued (or, in store mode, all in memory);
- a worker process keeps the loaded model (:data:`_LOADED`): a model is loaded once per worker
  process, not once per image (tasks rather than actors: Ray re-runs a task whose worker died,
  on another worker, with no pool bookkeeping of ours);
- a worker uses the CPUs its task reserved (``ENHANCELAYER_THREADS``), so tasks sharing a
  machine do not fight over its cores;
- a lost worker: Ray runs its task again (``max_retries``); an output that the lost attempt had
  already renamed into place during this batch is not written a second time;
- pixels travel one of two ways (``--ray-io``): ``shared``, the workers read the inputs and write
  the outputs themselves at the same paths (a local cluster, or NFS/SMB mounted at the same
  path on every node); ``store``, the driver sends each input file's bytes through Ray's object
  store and writes the encoded output that comes back (no shared disk needed; the driver's
  network carries every byte twice). ``auto``: ``shared`` for a cluster started here
  (``--ray`` alone), ``store`` when joining one;
- a very large image (over :func:`band_mp` MP, 24 by default) is split into bands of rows, one
  task each, so one 100 MP scan keeps several workers busy: each band is enhanced with
  :func:`band_context` rows of context above and below (the model's margin and then some, so the
  tiles see what they would see in the whole image) and cut back; the driver puts the bands
  together and writes the image once. Within 1/255 of the whole-image result (the tiler's own
  tolerance), not bit-identical: the tiles fall elsewhere. Only where the result is local: a
  tile-invariant network, an integer scale, no review map and no face/text protection (those
  look at the whole image); other images run whole on one worker;
- ``--ray`` alone starts a Ray instance on this machine (all its cores as workers) and stops it
  at the end; ``--ray auto`` joins the cluster this machine is part of (``ray start``);
  ``--ray HOST:PORT`` or ``ray://HOST:PORT`` joins that one. Ray's usage statistics are
  switched off (nothing leaves the machine).
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from engine import imageio
from engine.batch import (
    BatchJob,
    BatchPlan,
    Item,
    Tally,
    announce_estimate,
    enhance_one,
    outcome,
    prepare_output_folders,
    progress_columns,
    side_path,
)
from engine.errors import BadInput, EnhanceError, ModelNotInstalled

IO_MODES = ("auto", "shared", "store")
BAND_MP = 24.0                  # images above this many megapixels are split into bands of rows
BAND_TARGET_MP = 8.0            # ... of about this size each
LOCAL = "local"                 # what a bare --ray means: start a Ray instance on this machine
IN_FLIGHT_PER_CPU = 2           # tasks in flight per cluster CPU: workers never wait, memory stays flat
MAX_RETRIES = 3                 # Ray re-runs a task whose worker died, this many times
RAY_MISSING = ("--ray needs Ray: install the cluster extra (.venv/bin/pip install -e '.[cluster]', "
               "or python3 install.py --with-ray)")
_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}")
# ENHANCELAYER_* settings a local cluster's workers take from the driver (where the models are)
_PASSED_ENV = ("ENHANCELAYER_HOME", "ENHANCELAYER_MODELS", "ENHANCELAYER_CACHE")


def looks_like_address(text: str) -> bool:
    """``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT`` (what may follow ``--ray``)."""
    return text in (LOCAL, "auto") or _ADDRESS.fullmatch(text) is not None


def check_args(address: str, io: str, device: str) -> None:
    """Refuse what cannot work before any file is touched (BadInput, exit 2)."""
    if not looks_like_address(address):
        raise BadInput(f"--ray {address}: give nothing (a cluster on this machine), auto, HOST:PORT "
                       "or ray://HOST:PORT")
    if io not in IO_MODES:
        raise BadInput(f"--ray-io {io}: choose one of {', '.join(IO_MODES)}")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise BadInput(RAY_MISSING) from None


def io_mode(address: str, io: str) -> str:
    """``shared`` or ``store`` (see the module docstring for ``auto``)."""
    if io != "auto":
        return io
    return "shared" if address == LOCAL else "store"


def band_mp() -> float:
    """The size above which an image is split (``ENHANCELAYER_RAY_BAND_MP`` overrides, e.g. for tests)."""
    try:
        return float(os.environ.get("ENHANCELAYER_RAY_BAND_MP", "") or BAND_MP)
    except ValueError:
        return BAND_MP


def band_context(info: Any) -> int:
    """Rows of context above and below a band: twice the model's margin plus room for the
    resampling kernels, the grain blur and a feathered mask."""
    return 2 * int(info.margin) + 32


def bands(info: Any, opts: Any, width: int, height: int) -> list[tuple[int, int]]:
    """Row ranges [y0, y1) to enhance apart, or [] when the image runs whole (see the module
    docstring for when splitting is safe)."""
    mp = width * height / 1e6
    limit = band_mp()
    values = opts.pipeline_values()
    target = values.get("scale") or float(info.scale)
    if mp <= limit or info.kind != "network" or not info.tile_invariant or values.get("review") \
            or values.get("protect") or not float(target).is_integer():
        return []
    rows = max(2 * band_context(info), int(min(BAND_TARGET_MP, limit / 2) * 1e6 / max(1, width)))
    if rows >= height:
        return []
    return [(y, min(height, y + rows)) for y in range(0, height, rows)]


def wants_gpu(device: str) -> bool:
    return device.split(":")[0] in ("cuda", "tensorrt", "gpu", "rocm", "dml", "vulkan")


# ----------------------------------------------------------------------------- on a worker

_LOADED: dict[tuple[str, str], Any] = {}     # (model, device) -> the loaded model, per worker process


def _loaded(job: BatchJob) -> tuple[Any, float]:
    """The worker's copy of the model (loaded on first use); the seconds this call spent loading."""
    key = (job.model, job.device)
    if key in _LOADED:
        return _LOADED[key], 0.0
    from engine import tasks

    t0 = time.perf_counter()
    task = tasks.get(job.model)
    task.prepare(job.device)
    _LOADED[key] = getattr(task, "load", lambda _d: None)(job.device)
    return _LOADED[key], time.perf_counter() - t0


def probe(job: BatchJob) -> dict:
    """Run on one worker before the batch: the model loads there (or the one line why not)."""
    try:
        _loaded_model, load_s = _loaded(job)
    except EnhanceError as e:
        return {"error": str(e), "kind": type(e).__name__}
    return {"error": "", "pid": os.getpid(), "node": os.uname().nodename, "load_s": load_s}


def enhance_remote(job: BatchJob, src: str, dst: str, started: float, data: Optional[bytes] = None) -> dict:
    """One image on a worker. ``data`` None: shared paths (read ``src``, write ``dst`` here);
    else the input file's bytes, and the encoded outputs go back to the driver. Never raises
    for a bad image: returns {"status": "ok" | "user" | "bug", ...}."""
    it = Item(Path(src), Path(dst))
    try:
        loaded, load_s = _loaded(job)
    except Exception as e:  # noqa: BLE001 - reported by the driver, in its words
        kind, line = outcome(e, it.src)
        return {"status": kind, "line": line, "pid": os.getpid()}
    base = {"pid": os.getpid(), "node": os.uname().nodename, "load_s": load_s}
    if data is None:
        if _written_by_this_batch(it.dst, started):
            return dict(base, status="ok", again=True)     # a retry after the rename: written once
        try:
            note = enhance_one(job, it, loaded)
        except Exception as e:  # noqa: BLE001 - one bad file is reported and skipped
            kind, line = outcome(e, it.src)
            return dict(base, status=kind, line=line)
        return dict(base, status="ok", note=note)
    with tempfile.TemporaryDirectory(prefix="enhancelayer-ray-") as tmp:
        here = Item(Path(tmp) / "in" / it.src.name, Path(tmp) / "out" / it.dst.name)
        here.src.parent.mkdir()
        here.src.write_bytes(data)
        side = BatchJob(job.model, job.device, job.opts, job.fmt,
                        Path(tmp) / "review" if job.review is not None else None,
                        Path(tmp) / "defects" if job.defects is not None else None, 2)
        try:
            note = enhance_one(side, here, loaded)
        except Exception as e:  # noqa: BLE001 - one bad file is reported and skipped
            kind, line = outcome(e, it.src)
            return dict(base, status=kind, line=line.replace(str(here.src), str(it.src)))
        files = {"output": here.dst.read_bytes()}
        for kind in ("review", "defects"):
            p = Path(tmp) / kind / f"{here.dst.stem}-{kind}.png"
            if p.exists():
                files[kind] = p.read_bytes()
        return dict(base, status="ok", files=files, note=note)


def enhance_band(job: BatchJob, src: str, y0: int, y1: int, context: int, data: Optional[bytes] = None) -> dict:
    """Rows [y0, y1) of one image's result on a worker: the band with ``context`` rows around it
    is enhanced and cut back. Returns the rows (and, for the first band, what the writer needs
    besides pixels: ICC profile, EXIF, extra tags)."""
    from engine.pipeline import enhance

    path = Path(src)
    try:
        loaded, load_s = _loaded(job)
        if data is not None:
            with tempfile.TemporaryDirectory(prefix="enhancelayer-ray-") as tmp:
                path = Path(tmp) / Path(src).name
                path.write_bytes(data)
                img = imageio.read(path, max_mp=job.opts.max_input_mp)
        else:
            img = imageio.read(path, max_mp=job.opts.max_input_mp)
        h = img.pixels.shape[0]
        c0, c1 = max(0, y0 - context), min(h, y1 + context)
        opts = job.opts
        if opts.mask is not None:
            opts = opts.replace(mask=np.ascontiguousarray(opts.mask[c0:c1]))
        if opts.hints is not None:
            opts = opts.replace(hints=np.ascontiguousarray(opts.hints[c0:c1]))
        res = enhance(np.ascontiguousarray(img.pixels[c0:c1]), opts, model=loaded)
        s = res.image.shape[0] // (c1 - c0)
        rows = np.ascontiguousarray(res.image[(y0 - c0) * s:(y1 - c0) * s])
    except Exception as e:  # noqa: BLE001 - reported by the driver, in its words
        kind, line = outcome(e, Path(src))
        return {"status": kind, "line": line, "pid": os.getpid()}
    out = {"status": "ok", "rows": rows, "pid": os.getpid(), "node": os.uname().nodename, "load_s": load_s}
    if y0 == 0:
        out["meta"] = (img.icc, img.exif, img.format, img.extra)
    return out


def _written_by_this_batch(dst: Path, started: float) -> bool:
    try:
        st = dst.stat()
    except OSError:
        return False
    return st.st_mtime >= started and imageio.is_complete(dst)


# ----------------------------------------------------------------------------- the driver

def _connect(address: str) -> Any:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")      # nothing leaves the machine
    env = {"ENHANCELAYER_THREADS": "1"}
    if address == LOCAL:
        env.update({k: os.environ[k] for k in _PASSED_ENV if k in os.environ})
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                              runtime_env={"env_vars": env})
    try:
        if address == LOCAL:
            ray.init(**kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BadInput(f"--ray {address}: cannot reach a Ray cluster there ({e})") from None
    return ray


def runner(address: str, io: str, device: str) -> Callable[[BatchPlan, Any, bool], Tally]:
    """engine.batch.run_batch's ``runner`` for ``--ray ADDRESS --ray-io IO``, after the checks
    that need no file (BadInput)."""
    check_args(address, io, device)
    return lambda plan, con, quiet: run_on_ray(plan, address, io, con, quiet)


def run_on_ray(plan: BatchPlan, address: str, io: str, con: Any, quiet: bool) -> Tally:
    """The batch's images as Ray tasks; the same tally and reports as the local batch."""
    from rich.console import Console
    from rich.progress import Progress

    mode = io_mode(address, io)
    ray = _connect(address)
    try:
        gpu = wants_gpu(plan.job.device)
        res: dict[str, Any] = dict(num_cpus=1, num_gpus=1 if gpu else 0)
        first = ray.get(ray.remote(probe).options(**res).remote(plan.job))
        if first["error"]:
            raise ModelNotInstalled(first["error"]) if first["kind"] == "ModelNotInstalled" \
                else BadInput(first["error"])
        prepare_output_folders(plan.items)
        cpus = int(ray.cluster_resources().get("GPU" if gpu else "CPU", 1)) or 1
        where = f"CPU figures; {cpus} {'GPU' if gpu else 'CPU'} worker slot(s) on Ray"
        announce_estimate(plan, con, where)
        task = ray.remote(enhance_remote).options(max_retries=MAX_RETRIES, **res)
        band_task = ray.remote(enhance_band).options(max_retries=MAX_RETRIES, **res)
        job_ref = ray.put(plan.job)
        started = time.time() - 1.0          # mtime granularity: a little before anything ran
        # one unit of work per image, or per band of a very large image
        todo: list[tuple[Item, Optional[tuple[int, int]]]] = []
        split: dict[Path, BandedImage] = {}
        for it in plan.todo:
            try:
                w, h = imageio.probe(it.src)
                parts = bands(plan.task.info, plan.job.opts, w, h)
            except EnhanceError:
                parts = []                   # unreadable: the worker reports it in its words
            if parts:
                split[it.src] = BandedImage(len(parts))
            todo += [(it, b) for b in parts] if parts else [(it, None)]
        context = band_context(plan.task.info)
        pending: dict[Any, tuple[Item, Optional[tuple[int, int]]]] = {}
        data_of: dict[Path, Any] = {}             # a banded image's bytes (their object ref), sent once
        tally = Tally()
        stats = RayStats()
        stats.add(first)
        with Progress(*progress_columns(), console=con, transient=False) as prog:
            report = Console(stderr=True, soft_wrap=True).print if quiet else prog.console.print
            t_img = prog.add_task(f"images on Ray ({cpus} slots, {mode})", total=len(plan.todo))
            while todo or pending:
                while todo and len(pending) < IN_FLIGHT_PER_CPU * cpus:
                    it, band = todo.pop(0)
                    data = None
                    if mode == "store":
                        try:
                            data = data_of[it.src] if it.src in data_of else it.src.read_bytes()
                            if band is not None and it.src not in data_of:
                                data = ray.put(data)     # the bands share one copy in the object store
                        except OSError as e:
                            tally.failed_user += 1
                            report(f"[red]failed:[/] {it.src}: cannot read it ({e.strerror})", highlight=False)
                            prog.advance(t_img)
                            todo = [(i, b) for i, b in todo if i is not it]
                            continue
                        if band is not None:
                            data_of[it.src] = data      # read and put once for all its bands
                    if band is None:
                        pending[task.remote(job_ref, str(it.src), str(it.dst), started, data)] = (it, None)
                    else:
                        pending[band_task.remote(job_ref, str(it.src), band[0], band[1], context, data)] = (it, band)
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                it, band = pending.pop(ready[0])
                if band is None:
                    _settle(ray, ready[0], it, plan.job, mode, tally, stats, report)
                    prog.advance(t_img)
                    continue
                whole = split[it.src]
                if whole.add(ray, ready[0], band, stats):
                    data_of.pop(it.src, None)
                    whole.finish(it, plan.job, tally, report)
                    prog.advance(t_img)
        stats.log(con)
        if split:
            con.print(f"Ray: {len(split)} large image(s) split into "
                      f"{sum(b.count for b in split.values())} bands")
        # a worker killed while writing left its temporary file; Ray ran that image again
        # elsewhere, and every task of this batch has settled, so the leftovers go now
        imageio.remove_stale_temps(it.dst for it in plan.items)
        return tally
    finally:
        ray.shutdown()


class BandedImage:
    """The bands of one large image as they come back; written once, by the driver, when the
    last one is in (or reported once when a band failed)."""

    def __init__(self, count: int):
        self.count = count
        self.rows: dict[int, np.ndarray] = {}
        self.meta: Any = None
        self.failed: Optional[dict] = None
        self.seen = 0

    def add(self, ray: Any, ref: Any, band: tuple[int, int], stats: RayStats) -> bool:
        """Take one band's answer; True when every band is in."""
        self.seen += 1
        try:
            r = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - Ray gave up on it (its workers kept dying)
            r = {"status": "user", "line": f"the Ray workers running a band were lost {MAX_RETRIES + 1} times "
                                           f"({type(e).__name__}); run again with --resume"}
        stats.add(r)
        if r["status"] != "ok":
            self.failed = self.failed or r
        else:
            self.rows[band[0]] = r["rows"]
            self.meta = r.get("meta", self.meta)
        return self.seen == self.count

    def finish(self, it: Item, job: BatchJob, tally: Tally, report: Any) -> None:
        if self.failed is not None:
            if self.failed["status"] == "user":
                tally.failed_user += 1
            else:
                tally.failed_bug += 1
            line = self.failed["line"]
            report(line if line.startswith("[red]") else f"[red]failed:[/] {it.src}: {line}", highlight=False)
            return
        pixels = np.concatenate([self.rows[y] for y in sorted(self.rows)], axis=0)
        icc, exif, _fmt, extra = self.meta
        out_fmt = imageio.format_for(it.dst, job.fmt)
        try:
            imageio.write(it.dst, imageio.Image(pixels, icc, exif, out_fmt, extra), out_fmt)
        except EnhanceError as e:
            tally.failed_user += 1
            report(f"[red]failed:[/] {it.src}: {e}", highlight=False)
            return
        tally.done += 1
        self.rows.clear()


class RayStats:
    """What the workers reported: model loads (count, seconds) and worker processes used."""

    def __init__(self) -> None:
        self.loads = 0
        self.load_s = 0.0
        self.workers: set[tuple[str, int]] = set()
        self.again = 0

    def add(self, r: dict) -> None:
        if r.get("load_s"):
            self.loads += 1
            self.load_s += float(r["load_s"])
        if "pid" in r:
            self.workers.add((str(r.get("node", "")), int(r["pid"])))
        self.again += bool(r.get("again"))

    def log(self, con: Any) -> None:
        con.print(f"Ray: {len(self.workers)} worker process(es), {self.loads} model load(s) "
                  f"({self.load_s:.1f} s)" + (f", {self.again} retried image(s) already written" if self.again else ""))


def _settle(ray: Any, ref: Any, it: Item, job: BatchJob, mode: str, tally: Tally, stats: RayStats,
            report: Any) -> None:
    """One finished task: count it, write what came back (store mode), report a failure."""
    try:
        r = ray.get(ref)
    except Exception as e:  # noqa: BLE001 - Ray gave up on it (its workers kept dying)
        tally.failed_user += 1
        report(f"[red]failed:[/] {it.src}: the Ray workers running it were lost {MAX_RETRIES + 1} times "
               f"({type(e).__name__}); run again with --resume", highlight=False)
        return
    stats.add(r)
    if r["status"] != "ok":
        if r["status"] == "user":
            tally.failed_user += 1
        else:
            tally.failed_bug += 1
        report(r["line"], highlight=False)
        return
    if mode == "store":
        files = r["files"]
        try:
            imageio.write_bytes(it.dst, files["output"])
            for kind, where in (("review", job.review), ("defects", job.defects)):
                if where is not None and kind in files:
                    imageio.write_bytes(side_path(where, it.dst, kind, job.count), files[kind])
        except EnhanceError as e:
            tally.failed_user += 1
            report(f"[red]failed:[/] {it.src}: {e}", highlight=False)
            return
    tally.done += 1
    if r.get("note"):
        report(f"{it.src.name}: {r['note']}", highlight=False)
