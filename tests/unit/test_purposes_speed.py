"""The task-first catalog (engine/purposes.py) and the speed book behind the time estimates
(engine/speed.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine import purposes, speed, tasks


def test_every_offered_task_serves_a_declared_purpose_in_plain_words() -> None:
    declared = {p.id for p in purposes.PURPOSES}
    offered = [t for t in tasks.all_tasks() if t.info.purpose]
    hidden = [t.info.id for t in tasks.all_tasks() if not t.info.purpose]
    assert hidden == ["identity"], "only plumbing is kept out of the dialogs"
    for t in offered:
        assert t.info.purpose in declared, t.info.id
        assert t.info.label and t.info.label != t.info.id, t.info.id
        d = t.info.description
        assert d.endswith(".") and 20 <= len(d) <= 200, (t.info.id, d)
        assert t.info.id not in d and "waifu2x" not in d.lower() and "esrgan" not in d.lower(), (t.info.id, d)
    used = {t.info.purpose for t in offered}
    # every purpose but the user models' has a task today (colorize etc. add theirs when they land)
    assert declared - used <= {purposes.CUSTOM}, declared - used


def test_labels_unique_within_a_purpose_and_photo_models_apart_from_illustration() -> None:
    by: dict[str, list[str]] = {}
    for t in tasks.all_tasks():
        if t.info.purpose:
            by.setdefault(t.info.purpose, []).append(t.info.label)
            if t.info.purpose == "illustration":
                assert not t.info.photo, t.info.id
            elif t.info.purpose != purposes.CUSTOM:
                assert t.info.photo, t.info.id
    for p, labels in by.items():
        assert len(labels) == len(set(labels)), (p, labels)


def test_published_carries_purposes_labels_and_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENHANCELAYER_HOME", str(tmp_path))
    body = tasks.published()
    assert [p["id"] for p in body["purposes"]] == [p.id for p in purposes.PURPOSES]
    assert body["engine"]["gpu"] == ""                      # no GPU runtime on this machine
    row = next(r for r in body["models"] if r["id"] == "photo-x4")
    assert row["purpose"] == "enlarge" and row["label"] and row["description"]
    assert row["ms_per_mp"] == row["ms_per_mp_cpu"] and row["speed_basis"] == "catalog"


def test_speed_book_measures_calibrates_and_survives_a_restart(tmp_path: Path) -> None:
    f = tmp_path / "speed.json"
    book = speed.SpeedBook(f)
    assert book.estimate("photo-x2", 3000.0) == (3000.0, "catalog")
    book.record("photo-x2", "auto", 0.5, 3.0, 3000.0)       # 6000 ms/MP: twice as slow as the catalog
    assert book.estimate("photo-x2", 3000.0) == (6000.0, "measured")
    # another task, not run here: the catalog figure times this machine's factor
    assert book.estimate("photo-x4", 160_000.0) == (320_000.0, "calibrated")
    book.record("photo-x2", "auto", 0.5, 1.0, 3000.0)       # 2000 ms/MP: the average follows
    assert book.estimate("photo-x2", 3000.0)[0] == pytest.approx(0.5 * 6000 + 0.5 * 2000)
    again = speed.SpeedBook(f)                               # a restarted engine reads the file
    assert again.estimate("photo-x2", 3000.0) == book.estimate("photo-x2", 3000.0)
    # another device is measured apart
    assert again.estimate("photo-x2", 3000.0, device="cuda") == (3000.0, "catalog")


def test_speed_book_ignores_tiny_jobs_and_damaged_files(tmp_path: Path) -> None:
    f = tmp_path / "speed.json"
    book = speed.SpeedBook(f)
    book.record("photo-x2", "auto", 0.001, 5.0, 3000.0)     # mostly fixed cost: not a speed
    assert not f.exists() and book.estimate("photo-x2", 3000.0)[1] == "catalog"
    f.write_text("{not json")
    assert speed.SpeedBook(f).estimate("photo-x2", 3000.0) == (3000.0, "catalog")
    f.write_text(json.dumps({"photo-x2@auto": {"ms_per_mp": -1, "catalog": 3000}}))
    assert speed.SpeedBook(f).estimate("photo-x2", 3000.0) == (3000.0, "catalog")
    f.write_text(json.dumps({"a@auto": {"ms_per_mp": 1e9, "catalog": 1.0}}))   # an absurd ratio is clamped
    assert speed.SpeedBook(f).factor() == speed.FACTOR_RANGE[1]


def test_a_pipeline_run_feeds_the_book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's own runs (CLI, server, batch: all go through the pipeline) are what the
    estimates learn from; restore-color is classical, so no weights are needed."""
    monkeypatch.setenv("ENHANCELAYER_HOME", str(tmp_path))
    from engine.pipeline import EnhanceOptions, enhance

    rng = np.random.default_rng(0)
    img = (rng.random((300, 300, 3)) * 200 + 20).astype(np.uint8)
    enhance(img, EnhanceOptions(model="restore-color"))
    ms, basis = speed.book().estimate("restore-color", tasks.get("restore-color").info.ms_per_mp_cpu)
    assert basis == "measured" and ms > 0
    assert (tmp_path / "cache" / speed.FILE).exists()
    row = next(r for r in tasks.published()["models"] if r["id"] == "restore-color")
    assert row["speed_basis"] == "measured" and row["ms_per_mp"] == round(ms, 1)


def test_progress_says_loading_the_model_before_the_first_tile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big network takes seconds to load: the first progress message says so instead of a
    frozen-looking 0 %; the tiles follow (denoise: our own weights, always installed)."""
    monkeypatch.setenv("ENHANCELAYER_HOME", str(tmp_path))
    from engine.pipeline import EnhanceOptions, enhance

    seen: list[tuple[int, int, str]] = []
    img = (np.random.default_rng(1).random((96, 96, 3)) * 255).astype(np.uint8)
    enhance(img, EnhanceOptions(model="denoise"), progress=lambda d, t, m: seen.append((d, t, m)))
    assert seen[0] == (0, 0, "loading the model"), seen[:3]
    assert seen[-1][0] == seen[-1][1] > 0, seen[-3:]


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """The engine SIGKILLed between writing speed.json's temp file and renaming it leaves the
    temp file; the next save removes those of processes that are gone (not its own, not a live
    one's), so a soak of engine kills leaves no stray files."""
    import subprocess
    import sys as _sys

    from engine.paths import write_replacing

    target = tmp_path / "speed.json"
    dead = subprocess.run([_sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"speed.json.{dead}.tmp"
    stale.write_text("{")
    live = tmp_path / "speed.json.1.tmp"            # pid 1 is alive: its file is left alone
    live.write_text("{")
    write_replacing(target, '{"a": 1}')
    assert json.loads(target.read_text()) == {"a": 1}
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speed.json", "speed.json.1.tmp"]
