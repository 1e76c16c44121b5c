"""The stdlib client: runs under a bare ``python3 -I -S``, finds/starts the engine, and says
what to do when it cannot."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import CLIENT_DIR, REPO, elc

SYSTEM_PY = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin") or "python3"


def _interpreters() -> list[str]:
    """The system python3 plus any CPython 3.10-3.13 found (PATH, pyenv), one per minor version."""
    found = {}
    cands = [SYSTEM_PY] + [shutil.which(f"python3.{m}") for m in (10, 11, 12, 13)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        cands += [str(p / "bin" / "python3") for p in sorted(pyenv.glob("3.1[0-3].*"))]
    for c in cands:
        if not c or not os.path.exists(c):
            continue
        r = subprocess.run([c, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=30)
        v = r.stdout.strip()
        if r.returncode == 0 and v in ("3.10", "3.11", "3.12", "3.13") and v not in found:
            found[v] = c
    return [found[v] for v in sorted(found)] or [SYSTEM_PY]


INTERPRETERS = _interpreters()


def _install_copy(dst: Path) -> Path:
    """What install.py does: copy plugin/client into a plug-in folder as enhancelayer_client."""
    target = dst / "enhancelayer_client"
    shutil.copytree(CLIENT_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.mark.parametrize("python", INTERPRETERS)
def test_client_is_stdlib_only_under_bare_python(bare_engine, tmp_path, python):
    plug = _install_copy(tmp_path / "plugins")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(plug)!r})
        try:
            import numpy
            print("NUMPY VISIBLE"); sys.exit(3)
        except ImportError:
            pass
        import enhancelayer_client as elc
        c = elc.EngineClient.local(start=False, config_dir={str(bare_engine.cfg)!r})
        px = bytes(range(256)) * 3          # 16x16 gray u8 ... as 3 channels: 16x16x3 = 768
        r = c.enhance(px, 16, 16, 3, "u8", model="identity", channel_order="BGRA")
        assert r.pixels == px and (r.width, r.height, r.channels) == (16, 16, 3), r
        ids = [m["id"] for m in c.models()]
        assert "identity" in ids
        std = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
        foreign = sorted(m for m in sys.modules
                         if m.split(".")[0] not in std and m.split(".")[0] not in ("enhancelayer_client", "__main__"))
        print("FOREIGN", foreign)
        sys.exit(0 if not foreign else 4)
    """)
    r = subprocess.run([python, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FOREIGN []" in r.stdout


def test_client_sources_import_nothing_third_party():
    std = set(sys.stdlib_module_names)
    import ast
    for f in CLIENT_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name.split(".")[0] in std, (f, a.name)
            elif isinstance(node, ast.ImportFrom):
                assert node.level >= 1 or node.module.split(".")[0] in std or node.module == "__future__", \
                    (f, node.module)


@pytest.mark.parametrize("env", [
    {"ENHANCELAYER_HOME": "{tmp}/h"},
    {"XDG_CONFIG_HOME": "{tmp}/xdg"},
    {"XDG_CONFIG_HOME": "   "},
    {},
])
def test_config_dir_matches_engine_paths(tmp_path, env):
    e = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "home")}
    e.update({k: v.format(tmp=tmp_path) for k, v in env.items()})
    code = ("import sys, json; sys.path.insert(0, 'plugin'); import client.paths as cp; "
            "from engine import paths; print(json.dumps([cp.config_dir(), str(paths.config_dir())]))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=e, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mine, theirs = json.loads(r.stdout)
    assert mine == theirs


def test_config_dir_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCELAYER_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("ENHANCELAYER_CONFIG_DIR", str(tmp_path / "chroot-view"))
    assert elc.config_dir() == str(tmp_path / "chroot-view")
    assert elc.config_dir(str(tmp_path / "x")) == str(tmp_path / "x")


def test_not_installed_message(tmp_path):
    with pytest.raises(elc.EngineNotInstalled) as ei:
        elc.EngineClient.local(config_dir=str(tmp_path / "cfg"), timeout=5)
    assert "run `python3 install.py` in the EnhanceLayer folder" in str(ei.value)
    with pytest.raises(elc.EngineNotRunning):
        elc.EngineClient.local(start=False, config_dir=str(tmp_path / "cfg"))


def test_stale_discovery_is_ignored(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (cfg / "engine.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": p.pid}))
    with pytest.raises(elc.EngineNotRunning):
        elc.EngineClient.local(start=False, config_dir=str(cfg))


def test_launcher_that_crashes_is_reported_fast(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "launcher.json").write_text(json.dumps({"argv": [sys.executable, "-c", "import sys; sys.exit(3)"]}))
    t0 = time.monotonic()
    with pytest.raises(elc.EngineStartFailed) as ei:
        elc.EngineClient.local(config_dir=str(cfg), timeout=30)
    assert time.monotonic() - t0 < 10
    assert "exit code 3" in str(ei.value) and "engine.log" in str(ei.value)


def test_launcher_starts_a_detached_engine_once(tmp_path):
    home = tmp_path / "home"
    cfg = home / "config"
    cfg.mkdir(parents=True)
    launcher = {"argv": [sys.executable, "-m", "engine.cli", "serve", "--idle-timeout", "60"],
                "cwd": str(REPO), "env": {"ENHANCELAYER_HOME": str(home),
                                          "ENHANCELAYER_MODELS": str(home / "models")}}
    (cfg / "launcher.json").write_text(json.dumps(launcher))
    c = elc.EngineClient.local(config_dir=str(cfg), timeout=60)
    pid = None
    try:
        info = json.loads((cfg / "engine.json").read_text())
        pid = info["pid"]
        assert c.pid == pid and c.url == info["url"]
        assert os.getsid(pid) == pid                      # its own session: survives the host
        c2 = elc.EngineClient.local(config_dir=str(cfg), timeout=60)   # found, not started again
        assert c2.pid == pid
        assert os.stat(cfg / "engine-start.log").st_mode & 0o077 == 0
        px = os.urandom(64 * 48 * 4)
        assert c2.enhance(px, 64, 48, 4, "u8", model="identity").pixels == px
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not (cfg / "engine.json").exists():
                    break
                time.sleep(0.1)
    assert not (cfg / "engine.json").exists()


def test_wire_frames_match_engine():
    import importlib

    from engine.server import wire
    cw = importlib.import_module(elc.__name__ + ".wire")
    h = {"model": "identity", "width": 2, "height": 1, "channels": 3, "dtype": "u16"}
    assert cw.frame_prefix(h) == wire.pack(h)
    hdr = wire.parse_header(wire.pack(h)[4:])
    assert hdr.pixel_bytes() == cw.pixel_bytes(2, 1, 3, "u16") == 12


def _engine_launcher(tmp_path) -> Path:
    """A config folder whose launcher.json starts a real engine (as install.py writes one)."""
    home = tmp_path / "home"
    cfg = home / "config"
    cfg.mkdir(parents=True)
    (cfg / "launcher.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "engine.cli", "serve", "--idle-timeout", "60"], "cwd": str(REPO),
        "env": {"ENHANCELAYER_HOME": str(home), "ENHANCELAYER_MODELS": str(home / "models")}}))
    return cfg


def test_two_hosts_starting_the_engine_at_once_share_one(tmp_path):
    """Krita and GIMP both call local() at the same moment: the lock lets one engine live,
    the other launcher exits 0 ("already running") and its client waits for the winner."""
    import threading
    cfg = _engine_launcher(tmp_path)
    got: dict = {}

    def host(i):
        try:
            got[i] = elc.EngineClient.local(config_dir=str(cfg), timeout=90)
        except Exception as e:          # noqa: BLE001 - reported below
            got[i] = e
    ts = [threading.Thread(target=host, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    pid = None
    try:
        assert all(isinstance(got[i], elc.EngineClient) for i in range(2)), got
        pid = got[0].pid
        assert got[1].pid == pid
        assert json.loads((cfg / "engine.json").read_text())["pid"] == pid
        assert got[1].enhance(bytes(12), 2, 2, 3, "u8", model="identity").pixels == bytes(12)
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not (cfg / "engine.json").exists():
                    break
                time.sleep(0.1)


def test_with_restart_starts_a_killed_local_engine_again_once(tmp_path):
    """What both plug-ins do around a job: the local engine was killed since the client was
    made; the job is sent again to a freshly started engine, silently. A remote engine (no
    config folder: not ours to start) is reported, not restarted."""
    cfg = _engine_launcher(tmp_path)
    c = elc.EngineClient.local(config_dir=str(cfg), timeout=60)
    pids = [c.pid]
    px = os.urandom(32 * 16 * 4)
    restarts = []

    def restart():
        restarts.append(1)
        return elc.EngineClient.local(config_dir=str(cfg), timeout=60)

    def work(client):
        return client.enhance(px, 32, 16, 4, "u8", model="identity").pixels

    try:
        assert elc.with_restart(c, work, restart) == (px, c) and restarts == []   # alive: used as it is
        os.kill(c.pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(c.pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        out, fresh = elc.with_restart(c, work, restart)
        pids.append(fresh.pid)
        assert out == px and restarts == [1] and fresh.pid != c.pid
        remote = elc.EngineClient(c.url, "t")              # the dead URL, as a remote engine
        with pytest.raises(elc.EngineUnreachable):
            elc.with_restart(remote, work, restart)
        assert restarts == [1]
    finally:
        for pid in pids[1:]:
            if pid:
                os.kill(pid, signal.SIGTERM)


def test_reset_while_connecting_is_unreachable_not_a_crash(monkeypatch):
    """An engine SIGKILLed with connections pending can reset one while it is being opened
    (the 15-minute soak met it once): there is then no socket to read an early answer from, and
    the client must say "unreachable" (which with_restart turns into a silent restart) instead
    of letting http.client fail with AttributeError on the missing socket."""
    import http.client

    def reset(self):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(http.client.HTTPConnection, "connect", reset)
    client = elc.EngineClient("http://127.0.0.1:9", "t" * 43)
    with pytest.raises(elc.EngineUnreachable, match="cannot reach the engine"):
        client.health(timeout=2)
