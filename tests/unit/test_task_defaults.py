"""A task's own option defaults (``TaskInfo.defaults``): a repair starts at strength 100.

Descreen at the table's 60 % kept 40 % of the halftone dots, restore-dust 40 % of each speck,
and the restore chain's group 40 % of the unrestored print. The table keeps ONE declaration
per option (60 for the networks); a task states where it starts elsewhere, and every entry
point fills in that value for a job that does not give the option: the pipeline, the HTTP
header, the CLI (a real subprocess below) and the catalog rows the dialogs read.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine import tasks
from engine.errors import BadInput
from engine.pipeline import EnhanceOptions
from engine.server import wire

REPO = Path(__file__).resolve().parents[2]
REPAIRS = ("restore-dust", "restore-color", "descreen", "deblur-motion", "colorize", "restore")


@pytest.mark.parametrize("task_id", REPAIRS)
def test_a_repair_starts_at_full_strength_everywhere(task_id: str) -> None:
    task = tasks.get(task_id)
    assert tasks.option_table(task)["strength"].default == 100.0
    assert tasks.job_options(task_id)["strength"].default == 100.0
    assert task.row()["defaults"] == {"strength": 100.0}
    assert EnhanceOptions(model=task_id).strength == 1.0              # pipeline units
    assert EnhanceOptions(model=task_id, strength=0.3).strength == 0.3    # given wins
    hdr = wire.JobHeader(model=task_id, width=4, height=4, channels=3, dtype="u8")
    assert hdr.option_values()["strength"] == 100.0
    assert wire.JobHeader(model=task_id, width=4, height=4, channels=3, dtype="u8",
                          strength=25).option_values()["strength"] == 25


@pytest.mark.parametrize("task_id", ["denoise", "sharpen", "deblur-focus", "photo-x2"])
def test_other_tasks_keep_the_table_default(task_id: str) -> None:
    assert tasks.get(task_id).row()["defaults"] == {}
    assert EnhanceOptions(model=task_id).strength == pytest.approx(0.6)
    assert wire.JobHeader(model=task_id, width=4, height=4, channels=3,
                          dtype="u8").option_values()["strength"] == 60.0


def test_the_table_keeps_one_declaration_and_says_where_tasks_differ() -> None:
    strength = next(o for o in tasks.all_options() if o.name == "strength")
    assert strength.default == 60.0          # what the networks (and GIMP's registration) start at
    text = tasks.default_text(strength)
    assert text.startswith("60; 100 for ") and all(t in text for t in REPAIRS)
    sens = next(o for o in tasks.all_options() if o.name == "sensitivity")
    assert tasks.default_text(sens) == "0.5"
    schema = wire.JobHeader.model_json_schema()["properties"]["strength"]
    assert "100 for restore-dust" in schema["description"]


def test_an_unknown_id_gets_the_table_defaults_and_is_refused_by_name_later() -> None:
    assert tasks.job_options("no-such-task")["strength"].default == 60.0


def test_a_default_for_an_option_the_task_does_not_take_or_out_of_range_is_a_bug() -> None:
    fill = tasks.get("restore-fill")             # takes no strength
    bad = replace(fill, info=replace(fill.info, defaults=(("strength", 100.0),)))
    with pytest.raises(AssertionError, match="does not take"):
        tasks.option_table(bad)
    dust = tasks.get("restore-dust")
    wild = replace(dust, info=replace(dust.info, defaults=(("strength", 150.0),)))
    with pytest.raises(BadInput, match="strength must be 0-100"):
        tasks.option_table(wild)


def _print(path: Path) -> None:
    """A gray halftone print: a smooth picture under a 45-degree dot screen of period 6 px."""
    import cv2

    y, x = np.mgrid[0:96, 0:96].astype(np.float32)
    picture = 0.5 + 0.3 * np.sin(x / 15.0) * np.cos(y / 21.0)
    k = 2 * np.pi / (6 * np.sqrt(2))
    screen = np.cos((x + y) * k) * np.cos((x - y) * k)
    img = np.clip(picture + 0.25 * screen, 0, 1)
    cv2.imwrite(str(path), np.rint(img * 255).astype(np.uint8))


def _cli(*args: object) -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli", "run", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_cli_descreen_without_strength_removes_all_of_the_screen(tmp_path: Path) -> None:
    """`enhancelayer run print.png -m descreen` is the full repair (it kept 40 % of the dots)."""
    import cv2

    src = tmp_path / "print.png"
    _print(src)
    for name, extra in (("default", ()), ("full", ("--strength", "100")), ("sixty", ("--strength", "60"))):
        _cli(src, "-m", "descreen", "-o", tmp_path / f"{name}.png", *extra)
    read = {n: cv2.imread(str(tmp_path / f"{n}.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
            for n in ("default", "full", "sixty")}
    assert np.array_equal(read["default"], read["full"])
    assert np.abs(read["default"] - read["sixty"]).mean() > 1.0


def test_help_says_which_tasks_take_an_option_in_the_shorter_wording() -> None:
    from engine import cli

    table = {o.name: o for o in tasks.all_options()}
    assert cli._used_by(table["strength"]) == "all but restore-fill, restore-stain"
    assert cli._used_by(table["sensitivity"]) == "restore-dust"
    assert cli._used_by(table["feather"]) == ""            # every task that blends
