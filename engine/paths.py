"""Where EnhanceLayer keeps its files (per user, never next to the user's images).

``ENHANCELAYER_HOME`` overrides the data root (tests and portable installs use it).
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "enhancelayer"


def data_dir() -> Path:
    env = os.environ.get("ENHANCELAYER_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP, appauthor=False))


def models_dir() -> Path:
    """Converted weights + manifests written by ``enhancelayer import``."""
    return Path(os.environ.get("ENHANCELAYER_MODELS") or data_dir() / "models")


def user_models_dir() -> Path:
    """Where users drop their own .onnx / .pth / .safetensors models."""
    return data_dir() / "user-models"


def cache_dir() -> Path:
    """Downloaded wheels (re-used so a second import is offline and fast)."""
    env = os.environ.get("ENHANCELAYER_HOME")
    return Path(env) / "cache" if env else Path(platformdirs.user_cache_dir(APP, appauthor=False))


def config_dir() -> Path:
    """Token and discovery file of the local engine (shared by both plug-ins)."""
    env = os.environ.get("ENHANCELAYER_HOME")
    return Path(env) / "config" if env else Path(platformdirs.user_config_dir(APP, appauthor=False))


def own_models_dir() -> Path:
    """Our own trained weights (``denoise``, ``sharpen``) and their manifest: package data.

    They ship inside the ``engine`` package (engine/data/trained/), so an engine installed from a
    wheel or with a non-editable ``pip install .`` finds them as an editable checkout does.
    """
    return Path(__file__).resolve().parent / "data" / "trained"


def write_replacing(path: Path, text: str) -> None:
    """Write a small state file (the speed book, the precision decisions) so that readers see the
    old or the new content, never half: a ``<name>.<pid>.tmp`` beside it, then os.replace. A
    writer killed between the two (the engine is SIGKILLed, the soak test does it on purpose)
    leaves its temp file behind; the next writer removes those of processes that are gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(path.name + ".*.tmp"):
        pid = stale.name[len(path.name) + 1:-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                stale.unlink()
            except OSError:
                pass
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:             # exists, owned by someone else (or no way to ask): leave its file
        return True
    return True
