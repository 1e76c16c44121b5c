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
    split_model, stats = with_image_statistic(model)
    spec = model.spec
    strip, hp, wp = global_stats.padded_reader(lambda y0, y1, x0, x1: x[y0:y1, x0:x1], x.shape[0], x.shape[1],
                                               spec)
    levels = {global_stats.input_name(i): np.full((1, 1, 1, 1), stat.of(strip, hp, wp), np.float32)
              for i, stat in enumerate(stats)}
    return prepost.run_with(spec, lambda t: next(iter(split_model.feed({"input": t, **levels}).values())), x)


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


def test_only_the_noise_statistics_are_rewritten_and_the_file_comes_back(tmp_path: Path):
    assert global_stats.find(onnx.load(str(registry.verified_onnx_path("sharpen")))) is None
    den = registry.verified_onnx_path("denoise")
    sg = global_stats.split(den, tmp_path)
    assert sg is not None and sg.statistic.block == 32 and sg.statistic.align == 4
    # the network's level (the channel mean), then the colour stage's Cb and Cr levels and the
    # brightness stage's luma level (models/train/chroma_filter.py), each its own input
    assert sg.statistic.mix is None and [s.mix is not None for s in sg.statistics] == [False, True, True, True]
    g = onnx.load(str(sg.path)).graph
    assert [i.name for i in g.input] == ["input"] + [global_stats.input_name(i) for i in range(4)]
    # every estimator went (no ReduceMin, no Abs left, none of their constants: ONNX Runtime would
    # print a warning for each on every load); each input has readers
    assert not any(n.op_type in ("ReduceMin", "Abs") for n in g.node)
    read = {i for n in g.node for i in n.input}
    assert [t.name for t in g.initializer if t.name not in read] == []
    readers = {name: [n.name for n in g.node if name in n.input] for name in (i.name for i in g.input[1:])}
    assert len([r for r in readers[global_stats.STAT_INPUT] if not r.startswith("chroma_filter/")]) == 1
    assert all(r and all(x.startswith("chroma_filter/") for x in r) for name, r in readers.items()
               if name != global_stats.STAT_INPUT)
    sg.path.unlink()
    assert global_stats.split(den, tmp_path).path.is_file()                      # rebuilt, not a stale name


def test_a_mixed_statistic_reads_that_mix_and_a_given_sigma_maps_through_it():
    """The colour levels measure Cb / Cr of the image (luma-only noise leaves them low), the
    brightness stage's level the BT.601 luma (it sees luma-only noise whole), and a retoucher's
    sigma maps to each statistic by the length of its channel weights."""
    stats = global_stats.find_all(onnx.load(str(registry.verified_onnx_path("denoise"))))
    mean, cb, cr, bright = (s for _, s in stats)
    assert mean.for_sigma(0.1) == pytest.approx(0.1 / np.sqrt(3.0))
    assert cb.for_sigma(0.1) == pytest.approx(0.1 * float(np.linalg.norm(cb.mix)))
    rng = np.random.default_rng(3)
    flat = np.full((96, 96, 3), 0.5, np.float32)
    colour = np.clip(flat + rng.normal(0, 20 / 255, flat.shape), 0, 1).astype(np.float32)
    luma = np.clip(flat + rng.normal(0, 20 / 255, flat.shape[:2] + (1,)), 0, 1).astype(np.float32)

    def level(stat, x):
        return stat.of(lambda r0, r1: x[r0:r1], x.shape[0], x.shape[1])
    assert level(cb, colour) == pytest.approx(cb.for_sigma(20 / 255), rel=0.15)
    assert level(cb, luma) < 0.05 * level(cb, colour) and level(cr, luma) < 0.05 * level(cr, colour)
    assert level(mean, luma) == pytest.approx(20 / 255, rel=0.15)        # the network's level sees it all
    assert level(bright, luma) == pytest.approx(20 / 255, rel=0.15)      # the luma weights sum to 1
    assert level(bright, colour) == pytest.approx(bright.for_sigma(20 / 255), rel=0.15)


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
