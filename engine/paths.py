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
