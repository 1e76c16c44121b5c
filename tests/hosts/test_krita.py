"""The Krita plug-in inside real Krita (Debian's krita package), against a real engine.

Each test installs the plug-in with its own installer into a throw-away Krita profile, starts
``enhancelayer serve`` on a random port with a throw-away ENHANCELAYER_HOME, and runs
``kritarunner`` (Krita's own headless runner) with tests/hosts/krita/krita_scenarios.py,
which drives the plug-in's ``core`` code path (and its controller) on a real photo. The
expected pixels come from the engine directly through the client in this process.

kritarunner runs on its own Xvfb display with a window + view of the document, like a user's
Krita (Krita 5.1 gets its masks from a loaded template, plugin/krita/enhancelayer/detached_mask.py,
so they need no view: test_no_view_krita_51_still_masks).
Every Route A test also runs in Krita 5.2.9 from the Debian trixie chroot and in Krita 5.3
from the Debian sid chroot that .ci/setup-gimp3.sh makes (`setup-gimp3.sh sid`; when krita is
installed there; skipped with the reason otherwise), offscreen and in a private mount
namespace, so the GIMP tests' chroot mounts are not touched.
The full app (Route B) test checks that the plug-in loads, registers its action and docker,
and that the docker's own button makes the masked layer; it takes docs/images/krita-docker.png.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from engine.pipeline.formats import LUMA
from tests.conftest import bench_module

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "krita"
VENV_PY = REPO / ".venv" / "bin" / "python"

HAVE_KRITA = shutil.which("kritarunner") is not None
HAVE_XVFB = shutil.which("Xvfb") is not None
needs_krita = [
    pytest.mark.slow,
    pytest.mark.krita,
    pytest.mark.skipif(not HAVE_KRITA, reason="kritarunner not on PATH: apt-get install krita "
                                              "python3-pyqt5 python3-sip (see shared/hosts.md)"),
    pytest.mark.skipif(not HAVE_XVFB, reason="Xvfb not on PATH: apt-get install xvfb xauth"),
]


class Xvfb:
    """Our own X server: ``Xvfb -displayfd`` picks a free display and says when it is ready
    (xvfb-run -a races with parallel runs for :99 and sometimes loses its auth folder)."""

    def __init__(self, screen: str):
        import random
        for _ in range(20):
            n = random.randint(300, 5000)   # not :0-:99 (Krita fails on :0 here; xvfb-run uses :99)
            if Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists():
                continue
            r, w = os.pipe()
            self.proc = subprocess.Popen(["Xvfb", f":{n}", "-displayfd", str(w), "-screen", "0", screen,
                                          "-nolisten", "tcp", "-noreset"], pass_fds=(w,),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            os.close(w)
            buf = b""
            t_end = time.time() + 30
            while not buf.endswith(b"\n") and time.time() < t_end:
                chunk = os.read(r, 16)   # the display number once the server is ready; EOF if it died
                if not chunk:
                    break
                buf += chunk
            os.close(r)
            if buf.strip():
                self.display = ":" + buf.decode().strip()
                self._settle()
                return
            self.close()
        raise RuntimeError("Xvfb did not start")

    def _settle(self) -> None:
        """Krita's xcb sometimes fails on a server that has just said it is ready: wait until
        a client gets through, then a moment more."""
        env = host_env(DISPLAY=self.display)
        env.pop("XAUTHORITY", None)
        t_end = time.time() + 15
        while shutil.which("xdpyinfo") and time.time() < t_end:
            if subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        time.sleep(1.0)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def xserver():
    x = Xvfb("1280x800x24")
    yield x
    x.close()


def _load(name: str, path: Path, package: bool = False):
    kw = {"submodule_search_locations": [str(path.parent)]} if package else {}
    spec = importlib.util.spec_from_file_location(name, path, **kw)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


install_krita = _load("install_krita", REPO / "plugin" / "krita" / "install_krita.py")


def _client_mod():
    if "enhancelayer_client" in sys.modules:
        return sys.modules["enhancelayer_client"]
    return _load("enhancelayer_client", REPO / "plugin" / "client" / "__init__.py", package=True)


# ----------------------------------------------------------------------------- installer (fast)

def test_installer_writes_profile_and_keeps_kritarc(tmp_path: Path) -> None:
    rc = tmp_path / "kritarc"
    rc.write_text("[General]\nfoo=bar\n\n[python]\nenable_other=true\nenable_enhancelayer=false\n\n"
                  "[MainWindow]\nState=abc\n")
    out = install_krita.install(profile_dir=tmp_path / "krita", kritarc=rc)
    pk = tmp_path / "krita" / "pykrita"
    assert Path(out["desktop"]) == pk / "enhancelayer.desktop" and Path(out["desktop"]).is_file()
    assert (pk / "enhancelayer" / "core.py").is_file()
    assert (pk / "enhancelayer" / "enhancelayer_client" / "client.py").is_file()
    assert not list(pk.rglob("__pycache__"))
    # the default shortcuts, where Krita reads action declarations (not inside pykrita/)
    actions = tmp_path / "krita" / "actions" / "enhancelayer.action"
    assert Path(out["actions"]) == actions and "<shortcut>Ctrl+Alt+E</shortcut>" in actions.read_text()
    text = rc.read_text()
    assert text == ("[General]\nfoo=bar\n\n[python]\nenable_other=true\nenable_enhancelayer=true\n\n"
                    "[MainWindow]\nState=abc\n")
    # idempotent, and a kritarc without [python] gets the group appended
    install_krita.install(profile_dir=tmp_path / "krita", kritarc=rc)
    assert rc.read_text() == text
    rc2 = tmp_path / "kritarc2"
    rc2.write_text("[General]\nfoo=bar\n")
    install_krita.set_enabled(rc2, True)
    assert rc2.read_text() == "[General]\nfoo=bar\n\n[python]\nenable_enhancelayer=true\n"
    removed = install_krita.uninstall(profile_dir=tmp_path / "krita", kritarc=rc)
    assert not (pk / "enhancelayer").exists() and not (pk / "enhancelayer.desktop").exists()
    assert not actions.exists()
    assert len(removed) == 4
    assert "enable_enhancelayer" not in rc.read_text() and "enable_other=true" in rc.read_text()


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def engine(tmp_path_factory, models_dir: Path):
    """A real engine on a random port, with its own ENHANCELAYER_HOME (discovery + token)."""
    home = tmp_path_factory.mktemp("engine-home")
    env = dict(os.environ, ENHANCELAYER_HOME=str(home), ENHANCELAYER_MODELS=str(models_dir))
    env.pop("ENHANCELAYER_CONFIG_DIR", None)
    py = str(VENV_PY if VENV_PY.exists() else sys.executable)
    log = open(home / "serve.out", "wb")
    proc = subprocess.Popen([py, "-m", "engine.cli", "serve", "--port", "0"], cwd=str(REPO), env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    disc = home / "config" / "engine.json"
    t_end = time.time() + 60
    while time.time() < t_end and not disc.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited: {(home / 'serve.out').read_text()[-2000:]}")
        time.sleep(0.2)
    assert disc.exists(), "engine did not write its discovery file within 60 s"
    client = _client_mod().EngineClient.local(start=False, config_dir=str(home / "config"))
    yield {"home": home, "client": client, "env": env}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


# The Krita versions beside the machine's own ("debian": 5.1.5 on Debian 12), each in the chroot
# .ci/setup-gimp3.sh builds, with the version prefix it must report.
CHROOTS = {
    "trixie": Path(os.environ.get("ENHANCELAYER_GIMP_CHROOT", "/var/lib/enhancelayer-ci/trixie")),
    "sid": Path(os.environ.get("ENHANCELAYER_SID_CHROOT", "/var/lib/enhancelayer-ci/sid")),
}
KRITA_VERSION = {"debian": "5.", "trixie": "5.2", "sid": "5.3"}


def host_env(**extra: str) -> dict:
    """The environment for a Krita process.

    Krita embeds the system Python and derives its prefix from the first ``python3`` on PATH:
    with a pyenv or venv Python first (as when the tests run under ``python3 install.py``),
    Debian's PyQt5 is not found ("No module named 'PyQt5'"). Keep only system entries.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYENV", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"))}
    keep = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not ((Path(p) / "python3").exists() and not p.startswith(("/usr/bin", "/bin")))]
    env["PATH"] = os.pathsep.join(keep or ["/usr/bin", "/bin"])
    env.update(extra)
    return env


def own_ipc(argv: list) -> list:
    """``argv`` in a private SysV IPC namespace when we may make one (root + unshare).

    A Krita that is killed, or that leaves through os._exit (the probe plug-in), leaves its
    1 KiB SysV shared-memory segment and semaphore behind; after a few dozen runs a new Krita
    meets a stale one of the same key and segfaults in libkritaui at start-up (seen: 19 of 33
    host tests failing with exit code -11 until `ipcrm` removed 31 stale segments). In its own
    namespace every Krita starts clean and its leftovers vanish with it."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--ipc", *argv]
    return argv


def _chroot_skip(host: str) -> str:
    """Why the Krita runs in the ``host`` chroot cannot happen here, or ""."""
    root = CHROOTS[host]
    if not (root / "usr" / "bin" / "kritarunner").exists():
        return (f"no Krita in the {host} chroot {root}: bash .ci/setup-gimp3.sh {host}")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return f"the {host} chroot runs need root and unshare (private mounts)"
    return ""


def in_chroot(host: str, inner: list) -> list:
    """argv that runs ``inner`` inside the ``host`` chroot, in a private mount (and IPC)
    namespace with /proc, /dev and /tmp mounted there only."""
    t = shlex.quote(str(CHROOTS[host]))
    script = (f"mount -t proc proc {t}/proc && mount --bind /dev {t}/dev && "
              f"mount --bind /tmp {t}/tmp && exec chroot {t} " + " ".join(map(shlex.quote, inner)))
    return ["unshare", "--mount", "--propagation", "private", "--ipc", "sh", "-c", script]


@pytest.fixture(scope="module", params=["debian", "trixie", "sid"])
def krita_home(request, tmp_path_factory):
    """A throw-away HOME with the plug-in installed by its own installer. "debian": the
    machine's Krita (5.1.5 on Debian 12); "trixie" / "sid": Krita 5.2 / 5.3 in their chroots,
    run in a private mount namespace (nothing the GIMP tests use is mounted or unmounted)."""
    if request.param in CHROOTS:
        why = _chroot_skip(request.param)
        if why:
            pytest.skip(why)
    home = tmp_path_factory.mktemp(f"krita-home-{request.param}")
    if request.param in CHROOTS and not str(home).startswith("/tmp/"):
        pytest.skip("the chroot runs share /tmp only; pytest's basetemp is elsewhere")
    out = install_krita.install(profile_dir=home / ".local" / "share" / "krita",
                                kritarc=home / ".config" / "kritarc")
    scripts = home / "scripts"
    scripts.mkdir()
    shutil.copy(HERE / "krita_scenarios.py", scripts)
    return {"home": home, "pykrita": Path(out["pykrita"]), "scripts": scripts, "host": request.param}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, coffee, astronaut):
    d = tmp_path_factory.mktemp("photos")
    from PIL import Image
    # 2x box-averaged: small (2 CPU cores), and a clean real photograph
    c = coffee.astype(np.float32)
    c = ((c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]) / 4 + 0.5).astype(np.uint8)
    Image.fromarray(c).save(d / "coffee.png")           # 300x200
    Image.fromarray(astronaut[40:200, 160:320]).save(d / "astronaut.png")   # 160x160, a face
    # the coffee photo printed as a gray halftone of 6 px period (bench/quality_descreen.py's model)
    q = bench_module("quality_descreen")
    printed = np.rint(np.clip(q.halftone(c.astype(np.float32) / 255.0, 6.0, False), 0, 1) * 255).astype(np.uint8)
    Image.fromarray(printed).save(d / "printed.png")
    torn = c.copy()
    torn[TORN[1]:TORN[1] + TORN[3], TORN[0]:TORN[0] + TORN[2]] = 255     # a white hole in the print
    Image.fromarray(torn).save(d / "torn.png")
    # a brown water stain on a black-and-white print of the coffee photo (bench/quality_stain.py's film)
    gray = np.repeat((c.astype(np.float32) @ LUMA)[..., None] / 255.0, 3, 2)
    stained = np.rint(bench_module("quality_stain").ellipse_stain(gray, STAIN) * 255).astype(np.uint8)
    Image.fromarray(stained).save(d / "stained.png")
    return {"dir": d, "coffee": c, "astronaut": astronaut[40:200, 160:320].copy(), "astronaut_full": astronaut,
            "printed": printed, "torn": torn, "stained": stained, "print": np.rint(gray * 255).astype(np.uint8)}


TORN = (120, 80, 40, 30)       # x, y, w, h of the hole in photos["torn"]
STAIN = (150, 60, 80, 60)      # x, y, w, h of the box around the stain's ellipse in photos["stained"]


def run_krita(krita_home, engine, spec: dict, tmp_path: Path, xserver: Xvfb, timeout: int = 240) -> dict:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    spec = dict(spec, out_dir=str(out), window=spec.get("window_override", krita_home["host"] == "debian"))
    sp = tmp_path / "spec.json"
    sp.write_text(json.dumps(spec))
    env = host_env(HOME=str(krita_home["home"]),
               PYTHONPATH=os.pathsep.join([str(krita_home["pykrita"]), str(krita_home["scripts"])]),
               XDG_DATA_HOME=str(krita_home["home"] / ".local" / "share"),
               XDG_CONFIG_HOME=str(krita_home["home"] / ".config"),
               XDG_RUNTIME_DIR=str(tmp_path),
               # Krita's swap files and frame caches go to the temp dir and stay there when a
               # run is killed: keep them in the test's own folder, not in the machine's /tmp
               TMPDIR=str(tmp_path))
    if engine is not None:
        env["ENHANCELAYER_HOME"] = str(engine["home"])
    env.pop("QT_QPA_PLATFORM", None)   # a real X server (Xvfb): Krita 5.1 needs a view for masks
    env["DISPLAY"] = xserver.display
    env.pop("XAUTHORITY", None)
    env.pop("ENHANCELAYER_CONFIG_DIR", None)
    argv = ["kritarunner", "-s", "krita_scenarios", "-f", "main", str(sp)]
    if krita_home["host"] in CHROOTS:
        # Krita >= 5.2 makes masks without a view: offscreen, no window (5.2's kritarunner
        # crashes opening one). /proc, /dev and /tmp are mounted in a private namespace only.
        keep = ("HOME", "PYTHONPATH", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "TMPDIR",
                "ENHANCELAYER_HOME")
        inner = ["env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "QT_QPA_PLATFORM=offscreen",
                 *[f"{k}={env[k]}" for k in keep if k in env], *argv]
        argv = in_chroot(krita_home["host"], inner)
    else:
        argv = own_ipc(argv)
    log = tmp_path / "krita.log"
    for _attempt in range(3):
        _run_kritarunner(argv, env, tmp_path, log, timeout)
        if b"could not connect to display" not in log.read_bytes():
            break
        time.sleep(2)   # a flaky X connection at start-up: nothing ran yet, so run again
    rp = out / "result.json"
    n = xserver.display[1:]
    assert rp.exists(), f"kritarunner wrote no result (Xvfb {xserver.display} " \
        f"alive: {xserver.proc.poll() is None}, socket: {Path(f'/tmp/.X11-unix/X{n}').exists()}):\n" \
        f"{log.read_text(errors='replace')[-3000:]}"
    res = json.loads(rp.read_text())
    assert res["ok"], res.get("traceback")
    res["_out"] = out
    return res


def _run_kritarunner(argv: list, env: dict, tmp_path: Path, log: Path, timeout: int) -> None:
    with open(log, "wb") as f:
        p = subprocess.Popen(argv, env=env, cwd=str(tmp_path),
                             stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            pytest.fail(f"kritarunner did not finish in {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
    if rc != 0:
        with open(log, "ab") as f:
            f.write(f"\n[kritarunner exit code {rc}]\n".encode())


def raw(res: dict, name: str, dtype, W: int, H: int, ch: int = 4) -> np.ndarray:
    return np.frombuffer((res["_out"] / name).read_bytes(), dtype=dtype).reshape(H, W, ch) if ch > 1 \
        else np.frombuffer((res["_out"] / name).read_bytes(), dtype=dtype).reshape(H, W)


def bgra_to_rgba(a: np.ndarray) -> np.ndarray:
    return a[..., [2, 1, 0, 3]]


def direct(engine, rgba: np.ndarray, dtype: str, **opts) -> np.ndarray:
    """The engine's own answer for the same pixels, asked directly (RGBA order)."""
    H, W, C = rgba.shape
    r = engine["client"].enhance(np.ascontiguousarray(rgba).tobytes(), W, H, C, dtype,
                                 channel_order="RGBA", **opts)
    npd = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32}[dtype]
    return np.frombuffer(r.pixels, dtype=npd).reshape(r.height, r.width, C)


def new_layers(res: dict) -> list:
    before = set(res["layers_before"])
    return [n for n, t in zip(res["layers_after"], res["layer_types_after"])
            if t != "selectionmask" and n not in before]


def _selection_input_layer(engine, res: dict, photo: np.ndarray, sel: list, model: str) -> np.ndarray:
    """For a task whose input is the selection (restore-fill, restore-stain): one new layer named
    after the task, masked to the selection, the source unchanged, and inside the selection the
    layer equals the engine's own answer for the region sent with the selection as its mask
    (within 1 LSB). Returns the layer (RGBA u8, the document's size)."""
    H, W = photo.shape[:2]
    check_common(res, f"Enhanced · {model}")
    assert res["info"]["mask"] == "mask" and res["source_unchanged"]
    rx, ry, rw, rh = res["info"]["region"]
    src = np.dstack([photo, np.full((H, W), 255, np.uint8)])
    mask = np.zeros((H, W), np.uint8)
    mask[sel[1]:sel[1] + sel[3], sel[0]:sel[0] + sel[2]] = 255
    exp = direct(engine, src[ry:ry + rh, rx:rx + rw], "u8", model=model,
                 mask=np.ascontiguousarray(mask[ry:ry + rh, rx:rx + rw]).tobytes())
    got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, W, H))
    box = (slice(sel[1], sel[1] + sel[3]), slice(sel[0], sel[0] + sel[2]))
    ebox = (slice(sel[1] - ry, sel[1] - ry + sel[3]), slice(sel[0] - rx, sel[0] - rx + sel[2]))
    assert np.abs(got[box].astype(int) - exp[ebox].astype(int)).max() <= 1
    return got


def check_common(res: dict, name: str) -> None:
    assert "error" not in res, res.get("error")
    assert new_layers(res) == [name], res["layers_after"]
    assert res["layer_name"] == name
    assert res["layer_index"] == res["source_index"] + 1      # directly above the source
    # None: no view, so no active layer to check (5.2 headless); with a view (5.1) it must hold
    assert res["source_active"] is not False, "the source stays active: a second run must not enhance the result"


# ----------------------------------------------------------------------------- Route A tests

class TestCore:
    pytestmark = needs_krita

    def test_u8_masked_feathered_selection(self, engine, krita_home, photos, tmp_path, xserver):
        sel = [60, 50, 120, 90]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel,
            "feather": 4, "model": "jpeg-clean-1", "strength": 60}, tmp_path, xserver)
        name = "Enhanced · jpeg-clean-1 · 60%"
        check_common(res, name)
        assert res["krita_version"].startswith(KRITA_VERSION[krita_home["host"]])
        assert res["info"]["whole_layer"] is False
        assert res["children"] == [["Selection", "transparencymask"]]
        assert res["info"]["mask"] == "mask"
        assert res["source_unchanged"] and res["source_sha_before"] == res["source_sha_after"]
        W, H = 300, 200
        selection = raw(res, "selection.raw", np.uint8, W, H, 1)
        mask = raw(res, "mask.raw", np.uint8, W, H, 1)
        assert (selection > 0).sum() > 0 and ((selection > 0) & (selection < 255)).sum() > 100  # feathered
        assert np.array_equal(mask, selection), "the mask is the (feathered) selection"
        assert res["selection_after"] is not None            # the user's selection is kept
        comp = raw(res, "composite.raw", np.uint8, W, H)      # only the new layer visible
        assert comp[selection == 0][:, 3].max() == 0, "pixels outside the selection are transparent"
        assert comp[selection == 255][:, 3].min() == 255
        # inside: the engine's own output for the same region (bbox + model margin)
        rx, ry, rw, rh = res["info"]["region"]
        bx, by, bw, bh = res["info"]["bbox"]
        margin = next(m for m in engine["client"].models() if m["id"] == "jpeg-clean-1")["margin"]
        assert (rx, ry) == (max(0, bx - margin), max(0, by - margin))
        assert (rx + rw, ry + rh) == (min(W, bx + bw + margin), min(H, by + bh + margin))
        src = np.dstack([photos["coffee"], np.full((H, W), 255, np.uint8)])
        exp = direct(engine, src[ry:ry + rh, rx:rx + rw], "u8", model="jpeg-clean-1", strength=60,
                     grain=0, scale=1)
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, W, H))[ry:ry + rh, rx:rx + rw]
        d = np.abs(got.astype(int) - exp.astype(int))
        assert d.max() <= 1, f"max diff {d.max()} vs the engine's direct output"
        assert np.abs(exp[..., :3].astype(int) - src[ry:ry + rh, rx:rx + rw, :3]).mean() > 0.2, \
            "the model changed something (else the comparison proves nothing)"
        src_after = raw(res, "source_before.raw", np.uint8, W, H)
        assert np.array_equal(bgra_to_rgba(src_after)[..., :3], photos["coffee"])  # B,G,R,A read right

    def test_offset_layer_and_selection_at_the_edge(self, engine, krita_home, photos, tmp_path, xserver):
        dx, dy = 9, -6
        sel = [0, 0, 70, 50]     # touches the top-left edge: the margin is clamped
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel,
            "offset": [dx, dy], "model": "jpeg-clean-1", "strength": 100}, tmp_path, xserver)
        check_common(res, "Enhanced · jpeg-clean-1 · 100%")
        W, H = 300, 200
        shifted = np.zeros((H, W, 4), np.uint8)
        shifted[max(0, dy):H + min(0, dy), max(0, dx):W + min(0, dx), :3] = \
            photos["coffee"][max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
        shifted[max(0, dy):H + min(0, dy), max(0, dx):W + min(0, dx), 3] = 255
        assert np.array_equal(bgra_to_rgba(raw(res, "source_before.raw", np.uint8, W, H)), shifted)
        rx, ry, rw, rh = res["info"]["region"]
        assert (rx, ry) == (0, 0)
        exp = direct(engine, shifted[ry:ry + rh, rx:rx + rw], "u8", model="jpeg-clean-1",
                     strength=100, grain=0, scale=1)
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, W, H))[ry:ry + rh, rx:rx + rw]
        assert np.abs(got.astype(int) - exp.astype(int)).max() <= 1
        assert res["source_unchanged"]

    @pytest.mark.parametrize("profile", ["sRGB-elle-V2-srgbtrc.icc", "sRGB-elle-V2-g10.icc"])
    def test_u16_round_trip_keeps_levels(self, engine, krita_home, photos, tmp_path, xserver, profile):
        """16-bit keeps > 256 levels. With Krita's linear-light profile (g10, its default for
        new 16-bit documents) the plug-in sends sRGB-encoded values, as the models expect."""
        W, H = 160, 120
        linear = "g10" in profile
        # a real photo at 16 bits: upsampled smoothly from the astronaut crop, > 256 levels
        a = photos["astronaut"][:120, :160].astype(np.float64) / 255.0
        yy, xx = np.mgrid[0:H, 0:W]
        a = np.clip(a * 0.85 + 0.1 * (xx / W)[..., None] + 0.05 * (yy / H)[..., None], 0, 1)
        enc = lambda v: np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1 / 2.4) - 0.055)  # noqa: E731
        dec = lambda v: np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4))  # noqa: E731
        if linear:
            a = dec(a)           # the same photo, stored as linear light
        rgba = np.dstack([(a * 65535 + 0.5).astype(np.uint16), np.full((H, W), 65535, np.uint16)])
        assert len(np.unique(rgba[..., 0])) > 1000
        (tmp_path / "in.raw").write_bytes(np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).tobytes())
        res = run_krita(krita_home, engine, {
            "scenario": "core", "width": W, "height": H, "depth": "U16",
            "profile": profile, "raw": str(tmp_path / "in.raw"),
            "select": [30, 20, 100, 80], "feather": 2, "model": "jpeg-clean-1", "strength": 80},
            tmp_path, xserver)
        check_common(res, "Enhanced · jpeg-clean-1 · 80%")
        assert res["depth"] == "U16" and res["layer_depth"] == "U16" and res["profile"] == profile
        assert res["info"]["mask"] == "mask" and res["source_unchanged"]
        assert res["info"]["linear_profile"] is linear
        rx, ry, rw, rh = res["info"]["region"]
        bx, by, bw, bh = res["info"]["bbox"]
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint16, W, H))
        sent = rgba[ry:ry + rh, rx:rx + rw]
        if linear:
            sent = sent.copy()
            sent[..., :3] = (enc(sent[..., :3] / 65535.0) * 65535 + 0.5).astype(np.uint16)
        exp = direct(engine, sent, "u16", model="jpeg-clean-1", strength=80, grain=0, scale=1)
        g = got[ry:ry + rh, rx:rx + rw].astype(np.float64)
        if linear:   # compare where the model works: in sRGB
            g[..., :3] = enc(g[..., :3] / 65535.0) * 65535
        d = np.abs(g - exp.astype(np.float64))
        assert d.max() <= 257 + 8, f"max diff {d.max():.0f} (> 1/255)"
        inside = got[by:by + bh, bx:bx + bw, 1]
        assert len(np.unique(inside)) > 256, "16-bit precision was lost on the way"
        assert np.any(inside % 257 != 0)

    @pytest.mark.parametrize("depth", ["F32", "F16"])
    def test_float_depths(self, engine, krita_home, photos, tmp_path, xserver, depth):
        W, H = 120, 90
        a = photos["coffee"][50:50 + H, 100:100 + W].astype(np.float32) / 255.0
        rgba = np.dstack([a, np.ones((H, W), np.float32)]).astype(np.float32)
        if depth == "F16":
            rgba = rgba.astype(np.float16).astype(np.float32)
        (tmp_path / "in.raw").write_bytes(rgba.tobytes())      # float RGBA is R,G,B,A in Krita
        res = run_krita(krita_home, engine, {
            "scenario": "core", "width": W, "height": H, "depth": depth,
            "profile": "sRGB-elle-V2-srgbtrc.icc", "raw": str(tmp_path / "in.raw"),
            "select": [20, 15, 70, 50], "model": "jpeg-clean-1", "strength": 100}, tmp_path, xserver)
        check_common(res, "Enhanced · jpeg-clean-1 · 100%")
        assert res["layer_depth"] == depth and res["source_unchanged"]
        rx, ry, rw, rh = res["info"]["region"]
        npd = np.float16 if depth == "F16" else np.float32
        got = raw(res, "layer.raw", npd, W, H).astype(np.float32)[ry:ry + rh, rx:rx + rw]
        exp = direct(engine, rgba[ry:ry + rh, rx:rx + rw], "f32", model="jpeg-clean-1",
                     strength=100, grain=0, scale=1)
        d = np.abs(got - exp)
        assert d.max() <= 1 / 255, f"max diff {d.max() * 255:.2f}/255"

    def test_scale_2_resizes_document_and_aligns(self, engine, krita_home, photos, tmp_path, xserver):
        sel = [100, 60, 60, 40]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel,
            "feather": 2, "model": "photo-x2", "strength": 100, "scale": 2}, tmp_path, xserver)
        check_common(res, "Enhanced · photo-x2 · 100%")
        assert res["doc_size_after"] == [600, 400]
        assert res["info"]["mask"] == "mask"
        rx, ry, rw, rh = res["info"]["region"]
        src = np.dstack([photos["coffee"], np.full((200, 300), 255, np.uint8)])
        exp = direct(engine, src[ry:ry + rh, rx:rx + rw], "u8", model="photo-x2", strength=100,
                     grain=0, scale=2)
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, 600, 400))[2 * ry:2 * (ry + rh), 2 * rx:2 * (rx + rw)]
        assert np.abs(got.astype(int) - exp.astype(int)).max() <= 1
        # the mask is the selection Krita scaled with the image; outside it nothing shows
        selection = raw(res, "selection.raw", np.uint8, 600, 400, 1)
        comp = raw(res, "composite.raw", np.uint8, 600, 400)
        assert comp[selection == 0][:, 3].max() == 0
        ys, xs = np.nonzero(selection)
        assert abs(xs.min() - 2 * sel[0]) <= 10 and abs(ys.min() - 2 * sel[1]) <= 10

    @pytest.mark.parametrize("krita_home", ["debian"], indirect=True)   # >= 5.2 runs without a view anyway
    def test_no_view_krita_51_still_masks(self, engine, krita_home, photos, tmp_path, xserver):
        """Krita 5.1 without any view (a script in kritarunner): the layer still gets a real
        transparency mask (from the loaded template; before, the selection went into the
        layer's alpha), and the feathered selection shows pixel-exact."""
        sel = [60, 50, 120, 90]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel,
            "feather": 4, "model": "jpeg-clean-1", "strength": 60, "window_override": False},
            tmp_path, xserver)
        check_common(res, "Enhanced · jpeg-clean-1 · 60%")
        assert res["krita_version"].startswith("5.1"), res["krita_version"]
        assert res["info"]["mask"] == "mask" and res["children"] == [["Selection", "transparencymask"]]
        assert np.array_equal(raw(res, "mask.raw", np.uint8, 300, 200, 1),
                              raw(res, "selection.raw", np.uint8, 300, 200, 1)), "the mask is the selection"
        W, H = 300, 200
        selection = raw(res, "selection.raw", np.uint8, W, H, 1)
        comp = raw(res, "composite.raw", np.uint8, W, H)
        assert comp[selection == 0][:, 3].max() == 0
        assert comp[selection == 255][:, 3].min() == 255
        part = (selection > 0) & (selection < 255)
        assert np.abs(comp[part][:, 3].astype(int) - selection[part]).max() <= 1   # feather kept
        assert res["source_unchanged"]

    def test_descreen_layer_equals_engine(self, engine, krita_home, photos, tmp_path, xserver):
        """descreen (issue 14), a task the plug-in core knew nothing of: the printed photo's
        region comes back as the engine's own descreened pixels, in a new layer."""
        W, H = 300, 200
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "printed.png"), "select": [40, 30, 220, 150],
            "model": "descreen", "strength": 100, "output": "layer"}, tmp_path, xserver)
        check_common(res, "Enhanced · descreen · 100%")
        rx, ry, rw, rh = res["info"]["region"]
        src = np.dstack([photos["printed"], np.full((H, W), 255, np.uint8)])
        exp = direct(engine, src[ry:ry + rh, rx:rx + rw], "u8", model="descreen", strength=100, grain=0, scale=1)
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, W, H))[ry:ry + rh, rx:rx + rw]
        bx, by, bw, bh = res["info"]["bbox"]
        box = (slice(by - ry, by - ry + bh), slice(bx - rx, bx - rx + bw))
        assert np.abs(got[box].astype(int) - exp[box].astype(int)).max() <= 1
        before = src[by:by + bh, bx:bx + bw, :3].astype(float)
        assert np.abs(np.diff(got[box][..., :3].astype(float), axis=1)).mean() < \
            0.3 * np.abs(np.diff(before, axis=1)).mean(), "the dots are gone"
        # what the docker shows after "Added layer …"
        assert res["info"]["note"].startswith("screen of 6.0 px per period removed"), res["info"]
        assert res["source_unchanged"]

    def test_fill_uses_the_selection_as_its_input(self, engine, krita_home, photos, tmp_path, xserver):
        """restore-fill (issue 14): the selection goes to the engine as the area to rebuild; the
        layer holds the engine's own fill of that area, masked to the selection; the
        source keeps its hole. No selection: a plain message and no layer."""
        x, y, w, h = TORN
        sel = [x - 3, y - 3, w + 6, h + 6]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "torn.png"), "select": sel,
            "model": "restore-fill", "strength": 60}, tmp_path, xserver)
        got = _selection_input_layer(engine, res, photos["torn"], sel, "restore-fill")
        hole = got[y:y + h, x:x + w, :3].astype(int)
        assert (hole.min(axis=2) >= 250).mean() < 0.05, "the white hole is still there"
        (tmp_path / "none").mkdir()
        res = run_krita(krita_home, engine, {"scenario": "core", "png": str(photos["dir"] / "torn.png"),
                                             "model": "restore-fill"}, tmp_path / "none", xserver)
        assert "select the tear, hole or stain first" in res.get("error", ""), res
        assert new_layers(res) == [] and res["source_unchanged"]

    def test_stain_lifting_uses_the_selection_as_its_input(self, engine, krita_home, photos, tmp_path, xserver):
        """restore-stain (issue 14): the selection goes to the engine as the stained area; the
        layer holds the engine's own lift of it, masked to the selection, the brown film gone
        from the black-and-white print; the source keeps its stain."""
        x, y, w, h = STAIN
        sel = [x - 10, y - 10, w + 20, h + 20]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "stained.png"), "select": sel,
            "model": "restore-stain"}, tmp_path, xserver)
        got = _selection_input_layer(engine, res, photos["stained"], sel, "restore-stain")
        assert res["info"]["note"].startswith("stain lifted"), res["info"]
        # inside the stain: far nearer the unstained print than the stained one, and neutral again
        inner = (slice(y + 10, y + h - 10), slice(x + 15, x + w - 15))
        clean = photos["print"][inner].astype(int)
        assert np.abs(got[inner][..., :3].astype(int) - clean).mean() < \
            0.3 * np.abs(photos["stained"][inner].astype(int) - clean).mean()
        rgb = got[inner][..., :3].astype(int)
        assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() < 3, "the brown tint is still there"

    def test_colorize_from_a_hints_layer(self, engine, krita_home, photos, tmp_path, xserver):
        """colorize (issue 14): the chosen paint layer's strokes go as the hints; the new layer
        is the engine's answer for the same region and hints, in Krita's "color" blend mode;
        with no hints layer chosen: a plain message, no layer."""
        W, H = 300, 200
        sel = [60, 40, 180, 120]
        strokes = [[100, 60, 40, 5, [230, 90, 30]], [150, 130, 30, 5, [40, 60, 200]]]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel, "hints": strokes,
            "model": "colorize", "strength": 100, "output": "layer"}, tmp_path, xserver)
        check_common(res, "Enhanced · colorize · 100%")
        assert res["blending_mode"] == "color" and res["source_unchanged"]
        rx, ry, rw, rh = res["info"]["region"]
        hints = np.zeros((H, W, 4), np.uint8)
        for x, y, w, h, rgb in strokes:
            hints[y:y + h, x:x + w] = (*rgb, 255)
        src = np.dstack([photos["coffee"], np.full((H, W), 255, np.uint8)])
        exp = direct(engine, src[ry:ry + rh, rx:rx + rw], "u8", model="colorize", strength=100,
                     hints=np.ascontiguousarray(hints[ry:ry + rh, rx:rx + rw]).tobytes())
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, W, H))
        bx, by, bw, bh = res["info"]["bbox"]
        box = (slice(by - ry, by - ry + bh), slice(bx - rx, bx - rx + bw))
        assert np.abs(got[by:by + bh, bx:bx + bw].astype(int) - exp[box].astype(int)).max() <= 1
        red = got[60:65, 100:140, :3].reshape(-1, 3).mean(0)
        assert red[0] > red[2] + 60, red
        (tmp_path / "none").mkdir()
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel, "hints": strokes,
            "choose_hints": False, "model": "colorize", "strength": 100}, tmp_path / "none", xserver)
        assert "Colour hints" in res.get("error", ""), res
        assert new_layers(res) == [] and res["source_unchanged"]

    def test_restore_chain_adds_a_group_with_a_layer_per_step(self, engine, krita_home, photos, tmp_path,
                                                              xserver):
        """The "Restore old photo" chain (issue 14, item 6): a layer group right above the
        source, named like a result layer, its opacity the strength, holding one layer per
        chosen step bottom-up, each masked (the dust step by the repaired spots). The first
        layer is the engine's dust repair of the same region; the top one is the engine's
        one-job chain within the 8-bit rounding between the steps; the source is unchanged."""
        from PIL import Image

        from engine.tasks.restore_dust import add_synthetic_defects
        damaged, _ = add_synthetic_defects(photos["astronaut_full"].astype(np.float32) / 255.0, seed=0)
        dusty = np.rint(np.clip(damaged, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(dusty).save(tmp_path / "dusty.png")
        steps = ["dust", "color", "denoise"]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(tmp_path / "dusty.png"), "select": [90, 110, 200, 160],
            "model": "restore", "strength": 80, "values": {"steps": steps}}, tmp_path, xserver)
        check_common(res, "Enhanced · restore · 80%")
        g = res["group"]
        assert g["type"] == "grouplayer" and g["opacity"] == 204, g           # 80 % of 255
        assert [c[0] for c in g["children"]] == ["1 · Dust & scratches", "2 · Faded colour", "3 · Noise"], g
        assert all(c[1] == "paintlayer" for c in g["children"]), g
        kinds = [k for _n, k in res["info"]["steps"]]
        assert kinds == ["mask"] * 3, res["info"]          # every step has its mask (5.1 too)
        assert [c[2] for c in g["children"]] == [[["Defects", "transparencymask"]]] + \
            [[["Selection", "transparencymask"]]] * 2, g
        W, H = 512, 512
        rx, ry, rw, rh = res["info"]["region"]
        crop = np.dstack([dusty, np.full((H, W), 255, np.uint8)])[ry:ry + rh, rx:rx + rw]
        bx, by, bw, bh = res["info"]["bbox"]
        box = (slice(by - ry, by - ry + bh), slice(bx - rx, bx - rx + bw), slice(0, 3))

        def step(i: int) -> np.ndarray:
            return bgra_to_rgba(raw(res, f"step{i}.raw", np.uint8, W, H))[ry:ry + rh, rx:rx + rw][box].astype(int)
        dust = direct(engine, crop, "u8", model="restore-dust", strength=100)[box].astype(int)
        assert np.abs(step(0) - dust).max() <= 1
        one_job = direct(engine, crop, "u8", model="restore", strength=100, steps=steps)[box].astype(int)
        d = np.abs(step(2) - one_job)
        assert d.max() <= 2 and d.mean() < 0.3, (d.max(), d.mean())     # measured: 1 and 0.18
        assert np.abs(step(2) - dust).mean() > 1.0, "the colour and noise steps ran after the dust step"
        assert res["source_unchanged"]

    def test_restore_chain_colorize_step_from_the_hints_layer(self, engine, krita_home, photos, tmp_path,
                                                              xserver):
        """The chain with its colorize step ticked (issue 14, item 6): the chosen hints layer
        goes to that step only; its layer is in Krita's "color" blend mode under the noise
        step's; the top layer is the engine's one-job chain with the same hints (8-bit
        rounding between the steps)."""
        W, H = 300, 200
        sel = [60, 40, 180, 120]
        strokes = [[100, 60, 40, 5, [230, 90, 30]], [150, 130, 30, 5, [40, 60, 200]]]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel, "hints": strokes,
            "model": "restore", "strength": 100, "output": "layer", "values": {"steps": ["colorize", "denoise"]}},
            tmp_path, xserver)
        check_common(res, "Enhanced · restore · 100%")
        g = res["group"]
        assert [c[0] for c in g["children"]] == ["1 · Colour from your hints", "2 · Noise"], g
        assert g["blending"] == ["color", "normal"], g
        rx, ry, rw, rh = res["info"]["region"]
        hints = np.zeros((H, W, 4), np.uint8)
        for x, y, w, h, rgb in strokes:
            hints[y:y + h, x:x + w] = (*rgb, 255)
        src = np.dstack([photos["coffee"], np.full((H, W), 255, np.uint8)])
        exp = direct(engine, src[ry:ry + rh, rx:rx + rw], "u8", model="restore", strength=100,
                     steps=["colorize", "denoise"], hints=np.ascontiguousarray(hints[ry:ry + rh, rx:rx + rw]).tobytes())
        bx, by, bw, bh = res["info"]["bbox"]
        top = bgra_to_rgba(raw(res, "step1.raw", np.uint8, W, H))[by:by + bh, bx:bx + bw, :3].astype(int)
        d = np.abs(top - exp[by - ry:by - ry + bh, bx - rx:bx - rx + bw, :3].astype(int))
        assert d.max() <= 2 and d.mean() < 0.3, (d.max(), d.mean())
        red = top[60 - by:65 - by, 100 - bx:140 - bx].reshape(-1, 3).mean(0)
        assert red[0] > red[2] + 60, red
        assert res["source_unchanged"]

    def test_output_new_document(self, engine, krita_home, photos, tmp_path, xserver):
        sel = [40, 40, 64, 48]
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": sel,
            "model": "jpeg-clean-1", "strength": 60, "output": "document"}, tmp_path, xserver)
        assert "error" not in res, res.get("error")
        assert res["new_doc_size"] == [64, 48]
        assert "Enhanced · jpeg-clean-1 · 60%" in res["new_doc_layers"]
        assert [n for n in res["source_doc_layers"] if n != "Selection Mask"] == ["Background"]
        assert res["source_unchanged"]

    @pytest.mark.parametrize("show", [True, False])
    def test_review_map_layer(self, engine, krita_home, photos, tmp_path, xserver, show):
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(photos["dir"] / "coffee.png"), "select": [50, 50, 80, 60],
            "model": "jpeg-clean-1", "strength": 60, "review": True, "show_review": show}, tmp_path, xserver)
        assert "error" not in res, res.get("error")
        # at 60 % like GIMP's, its name saying what red means (or that nothing was flagged);
        # visible unless the user's "Show the review layer" setting is off
        alpha = raw(res, "review.raw", np.uint8, 300, 200)[..., 3]
        name = "Review · jpeg-clean-1 · " + ("red = check here" if alpha.max() >= 76 else "nothing flagged")
        assert res["review_layer"] == {"name": name, "visible": show, "opacity": 153}, res["review_layer"]
        result = "Enhanced · jpeg-clean-1 · 60%"
        # the result and its review map in one pass-through group, added at once (one undo
        # step), the review layer on top; the source stays right below (5.1 too)
        assert new_layers(res) == [result], res["layers_after"]
        assert res["review_group"] == {"name": result, "type": "grouplayer", "pass_through": True,
                                       "children": [result, name]}, res["review_group"]
        assert res["layer_index"] == res["source_index"] + 1
        assert res["source_unchanged"]

    @pytest.mark.parametrize("output", ["masked", "layer"])
    def test_restore_dust_defect_mask_is_the_layer_mask(self, engine, krita_home, photos, tmp_path, xserver,
                                                         output):
        """Issue 9: the repair comes back as a new layer whose mask is the engine's defect
        mask (times the feathered selection when masked; in "layer" mode, here without a
        selection, the defect mask alone), so a wrong repair can be painted off."""
        from PIL import Image

        from engine.tasks.restore_dust import add_synthetic_defects
        damaged, _ = add_synthetic_defects(photos["astronaut_full"].astype(np.float32) / 255.0, seed=0)
        dusty = np.rint(np.clip(damaged, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(dusty).save(tmp_path / "dusty.png")
        sel = [90, 110, 320, 260] if output == "masked" else None
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(tmp_path / "dusty.png"), "select": sel, "feather": 4,
            "model": "restore-dust", "strength": 100, "output": output}, tmp_path, xserver)
        check_common(res, "Enhanced · restore-dust · 100%")
        assert res["info"]["mask"] == "mask" and res["children"] == [["Defects", "transparencymask"]]
        assert res["source_unchanged"]
        W, H = 512, 512
        rx, ry, rw, rh = res["info"]["region"]
        src = np.dstack([dusty, np.full((H, W), 255, np.uint8)])
        r = engine["client"].enhance(np.ascontiguousarray(src[ry:ry + rh, rx:rx + rw]).tobytes(), rw, rh, 4,
                                     "u8", channel_order="RGBA", model="restore-dust", strength=100,
                                     grain=0, scale=1)
        assert r.defects is not None and (r.defects_width, r.defects_height) == (rw, rh)
        defects = np.frombuffer(r.defects, np.uint8).reshape(rh, rw).astype(np.float64)
        # the whole layer was sent (restore-dust's margin): the mask is the whole image's (issue 14)
        assert res["info"]["region"] == [0, 0, W, H]
        if sel is not None:
            selection = raw(res, "selection.raw", np.uint8, W, H, 1).astype(np.float64)
            assert ((selection > 0) & (selection < 255)).sum() > 100      # feathered: a real product
        else:
            assert not res["selection_after"] or res["selection_after"][2:] == [0, 0], \
                "no selection before, none after"
            selection = np.full((H, W), 255.0)
        expected = np.zeros((H, W))
        expected[ry:ry + rh, rx:rx + rw] = defects * selection[ry:ry + rh, rx:rx + rw] / 255.0
        mask = raw(res, "mask.raw", np.uint8, W, H, 1).astype(np.float64)
        assert np.abs(mask - expected).max() <= 1, "the layer mask is the defect mask within the selection"
        inside = selection > 0
        assert (mask[inside] == 255).sum() > 50, "some repaired spots show"
        assert (mask[inside] == 0).sum() > 0.5 * inside.sum(), "the mask is not all white"
        assert res["info"]["defects"] == int((mask > 0).sum())
        exp = np.frombuffer(r.pixels, np.uint8).reshape(rh, rw, 4)
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, W, H))[ry:ry + rh, rx:rx + rw]
        assert np.abs(got.astype(int) - exp.astype(int)).max() <= 1
        assert np.abs(exp[..., :3].astype(int) - src[ry:ry + rh, rx:rx + rw, :3]).max() > 50, "nothing repaired"
        comp = raw(res, "composite.raw", np.uint8, W, H)                 # only the repaired spots show
        assert comp[mask == 0][:, 3].max() == 0

    def test_restore_dust_sensitivity_reaches_the_engine(self, engine, krita_home, photos, tmp_path, xserver):
        """restore-dust's own option (from the engine's option table, not a plug-in field) is
        sent: the layer mask is the engine's defect mask at that sensitivity."""
        from PIL import Image

        from engine.tasks.restore_dust import add_synthetic_defects
        damaged, _ = add_synthetic_defects(photos["astronaut_full"].astype(np.float32) / 255.0, seed=0)
        dusty = np.rint(np.clip(damaged, 0, 1) * 255).astype(np.uint8)[100:356, 100:356]
        Image.fromarray(dusty).save(tmp_path / "dusty.png")
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(tmp_path / "dusty.png"), "select": None, "model": "restore-dust",
            "strength": 100, "output": "layer", "values": {"sensitivity": 0.9}}, tmp_path, xserver)
        check_common(res, "Enhanced · restore-dust · 100%")
        W = H = 256
        src = np.ascontiguousarray(np.dstack([dusty, np.full((H, W), 255, np.uint8)]))
        counts = {}
        for sens in (0.9, 0.5):
            r = engine["client"].enhance(src.tobytes(), W, H, 4, "u8", channel_order="RGBA", model="restore-dust",
                                         strength=100, scale=1, sensitivity=sens)
            counts[sens] = np.frombuffer(r.defects, np.uint8).reshape(H, W)
        mask = raw(res, "mask.raw", np.uint8, W, H, 1)
        assert np.abs(mask.astype(int) - counts[0.9].astype(int)).max() <= 1
        assert (counts[0.9] > 0).sum() > (counts[0.5] > 0).sum(), "sensitivity changes what is found"

    def test_restore_color_with_its_own_options(self, engine, krita_home, photos, tmp_path, xserver):
        """A task added after the plug-in core, with no plug-in edit: its options clip and cast
        reach the engine, and the layer is the engine's answer for the whole image."""
        from PIL import Image

        from engine.tasks.restore_color import fade
        faded = fade(photos["astronaut_full"].astype(np.float32) / 255.0, "yellowed")
        img = np.rint(faded * 255).astype(np.uint8)[100:356, 100:356]
        Image.fromarray(img).save(tmp_path / "faded.png")
        res = run_krita(krita_home, engine, {
            "scenario": "core", "png": str(tmp_path / "faded.png"), "select": None, "model": "restore-color",
            "strength": 100, "output": "layer", "values": {"clip": 0.5, "cast": 0.6}}, tmp_path, xserver)
        check_common(res, "Enhanced · restore-color · 100%")
        assert res["info"]["whole_layer"] is True     # no selection: the docker says the whole layer was used
        W = H = 256
        src = np.ascontiguousarray(np.dstack([img, np.full((H, W), 255, np.uint8)]))
        want = {}
        for cast in (0.6, 0.0):
            r = engine["client"].enhance(src.tobytes(), W, H, 4, "u8", channel_order="RGBA", model="restore-color",
                                         strength=100, scale=1, clip=0.5, cast=cast)
            want[cast] = np.frombuffer(r.pixels, np.uint8).reshape(H, W, 4).astype(int)
        got = bgra_to_rgba(raw(res, "layer.raw", np.uint8, W, H)).astype(int)
        assert np.abs(got - want[0.6]).max() <= 1
        assert np.abs(want[0.6] - want[0.0]).max() > 8, "cast changes the result"

    def test_engine_unavailable_shows_message_and_leaves_nothing(self, krita_home, photos, tmp_path, xserver):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()          # nothing listens there now
        res = run_krita(krita_home, None, {
            "scenario": "unavailable_ui", "png": str(photos["dir"] / "coffee.png"),
            "select": [10, 10, 50, 50], "model": "jpeg-clean-1",
            "engine_url": f"http://127.0.0.1:{port}"}, tmp_path, xserver)
        assert len(res["messages"]) == 1, res
        msg = res["messages"][0]
        # plain words and one thing to do; the URL and "Connection refused" only behind Details
        assert msg == _client_mod().messages.REMOTE_GONE, msg
        assert f"127.0.0.1:{port}" in res["details"][0] and "127.0.0.1" not in msg, res
        assert res["finished"] == [[False, msg]]
        assert [n for n in res["layers_after"] if n != "Selection Mask"] == res["layers_before"]

    def test_cancel_leaves_nothing(self, engine, krita_home, photos, tmp_path, xserver):
        res = run_krita(krita_home, engine, {
            "scenario": "cancel_ui", "png": str(photos["dir"] / "coffee.png"),
            "select": [60, 40, 150, 120], "model": "photo-x4", "strength": 60, "scale": 1}, tmp_path, xserver)
        assert res["started"] is True
        assert res["finished"] == [[False, ""]], res      # no layer, no error text
        assert res["boxes"] == []
        assert [n for n in res["layers_after"] if n != "Selection Mask"] == res["layers_before"]
        assert res["doc_size_after"] == [300, 200]


@pytest.fixture(scope="module")
def studio_engine(tmp_path_factory, models_dir):
    """A second engine on another port with its own --init-tls certificate (a studio engine)."""
    from tests.conftest import studio_engine as start

    home = Path(tempfile.mkdtemp(prefix="el-studio-", dir="/tmp"))
    try:
        with start(home, models_dir) as info:
            yield info
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.krita
def test_studio_engine_from_the_engine_settings(engine, krita_home, photos, tmp_path, xserver, studio_engine):
    """What the docker's ⚙ dialog saves (a studio engine: URL, token, pinned fingerprint) is what
    the next run uses: the layer comes from the studio engine (its log has the job); a wrong
    fingerprint gives one plain-words message and adds nothing (issue 18 item 5)."""
    studio_log = studio_engine["home"] / "config" / "engine.log"
    jobs_before = studio_log.read_text().count("queued (jpeg-clean-1")
    res = run_krita(krita_home, engine, {
        "scenario": "studio_ui", "png": str(photos["dir"] / "coffee.png"), "select": [60, 40, 120, 90],
        "model": "jpeg-clean-1", "strength": 60, "studio_url": studio_engine["url"],
        "studio_token": studio_engine["token"], "fingerprint": studio_engine["fingerprint"]}, tmp_path, xserver)
    assert res.get("finished"), res
    (ok, err_ok), (bad, err_bad) = res["finished"]
    assert ok and err_ok == "", res
    assert not bad and err_bad.startswith("The studio engine's certificate is not the one saved"), res
    assert [n for n in res["layers_each"][0] if n.startswith("Enhanced")] == ["Enhanced · jpeg-clean-1 · 60%"]
    assert res["layers_each"][1] == res["layers_each"][0], "the refused run added nothing"
    assert len(res["boxes"]) == 1 and res["boxes"][0].startswith("The studio engine's certificate"), res["boxes"]
    assert res["mode_after"] == "local"
    assert studio_log.read_text().count("queued (jpeg-clean-1") == jobs_before + 1      # the run went there


@pytest.mark.slow
@pytest.mark.krita
@pytest.mark.parametrize("krita_home", ["debian"], indirect=True)   # the chroot cannot start the host's venv
def test_engine_killed_between_runs_is_restarted_silently(krita_home, models_dir, photos, tmp_path, xserver):
    """The docker's controller, an engine that a launcher starts (as install.py sets up), and
    a SIGKILL between two runs: the second run starts the engine again on its own and adds its
    layer; no message box at all (issue 16: the first try after a stop said "Connection
    refused — start the engine ..." while a second click worked)."""
    home = tmp_path / "engine-home"
    cfg = home / "config"
    cfg.mkdir(parents=True)
    py = str(VENV_PY if VENV_PY.exists() else sys.executable)
    (cfg / "launcher.json").write_text(json.dumps({
        "argv": [py, "-m", "engine.cli", "serve", "--idle-timeout", "300"], "cwd": str(REPO),
        "env": {"ENHANCELAYER_HOME": str(home), "ENHANCELAYER_MODELS": str(models_dir)}}))
    try:
        res = run_krita(krita_home, {"home": home}, {
            "scenario": "restart_ui", "png": str(photos["dir"] / "coffee.png"), "select": [60, 40, 120, 90],
            "model": "jpeg-clean-1", "strength": 60, "config_dir": str(cfg)}, tmp_path, xserver)
    finally:
        info = cfg / "engine.json"
        if info.exists():
            try:
                os.kill(json.loads(info.read_text())["pid"], signal.SIGTERM)
            except (OSError, ValueError, KeyError):
                pass
    assert res.get("killed"), res
    assert res["boxes"] == [], f"a message box was shown: {res['boxes']}"
    assert res["finished"] == [[True, ""], [True, ""]], res
    assert res["pids"][1] is not None and res["pids"][1] != res["pids"][0], "no new engine was started"
    assert [n for n in res["layers_after"] if n.startswith("Enhanced")] == ["Enhanced · jpeg-clean-1 · 60%"] * 2


@pytest.mark.slow
@pytest.mark.krita
@pytest.mark.skipif(not HAVE_XVFB, reason="Xvfb not on PATH")
@pytest.mark.parametrize("kind", ["layer", "restore-group", "layer+review"])
def test_one_undo_in_the_full_app(engine, krita_home, photos, tmp_path, kind):
    """The full Krita app (window + view), the plug-in's own core, then Krita's own Undo ONCE.
    Krita 5.2 (built off the tree, added once): the layer and its mask are gone together; so
    is a "Restore old photo" group with its step layers and their masks, and a result with its
    review map (both in one pass-through group). Krita 5.1 too: its masks come from a loaded
    template (before, through the view's action, a step each: the first Undo left the layer
    without its mask)."""
    home = krita_home["home"]
    pk = krita_home["pykrita"]
    shutil.copy(HERE / "undo_plugin" / "enhancelayer_undo.desktop", pk)
    if not (pk / "enhancelayer_undo").exists():
        shutil.copytree(HERE / "undo_plugin" / "enhancelayer_undo", pk / "enhancelayer_undo")
    rc = home / ".config" / "kritarc"
    text = rc.read_text()
    if "enable_enhancelayer_undo=true" not in text:
        rc.write_text(text.replace("enable_enhancelayer=true",
                                   "enable_enhancelayer=true\nenable_enhancelayer_undo=true"))
    out = tmp_path / "undo.json"
    spec = tmp_path / "undo-spec.json"
    chain = kind == "restore-group"
    job = {"model": "restore", "values": {"steps": ["color", "denoise"]}} if chain else \
        {"model": "jpeg-clean-1", "values": {"review": kind == "layer+review"}}
    spec.write_text(json.dumps({"png": str(photos["dir"] / "coffee.png"), "select": [60, 40, 120, 90],
                                "out": str(out), **job}))
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_RUNTIME_DIR": str(tmp_path), "TMPDIR": str(tmp_path),
           "ENHANCELAYER_HOME": str(engine["home"]), "ENHANCELAYER_UNDO_SPEC": str(spec)}
    xs = Xvfb("1280x800x24")
    try:
        if krita_home["host"] in CHROOTS:
            inner = ["env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", f"DISPLAY={xs.display}",
                     *[f"{k}={v}" for k, v in env.items()], "krita", "--nosplash"]
            argv = in_chroot(krita_home["host"], inner)
            full_env = host_env()
        else:
            argv = own_ipc(["krita", "--nosplash"])
            full_env = host_env(DISPLAY=xs.display, **env)
            full_env.pop("QT_QPA_PLATFORM", None)
            full_env.pop("XAUTHORITY", None)
        with open(tmp_path / "krita.log", "wb") as log:
            p = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                p.wait(180)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    finally:
        xs.close()
    assert out.exists(), (tmp_path / "krita.log").read_text(errors="replace")[-3000:]
    res = json.loads(out.read_text())
    assert "error" not in res, res
    assert res["mask"] == "mask", res          # every layer has its mask (5.1 too)

    def ours(layers: list) -> list:           # "Selection Mask" is the user's selection, Krita's node
        return [x for x in layers if x[0] != "Selection Mask"]

    def review(layers: list) -> list:         # its name ends in the legend or "nothing flagged": either

        return [re.sub(r"^Review · jpeg-clean-1 · .*", "Review", x) if isinstance(x, str) else
                [re.sub(r"^Review · jpeg-clean-1 · .*", "Review", x[0]), review(x[1])] for x in layers]
    if chain:
        steps = [["1 · Faded colour", ["Selection"]], ["2 · Noise", ["Selection"]]]
        result = ["Enhanced · restore · 60%", steps]
    else:
        result = ["Enhanced · jpeg-clean-1 · 60%", ["Selection"]]
    if kind == "layer+review":
        after = [["Background", []], ["Enhanced · jpeg-clean-1 · 60%", [result, "Review"]]]
        assert review(ours(res["after_run"])) == after, res
    else:
        assert ours(res["after_run"]) == [["Background", []], result], res
    assert res["version"].startswith(KRITA_VERSION[krita_home["host"]]), res
    assert ours(res["after_one_undo"]) == [["Background", []]], f"one Undo left {res['after_one_undo']}"


# ----------------------------------------------------------------------------- Route B

def _xdotool(display: str, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env=host_env(DISPLAY=display), capture_output=True,
                          text=True, timeout=30)
    return done.stdout + (f" [xdotool: {done.stderr.strip()}]" if done.returncode and done.stderr.strip() else "")


def _screenshot(display: str, dest: Path, shown: object) -> None:
    if shutil.which("import") and shown:
        subprocess.run(["import", "-window", "root", str(dest)], timeout=60, check=False,
                       env=host_env(DISPLAY=display))


def _wait_for(f: Path, seconds: float, proc: subprocess.Popen, tmp_path: Path) -> None:
    t_end = time.time() + seconds
    while time.time() < t_end and not f.exists():
        assert proc.poll() is None, (tmp_path / "krita.log").read_text(errors="replace")[-3000:]
        time.sleep(0.3)
    assert f.exists(), f"the probe wrote no {f.name} in {seconds:.0f} s"


@pytest.mark.slow
@pytest.mark.krita
@pytest.mark.skipif(not shutil.which("krita") or not HAVE_XVFB or not shutil.which("xdotool"),
                    reason="krita, Xvfb or xdotool not on PATH")
def test_full_krita_loads_plugin_docker_and_enhances(engine, photos, tmp_path):
    """The real app under Xvfb: both actions in Tools > Scripts with their shortcuts, the docker
    task-first in plain words, its own button makes the masked layer; then the real Ctrl+Alt+E
    opens the dialog on the last settings with a time estimate, and Return runs it. Screenshots
    of the docker and the dialog for the README."""
    home = tmp_path / "home"
    install_krita.install(profile_dir=home / ".local/share/krita", kritarc=home / ".config/kritarc")
    pk = home / ".local/share/krita/pykrita"
    shutil.copy(HERE / "probe_plugin" / "enhancelayer_probe.desktop", pk)
    shutil.copytree(HERE / "probe_plugin" / "enhancelayer_probe", pk / "enhancelayer_probe")
    install_krita.set_enabled(home / ".config/kritarc", True)
    rc = (home / ".config/kritarc").read_text().replace(
        "enable_enhancelayer=true", "enable_enhancelayer=true\nenable_enhancelayer_probe=true")
    (home / ".config/kritarc").write_text(rc)
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "spec.json").write_text(json.dumps({
        "png": str(photos["dir"] / "coffee.png"), "select": [70, 40, 150, 110], "feather": 6,
        "model": "jpeg-clean-1"}))
    env = host_env(HOME=str(home), ENHANCELAYER_HOME=str(engine["home"]),
               ENHANCELAYER_PROBE_DIR=str(probe), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CONFIG_HOME=str(home / ".config"), XDG_RUNTIME_DIR=str(tmp_path), TMPDIR=str(tmp_path))
    env.pop("QT_QPA_PLATFORM", None)
    xs = Xvfb("1440x900x24")
    env["DISPLAY"] = xs.display
    env.pop("XAUTHORITY", None)
    proc = subprocess.Popen(own_ipc(["krita", "--nosplash"]),
                            env=env, stdout=open(tmp_path / "krita.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t_end = time.time() + 200
        while time.time() < t_end and not (probe / "ready.json").exists():
            assert proc.poll() is None, (tmp_path / "krita.log").read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        assert (probe / "ready.json").exists(), "Krita did not get ready in 200 s"
        res = json.loads((probe / "ready.json").read_text())
        shot, dialog_shot = tmp_path / "krita.png", tmp_path / "krita-dialog.png"
        _screenshot(xs.display, shot, res.get("display"))
        (probe / "shot_done").write_text("1")
        # the real shortcut, pressed on the Krita window like a user would
        _wait_for(probe / "keys.json", 60, proc, tmp_path)
        time.sleep(1.0)
        win = _xdotool(xs.display, "search", "--onlyvisible", "--class", "krita").split()
        assert win, "no visible Krita window to send keys to: " + _xdotool(xs.display, "search", "--name", ".")
        _xdotool(xs.display, "windowfocus", "--sync", win[0])
        _xdotool(xs.display, "key", "--clearmodifiers", "ctrl+alt+e")
        _wait_for(probe / "dialog.json", 70, proc, tmp_path)
        dialog = json.loads((probe / "dialog.json").read_text())
        if dialog.get("opened"):
            time.sleep(1.0)
            _screenshot(xs.display, dialog_shot, res.get("display"))
            _xdotool(xs.display, "key", "Return")          # = Enhance (the dialog's default button)
        proc.wait(150)
        final = json.loads((probe / "final.json").read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        xs.close()
    assert res["action"] and res["action_text"] == "Enhance Selection…"
    assert res["shortcut"] == "Ctrl+Alt+E" and res["again_shortcut"] == "Ctrl+Alt+Shift+E"
    assert any(p.startswith("Tools > Scripts > Enhance Selection…") for p in res["menu_paths"]), res["menu_paths"]
    assert any(p.startswith("Tools > Scripts > Enhance Selection Again") for p in res["menu_paths"]), res["menu_paths"]
    assert res["docker"] and res["docker_title"] == "AI Enhance"
    assert res["strength_default"] == 60
    # task first, in plain words: the purposes, each with its models; no raw ids, no identity
    purposes = res["purposes"]
    assert list(purposes)[:4] == ["Enlarge", "Reduce noise", "Remove JPEG blocks", "Sharpen / fix blur"], purposes
    assert "Illustration / anime" in purposes and "Repair dust & scratches" in purposes
    every = [m for items in purposes.values() for m in items]
    assert not any(m in every for m in ("identity", "photo-x2", "jpeg-clean-1", "illustration-denoise-3")), every
    assert not any(("anime" in m or "drawing" in m) for m in purposes["Enlarge"]), purposes["Enlarge"]
    assert res["model_found"] and res["purpose_selected"] == "Remove JPEG blocks"
    assert res["model_selected"] == "jpeg-clean-1" and res["model_text"] == "Light (level 1)"
    assert res["model_help"] == "Same size, for a typical web photo with mild blocks.", res["model_help"]
    assert res["estimate"].startswith("Takes "), res["estimate"]
    # the docker's option widgets come from the engine's table for jpeg-clean-1's task
    assert {"strength", "grain", "keep_color", "review", "protect"} <= set(res["option_widgets"])
    assert "tile" not in res["option_widgets"] and "sensitivity" not in res["option_widgets"]
    layers = {n: (t, kids) for n, t, kids in res["layers"]}
    assert layers["Enhanced · jpeg-clean-1 · 60%"] == ("paintlayer", [["Selection", "transparencymask"]])
    assert res["bar"] == "Done"
    assert res["docker_status_after"] == "Added layer “Enhanced · jpeg-clean-1 · 60%”.", res["docker_status_after"]
    # Ctrl+Alt+E opened the dialog on the last settings, with the estimate; Return ran it
    assert dialog.get("opened"), "the real Ctrl+Alt+E opened no dialog"
    assert dialog["purpose"] == "Remove JPEG blocks" and dialog["model"] == "jpeg-clean-1", dialog
    assert dialog["estimate"].startswith("Takes ") and dialog["help"], dialog
    # Scale only for a task that takes it: hidden (and back at 1) for dust repair, shown again after;
    # the untouched strength starts at the repair's 100 % and goes back to 60 % with the model
    assert dialog["scale_shown"] is True, dialog
    assert dialog["repair"] == {"model": "restore-dust", "scale_shown": False, "scale": 1, "strength": 100}, dialog
    assert dialog["back"] == {"model": "jpeg-clean-1", "scale_shown": True, "scale": 1, "strength": 60}, dialog
    enhanced = [(t, kids) for n, t, kids in final["layers"] if n == "Enhanced · jpeg-clean-1 · 60%"]
    assert enhanced == [("paintlayer", [["Selection", "transparencymask"]])] * 2, final
    assert final["active"] == "Background", "the source layer stays active after the dialog's run"
    if dialog_shot.exists() and os.environ.get("ENHANCELAYER_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(dialog_shot, REPO / "docs" / "images" / "krita-dialog.png")
    if shot.exists() and os.environ.get("ENHANCELAYER_UPDATE_SCREENSHOTS") == "1":
        dest = REPO / "docs" / "images" / "krita-docker.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest)
