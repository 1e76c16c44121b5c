"""The local engine server: FastAPI on uvicorn, one engine per user shared by Krita and GIMP.

Security model (docs/security.md): loopback + random port by default; a per-user token
(0600) on every request except ``GET /v1/health``, compared in constant time; requests with
a foreign ``Origin`` or ``Host`` are refused before routing (CSRF and DNS-rebinding
defence); no CORS headers at all; body sizes checked from ``Content-Length`` and the frame
header before the pixels are read; a memory budget for queued work; optional TLS.

API (docs/api.md): ``GET /v1/health``, ``GET /v1/models``, ``POST /v1/jobs`` (frame body, see
``engine/server/wire.py``), ``GET /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result``,
``DELETE /v1/jobs/{id}``. The work itself is ``engine.pipeline.enhance`` (``worker.py``, imported
lazily, so the server starts fast and its security tests need no models).
"""
from __future__ import annotations

import asyncio
import logging
import logging.handlers
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from engine import __version__
from engine.errors import EnhanceError
from engine.server import wire
from engine.server.jobs import Busy, JobManager
from engine.server.security import Guard, Settings, json_error
from engine.server.tokens import OWNER
from engine.server.worker import check_job, estimate_seconds, run_job, scale_of

log = logging.getLogger("enhancelayer.server")

API_VERSION = 1
BODY_CHUNK_TIMEOUT = 30.0                      # a stalled upload is dropped, never waits forever


# ---------------------------------------------------------------------- responses / schema models
class Health(BaseModel):
    ok: bool
    version: str
    api: int
    max_pixels: int
    queued: int = Field(0, description="jobs waiting (all clients)")
    running: int = Field(0, description="jobs being computed")
    clients_waiting: int = Field(0, description="clients with a job waiting")


class ErrorBody(BaseModel):
    detail: str
    error: str = Field(description="stable kind: unauthorized, forbidden_host, bad_frame, too_large, "
                                   "unknown_model, model_not_installed, busy, unknown_job, not_ready, ...")


class JobError(BaseModel):
    kind: str = Field(description="out_of_memory, model_not_installed, bad_input, internal, ...")
    message: str


class JobStatus(BaseModel):
    id: str
    state: str = Field(description="queued | running | done | failed | cancelled")
    progress: float = Field(description="0..1")
    message: str
    eta: Optional[float] = Field(None, description="seconds left (rough), null when unknown")
    model: str
    tiles_done: int
    tiles_total: int
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    error: Optional[JobError] = None
    result_ready: bool


class JobList(BaseModel):
    jobs: list[JobStatus]


class ModelList(BaseModel):
    models: list[dict[str, Any]] = Field(description="every task: id, task, kind, title, scale, margin, "
                                         "installed, options (the names it takes), licence, ...")
    options: list[dict[str, Any]] = Field(description="the option table: name, type, default, minimum, "
                                          "maximum, choices, nullable, unit, label, help, advanced, tasks")
    purposes: list[dict[str, Any]] = Field(default_factory=list, description="what a retoucher wants to do, "
                                           "in dialog order: id, title, description, advanced")
    engine: dict[str, Any] = Field(default_factory=dict, description="facts about this engine: gpu (the GPU "
                                   "runtime of the default device, '' on a CPU)")


class FrameResponse(Response):
    """Sends a frame (or the byte range ``start``..end of it) as several body messages (no join
    of a 64 MiB result) and calls ``on_sent`` only after the last byte of the WHOLE frame went
    out (a range that ends at the end counts); the job manager keeps the result anyway until
    the client confirms it (a server cannot tell "sent" from "received")."""

    media_type = "application/octet-stream"

    def __init__(self, parts: list, on_sent=None, start: int = 0):
        super().__init__(content=b"", media_type=self.media_type)
        total = sum(len(p) for p in parts)
        self.parts = _slice_parts(parts, start)
        self.on_sent = on_sent
        self.headers["accept-ranges"] = "bytes"
        self.headers["content-length"] = str(total - start)
        if start:
            self.status_code = 206
            self.headers["content-range"] = f"bytes {start}-{total - 1}/{total}"

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for i, p in enumerate(self.parts):
            await send({"type": "http.response.body", "body": bytes(p) if not isinstance(p, bytes) else p,
                        "more_body": i < len(self.parts) - 1})
        if not self.parts:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.on_sent is not None:
            self.on_sent()


def _slice_parts(parts: list, start: int) -> list:
    """The parts from byte ``start`` on (memoryviews: no copy of the pixels)."""
    out, pos = [], 0
    for p in parts:
        n = len(p)
        if pos + n > start:
            out.append(p if start <= pos else memoryview(p)[start - pos:])
        pos += n
    return out


def range_start(value: Optional[str], total: int) -> Optional[int]:
    """The first byte of a ``Range: bytes=N-`` (or ``bytes=N-M`` with M at the end) request;
    0 without one; None for a range this server does not serve (416). One open-ended range is
    all a resumed download needs."""
    if value is None:
        return 0
    unit, _, spec = value.strip().partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or not dash or "," in spec or not first.strip().isdigit():
        return None
    start = int(first)
    if start >= total or (last.strip() and (not last.strip().isdigit() or int(last) < total - 1)):
        return None
    return start


_ERR: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (401, 403)}
_bearer = HTTPBearer(auto_error=False, description="the token from <config>/token or ENHANCELAYER_TOKEN")
_AUTH = [Security(_bearer)]             # documents the scheme; Guard does the checking


# ---------------------------------------------------------------------- body reading
class _Body:
    def __init__(self, request: Request):
        self.it = request.stream().__aiter__()
        self.buf = b""
        self.done = False

    async def _next(self) -> bytes:
        if self.done:
            return b""
        try:
            chunk = await asyncio.wait_for(self.it.__anext__(), BODY_CHUNK_TIMEOUT)
        except StopAsyncIteration:
            self.done = True
            return b""
        except asyncio.TimeoutError:
            raise wire.FrameError(408, f"upload stalled for {BODY_CHUNK_TIMEOUT:.0f} s") from None
        except Exception:  # noqa: BLE001 - the client went away (ClientDisconnect): end of body
            self.done = True
            return b""
        return chunk

    async def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            c = await self._next()
            if not c:
                raise wire.FrameError(400, "body shorter than its frame header says")
            self.buf += c
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def into(self, target: bytearray) -> None:
        mv = memoryview(target)
        pos = len(self.buf)
        if pos > len(target):
            raise wire.FrameError(400, "body longer than its frame header says")
        mv[:pos] = self.buf
        self.buf = b""
        while pos < len(target):
            c = await self._next()
            if not c:
                raise wire.FrameError(400, "body shorter than its frame header says")
            if pos + len(c) > len(target):
                raise wire.FrameError(400, "body longer than its frame header says")
            mv[pos:pos + len(c)] = c
            pos += len(c)


# ---------------------------------------------------------------------- app
def create_app(settings: Settings, manager: Optional[JobManager] = None) -> Guard:
    """The ASGI app (Guard around FastAPI). Tests may run it in-process with their own settings."""
    jobs = manager or JobManager(run_job, max_bytes=settings.max_queued_bytes, result_ttl=settings.result_ttl)
    app = FastAPI(
        title="EnhanceLayer engine", version=__version__,
        description="Local AI photo enhancement for the Krita and GIMP plug-ins. Every request except "
                    "GET /v1/health needs `Authorization: Bearer <token>`. Job bodies and results are "
                    "binary frames: 4-byte big-endian header length, UTF-8 JSON header, raw pixels "
                    "(see docs/api.md).",
    )
    app.state.jobs = jobs
    app.state.settings = settings

    @app.exception_handler(Exception)
    async def _bug(req: Request, e: Exception):
        # a bug, not the client's fault: the traceback goes to engine.log (not only stderr)
        log.error("internal error on %s %s", req.method, req.url.path, exc_info=e)
        return json_error(500, "internal", f"internal error in the engine ({type(e).__name__}) — see its log")

    @app.exception_handler(EnhanceError)
    async def _enhance_error(_req: Request, e: EnhanceError):
        status = e.http_status if 400 <= e.http_status < 500 else 400
        kind = {404: "unknown_model", 409: "model_not_installed", 413: "too_large"}.get(status, "bad_request")
        return json_error(status, kind, str(e))

    @app.get("/v1/health", response_model=Health, tags=["engine"])
    async def health() -> Health:
        """Liveness, version and load (queue lengths); the only call without a token."""
        return Health(ok=True, version=__version__, api=API_VERSION, max_pixels=settings.max_pixels, **jobs.load())

    @app.get("/v1/models", response_model=ModelList, dependencies=_AUTH, responses=_ERR, tags=["engine"])
    async def models() -> ModelList:
        """Every task (ids, kinds, scales, margins, licences, ``installed``, the options each takes,
        its purpose, plain label and description, this machine's ms per megapixel), the option
        table and the purposes, so plug-ins build their dialogs from what the engine says."""
        from engine.tasks import published
        body = await run_in_threadpool(published)
        return ModelList(**body)

    @app.post(
        "/v1/jobs", status_code=202, response_model=JobStatus, dependencies=_AUTH, tags=["jobs"],
        responses={**_ERR, **{s: {"model": ErrorBody} for s in (400, 404, 408, 409, 411, 413, 422, 429)}},
        openapi_extra={"requestBody": {"required": True, "description": (
            "A frame: 4-byte big-endian length N, N bytes of UTF-8 JSON header (schema JobHeader), then "
            "width*height*channels samples (row-major, interleaved, little-endian), then width*height "
            "u8 mask bytes when header.mask is true."),
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def submit(request: Request):
        """Queue a job. The header is validated, and the size checked against Content-Length and the
        limits, before any pixel is read."""
        try:
            return await _submit(request)
        except wire.FrameError as e:
            kind = {400: "bad_frame", 408: "timeout", 413: "too_large", 422: "bad_header"}.get(e.status, "bad_frame")
            return json_error(e.status, kind, str(e))
        except Busy as e:
            return json_error(429, "busy", str(e), {"Retry-After": "5"})

    async def _submit(request: Request):
        cl = request.headers.get("content-length")
        if cl is None:
            return json_error(411, "length_required", "Content-Length is required")
        if not cl.isdigit():
            raise wire.FrameError(400, "bad Content-Length")
        length = int(cl)
        if length > settings.max_body:
            raise wire.FrameError(413, f"body of {length} bytes is over the engine's limit "
                                       f"({settings.max_pixels} pixels per image)")
        body = _Body(request)
        n = wire.header_length(await body.exact(4))
        if 4 + n > length:
            raise wire.FrameError(400, "the frame header is longer than the body")
        hdr = wire.parse_header(await body.exact(n))
        npx = hdr.width * hdr.height
        if npx > settings.max_pixels:
            raise wire.FrameError(413, f"image of {hdr.width}x{hdr.height} is over the engine's limit of "
                                       f"{settings.max_pixels / 1e6:.0f} megapixels")
        s = hdr.option_values()["scale"] or scale_of(hdr.model) or 4.0
        out_w, out_h = max(1, round(hdr.width * s)), max(1, round(hdr.height * s))
        if out_w * out_h > settings.max_out_pixels:
            raise wire.FrameError(413, f"the result would be {out_w}x{out_h}, over the engine's limit of "
                                       f"{settings.max_out_pixels / 1e6:.0f} megapixels")
        check_job(hdr)                           # 404 unknown, 409 not installed, 422 cannot run
        expected = 4 + n + hdr.input_bytes()
        if length != expected:
            raise wire.FrameError(400, f"body is {length} bytes but a {hdr.width}x{hdr.height}x{hdr.channels} "
                                       f"{hdr.dtype} frame{' with mask' if hdr.mask else ''}"
                                       f"{' with hints' if hdr.hints else ''} is {expected}")
        out_bytes = out_w * out_h * hdr.channels * wire.DTYPE_SIZE[hdr.dtype]
        reserve = hdr.pixel_bytes() * (2 if hdr.channels == 2 else 1) + hdr.mask_bytes() + hdr.hints_bytes() \
            + out_bytes
        client = str(request.scope.get("enhancelayer.client") or OWNER)
        jobs.reserve(reserve, client)
        try:
            data = bytearray(hdr.input_bytes())
            await body.into(data)

            def convert():
                mv = memoryview(data)
                img = wire.to_array(hdr, mv[:hdr.pixel_bytes()])
                mask: Optional[np.ndarray] = None
                if hdr.mask:
                    m8 = np.frombuffer(data, np.uint8, offset=hdr.pixel_bytes()).reshape(hdr.height, hdr.width)
                    mask = m8.astype(np.float32) / 255.0
                hints: Optional[np.ndarray] = None
                if hdr.hints:
                    hints = np.frombuffer(data, np.uint8, offset=hdr.pixel_bytes() + hdr.mask_bytes()).reshape(
                        hdr.height, hdr.width, 4)
                return img, mask, hints

            img, mask, hints = await run_in_threadpool(convert)
        except BaseException:
            jobs.unreserve(reserve, client)
            raise
        limits = (settings.max_pixels, settings.max_out_pixels)
        job = jobs.submit(model=hdr.model, device="auto", reserved=reserve, payload=(hdr, img, mask, hints, limits),
                          estimate_s=estimate_seconds(hdr.model, hdr.width, hdr.height), client=client)
        return JSONResponse(job.public(), status_code=202)

    @app.get("/v1/jobs", response_model=JobList, dependencies=_AUTH, responses=_ERR, tags=["jobs"])
    async def list_jobs() -> JSONResponse:
        """All jobs the engine holds (every client's)."""
        return JSONResponse({"jobs": jobs.list()})

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=_AUTH, tags=["jobs"],
             responses={**_ERR, 404: {"model": ErrorBody}})
    async def job_status(job_id: str):
        """State, progress 0-1, message, eta; ``error`` when failed."""
        job = jobs.get(job_id)
        if job is None:
            return json_error(404, "unknown_job", "unknown job (results are dropped once confirmed, or expire)")
        return JSONResponse(job.public())

    @app.get("/v1/jobs/{job_id}/result", dependencies=_AUTH, tags=["jobs"],
             responses={**_ERR, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 410: {"model": ErrorBody},
                        416: {"model": ErrorBody},
                        200: {"description": "A frame: JSON header (width, height, channels, dtype, "
                                             "channel_order, review, defects) + pixels (+ u8 review map) "
                                             "(+ u8 defect mask).",
                              "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}}})
    async def job_result(job_id: str, request: Request):
        """The result frame, or the rest of it from ``Range: bytes=N-`` (206) to resume a dropped
        download. Kept until ``DELETE /v1/jobs/{id}`` confirms it arrived whole (or the TTL)."""
        job = jobs.get(job_id)
        if job is None:
            return json_error(404, "unknown_job", "unknown job (results are dropped once confirmed, or expire)")
        if job.state != "done":
            why = (job.error or {}).get("message") if job.state == "failed" else None
            kind = {"cancelled": "cancelled", "failed": "failed"}.get(job.state, "not_ready")
            return json_error(409, kind, f"job is {job.state}" + (f": {why}" if why else ""))
        parts = jobs.take_result(job_id)
        if parts is None:
            return json_error(410, "gone", "the result was dropped (sent, then not confirmed in time)")
        total = sum(len(p) for p in parts)
        start = range_start(request.headers.get("range"), total)
        if start is None:
            return json_error(416, "bad_range", f"only one range bytes=N- with N below {total} is served",
                              {"Content-Range": f"bytes */{total}"})
        return FrameResponse(parts, on_sent=lambda: jobs.fetched(job_id), start=start)

    @app.delete("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=_AUTH, tags=["jobs"],
                responses={**_ERR, 404: {"model": ErrorBody}})
    async def cancel(job_id: str):
        """Cancel (a running job stops within one tile), or forget a finished job and its result:
        the client's confirmation that the result arrived whole."""
        st = jobs.cancel(job_id)
        if st is None:
            return json_error(404, "unknown_job", "unknown job")
        return JSONResponse(st)

    def openapi() -> dict:
        """The generated schema plus the frame header's JSON schema (JobHeader), so the binary
        body is documented too."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            sch = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            sch.setdefault("components", {}).setdefault("schemas", {})["JobHeader"] = \
                wire.JobHeader.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = sch
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return Guard(app, settings)          # tests and serve() reach the jobs via .fastapi.state


