"""The binary body format of the HTTP API (Contract 3), server side.

One frame = 4-byte big-endian header length N, N bytes of UTF-8 JSON header, then raw
payload bytes. Pixels are row-major with interleaved channels; u16 and f32 samples are
little-endian. The plug-ins' stdlib client (``plugin/client/wire.py``) writes and reads the
same frames without numpy; keep both in step (``tests/server/test_wire.py`` checks them
against each other).

Why not PNG/TIFF: encoding a 4096x4096 16-bit layer costs seconds inside the host; raw
bytes cost a memcpy, and both hosts hand out raw bytes anyway (Krita: ``pixelData`` in
B,G,R,A order, GIMP: ``Gegl.Buffer.get`` in R,G,B,A). The server swaps BGRA so plug-ins
need no numpy.

Request header fields (see docs/api.md): the frame fields model, width, height, channels
(1, 2, 3, 4), dtype ("u8", "u16", "f32"), channel_order ("RGBA" | "BGRA"), mask (bool:
width*height u8 bytes follow the pixels), then the job options by name (strength, grain,
..., sensitivity), whose types, ranges and defaults come from the option table
(``engine/options.py`` + the task modules, see ``engine.tasks.all_options``).
Result frames: pixels, then the u8 review map and the u8 defect mask (restore-dust's
repaired spots) when the header describes them (``result_header``).
"""
from __future__ import annotations

import json
import struct
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from engine.options import Option

MAX_HEADER = 64 * 1024          # a header is a few hundred bytes; anything bigger is hostile
DTYPE_SIZE = {"u8": 1, "u16": 2, "f32": 4}
NP_DTYPE: dict[str, np.dtype] = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2"), "f32": np.dtype("<f4")}
WIRE_DTYPE = {np.dtype("uint8"): "u8", np.dtype("uint16"): "u16", np.dtype("float32"): "f32"}
MAX_SIDE = 65_535


class FrameError(ValueError):
    """A frame that cannot be parsed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class JobFrame(BaseModel):
    """The frame fields of the JSON header of ``POST /v1/jobs`` (what the pixels are). The job
    options are added to it from the option table (:data:`JobHeader`). Unknown fields are
    refused (typos like ``strenght`` would otherwise be silently ignored)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=128, description="task / model id, e.g. photo-x2")
    width: int = Field(ge=1, le=MAX_SIDE)
    height: int = Field(ge=1, le=MAX_SIDE)
    channels: Literal[1, 2, 3, 4] = Field(description="1 gray, 2 gray+alpha, 3 RGB, 4 RGBA")
    dtype: Literal["u8", "u16", "f32"]
    channel_order: Literal["RGBA", "BGRA"] = Field(
        "RGBA", description="BGRA: Krita's byte order; the result comes back in the same order")
    mask: bool = Field(False, description="true: width*height u8 bytes follow the pixels")
    hints: bool = Field(False, description="true: width*height*4 u8 RGBA bytes follow (after the mask): "
                                           "colorize's colour strokes, opaque pixels are hints")

    def pixel_bytes(self) -> int:
        return self.width * self.height * self.channels * DTYPE_SIZE[self.dtype]

    def mask_bytes(self) -> int:
        return self.width * self.height if self.mask else 0

    def hints_bytes(self) -> int:
        return 4 * self.width * self.height if self.hints else 0

    def input_bytes(self) -> int:
        """Everything after the header: pixels, mask, hints."""
        return self.pixel_bytes() + self.mask_bytes() + self.hints_bytes()

    def option_values(self) -> dict[str, Any]:
        """The job options as given (wire units); absent or null ones get the model's default
        (its task's own where it has one: descreen's strength is 100, not the table's 60)."""
        from engine import tasks

        defaults = tasks.job_options(self.model, OPTIONS)
        out = {}
        for o in OPTIONS:
            v = getattr(self, o.name)
            out[o.name] = defaults[o.name].default if v is None else (tuple(v) if isinstance(v, list) else v)
        return out


def _field(o: Option) -> tuple[Any, Any]:
    """A pydantic field for one option of the table (null always means "the default")."""
    from engine import tasks

    kw: dict[str, Any] = {"description": f"{o.help} Default: {tasks.default_text(o)}."}
    if o.kind in ("float", "int"):
        if o.minimum is not None:
            kw["gt" if o.exclusive_minimum else "ge"] = o.minimum
        if o.maximum is not None:
            kw["le"] = o.maximum
        typ: Any = float if o.kind == "float" else int
    elif o.kind == "bool":
        typ = bool
    elif o.kind == "choice":
        typ = _one_of(o.choices)
    else:
        typ = list.__class_getitem__(_one_of(o.choices))     # list[Literal[...choices]]
        kw["max_length"] = len(o.choices)
    return Optional[typ], Field(None, **kw)


def _one_of(values: tuple[str, ...]) -> Any:
    """``Literal[values]`` made at run time (the choices come from the option table)."""
    return Literal.__getitem__(values)


def _options() -> list[Option]:
    from engine import tasks
    return tasks.all_options()


OPTIONS = _options()
# The whole header schema: frame fields + one field per job option, derived from the table.
JobHeader = create_model("JobHeader", __base__=JobFrame,
                         **{o.name: _field(o) for o in OPTIONS})  # type: ignore[call-overload]


def pack(header: dict, *payload: bytes) -> bytes:
    """One frame: length prefix + JSON header + payload parts."""
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return b"".join((struct.pack(">I", len(h)), h, *payload))


def header_length(prefix: bytes) -> int:
    """The header length from the first 4 bytes; 413 for an oversized header."""
    if len(prefix) < 4:
        raise FrameError(400, "body too short: a job body starts with a 4-byte header length")
    (n,) = struct.unpack(">I", prefix[:4])
    if n == 0:
        raise FrameError(422, "empty JSON header")
    if n > MAX_HEADER:
        raise FrameError(413, f"JSON header of {n} bytes is over the {MAX_HEADER}-byte limit")
    return n


def parse_header(raw: bytes) -> JobFrame:
    """Validate the JSON header; 422 with a readable message on any problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(422, "JSON header is not valid UTF-8") from None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise FrameError(422, f"malformed JSON header: {e}") from None
    except RecursionError:              # [[[[...]]]] deeper than the parser's stack
        raise FrameError(422, "malformed JSON header: nested too deeply") from None
    if not isinstance(obj, dict):
        raise FrameError(422, "JSON header must be an object")
    try:
        hdr = JobHeader.model_validate(obj)
    except ValidationError as e:
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ())) or "header"
            parts.append(f"{loc}: {err.get('msg')}")
        raise FrameError(422, "bad job header: " + "; ".join(parts)) from None
    for o in OPTIONS:
        v = getattr(hdr, o.name)
        if o.kind == "multi" and v is not None and len(set(v)) != len(v):
            raise FrameError(422, f"bad job header: {o.name} lists an item twice")
    return hdr


def to_array(hdr: JobFrame, pixels: bytes | bytearray | memoryview) -> np.ndarray:
    """Raw pixels -> HxWxC numpy array in R,G,B(,A) order (a copy we may write to)."""
    a = np.frombuffer(pixels, dtype=NP_DTYPE[hdr.dtype], count=hdr.width * hdr.height * hdr.channels)
    a = a.reshape(hdr.height, hdr.width, hdr.channels)
    native = NP_DTYPE[hdr.dtype].newbyteorder("=")
    if hdr.channel_order == "BGRA" and hdr.channels >= 3:
        return _swap(a).astype(native, copy=False)       # the gather is the one copy
    if a.dtype != native or not a.flags.writeable:
        return a.astype(native)
    return a                                             # a view of the server's own bytearray


def _swap(a: np.ndarray) -> np.ndarray:
    """R<->B as one gather (a new array): half the memory traffic of copy-then-swap."""
    return a[..., [2, 1, 0, 3][:a.shape[2]]]


def from_array(a: np.ndarray, channel_order: str = "RGBA") -> bytes:
    """HxWxC array in R,G,B(,A) order -> raw little-endian bytes in ``channel_order``."""
    if a.ndim == 2:
        a = a[:, :, None]
    if channel_order == "BGRA" and a.shape[2] >= 3:
        a = _swap(a)
    wire = WIRE_DTYPE[a.dtype]
    return np.ascontiguousarray(a, dtype=NP_DTYPE[wire]).tobytes()


def gray_alpha_to_rgba(a: np.ndarray) -> np.ndarray:
    """2-channel gray+alpha (Krita GRAYA) -> RGBA, because the pipeline takes 1, 3 or 4 channels."""
    g = a[..., :1]
    return np.concatenate([g, g, g, a[..., 1:2]], axis=2)


def rgba_to_gray_alpha(a: np.ndarray) -> np.ndarray:
    """Back to gray+alpha: the mean of R,G,B (the model ran on three equal planes)."""
    if a.dtype == np.float32:
        g = a[..., :3].mean(axis=2, keepdims=True, dtype=np.float32)
    else:
        g = np.rint(a[..., :3].astype(np.float32).mean(axis=2, keepdims=True)).astype(a.dtype)
    return np.concatenate([g, a[..., 3:4]], axis=2)


def _extra_map(m: Optional[np.ndarray]) -> Optional[dict]:
    """How a u8 HxW map that follows the pixels is described in the result header."""
    if m is None:
        return None
    return {"width": m.shape[1], "height": m.shape[0], "dtype": "u8", "bytes": int(m.shape[0] * m.shape[1])}


def result_header(arr: np.ndarray, hdr: JobFrame, review: Optional[np.ndarray],
                  extra: dict[str, Any] | None = None, defects: Optional[np.ndarray] = None) -> dict:
    """The result frame's header. The payload is the pixels, then the review map (when
    ``review`` is described), then the defect mask (when ``defects`` is described): both u8,
    row-major, at the output size."""
    h, w = arr.shape[:2]
    out: dict[str, Any] = {
        "width": w, "height": h, "channels": hdr.channels, "dtype": hdr.dtype,
        "channel_order": hdr.channel_order, "model": hdr.model,
        "review": _extra_map(review),
        "defects": _extra_map(defects),
    }
    if extra:
        out.update(extra)
    return out
