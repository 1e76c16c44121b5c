"""Where the installers put things on each platform, and the Flatpak GIMP path.

Windows and macOS cannot run here: their profile, config, venv and launcher paths are checked
as paths (``sys.platform`` / ``os.name`` patched), which is what the README says is tested
where. The Flatpak install is checked end to end on the file level: the vendored client of a
sandboxed install finds the user's real engine folder and refuses to start an engine it
could not run, with the plain message pointing at the per-user service install.py sets up.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


install_gimp = _module("_paths_install_gimp", REPO / "plugin" / "gimp" / "install_gimp.py")
install_krita = _module("_paths_install_krita", REPO / "plugin" / "krita" / "install_krita.py")
installer = _module("_paths_install", REPO / "install.py")


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for k in ("GIMP3_DIRECTORY", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "APPDATA", "LOCALAPPDATA",
              "ENHANCELAYER_HOME", "ENHANCELAYER_CONFIG_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    return home


def test_windows_paths(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_plugin_core import ec
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", r"C:\Users\r\AppData\Roaming")
    monkeypatch.setenv("LOCALAPPDATA", r"C:\Users\r\AppData\Local")
    assert install_gimp.profile_dir() == Path(r"C:\Users\r\AppData\Roaming") / "GIMP" / "3.0"
    assert install_krita.profile_root() == Path(r"C:\Users\r\AppData\Roaming") / "krita"
    assert install_krita.kritarc_path() == Path(r"C:\Users\r\AppData\Local") / "kritarc"
    assert ec.paths.config_dir().endswith(os.path.join(r"C:\Users\r\AppData\Local", "enhancelayer"))
    # the venv's interpreter and the engine command the installers run
    monkeypatch.setattr(installer.os, "name", "nt")
    assert installer.py() == installer.VENV / "Scripts/python.exe"
    repo = bare_env / "EnhanceLayer"
    argv = ec.catalog.engine_command(str(repo))
    assert argv[0] == os.path.join(str(repo), ".venv", "Scripts", "python.exe") and argv[1:3] == ["-m", "engine.cli"]
    exe = repo / ".venv" / "Scripts" / "enhancelayer.exe"
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    assert ec.catalog.engine_command(str(repo)) == [str(exe), "tasks", "--json"]


def test_macos_paths(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_plugin_core import ec
    monkeypatch.setattr(sys, "platform", "darwin")
    support = bare_env / "Library" / "Application Support"
    assert install_gimp.profile_dir() == support / "GIMP" / "3.0"
    assert install_krita.profile_root() == support / "krita"
    assert install_krita.kritarc_path() == bare_env / "Library" / "Preferences" / "kritarc"
    assert ec.paths.config_dir() == str(support / "enhancelayer")
    assert installer.py() == installer.VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def test_linux_paths_follow_xdg(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_plugin_core import ec
    monkeypatch.setattr(sys, "platform", "linux")
    assert install_gimp.profile_dir() == bare_env / ".config" / "GIMP" / "3.0"
    assert install_krita.profile_root() == bare_env / ".local" / "share" / "krita"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(bare_env / "cfg"))
    assert install_gimp.profile_dir() == bare_env / "cfg" / "GIMP" / "3.0"
    assert ec.paths.config_dir() == str(bare_env / "cfg" / "enhancelayer")
    monkeypatch.setenv("GIMP3_DIRECTORY", str(bare_env / "g3"))
    assert install_gimp.profile_dir() == bare_env / "g3"


def test_gimp_profiles_per_minor_version(bare_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIMP 3.2 reads GIMP/3.2, not GIMP/3.0: every existing 3.N profile gets the plug-in; with
    none, the newest GIMP on PATH decides; a newer profile is never made beside an older one
    (GIMP 3.2 copies the older profile, plug-ins included, at its first start)."""
    monkeypatch.setattr(sys, "platform", "linux")
    gimp = bare_env / ".config" / "GIMP"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for exe in ("gimp-3.2", "gimp-console-3.0", "gimp-console-3", "gimp-test-clipboard-3.2", "gimpfoo-3.4"):
        (bin_dir / exe).write_text("")
    assert install_gimp.gimp_versions_on_path(str(bin_dir)) == ["3.0", "3.2"]
    monkeypatch.setenv("PATH", str(bin_dir))
    assert install_gimp.profile_dirs() == [gimp / "3.2"]                  # nothing yet: the newest on PATH
    assert install_gimp.profile_dirs(on_path=()) == [gimp / "3.0"]        # no GIMP on PATH: 3.0 as before
    (gimp / "3.0").mkdir(parents=True)
    assert install_gimp.profile_dirs() == [gimp / "3.0"]                  # 3.2 will migrate it
    for d in ("3.10", "3.2", "2.10", "3.x"):
        (gimp / d).mkdir()
    assert install_gimp.profile_dirs() == [gimp / "3.0", gimp / "3.2", gimp / "3.10"]
    dests = install_gimp.install_all(client_src=REPO / "plugin" / "client", catalog={"models": [], "options": []})
    assert dests == [gimp / v / "plug-ins" / "enhancelayer" for v in ("3.0", "3.2", "3.10")]
    assert all((d / "enhancelayer.py").is_file() for d in dests)
    assert not (gimp / "2.10" / "plug-ins").exists()
    assert install_gimp.uninstall_all() == dests and not any(d.exists() for d in dests)
    monkeypatch.setenv("GIMP3_DIRECTORY", str(bare_env / "g3"))           # GIMP's own override wins
    assert install_gimp.profile_dirs() == [bare_env / "g3"]


def test_flatpak_gimp_install_connects_to_the_users_engine_and_never_starts_one(
        bare_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert install_gimp.flatpak_profile_dirs(bare_env) == [bare_env / ".var/app/org.gimp.GIMP/config/GIMP/3.0"]
    assert not install_gimp.flatpak_installed(bare_env)
    (bare_env / ".var/app/org.gimp.GIMP").mkdir(parents=True)
    assert install_gimp.flatpak_installed(bare_env)
    engine_cfg = bare_env / ".config" / "enhancelayer"          # the host's real engine folder
    engine_cfg.mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]      # would hang if it were launched
    (engine_cfg / "launcher.json").write_text(json.dumps({"argv": sleeper}))
    dest = install_gimp.install(install_gimp.flatpak_profile_dirs(bare_env)[0], catalog={"models": [], "options": []},
                                engine_config=str(engine_cfg))
    where = json.loads((dest / "enhancelayer_client" / "engine_location.json").read_text())
    assert where == {"config_dir": str(engine_cfg), "can_start": False}
    # the vendored client, as GIMP's sandbox loads it: $XDG_CONFIG_HOME is the sandbox's own
    monkeypatch.setenv("XDG_CONFIG_HOME", str(bare_env / ".var/app/org.gimp.GIMP/config"))
    name = "_flatpak_enhancelayer_client"
    pkg = dest / "enhancelayer_client"
    spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    assert spec is not None and spec.loader is not None
    client = importlib.util.module_from_spec(spec)
    sys.modules[name] = client
    try:
        spec.loader.exec_module(client)
        assert client.config_dir() == str(engine_cfg)
        t0 = time.monotonic()
        with pytest.raises(client.EngineNotStartable) as ei:
            client.EngineClient.local()                 # start=True: but not from the sandbox
        assert time.monotonic() - t0 < 5 and "systemctl --user start enhancelayer" in str(ei.value)
        assert "systemctl --user start enhancelayer" in client.messages.explain(ei.value).text
    finally:
        for k in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[k]


def test_engine_service_files(tmp_path: Path) -> None:
    files = installer.engine_service_files(Path("/opt/el/.venv/bin/python"), Path("/opt/el"), tmp_path)
    unit = files[tmp_path / ".config/systemd/user/enhancelayer.service"]
    assert "ExecStart=/opt/el/.venv/bin/python -m engine.cli serve\n" in unit      # no idle timeout: a service
    assert "WorkingDirectory=/opt/el" in unit and "WantedBy=default.target" in unit
    auto = files[tmp_path / ".config/autostart/enhancelayer-engine.desktop"]
    assert "Exec=/opt/el/.venv/bin/python -m engine.cli serve" in auto and "X-systemd-skip=true" in auto
    said = installer.step_engine_service(home=tmp_path, systemctl="/bin/false")
    assert "next login" in said and all(p.exists() for p in files)
    assert "started and enabled" in installer.step_engine_service(home=tmp_path, systemctl="/bin/true")
    installer.remove_engine_service(home=tmp_path)
    assert not any(p.exists() for p in files)
