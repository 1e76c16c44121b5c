"""Where the engine's discovery file, token and launcher live, without platformdirs.

This must name the same folder as ``engine.paths.config_dir()`` (which uses platformdirs);
``tests/server/test_client_paths.py`` checks that they agree. Order:

1. an explicit ``config_dir`` argument;
2. ``ENHANCELAYER_CONFIG_DIR`` (client only: GIMP in a chroot or a sandbox sees the user's
   config folder under another path);
3. ``ENHANCELAYER_HOME``/config (the engine's own override);
4. the per-user config folder + ``enhancelayer``:
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


def config_dir(explicit: str | None = None) -> str:
    if explicit:
        return os.path.abspath(os.path.expanduser(str(explicit)))
    env = os.environ.get("ENHANCELAYER_CONFIG_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    home = os.environ.get("ENHANCELAYER_HOME")
    if home:
        return os.path.join(home, "config")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME", "")
        if not base.strip():
            base = os.path.expanduser("~/.config")
    return os.path.join(base, APP)
