"""The plug-in core's chain (plugin/client/chain.py): a chain task the engine publishes
("Restore old photo") is planned as its ticked steps, in the engine's order, each checked like
any job, the finishing options on the last step only; the steps run one after the other, each
on the previous result, with one progress and one cancel. Planned from the engine's own
catalog (tasks.published), so a step the engine renames or drops fails here."""
from __future__ import annotations

import copy
import types
from pathlib import Path
from typing import Any

import pytest

from engine import tasks
from engine.tasks import restore_chain
from tests.unit.test_plugin_core import ec

chain, options = ec.chain, ec.options


@pytest.fixture(scope="module")
def cat() -> dict:
    """The engine's catalog (the chain's steps are classical or own-trained: always installed)."""
    return tasks.published()


def _plan(cat: dict, output: str = "masked", **values: Any) -> Any:
    return options.plan(cat, options.Request(model="restore", output=output, values=values))


def test_the_engine_publishes_the_chain_it_runs(cat: dict) -> None:
    row = next(r for r in cat["models"] if r["id"] == "restore")
    assert [(s["step"], s["model"], s["strength"] / 100) for s in row["chain"]] == list(restore_chain.STEPS)
    assert all(s["label"] for s in row["chain"])
    assert all(r["chain"] == [] for r in cat["models"] if r["id"] != "restore")


def test_the_ticked_steps_in_the_engine_order_finishing_options_last(cat: dict) -> None:
    plan = _plan(cat, strength=80, steps=["denoise", "dust"], grain=20, keep_color=True, review=True)
    assert [s.name for s in plan.steps] == ["dust", "denoise"]
    first, last = (s.plan.submit for s in plan.steps)
    assert first == {"model": "restore-dust", "strength": 100.0}       # a repair keeps the size: no scale
    assert last == {"model": "denoise", "strength": 60.0, "grain": 20.0, "keep_color": True, "review": True,
                    "scale": 1.0}
    assert [chain.step_layer_name(i, s) for i, s in enumerate(plan.steps)] == \
        ["1 · Dust & scratches", "2 · Noise"]
    assert chain.group_opacity(plan.request, plan.row) == 80.0


def test_the_group_opacity_is_the_chain_own_default_when_no_strength_is_given(cat: dict) -> None:
    """The steps run at their own strengths, so the group starts fully opaque (the engine's
    one-job chain starts at strength 100 too): at the table's 60 % the group showed 40 % of the
    unrestored print through."""
    plan = _plan(cat)
    assert plan.row["defaults"] == {"strength": 100.0}
    assert chain.group_opacity(options.Request(model="restore"), plan.row) == 100.0
    # the row's own default is what is read (not a constant that happens to match)
    assert chain.group_opacity(options.Request(model="restore"), {**plan.row, "defaults": {"strength": 90.0}}) == 90.0
    assert chain.group_opacity(options.Request(model="restore", values={"strength": 150}), plan.row) == 100.0


def test_the_engine_default_steps_when_none_are_given_and_one_job_for_a_document(cat: dict) -> None:
    assert [s.name for s in _plan(cat).steps] == list(restore_chain.DEFAULT_STEPS)
    assert _plan(cat, output="document").steps == []
    assert options.plan(cat, options.Request(model="denoise")).steps == []


def test_no_step_or_a_missing_step_model_is_said_before_any_pixel(cat: dict) -> None:
    with pytest.raises(ec.UserError, match="at least one step"):
        _plan(cat, steps=[])
    broken = copy.deepcopy(cat)
    next(r for r in broken["models"] if r["id"] == "denoise")["installed"] = False
    with pytest.raises(ec.UserError, match="denoise"):
        _plan(broken, steps=["dust", "denoise"])
    assert [s.name for s in _plan(broken, steps=["dust"]).steps] == ["dust"]


def test_each_step_runs_on_the_previous_result_with_one_progress(cat: dict) -> None:
    plan = _plan(cat, steps=["dust", "color", "denoise"])
    seen: list = []
    fed: list = []

    def run_one(data: bytes, step_plan: Any, each: Any) -> Any:
        fed.append((step_plan.submit["model"], data))
        each(0.5, "half")
        return types.SimpleNamespace(pixels=data + step_plan.submit["model"][:1].encode(), info={"note": "ok"})

    results = chain.run_steps(b"P", plan.steps, run_one, lambda f, m: seen.append((f, m)) or True)
    assert fed == [("restore-dust", b"P"), ("restore-color", b"Pr"), ("denoise", b"Prr")]
    assert [r.pixels for r in results] == [b"Pr", b"Prr", b"Prrd"]
    assert [round(f, 3) for f, _m in seen] == [0.167, 0.5, 0.833]
    assert seen[-1][1] == "Noise (3/3): half"
    assert chain.step_notes(plan.steps, results) == "dust: ok; color: ok; denoise: ok"


def test_a_failed_or_cancelled_step_stops_the_chain(cat: dict) -> None:
    plan = _plan(cat, steps=["dust", "color", "denoise"])
    ran: list = []

    def run_one(data: bytes, step_plan: Any, each: Any) -> Any:
        ran.append(step_plan.submit["model"])
        if step_plan.submit["model"] == "restore-color":
            raise ec.Cancelled("cancelled")
        return types.SimpleNamespace(pixels=data, info={})

    with pytest.raises(ec.Cancelled):
        chain.run_steps(b"P", plan.steps, run_one)
    assert ran == ["restore-dust", "restore-color"]


def test_the_krita_and_gimp_plugins_have_no_step_list_of_their_own() -> None:
    repo = Path(__file__).resolve().parents[2]
    for f in (repo / "plugin/krita/enhancelayer/core.py", repo / "plugin/gimp/enhancelayer/enhancelayer.py"):
        text = f.read_text()
        assert "plan.steps" in text, f
        for _step, model, _strength in restore_chain.STEPS:      # no step's model id as a literal
            assert f'"{model}"' not in text, (f, model)


def test_the_docker_says_a_group_was_added() -> None:
    said = ec.output.done_message("Enhanced · restore · 60%", False, "color: cast removed", steps=3)
    assert said == "Added layer group “Enhanced · restore · 60%” (3 steps, one layer each). Color: cast removed."


def test_the_colorize_step_takes_the_hints_layer_and_only_it_does(cat: dict) -> None:
    row = next(r for r in cat["models"] if r["id"] == "restore")
    assert options.takes_hints(row) and not row["needs_hints"]          # the dialogs offer the layer
    plan = _plan(cat, steps=["dust", "colorize", "denoise"])
    assert [s.name for s in plan.steps] == ["dust", "colorize", "denoise"]
    assert options.makes_colour(plan) and not options.makes_colour(_plan(cat, steps=["dust"]))
    with pytest.raises(ec.UserError, match="Colour hints"):             # ticked, no layer chosen
        options.job_inputs(plan, True, lambda: b"", None)
    inputs = options.job_inputs(plan, True, lambda: b"", lambda: b"HINTS")
    assert inputs == {"hints": b"HINTS"}
    assert [chain.step_inputs(s.plan, inputs) for s in plan.steps] == [{}, {"hints": b"HINTS"}, {}]
    # not ticked: no layer needed; a chosen one goes along (the engine takes it and leaves it unused)
    assert options.job_inputs(_plan(cat, steps=["dust"]), True, lambda: b"", None) == {}
    assert chain.step_inputs(_plan(cat, steps=["dust"]).steps[0].plan, {"hints": b"H"}) == {}
