"""Token, Host/Origin checks, private files, single instance, idle exit, TLS remote mode."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, elc, start_engine


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_health_needs_no_token_everything_else_does(shared_engine):
    st, _h, b = shared_engine.raw("GET", "/v1/health", auth=False)
    assert st == 200 and json.loads(b)["ok"] is True
    for m, p in (("GET", "/v1/models"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x"),
                 ("DELETE", "/v1/jobs/x"), ("GET", "/v1/jobs/x/result"), ("GET", "/openapi.json"),
                 ("GET", "/docs")):
        st, h, b = shared_engine.raw(m, p, auth=False)
        assert st == 401, (m, p, st)
        assert h.get("www-authenticate", "").startswith("Bearer")
        assert json.loads(b)["error"] == "unauthorized"


@pytest.mark.parametrize("value", ["Bearer wrong", "Bearer ", "Basic abc", "bearer", "Token {tok}",
                                   "Bearer {tok}x", "Bearer {short}"])
def test_wrong_token_is_401(shared_engine, value):
    v = value.format(tok=shared_engine.token, short=shared_engine.token[:-1])
    st, _h, _b = shared_engine.raw("GET", "/v1/models", auth=False, headers={"Authorization": v})
    assert st == 401


def test_right_token_is_200_and_scheme_is_case_insensitive(shared_engine):
    st, _h, b = shared_engine.raw("GET", "/v1/models", auth=False,
                                  headers={"Authorization": f"bearer {shared_engine.token}"})
    assert st == 200
    ids = {m["id"] for m in json.loads(b)["models"]}
    assert {"photo-x2", "identity"} <= ids


def test_client_token_rejected_message(shared_engine):
    c = elc.EngineClient(shared_engine.url, "not-the-token", config_dir=str(shared_engine.cfg))
    with pytest.raises(elc.TokenRejected) as ei:
        c.models()
    assert "token rejected" in str(ei.value)


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1.evil.example",
                                    "http://localhost", "https://192.168.1.10:{port}", "file://"])
def test_foreign_origin_is_403_even_with_token(shared_engine, origin):
    o = origin.format(port=shared_engine.port)
    for path in ("/v1/health", "/v1/models"):
        st, _h, b = shared_engine.raw("GET", path, headers={"Origin": o})
        assert st == 403, (o, path)
        assert json.loads(b)["error"] == "forbidden_origin"


def test_own_origin_is_allowed(shared_engine):
    for o in (f"http://127.0.0.1:{shared_engine.port}", f"http://localhost:{shared_engine.port}"):
        assert shared_engine.raw("GET", "/v1/models", headers={"Origin": o})[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "192.168.0.5:{port}",
                                  "localhost.evil.example:{port}", "", "127.0.0.1:{port}@evil",
                                  "localhost", "127.0.0.1"])
def test_foreign_host_is_403(shared_engine, host):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 still sends its own Host."""
    h = host.format(port=shared_engine.port)
    st, _h, b = shared_engine.raw("GET", "/v1/health", auth=False, headers={"Host": h})
    assert st == 403, (h, b)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_local_host_names_are_allowed(shared_engine, host):
    h = host.format(port=shared_engine.port)
    assert shared_engine.raw("GET", "/v1/health", auth=False, headers={"Host": h})[0] == 200


def test_no_cors_headers(shared_engine):
    st, h, _b = shared_engine.raw("OPTIONS", "/v1/jobs", auth=False,
                                  headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert st == 403
    assert not any(k.startswith("access-control-") for k in h)


def test_files_are_private_and_token_is_reused(tmp_path):
    eng = start_engine(tmp_path / "home")
    try:
        cfg = eng.cfg
        assert _mode(cfg) == 0o700
        for name in ("token", "engine.json", "engine.log"):
            assert _mode(cfg / name) == 0o600, name
        info = json.loads((cfg / "engine.json").read_text())
        assert info["pid"] == eng.proc.pid and info["url"].startswith("http://127.0.0.1:")
        assert {"url", "pid", "version", "started", "log"} <= set(info)
        tok1 = eng.token
        assert len(tok1) >= 40
    finally:
        assert eng.stop() == 0
    assert not (tmp_path / "home" / "config" / "engine.json").exists()      # removed on SIGTERM
    os.chmod(tmp_path / "home" / "config" / "token", 0o644)                  # someone loosened it
    eng2 = start_engine(tmp_path / "home")
    try:
        assert eng2.token == tok1
        assert _mode(eng2.cfg / "token") == 0o600
        assert eng2.port != 0
    finally:
        eng2.stop()


def test_env_token_overrides(tmp_path):
    eng = start_engine(tmp_path / "home", env={"ENHANCELAYER_TOKEN": "s3cret-from-env-0123456789"})
    try:
        assert eng.token == "s3cret-from-env-0123456789"
        assert eng.raw("GET", "/v1/models")[0] == 200
        assert not (eng.cfg / "token").exists()
    finally:
        eng.stop()


def test_second_engine_for_the_same_user_does_not_start(tmp_path):
    eng = start_engine(tmp_path / "home")
    try:
        env = dict(eng.env)
        r = subprocess.run([sys.executable, "-m", "engine.cli", "serve"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0
        assert "already running" in r.stderr
        assert json.loads((eng.cfg / "engine.json").read_text())["pid"] == eng.proc.pid
    finally:
        eng.stop()


def test_idle_timeout_exits_and_removes_discovery(tmp_path):
    eng = start_engine(tmp_path / "home", args=("--idle-timeout", "1.5"))
    c = eng.client()
    c.wait(c.submit(bytes(12), 2, 2, 3, "u8", model="identity"))
    assert eng.proc.wait(15) == 0
    assert not (eng.cfg / "engine.json").exists()
    assert "idle" in (eng.cfg / "engine.log").read_text()


def test_sigint_also_cleans_up(tmp_path):
    eng = start_engine(tmp_path / "home")
    eng.stop(signal.SIGINT)
    assert not (eng.cfg / "engine.json").exists()


def _self_signed(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_tls_remote_mode_with_custom_ca(tmp_path):
    cert, key = _self_signed(tmp_path)
    eng = start_engine(tmp_path / "home", args=("--tls-cert", str(cert), "--tls-key", str(key)),
                       env={"ENHANCELAYER_TOKEN": "remote-token-abcdefghijklmnop"})
    try:
        assert eng.url.startswith("https://127.0.0.1:")
        c = elc.EngineClient.remote(eng.url, "remote-token-abcdefghijklmnop", cafile=str(cert))
        assert c.health()["ok"]
        px = bytes(range(48))
        assert c.enhance(px, 4, 4, 3, "u8", model="identity").pixels == px
        with pytest.raises(elc.EngineUnreachable) as ei:        # no CA: not trusted
            elc.EngineClient.remote(eng.url, "x").health()
        assert "not trusted" in str(ei.value)
        with pytest.raises(elc.TokenRejected):
            elc.EngineClient.remote(eng.url, "wrong", cafile=str(cert)).models()
        with pytest.raises(elc.EngineUnreachable):              # plain http to a TLS port
            elc.EngineClient.remote(eng.url.replace("https", "http"), "x").health()
    finally:
        eng.stop()


def test_wildcard_bind_with_allow_host(tmp_path):
    eng = start_engine(tmp_path / "home", args=("--host", "0.0.0.0", "--allow-host", "gpu-box.lan", "--insecure"))
    try:
        ok = eng.raw("GET", "/v1/health", auth=False, headers={"Host": f"gpu-box.lan:{eng.port}"})
        bad = eng.raw("GET", "/v1/health", auth=False, headers={"Host": f"evil.example:{eng.port}"})
        assert ok[0] == 200 and bad[0] == 403
        assert eng.raw("GET", "/v1/models", auth=False)[0] == 401
    finally:
        eng.stop()
