"""Install the EnhanceLayer plug-in into a Krita profile (standard library only).

install.py calls ``install(client_src=<repo>/plugin/client)`` and ``uninstall()``.

What ``install`` writes:
- ``<pykrita>/enhancelayer.desktop`` and ``<pykrita>/enhancelayer/`` (this folder's package),
- ``<pykrita>/enhancelayer/enhancelayer_client/`` (a copy of plugin/client, so the plug-in
  needs nothing from the repo or a venv at run time), with ``engine_catalog.json`` in it: the
  engine's catalog (``<repo>/.venv/bin/enhancelayer tasks --json``), so the docker shows the
  model list and its option widgets before the engine has answered (the live catalog
  replaces it as soon as it does); skipped with a warning when no engine is installed,
- ``enable_enhancelayer=true`` in the ``[python]`` group of ``kritarc``; every other line of
  kritarc is kept as it was (Krita's own settings, other plug-ins).

``<pykrita>`` is ``$XDG_DATA_HOME/krita/pykrita`` (default ``~/.local/share/krita/pykrita``)
on Linux, ``%APPDATA%/krita/pykrita`` on Windows, ``~/Library/Application Support/krita/pykrita``
on macOS; ``profile_dir`` overrides the ``krita`` folder (tests use it).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

NAME = "enhancelayer"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_CLIENT = HERE.parent / "client"
ENABLE_KEY = f"enable_{NAME}"


def profile_root() -> Path:
    """Krita's per-user resource folder (the one holding ``pykrita``)."""
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "krita"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "krita"
    base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base) / "krita"


def kritarc_path() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "kritarc"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def set_enabled(kritarc: Path, enabled: bool) -> bool:
    """Set (or, for ``enabled=False``, remove) our key in ``[python]``, keeping all other
    lines byte for byte. Returns True when the file changed."""
    old = kritarc.read_text(encoding="utf-8", errors="surrogateescape") if kritarc.exists() else ""
    nl = "\r\n" if "\r\n" in old else "\n"
    lines = old.splitlines()
    out: list[str] = []
    section = None
    found_python = False
    done = False
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            if section == "python" and not done and enabled:
                # end of [python] without our key: add it before the next group
                while out and not out[-1].strip():
                    out.pop()
                out.append(f"{ENABLE_KEY}=true")
                out.append("")
                done = True
            section = s[1:-1]
            found_python = found_python or section == "python"
            out.append(line)
            continue
        if section == "python" and s.split("=", 1)[0].strip() == ENABLE_KEY:
            if enabled and not done:
                out.append(f"{ENABLE_KEY}=true")
                done = True
            continue  # duplicates, or removal
        out.append(line)
    if enabled and not done:
        if section == "python":
            out.append(f"{ENABLE_KEY}=true")
        else:
            if out and out[-1].strip():
                out.append("")
            out += ["[python]", f"{ENABLE_KEY}=true"]
    new = nl.join(out) + (nl if out else "")
    if new != old:
        _atomic_write(kritarc, new)
        return True
    return False


def _copy_tree(src: Path, dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    tmp = dst.with_name(f".{dst.name}.new")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=ignore)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)


def write_catalog(client: Path, catalog: Optional[dict] = None,
                  engine: Optional[Sequence[str]] = None) -> Optional[Path]:
    """The catalog snapshot the docker starts from, beside the vendored client (None, with a
    warning, when no engine answered): ``plugin/client/catalog.py`` install_snapshot_or_warn."""
    if str(REPO) not in sys.path:       # this script may run on its own; the core is the checkout's
        sys.path.insert(0, str(REPO))
    from plugin.client.catalog import install_snapshot_or_warn

    written = install_snapshot_or_warn(str(client), str(REPO), catalog, engine, "Krita",
                                       "the docker lists the models once the engine answers")
    return Path(written) if written else None


def install(profile_dir: Optional[os.PathLike] = None, client_src: Optional[os.PathLike] = None,
            kritarc: Optional[os.PathLike] = None, catalog: Optional[dict] = None,
            engine: Optional[Sequence[str]] = None) -> dict:
    """Copy the plug-in (+ the vendored client, the engine's catalog and the actions file with
    the default shortcuts) and enable it. Returns what was written: ``{"pykrita": dir,
    "desktop": file, "package": dir, "client": dir, "catalog": file or "", "actions": file,
    "kritarc": file}``. ``catalog``/``engine``: see
    :func:`write_catalog`. Running it again replaces the plug-in (an upgrade) and leaves
    kritarc as it is."""
    client = Path(client_src) if client_src else DEFAULT_CLIENT
    if not (client / "__init__.py").exists():
        raise FileNotFoundError(f"the EnhanceLayer client is not at {client} (expected plugin/client)")
    pykrita = (Path(profile_dir) if profile_dir else profile_root()) / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    desktop = pykrita / f"{NAME}.desktop"
    shutil.copyfile(HERE / f"{NAME}.desktop", desktop)
    pkg = pykrita / NAME
    _copy_tree(HERE / NAME, pkg)
    vendored = pkg / "enhancelayer_client"
    _copy_tree(client, vendored)
    snapshot = write_catalog(vendored, catalog, engine)
    actions = _actions_file(pykrita.parent)
    actions.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / f"{NAME}.action", actions)
    rc = Path(kritarc) if kritarc else kritarc_path()
    set_enabled(rc, True)
    return {"pykrita": str(pykrita), "desktop": str(desktop), "package": str(pkg),
            "client": str(vendored), "catalog": str(snapshot or ""), "actions": str(actions), "kritarc": str(rc)}


def _actions_file(profile: Path) -> Path:
    """Where Krita reads a plug-in's action declarations (default shortcuts): the resource
    folder's ``actions/`` (Krita's ``kis_actions`` resource type)."""
    return profile / "actions" / f"{NAME}.action"


def uninstall(profile_dir: Optional[os.PathLike] = None, kritarc: Optional[os.PathLike] = None) -> list:
    """Remove what ``install`` wrote and the kritarc key; returns the removed paths."""
    pykrita = (Path(profile_dir) if profile_dir else profile_root()) / "pykrita"
    removed = []
    desktop = pykrita / f"{NAME}.desktop"
    if desktop.exists():
        desktop.unlink()
        removed.append(str(desktop))
    pkg = pykrita / NAME
    if pkg.exists():
        shutil.rmtree(pkg)
        removed.append(str(pkg))
    actions = _actions_file(pykrita.parent)
    if actions.exists():
        actions.unlink()
        removed.append(str(actions))
    rc = Path(kritarc) if kritarc else kritarc_path()
    if rc.exists() and set_enabled(rc, False):
        removed.append(f"{rc} [{ENABLE_KEY}]")
    return removed


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--uninstall":
        print("\n".join(uninstall()) or "nothing to remove")
    else:
        for k, v in install().items():
            print(f"{k}: {v}")
