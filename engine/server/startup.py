"""Start-up of ``enhancelayer serve``: the token and discovery files, the one-engine-per-user
lock, logging, the listening socket, the idle watchdog.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import logging.handlers
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from engine import __version__
from engine.errors import EnhanceError
from engine.server import tokens
from engine.server.app import API_VERSION, create_app
from engine.server.jobs import JobManager
from engine.server.protocol import GuardedH11Protocol
from engine.server.security import DEFAULT_MAX_PIXELS, LOOPBACK_NAMES, Settings
from engine.server.tokens import private_dir, write_private

log = logging.getLogger("enhancelayer.server")


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
                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows only
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


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    return host in LOOPBACK_NAMES or host.startswith("127.")


def check_remote_mode(host: str, tls: bool, insecure: bool, token: str, token_from: str) -> None:
    """Off loopback the engine is a network service: TLS (or an explicit --insecure for a
    trusted network) and a token with the randomness of 32 bytes, or it does not start."""
    if is_loopback(host):
        return
    if not tls and not insecure:
        raise EnhanceError(f"refusing to listen on {host} without TLS: the token and the pixels would cross the "
                           "network in clear text — give --tls-cert and --tls-key, or --insecure on a network "
                           "you trust")
    why = tokens.weak_reason(token)
    if why:
        raise EnhanceError(f"refusing to listen on {host} with a weak token ({token_from}): {why}")


def serve(host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 0.0, tls_cert: Optional[str] = None,
          tls_key: Optional[str] = None, max_pixels: int = DEFAULT_MAX_PIXELS, max_queued_mb: int = 4096,
          allow_hosts: tuple[str, ...] = (), result_ttl: float = 600.0, insecure: bool = False,
          tokens_file: Optional[str] = None, init_tls: bool = False) -> int:
    """Run the engine until stopped (Ctrl+C, SIGTERM) or idle for ``idle_timeout`` s (0 = never).
    ``init_tls``: without --tls-cert, use (and make once) the engine's own self-signed
    certificate (engine/server/tls.py). Returns the process exit code."""
    import uvicorn

    from engine import paths

    cfg = paths.config_dir()
    private_dir(cfg)
    log_path = cfg / "engine.log"
    _setup_logging(log_path)
    if bool(tls_cert) != bool(tls_key):
        raise EnhanceError("give both --tls-cert and --tls-key (or neither)")
    if init_tls and not tls_cert:
        from engine.server import tls

        cert, key, made = tls.init_tls(cfg, host)
        tls_cert, tls_key = str(cert), str(key)
        if made:
            log.info("made a self-signed TLS certificate %s", cert)
    for f in (tls_cert, tls_key):
        if f and not Path(f).is_file():
            raise EnhanceError(f"TLS file not found: {f}")
    token = load_token(cfg)
    from_env = bool((os.environ.get("ENHANCELAYER_TOKEN") or "").strip())
    check_remote_mode(host, bool(tls_cert), insecure, token,
                      "ENHANCELAYER_TOKEN" if from_env else f"the token file {cfg / 'token'}")
    clients = tokens.read_client_tokens(Path(tokens_file), token) if tokens_file else {}
    if not is_loopback(host) and not tls_cert:
        log.warning("listening on %s without TLS (--insecure): the token and pixels cross the network in "
                    "clear text", host)

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

        settings = Settings(token=token, clients=clients, host=host, port=bound_port, allow_hosts=tuple(allow_hosts),
                            max_pixels=max_pixels, max_queued_bytes=max_queued_mb * 1024 * 1024,
                            result_ttl=result_ttl, log_path=str(log_path))
        app = create_app(settings)
        jobs: JobManager = app.fastapi.state.jobs

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none",
                                http=GuardedH11Protocol, proxy_headers=False, server_header=False,
                                ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_keep_alive=5)
        server = uvicorn.Server(config)

        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else
                                                                 (f"[{host}]" if ":" in host else host))
        url = f"{'https' if tls_cert else 'http'}://{url_host}:{bound_port}"
        info = {"url": url, "pid": os.getpid(), "version": __version__, "api": API_VERSION,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "host": host, "port": bound_port, "tls": bool(tls_cert), "log": str(log_path)}
        fingerprint = ""
        if tls_cert:
            from engine.server.tls import fingerprint_of_file

            fingerprint = fingerprint_of_file(Path(tls_cert))
            info["cert"] = str(Path(tls_cert).resolve())
            info["fingerprint"] = fingerprint
        write_private(disc, json.dumps(info, indent=2))
        log.info("engine %s listening on %s (pid %d, idle timeout %s)", __version__, url, os.getpid(),
                 f"{idle_timeout:.0f} s" if idle_timeout else "off")
        print(f"EnhanceLayer engine listening on {url}", file=sys.stderr, flush=True)
        if fingerprint:
            print(f"certificate fingerprint (clients pin it in their engine settings): {fingerprint}",
                  file=sys.stderr, flush=True)
        if not is_loopback(host) and not from_env:
            print(f"clients need the token in {cfg / 'token'}: copy it with `cat {cfg / 'token'}` into the "
                  "plug-in's engine settings (or ENHANCELAYER_TOKEN)", file=sys.stderr, flush=True)
        if clients:
            log.info("%d more client token(s) from %s: %s", len(clients), tokens_file, ", ".join(clients))

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


