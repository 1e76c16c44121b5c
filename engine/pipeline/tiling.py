"""Seamless, memory-bounded, out-of-memory-safe tiling.

Layout (input pixels): a grid of *core* tiles of side T; each tile is run with an extra
``overlap = receptive_field + feather`` on every side that is inside the image. All tile
starts are multiples of the model's ``align`` so the tile touching the right/bottom edge
gets the same alignment padding as the whole image would (tiled == untiled there too).

Blending happens in output space with separable feathered weights: along each axis a
tile's weight is 0 within ``receptive_field`` of an inner edge of its extended box (those
pixels saw fake padding), then ramps linearly to 1 over ``feather`` px, reaching 1 at its
core border. Image borders get weight 1 (the model's own border padding is the same as
for the whole image). Every output pixel therefore only mixes values that are exact for a
tile-invariant model, so tiled == untiled up to float rounding; for models with global
operations (cunet's squeeze-excitation pooling) the ramp hides the seam instead.

Memory: tiles are produced row by row; as soon as a tile row is done, the output rows the
next row cannot touch are normalised and handed on (a generator), so only one band of
``(T + 2*overlap) * scale`` output rows is ever held in float. The tile side comes from a
memory budget (``memory_budget`` or half the free RAM), see ``plan()``.

Out of memory: the backend raises ``OutOfMemory``; the failing tile is split in four and
the run goes on, later tiles use the smaller size. Below ``MIN_TILE`` it gives up with
one clear line.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np

from engine.errors import Cancelled, EnhanceError, OutOfMemory

MIN_TILE = 32
MAX_TILE_INVARIANT = 1024      # bigger tiles buy little once the overlap is < 10 %
FEATHER_INVARIANT = 4          # enough: the values in the ramp agree anyway
FEATHER_NON_INVARIANT = 32     # long ramp: hides the tile dependence of cunet

# Working memory of a backend per extended input pixel of a tile (fp32, ORT CPU, measured
# peak RSS growth per tile pixel, rounded up; see bench/results/memory.md).
DEFAULT_BUDGET_CAP = 4 << 30


def free_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); a cautious 2 GB elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other Unixes
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 << 30


def free_vram_bytes() -> Optional[int]:
    """Free memory of the first NVIDIA GPU (nvidia-smi), or None when there is none."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5).stdout
        return int(out.split()[0]) << 20
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def default_budget(device: str = "cpu") -> int:
    """Half the free RAM (or, for a CUDA/TensorRT model, half the free VRAM; for a Vulkan
    device, half the heap ncnn gives it), capped at 4 GB."""
    free = None
    dev = (device or "").lower()
    if dev.startswith("vulkan:"):
        from engine.models.backends.runtimes import vulkan_devices

        heap = next((d.heap_mb for d in vulkan_devices() if f"vulkan:{d.index}" == dev), 0)
        free = heap << 20 if heap > 0 else None
    elif any(k in dev for k in ("cuda", "tensorrt", "gpu")):
        free = free_vram_bytes()
    if free is None:
        free = free_memory_bytes()
    return int(min(DEFAULT_BUDGET_CAP, max(256 << 20, free // 2)))


# The ncnn runtime's peak grows over the first tiles of a run (its per-layer buffers are not
# reused across tile shapes the way ORT's arena is): measured through the pipeline on
# photo-x2, 400 px tiles, 1 MP: 1.94 GB peak vs 1.06 GB with ORT, i.e. ~2.2x ORT's figure.
NCNN_FACTOR = 2.2
# OpenVINO in bf16 keeps half-size activations: measured on photo-x4 (200x200 input) 7.9 kB per
# input px vs 14.4 kB in float32 and the catalog's 17 kB (ORT); 0.6 of the catalog figure leaves
# a margin. Bigger tiles under the same budget: photo-x4 at 1.5 GB on 20 MP gets ~112 px cores
# instead of ~42 (bench/results/tiling.md).
BF16_FACTOR = 0.6


def bytes_per_px(spec, device: str = "cpu") -> int:
    """Working memory per input pixel of a tile: the model's measured figure (``ModelSpec.bytes_per_px``)."""
    base = int(spec.bytes_per_px)
    if str(device).startswith(("ncnn", "vulkan")):
        return int(base * NCNN_FACTOR)
    return int(base * BF16_FACTOR) if str(device) == "openvino-bf16" else base


@dataclass(frozen=True)
class TilePlan:
    tile: int            # core side (input px); >= max(H, W) means one tile
    overlap: int         # context on each inner side (input px)
    rf: int              # receptive field: weight 0 within this of an inner edge
    feather: int         # ramp length (input px)
    align: int
    scale: int           # model output / input

    def grid(self, h: int, w: int, tile: Optional[int] = None) -> list[tuple[int, int]]:
        return grid_of(tile or self.tile, h, w)

    def processed(self, h: int, w: int) -> int:
        """Input pixels the network processes on an h x w image, overlaps included."""
        return processed_px(self.tile, self.overlap, h, w)


def grid_of(tile: int, h: int, w: int) -> list[tuple[int, int]]:
    """Top-left corners of the core tiles of side ``tile`` covering an h x w image."""
    return [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]


def processed_px(tile: int, context: int, h: int, w: int) -> int:
    """Pixels that tiles of core side ``tile`` with ``context`` px on each inner side cover in
    total (the work of a tiled run, in pixels; h*w for one tile)."""
    def extent(n: int) -> int:
        return sum(min(n, a + tile + context) - max(0, a - context) for a in range(0, n, tile))

    return extent(h) * extent(w)


def _round_down(v: int, a: int) -> int:
    return max(a, v // a * a)


def _round_up(v: int, a: int) -> int:
    return -(-v // a) * a


def plan(spec, h: int, w: int, *, tile: Optional[int] = None, memory_budget: Optional[int] = None,
         device: str = "cpu") -> TilePlan:
    """Choose tile side and overlap for this model and image.

    ``tile``: None = from the memory budget, 0 = whole image, N = forced core side.
    Budget split: 50 % for the backend's working memory on one tile, 25 % for the band of
    output rows being blended (it spans the whole width), the rest for the strip
    post-processing (resample, grain, conversion) and the copies made while streaming.
    """
    align = max(1, spec.align, 2 if spec.post_downscale > 1 else 1)
    feather = FEATHER_INVARIANT if spec.tile_invariant else FEATHER_NON_INVARIANT
    rf = int(spec.receptive_field)
    overlap = _round_up(rf + feather, align)
    feather = overlap - rf
    s = spec.scale
    whole = max(h, w)
    if tile == 0:
        t = whole
    elif tile is not None:
        if tile < MIN_TILE:
            raise EnhanceError(f"tile size {tile} is below the minimum of {MIN_TILE} px (0 = whole image)")
        t = tile
    else:
        budget = memory_budget or default_budget(device)
        side = int(math.sqrt(0.5 * budget / bytes_per_px(spec, device)))       # extended tile side
        band = int(0.25 * budget / (max(1, w * s) * s * 16))              # acc (12 B) + weight (4 B)
        t = min(side, band) - 2 * overlap
        if spec.tile_invariant:
            t = min(t, MAX_TILE_INVARIANT)
        t = max(MIN_TILE, t)
    if str(device) == "tensorrt":          # one TensorRT engine covers inputs up to TRT_MAX_SIDE
        from engine.models.backends.onnx_backend import TRT_MAX_SIDE

        t = min(t, TRT_MAX_SIDE - 2 * (overlap + spec.prepad + align))
    t = _round_down(t, align) if t < whole else whole
    if t >= whole:
        t = _round_up(whole, align)
    return TilePlan(tile=t, overlap=overlap, rf=rf, feather=feather, align=align, scale=s)


def _ramp(n_out: int, start_inner: bool, end_inner: bool, rf: float, feather: float) -> np.ndarray:
    """1-D weights over a tile's extended output extent (length n_out, output px)."""
    p = np.arange(n_out, dtype=np.float32) + 0.5
    w = np.ones(n_out, np.float32)
    for inner, d in ((start_inner, p), (end_inner, n_out - p)):
        if inner:
            if feather > 0:
                w = np.minimum(w, np.clip((d - rf) / feather, 0.0, 1.0))
            else:
                w = np.minimum(w, (d > rf).astype(np.float32))
    return w


ModelRun = Callable[[np.ndarray], np.ndarray]
RgbBox = Callable[[int, int, int, int], np.ndarray]     # (y0, y1, x0, x1) -> the model's input for that box


def tiled_rows(run: ModelRun, get_rgb: RgbBox, h: int, w: int,
               p: TilePlan, *, progress=None, cancel=None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(y0, rows)``: finished model-output rows (float32, width ``w*scale``), in order.

    ``get_rgb(y0, y1, x0, x1)`` gives the model's input for a box; ``run`` is the model.
    """
    s = p.scale
    W = w * s
    state = {"tile": p.tile, "done": 0}
    n_rows = -(-h // p.tile)
    n_cols = -(-w // p.tile)
    state["total"] = n_rows * n_cols

    def report(msg: str) -> None:
        if progress is not None:
            progress(state["done"], state["total"], msg)

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")

    def ext(a0: int, a1: int, n: int) -> tuple[int, int]:
        return max(0, a0 - p.overlap), min(n, a1 + p.overlap)

    def run_core(y0: int, y1: int, x0: int, x1: int, acc: np.ndarray, wsum: np.ndarray, band0: int) -> None:
        """Run one core box (splitting it on OOM) and add its weighted output to the band."""
        t = state["tile"]
        if max(y1 - y0, x1 - x0) > t:       # an earlier OOM lowered the tile: pre-split
            subs = [(a, min(y1, a + t), b, min(x1, b + t))
                    for a in range(y0, y1, t) for b in range(x0, x1, t)]
            state["total"] += len(subs) - 1
            for sb in subs:
                run_core(*sb, acc, wsum, band0)
            return
        check_cancel()
        ey0, ey1 = ext(y0, y1, h)
        ex0, ex1 = ext(x0, x1, w)
        x = np.ascontiguousarray(get_rgb(ey0, ey1, ex0, ex1), dtype=np.float32)
        try:
            y = run(x)
        except OutOfMemory:
            half = _round_down(max(y1 - y0, x1 - x0) // 2, p.align)
            if half < MIN_TILE or max(y1 - y0, x1 - x0) <= MIN_TILE:
                raise EnhanceError(
                    f"out of memory even at the smallest tile ({MIN_TILE} px): close other programs, "
                    "use --device cpu, or a smaller model") from None
            state["tile"] = min(state["tile"], half)
            report(f"out of memory: tile lowered to {state['tile']} px")
            run_core(y0, y1, x0, x1, acc, wsum, band0)
            return
        del x
        if y.shape[:2] != ((ey1 - ey0) * s, (ex1 - ex0) * s):
            raise EnhanceError(f"model returned {y.shape[:2]} for a {(ey1 - ey0)}x{(ex1 - ex0)} tile "
                               f"(expected scale {s}): the model file does not match its catalog entry")
        wy = _ramp(y.shape[0], ey0 > 0, ey1 < h, p.rf * s, p.feather * s)
        wx = _ramp(y.shape[1], ex0 > 0, ex1 < w, p.rf * s, p.feather * s)
        wt = wy[:, None] * wx[None, :]
        r0 = ey0 * s - band0
        sl = (slice(r0, r0 + y.shape[0]), slice(ex0 * s, ex1 * s))
        y *= wt[:, :, None]
        acc[sl] += y
        wsum[sl] += wt
        state["done"] += 1
        report(f"tile {state['done']}/{state['total']}")

    report("starting")
    band0 = 0
    carry_acc = carry_w = None
    for ty in range(n_rows):
        y0, y1 = ty * p.tile, min(h, (ty + 1) * p.tile)
        ey1 = ext(y0, y1, h)[1]
        band1 = ey1 * s
        acc = np.zeros((band1 - band0, W, 3), np.float32)
        wsum = np.zeros((band1 - band0, W), np.float32)
        if carry_acc is not None and carry_w is not None:
            acc[:carry_acc.shape[0]] = carry_acc
            wsum[:carry_w.shape[0]] = carry_w
            carry_acc = carry_w = None
        for tx in range(n_cols):
            run_core(y0, y1, tx * p.tile, min(w, (tx + 1) * p.tile), acc, wsum, band0)
        final = (max(0, y1 - p.overlap) * s if ty + 1 < n_rows else h * s)
        k = final - band0
        if k > 0:
            out = acc[:k]
            ww = wsum[:k]
            if np.any(ww <= 0):
                raise AssertionError("tiling left a pixel without weight (bug)")
            out /= ww[:, :, None]
            yield band0, out
        carry_acc, carry_w = acc[k:].copy(), wsum[k:].copy()
        del acc, wsum
        band0 = final
    report("done")
