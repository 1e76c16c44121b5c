"""Stage-by-stage runs of deep networks (engine/models/stages.py, engine/pipeline/staged.py):
the graph is cut where it can be, each stage's halo is its exact reach, and a staged run with
many seams equals the whole-image network."""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.errors import Cancelled
from engine.models import catalog, stages
from engine.pipeline import EnhanceOptions, enhance, staged


def _tiny_net(path: Path, *, pool: bool = False) -> None:
    """conv 3->8 (the skip), two residual blocks of two 3x3 convs, a trunk conv + skip, then a
    nearest 2x Resize and a 3x3 conv to RGB: the shape of Real-ESRGAN's RRDB net, small."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    inits, nodes = [], []

    def conv(x: str, cin: int, cout: int, name: str) -> str:
        w = (rng.standard_normal((cout, cin, 3, 3)) * (0.6 / np.sqrt(cin * 9))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name + "_w"))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), name + "_b"))
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        return name

    head = conv("input", 3, 8, "head")
    x = head
    for b in range(2):
        a = conv(x, 8, 8, f"b{b}c0")
        nodes.append(helper.make_node("LeakyRelu", [a], [f"b{b}r"], alpha=0.2))
        c = conv(f"b{b}r", 8, 8, f"b{b}c1")
        nodes.append(helper.make_node("Add", [c, x], [f"b{b}out"]))
        x = f"b{b}out"
    if pool:   # a global operation inside the trunk: nothing can be cut
        nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
        nodes.append(helper.make_node("Mul", [x, "gap"], ["gated"]))
        x = "gated"
    t = conv(x, 8, 8, "trunk")
    nodes.append(helper.make_node("Add", [head, t], ["feat"]))
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    nodes.append(helper.make_node("Resize", ["feat", "", "scales"], ["up"], mode="nearest"))
    out = conv("up", 8, 3, "last")
    nodes.append(helper.make_node("Identity", [out], ["output"]))
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                        [1, 3, "h", "w"])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "H", "W"])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def test_a_residual_net_is_cut_between_its_blocks_with_exact_halos(tmp_path):
    import onnx

    _tiny_net(tmp_path / "n.onnx")
    split = stages.analyse(onnx.load(str(tmp_path / "n.onnx")), max_halo=2)
    assert split is not None
    # head conv, block 0, block 1, trunk conv + skip: 1 + 2 + 2 + 1 convolutions of reach 1;
    # with at most 2 px per stage: head+? cannot join a 2-conv block, so the halos are exact counts
    assert sum(st.halo for st in split.stages) == 6
    assert all(st.halo <= 2 for st in split.stages)
    assert split.stages[0].inputs == ("input",)
    assert split.stages[-1].outputs == ("feat",)
    assert split.tail.inputs == ("feat",) and split.tail.outputs == ("output",)
    # the tail: nearest 2x then one 3x3 conv reaches 1 + 0.5 input px, plus the rounding margin
    assert split.tail.halo == 3
    assert set(split.channels.values()) == {8}
    # a larger limit makes fewer stages, never a stage over the limit unless it is one piece
    wide = stages.analyse(onnx.load(str(tmp_path / "n.onnx")), max_halo=4)
    assert wide is not None and len(wide.stages) < len(split.stages)


def test_a_global_operation_in_the_trunk_stops_the_split(tmp_path):
    import onnx

    _tiny_net(tmp_path / "p.onnx", pool=True)
    split = stages.analyse(onnx.load(str(tmp_path / "p.onnx")), max_halo=2)
    # the cuts stop at the pooling, and before it no point has a single tensor alive to hand on
    assert split is None


def _tiny_model(tmp_path: Path):
    from engine.models.backends.onnx_backend import OnnxModel

    path = tmp_path / "n.onnx"
    _tiny_net(path)
    spec = replace(catalog.get("photo-x4"), id="tiny-staged", scale=2, native_scale=2, prepad=3, align=2,
                   receptive_field=12, bytes_per_px=4_000)
    return OnnxModel(spec, path, "cpu")


def _collect(rows, h: int, w: int) -> np.ndarray:
    out = None
    for y0, r in rows:
        if out is None:
            out = np.zeros((h, w, 3), np.float32)
        out[y0:y0 + r.shape[0]] = r
    assert out is not None
    return out


def test_staged_run_equals_the_whole_network_on_a_small_net(tmp_path, engine_home, coffee):
    m = _tiny_model(tmp_path)
    x = coffee[:70, :90].astype(np.float32) / 255.0
    whole = m.run(x)
    sp = staged.plan_staged(m, 70, 90, stage_tile=32, max_halo=2)
    assert sp is not None and len(sp.files) >= 3
    got = _collect(staged.staged_rows(m, sp, lambda a, b, c, d: x[a:b, c:d], 70, 90), 140, 180)
    assert float(np.abs(got - whole).max()) < 1e-5
    # and it is not the same as cutting without the halos (the test can see a wrong halo)
    bad = replace(sp, split=replace(sp.split, stages=tuple(replace(st, halo=0) for st in sp.split.stages)))
    worse = _collect(staged.staged_rows(m, bad, lambda a, b, c, d: x[a:b, c:d], 70, 90), 140, 180)
    assert float(np.abs(worse - whole).max()) > 1e-3


def test_a_cancelled_staged_run_leaves_no_feature_files(tmp_path, engine_home, coffee):
    from engine import paths

    m = _tiny_model(tmp_path)
    x = coffee[:70, :90].astype(np.float32) / 255.0
    sp = replace(staged.plan_staged(m, 70, 90, stage_tile=32, max_halo=2), in_ram=False)
    stop = threading.Event()
    seen = []

    def progress(done: int, total: int, msg: str) -> None:
        seen.append(msg)
        if done >= 5:
            stop.set()
            assert list(paths.cache_dir().glob("stages-*")), "the feature maps were not on disk"

    with pytest.raises(Cancelled):
        _collect(staged.staged_rows(m, sp, lambda a, b, c, d: x[a:b, c:d], 70, 90, progress=progress,
                                    cancel=stop), 140, 180)
    assert any(s.startswith("stage") for s in seen)
    assert not list(paths.cache_dir().glob("stages-*"))


def test_photo_x4_under_a_small_budget_runs_in_stages_and_matches_the_untiled_net(models_installed, engine_home,
                                                                              astronaut):
    """The real RRDB: a 64 MB budget makes the plain tiler's tiles tiny (most of the work would be
    context), so the engine runs it stage by stage; the result is the whole-image network's."""
    from engine.models.backends import load_model

    m = load_model("photo-x4", "cpu")
    x = astronaut[40:136, 100:212].astype(np.float32) / 255.0
    raw = m.run(x)
    res = enhance(x, EnhanceOptions(model="photo-x4", strength=1.0, grain=0.0, memory_budget=64 << 20), model=m)
    assert res.info["stages"] >= 10, res.info
    assert res.info["work"] * staged.MIN_GAIN <= res.info["plain_work"]
    diff = float(np.abs(res.image - raw).max())
    assert diff <= 1.0 / 255.0, f"staged vs untiled max diff {diff * 255:.3f} LSB"
    # a forced tile keeps the plain tiler
    assert staged.plan_staged(m, 96, 112, tile=48, memory_budget=64 << 20) is None


def test_feature_maps_are_float16_only_under_a_bf16_runtime(tmp_path, engine_home, coffee):
    """float16 maps halve the disk a big photo needs; they are used where the runtime computes
    in bf16 anyway (less precise than float16), never where the output must stay exact."""
    from types import SimpleNamespace

    m = _tiny_model(tmp_path)
    x = coffee[:70, :90].astype(np.float32) / 255.0
    sp = staged.plan_staged(m, 70, 90, stage_tile=32, max_halo=2)
    assert sp is not None and sp.map_dtype == "float32"
    bf16 = SimpleNamespace(spec=m.spec, path=m.path, device="openvino-bf16", feed=m.feed)
    sp16 = staged.plan_staged(bf16, 70, 90, stage_tile=32, max_halo=2)
    assert sp16 is not None and sp16.map_dtype == "float16"
    assert sp16.feature_bytes * 2 == sp.feature_bytes
    whole = m.run(x)
    got = _collect(staged.staged_rows(m, replace(sp, map_dtype="float16", in_ram=False),
                                      lambda a, b, c, d: x[a:b, c:d], 70, 90), 140, 180)
    diff = float(np.abs(got - whole).max())
    assert 0 < diff < 0.5 / 255, diff      # rounded through float16, and still well within a step


def test_the_split_is_remembered_and_rebuilt_when_the_cache_is_emptied(tmp_path):
    import shutil as sh

    _tiny_net(tmp_path / "n.onnx")
    first = stages.split_files(tmp_path / "n.onnx", tmp_path / "cache", 2)
    assert first is not None
    assert stages.split_files(tmp_path / "n.onnx", tmp_path / "cache", 2) is first     # no second analysis
    sh.rmtree(tmp_path / "cache")
    again = stages.split_files(tmp_path / "n.onnx", tmp_path / "cache", 2)
    assert again is not None and all(f.is_file() for f in (*again[1], again[2]))


def test_without_disk_for_the_feature_maps_it_runs_in_tiles_and_says_why(tmp_path, engine_home, coffee, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    m = _tiny_model(tmp_path)
    x = coffee[:70, :90].astype(np.float32) / 255.0
    budget = 200_000                      # maps (~0.2 MB) over a quarter of it: they would go to disk
    sp = staged.plan_staged(m, 70, 90, memory_budget=budget)
    assert sp is not None and not sp.in_ram and not sp.disk_short
    ok = enhance(x, EnhanceOptions(strength=1.0, grain=0.0, memory_budget=budget), model=m)
    assert ok.info.get("stages") and "note" not in ok.info
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1 << 20))
    res = enhance(x, EnhanceOptions(strength=1.0, grain=0.0, memory_budget=budget), model=m)
    assert "stages" not in res.info
    assert "stage by stage needs" in res.info["note"] and "GB free" in res.info["note"]
    assert float(np.abs(res.image - ok.image).max()) < 1e-4     # the same result, the slow way


def test_a_graph_the_splitter_cannot_write_runs_in_tiles(tmp_path, engine_home, coffee, monkeypatch):
    """A user's model whose pieces cannot be made (here: the piece writer fails) is not a failed
    job: the plain tiler runs it."""
    m = _tiny_model(tmp_path)
    x = coffee[:70, :90].astype(np.float32) / 255.0

    def broken(model, st):
        raise ValueError("cannot write this piece")

    monkeypatch.setattr(stages, "piece", broken)
    stages._split_files.cache_clear()
    assert staged.plan_staged(m, 70, 90, memory_budget=200_000) is None
    res = enhance(x, EnhanceOptions(strength=1.0, grain=0.0, memory_budget=200_000), model=m)
    assert "stages" not in res.info and res.image.shape == (140, 180, 3)
