"""Split a deep network into stages that can each be tiled with their own, exact, small context.

Why: a tile of a deep network needs context as wide as the network sees (photo-x4's RRDB trunk:
80 px per side to stay within 0.1 LSB, bench/results/tiling.md). Under a small memory budget the
tiles are small, so most of the work goes into that context (photo-x4 at 1.5 GB on 20 MP: the
network processes ~7-15x the image's pixels). Run the network instead one stage at a time over
the whole image, keeping each stage's output (a feature map) for the next: a stage of a few
3x3 convolutions needs only as many pixels of context as it has convolutions, and that context
is exact (a convolution's output depends on nothing farther away), so tiles of a few hundred
pixels waste little and the result equals the untiled network's up to float rounding.

This module reads the ONNX graph and finds where it can be cut: a *cut* is a point in the
node order where at most two tensors are alive (computed before, used after), all at the
input's resolution. Only layers that keep the resolution and look at a fixed neighbourhood are
allowed in the stages (stride-1 "same" convolutions, element-wise ops, channel concat); the
first other layer (an upsampling Resize) starts the *tail*, which the ordinary tiler runs on
the last stage's output with its own small context. Everything is derived from the graph
itself (nothing per model is hard-coded); a graph this analysis cannot split gives ``None``
and runs as before.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

# Element-wise (or channel-wise) layers: no spatial reach, resolution kept.
_POINTWISE = frozenset({"LeakyRelu", "Relu", "PRelu", "Sigmoid", "Tanh", "Clip", "Sum", "Add", "Mul", "Sub",
                        "Div", "Identity", "Concat"})


@dataclass(frozen=True)
class Stage:
    """One piece of the graph: nodes ``first``..``last``-1 of its node list."""
    first: int
    last: int
    inputs: tuple[str, ...]      # tensors it reads (the graph's input for the first stage)
    outputs: tuple[str, ...]     # tensors it leaves for later stages
    halo: int                    # exact context it needs on every side (px of its input)
    macs_per_px: int             # multiply-adds per input-resolution pixel (weights the overhead figures)


@dataclass(frozen=True)
class Split:
    """A network as full-resolution stages, then a tail (the upsampling) that the tiler runs."""
    stages: tuple[Stage, ...]
    tail: Stage                  # its halo: context in px of its (input-resolution) input
    channels: dict[str, int]     # feature channels of every tensor passed between stages


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


def _conv_reach(node: Any, weights: dict[str, Any]) -> Optional[int]:
    """The spatial reach (px) of a stride-1, size-keeping convolution; None for any other."""
    w = weights.get(node.input[1])
    if w is None or len(w.dims) != 4:
        return None
    kh, kw = int(w.dims[2]), int(w.dims[3])
    dil = list(_attr(node, "dilations", [1, 1]))
    strides = list(_attr(node, "strides", [1, 1]))
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    if kh != kw or kh % 2 == 0 or any(s != 1 for s in strides) or len(set(dil)) != 1:
        return None
    reach = (kh - 1) // 2 * int(dil[0])
    if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or pads != [reach] * 4:
        return None
    return reach


def _conv_macs(node: Any, weights: dict[str, Any]) -> int:
    w = weights[node.input[1]]
    return int(math.prod(int(d) for d in w.dims))


def _resize_factor(node: Any, weights: dict[str, Any]) -> Optional[int]:
    """An integer nearest/linear upscale of H and W by the same factor (from its ``scales``)."""
    import onnx.numpy_helper as nh

    if len(node.input) < 3 or node.input[2] not in weights:
        return None
    s = nh.to_array(weights[node.input[2]]).tolist()
    if len(s) != 4 or s[0] != 1 or s[1] != 1 or s[2] != s[3] or s[2] < 1 or s[2] != int(s[2]):
        return None
    return int(s[2])


def _live_sets(graph: Any, weights: dict[str, Any]) -> list[set[str]]:
    """``live[b]``: the tensors computed before node b (or given as input) and used from node b on."""
    nodes = graph.node
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            if t and t not in weights:
                last_use[t] = i
    for o in graph.output:
        last_use[o.name] = len(nodes)
    live: list[set[str]] = []
    alive = {i.name for i in graph.input if i.name not in weights}
    for b in range(len(nodes) + 1):
        alive = {t for t in alive if last_use.get(t, -1) >= b}
        live.append(set(alive))
        if b < len(nodes):
            alive |= {t for t in nodes[b].output if t}
    return live


def _reach(graph: Any, weights: dict[str, Any], first: int, last: int) -> Optional[tuple[float, int]]:
    """Exact context (px of the piece's input resolution) that nodes first..last-1 need, and
    their multiply-adds per input pixel; None if a layer there is not understood."""
    reach: dict[str, float] = {}
    scale: dict[str, int] = {}
    macs = 0
    for n in graph.node[first:last]:
        ins = [t for t in n.input if t and t not in weights]
        r = max((reach.get(t, 0.0) for t in ins), default=0.0)
        s = max((scale.get(t, 1) for t in ins), default=1)
        if n.op_type == "Conv":
            k = _conv_reach(n, weights)
            if k is None:
                return None
            r += k / s
            macs += _conv_macs(n, weights) * s * s
        elif n.op_type == "Resize":
            f = _resize_factor(n, weights)
            if f is None:
                return None
            r += 1.0 / s            # nearest / linear upsampling looks one source pixel further
            s *= f
        elif n.op_type == "Concat":
            if int(_attr(n, "axis", 1)) != 1:
                return None
        elif n.op_type not in _POINTWISE:
            return None
        for t in n.output:
            reach[t], scale[t] = r, s
    outs = [t for n in graph.node[first:last] for t in n.output]
    return max((reach[t] for t in outs), default=0.0), macs


def analyse(model: Any, max_halo: int) -> Optional[Split]:
    """The stages of ``model`` (an onnx.ModelProto) with halos of at most ``max_halo`` px
    (a single piece may need more), or None when the graph cannot be split usefully."""
    g = model.graph
    weights = {w.name: w for w in g.initializer}
    nodes = g.node
    # the full-resolution part: up to the first layer that is not a size-keeping local op
    end = len(nodes)
    for i, n in enumerate(nodes):
        ok = (_conv_reach(n, weights) is not None if n.op_type == "Conv"
              else n.op_type in _POINTWISE and (n.op_type != "Concat" or int(_attr(n, "axis", 1)) == 1))
        if not ok:
            end = i
            break
    if end == len(nodes) or end < 2:
        return None
    live = _live_sets(g, weights)
    cuts = [b for b in range(1, end + 1) if 1 <= len(live[b]) <= 2]
    tail_at = max((b for b in cuts if len(live[b]) == 1), default=0)
    cuts = [b for b in cuts if b <= tail_at]
    if tail_at == 0 or len(cuts) < 3:
        return None
    # group the pieces between cuts greedily into stages of at most max_halo context
    stages: list[Stage] = []
    start = 0
    while start < tail_at:
        best = None
        for b in cuts:
            if b <= start:
                continue
            got = _reach(g, weights, start, b)
            if got is None:
                return None
            if best is not None and got[0] > max_halo:
                break
            best = (b, got)
        if best is None:
            return None
        b, (r, macs) = best
        produced = {t for n in nodes[start:b] for t in n.output}
        consumed = {t for n in nodes[start:b] for t in n.input if t and t not in weights}
        stages.append(Stage(first=start, last=b, inputs=tuple(sorted(live[start] & consumed)),
                            outputs=tuple(sorted(live[b] & produced)), halo=int(math.ceil(r)),
                            macs_per_px=macs))
        start = b
    got = _reach(g, weights, tail_at, len(nodes))
    if got is None:
        return None
    tail = Stage(first=tail_at, last=len(nodes), inputs=tuple(sorted(live[tail_at])),
                 outputs=tuple(o.name for o in g.output), halo=int(math.ceil(got[0])) + 1, macs_per_px=got[1])
    channels = _channels(g, weights, {t for st in stages for t in st.outputs})
    if channels is None:
        return None
    return Split(stages=tuple(stages), tail=tail, channels=channels)


def _channels(graph: Any, weights: dict[str, Any], names: set[str]) -> Optional[dict[str, int]]:
    """Channel count of the tensors between stages (from the convolutions and concats that make them)."""
    ch: dict[str, int] = {i.name: int(i.type.tensor_type.shape.dim[1].dim_value or 3)
                          for i in graph.input if i.name not in weights}
    for n in graph.node:
        ins = [t for t in n.input if t and t not in weights]
        if n.op_type == "Conv":
            c = int(weights[n.input[1]].dims[0])
        elif n.op_type == "Concat":
            if any(t not in ch for t in ins):
                return None
            c = sum(ch[t] for t in ins)
        elif ins and ins[0] in ch:
            c = ch[ins[0]]
        else:
            continue
        for t in n.output:
            ch[t] = c
    if any(t not in ch for t in names):
        return None
    return {t: ch[t] for t in names}


def piece(model: Any, st: Stage) -> Any:
    """The stage as a model of its own (same opset, only the weights it uses)."""
    import onnx
    from onnx import TensorProto, helper

    g = model.graph
    nodes = list(g.node[st.first:st.last])
    used = {t for n in nodes for t in n.input}
    inits = [w for w in g.initializer if w.name in used]
    ins = [helper.make_tensor_value_info(t, TensorProto.FLOAT, ["n", f"c_{i}", "h", "w"])
           for i, t in enumerate(st.inputs)]
    outs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, ["n", f"co_{i}", f"ho_{i}", f"wo_{i}"])
            for i, t in enumerate(st.outputs)]
    graph = helper.make_graph(nodes, f"{g.name or 'net'}_{st.first}_{st.last}", ins, outs, initializer=inits)
    m = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="enhancelayer-stages")
    m.ir_version = model.ir_version
    onnx.checker.check_model(m)
    return m


def split_files(onnx_path: Path, cache: Path, max_halo: int) -> Optional[tuple[Split, list[Path], Path]]:
    """Split the model file once and keep the pieces in ``cache`` (keyed by the file's content
    digest and the halo limit): the stages' files, in order, and the tail's. Remembered per
    process by the file's path, size and time, so a job pays neither the reading nor the analysis."""
    st = onnx_path.stat()
    got = _split_files(onnx_path, st.st_size, st.st_mtime_ns, cache, max_halo)
    if got is not None and not all(f.is_file() for f in (*got[1], got[2])):   # the cache was emptied
        _split_files.cache_clear()
        got = _split_files(onnx_path, st.st_size, st.st_mtime_ns, cache, max_halo)
    return got


@lru_cache(maxsize=16)
def _split_files(onnx_path: Path, _size: int, _mtime: int, cache: Path,
                 max_halo: int) -> Optional[tuple[Split, list[Path], Path]]:
    import onnx

    data = onnx_path.read_bytes()
    key = hashlib.sha256(data).hexdigest()[:20] + f"-h{max_halo}"
    model = onnx.load_from_string(data)
    split = analyse(model, max_halo)
    if split is None:
        return None
    folder = cache / "stages" / key
    files = [folder / f"stage{k:02d}.onnx" for k in range(len(split.stages))]
    tail = folder / "tail.onnx"
    if not all(f.is_file() for f in (*files, tail)):
        from engine.models.importer import _atomic_write

        folder.mkdir(parents=True, exist_ok=True)
        for f, st in zip((*files, tail), (*split.stages, split.tail)):
            _atomic_write(f, piece(model, st).SerializeToString())
    return split, files, tail
