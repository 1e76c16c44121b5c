"""Install / uninstall the EnhanceLayer GIMP 3 plug-in (standard library only).

install.py calls ``install(client_src=ROOT / "plugin/client")`` and ``uninstall()``.
GIMP 3 loads a Python plug-in from ``<profile>/plug-ins/NAME/NAME.py`` (folder name ==
file name, run bit set, ``#!/usr/bin/env python3``) on its next start. The stdlib client is
vendored next to it as the package ``enhancelayer_client``, so the plug-in needs nothing
outside its folder. GIMP registers the procedure's arguments when it starts, before any
engine runs, so the install also saves the engine's catalog as
``enhancelayer_client/engine_catalog.json`` (what ``<repo>/.venv/bin/enhancelayer tasks
--json`` prints): the model choice and one argument per job option come from it. Without an
engine (a warning on stderr) the procedure has a plain model-id argument and no options.

Profile folder: ``$GIMP3_DIRECTORY`` if set (GIMP's own override), else
Linux/BSD ``$XDG_CONFIG_HOME/GIMP/3.0`` (``~/.config/GIMP/3.0``),
macOS ``~/Library/Application Support/GIMP/3.0``, Windows ``%APPDATA%\\GIMP\\3.0``.

GIMP from Flatpak (how most Debian 12 users get GIMP 3) keeps its profile in
``~/.var/app/org.gimp.GIMP/config/GIMP/3.0`` (:func:`flatpak_profile_dir`) and runs plug-ins
inside its sandbox: they see the home folder and the network (the Flathub manifest grants
``--filesystem=host`` and ``--share=network``) but cannot run the engine's venv, which needs the
host's libraries. So a sandboxed install (``install(..., engine_config=<the user's engine
folder>)``) also writes
``enhancelayer_client/engine_location.json``: the user's real engine folder (the sandbox's
``$XDG_CONFIG_HOME`` is its own) and ``can_start: false``; install.py then registers the engine
as a per-user service the plug-in only connects to over loopback.
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

NAME = "enhancelayer"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PLUGIN_SRC = HERE / NAME / f"{NAME}.py"
CLIENT_SRC = HERE.parent / "client"
CLIENT_PKG = "enhancelayer_client"


def profile_dir() -> Path:
    """GIMP 3's per-user folder on this system."""
    env = os.environ.get("GIMP3_DIRECTORY")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "GIMP" / "3.0"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP" / "3.0"
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "GIMP" / "3.0"


FLATPAK_APP = "org.gimp.GIMP"


def flatpak_profile_dir(home: Optional[Path] = None) -> Path:
    """GIMP 3's profile when GIMP runs from Flatpak (``~/.var/app/org.gimp.GIMP/...``)."""
    return (home or Path.home()) / ".var" / "app" / FLATPAK_APP / "config" / "GIMP" / "3.0"


def flatpak_installed(home: Optional[Path] = None) -> bool:
    """A Flatpak GIMP for this user: its data folder exists, or ``flatpak info`` knows it."""
    if ((home or Path.home()) / ".var" / "app" / FLATPAK_APP).is_dir():
        return True
    if home is None and shutil.which("flatpak"):
        import subprocess
        try:
            return subprocess.run(["flatpak", "info", FLATPAK_APP], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
    return False


def write_location(client: Path, config_dir: str) -> Path:
    """``engine_location.json`` for a sandboxed install (see the module docstring); the name
    is the client's own (``plugin/client/paths.py`` LOCATION), which reads it."""
    import json
    if str(REPO) not in sys.path:       # this script may run on its own; the core is the checkout's
        sys.path.insert(0, str(REPO))
    from plugin.client.paths import LOCATION

    path = client / LOCATION
    path.write_text(json.dumps({"config_dir": str(config_dir), "can_start": False}, indent=1) + "\n",
                    encoding="utf-8")
    return path


def plugin_dir(profile: str | os.PathLike | None = None) -> Path:
    return Path(profile).expanduser() if profile else profile_dir()


def _target(profile) -> Path:
    return plugin_dir(profile) / "plug-ins" / NAME


def write_catalog(client: Path, catalog: Optional[dict] = None,
                  engine: Optional[Sequence[str]] = None) -> Optional[Path]:
    """Save the engine's catalog beside the vendored client; see
    ``plugin/client/catalog.py`` install_snapshot_or_warn (None when no engine answered)."""
    if str(REPO) not in sys.path:       # this script may run on its own; the core is the checkout's
        sys.path.insert(0, str(REPO))
    from plugin.client.catalog import install_snapshot_or_warn

    written = install_snapshot_or_warn(str(client), str(REPO), catalog, engine, "GIMP",
                                       "the procedure gets a plain model-id argument and no option "
                                       "arguments — run install.py again once the engine is installed")
    return Path(written) if written else None


def install(profile_dir: str | os.PathLike | None = None,
            client_src: str | os.PathLike | None = None, catalog: Optional[dict] = None,
            engine: Optional[Sequence[str]] = None, engine_config: Optional[str] = None) -> Path:
    """Copy the plug-in (+ the vendored client and the engine's catalog, see
    :func:`write_catalog`) into ``<profile>/plug-ins/enhancelayer/``. ``engine_config``: the
    install is for a sandboxed GIMP (Flatpak) and this is the user's engine folder (written
    as ``engine_location.json``, see the module docstring).

    Replaces an earlier install atomically (built in a temporary folder beside it, then
    renamed). Returns the folder written; ``written(folder)`` lists its files."""
    client = Path(client_src) if client_src else CLIENT_SRC
    if not PLUGIN_SRC.is_file():
        raise FileNotFoundError(f"{PLUGIN_SRC} is missing: this checkout is incomplete")
    if not (client / "__init__.py").is_file():
        raise FileNotFoundError(f"{client} holds no client package (__init__.py missing)")
    dest = _target(profile_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=dest.parent))
    try:
        main = tmp / f"{NAME}.py"
        shutil.copy2(PLUGIN_SRC, main)
        mode = main.stat().st_mode
        main.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        for module in sorted(PLUGIN_SRC.parent.glob("*.py")):      # the plug-in's own modules
            if module != PLUGIN_SRC:
                shutil.copy2(module, tmp / module.name)
        shutil.copytree(client, tmp / CLIENT_PKG,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
        write_catalog(tmp / CLIENT_PKG, catalog, engine)
        if engine_config:
            write_location(tmp / CLIENT_PKG, engine_config)
        tmp.chmod(0o755)
        old = None
        if dest.exists():
            old = dest.with_name(f".{NAME}-old-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def written(folder: str | os.PathLike) -> list:
    """The files an install wrote (relative paths), for reports and tests."""
    root = Path(folder)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def uninstall(profile_dir: str | os.PathLike | None = None) -> Path | None:
    """Remove the plug-in folder; returns it, or None when nothing was installed."""
    dest = _target(profile_dir)
    if not dest.exists():
        return None
    shutil.rmtree(dest)
    return dest


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "uninstall":
        print(uninstall() or "not installed")
    else:
        d = install(sys.argv[1] if len(sys.argv) > 1 else None)
        print(d)
        for f in written(d):
            print("  ", f)
