"""Where the engine's discovery file, token and launcher live, without platformdirs.

This must name the same folder as ``engine.paths.config_dir()`` (which uses platformdirs);
``tests/server/test_client_paths.py`` checks that they agree. Order:

1. an explicit ``config_dir`` argument;
2. ``ENHANCELAYER_CONFIG_DIR`` (client only: GIMP in a chroot or a sandbox sees the user's
   config folder under another path);
3. ``ENHANCELAYER_HOME``/config (the engine's own override);
4. ``engine_location.json`` beside this package (:data:`LOCATION`): written by the installer
   for a sandboxed host (GIMP from Flatpak, whose ``$XDG_CONFIG_HOME`` is the sandbox's own),
   naming the user's real config folder and that the host cannot start the engine itself;
5. the per-user config folder + ``enhancelayer``:
   Linux/BSD ``$XDG_CONFIG_HOME`` or ``~/.config``; macOS ``~/Library/Application Support``;
   Windows ``%LOCALAPPDATA%``.
"""
from __future__ import annotations

import os
import sys

APP = "enhancelayer"
DISCOVERY = "engine.json"
TOKEN = "token"
LAUNCHER = "launcher.json"
LOG = "engine.log"
LOCATION = "engine_location.json"


def location(folder: str | None = None) -> dict:
    """The installer's ``engine_location.json`` beside this package ({} when there is none or
    it is unreadable): ``config_dir`` (the user's engine folder) and ``can_start`` (False in a
    sandbox: the engine runs as a per-user service and the host only connects)."""
    import json
    path = os.path.join(folder or os.path.dirname(os.path.abspath(__file__)), LOCATION)
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def config_dir(explicit: str | None = None) -> str:
    if explicit:
        return os.path.abspath(os.path.expanduser(str(explicit)))
    env = os.environ.get("ENHANCELAYER_CONFIG_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    home = os.environ.get("ENHANCELAYER_HOME")
    if home:
        return os.path.join(home, "config")
    placed = location().get("config_dir")
    if isinstance(placed, str) and placed:
        return os.path.abspath(os.path.expanduser(placed))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME", "")
        if not base.strip():
            base = os.path.expanduser("~/.config")
    return os.path.join(base, APP)
