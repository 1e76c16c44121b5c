"""The soak (issue 17, harness in soak.py): hosts, real jobs, kill -9 of the engine at random
moments, every output checked. A short run in the default suite; the long one (>= 15 min,
>= 20 kills, >= 1,000 jobs) is marked slow and runs in .ci/run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .soak import Soak, write_results


def _soak(tmp_path: Path, monkeypatch, models_dir: Path, **kw) -> object:
    home = tmp_path / "home"
    monkeypatch.setenv("ENHANCELAYER_HOME", str(home))
    monkeypatch.setenv("ENHANCELAYER_MODELS", str(models_dir))
    monkeypatch.delenv("ENHANCELAYER_TOKEN", raising=False)
    soak = Soak(home, **kw)
    try:
        rep = soak.run()
    finally:
        soak.shutdown()
    print(rep.summary())
    return rep


def test_short_soak(tmp_path, monkeypatch, models_dir):
    rep = _soak(tmp_path, monkeypatch, models_dir, hosts=2, seconds=50, kill_every=(8.0, 14.0),
                calm_seconds=12)
    assert not rep.failures, rep.failures
    assert rep.kills >= 2 and rep.jobs_done >= 40 and rep.malformed >= 3 and rep.status_5xx == 0


@pytest.mark.slow
def test_long_soak(tmp_path, monkeypatch, models_dir):
    minutes = float(os.environ.get("ENHANCELAYER_SOAK_MINUTES", "15"))
    rep = _soak(tmp_path, monkeypatch, models_dir, hosts=3, seconds=minutes * 60, kill_every=(8.0, 30.0),
                calm_seconds=60)
    if os.environ.get("ENHANCELAYER_WRITE_RESULTS"):
        write_results(rep, Path(__file__).resolve().parents[2] / "bench" / "results", minutes, 3, 17)
    assert not rep.failures, rep.failures
    if minutes >= 15:
        assert rep.kills >= 20 and rep.jobs_done >= 1000, rep.summary()
    assert rep.status_5xx == 0
