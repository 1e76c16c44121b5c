"""A network's in-graph image statistic, computed once per image instead of once per tile.

Why: our denoiser (models/train/train.py, ``noise_estimate``) measures the noise level inside
its graph: Immerkaer's Laplacian estimator on the luma, averaged over 32x32 blocks, the minimum
over the blocks. Run tile by tile, each tile measured its own noise, so tiles disagreed (a
seam wherever two estimates differed) and a tile of flat sky was treated as less noisy than
the photo is. Here the graph is rewritten so that statistic is an INPUT, and the engine computes
it over the whole image, with the very constants the graph holds (kernel, block size, scale),
on the image exactly as an untiled run pads it. Every tile then sees the same value, so tiled ==
untiled, and the result equals what the original graph gives on the whole image.

Only a graph of that shape is rewritten (:func:`find_all`): a ``ReduceMin`` over H, W of an
``AveragePool`` of ``Abs`` of a ``Conv`` of the channel mean (``ReduceMean``), or of one fixed
mix of the channels (a 1x1 ``Conv``), of the padded input. A graph may hold several (the
denoiser's colour filter measures the colour noise alone: models/train/chroma_filter.py); each
becomes an input of its own. A graph with any other ``ReduceMin`` over H, W is left alone, and a
file we cannot write keeps the per-tile behaviour.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from engine.models.catalog import ModelSpec

STAT_INPUT = "image_statistic"       # the new graph input: N x 1 x 1 x 1 float32 (the 2nd: ..._1, ...)
_ROWS_PER_STRIP = 8                  # blocks per strip when measuring a large image


@dataclass(frozen=True)
class NoiseStatistic:
    """The constants of the in-graph estimator, read from the graph."""
    kernel: np.ndarray               # 3x3 float32 (valid convolution)
    block: int                       # average-pool kernel = stride (floor mode)
    scale: float                     # the Mul after the pool
    align: int                       # the graph pads H, W (edge) to a multiple of this first
    mix: Optional[tuple[float, float, float]] = None   # the channels' 1x1 weights; None: their mean

    def for_sigma(self, sigma: float) -> float:
        """The statistic's value for i.i.d. noise of ``sigma`` (0..1 units) in each channel: sigma
        times the length of the channel weights (1/sqrt(3) for the mean)."""
        weights = np.full(3, 1.0 / 3.0) if self.mix is None else np.asarray(self.mix, np.float64)
        return float(sigma * np.sqrt(np.sum(weights ** 2)))

    def of(self, padded_rows: Callable[[int, int], np.ndarray], h: int, w: int) -> float:
        """The statistic of an image of h x w (already padded as the network sees it), read as
        row strips ``padded_rows(r0, r1)`` -> (r1-r0) x w x C float32: strips of whole blocks, so a
        large image never has to be in memory at once."""
        k = self.kernel.shape[0]
        hh, ww = h + (-h) % self.align, w + (-w) % self.align        # the graph's edge pad
        nby, nbx = (hh - k + 1) // self.block, (ww - k + 1) // self.block
        if nby < 1 or nbx < 1:
            raise ValueError("image smaller than one block of the statistic")
        best = math.inf
        for b0 in range(0, nby, _ROWS_PER_STRIP):
            b1 = min(nby, b0 + _ROWS_PER_STRIP)
            r0, r1 = b0 * self.block, b1 * self.block + k - 1          # rows of the conv's input
            rows = np.minimum(np.arange(r0, r1), h - 1)                # edge pad at the bottom
            strip = padded_rows(int(rows[0]), int(rows[-1]) + 1)[rows - rows[0]]
            y = (strip.astype(np.float32).mean(axis=2) if self.mix is None
                 else strip.astype(np.float32) @ np.asarray(self.mix, np.float32))
            if ww > w:
                y = np.concatenate([y, np.repeat(y[:, -1:], ww - w, axis=1)], axis=1)
            r = np.zeros((y.shape[0] - k + 1, ww - k + 1), np.float32)
            for dy in range(k):
                for dx in range(k):
                    if self.kernel[dy, dx] != 0.0:
                        r += self.kernel[dy, dx] * y[dy:dy + r.shape[0], dx:dx + r.shape[1]]
            a = np.abs(r)[:(b1 - b0) * self.block, :nbx * self.block]
            blocks = a.reshape(b1 - b0, self.block, nbx, self.block).mean(axis=(1, 3))
            best = min(best, float(blocks.min()) * self.scale)
        return best


def input_name(index: int) -> str:
    """The graph input that replaces the ``index``-th statistic of :func:`find_all`."""
    return STAT_INPUT if index == 0 else f"{STAT_INPUT}_{index}"


@dataclass(frozen=True)
class SplitGraph:
    path: Path                       # the rewritten graph (statistic i is input ``input_name(i)``)
    statistics: tuple[NoiseStatistic, ...]

    @property
    def statistic(self) -> NoiseStatistic:
        """The network's own statistic (the channel mean's), input STAT_INPUT."""
        return self.statistics[0]


def _const(graph, name: str) -> Optional[np.ndarray]:
    from onnx import numpy_helper

    for n in graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    return None


def find(model) -> Optional[tuple[str, NoiseStatistic]]:
    """(the statistic's tensor name, its constants) when ``model`` (onnx.ModelProto) computes
    the noise statistic described above (the first of :func:`find_all`: the channel mean's), else None."""
    found = find_all(model)
    return found[0] if found else None


def find_all(model) -> list[tuple[str, NoiseStatistic]]:
    """Every statistic of the shape described above, the channel mean's first; [] when there is
    none or when any ``ReduceMin`` over H, W is of another shape (the graph is then left alone)."""
    g = model.graph
    by_out = {o: n for n in g.node for o in n.output}
    found = []
    for mn in (n for n in g.node if n.op_type == "ReduceMin" and list(_attr(n, "axes", [])) == [2, 3]):
        one = _statistic_at(g, by_out, mn)
        if one is None:
            return []
        found.append(one)
    return sorted(found, key=lambda f: f[1].mix is not None)


def _attr(n, key, default=None):
    from onnx import helper

    for a in n.attribute:
        if a.name == key:
            return helper.get_attribute_value(a)
    return default


def _statistic_at(g, by_out: dict, mn) -> Optional[tuple[str, NoiseStatistic]]:
    """The statistic ending in ReduceMin ``mn``: ReduceMin <- Mul <- AveragePool <- Abs <- Conv <-
    (ReduceMean over channels | 1x1 Conv, 3 -> 1) <- Pad of the graph input; None if not that shape."""
    chain = []
    node = mn
    for op in ("Mul", "AveragePool", "Abs", "Conv", "", "Pad"):
        node = by_out.get(node.input[0])
        if node is None or (op and node.op_type != op):
            return None
        chain.append(node)
    mul, pool, _abs, conv, combine, pad = chain
    if pad.input[0] != g.input[0].name:
        return None
    mix: Optional[tuple[float, float, float]] = None
    if combine.op_type == "ReduceMean":
        if list(_attr(combine, "axes", [])) != [1]:
            return None
    elif combine.op_type == "Conv":
        w = _const(g, combine.input[1])
        if (w is None or w.shape != (1, 3, 1, 1) or len(combine.input) > 2 or _attr(combine, "group", 1) != 1
                or list(_attr(combine, "pads", [0, 0, 0, 0])) != [0, 0, 0, 0]):
            return None
        mix = (float(w.ravel()[0]), float(w.ravel()[1]), float(w.ravel()[2]))
    else:
        return None
    kernel, scale = _const(g, conv.input[1]), _const(g, mul.input[1])
    ks, st = list(_attr(pool, "kernel_shape", [])), list(_attr(pool, "strides", []))
    if (kernel is None or scale is None or kernel.shape != (1, 1, 3, 3) or scale.size != 1 or len(conv.input) > 2
            or list(_attr(conv, "pads", [0, 0, 0, 0])) != [0, 0, 0, 0]
            or ks != st or len(set(ks)) != 1 or _attr(pool, "ceil_mode", 0) != 0
            or list(_attr(pool, "pads", [0, 0, 0, 0])) != [0, 0, 0, 0]):
        return None
    return mn.output[0], NoiseStatistic(kernel=kernel.reshape(3, 3).astype(np.float32), block=int(ks[0]),
                                        scale=float(scale.ravel()[0]), align=_pad_align(g), mix=mix)


def _pad_align(graph) -> int:
    """The multiple the graph pads H, W to before the statistic: the divisor of its ``Mod`` nodes
    (4 for our U-Net: two stride-2 levels); 1 when it has none or they disagree."""
    vals: set[int] = set()
    for n in graph.node:
        if n.op_type == "Mod":
            c = _const(graph, n.input[1])
            if c is not None:
                vals.update(int(v) for v in np.ravel(c))
    return vals.pop() if len(vals) == 1 else 1


def _rewrite(model, stat_names: list[str]):
    """The graph with the i-th of ``stat_names`` fed from the new input ``input_name(i)``, and what
    only fed them removed."""
    import onnx
    from onnx import TensorProto, helper

    g = model.graph
    fed = {name: input_name(i) for i, name in enumerate(stat_names)}
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in fed:
                n.input[i] = fed[name]
    for name in fed.values():
        g.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1, 1, 1]))
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):               # nodes are in topological order
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    # and the constants only those nodes read (ONNX Runtime would warn about each on every load)
    used = {i for n in keep for i in n.input} | {o.name for o in g.output}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


@lru_cache(maxsize=8)
def _analysed(path: Path, size: int, mtime_ns: int
              ) -> Optional[tuple[str, tuple[str, ...], tuple[NoiseStatistic, ...]]]:
    import onnx

    data = path.read_bytes()
    found = find_all(onnx.load_from_string(data))
    if not found:
        return None
    return (hashlib.sha256(data).hexdigest()[:16], tuple(f[0] for f in found), tuple(f[1] for f in found))


def split(path: Path, cache: Path) -> Optional[SplitGraph]:
    """The graph at ``path`` with its statistic as an input, kept in ``cache`` (rebuilt if that
    file went missing), or None when the graph has no such statistic or the file cannot be written."""
    import onnx

    st = path.stat()
    found = _analysed(path, st.st_size, st.st_mtime_ns)
    if found is None:
        return None
    digest, names, stats = found
    out = cache / f"{digest}-stat-input-2.onnx"      # -2: unused constants removed too
    if not out.is_file():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            onnx.save(_rewrite(onnx.load(str(path)), list(names)), str(tmp))
            tmp.replace(out)
        except OSError:
            return None
    return SplitGraph(path=out, statistics=stats)


def padded_reader(read: Callable[[int, int, int, int], np.ndarray], h: int, w: int, spec: ModelSpec
                  ) -> tuple[Callable[[int, int], np.ndarray], int, int]:
    """Row strips of the image as the wrapper pads it for an untiled run (prepost.pad_widths),
    read through ``read(y0, y1, x0, x1)`` a strip at a time. Returns the reader and the padded
    height and width."""
    from engine.models.backends.prepost import pad_widths

    pad_rows, pad_cols, mode = pad_widths(spec, h, w)
    # where each padded coordinate comes from: np.pad's own answer on an index ramp
    rows, cols = np.pad(np.arange(h), pad_rows, mode=mode), np.pad(np.arange(w), pad_cols, mode=mode)

    def strip(r0: int, r1: int) -> np.ndarray:
        src = rows[r0:r1]
        lo, hi = int(src.min()), int(src.max()) + 1
        return read(lo, hi, 0, w)[src - lo][:, cols]

    return strip, len(rows), len(cols)
