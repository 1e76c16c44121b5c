"""The one image pipeline used by the CLI, the server and the benchmarks (Contract 2).

    from engine.pipeline import enhance, EnhanceOptions
    res = enhance(image, EnhanceOptions(model="photo-x2", strength=0.6), progress=cb, cancel=ev)

Flow, all in float32 and streamed in horizontal strips (memory: see tiling.py):

1. formats: gray / RGB / RGBA, uint8 / uint16 / float32. Colour channels go to the model
   as RGB 0..1 (gray repeated; uint16 never passes through 8 bits), alpha is kept apart and
   resampled with the plain linear filter.
2. tiling: seamless feathered tiles sized from a memory budget, OOM -> halve and go on.
3. scale: the model's output is brought to the asked scale: area-averaged when the model
   gives an integer multiple of it (photo-x4 used for 2x; photo-x2 used for 1x, the
   "detail" mode: the network's sharper rendering averaged back to the input size),
   Lanczos-3 otherwise.
4. blend (blend.py): strength / mask / protection, grain, keep colour against the
   Lanczos-3 resampled original.
5. back to the caller's dtype and layout; optional review map.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from engine.errors import BadInput, Cancelled, EnhanceError, TooLarge
from engine.pipeline import blend as _blend
from engine.pipeline.formats import Resampler, Source, from_float, luma, resample, to_float

__all__ = ["enhance", "EnhanceOptions", "EnhanceResult", "output_size", "GRAIN_DEFAULT", "PROTECT_KINDS"]

GRAIN_DEFAULT = _blend.GRAIN_DEFAULT
from engine.options import PROTECT_KINDS  # noqa: E402  (re-exported: the protect choices)

PROTECT_FACTOR = 0.8      # protected pixels keep 20 % of the strength
CHUNK_PX = 1 << 19        # post-processing strip size (output px): bounds the blend temporaries


class EnhanceOptions:
    """One job's settings: the task id, engine-side knobs, and the job option values.

    The job options (strength, grain, ..., and each task's own such as restore-dust's
    ``sensitivity``) are declared once in ``engine/options.py`` / the task modules; here they
    are given in *pipeline units* (fractions: ``strength=0.6`` is 60 %) and checked against
    that table when the options are made (BadInput names the option and its range in the
    units users see). Read them as attributes (``opts.strength``).
    ``grain=True`` means the default amount (:data:`GRAIN_DEFAULT`).
    """

    def __init__(self, model: str = "photo-x2", *, mask: Optional[np.ndarray] = None,
                 hints: Optional[np.ndarray] = None, tile: Optional[int] = None,
                 memory_budget: Optional[int] = None, device: str = "auto",
                 max_input_mp: float = 100.0, max_output_mp: float = 400.0, **values: Any):
        from engine import tasks
        from engine.options import validate

        if isinstance(values.get("grain"), bool):
            values["grain"] = GRAIN_DEFAULT if values["grain"] else 0.0
        # ``tile`` is also a job option (the wire's), but here it is the field above (0 = whole image);
        # what is not given starts at the task's default (a repair's strength is 100)
        table = {k: o for k, o in tasks.job_options(model).items() if k != "tile"}
        self.model = model
        self.mask = mask                  # HxW (or HxWx1) u8 / u16 / float of the INPUT size
        self.hints = hints                # HxWx4 RGBA of the INPUT size: colorize's colour strokes
        self.tile = tile                  # None = from memory budget, 0 = whole image
        self.memory_budget = memory_budget   # bytes
        self.device = device
        self.max_input_mp = max_input_mp
        self.max_output_mp = max_output_mp
        self.values: dict[str, Any] = validate(table, values, wire_units=False)   # wire units
        self._table = table
        # what the caller gave stays exact (0.6 stays 0.6, not 0.6 * 100 / 100)
        self._pipe = {k: (values[k] if k in values and not isinstance(values[k], (list, tuple))
                          else table[k].to_pipeline(v)) for k, v in self.values.items()}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or "_pipe" not in self.__dict__:
            raise AttributeError(name)
        try:
            return self._pipe[name]
        except KeyError:
            raise AttributeError(f"EnhanceOptions has no option {name!r}") from None

    def pipeline_values(self) -> dict[str, Any]:
        """Every option value in pipeline units (what tasks receive)."""
        return dict(self._pipe)

    def replace(self, **changes: Any) -> EnhanceOptions:
        """A copy with some fields or option values changed (pipeline units)."""
        fields = {k: getattr(self, k) for k in ("model", "mask", "hints", "tile", "memory_budget", "device",
                                               "max_input_mp", "max_output_mp")}
        vals = self.pipeline_values()
        for k, v in changes.items():
            (fields if k in fields else vals)[k] = v
        return EnhanceOptions(**fields, **vals)

    def __repr__(self) -> str:
        return f"EnhanceOptions(model={self.model!r}, {self.values!r})"


@dataclass
class EnhanceResult:
    image: np.ndarray
    review: Optional[np.ndarray] = None
    layers: dict = field(default_factory=dict)   # extra maps of the task at the input size (0..1)
    model: str = ""
    scale: float = 1.0
    tile: int = 0
    tiles: int = 0
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def defects(self) -> Optional[np.ndarray]:
        """restore-dust: the repaired spots (HxW 0..1), else None."""
        return self.layers.get("defects")


def output_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def _check(image_shape: tuple[int, int], opts: EnhanceOptions) -> None:
    """Checks of the image itself; option ranges are checked by the option table."""
    h, w = image_shape
    if h <= 0 or w <= 0:
        raise BadInput(f"the image is empty ({w}x{h} px)")
    if h * w > opts.max_input_mp * 1e6:
        raise TooLarge(f"the image is {w}x{h} = {h * w / 1e6:.0f} MP, over the limit of "
                       f"{opts.max_input_mp:g} MP: crop it or raise the limit")


def _protection(src: Source, kinds: tuple[str, ...]) -> np.ndarray:
    try:
        from engine.review import protection_mask
    except (ImportError, AttributeError):
        raise EnhanceError("face/text protection is not available in this build "
                           "(engine.review.protection_mask is missing)") from None
    m = np.asarray(protection_mask(src.rgb(0, src.h), tuple(kinds)), dtype=np.float32)
    if m.shape[:2] != (src.h, src.w):
        raise EnhanceError("engine.review.protection_mask returned a map of the wrong size (bug)")
    return np.clip(m.reshape(src.h, src.w), 0.0, 1.0)


def _review(src: Source, out: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    try:
        from engine.review import review_map
    except (ImportError, AttributeError):
        raise EnhanceError("the review map is not available in this build "
                           "(engine.review.review_map is missing)") from None
    orig = src.rgb(0, src.h)
    rs = resample(orig, out_h, out_w)
    res = to_float(out.reshape(out_h, out_w, -1))[..., :3]
    if res.shape[2] == 1:
        res = np.repeat(res, 3, axis=2)
    return np.asarray(review_map(orig, rs, res), dtype=np.float32)


class _Rows:
    """Rows [start, end) of a tall image held in memory (a rolling band)."""

    def __init__(self) -> None:
        self.start = 0
        self.data: Optional[np.ndarray] = None

    @property
    def end(self) -> int:
        return self.start + (0 if self.data is None else self.data.shape[0])

    def append(self, y0: int, rows: np.ndarray) -> None:
        if y0 != self.end:
            raise AssertionError("rows out of order (bug)")
        self.data = rows if self.data is None else np.concatenate([self.data, rows], axis=0)

    def get(self, a: int, b: int) -> np.ndarray:
        if a < self.start or b > self.end:
            raise AssertionError(f"rows {a}..{b} not held ({self.start}..{self.end}) (bug)")
        assert self.data is not None
        return self.data[a - self.start:b - self.start]

    def drop_before(self, y: int) -> None:
        if self.data is not None and y > self.start:
            k = min(y - self.start, self.data.shape[0])
            self.data = self.data[k:].copy()
            self.start += k


def _model_kernel(model_scale: int, target: float) -> str:
    ratio = model_scale / target
    return "area" if ratio > 1 and abs(ratio - round(ratio)) < 1e-9 else "lanczos3"


def enhance(image: np.ndarray, opts: Optional[EnhanceOptions] = None, *,
            progress: Optional[Callable[[int, int, str], None]] = None, cancel=None,
            model=None) -> EnhanceResult:
    """Enhance one image; see the module docstring and docs/internals.md (Contract 2).

    ``model``: an already loaded model object (``.run``, ``.spec``), e.g. from the server's
    cache; by default ``engine.models.backends.load_model(opts.model, opts.device)``.
    """
    t_start = time.monotonic()
    opts = opts or EnhanceOptions()
    src = Source(image)
    h, w = src.h, src.w
    _check((h, w), opts)

    # --- the task ----------------------------------------------------------------------
    from engine import tasks

    if model is not None:                    # an already loaded network (benchmarks, tests)
        from engine.tasks.network import NetworkTask

        task: tasks.Task = NetworkTask(model.spec, model=model)
    else:
        task = tasks.get(opts.model)
        if progress is not None and task.info.kind == "network":
            progress(0, 0, "loading the model")      # not "0 %": loading a big net takes seconds
        task.prepare(opts.device)
    t_compute = time.monotonic()                 # the speed book leaves model loading out
    if tasks.colour_result(task.info, opts.hints is not None) and src.fmt.gray:   # colorize: gray -> colour
        src = Source(np.repeat(src.image, 3, axis=2))
    if task.info.skips:
        from engine.options import NEUTRAL

        if "scale" in task.info.skips and opts.scale not in (None, 1.0):
            raise BadInput(f"{task.info.id} keeps the image size: leave the scale out (or set it to 1), "
                           "then enlarge the result with an upscaler")
        opts = opts.replace(**{k: NEUTRAL[k] for k in task.info.skips})
    values = opts.pipeline_values()
    mask01 = _mask01(opts.mask, h, w)
    tasks.require_inputs(task.info, mask01 is not None, opts.hints is not None)
    req = tasks.TaskRequest(rgb=_rgb_reader(src), height=h, width=w, values=values, tile=opts.tile,
                            memory_budget=opts.memory_budget, progress=progress, cancel=cancel,
                            mask=mask01 if task.info.needs_mask else None, hints=opts.hints)
    if not task.info.blends:
        direct = task.run(req, opts.device)
        if direct.passthrough:             # identity: the input comes back untouched
            return EnhanceResult(image=np.array(image, copy=True), model=task.info.id, scale=1.0,
                                 review=np.zeros((h, w), np.float32) if opts.review else None,
                                 seconds=time.monotonic() - t_start)
    target = float(opts.scale) if opts.scale is not None else float(task.info.scale)
    out_h, out_w = output_size(h, w, target)
    if out_h * out_w > opts.max_output_mp * 1e6:
        raise TooLarge(f"the result would be {out_w}x{out_h} = {out_h * out_w / 1e6:.0f} MP, over the "
                       f"limit of {opts.max_output_mp:g} MP: use a smaller --scale or crop")

    # --- per-pixel strength -----------------------------------------------------------
    smap = None
    if mask01 is not None:
        smap = _blend.feather_mask(mask01, opts.feather)
    if opts.protect:
        prot = _protection(src, tuple(opts.protect))
        smap = (smap if smap is not None else np.ones((h, w), np.float32)) * (1.0 - PROTECT_FACTOR * prot)
    if smap is not None:
        smap = (smap * np.float32(opts.strength)).astype(np.float32)[:, :, None]

    # --- model output rows (at the model's scale) -------------------------------------
    produced: Optional[tasks.TaskOutput] = None
    if opts.strength == 0 and smap is None:
        ms = 1
        model_rows: Iterator[tuple[int, np.ndarray]] = iter(())   # nothing of the model reaches the result
    else:
        produced = task.run(req, opts.device)
        ms = produced.scale
        model_rows = produced.rows

    # --- stream: model rows -> target rows -> blended output rows --------------------
    fmt = src.fmt
    C = fmt.work_channels
    out = np.empty((out_h, out_w, fmt.channels), fmt.dtype)
    orig_rs = Resampler(h, w, out_h, out_w, "lanczos3")
    plain_rs = Resampler(h, w, out_h, out_w, "linear")
    Hm, Wm = h * ms, w * ms
    ms_buf = _Rows()
    m_rs = None if (Hm, Wm) == (out_h, out_w) else Resampler(Hm, Wm, out_h, out_w, _model_kernel(ms, target))
    m_buf = _Rows() if m_rs is not None else ms_buf
    last_needed = m_rs.jy.max(axis=1) + 1 if m_rs is not None and not m_rs.same_h else None   # non-decreasing
    sigma = _blend.GRAIN_SIGMA * max(out_h / h, out_w / w)
    margin = _blend.blur_radius(sigma) if opts.grain > 0 else 0
    no_model = opts.strength == 0 and smap is None
    chunk = max(16, CHUNK_PX // out_w)
    state = {"done": 0}

    def post(limit: int) -> None:
        """Blend and write output rows [done, limit)."""
        while state["done"] < limit:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            a = state["done"]
            b = min(limit, a + chunk)
            c0, c1 = max(0, a - margin), min(out_h, b + margin)
            r = orig_rs.rows(c0, c1, lambda r0, r1: src.color(r0, r1))
            if no_model:
                o = r[a - c0:b - c0]
            else:
                m = m_buf.get(c0, c1)
                if C == 1:
                    m = luma(m)
                elif opts.keep_color:
                    m = _blend.keep_color(r, m)
                s = opts.strength if smap is None else plain_rs.rows(a, b, lambda r0, r1: smap[r0:r1])
                o = _blend.combine(r, m, s, opts.grain, sigma, a - c0, c1 - b)
            if fmt.alpha:
                al = np.clip(plain_rs.rows(a, b, src.alpha), 0.0, 1.0)
                o = np.concatenate([o, al], axis=2)
            out[a:b] = from_float(o, fmt.dtype)
            state["done"] = b
        if not no_model:
            m_buf.drop_before(max(0, state["done"] - margin))

    for y0, rows in model_rows:
        ms_buf.append(y0, rows)
        if m_rs is not None:
            if m_rs.same_h:
                z = out_h if ms_buf.end == Hm else ms_buf.end
            else:
                assert last_needed is not None
                z = int(np.searchsorted(last_needed, ms_buf.end, side="right"))
            z = max(z, m_buf.end)
            for a in range(m_buf.end, z, chunk):
                b = min(z, a + chunk)
                m_buf.append(a, m_rs.rows(a, b, ms_buf.get))
            if z < out_h:
                ms_buf.drop_before(m_rs.need(z, z + 1)[0])
            else:
                ms_buf.drop_before(Hm)
        avail = m_buf.end
        post(out_h if avail >= out_h else max(state["done"], avail - margin))
    post(out_h)
    if state["done"] != out_h:
        raise AssertionError("pipeline did not produce every row (bug)")

    result = out[:, :, 0] if fmt.squeeze else out
    rev = _review(src, out, out_h, out_w) if opts.review else None
    layers = dict(produced.layers) if produced is not None else {}
    info: dict = dict(produced.info) if produced is not None else {}   # a task may add to it while its rows run
    from engine import speed
    speed.book().record(task.info.id, opts.device, h * w / 1e6, time.monotonic() - t_compute,
                        task.info.ms_per_mp_cpu)
    return EnhanceResult(image=result, review=rev, layers=layers, model=task.info.id, scale=target,
                         tile=produced.tile if produced else 0, tiles=produced.tiles if produced else 0,
                         seconds=time.monotonic() - t_start, info=info)


def _mask01(mask: Optional[np.ndarray], h: int, w: int) -> Optional[np.ndarray]:
    """The job's mask as float32 0..1 of the input size (u8 / u16 / float), or BadInput."""
    if mask is None:
        return None
    mk = np.asarray(mask)
    if mk.ndim == 3 and mk.shape[2] == 1:
        mk = mk[:, :, 0]
    if mk.shape != (h, w):
        raise BadInput(f"the mask is {mk.shape[1] if mk.ndim > 1 else '?'}x{mk.shape[0]} px but the "
                       f"image is {w}x{h}: they must be the same size")
    return _blend.feather_mask(mk, 0.0)


def _rgb_reader(src: Source) -> Callable[[int, int, int, int], np.ndarray]:
    """The task's view of the input: RGB 0..1 of a box (float inputs clipped to 0..1)."""
    def get_rgb(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        x = src.rgb(y0, y1, x0, x1)
        if src.fmt.dtype == np.float32:
            x = np.clip(x, 0.0, 1.0)
        return x
    return get_rgb
