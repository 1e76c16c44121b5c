"""The denoiser's noise level is measured once per image (engine/models/global_stats.py): the
rewritten graph with the measured level gives what the original graph gives on the whole image,
and tiles of any size give the whole image's result; our U-Nets' tiles start on their stride."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from engine.models import global_stats, registry
from engine.models.backends import load_model, prepost, with_image_statistic
from engine.pipeline import EnhanceOptions, enhance


def _noisy(coffee: np.ndarray, h: int = 230, w: int = 330, sigma: float = 20 / 255) -> np.ndarray:
    rng = np.random.default_rng(5)
    x = coffee[60:60 + h, 100:100 + w].astype(np.float32) / 255.0
    return np.clip(x + rng.normal(0, sigma, x.shape), 0, 1).astype(np.float32)


def _measured_run(model, x: np.ndarray) -> np.ndarray:
    split_model, stat = with_image_statistic(model)
    spec = model.spec
    strip, hp, wp = global_stats.padded_reader(lambda y0, y1, x0, x1: x[y0:y1, x0:x1], x.shape[0], x.shape[1],
                                               spec)
    level = np.full((1, 1, 1, 1), stat.of(strip, hp, wp), np.float32)
    return prepost.run_with(spec, lambda t: next(iter(split_model.feed(
        {"input": t, global_stats.STAT_INPUT: level}).values())), x)


def test_the_measured_level_reproduces_the_original_graph_on_the_whole_image(coffee, monkeypatch):
    monkeypatch.setattr(global_stats, "_ROWS_PER_STRIP", 2)      # several strips: the strip seams too
    x = _noisy(coffee)                                           # 230x330: not a multiple of 4 either
    m = load_model("denoise", "cpu")
    whole = m.run(x)                                             # the shipped graph, measuring itself
    assert float(np.abs(_measured_run(m, x) - whole).max()) < 1e-4
    # and the level is the noise's: a quieter photo gets a lower one, so it matters which one is fed
    a = _measured_run(m, x)
    b = _measured_run(m, _noisy(coffee, sigma=5 / 255))
    assert not np.allclose(a, b, atol=0.01)


@pytest.mark.parametrize("model_id, tile", [("denoise", 50), ("denoise", 61), ("sharpen", 61)])
def test_tiles_of_any_size_give_the_whole_image(coffee, model_id, tile):
    """Before: denoise measured its noise per tile (6.9 LSB at 61 px tiles) and both U-Nets
    depended on where a tile starts modulo 4 (sharpen 5.5 LSB)."""
    x = _noisy(coffee)
    opts = dict(model=model_id, strength=1.0, grain=0.0, device="cpu")
    whole = enhance(x, EnhanceOptions(**opts, tile=0)).image
    res = enhance(x, EnhanceOptions(**opts, tile=tile))
    assert res.tiles >= 9
    assert float(np.abs(res.image - whole).max()) <= 1.0 / 255.0


def test_only_the_noise_statistic_is_rewritten_and_the_file_comes_back(tmp_path: Path):
    assert global_stats.find(onnx.load(str(registry.verified_onnx_path("sharpen")))) is None
    den = registry.verified_onnx_path("denoise")
    sg = global_stats.split(den, tmp_path)
    assert sg is not None and sg.statistic.block == 32 and sg.statistic.align == 4
    g = onnx.load(str(sg.path)).graph
    assert [i.name for i in g.input] == ["input", global_stats.STAT_INPUT]
    # the dead estimator went (its ReduceMin, and its only Abs); the chroma filter after the network
    # (models/train/chroma_filter.py) now reads the statistic from the input, as the network does
    assert not any(n.op_type in ("ReduceMin", "Abs") for n in g.node)
    readers = [n.name for n in g.node if global_stats.STAT_INPUT in n.input]
    assert len([r for r in readers if not r.startswith("chroma_filter/")]) == 1          # the network's
    assert len(readers) >= 2                                                              # and the filter's
    sg.path.unlink()
    assert global_stats.split(den, tmp_path).path.is_file()                      # rebuilt, not a stale name


def test_the_retouchers_noise_level_steers_the_denoiser(coffee):
    """``noise_level`` (8-bit levels) replaces the measurement: told a faint level the denoiser
    removes less than told a heavy one, and a level given is used (not the measured one). Not
    asserted: that the true sigma beats measuring - on the 8 held-out photos of bench/quality.py it
    does on the smooth ones only (bench/results/quality.md, denoise-told-sigma)."""
    from engine import tasks

    assert "noise_level" in tasks.option_names(tasks.get("denoise"))
    assert "noise_level" not in tasks.option_names(tasks.get("sharpen"))
    clean = coffee[60:316, 100:356].astype(np.float32) / 255.0
    rng = np.random.default_rng(8)
    x = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)

    def out(level: float) -> np.ndarray:
        return enhance(x, EnhanceOptions(model="denoise", strength=1.0, grain=0.0, device="cpu",
                                         noise_level=level)).image

    measured, faint, heavy = out(0.0), out(3.0), out(40.0)
    removed = [float(np.abs(a - x).mean()) for a in (faint, measured, heavy)]
    assert removed[0] < removed[1] < removed[2]
    assert removed[2] - removed[0] > 0.01          # a clear difference: about 2.5 levels on average
