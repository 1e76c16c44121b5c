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

Profile folder: ``$GIMP3_DIRECTORY`` if set (GIMP's own override), else one per GIMP 3 minor
version under Linux/BSD ``$XDG_CONFIG_HOME/GIMP/`` (``~/.config/GIMP/3.0``, ``~/.config/GIMP/3.2``),
macOS ``~/Library/Application Support/GIMP/``, Windows ``%APPDATA%\\GIMP\\``. GIMP 3.2 reads
``GIMP/3.2``, not ``GIMP/3.0``; at its first start it copies the newest older profile, plug-ins
included (checked with GIMP 3.2.6), but a later re-install must reach the copy too. So
:func:`profile_dirs`: every ``GIMP/3.N`` profile that exists, or when none does, the one of the
newest GIMP 3 on PATH (``gimp-3.N`` / ``gimp-console-3.N``), else ``3.0``. A profile that does
not exist yet is never made beside an older one: that would stop GIMP from migrating the user's
settings into it.

GIMP from Flatpak (how most Debian 12 users get GIMP 3) keeps its profile in
``~/.var/app/org.gimp.GIMP/config/GIMP/3.N`` (:func:`flatpak_profile_dirs`) and runs plug-ins
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


def _gimp_base() -> Path:
    """The folder that holds one profile per GIMP version (``GIMP/3.0``, ``GIMP/3.2``, ...)."""
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "GIMP"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP"
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "GIMP"


def profile_dir(version: str = "3.0") -> Path:
    """GIMP 3's per-user folder on this system for one minor ``version``."""
    env = os.environ.get("GIMP3_DIRECTORY")
    if env:
        return Path(env).expanduser()
    return _gimp_base() / version


def _minor(name: str) -> Optional[int]:
    """3.N -> N for a profile folder or an executable's version suffix; None otherwise."""
    head, dot, tail = name.partition(".")
    return int(tail) if head == "3" and dot and tail.isdigit() else None


def gimp_versions_on_path(path: Optional[str] = None) -> list[str]:
    """The GIMP 3 minor versions whose executables (``gimp-3.N``, ``gimp-console-3.N``) are on
    PATH, oldest first."""
    found: set[int] = set()
    for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        try:
            names = os.listdir(folder) if folder else []
        except OSError:
            continue
        for name in names:
            for prefix in ("gimp-console-", "gimp-"):
                n = _minor(name[len(prefix):]) if name.startswith(prefix) else None
                if n is not None:
                    found.add(n)
    return [f"3.{n}" for n in sorted(found)]


def profile_dirs(base: Optional[Path] = None, on_path: Optional[Sequence[str]] = None) -> list[Path]:
    """Every GIMP 3 profile the plug-in goes into (see the module docstring), oldest first."""
    env = os.environ.get("GIMP3_DIRECTORY")
    if env and base is None:
        return [Path(env).expanduser()]
    root = base if base is not None else _gimp_base()
    found = root.iterdir() if root.is_dir() else iter(())
    existing = sorted((d for d in found if d.is_dir() and _minor(d.name) is not None),
                      key=lambda d: _minor(d.name) or 0)
    if existing:
        return existing
    versions = list(on_path) if on_path is not None else gimp_versions_on_path()
    return [root / (versions[-1] if versions else "3.0")]


FLATPAK_APP = "org.gimp.GIMP"


def flatpak_profile_dirs(home: Optional[Path] = None) -> list[Path]:
    """GIMP 3's profiles when GIMP runs from Flatpak (``~/.var/app/org.gimp.GIMP/config/GIMP/3.N``):
    the ones that exist, else ``3.0`` (a Flatpak's version is not on PATH; a later GIMP copies
    that profile at its first start)."""
    return profile_dirs((home or Path.home()) / ".var" / "app" / FLATPAK_APP / "config" / "GIMP", on_path=())


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


def install_all(profiles: Optional[Sequence[Path]] = None, **kw) -> list[Path]:
    """:func:`install` into every profile of :func:`profile_dirs` (or ``profiles``); the
    folders written."""
    return [install(p, **kw) for p in (profile_dirs() if profiles is None else profiles)]


def uninstall_all(profiles: Optional[Sequence[Path]] = None) -> list[Path]:
    """:func:`uninstall` from every profile (or ``profiles``); the folders removed."""
    gone = [uninstall(p) for p in (profile_dirs() if profiles is None else profiles)]
    return [g for g in gone if g is not None]


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
        print("\n".join(map(str, uninstall_all())) or "not installed")
    else:
        for d in ([install(sys.argv[1])] if len(sys.argv) > 1 else install_all()):
            print(d)
            for f in written(d):
                print("  ", f)
