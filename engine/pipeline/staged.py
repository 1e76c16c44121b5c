"""Run a deep network stage by stage over the whole image, each stage tiled with its own exact
context, when that wastes much less work than tiling the whole network (photo-x4 under a small
memory budget). Why and how the graph is split: engine/models/stages.py.

Flow of one job:

1. the image is padded once, as the upstream wrapper pads the whole image (so the result is the
   untiled network's, up to float rounding);
2. each stage runs over the padded image in tiles of a few hundred px with its halo (exact
   context: the number of 3x3 convolutions it has); its output feature map is kept whole for
   the next stage, in RAM when the budget allows, else in a file-backed array in the cache
   folder (64 float32 channels: ~5 GB per 20 MP map; at most three are alive at once), deleted
   when the job ends, fails or is cancelled;
3. the tail (the upsampling) runs through the ordinary tiler on the last feature map, so its
   output rows are streamed and blended as for any model.

Work done: ``plan_staged`` estimates the network's work as a multiple of the image's
(multiply-adds of each stage times the pixels its tiles process, plus the tail's) and is
used only where it beats the plain tiler's estimate clearly (bench/results/tiling.md).
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from engine import paths
from engine.errors import Cancelled, EnhanceError, OutOfMemory
from engine.models.backends import prepost
from engine.models.stages import Split, split_files
from engine.pipeline import tiling

# Working memory per px of a stage tile / of the tail's input, as a fraction of the whole
# network's catalog figure (then scaled for the runtime by tiling.bytes_per_px). Measured on
# photo-x4, peak RSS growth per px at 200 and 320 px: a 2-RRDB stage 4.6-5.1 kB (OpenVINO f32),
# 3.3-3.4 kB (bf16), 2.7-2.9 kB (ORT), i.e. at most 0.34 of the scaled catalog figure; the 4x tail
# 9.0-9.3 / 4.9-5.1 / 10.3-10.6 kB, at most 0.63.
STAGE_MEMORY = 0.35
TAIL_MEMORY = 0.75
# A stage's halo may cost at most this much extra work (its tile side from the budget). More
# stages cost less compute but more reading and writing of feature maps: photo-x4 in bf16 on
# 1 MP at 1.5 GB took 74 s with 1-RRDB stages (limit 16 px), 63 s with 2-RRDB stages (32 px),
# 76 s with 4-RRDB stages (64 px); this limit picks 32 px there.
STAGE_OVERHEAD = 1.35
HALO_STEPS = (8, 16, 32, 64, 128)
# Use stages only when they cut the estimated work by at least this factor: the feature maps are
# written and read once per stage (RAM or disk), which the work estimate leaves out.
MIN_GAIN = 1.3
DISK_MARGIN = 1 << 30


@dataclass(frozen=True)
class StagedPlan:
    split: Split
    files: tuple[Path, ...]
    tail_file: Path
    tiles: tuple[int, ...]            # core tile side of each stage (px of the padded image)
    tail_plan: tiling.TilePlan
    padded: tuple[int, int]           # padded input H, W
    in_ram: bool
    map_dtype: str                    # feature maps: float32, or float16 under a bf16 runtime
    work: float                       # estimated network work / the untiled network's
    plain_work: float                 # the same for the plain tiler's plan
    disk_free: Optional[int] = None   # free bytes in the cache folder (maps on disk), else None

    @property
    def disk_short(self) -> bool:
        """The maps go to disk and the cache folder has not room for them (plus a margin)."""
        return self.disk_free is not None and self.disk_free < self.feature_bytes + DISK_MARGIN

    def disk_note(self) -> str:
        """What the retoucher is told when the stages could not run for want of disk."""
        gb = 1 << 30
        return (f"ran in tiles, about {self.plain_work / self.work:.0f}x the work: running it stage by stage "
                f"needs {(self.feature_bytes + DISK_MARGIN) / gb:.0f} GB free in {paths.cache_dir()} "
                f"({(self.disk_free or 0) / gb:.1f} GB free)")

    @property
    def feature_bytes(self) -> int:
        """Bytes of the largest set of feature maps alive at once."""
        return _peak_maps(self.split, *self.padded, np.dtype(self.map_dtype).itemsize)


def _peak_maps(split: Split, hp: int, wp: int, itemsize: int) -> int:
    alive: dict[str, int] = {}
    peak = 0
    last = {t: k for k, st in enumerate(split.stages) for t in st.inputs}
    for t in split.tail.inputs:
        last[t] = len(split.stages)
    for k, st in enumerate(split.stages):
        for t in st.outputs:
            alive[t] = split.channels[t] * hp * wp * itemsize
        peak = max(peak, sum(alive.values()))
        alive = {t: b for t, b in alive.items() if last.get(t, -1) > k}
    return peak


def _work(split: Split, tiles: tuple[int, ...], tail_plan: tiling.TilePlan, hp: int, wp: int, h: int, w: int) -> float:
    """Multiply-adds the stages' and the tail's tiles do, divided by the untiled network's."""
    done = 0.0
    for st, t in zip(split.stages, tiles):
        done += st.macs_per_px * _stage_px(hp, wp, t, st.halo)
    done += split.tail.macs_per_px * tail_plan.processed(hp, wp)
    whole = sum(st.macs_per_px for st in split.stages) + split.tail.macs_per_px
    return done / (whole * h * w)


# Runtimes where stages are measured (bench/results/tiling.md). Not the GPU providers: untested
# (no GPU so far), and TensorRT would build an engine per stage; not ncnn: it runs the wheel's
# .param/.bin, not the ONNX graph that is cut.
STAGED_DEVICES = ("cpu", "openvino", "openvino-bf16")


def _stageable(model: Any) -> bool:
    spec = model.spec
    return (hasattr(model, "feed") and getattr(model, "path", None) is not None
            and str(getattr(model, "device", "")) in STAGED_DEVICES
            and spec.tile_invariant and spec.post_downscale == 1 and not spec.net_shrinks
            and spec.native_scale == spec.scale and spec.scale >= 1)


def plan_staged(model: Any, h: int, w: int, *, tile: Optional[int] = None, memory_budget: Optional[int] = None,
                stage_tile: Optional[int] = None, max_halo: Optional[int] = None) -> Optional[StagedPlan]:
    """A staged plan when it clearly beats the plain tiler for this image and budget, else None.

    ``tile`` set (a forced tile, or 0 = whole image) keeps the plain tiler. ``stage_tile`` and
    ``max_halo`` force the stages' core tile and context limit (tests, benches: many seams and
    many stages on a small image).
    """
    if tile is not None or not _stageable(model):
        return None
    spec = model.spec
    device = str(model.device)
    budget = memory_budget or tiling.default_budget(device)
    plain = tiling.plan(spec, h, w, memory_budget=budget, device=device)
    plain_work = plain.processed(h, w) / (h * w)
    if stage_tile is None and plain_work < MIN_GAIN:
        return None
    per_px = tiling.bytes_per_px(spec, device)
    side = int(math.sqrt(0.5 * budget / max(1.0, STAGE_MEMORY * per_px)))      # extended tile side
    bound = side * (1 - 1 / math.sqrt(STAGE_OVERHEAD)) / 2
    if max_halo is None:
        max_halo = max([HALO_STEPS[0], *[s for s in HALO_STEPS if s <= bound]])
    try:
        got = split_files(Path(model.path), paths.cache_dir(), max_halo)
    except Exception:  # noqa: BLE001 - a graph the splitter cannot handle (a user's file) runs in tiles as before
        return None
    if got is None:
        return None
    split, files, tail_file = got
    p, a = spec.prepad, max(1, spec.align)
    hp, wp = h + 2 * p + (-h) % a, w + 2 * p + (-w) % a
    tiles = tuple(stage_tile or max(tiling.MIN_TILE, side - 2 * st.halo) for st in split.stages)
    tail_spec = replace(spec, receptive_field=split.tail.halo, align=1, prepad=0,
                        bytes_per_px=int(TAIL_MEMORY * spec.bytes_per_px))
    tail_plan = tiling.plan(tail_spec, hp, wp, memory_budget=budget, device=device, tile=stage_tile)
    work = _work(split, tiles, tail_plan, hp, wp, h, w)
    # bf16 keeps 8 bits of mantissa in every layer; float16 maps (11 bits, features of RRDB stay
    # within +-2 on photos, far inside its range) add less error than that and halve the disk and
    # the reading and writing. Float32 runtimes keep float32 maps: their output stays exact.
    map_dtype = "float16" if device == "openvino-bf16" else "float32"
    maps = _peak_maps(split, hp, wp, np.dtype(map_dtype).itemsize)
    in_ram = maps <= budget // 4
    if stage_tile is None and work * MIN_GAIN > plain_work:
        return None
    free = None
    if not in_ram:
        cache = paths.cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(cache).free
    return StagedPlan(split=split, files=tuple(files), tail_file=tail_file, tiles=tiles, tail_plan=tail_plan,
                      padded=(hp, wp), in_ram=in_ram, map_dtype=map_dtype, work=work, plain_work=plain_work,
                      disk_free=free)


def _load_piece(model: Any, path: Path) -> Any:
    """A stage's network on the job's runtime. Loaded for its stage and dropped after it: a
    runtime keeps working memory sized for the last tile per loaded network (OpenVINO's infer
    request, ONNX Runtime's arena), so keeping all the stages loaded would hold that memory once
    per stage (measured: 14 GB for photo-x4's 23 stages). Loading one costs well under a second."""
    from engine.models.backends.onnx_backend import OnnxModel

    return OnnxModel(model.spec, path, str(model.device))


class _RamMap:
    """A C x H x W feature map in memory."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.shape = a.shape[1:]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.a[:, y0:y1, x0:x1]

    def write(self, y0: int, x0: int, v: np.ndarray) -> None:
        self.a[:, y0:y0 + v.shape[1], x0:x0 + v.shape[2]] = v

    def close(self) -> None:
        del self.a


class _FileMap:
    """A C x H x W feature map in a file. Each read or write maps the file only for the moment
    it copies one box, so the data lives in the OS's page cache (which the OS drops or writes
    out under memory pressure), not in this process's memory as a file kept mapped would."""

    def __init__(self, path: Path, c: int, h: int, w: int, dtype: str) -> None:
        self.path, self.shape3, self.dtype = path, (c, h, w), np.dtype(dtype)
        self.shape = (h, w)
        with open(path, "wb") as f:
            f.truncate(c * h * w * self.dtype.itemsize)

    def _map(self, mode: Literal["r", "r+"]) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode=mode, shape=self.shape3)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        m = self._map("r")
        box = np.array(m[:, y0:y1, x0:x1])
        del m                    # the last reference: unmapped here, not at some later collection
        return box

    def write(self, y0: int, x0: int, v: np.ndarray) -> None:
        m = self._map("r+")
        m[:, y0:y0 + v.shape[1], x0:x0 + v.shape[2]] = v
        del m

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def staged_rows(model: Any, sp: StagedPlan, get_rgb: tiling.RgbBox, h: int, w: int, *,
                progress: Any = None, cancel: Optional[threading.Event] = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(y0, rows)`` like :func:`tiling.tiled_rows`: the network's output for the image."""
    spec = model.spec
    s = spec.scale
    hp, wp = sp.padded
    stage_tiles = [len(_spans(hp, t, st.halo)) * len(_spans(wp, t, st.halo))
                   for t, st in zip(sp.tiles, sp.split.stages)]
    total = sum(stage_tiles) + len(sp.tail_plan.grid(hp, wp))
    done = [0]

    def report(msg: str) -> None:
        if progress is not None:
            progress(done[0], total, msg)

    report("starting")
    x = prepost.pad_input(spec, np.asarray(get_rgb(0, h, 0, w), dtype=np.float32))[0]   # 3 x hp x wp
    folder = None if sp.in_ram else Path(tempfile.mkdtemp(prefix="stages-", dir=paths.cache_dir()))
    maps: dict[str, Any] = {sp.split.stages[0].inputs[0]: _RamMap(x)}
    del x          # the map holds it now, and is closed after the first stage (20 MP: 240 MB)
    try:
        last_use = {t: k for k, st in enumerate(sp.split.stages) for t in st.inputs}
        for k, (st, path, t) in enumerate(zip(sp.split.stages, sp.files, sp.tiles)):
            piece = _load_piece(model, path)
            for name in st.outputs:
                c = sp.split.channels[name]
                maps[name] = (_RamMap(np.empty((c, hp, wp), sp.map_dtype)) if folder is None else
                              _FileMap(folder / f"{k}-{name}.map", c, hp, wp, sp.map_dtype))
            for ys in _spans(hp, t, st.halo):
                for xs in _spans(wp, t, st.halo):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("cancelled")
                    _run_box(piece, st, maps, ys, xs)
                    done[0] += 1
                    report(f"stage {k + 1}/{len(sp.files)}")
            del piece
            for name in [n for n in maps if last_use.get(n, len(sp.files)) <= k and n not in sp.split.tail.inputs]:
                maps.pop(name).close()      # no later stage reads it
        feats = maps[sp.split.tail.inputs[0]]
        tail = _load_piece(model, sp.tail_file)
        tname, oname = sp.split.tail.inputs[0], sp.split.tail.outputs[0]

        def run_tail(f: np.ndarray) -> np.ndarray:
            return np.asarray(tail.feed({tname: f[None]})[oname][0].transpose(1, 2, 0))

        base = done[0]

        def tail_progress(d: int, tot: int, msg: str) -> None:
            done[0] = base + d
            if progress is not None:
                progress(done[0], base + tot, f"upsampling: {msg}")

        p = spec.prepad
        keep0, keep1 = p * s, (p + h) * s
        for y0, rows in tiling.tiled_rows(run_tail, feats.read, hp, wp, sp.tail_plan,
                                          progress=tail_progress, cancel=cancel):
            a, b = max(y0, keep0), min(y0 + rows.shape[0], keep1)
            if a < b:
                yield a - keep0, rows[a - y0:b - y0, p * s:(p + w) * s]
    finally:
        for m in maps.values():
            m.close()
        maps.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _spans(n: int, t: int, g: int) -> list[tuple[int, int, int, int]]:
    """Along one axis of length n: (core start, core end, box start, box end) of at most t px
    wide cores, each box the core plus g px of context. The cores are balanced (equal within a
    pixel) and the boxes at the image's edges slid inwards, so that every box has the same size:
    a runtime prepares a network for every new input shape (OpenVINO: ~0.4 s for one RRDB stage,
    measured), so one shape per stage saves that for every tile but the first."""
    k = -(-n // max(1, t))
    core = -(-n // k)
    e = min(n, core + 2 * g)
    out = []
    for a in range(0, n, core):
        b = min(n, a + core)
        e0 = min(max(0, a - g), n - e)
        out.append((a, b, e0, e0 + e))
    return out


def _stage_px(n_h: int, n_w: int, t: int, g: int) -> int:
    """Pixels a stage's boxes cover in total (its work in pixels)."""
    return sum(e1 - e0 for *_c, e0, e1 in _spans(n_h, t, g)) * sum(e1 - e0 for *_c, e0, e1 in _spans(n_w, t, g))


def _run_box(piece: Any, st: Any, maps: dict[str, Any], y: tuple[int, int, int, int],
             x: tuple[int, int, int, int]) -> None:
    """One core box of a stage in its context box; out of memory splits the core in four."""
    y0, y1, ey0, ey1 = y
    x0, x1, ex0, ex1 = x
    feeds = {n: np.ascontiguousarray(maps[n].read(ey0, ey1, ex0, ex1)[None], dtype=np.float32) for n in st.inputs}
    try:
        out = piece.feed(feeds)
    except OutOfMemory:
        if max(y1 - y0, x1 - x0) <= tiling.MIN_TILE:
            raise EnhanceError(f"out of memory even at the smallest tile ({tiling.MIN_TILE} px): close other "
                               "programs, or use a smaller model") from None
        del feeds
        g = st.halo
        hp, wp = maps[st.inputs[0]].shape
        for a, b in ((y0, (y0 + y1) // 2), ((y0 + y1) // 2, y1)):
            for c, d in ((x0, (x0 + x1) // 2), ((x0 + x1) // 2, x1)):
                if a < b and c < d:
                    _run_box(piece, st, maps, (a, b, max(0, a - g), min(hp, b + g)),
                             (c, d, max(0, c - g), min(wp, d + g)))
        return
    for n in st.outputs:
        maps[n].write(y0, x0, out[n][0, :, y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0])
