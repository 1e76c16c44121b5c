"""Issue 17 regressions on a real engine over real HTTP: results survive a dropped download,
no 5xx for deep JSON, header deadline and idle-connection cap, remote mode refuses no-TLS and
weak tokens, a job that cannot run is refused at once, a cancelled job's result says so.
Each test failed on the engine before its fix."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import REPO, elc, frame, start_engine

BIG = 1024 * 1024                     # 1024x1024 RGBA u8: a 4 MiB result


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One bare engine with the default limits for this module's tests."""
    eng = start_engine(tmp_path_factory.mktemp("rel") / "home")
    yield eng
    eng.stop()


def _done(c, job: str, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while c.status(job)["state"] != "done":
        assert time.monotonic() - t0 < timeout, c.status(job)
        time.sleep(0.02)


def _pixels(n: int) -> bytes:
    return bytes((i * 7 + 3) & 255 for i in range(256)) * (n // 256)


def test_dropped_download_keeps_the_result_and_a_range_resumes_it(engine):
    c = engine.client()
    px = _pixels(BIG * 4)
    job = c.submit(px, 1024, 1024, 4, "u8", model="identity")
    _done(c, job)
    # read 100 bytes of the result, then drop the connection
    s = socket.create_connection(("127.0.0.1", engine.port), timeout=10)
    s.sendall(f"GET /v1/jobs/{job}/result HTTP/1.1\r\nHost: 127.0.0.1:{engine.port}\r\n"
              f"Authorization: Bearer {engine.token}\r\n\r\n".encode())
    got = b""
    while len(got) < 100:
        got += s.recv(100)
    s.close()
    time.sleep(0.3)
    st, h, full = engine.raw("GET", f"/v1/jobs/{job}/result")
    assert st == 200 and full.endswith(px) and h.get("accept-ranges") == "bytes"
    cut = len(full) // 3
    st, h, rest = engine.raw("GET", f"/v1/jobs/{job}/result", headers={"Range": f"bytes={cut}-"})
    assert st == 206 and h["content-range"] == f"bytes {cut}-{len(full) - 1}/{len(full)}"
    assert full[:cut] + rest == full
    for bad in (f"bytes={len(full)}-", "bytes=0-10", "items=0-", "bytes=1-2,5-"):
        st, h, _b = engine.raw("GET", f"/v1/jobs/{job}/result", headers={"Range": bad})
        assert st == 416 and h["content-range"] == f"bytes */{len(full)}", bad
    assert c.result(job).pixels == px                       # and then it is confirmed: gone
    assert engine.raw("GET", f"/v1/jobs/{job}/result")[0] == 404


class _CuttingProxy:
    """A loopback TCP proxy that cuts the FIRST result download after ``cut`` response bytes
    (a dropped Wi-Fi or a plug-in timeout, seen from the client), and records request lines."""

    def __init__(self, port: int, cut: int):
        self.port, self.cut = port, cut
        self.requests: list[str] = []
        self.cuts = 0
        self.head_len = 0
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.srv.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                a, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(a,), daemon=True).start()

    def _pipe(self, a: socket.socket) -> None:
        b = socket.create_connection(("127.0.0.1", self.port))
        req = a.recv(65536)
        head = req.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        self.requests.append(head)
        # the engine checks Host: rewrite ours to its own
        req = req.replace(f"Host: {self.url[7:]}".encode(), f"Host: 127.0.0.1:{self.port}".encode())
        b.sendall(req)
        cut = "/result" in head.split("\r\n")[0] and self.cuts == 0
        if cut:
            self.cuts += 1
        sent = 0
        try:
            while True:
                data = b.recv(65536)
                if not data:
                    break
                if cut and sent == 0:
                    self.head_len = data.index(b"\r\n\r\n") + 4      # the HTTP response head
                if cut and sent + len(data) >= self.cut:
                    a.sendall(data[:self.cut - sent])
                    break
                a.sendall(data)
                sent += len(data)
        finally:
            a.close()
            b.close()

    def close(self) -> None:
        self.srv.close()


def test_client_resumes_a_dropped_download_once(engine):
    c = engine.client()
    px = _pixels(BIG * 4)
    job = c.submit(px, 1024, 1024, 4, "u8", model="identity")
    _done(c, job)
    proxy = _CuttingProxy(engine.port, cut=1_000_000)
    try:
        via = elc.EngineClient(proxy.url, engine.token)
        res = via.result(job)
        assert res.pixels == px and proxy.cuts == 1
        ranges = [r for r in proxy.requests if "Range: bytes=" in r]
        assert len(ranges) == 1 and f"Range: bytes={1_000_000 - proxy.head_len}-" in ranges[0], ranges
        assert any(r.startswith(f"DELETE /v1/jobs/{job}") for r in proxy.requests)    # confirmed
    finally:
        proxy.close()


def test_deeply_nested_json_header_is_422_not_500(engine):
    for depth in (1000, 100_000 // 2):
        h = ("[" * depth + "]" * depth).encode()
        body = len(h).to_bytes(4, "big") + h
        conn_st, _h, b = engine.raw("POST", "/v1/jobs", body=body)
        assert conn_st == 422 if len(h) <= 64 * 1024 else conn_st == 413, (depth, conn_st, b)
    nested = '{"model": "identity", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    h = nested.encode()
    st, _h, b = engine.raw("POST", "/v1/jobs", body=len(h).to_bytes(4, "big") + h)
    assert st == 422 and b"nested too deeply" in b, b
    assert engine.raw("GET", "/v1/health", auth=False)[0] == 200


def test_a_job_that_cannot_run_is_refused_at_submit(engine):
    hdr = {"model": "identity", "width": 4, "height": 3, "channels": 3, "dtype": "u8", "scale": 2.0}
    st, _h, b = engine.raw("POST", "/v1/jobs", body=frame(hdr, bytes(36)))
    assert st == 422 and b"scale 1" in b, b
    with pytest.raises(elc.BadRequest):
        engine.client().submit(bytes(36), 4, 3, 3, "u8", model="identity", scale=2)


def test_result_of_a_cancelled_job_raises_cancelled(engine):
    c = engine.client()
    slow = c.submit(bytes(1500 * 1500 * 3), 1500, 1500, 3, "u8", model="restore-dust")   # ~3 s of work
    queued = c.submit(bytes(36), 4, 3, 3, "u8", model="identity")
    c.cancel(queued)
    assert c.status(queued)["state"] == "cancelled"
    with pytest.raises(elc.Cancelled):
        c.result(queued)
    c.cancel(slow)


def _held_after(sock: socket.socket, seconds: float) -> bool:
    """True when the server still holds the connection open after ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except OSError:
        return False


def test_header_deadline_and_idle_cap(engine):
    from engine.server.protocol import HEADER_TIMEOUT, MAX_IDLE_PER_CLIENT

    addr = ("127.0.0.1", engine.port)
    silent = socket.create_connection(addr)
    slow = socket.create_connection(addr)
    t0 = time.monotonic()
    stop = threading.Event()

    def drip() -> None:                       # slowloris: one header byte every 2 s
        for ch in b"GET /v1/health HTTP/1.1\r\nHost: x\r\n":
            if stop.wait(2.0):
                return
            try:
                slow.send(bytes([ch]))
            except OSError:
                return

    threading.Thread(target=drip, daemon=True).start()
    many = [socket.create_connection(addr) for _ in range(MAX_IDLE_PER_CLIENT + 24)]
    time.sleep(0.5)
    open_now = sum(_held_after(s, 0.05) for s in many)
    assert open_now <= MAX_IDLE_PER_CLIENT, open_now          # the oldest idle ones were closed
    # a real client still gets through while all that is going on
    assert engine.raw("GET", "/v1/health", auth=False, timeout=5)[0] == 200
    assert not _held_after(silent, HEADER_TIMEOUT + 3 - (time.monotonic() - t0))
    assert not _held_after(slow, max(0.5, HEADER_TIMEOUT + 3 - (time.monotonic() - t0)))
    assert time.monotonic() - t0 < HEADER_TIMEOUT + 4
    stop.set()
    for s in [silent, slow, *many]:
        s.close()


def _serve(home: Path, args: list[str], env: dict, wait: float = 20.0) -> tuple[int | None, str]:
    """Run `enhancelayer serve` and return (exit code or None if it kept running, its output)."""
    e = dict(os.environ)
    e.pop("ENHANCELAYER_TOKEN", None)
    e.update(ENHANCELAYER_HOME=str(home), PYTHONUNBUFFERED="1", **env)
    p = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", *args], cwd=REPO, env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=wait)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate(timeout=15)
        return None, out


def test_remote_mode_needs_tls_or_insecure_and_a_strong_token(tmp_path):
    code, out = _serve(tmp_path / "a", ["--host", "0.0.0.0"], {})
    assert code == 2 and "without TLS" in out and "--insecure" in out and "Traceback" not in out
    code, out = _serve(tmp_path / "b", ["--host", "0.0.0.0", "--insecure"], {"ENHANCELAYER_TOKEN": "a"})
    assert code == 2 and "weak token" in out and "ENHANCELAYER_TOKEN" in out
    code, out = _serve(tmp_path / "c", ["--host", "0.0.0.0", "--insecure"],
                       {"ENHANCELAYER_TOKEN": "correct-horse-battery-staple"})
    assert code == 2 and "weak token" in out
    # no token given: the engine makes a strong one and says where to copy it from
    code, out = _serve(tmp_path / "d", ["--host", "0.0.0.0", "--insecure", "--idle-timeout", "3"], {})
    assert code == 0 and "listening on" in out, out
    tok = (tmp_path / "d" / "config" / "token").read_text().strip()
    assert f"cat {tmp_path / 'd' / 'config' / 'token'}" in out and tok not in out
    # loopback keeps working with any token (only this machine can connect)
    eng = start_engine(tmp_path / "e", env={"ENHANCELAYER_TOKEN": "short-local-token"})
    try:
        assert eng.raw("GET", "/v1/models")[0] == 200
    finally:
        eng.stop()


def test_client_tokens_file(tmp_path):
    import secrets
    alice, bob = secrets.token_urlsafe(32), secrets.token_hex(32)
    f = tmp_path / "tokens"
    f.write_text(f"# studio\nalice {alice}\nbob {bob}\n")
    f.chmod(0o644)
    code, out = _serve(tmp_path / "a", ["--tokens", str(f)], {})
    assert code == 2 and "chmod 600" in out
    f.chmod(0o600)
    weak = tmp_path / "weak"
    weak.write_text("carol hunter2\n")
    weak.chmod(0o600)
    code, out = _serve(tmp_path / "b", ["--tokens", str(weak)], {})
    assert code == 2 and "carol" in out and "too weak" in out
    eng = start_engine(tmp_path / "c", args=("--tokens", str(f)))
    try:
        for tok in (alice, bob, eng.token):
            c = elc.EngineClient(eng.url, tok)
            assert c.enhance(bytes(36), 4, 3, 3, "u8", model="identity").pixels == bytes(36)
        with pytest.raises(elc.TokenRejected):
            elc.EngineClient(eng.url, alice[:-1]).models()
        log = (eng.cfg / "engine.log").read_text()
        assert "client alice" in log and "client bob" in log and alice not in log
    finally:
        eng.stop()


def test_internal_errors_go_to_the_engine_log(tmp_path):
    """A bug answers 500 with a stable kind and its traceback lands in engine.log (before, it
    went to stderr only). Provoked through the in-process app with a route that fails."""
    import logging

    from fastapi.testclient import TestClient

    from engine.server.app import create_app
    from engine.server.security import Settings

    app = create_app(Settings(token="t", port=8123))
    api = app.fastapi

    @api.get("/v1/boom")
    async def boom():
        raise ZeroDivisionError("boom")

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    lg = logging.getLogger("enhancelayer.server")
    h = Keep()
    lg.addHandler(h)
    try:
        with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1:8123") as tc:
            r = tc.get("/v1/boom", headers={"Authorization": "Bearer t"})
        assert r.status_code == 500 and r.json()["error"] == "internal"
        assert any(rec.exc_info and rec.exc_info[0] is ZeroDivisionError for rec in records)
    finally:
        lg.removeHandler(h)
    assert json.dumps(r.json())                  # a JSON body, not a bare text page
