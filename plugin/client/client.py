"""``EngineClient``: talk to the EnhanceLayer engine over HTTP (standard library only).

Runs inside Krita's and GIMP's own Python (3.10-3.13): no numpy, no third-party modules,
relative imports only (install.py copies this folder as the package ``enhancelayer_client``).

    from enhancelayer_client import EngineClient, EngineError, Cancelled
    eng = EngineClient.local()                      # finds or starts the local engine
    res = eng.enhance(pixels, w, h, 4, "u8", channel_order="BGRA", model="photo-x2",
                      strength=60, progress=lambda f, msg: not dialog.cancelled)
    res.pixels, res.width, res.height               # same channels/dtype/order as sent
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Optional, TypeVar

from . import errors as E
from . import paths, timing
from .catalog import DEFAULT_MODEL
from .wire import CHANNELS, DTYPE_SIZE, ORDERS, frame_prefix, pixel_bytes

API = "/v1"
NOT_INSTALLED = "EnhanceLayer engine not installed: run `python3 install.py` in the EnhanceLayer folder"
SANDBOX_NOT_RUNNING = ("the EnhanceLayer engine is not running, and GIMP from Flatpak cannot start it — start it "
                       "with `systemctl --user start enhancelayer` (or log in again: install.py set it to "
                       "start with your session)")
OOM_MESSAGE = "out of memory even at the smallest tile — close other apps or choose a smaller selection"

Progress = Callable[[float, str], Optional[bool]]


class Result:
    """A finished job's pixels, in the same channels, dtype and channel order as sent."""

    def __init__(self, pixels: bytes, width: int, height: int, channels: int, dtype: str,
                 channel_order: str = "RGBA", review: Optional[bytes] = None,
                 review_width: int = 0, review_height: int = 0, model: str = "",
                 info: Optional[dict] = None, defects: Optional[bytes] = None,
                 defects_width: int = 0, defects_height: int = 0):
        self.pixels = pixels
        self.width = width
        self.height = height
        self.channels = channels
        self.dtype = dtype
        self.channel_order = channel_order
        self.review = review                  # u8 gray, review_width x review_height, or None
        self.review_width = review_width
        self.review_height = review_height
        self.model = model
        self.info = info or {}
        self.defects = defects                # u8 gray, 255 = repaired spot (restore-dust), or None
        self.defects_width = defects_width
        self.defects_height = defects_height

    def __repr__(self) -> str:
        return (f"Result({self.width}x{self.height}x{self.channels} {self.dtype} {self.channel_order}, "
                f"review={'yes' if self.review is not None else 'no'}, "
                f"defects={'yes' if self.defects is not None else 'no'})")


def _pid_alive(pid: int) -> Optional[bool]:
    """True/False when we can tell, None when we cannot (Windows, other pid namespace)."""
    if not pid or pid <= 0:
        return None
    if sys.platform == "win32":
        return None
    try:
        # the host started the engine itself: then a crashed engine is our zombie child, which
        # kill(pid, 0) still finds; reap it, or the host would keep "finding" a dead engine
        reaped, _status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass                                  # not our child: ask the kernel below
    except OSError:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def _read_token(cfg: str) -> Optional[str]:
    env = os.environ.get("ENHANCELAYER_TOKEN")
    if env:
        return env.strip()
    try:
        with open(os.path.join(cfg, paths.TOKEN), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


class EngineClient:
    """One engine (local or remote). Thread-safe enough for one job per thread: every call
    opens its own connection."""

    def __init__(self, url: str, token: Optional[str], *, ssl_context: Optional[ssl.SSLContext] = None,
                 pid: Optional[int] = None, log_path: Optional[str] = None,
                 config_dir: Optional[str] = None, timeout: float = 30.0, fingerprint: Optional[str] = None):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise E.EngineError(f"engine URL must look like http://host:port or https://host:port, not {url!r}")
        self.url = url.rstrip("/")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.token = token
        self.ssl_context = ssl_context
        self.pid = pid
        self.log_path = log_path
        self.config_dir = config_dir
        self.timeout = timeout
        self.fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None
        self._pid_checks = pid is not None and _pid_alive(pid) is True

    # ------------------------------------------------------------------ construction
    @classmethod
    def remote(cls, url: str, token: str, cafile: Optional[str] = None, *, timeout: float = 30.0,
               insecure_skip_verify: bool = False, fingerprint: Optional[str] = None) -> EngineClient:
        """A remote engine (studio GPU box): ``https://host:port`` + its token. ``cafile``
        trusts a self-signed or studio CA certificate; ``fingerprint`` (``SHA256:AB:CD:...``, what
        ``enhancelayer serve --init-tls`` prints) pins the engine's own certificate instead: that
        certificate and no other is accepted, whoever signed it (CertificateChanged otherwise)."""
        ctx = None
        if url.lower().startswith("https:"):
            try:
                ctx = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as e:
                raise E.EngineError(f"cannot read the CA file {cafile}: {e}") from None
            if insecure_skip_verify or fingerprint:
                ctx.check_hostname = False            # the pin below stands in for the CA check
                ctx.verify_mode = ssl.CERT_NONE
        elif fingerprint:
            raise E.EngineError("a certificate fingerprint needs an https:// engine URL")
        return cls(url, token, ssl_context=ctx, timeout=timeout, fingerprint=fingerprint)

    @classmethod
    def local(cls, start: bool = True, launcher: str | Sequence[str] | None = None, timeout: float = 60.0,
              config_dir: Optional[str] = None) -> EngineClient:
        """The engine on this machine: found via ``<config>/engine.json``, or started with the
        launcher (``<config>/launcher.json``, written by install.py; or ``launcher`` = a path
        to such a file or an argv list) and waited for until healthy (``timeout`` s)."""
        cfg = paths.config_dir(config_dir)
        found = cls._discover(cfg)
        if found is not None:
            return found
        if not start:
            raise E.EngineNotRunning("the EnhanceLayer engine is not running — start it with "
                                     "`enhancelayer serve` or let the plug-in start it")
        if launcher is None and paths.location().get("can_start") is False:
            # a sandboxed host (Flatpak GIMP) cannot run the engine's venv: the engine is a
            # per-user service (install.py set it up) and this host only connects
            raise E.EngineNotStartable(SANDBOX_NOT_RUNNING)
        argv, cwd, env_add = cls._launcher(cfg, launcher)
        log = f"{os.path.join(cfg, 'engine-start.log')} and {os.path.join(cfg, paths.LOG)}"
        proc = cls._spawn(argv, cwd, env_add, cfg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # exit code 0 means "an engine is already running" (another host won the start
            # race, or a busy engine was slow to answer): keep waiting for it to answer.
            found = cls._discover(cfg)
            if found is not None:
                return found
            if proc.poll() is not None and proc.returncode != 0:
                again = cls._discover(cfg)
                if again is not None:
                    return again
                raise E.EngineStartFailed(
                    f"the EnhanceLayer engine could not start (exit code {proc.returncode}) — "
                    f"see the logs {log}")
            time.sleep(0.1)
        raise E.EngineStartFailed(f"the EnhanceLayer engine did not answer within {timeout:.0f} s — "
                                  f"see the logs {log}")

    @classmethod
    def _discover(cls, cfg: str) -> Optional[EngineClient]:
        info = _read_json(os.path.join(cfg, paths.DISCOVERY))
        if not info or not isinstance(info.get("url"), str):
            return None
        pid = info.get("pid") if isinstance(info.get("pid"), int) else None
        if pid is not None and _pid_alive(pid) is False:
            return None
        ctx = None
        if info["url"].startswith("https:"):
            ctx = ssl.create_default_context(cafile=info.get("cafile") or None)
            ctx.check_hostname = False          # local TLS engine: trust its own cert file only
            if info.get("cert"):
                try:
                    ctx.load_verify_locations(cafile=info["cert"])
                except (OSError, ssl.SSLError):
                    pass
        try:
            c = cls(info["url"], _read_token(cfg), ssl_context=ctx, pid=pid,
                    log_path=info.get("log") or os.path.join(cfg, paths.LOG), config_dir=cfg, timeout=30.0)
        except E.EngineError:
            return None
        try:
            h = c.health(timeout=3.0)
        except E.EngineError:
            return None
        if not h.get("ok"):
            return None
        return c

    @staticmethod
    def _launcher(cfg: str, launcher) -> tuple:
        if isinstance(launcher, (list, tuple)):
            return [str(a) for a in launcher], None, {}
        path = str(launcher) if launcher else os.path.join(cfg, paths.LAUNCHER)
        spec = _read_json(path)
        if spec is None:
            raise E.EngineNotInstalled(NOT_INSTALLED + f" (no launcher at {path})")
        argv = spec.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise E.EngineNotInstalled(NOT_INSTALLED + f" (the launcher {path} has no argv list)")
        if not os.path.exists(argv[0]) and os.sep in argv[0]:
            raise E.EngineNotInstalled(NOT_INSTALLED + f" ({argv[0]} is missing)")
        env = spec.get("env")
        if not isinstance(env, dict):
            env = {}
        cwd = spec.get("cwd") if isinstance(spec.get("cwd"), str) else None
        return argv, cwd, {str(k): str(v) for k, v in env.items()}

    @staticmethod
    def _spawn(argv, cwd, env_add, cfg) -> subprocess.Popen:
        """Start the engine detached from the host: its own session, no console, output to the
        start log (the engine also logs to engine.log itself)."""
        os.makedirs(cfg, mode=0o700, exist_ok=True)
        env = dict(os.environ)
        env.update(env_add)
        fd = os.open(os.path.join(cfg, "engine-start.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        start_log = os.fdopen(fd, "ab")
        kw: dict = dict(stdin=subprocess.DEVNULL, stdout=start_log, stderr=subprocess.STDOUT,
                        cwd=cwd or None, env=env, close_fds=True)
        if sys.platform == "win32":
            kw["creationflags"] = (getattr(subprocess, "DETACHED_PROCESS", 0x8)
                                   | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)
                                   | getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000))
        else:
            kw["start_new_session"] = True
        try:
            return subprocess.Popen(argv, **kw)
        except OSError as e:
            raise E.EngineNotInstalled(NOT_INSTALLED + f" (cannot run {argv[0]}: {e})") from None
        finally:
            start_log.close()

    # ------------------------------------------------------------------ transport
    def _conn(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        t = self.timeout if timeout is None else timeout
        if self.scheme == "https":
            if self.fingerprint:
                return _PinnedHTTPSConnection(self.fingerprint, self.host, self.port, timeout=t,
                                              context=self.ssl_context)
            return http.client.HTTPSConnection(self.host, self.port, timeout=t, context=self.ssl_context)
        return http.client.HTTPConnection(self.host, self.port, timeout=t)

    def _headers(self, auth: bool = True) -> dict:
        h = {"Accept": "application/json, application/octet-stream", "User-Agent": "enhancelayer-client/1"}
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        return h

    def _unreachable(self, e: BaseException) -> E.EngineError:
        if isinstance(e, ssl.SSLCertVerificationError):
            return E.EngineUnreachable(
                f"the engine's TLS certificate at {self.url} is not trusted ({e.verify_message}) — "
                "set the CA file in the plug-in settings")
        if isinstance(e, ssl.SSLError):
            return E.EngineUnreachable(f"TLS error talking to {self.url}: {e} — check the URL (http vs https)")
        if isinstance(e, (socket.timeout, TimeoutError)):
            err = E.EngineUnreachable(f"the engine at {self.url} did not answer in time")
            err.timed_out = True
            return err
        return E.EngineUnreachable(f"cannot reach the engine at {self.url}: {e}")

    def _request(self, method: str, path: str, body=None, length: Optional[int] = None,
                 auth: bool = True, timeout: Optional[float] = None, extra_headers: Optional[dict] = None):
        """(status, content-type, body bytes). Connection problems -> EngineUnreachable."""
        conn = self._conn(timeout)
        headers = self._headers(auth)
        if extra_headers:
            headers.update(extra_headers)
        if length is not None:
            headers["Content-Length"] = str(length)
            headers["Content-Type"] = "application/octet-stream"
        try:
            try:
                conn.request(method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError) as e:
                # The engine answered early (401/413 ...) and closed while we were still
                # uploading: its answer is usually readable. But when the reset came while
                # CONNECTING (an engine killed with connections pending), there is no socket to
                # read an answer from: http.client would fail on it with an AttributeError.
                if conn.sock is None:
                    raise self._unreachable(e) from None
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheader("Content-Type", ""), data
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None
        finally:
            conn.close()

    def _error(self, status: int, data: bytes, what: str = "") -> E.EngineError:
        detail, kind = "", None
        try:
            obj = json.loads(data.decode("utf-8"))
            d = obj.get("detail")
            detail = d if isinstance(d, str) else json.dumps(d)
            kind = obj.get("error")
        except (ValueError, AttributeError, UnicodeDecodeError):
            detail = data[:200].decode("utf-8", "replace")
        if status == 401:
            where = (f"delete {os.path.join(self.config_dir, paths.TOKEN)} and restart the engine"
                     if self.config_dir else "check the token in the plug-in settings")
            return E.TokenRejected(f"token rejected by the engine at {self.url} — {where}", status, kind)
        if status == 403:
            return E.Forbidden(f"the engine refused this request ({detail}) — use the URL from the "
                               "engine's discovery file or its --allow-host name", status, kind)
        if status == 413:
            return E.TooLarge(f"{detail} — choose a smaller selection", status, kind)
        if status == 404 and kind == "unknown_model":
            return E.UnknownModel(detail, status, kind)
        if status in (404, 410):
            return E.JobNotFound(detail or f"{what} not found", status, kind)
        if status == 409 and kind == "model_not_installed":
            return E.ModelNotInstalled(detail, status, kind)
        if status == 409 and kind == "cancelled":
            return E.Cancelled(detail or "cancelled", status, kind)
        if status == 409 and kind == "failed":
            return E.JobFailed(detail, status, kind)
        if status == 429:
            return E.Busy(detail or "the engine is busy — try again when the current jobs are done", status, kind)
        if status in (400, 411, 422):
            return E.BadRequest(detail, status, kind)
        return E.EngineError(f"engine error {status}: {detail}", status, kind)

    def _json(self, method: str, path: str, auth: bool = True, timeout: Optional[float] = None,
              what: str = "") -> dict:
        status, _ctype, data = self._request(method, path, auth=auth, timeout=timeout)
        if status >= 300:
            raise self._error(status, data, what)
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise E.EngineError(f"the engine sent an unreadable answer to {method} {path}") from None

    # ------------------------------------------------------------------ API
    def health(self, timeout: Optional[float] = None) -> dict:
        """``{"ok": true, "version": ..., "api": 1, "max_pixels": ...}`` (no token needed)."""
        return self._json("GET", API + "/health", auth=False, timeout=timeout)

    def test_connection(self) -> dict:
        """What a settings panel's "Test connection" shows: the round trip in ms, the engine's
        version, load, whether a GPU runs it and how many models it has imported (checks the
        token too). Raises the client's errors in their plain-words kinds."""
        t0 = time.monotonic()
        h = self.health(timeout=min(self.timeout, 10.0))
        ms = (time.monotonic() - t0) * 1000.0
        cat = self.catalog()
        rows = cat.get("models") or []
        return {"latency_ms": round(ms, 1), "version": h.get("version", "?"), "queued": h.get("queued", 0),
                "running": h.get("running", 0), "gpu": (cat.get("engine") or {}).get("gpu", ""),
                "models": sum(1 for r in rows if r.get("installed")), "models_total": len(rows)}

    def catalog(self) -> dict:
        """What the engine can do, the whole ``GET /v1/models`` body: ``{"models": [row, ...],
        "options": [option, ...]}``. A row: id, task, kind, title, scale, margin, installed,
        options (the option names its task takes), licence, ...; an option: name, type,
        default, minimum, maximum, choices, nullable, unit, label, help, advanced, tasks."""
        body = self._json("GET", API + "/models")
        if not isinstance(body.get("models"), list):
            raise E.EngineError("the engine sent an unreadable model list — update the engine and the "
                                "plug-in together (`python3 install.py`)")
        if not isinstance(body.get("options"), list):
            body["options"] = []           # an engine before the option table
        return body

    def models(self) -> list:
        """The model rows of :meth:`catalog`."""
        return self.catalog()["models"]

    def jobs(self) -> list:
        """Status dicts of the jobs the engine holds (all clients)."""
        return self._json("GET", API + "/jobs")["jobs"]

    def submit(self, pixels, width: int, height: int, channels: int, dtype: str,
               channel_order: str = "RGBA", model: str = DEFAULT_MODEL, mask: Optional[bytes] = None,
               hints: Optional[bytes] = None, **options: Any) -> str:
        """Queue a job; returns its id. ``pixels``: bytes-like, row-major interleaved,
        little-endian for u16/f32, ``channel_order`` "RGBA" (GIMP) or "BGRA" (Krita).
        ``mask``: optional width*height u8 bytes (selection, 255 = fully enhanced).
        ``hints``: optional width*height*4 u8 RGBA bytes (colorize's colour strokes; opaque = hint).
        ``options``: job options by name in wire units (strength=60, scale=2, sensitivity=0.5,
        ...; see :meth:`catalog`), sent as given: an absent one gets the engine's default, an
        unknown name or a value out of range is refused by the engine (BadRequest, its message)."""
        if channels not in CHANNELS:
            raise E.BadRequest(f"channels must be one of {CHANNELS}, not {channels}")
        if dtype not in DTYPE_SIZE:
            raise E.BadRequest(f"dtype must be one of {tuple(DTYPE_SIZE)}, not {dtype!r}")
        if channel_order not in ORDERS:
            raise E.BadRequest(f"channel_order must be one of {ORDERS}, not {channel_order!r}")
        need = pixel_bytes(width, height, channels, dtype)
        try:
            mv = memoryview(pixels).cast("B")
        except TypeError:                   # e.g. a host type without the buffer protocol
            mv = memoryview(bytes(pixels))
        if mv.nbytes != need:
            raise E.BadRequest(f"{mv.nbytes} pixel bytes for a {width}x{height}x{channels} {dtype} "
                               f"image that needs {need}")
        header: dict[str, Any] = dict(options)
        header.update(model=model, width=int(width), height=int(height), channels=int(channels),
                      dtype=dtype, channel_order=channel_order, mask=mask is not None)
        if hints is not None:
            header["hints"] = True           # only when sent: an older engine refuses the unknown field
        try:
            prefix = frame_prefix(header)
        except (TypeError, ValueError) as e:
            raise E.BadRequest(f"an option value cannot be sent as JSON: {e}") from None
        parts: list = [prefix, mv]
        if mask is not None:
            mm = memoryview(mask).cast("B")
            if mm.nbytes != int(width) * int(height):
                raise E.BadRequest(f"mask has {mm.nbytes} bytes; a {width}x{height} mask needs "
                                   f"{int(width) * int(height)} (u8, one byte per pixel)")
            parts.append(mm)
        if hints is not None:
            hm = memoryview(hints).cast("B")
            if hm.nbytes != 4 * int(width) * int(height):
                raise E.BadRequest(f"hints have {hm.nbytes} bytes; {width}x{height} RGBA hints need "
                                   f"{4 * int(width) * int(height)} (u8)")
            parts.append(hm)
        total = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)
        status, _c, data = self._request("POST", API + "/jobs", body=parts, length=total,
                                         timeout=max(self.timeout, 120.0))
        if status >= 300:
            raise self._error(status, data, "model")
        return json.loads(data.decode("utf-8"))["id"]

    def status(self, job: str) -> dict:
        """``{"id", "state": queued|running|done|failed|cancelled, "progress": 0-1, "message",
        "eta": seconds or null, "error": {"kind", "message"} or null, ...}``"""
        return self._json("GET", f"{API}/jobs/{urllib.parse.quote(job, safe='')}", what="job")

    def cancel(self, job: str) -> dict:
        """Ask the engine to stop the job (it stops within one tile), or, for a finished job,
        forget it and drop its result (what :meth:`result` does after a complete download)."""
        return self._json("DELETE", f"{API}/jobs/{urllib.parse.quote(job, safe='')}", what="job")

    def result(self, job: str, confirm: bool = True) -> Result:
        """Fetch a finished job's pixels. Streamed: the pixels are read straight into their own
        bytes object (no second copy of a 128 MB layer inside the host). A download that drops
        midway is resumed once from where it stopped (a Range request: the engine keeps the
        result until it is confirmed); then the result is confirmed (``DELETE``), which lets the
        engine free it. ``confirm=False`` leaves it there (to fetch it again)."""
        path = f"{API}/jobs/{urllib.parse.quote(job, safe='')}/result"
        body = _ResultBody(self, path)
        try:
            head = body.read(4)
            (n,) = struct.unpack(">I", head)
            try:
                h = json.loads(body.read(n).decode("utf-8"))
                npx = pixel_bytes(h["width"], h["height"], h["channels"], h["dtype"])
                rv = h.get("review") or None
                dv = h.get("defects") or None          # after the review map, when present
                nrv = int(rv["bytes"]) if rv else 0
                ndv = int(dv["bytes"]) if dv else 0
            except (ValueError, UnicodeDecodeError, KeyError, TypeError):
                raise E.EngineError("the engine sent an unreadable result header — try again") from None
            pixels = body.read(npx)
            review = body.read(nrv) if rv else None
            defects = body.read(ndv) if dv else None
        finally:
            body.close()
        if confirm:
            try:
                self.cancel(job)                  # "I have every byte": the engine frees it
            except E.EngineError:
                pass                              # it expires on its own
        return Result(pixels, h["width"], h["height"], h["channels"], h["dtype"],
                      h.get("channel_order", "RGBA"), review,
                      rv["width"] if rv else 0, rv["height"] if rv else 0, h.get("model", ""), h,
                      defects, dv["width"] if dv else 0, dv["height"] if dv else 0)

    def _engine_gone(self) -> bool:
        if self._pid_checks and self.pid is not None:
            return _pid_alive(self.pid) is False
        return False

    def _stopped(self) -> E.EngineStopped:
        where = f"; see the log at {self.log_path}" if self.log_path else ""
        return E.EngineStopped(f"the engine stopped during the job — try again{where}")

    def wait(self, job: str, progress: Optional[Progress] = None, poll: float = 0.2,
             timeout: Optional[float] = None, dead_after: float = 3.0) -> Result:
        """Poll until the job ends; ``progress(fraction, message)`` is called on each change
        and may return False to cancel (then ``Cancelled`` is raised). Returns the Result.
        Raises EngineStopped within ~``dead_after`` s if the engine dies."""
        start = time.monotonic()
        last = None
        cancelled = False
        first_fail = None
        while True:
            if timeout is not None and time.monotonic() - start > timeout:
                raise E.EngineError(f"the job did not finish within {timeout:.0f} s")
            try:
                st = self._json("GET", f"{API}/jobs/{urllib.parse.quote(job, safe='')}",
                                timeout=10.0, what="job")
                first_fail = None
            except E.JobNotFound:
                if self._engine_gone() or self._restarted():
                    raise self._stopped() from None
                if cancelled:
                    raise E.Cancelled("cancelled") from None
                raise
            except E.EngineUnreachable as e:
                # Refused / reset: the engine is gone (confirmed after dead_after s, or at once
                # when its pid is gone). A mere timeout: the machine is busy; allow much longer.
                now = time.monotonic()
                first_fail = first_fail or now
                grace = dead_after if not getattr(e, "timed_out", False) else max(60.0, dead_after)
                if self._engine_gone() or now - first_fail >= grace:
                    raise self._stopped() from None
                time.sleep(min(poll, 0.2))
                continue
            state = st.get("state")
            fraction = float(st.get("progress") or 0.0)
            message = timing.eta_text(str(st.get("message") or ""), st.get("eta"), fraction)
            cur = (fraction, message)
            if progress is not None and cur != last and not cancelled:
                last = cur
                if progress(fraction, message) is False:
                    cancelled = True
                    try:
                        self.cancel(job)
                    except E.JobNotFound:
                        pass
            if state == "done":
                if cancelled:
                    raise E.Cancelled("cancelled")
                return self.result(job)
            if state == "cancelled":
                raise E.Cancelled("cancelled")
            if state == "failed":
                err = st.get("error") or {}
                kind, msg = err.get("kind"), err.get("message") or "the job failed"
                if kind == "out_of_memory":
                    raise E.OutOfMemory(OOM_MESSAGE, None, kind)
                if kind == "model_not_installed":
                    raise E.ModelNotInstalled(msg, None, kind)
                if kind == "internal" and self.log_path:
                    msg = f"{msg} — see the log at {self.log_path}"
                raise E.JobFailed(msg, None, kind)
            time.sleep(poll)

    def _restarted(self) -> bool:
        if not self.config_dir:
            return False
        info = _read_json(os.path.join(self.config_dir, paths.DISCOVERY))
        if not info:
            return False
        return self.pid is not None and info.get("pid") != self.pid

    def enhance(self, pixels, width: int, height: int, channels: int, dtype: str,
                progress: Optional[Progress] = None, poll: float = 0.2, **options) -> Result:
        """submit + wait + fetch. ``options`` are submit()'s keywords (channel_order, model,
        mask and the job options by name)."""
        job = self.submit(pixels, width, height, channels, dtype, **options)
        try:
            return self.wait(job, progress=progress, poll=poll)
        except KeyboardInterrupt:
            try:
                self.cancel(job)
            except E.EngineError:
                pass
            raise


def normalize_fingerprint(text: str) -> str:
    """``SHA256:AB:CD:...`` from what a user pastes (any case, with or without the prefix and
    colons, spaces around); EngineError when it is not 32 bytes of hex."""
    t = text.strip().upper()
    if t.startswith("SHA256:") or t.startswith("SHA-256:"):
        t = t.split(":", 1)[1]
    digits = "".join(ch for ch in t if ch not in ": ")
    if len(digits) != 64 or any(ch not in "0123456789ABCDEF" for ch in digits):
        raise E.EngineError(f"not a SHA-256 certificate fingerprint: {text.strip()[:80]!r} (the engine prints "
                            "it as SHA256:AB:CD:...)")
    return "SHA256:" + ":".join(digits[i:i + 2] for i in range(0, 64, 2))


def certificate_fingerprint(der: bytes) -> str:
    return normalize_fingerprint(hashlib.sha256(der).hexdigest())


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an engine whose certificate is pinned by its SHA-256 fingerprint: checked right
    after the handshake, before a byte of the request (the token) is sent."""

    def __init__(self, pin: str, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.pin = pin

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) if self.sock is not None else None
        got = certificate_fingerprint(der) if der else "none"
        if got != self.pin:
            self.close()
            raise E.CertificateChanged(f"the engine's certificate has the fingerprint {got}, the settings "
                                       f"expect {self.pin}")


class _ResultBody:
    """The body of ``GET .../result`` read in order, resuming ONCE with ``Range: bytes=N-`` when
    the connection drops (or the body ends early) midway: a remote engine over Wi-Fi or a plug-in
    timeout must not lose a finished job (issue 17). Short reads are retried, never returned."""

    def __init__(self, client: EngineClient, path: str):
        self.client = client
        self.path = path
        self.pos = 0                      # bytes of the body consumed so far
        self.total: Optional[int] = None
        self.resumed = False
        self.conn: Optional[http.client.HTTPConnection] = None
        self.resp: Optional[http.client.HTTPResponse] = None
        self._open()

    def _open(self) -> None:
        c = self.client
        headers = c._headers()
        if self.pos:
            headers["Range"] = f"bytes={self.pos}-"
        self.conn = c._conn(max(c.timeout, 120.0))
        try:
            self.conn.request("GET", self.path, headers=headers)
            resp = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise c._unreachable(e) from None
        if resp.status >= 300:
            data = resp.read()
            self.close()
            raise c._error(resp.status, data, "job")
        if self.pos:
            want = f"bytes {self.pos}-"
            if resp.status != 206 or not (resp.getheader("Content-Range") or "").startswith(want):
                self.close()
                raise E.EngineError("the engine could not resume the result download — run the job again")
        elif resp.getheader("Content-Length", "").isdigit():
            self.total = int(resp.getheader("Content-Length", "0"))
        self.resp = resp

    def read(self, n: int) -> bytes:
        if self.total is not None and self.pos + n > self.total:
            raise E.EngineError("the engine sent an unreadable result header — try again")
        chunks: list[bytes] = []
        got = 0
        while got < n:
            try:
                assert self.resp is not None
                part = self.resp.read(n - got)
            except http.client.IncompleteRead as e:
                part = e.partial
            except (OSError, http.client.HTTPException):
                part = b""
            if part:
                chunks.append(part)
                got += len(part)
                self.pos += len(part)
                continue
            if self.resumed:                      # dropped twice: give up, the result stays there
                raise E.EngineError("the result download broke off twice — check the connection and "
                                    "try again")
            self.resumed = True
            self.close()
            self._open()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = self.resp = None


T = TypeVar("T")
# The engine is gone (refused / reset before the job was accepted, or it died during it).
ENGINE_GONE = (E.EngineUnreachable, E.EngineStopped)


def is_remote(client: Any) -> bool:
    """An engine on another machine (or at a configured URL): found through no local config
    folder, so not ours to start or restart."""
    return not getattr(client, "config_dir", None)


def with_restart(client: EngineClient, work: Callable[[EngineClient], T],
                 restart: Callable[[], EngineClient]) -> tuple[T, EngineClient]:
    """``work(client)``; when the LOCAL engine turns out to be gone, ``restart()`` (which starts
    it again, e.g. ``EngineClient.local(start=True)``) and ``work`` once more, silently: a
    retoucher whose engine stopped (idle timeout, a crash, a reboot of the service) should not
    meet "Connection refused" when a second click would have worked (issue 16). A second
    failure, any other error, a cancel or a remote engine (not ours to start) is raised as it
    is. Returns (the result, the client that produced it: keep it for the next run)."""
    try:
        return work(client), client
    except ENGINE_GONE:
        if is_remote(client):            # say so, do not pretend
            raise
    fresh = restart()
    return work(fresh), fresh
