"""restore (the "Restore old photo" chain): exactly the chosen steps, in a restorer's order, at
their chain strengths: the same pixels as running the steps one after the other by hand;
progress across the steps; a cancel stops it; no step chosen is refused in words."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.errors import BadInput, Cancelled
from engine.pipeline import EnhanceOptions, enhance
from engine.tasks import restore_chain as rc


def _old_print(chelsea: np.ndarray) -> np.ndarray:
    from engine.tasks.restore_dust import add_synthetic_defects

    img = chelsea[:160, :200].astype(np.float32) / 255.0
    dusty, _ = add_synthetic_defects(img, seed=5)
    return np.clip(dusty * np.array([1.0, 0.86, 0.7], np.float32) * 0.8 + 0.12, 0, 1).astype(np.float32)


@pytest.mark.parametrize("steps", [("dust", "color", "denoise"), ("color", "sharpen")])
def test_the_chain_is_the_steps_run_by_hand(chelsea, steps):
    img = _old_print(chelsea)
    seen: list = []
    res = enhance(img, EnhanceOptions(model="restore", strength=1.0, steps=list(reversed(steps))),
                  progress=lambda d, t, m: seen.append((d, m)))
    by_hand = img
    for name, tid, strength in rc.STEPS:
        if name in steps:
            by_hand = enhance(by_hand, EnhanceOptions(model=tid, strength=strength)).image
    assert np.array_equal(res.image, by_hand)
    assert not np.array_equal(res.image, img)
    assert res.info["note"].startswith("steps: " + ", ".join(s for s, _t, _v in rc.STEPS if s in steps))
    fractions = [d for d, _m in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1000
    assert any(m.startswith(f"{steps[-1]} ({len(steps)}/{len(steps)})") for _d, m in seen)


def test_a_cancel_stops_the_chain(chelsea):
    stop = threading.Event()

    def progress(done: int, total: int, msg: str) -> None:
        if msg.startswith("color"):
            stop.set()                         # the user pressed Cancel during the second step

    with pytest.raises(Cancelled):
        enhance(_old_print(chelsea), EnhanceOptions(model="restore", strength=1.0), progress=progress, cancel=stop)


def test_no_step_is_refused_in_words():
    from engine import tasks

    with pytest.raises(BadInput, match="at least one step"):
        tasks.get("restore").check({"steps": ()})
    with pytest.raises(BadInput, match="at least one step"):
        enhance(np.zeros((32, 32, 3), np.uint8), EnhanceOptions(model="restore", strength=1.0, steps=[]))
    with pytest.raises(BadInput, match="steps"):
        EnhanceOptions(model="restore", steps=["scratches"])
