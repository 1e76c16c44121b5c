"""Fixtures for the server tests: a real ``enhancelayer serve`` process on a free loopback
port, and the stdlib client loaded the way the plug-ins load it (``enhancelayer_client``).

Everything talks real HTTP to 127.0.0.1; nothing is mocked.
"""
from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "plugin" / "client"


def load_client():
    """Import plugin/client as ``enhancelayer_client`` (the name install.py gives it)."""
    name = "enhancelayer_client"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CLIENT_DIR / "__init__.py",
                                                  submodule_search_locations=[str(CLIENT_DIR)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


elc = load_client()


@dataclass
class Engine:
    proc: subprocess.Popen
    home: Path
    info: dict
    token: str
    env: dict = field(repr=False, default_factory=dict)

    @property
    def cfg(self) -> Path:
        return self.home / "config"

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def port(self) -> int:
        return int(self.info["port"])

    def client(self, **kw):
        return elc.EngineClient(self.url, self.token, pid=self.info["pid"], log_path=self.info["log"],
                                config_dir=str(self.cfg), **kw)

    def raw(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
            auth: bool = True, timeout: float = 30.0):
        """(status, headers dict, body) over a plain http.client connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Authorization": f"Bearer {self.token}"} if auth else {}
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_engine(home: Path, models: Optional[Path] = None, args: tuple = (), env: Optional[dict] = None,
                 wait: float = 60.0) -> Engine:
    """Start ``python -m engine.cli serve --port 0`` and wait for its discovery file + health."""
    home.mkdir(parents=True, exist_ok=True)
    e = dict(os.environ)
    e.pop("ENHANCELAYER_TOKEN", None)
    e["ENHANCELAYER_HOME"] = str(home)
    e["ENHANCELAYER_MODELS"] = str(models if models is not None else home / "models")
    e["PYTHONUNBUFFERED"] = "1"
    e.update(env or {})
    log = open(home / "serve.out", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", *args],
                            cwd=REPO, env=e, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    disc = home / "config" / "engine.json"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited {proc.returncode}: {(home / 'serve.out').read_text()[-2000:]}")
        try:
            info = json.loads(disc.read_text())
            if info.get("pid") == proc.pid:
                token = e.get("ENHANCELAYER_TOKEN") or (home / "config" / "token").read_text().strip()
                eng = Engine(proc, home, info, token, e)
                if not info["url"].startswith("https"):
                    st, _h, _b = eng.raw("GET", "/v1/health", auth=False, timeout=2)
                    if st != 200:
                        raise RuntimeError(f"health {st}")
                return eng
        except (OSError, ValueError, ConnectionError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("engine did not write its discovery file in time")


@pytest.fixture()
def bare_engine(tmp_path: Path):
    """An engine with no imported models (the identity model still works)."""
    eng = start_engine(tmp_path / "home")
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory):
    """One bare engine for the many small bad-request tests of a module."""
    eng = start_engine(tmp_path_factory.mktemp("eng") / "home", args=("--max-pixels", "1000000"))
    yield eng
    eng.stop()


@pytest.fixture()
def model_engine(tmp_path: Path, models_installed: Path):
    """An engine that sees the imported models (imports them once per session if needed)."""
    eng = start_engine(tmp_path / "home", models=models_installed)
    yield eng
    eng.stop()


def frame(header: dict, payload: bytes = b"") -> bytes:
    import struct
    h = json.dumps(header).encode()
    return struct.pack(">I", len(h)) + h + payload
