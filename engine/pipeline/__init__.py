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

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from engine import catalog
from engine.errors import BadInput, Cancelled, EnhanceError, TooLarge
from engine.pipeline import blend as _blend
from engine.pipeline import tiling as _tiling
from engine.pipeline.formats import Resampler, Source, from_float, luma, resample, to_float

__all__ = ["enhance", "EnhanceOptions", "EnhanceResult", "output_size", "GRAIN_DEFAULT"]

GRAIN_DEFAULT = _blend.GRAIN_DEFAULT
PROTECT_KINDS = ("faces", "text")
PROTECT_FACTOR = 0.8      # protected pixels keep 20 % of the strength
CHUNK_PX = 1 << 19        # post-processing strip size (output px): bounds the blend temporaries


@dataclass
class EnhanceOptions:
    model: str = "photo-x2"
    strength: float = 0.6               # 0..1 (the CLI's 0-100 % / 100)
    grain: float = 0.0                  # 0..1; True or GRAIN_DEFAULT is what --grain turns on
    keep_color: bool = False
    scale: Optional[float] = None       # output / input; None = the model's scale
    mask: Optional[np.ndarray] = None   # HxW (or HxWx1) u8 / u16 / float of the INPUT size
    feather: float = 0.0                # mask feather, input px
    tile: Optional[int] = None          # None = from memory budget, 0 = whole image
    memory_budget: Optional[int] = None  # bytes
    device: str = "auto"
    protect: tuple[str, ...] = ()       # "faces", "text"
    review: bool = False
    sensitivity: float = 0.5            # restore-dust detection sensitivity
    max_input_mp: float = 100.0
    max_output_mp: float = 400.0


@dataclass
class EnhanceResult:
    image: np.ndarray
    review: Optional[np.ndarray] = None
    defects: Optional[np.ndarray] = None     # restore-dust: the repaired spots (HxW 0..1)
    model: str = ""
    scale: float = 1.0
    tile: int = 0
    tiles: int = 0
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


def output_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def _check(image_shape: tuple[int, int], opts: EnhanceOptions) -> None:
    h, w = image_shape
    if not (0.0 <= float(opts.strength) <= 1.0) or math.isnan(float(opts.strength)):
        raise BadInput(f"strength must be between 0 and 100 % (0..1 in the API; got {opts.strength:g})")
    if not (0.0 <= float(opts.grain) <= 1.0):
        raise BadInput(f"grain must be between 0 and 1 (got {opts.grain:g})")
    if opts.scale is not None and not (0 < float(opts.scale) <= 16):
        raise BadInput(f"scale must be > 0 and at most 16 (got {opts.scale:g})")
    if opts.feather < 0:
        raise BadInput("feather must be >= 0 px")
    bad = [k for k in opts.protect if k not in PROTECT_KINDS]
    if bad:
        raise BadInput(f"unknown protection {bad[0]!r}: use faces and/or text")
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
    cache; by default ``engine.backends.load_model(opts.model, opts.device)``.
    """
    t_start = time.monotonic()
    opts = opts or EnhanceOptions()
    if isinstance(opts.grain, bool):          # grain=True means "the default amount"
        opts = replace(opts, grain=GRAIN_DEFAULT if opts.grain else 0.0)
    src = Source(image)
    h, w = src.h, src.w
    _check((h, w), opts)

    # --- the model -------------------------------------------------------------------
    if model is not None:
        spec = model.spec
    else:
        spec = None
        try:
            spec = catalog.get(opts.model)
        except EnhanceError:
            if not opts.model.startswith("user:"):
                raise
        if spec is None or spec.family != "classic":
            from engine.backends import load_model

            model = load_model(opts.model, opts.device)
            spec = model.spec
    if spec.task == "identity":               # transport checks: the input comes back untouched
        if opts.scale not in (None, 1, 1.0):
            raise BadInput("the identity model only works at scale 1")
        return EnhanceResult(image=np.array(image, copy=True), model=spec.id, scale=1.0,
                             review=np.zeros((h, w), np.float32) if opts.review else None,
                             seconds=time.monotonic() - t_start)
    target = float(opts.scale) if opts.scale is not None else float(spec.scale)
    out_h, out_w = output_size(h, w, target)
    if out_h * out_w > opts.max_output_mp * 1e6:
        raise TooLarge(f"the result would be {out_w}x{out_h} = {out_h * out_w / 1e6:.0f} MP, over the "
                       f"limit of {opts.max_output_mp:g} MP: use a smaller --scale or crop")

    # --- per-pixel strength -----------------------------------------------------------
    smap = None
    if opts.mask is not None:
        mk = np.asarray(opts.mask)
        if mk.ndim == 3 and mk.shape[2] == 1:
            mk = mk[:, :, 0]
        if mk.shape != (h, w):
            raise BadInput(f"the mask is {mk.shape[1] if mk.ndim > 1 else '?'}x{mk.shape[0]} px but the "
                           f"image is {w}x{h}: they must be the same size")
        smap = _blend.feather_mask(mk, opts.feather)
    if opts.protect:
        prot = _protection(src, tuple(opts.protect))
        smap = (smap if smap is not None else np.ones((h, w), np.float32)) * (1.0 - PROTECT_FACTOR * prot)
    if smap is not None:
        smap = (smap * np.float32(opts.strength)).astype(np.float32)[:, :, None]

    # --- model output rows (at the model's scale) -------------------------------------
    info: dict = {}
    defects = None
    plan = None
    if opts.strength == 0 and smap is None:
        ms = 1
        model_rows = iter(())          # nothing of the model reaches the result
    elif spec.family == "classic":
        from engine import restore

        ms = 1
        if progress:
            progress(0, 1, "repairing")
        repaired, defects = restore.repair(np.clip(src.rgb(0, h), 0, 1), sensitivity=opts.sensitivity)
        if progress:
            progress(1, 1, "repaired")
        model_rows = iter([(0, np.asarray(repaired, dtype=np.float32))])
    else:
        ms = int(spec.scale)
        plan = _tiling.plan(spec, h, w, tile=opts.tile, memory_budget=opts.memory_budget,
                            device=str(getattr(model, "device", "cpu")))
        info["tile"], info["overlap"] = plan.tile, plan.overlap

        def get_rgb(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            x = src.rgb(y0, y1, x0, x1)
            if src.fmt.dtype == np.float32:
                x = np.clip(x, 0.0, 1.0)
            return x

        model_rows = _tiling.tiled_rows(model.run, get_rgb, h, w, plan, progress=progress, cancel=cancel)

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
    if m_rs is not None and not m_rs.same_h:
        last_needed = m_rs.jy.max(axis=1) + 1          # non-decreasing
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
    return EnhanceResult(image=result, review=rev, defects=defects, model=spec.id, scale=target,
                         tile=plan.tile if plan else 0,
                         tiles=len(plan.grid(h, w)) if plan else (1 if not no_model else 0),
                         seconds=time.monotonic() - t_start, info=info)
