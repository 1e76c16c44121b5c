"""The local engine server: FastAPI on uvicorn, one engine per user shared by Krita and GIMP.

Security model (docs/security.md): loopback + random port by default; a per-user token
(0600) on every request except ``GET /v1/health``, compared in constant time; requests with
a foreign ``Origin`` or ``Host`` are refused before routing (CSRF and DNS-rebinding
defence); no CORS headers at all; body sizes checked from ``Content-Length`` and the frame
header before the pixels are read; a memory budget for queued work; optional TLS.

API (docs/api.md): ``GET /v1/health``, ``GET /v1/models``, ``POST /v1/jobs`` (frame body, see
``engine/wire.py``), ``GET /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result``,
``DELETE /v1/jobs/{id}``. The work itself is ``engine.pipeline.enhance`` (imported lazily, so
the server starts fast and its security tests need no models).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import hmac
import json
import logging
import logging.handlers
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from engine import __version__, wire
from engine.errors import EnhanceError, ModelNotInstalled, UnknownModel
from engine.jobs import Busy, Job, JobManager

log = logging.getLogger("enhancelayer.server")

API_VERSION = 1
IDENTITY = "identity"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024          # input: 8192 x 8192
OUTPUT_FACTOR = 4                              # output pixels may be 4x the input limit
BODY_CHUNK_TIMEOUT = 30.0                      # a stalled upload is dropped, never waits forever


@dataclass
class Settings:
    token: str
    host: str = "127.0.0.1"
    port: int = 0
    allow_hosts: tuple[str, ...] = ()
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_queued_bytes: int = 4 * 1024 ** 3
    result_ttl: float = 600.0
    log_path: Optional[str] = None
    last_activity: float = field(default_factory=time.monotonic)
    in_flight: int = 0

    @property
    def max_out_pixels(self) -> int:
        return self.max_pixels * OUTPUT_FACTOR

    @property
    def max_body(self) -> int:
        return 4 + wire.MAX_HEADER + self.max_pixels * 4 * 4 + self.max_pixels

    def wildcard(self) -> bool:
        return self.host in ("", "0.0.0.0", "::")


# ---------------------------------------------------------------------- host/origin/auth guard
def _split_host(value: str) -> tuple[Optional[str], Optional[int]]:
    """'[::1]:8080' -> ('::1', 8080); 'localhost' -> ('localhost', None); junk -> (None, None)."""
    v = value.strip()
    if not v or any(c.isspace() for c in v) or "/" in v or "@" in v:
        return None, None
    try:
        u = urllib.parse.urlsplit("//" + v)
        port = u.port
        host = u.hostname
    except ValueError:
        return None, None
    return (host.lower() if host else None), port


def _host_ok(s: Settings, value: Optional[str]) -> bool:
    if value is None:
        return False
    host, port = _split_host(value)
    if host is None:
        return False
    names = set(LOOPBACK_NAMES) | {h.lower() for h in s.allow_hosts}
    if not s.wildcard():
        names.add(s.host.lower())
    elif not s.allow_hosts:
        return True                     # 0.0.0.0 without --allow-host: LAN names unknown; token guards
    if host not in names:
        return False
    return port is None or port == s.port or s.wildcard()


def _origin_ok(s: Settings, value: str) -> bool:
    """Only the engine's own origin (its Swagger page) may send an Origin header."""
    try:
        u = urllib.parse.urlsplit(value.strip())
        host, port = (u.hostname or "").lower(), u.port
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or host not in (LOOPBACK_NAMES | ({s.host.lower()} - {""})):
        return False
    return port == s.port


def _json_error(status: int, kind: str, detail: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": kind}, status_code=status, headers=headers)


class Guard:
    """Pure ASGI middleware: Host/Origin (403) and token (401) before any routing or body read."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.s = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return                      # no websockets here
        self.s.last_activity = time.monotonic()
        raw: dict[str, list[str]] = {}
        for k, v in scope.get("headers") or []:
            raw.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
        resp = self._check(scope, raw)
        if resp is not None:
            return await resp(scope, receive, send)
        self.s.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.s.in_flight -= 1
            self.s.last_activity = time.monotonic()

    def _check(self, scope, h: dict[str, list[str]]) -> Optional[JSONResponse]:
        hosts = h.get("host", [])
        if len(hosts) != 1 or not _host_ok(self.s, hosts[0]):
            return _json_error(403, "forbidden_host", "Host header not allowed: use the engine's URL "
                               "(127.0.0.1) or start it with --allow-host NAME")
        origins = h.get("origin", [])
        if len(origins) > 1 or (origins and not _origin_ok(self.s, origins[0])):
            return _json_error(403, "forbidden_origin", "requests from web pages are refused "
                               "(foreign Origin header)")
        path = scope.get("path", "")
        if path == "/v1/health" and scope.get("method") in ("GET", "HEAD"):
            return None
        auths = h.get("authorization", [])
        given = b""
        if len(auths) == 1:
            scheme, _, cred = auths[0].strip().partition(" ")
            if scheme.lower() == "bearer":
                given = cred.strip().encode("latin-1")      # the header's own bytes, lossless
        if not given or not hmac.compare_digest(given, self.s.token.encode("utf-8")):
            return _json_error(401, "unauthorized", "missing or wrong token (Authorization: Bearer <token>)",
                               {"WWW-Authenticate": 'Bearer realm="enhancelayer"'})
        return None


# ---------------------------------------------------------------------- responses / schema models
class Health(BaseModel):
    ok: bool
    version: str
    api: int
    max_pixels: int


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
    models: list[dict[str, Any]]


class FrameResponse(Response):
    """Sends a frame as several body messages (no join of a 64 MiB result) and calls
    ``on_sent`` only after the last byte went out, so a failed download keeps the result."""

    media_type = "application/octet-stream"

    def __init__(self, parts: list, on_sent=None):
        super().__init__(content=b"", media_type=self.media_type)
        self.parts = parts
        self.on_sent = on_sent
        self.headers["content-length"] = str(sum(len(p) for p in parts))

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for i, p in enumerate(self.parts):
            await send({"type": "http.response.body", "body": bytes(p) if not isinstance(p, bytes) else p,
                        "more_body": i < len(self.parts) - 1})
        if not self.parts:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.on_sent is not None:
            self.on_sent()


_ERR = {s: {"model": ErrorBody} for s in (401, 403)}
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
        except Exception:               # client went away (ClientDisconnect)
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


# ---------------------------------------------------------------------- the work
def _model_scale(model: str) -> Optional[float]:
    if model == IDENTITY:
        return 1.0
    if model.startswith("user:"):
        return None
    from engine import catalog
    return float(catalog.get(model).scale)


def check_model(model: str) -> None:
    """404 for an unknown id, 409 for a catalog model whose weights are not imported."""
    if model == IDENTITY:
        return
    from engine import catalog, registry
    if model.startswith(registry.USER_PREFIX):
        registry.user_model_path(model)
        return
    spec = catalog.get(model)
    if not registry.is_installed(spec):
        if spec.family == "own":
            raise ModelNotInstalled(f"model '{model}' is not trained yet (see models/README.md)")
        raise ModelNotInstalled(f"model '{model}' is not installed: run 'enhancelayer import --only {model}'")


def _estimate(model: str, w: int, h: int) -> Optional[float]:
    if model == IDENTITY or model.startswith("user:"):
        return None
    from engine import catalog
    return round(catalog.estimate_seconds(catalog.get(model), w, h), 1)


def run_job(job: Job, progress) -> list:
    """Worker side: pixels -> pipeline -> framed result parts. Same pipeline as the CLI."""
    hdr: wire.JobHeader
    hdr, img, mask, limits = job.payload
    two = hdr.channels == 2
    if two:
        img = wire.gray_alpha_to_rgba(img)
    review = defects = None
    if hdr.model == IDENTITY:
        if hdr.scale not in (None, 1.0):
            from engine.errors import BadInput
            raise BadInput("the identity model only works at scale 1")
        progress(1, 1, "identity")
        out = img
        if hdr.review:
            review = np.zeros(out.shape[:2], np.uint8)      # honest: nothing changed
    else:
        from engine.pipeline import EnhanceOptions, enhance
        kw: dict[str, Any] = dict(model=hdr.model, strength=hdr.strength / 100.0, keep_color=hdr.keep_color,
                                  scale=hdr.scale, feather=hdr.feather, protect=tuple(hdr.protect),
                                  review=hdr.review, max_input_mp=limits[0] / 1e6, max_output_mp=limits[1] / 1e6)
        if hdr.grain is not None:
            kw["grain"] = hdr.grain / 100.0
        if hdr.tile is not None:
            kw["tile"] = hdr.tile
        if mask is not None:
            kw["mask"] = mask
        res = enhance(img, EnhanceOptions(**kw), progress=progress, cancel=job.cancel)
        out = res.image
        if hdr.review and getattr(res, "review", None) is not None:
            r = np.asarray(res.review, dtype=np.float32)
            review = np.rint(np.clip(r, 0.0, 1.0) * 255.0).astype(np.uint8)
        if getattr(res, "defects", None) is not None:
            defects = _defects_u8(res.defects, out.shape[1], out.shape[0])
    if two:
        out = wire.rgba_to_gray_alpha(out)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.dtype != wire.NP_DTYPE[hdr.dtype].newbyteorder("="):
        out = out.astype(wire.NP_DTYPE[hdr.dtype])
    head = wire.result_header(out, hdr, review, {"seconds": round(time.time() - (job.started or time.time()), 3)},
                              defects=defects)
    parts = [wire.pack(head), wire.from_array(out, hdr.channel_order)]
    if review is not None:
        parts.append(np.ascontiguousarray(review).tobytes())
    if defects is not None:
        parts.append(np.ascontiguousarray(defects).tobytes())
    return parts


def _defects_u8(defects: np.ndarray, width: int, height: int) -> np.ndarray:
    """restore-dust's repaired-spot mask (float 0..1, input size) as u8 at the output size:
    the hosts use it as the new layer's mask, so it must cover the layer pixel for pixel."""
    d = np.clip(np.asarray(defects, dtype=np.float32), 0.0, 1.0)
    if d.ndim == 3:
        d = d[:, :, 0]
    if d.shape != (height, width):
        import cv2
        d = cv2.resize(d, (width, height), interpolation=cv2.INTER_LINEAR if width >= d.shape[1] else cv2.INTER_AREA)
    return np.rint(np.clip(d, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------- app
def create_app(settings: Settings, manager: Optional[JobManager] = None) -> FastAPI:
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

    @app.exception_handler(EnhanceError)
    async def _enhance_error(_req: Request, e: EnhanceError):
        status = e.http_status if 400 <= e.http_status < 500 else 400
        kind = {404: "unknown_model", 409: "model_not_installed", 413: "too_large"}.get(status, "bad_request")
        return _json_error(status, kind, str(e))

    @app.get("/v1/health", response_model=Health, tags=["engine"])
    async def health() -> Health:
        """Liveness and version; the only call without a token."""
        return Health(ok=True, version=__version__, api=API_VERSION, max_pixels=settings.max_pixels)

    @app.get("/v1/models", response_model=ModelList, dependencies=_AUTH, responses=_ERR, tags=["engine"])
    async def models() -> ModelList:
        """The catalog (ids, tasks, scales, licences) with ``installed`` per model."""
        from engine.registry import list_models
        rows = await run_in_threadpool(list_models)
        for r in rows:
            if r.get("id") == IDENTITY:
                r["installed"] = True
        return ModelList(models=rows)

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
            return _json_error(e.status, kind, str(e))
        except Busy as e:
            return _json_error(429, "busy", str(e), {"Retry-After": "5"})

    async def _submit(request: Request):
        cl = request.headers.get("content-length")
        if cl is None:
            return _json_error(411, "length_required", "Content-Length is required")
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
        check_model(hdr.model)                   # UnknownModel 404 / ModelNotInstalled 409
        s = hdr.scale or _model_scale(hdr.model) or 4.0
        out_w, out_h = max(1, round(hdr.width * s)), max(1, round(hdr.height * s))
        if out_w * out_h > settings.max_out_pixels:
            raise wire.FrameError(413, f"the result would be {out_w}x{out_h}, over the engine's limit of "
                                       f"{settings.max_out_pixels / 1e6:.0f} megapixels")
        expected = 4 + n + hdr.pixel_bytes() + hdr.mask_bytes()
        if length != expected:
            raise wire.FrameError(400, f"body is {length} bytes but a {hdr.width}x{hdr.height}x{hdr.channels} "
                                       f"{hdr.dtype} frame{' with mask' if hdr.mask else ''} is {expected}")
        out_bytes = out_w * out_h * hdr.channels * wire.DTYPE_SIZE[hdr.dtype]
        reserve = hdr.pixel_bytes() * (2 if hdr.channels == 2 else 1) + hdr.mask_bytes() + out_bytes
        jobs.reserve(reserve)
        try:
            data = bytearray(hdr.pixel_bytes() + hdr.mask_bytes())
            await body.into(data)

            def convert():
                mv = memoryview(data)
                img = wire.to_array(hdr, mv[:hdr.pixel_bytes()])
                mask = None
                if hdr.mask:
                    mask = np.frombuffer(data, np.uint8, offset=hdr.pixel_bytes()).reshape(hdr.height, hdr.width)
                    mask = mask.astype(np.float32) / 255.0
                return img, mask

            img, mask = await run_in_threadpool(convert)
        except BaseException:
            jobs.unreserve(reserve)
            raise
        job = jobs.submit(model=hdr.model, device="auto", reserved=reserve, payload=(hdr, img, mask, (settings.max_pixels, settings.max_out_pixels)),
                          estimate_s=_estimate(hdr.model, hdr.width, hdr.height))
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
            return _json_error(404, "unknown_job", "unknown job (results are dropped after fetch or expiry)")
        return JSONResponse(job.public())

    @app.get("/v1/jobs/{job_id}/result", dependencies=_AUTH, tags=["jobs"],
             responses={**_ERR, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 410: {"model": ErrorBody},
                        200: {"description": "A frame: JSON header (width, height, channels, dtype, "
                                             "channel_order, review, defects) + pixels (+ u8 review map) "
                                             "(+ u8 defect mask).",
                              "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}}})
    async def job_result(job_id: str):
        """The result frame; dropped from the engine once it has been sent completely."""
        job = jobs.get(job_id)
        if job is None:
            return _json_error(404, "unknown_job", "unknown job (results are dropped after fetch or expiry)")
        if job.state != "done":
            why = (job.error or {}).get("message") if job.state == "failed" else None
            return _json_error(409, "not_ready", f"job is {job.state}" + (f": {why}" if why else ""))
        parts = jobs.take_result(job_id)
        if parts is None:
            return _json_error(410, "gone", "the result was already fetched")
        return FrameResponse(parts, on_sent=lambda: jobs.fetched(job_id))

    @app.delete("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=_AUTH, tags=["jobs"],
                responses={**_ERR, 404: {"model": ErrorBody}})
    async def cancel(job_id: str):
        """Cancel (a running job stops within one tile) or forget a finished job and its result."""
        st = jobs.cancel(job_id)
        if st is None:
            return _json_error(404, "unknown_job", "unknown job")
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

    app.openapi = openapi
    guarded = Guard(app, settings)
    guarded.fastapi = app                # tests and serve() reach the jobs via .fastapi.state
    return guarded


# ---------------------------------------------------------------------- files: token, discovery, lock
def _private_dir(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        try:
            if d.stat().st_mode & 0o077:
                os.chmod(d, 0o700)
        except OSError:
            pass


def _write_private(path: Path, text: str) -> None:
    """Atomic write of a 0600 file (created 0600, never world-readable for an instant)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_token(cfg: Path) -> str:
    """ENHANCELAYER_TOKEN, else ``<cfg>/token`` (created once, 0600, reused)."""
    env = os.environ.get("ENHANCELAYER_TOKEN")
    if env and env.strip():
        return env.strip()
    p = cfg / "token"
    try:
        tok = p.read_text(encoding="utf-8").strip()
        if tok:
            if os.name == "posix" and p.stat().st_mode & 0o077:
                log.warning("token file %s was readable by others: fixed to 0600", p)
                os.chmod(p, 0o600)
            return tok
    except FileNotFoundError:
        pass
    tok = secrets.token_urlsafe(32)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:                 # another engine won the race: use its token
        return p.read_text(encoding="utf-8").strip() or load_token(cfg)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(tok)
    return tok


class _Lock:
    """One engine per user and config folder: Krita and GIMP may start one at the same time."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self) -> bool:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.name == "posix":
                import fcntl
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                import msvcrt
                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(self.fd)
            self.fd = None
            return False
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _setup_logging(log_path: Path) -> None:
    root = logging.getLogger("enhancelayer")
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:                                    # job ids and errors: not for other local users
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        if os.name == "posix":
            os.chmod(log_path, 0o600)
    except OSError:
        pass
    fh = logging.handlers.RotatingFileHandler(log_path, maxBytes=2_000_000, backupCount=2, encoding="utf-8")
    fh.setFormatter(fmt)
    root.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    root.addHandler(sh)


def serve(host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 0.0, tls_cert: Optional[str] = None,
          tls_key: Optional[str] = None, max_pixels: int = DEFAULT_MAX_PIXELS, max_queued_mb: int = 4096,
          allow_hosts: tuple[str, ...] = (), result_ttl: float = 600.0) -> int:
    """Run the engine until stopped (Ctrl+C, SIGTERM) or idle for ``idle_timeout`` s (0 = never).
    Returns the process exit code."""
    import uvicorn

    from engine import paths

    cfg = paths.config_dir()
    _private_dir(cfg)
    log_path = cfg / "engine.log"
    _setup_logging(log_path)
    if bool(tls_cert) != bool(tls_key):
        raise EnhanceError("give both --tls-cert and --tls-key (or neither)")
    for f in (tls_cert, tls_key):
        if f and not Path(f).is_file():
            raise EnhanceError(f"TLS file not found: {f}")
    if host not in LOOPBACK_NAMES and not tls_cert:
        log.warning("listening on %s without TLS: the token and pixels cross the network in clear text", host)

    disc = cfg / "engine.json"
    lock = _Lock(cfg / "engine.lock")
    if not lock.acquire():
        info = {}
        try:
            info = json.loads(disc.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        print(f"an EnhanceLayer engine is already running for this user at {info.get('url', '?')} "
              f"(pid {info.get('pid', '?')}); not starting another", file=sys.stderr)
        return 0

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise EnhanceError(f"cannot listen on {host}:{port}: {e.strerror or e} — choose another --port") from None
        sock.listen(128)
        bound_port = sock.getsockname()[1]

        settings = Settings(token=load_token(cfg), host=host, port=bound_port, allow_hosts=tuple(allow_hosts),
                            max_pixels=max_pixels, max_queued_bytes=max_queued_mb * 1024 * 1024,
                            result_ttl=result_ttl, log_path=str(log_path))
        app = create_app(settings)
        jobs: JobManager = app.fastapi.state.jobs

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none",
                                http="h11", proxy_headers=False, server_header=False,
                                ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_keep_alive=5)
        server = uvicorn.Server(config)

        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else
                                                                 (f"[{host}]" if ":" in host else host))
        url = f"{'https' if tls_cert else 'http'}://{url_host}:{bound_port}"
        info = {"url": url, "pid": os.getpid(), "version": __version__, "api": API_VERSION,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "host": host, "port": bound_port, "tls": bool(tls_cert), "log": str(log_path)}
        if tls_cert:
            info["cert"] = str(Path(tls_cert).resolve())
        _write_private(disc, json.dumps(info, indent=2))
        log.info("engine %s listening on %s (pid %d, idle timeout %s)", __version__, url, os.getpid(),
                 f"{idle_timeout:.0f} s" if idle_timeout else "off")
        print(f"EnhanceLayer engine listening on {url}", file=sys.stderr, flush=True)

        stop = threading.Event()

        def watchdog() -> None:
            while not stop.wait(0.5):
                jobs.sweep()
                if not idle_timeout:
                    continue
                idle = time.monotonic() - settings.last_activity
                if idle >= idle_timeout and settings.in_flight == 0 and jobs.active() == 0:
                    log.info("idle for %.0f s: exiting", idle)
                    server.should_exit = True
                    return

        threading.Thread(target=watchdog, daemon=True, name="enhancelayer-idle").start()

        def _term(signum, _frame):
            # uvicorn shuts down gracefully, then re-raises the signal it caught: turn that into
            # a normal exit so the discovery file is removed below.
            raise SystemExit(0)

        if threading.current_thread() is threading.main_thread():
            import signal
            signal.signal(signal.SIGTERM, _term)
        try:
            server.run(sockets=[sock])
        finally:
            stop.set()
            jobs.close()
            try:
                cur = json.loads(disc.read_text(encoding="utf-8"))
                if cur.get("pid") == os.getpid():
                    disc.unlink()
            except (OSError, ValueError):
                pass
            log.info("engine stopped")
        return 0
    finally:
        lock.release()

