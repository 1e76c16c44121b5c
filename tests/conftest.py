"""Shared fixtures.

Models are imported once (``enhancelayer import`` is idempotent) into the user's normal
models folder, so a developer's or CI's earlier import is reused; tests that write config or
tokens use their own temporary ENHANCELAYER_HOME and point ENHANCELAYER_MODELS at that folder.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def bench_module(name: str):
    """A benchmark script of bench/ as a module: tests reuse its damage / printing models and
    metrics (``bench_module("quality_fill").case(...)``), so a test and the figure it guards
    measure the same thing."""
    key = f"bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod          # dataclasses look their module up while the script runs
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[key]
        raise
    return mod


def run_task(task_id: str, rgb: np.ndarray, values: dict, cancel=None, progress=None):
    """A task run directly on ``rgb`` (no pipeline): (TaskOutput, its rows as a list)."""
    from engine.tasks import TaskRequest, get

    req = TaskRequest(rgb=lambda y0, y1, x0, x1: rgb[y0:y1, x0:x1], height=rgb.shape[0], width=rgb.shape[1],
                      values=values, cancel=cancel, progress=progress)
    out = get(task_id).run(req)
    return out, list(out.rows)


@contextlib.contextmanager
def studio_engine(home: Path, models: Path, *args: str) -> Iterator[dict]:
    """A studio engine for the host tests: ``serve --port 0 --init-tls`` (+ ``args``) with its own
    HOME; yields its discovery info (url, fingerprint, ...) plus ``token`` and ``home``."""
    env = dict(os.environ, ENHANCELAYER_HOME=str(home), ENHANCELAYER_MODELS=str(models))
    env.pop("ENHANCELAYER_CONFIG_DIR", None)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "serve.out", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--init-tls", *args],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        info: dict = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and not info:
            try:
                got = json.loads((home / "config" / "engine.json").read_text())
                info = got if got.get("pid") == proc.pid else {}
            except (OSError, ValueError):
                time.sleep(0.3)
        assert info, (home / "serve.out").read_text()[-3000:]
        yield dict(info, token=(home / "config" / "token").read_text().strip(), home=home)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The folder holding imported models; imports the wheel models once if needed."""
    from engine import paths
    from engine.models.importer import import_models

    import_models(verify=False, quiet=True)  # no-op when already imported
    return paths.models_dir()


@pytest.fixture(scope="session")
def models_installed(models_dir: Path) -> Path:
    return models_dir


@pytest.fixture()
def engine_home(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away ENHANCELAYER_HOME that still sees the imported models."""
    monkeypatch.setenv("ENHANCELAYER_MODELS", str(models_dir))
    monkeypatch.setenv("ENHANCELAYER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _skimage_photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA astronaut photo (public domain), 512x512 RGB uint8, bundled in scikit-image."""
    return _skimage_photo("astronaut")


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    """Coffee cup photo (CC0), 400x600 RGB uint8, bundled in scikit-image."""
    return _skimage_photo("coffee")


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    """Chelsea the cat (CC0), 300x451 RGB uint8, bundled in scikit-image."""
    return _skimage_photo("chelsea")
