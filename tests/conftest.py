"""Shared fixtures.

Models are imported once (``enhancelayer import`` is idempotent) into the user's normal
models folder, so a developer's or CI's earlier import is reused; tests that write config or
tokens use their own temporary ENHANCELAYER_HOME and point ENHANCELAYER_MODELS at that folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


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
