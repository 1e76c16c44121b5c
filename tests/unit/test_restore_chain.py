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


def test_a_black_and_white_print_gets_its_colour_step_from_the_hints():
    """colorize as a chain step (ticked, never a default): a gray print comes back in colour,
    exactly as running the steps by hand; without hints the one wording of a missing input."""
    img = np.full((64, 48), 100, np.uint8)
    img[32:] = 180                                      # two gray areas: red hint above, blue below
    hints = np.zeros((64, 48, 4), np.uint8)
    hints[10:14, 10:30] = (255, 0, 0, 255)
    hints[40:44, 10:30] = (0, 0, 255, 255)
    steps = ["colorize", "denoise"]
    res = enhance(img, EnhanceOptions(model="restore", strength=1.0, steps=steps, hints=hints))
    assert res.image.shape == (64, 48, 3), "a gray input comes back in colour"
    top, bottom = res.image[5:25].reshape(-1, 3).mean(0), res.image[40:60].reshape(-1, 3).mean(0)
    assert top[0] > top[2] + 20 and bottom[2] > bottom[0] + 20, (top, bottom)
    by_hand = np.repeat(img[..., None], 3, axis=2).astype(np.float32) / 255.0
    for name, tid, strength in rc.STEPS:
        if name in steps:
            by_hand = enhance(by_hand, EnhanceOptions(model=tid, strength=strength,
                                                      hints=hints if tid == "colorize" else None)).image
    assert np.abs(res.image.astype(np.float32) / 255.0 - by_hand).max() <= 1 / 255 + 1e-6
    with pytest.raises(BadInput, match="needs colour hints"):
        enhance(img, EnhanceOptions(model="restore", strength=1.0, steps=steps))
    # hints without the colorize step are taken and left unused: no colour appears
    plain = enhance(img, EnhanceOptions(model="restore", strength=1.0, steps=["color"], hints=hints)).image
    spread = plain.max(axis=2).astype(int) - plain.min(axis=2) if plain.ndim == 3 else np.zeros(1, int)
    assert spread.max() <= 1
