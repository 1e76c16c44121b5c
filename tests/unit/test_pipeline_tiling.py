"""Tiling: tiled == untiled for tile-invariant models on real photos; OOM halving; cancel."""
from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from engine.errors import Cancelled, EnhanceError, OutOfMemory
from engine.models import catalog
from engine.pipeline import EnhanceOptions, enhance, tiling


@pytest.mark.parametrize("model_id", ["photo-x2", "jpeg-clean-2", "anime-video-x2", "photo-x4-fast"])
def test_tiled_equals_untiled_real_models(models_installed, astronaut, model_id):
    """Small tiles (many seams, incl. a ragged last row/column) vs one whole-image run."""
    from engine.models.backends import load_model

    m = load_model(model_id, "cpu")
    img = astronaut[130:250, 170:310]          # 120x140: face and hair, 3x3 tiles of 48
    x = img.astype(np.float32) / 255.0
    raw = m.run(x)
    res = enhance(x, EnhanceOptions(model=model_id, strength=1.0, grain=0.0, tile=48), model=m)
    assert res.info["tile"] == 48 and res.info["overlap"] >= m.spec.receptive_field
    assert res.image.shape == raw.shape
    diff = float(np.abs(res.image - raw).max())
    assert diff <= 1.0 / 255.0, f"{model_id}: tiled vs untiled max diff {diff * 255:.3f} LSB"
    # and it is not trivially one tile: the tiler really ran several
    assert res.tiles >= 9


class _BoxModel:
    """Stand-in for a narrow tiler test only: 5x5 box blur + nearest 2x (receptive field 2)."""

    def __init__(self, oom_above: int | None = None, rf: int = 2, invariant: bool = True):
        self.spec = replace(catalog.get("photo-x2"), id="box-test", receptive_field=rf,
                            tile_invariant=invariant, align=1, prepad=0)
        self.oom_above = oom_above
        self.shapes: list[tuple[int, ...]] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        import cv2

        self.shapes.append(x.shape)
        if self.oom_above and max(x.shape[:2]) > self.oom_above:
            raise OutOfMemory("fake: tile too large")
        y = cv2.blur(x.astype(np.float64), (5, 5), borderType=cv2.BORDER_REFLECT_101).astype(np.float32)
        return np.repeat(np.repeat(y, 2, axis=0), 2, axis=1)


def test_out_of_memory_halves_the_tile_and_goes_on(coffee):
    img = coffee[:200, :260]
    ref = enhance(img, EnhanceOptions(strength=1.0, tile=0), model=_BoxModel()).image
    msgs = []
    m = _BoxModel(oom_above=90)
    res = enhance(img, EnhanceOptions(strength=1.0, tile=256), progress=lambda d, t, s: msgs.append(s), model=m)
    assert any("out of memory" in s for s in msgs)
    ok = [s for s in m.shapes if max(s[:2]) <= 90]
    assert ok and max(max(s[:2]) for s in ok) <= 90
    assert np.array_equal(res.image, ref)


def test_out_of_memory_below_minimum_tile_is_a_clear_error(chelsea):
    with pytest.raises(EnhanceError, match="out of memory even at the smallest tile"):
        enhance(chelsea[:100, :100], EnhanceOptions(strength=1.0, tile=64), model=_BoxModel(oom_above=10))


def test_progress_per_tile_and_cancel_between_tiles(chelsea):
    calls = []
    enhance(chelsea[:120, :120], EnhanceOptions(strength=0.5, tile=40),
            progress=lambda d, t, s: calls.append((d, t)), model=_BoxModel())
    done = [d for d, t in calls]
    assert calls[-1] == (9, 9) and done == sorted(done) and set(range(1, 10)) <= set(done)

    ev = threading.Event()

    def cb(d, t, s):
        if d == 2:
            ev.set()

    m = _BoxModel()
    with pytest.raises(Cancelled):
        enhance(chelsea[:120, :120], EnhanceOptions(strength=0.5, tile=40), progress=cb, cancel=ev, model=m)
    assert len(m.shapes) == 2


def test_non_invariant_model_gets_feathered_seams(coffee):
    """cunet-like models: a long ramp; the tiler still covers every pixel with weight."""
    spec = catalog.get("illustration-x2")
    assert spec.tile_invariant is False
    p = tiling.plan(spec, 2000, 3000, memory_budget=1 << 30)
    assert p.feather >= tiling.FEATHER_NON_INVARIANT and p.overlap >= spec.receptive_field + p.feather
    img = coffee[:150, :200]
    m = _BoxModel(rf=6, invariant=False)
    a = enhance(img, EnhanceOptions(strength=1.0, tile=48), model=m).image
    b = enhance(img, EnhanceOptions(strength=1.0, tile=0), model=_BoxModel(rf=6, invariant=False)).image
    assert np.abs(a.astype(int) - b).max() <= 1


def test_plan_from_memory_budget():
    spec = catalog.get("photo-x2")
    small = tiling.plan(spec, 6000, 8000, memory_budget=256 << 20)
    big = tiling.plan(spec, 6000, 8000, memory_budget=4 << 30)
    assert small.tile < big.tile
    assert small.tile % spec.align == 0 and small.overlap % spec.align == 0
    assert small.overlap >= spec.receptive_field
    # the band of output rows fits the budget share
    band = (small.tile + 2 * small.overlap) * 2 * 8000 * 2 * 16
    assert band <= 0.25 * (256 << 20) * 1.01
    assert tiling.plan(spec, 300, 200, tile=0).tile >= 300
    with pytest.raises(EnhanceError):
        tiling.plan(spec, 300, 200, tile=8)
    assert tiling.free_memory_bytes() > 0
