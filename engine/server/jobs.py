"""Jobs of the engine server: a queue and one worker thread per device, progress, cancel,
results kept until the client confirms a complete download (or their TTL), and a memory
budget for what is queued.

Why one worker per device: two models on one GPU (or two ORT sessions fighting for the same
two CPU cores) are slower together than one after the other, and each may run out of
memory; the tiler already uses the whole device.

Why a fair queue: a shared engine serves several clients (tokens). Jobs are taken round-robin
between clients (the one served longest ago first, first-come within one client), and one
client may hold at most ``per_client`` of the job slots and of the memory budget, so a client
with 60 big jobs queued cannot starve another's small one.

Why results outlive their download: a dropped connection (plug-in timeout, Wi-Fi) must not
destroy a finished job. A result is kept until the client confirms it has every byte
(``DELETE /v1/jobs/{id}``), a retry may resume with a Range request; a result that was sent
completely but never confirmed is dropped after ``SENT_GRACE`` s (or first, when memory is
needed), an unfetched one after the TTL.
"""
from __future__ import annotations

import builtins
import logging
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from engine.errors import (
    BadInput,
    Cancelled,
    EnhanceError,
    ModelNotInstalled,
    OutOfMemory,
    TooLarge,
    UnknownModel,
    WeightsTampered,
)
from engine.server.tokens import OWNER

log = logging.getLogger("enhancelayer.jobs")

STATES = ("queued", "running", "done", "failed", "cancelled")
SENT_GRACE = 60.0           # s a completely sent but unconfirmed result stays for a retry


def error_kind(e: BaseException) -> str:
    """A stable name the client maps to its own error classes."""
    for cls, kind in ((OutOfMemory, "out_of_memory"), (MemoryError, "out_of_memory"),
                      (Cancelled, "cancelled"), (UnknownModel, "unknown_model"),
                      (ModelNotInstalled, "model_not_installed"), (WeightsTampered, "weights_tampered"),
                      (TooLarge, "too_large"), (BadInput, "bad_input")):
        if isinstance(e, cls):
            return kind
    return "error" if isinstance(e, EnhanceError) else "internal"


def give_back_memory() -> None:
    """Hand freed heap pages back to the OS after a job (glibc keeps them in its arenas
    otherwise: the engine's RSS grew 130 -> 495 MB over a probe and stayed there). A no-op
    where there is no glibc."""
    global _trim
    if _trim is None:
        try:
            import ctypes
            import ctypes.util
            name = ctypes.util.find_library("c")
            fn = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
            _trim = fn if fn is not None else False
        except OSError:
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None


class Busy(Exception):
    """Too much queued: the HTTP layer answers 429."""


@dataclass
class Job:
    id: str
    model: str
    device: str
    reserved: int                          # bytes held against the memory budget
    payload: Any                           # what the runner needs (dropped once it ran)
    estimate_s: Optional[float] = None
    client: str = OWNER                    # who submitted it (the token's name)
    state: str = "queued"
    progress: float = 0.0
    message: str = "queued"
    tiles_done: int = 0
    tiles_total: int = 0
    created: float = field(default_factory=time.time)
    started: Optional[float] = None
    finished: Optional[float] = None
    error: Optional[dict] = None
    result: Optional[list] = None          # framed result parts (bytes) until fetched
    result_bytes: int = 0
    sent_at: Optional[float] = None        # when the result was last sent completely
    cancel: threading.Event = field(default_factory=threading.Event)

    ahead_s: Optional[float] = None        # estimated work queued before this job (set when listed)

    def eta(self) -> Optional[float]:
        if self.state == "queued":
            if self.estimate_s is None:
                return None
            return self.estimate_s + (self.ahead_s or 0.0)
        if self.state != "running" or self.started is None:
            return 0.0 if self.state == "done" else None
        el = time.time() - self.started
        if self.progress > 0.0:
            return max(0.0, el * (1.0 - self.progress) / self.progress)
        return None if self.estimate_s is None else max(0.0, self.estimate_s - el)

    def public(self) -> dict:
        eta = self.eta()
        return {
            "id": self.id, "state": self.state, "progress": round(self.progress, 4),
            "message": self.message, "eta": None if eta is None else round(eta, 1),
            "model": self.model, "tiles_done": self.tiles_done, "tiles_total": self.tiles_total,
            "created": self.created, "started": self.started, "finished": self.finished,
            "error": self.error, "result_ready": self.result is not None,
        }


Runner = Callable[[Job, Callable[[int, int, str], None]], list]


class JobManager:
    """Thread-safe job table. ``runner(job, progress)`` does the work in a worker thread and
    returns the framed result parts; it raises ``Cancelled`` when ``job.cancel`` is set."""

    def __init__(self, runner: Runner, *, max_bytes: int, max_jobs: int = 64, result_ttl: float = 600.0,
                 per_client: float = 0.75):
        self.runner = runner
        self.max_bytes = max_bytes
        self.max_jobs = max_jobs
        self.result_ttl = result_ttl
        self.per_client = per_client          # share of the slots and bytes one client may hold
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._queued: dict[str, list[Job]] = {}      # device -> queued jobs, oldest first
        self._served: dict[str, float] = {}          # client -> when a job of theirs last started
        self._threads: dict[str, threading.Thread] = {}
        self._reserved = 0
        self._pending: dict[str, int] = {}           # client -> bytes reserved, job not yet submitted
        self._closed = False

    # -------------------------------------------------------------- bookkeeping
    def reserved(self) -> int:
        with self._lock:
            return self._reserved

    def active(self) -> int:
        """Queued or running jobs (the idle timer waits for them)."""
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def load(self) -> dict[str, int]:
        """What /v1/health shows: jobs waiting, jobs running, and how many clients have work
        waiting (no names: health needs no token)."""
        with self._lock:
            live = [j for j in self._jobs.values() if j.state in ("queued", "running")]
            waiting = [j for j in live if j.state == "queued"]
            return {"queued": len(waiting), "running": len(live) - len(waiting),
                    "clients_waiting": len({j.client for j in waiting})}

    def _release(self, job: Job, keep: int = 0) -> None:
        with self._lock:
            self._reserved -= job.reserved - keep
            job.reserved = keep

    def sweep(self) -> None:
        """Drop results older than the TTL (and sent ones unconfirmed for SENT_GRACE s), and
        forget old finished jobs."""
        now = time.time()
        with self._lock:
            for j in list(self._jobs.values()):
                if j.finished is None:
                    continue
                if j.result is not None and j.sent_at is not None and now - j.sent_at >= SENT_GRACE:
                    log.info("job %s: result sent but not confirmed for %.0f s: dropped", j.id, SENT_GRACE)
                    self._drop_result(j)
                if now - j.finished < self.result_ttl:
                    continue
                if j.result is not None:
                    log.info("job %s: result expired unfetched after %.0f s", j.id, self.result_ttl)
                self._drop_result(j)
                del self._jobs[j.id]

    def _drop_result(self, job: Job) -> None:
        job.result = None
        if job.state == "done":
            job.message = "result fetched" if job.sent_at is not None else "result expired"
        self._release(job)

    def _evict_sent(self, need: int) -> None:
        """Free memory from results that were sent completely but not confirmed, oldest first
        (their client has the bytes, most likely), until ``need`` more bytes fit."""
        sent = sorted((j for j in self._jobs.values() if j.result is not None and j.sent_at is not None),
                      key=lambda j: j.sent_at or 0.0)
        for j in sent:
            if self._reserved + need <= self.max_bytes:
                return
            log.info("job %s: result sent but not confirmed: dropped for memory", j.id)
            self._drop_result(j)

    def get(self, job_id: str) -> Optional[Job]:
        self.sweep()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.state == "queued":
                ahead = 0.0
                for j in self._jobs.values():        # insertion order = queue order
                    if j is job:
                        break
                    if j.device == job.device and j.state in ("queued", "running"):
                        ahead += (j.eta() or 0.0) if j.state == "running" else (j.estimate_s or 0.0)
                job.ahead_s = ahead
            return job

    def list(self) -> list[dict]:
        self.sweep()
        with self._lock:
            return [j.public() for j in self._jobs.values()]

    # -------------------------------------------------------------- life cycle
    def reserve(self, nbytes: int, client: str = OWNER) -> None:
        """Claim memory for a job before its body is read; Busy when over the budget, or when
        this client already holds its share of the slots or bytes (others keep room)."""
        self.sweep()
        with self._lock:
            if self._closed:
                raise Busy("the engine is shutting down")
            if self.active() >= self.max_jobs:
                raise Busy(f"{self.max_jobs} jobs are already waiting — try again when some are done")
            mine = [j for j in self._jobs.values() if j.client == client]
            slots = max(1, int(self.max_jobs * self.per_client))
            if sum(1 for j in mine if j.state in ("queued", "running")) >= slots:
                raise Busy(f"you have {slots} jobs waiting, the most one client may queue — try again when "
                           "some are done")
            # a result sent but not confirmed does not count: it is dropped first when memory is short
            held = sum(j.reserved for j in mine if j.sent_at is None) + self._pending.get(client, 0)
            share = int(self.max_bytes * self.per_client)
            if held + nbytes > share and held > 0:
                raise Busy(f"your queued images and results hold {held / 2**20:.0f} MiB; this job needs "
                           f"{nbytes / 2**20:.0f} MiB more (one client may hold {share / 2**20:.0f} MiB) — "
                           "fetch your results or wait for your jobs")
            self._evict_sent(nbytes)
            if self._reserved + nbytes > self.max_bytes:
                raise Busy(f"the engine holds {self._reserved / 2**20:.0f} MiB of queued images and results; "
                           f"this job needs {nbytes / 2**20:.0f} MiB more (limit {self.max_bytes / 2**20:.0f} MiB)"
                           " — try again when the current jobs are done, or fetch their results")
            self._reserved += nbytes
            self._pending[client] = self._pending.get(client, 0) + nbytes

    def unreserve(self, nbytes: int, client: str = OWNER) -> None:
        """Give back a reservation whose job was never submitted (a bad or dropped upload)."""
        with self._lock:
            self._reserved -= nbytes
            self._settle(client, nbytes)

    def _settle(self, client: str, nbytes: int) -> None:
        left = self._pending.get(client, 0) - nbytes
        if left > 0:
            self._pending[client] = left
        else:
            self._pending.pop(client, None)

    def submit(self, *, model: str, device: str, reserved: int, payload: Any,
               estimate_s: Optional[float], client: str = OWNER) -> Job:
        job = Job(id=secrets.token_hex(8), model=model, device=device, reserved=reserved,
                  payload=payload, estimate_s=estimate_s, client=client)
        with self._lock:
            self._settle(client, reserved)
            self._jobs[job.id] = job
            if device not in self._threads:
                self._queued[device] = []
                t = threading.Thread(target=self._worker, args=(device,), daemon=True,
                                     name=f"enhancelayer-worker-{device}")
                self._threads[device] = t
                t.start()
            ahead = sum(1 for j in self._jobs.values() if j.device == device and j.state in ("queued", "running"))
            job.message = "queued" if ahead <= 1 else f"queued behind {ahead - 1} job(s)"
            self._queued[device].append(job)
            self._wake.notify_all()
        log.info("job %s: queued (%s, %.1f MiB, client %s)", job.id, model, reserved / 2**20, client)
        return job

    def _next(self, device: str) -> Optional[Job]:
        """The job to run next on ``device``: the oldest queued job of the client served
        longest ago (round-robin between clients); None when nothing is queued."""
        q = [j for j in self._queued.get(device, []) if j.state == "queued"]
        self._queued[device] = q
        if not q:
            return None
        first: dict[str, Job] = {}
        for j in q:
            first.setdefault(j.client, j)
        job = min(first.values(), key=lambda j: (self._served.get(j.client, 0.0), j.created))
        q.remove(job)
        return job

    def cancel(self, job_id: str) -> Optional[dict]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.cancel.set()
            if job.state == "queued":
                self._finish(job, "cancelled", "cancelled before it started")
            elif job.state == "running":
                job.message = "cancelling"
            else:                           # finished: forget it and its result
                job.result = None
                self._release(job)
                del self._jobs[job_id]
            log.info("job %s: cancel requested (%s)", job_id, job.state)
            return job.public()

    def take_result(self, job_id: str) -> Optional[builtins.list]:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.result

    def fetched(self, job_id: str) -> None:
        """Called after the result went out completely. Kept until the client confirms (or
        SENT_GRACE s): "sent" is not "received" (a peer that went away mid-download looks the
        same to the server)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.result is not None:
                job.sent_at = time.time()
                job.message = "result sent"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for j in self._jobs.values():
                j.cancel.set()
            self._wake.notify_all()

    def _finish(self, job: Job, state: str, message: str, error: Optional[dict] = None,
                result: Optional[builtins.list] = None) -> None:
        with self._lock:
            job.state, job.message, job.error = state, message, error
            job.finished = time.time()
            job.payload = None
            if result is not None:
                job.result = result
                job.result_bytes = sum(len(p) for p in result)
                self._release(job, keep=min(job.reserved, job.result_bytes))
                job.progress = 1.0
            else:
                self._release(job)

    def _worker(self, device: str) -> None:
        while True:
            with self._lock:
                job = self._next(device)
                while job is None:
                    if self._closed:
                        return
                    self._wake.wait(1.0)
                    job = self._next(device)
                if self._closed:
                    return
                job.state, job.started, job.message = "running", time.time(), "starting"
                self._served[job.client] = time.monotonic()

            def progress(done: int, total: int, msg: str = "", job: Job = job) -> None:
                total = max(int(total), 0)
                with self._lock:
                    job.tiles_done, job.tiles_total = int(done), total
                    if total > 0:
                        job.progress = min(max(done / total, 0.0), 0.999 if done < total else 1.0)
                    if job.state == "running" and not job.cancel.is_set():
                        job.message = msg or f"tile {done}/{total}"

            try:
                parts = self.runner(job, progress)
            except Cancelled:
                self._finish(job, "cancelled", "cancelled")
                log.info("job %s: cancelled after %d/%d tiles", job.id, job.tiles_done, job.tiles_total)
            except BaseException as e:
                kind = error_kind(e)
                if kind == "internal":
                    log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                    msg = f"internal error in the engine ({type(e).__name__}: {e})"
                elif kind == "out_of_memory":
                    msg = "out of memory even at the smallest tile — close other apps or choose a smaller selection"
                    log.warning("job %s: out of memory: %s", job.id, e)
                else:
                    msg = str(e)
                    log.warning("job %s failed (%s): %s", job.id, kind, e)
                if job.cancel.is_set() and kind != "out_of_memory":
                    self._finish(job, "cancelled", "cancelled")
                else:
                    self._finish(job, "failed", msg, error={"kind": kind, "message": msg})
                if not isinstance(e, Exception):
                    raise
            else:
                if job.cancel.is_set():
                    self._finish(job, "cancelled", "cancelled")
                else:
                    self._finish(job, "done", "done", result=parts)
                    end = job.finished or time.time()
                    log.info("job %s: done in %.2f s", job.id, end - (job.started or end))
            finally:
                give_back_memory()
