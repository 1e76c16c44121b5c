"""A network's in-graph image statistic, computed once per image instead of once per tile.

Why: our denoiser (models/train/train.py, ``noise_estimate``) measures the noise level inside
its graph: Immerkaer's Laplacian estimator on the luma, averaged over 32x32 blocks, the minimum
over the blocks. Run tile by tile, each tile measured its own noise, so tiles disagreed (a
seam wherever two estimates differed) and a tile of flat sky was treated as less noisy than
the photo is. Here the graph is rewritten so that statistic is an INPUT, and the engine computes
it over the whole image, with the very constants the graph holds (kernel, block size, scale),
on the image exactly as an untiled run pads it. Every tile then sees the same value, so tiled ==
untiled, and the result equals what the original graph gives on the whole image.

Only a graph of that shape is rewritten (:func:`find`): a ``ReduceMin`` over H, W of an
``AveragePool`` of ``Abs`` of a ``Conv`` of the channel mean of the padded input. Any other
graph is left alone (``None``), and a file we cannot write keeps the per-tile behaviour.
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

STAT_INPUT = "image_statistic"       # the new graph input: N x 1 x 1 x 1 float32
_ROWS_PER_STRIP = 8                  # blocks per strip when measuring a large image


@dataclass(frozen=True)
class NoiseStatistic:
    """The constants of the in-graph estimator, read from the graph."""
    kernel: np.ndarray               # 3x3 float32 (valid convolution)
    block: int                       # average-pool kernel = stride (floor mode)
    scale: float                     # the Mul after the pool
    align: int                       # the graph pads H, W (edge) to a multiple of this first

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
            y = strip.astype(np.float32).mean(axis=2)
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


@dataclass(frozen=True)
class SplitGraph:
    path: Path                       # the rewritten graph (the statistic is input STAT_INPUT)
    statistic: NoiseStatistic


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
    the noise statistic described above, else None."""
    from onnx import helper

    g = model.graph
    by_out = {o: n for n in g.node for o in n.output}

    def attr(n, key, default=None):
        for a in n.attribute:
            if a.name == key:
                return helper.get_attribute_value(a)
        return default

    mins = [n for n in g.node if n.op_type == "ReduceMin" and list(attr(n, "axes", [])) == [2, 3]]
    if len(mins) != 1:
        return None
    mn = mins[0]
    chain = []                                  # ReduceMin <- Mul <- AveragePool <- Abs <- Conv <- ReduceMean <- Pad
    node = mn
    for op in ("Mul", "AveragePool", "Abs", "Conv", "ReduceMean", "Pad"):
        node = by_out.get(node.input[0])
        if node is None or node.op_type != op:
            return None
        chain.append(node)
    mul, pool, _abs, conv, mean, pad = chain
    if pad.input[0] != g.input[0].name:
        return None
    kernel, scale = _const(g, conv.input[1]), _const(g, mul.input[1])
    ks, st = list(attr(pool, "kernel_shape", [])), list(attr(pool, "strides", []))
    if (kernel is None or scale is None or kernel.shape != (1, 1, 3, 3) or scale.size != 1 or len(conv.input) > 2
            or list(attr(conv, "pads", [0, 0, 0, 0])) != [0, 0, 0, 0] or list(attr(mean, "axes", [])) != [1]
            or ks != st or len(set(ks)) != 1 or attr(pool, "ceil_mode", 0) != 0
            or list(attr(pool, "pads", [0, 0, 0, 0])) != [0, 0, 0, 0]):
        return None
    return mn.output[0], NoiseStatistic(kernel=kernel.reshape(3, 3).astype(np.float32), block=int(ks[0]),
                                        scale=float(scale.ravel()[0]), align=_pad_align(g))


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


def _rewrite(model, stat_name: str):
    """The graph with ``stat_name`` fed from the new input STAT_INPUT, and what only fed it removed."""
    import onnx
    from onnx import TensorProto, helper

    g = model.graph
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == stat_name:
                n.input[i] = STAT_INPUT
    g.input.append(helper.make_tensor_value_info(STAT_INPUT, TensorProto.FLOAT, ["N", 1, 1, 1]))
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):               # nodes are in topological order
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    onnx.checker.check_model(model)
    return model


@lru_cache(maxsize=8)
def _analysed(path: Path, size: int, mtime_ns: int) -> Optional[tuple[str, str, NoiseStatistic]]:
    import onnx

    data = path.read_bytes()
    found = find(onnx.load_from_string(data))
    if found is None:
        return None
    return hashlib.sha256(data).hexdigest()[:16], found[0], found[1]


def split(path: Path, cache: Path) -> Optional[SplitGraph]:
    """The graph at ``path`` with its statistic as an input, kept in ``cache`` (rebuilt if that
    file went missing), or None when the graph has no such statistic or the file cannot be written."""
    import onnx

    st = path.stat()
    found = _analysed(path, st.st_size, st.st_mtime_ns)
    if found is None:
        return None
    digest, name, stat = found
    out = cache / f"{digest}-stat-input.onnx"
    if not out.is_file():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            onnx.save(_rewrite(onnx.load(str(path)), name), str(tmp))
            tmp.replace(out)
        except OSError:
            return None
    return SplitGraph(path=out, statistic=stat)


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
