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

Request header fields (see docs/api.md for the full table): model, width, height,
channels (1, 2, 3, 4), dtype ("u8", "u16", "f32"), channel_order ("RGBA" | "BGRA"),
strength (0-100), grain (0-100 or null), keep_color, scale (null = the model's), mask
(bool: width*height u8 bytes follow the pixels), feather (px), review, protect, tile.
Result frames: pixels, then the u8 review map and the u8 defect mask (restore-dust's
repaired spots) when the header describes them (``result_header``).
"""
from __future__ import annotations

import json
import struct
from typing import Any, List, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_HEADER = 64 * 1024          # a header is a few hundred bytes; anything bigger is hostile
DTYPE_SIZE = {"u8": 1, "u16": 2, "f32": 4}
NP_DTYPE = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2"), "f32": np.dtype("<f4")}
WIRE_DTYPE = {np.dtype("uint8"): "u8", np.dtype("uint16"): "u16", np.dtype("float32"): "f32"}
MAX_SIDE = 65_535


class FrameError(ValueError):
    """A frame that cannot be parsed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class JobHeader(BaseModel):
    """The JSON header of ``POST /v1/jobs``. Unknown fields are refused (typos like
    ``strenght`` would otherwise be silently ignored)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=128, description="catalog id, e.g. photo-x2")
    width: int = Field(ge=1, le=MAX_SIDE)
    height: int = Field(ge=1, le=MAX_SIDE)
    channels: Literal[1, 2, 3, 4] = Field(description="1 gray, 2 gray+alpha, 3 RGB, 4 RGBA")
    dtype: Literal["u8", "u16", "f32"]
    channel_order: Literal["RGBA", "BGRA"] = Field(
        "RGBA", description="BGRA: Krita's byte order; the result comes back in the same order")
    strength: float = Field(60.0, ge=0, le=100, description="% of the model's change kept")
    grain: Optional[float] = Field(None, ge=0, le=100, description="% of the original's fine "
                                   "texture re-injected; null = the pipeline's default")
    keep_color: bool = False
    scale: Optional[float] = Field(None, gt=0, le=8, description="null = the model's own scale")
    mask: bool = Field(False, description="true: width*height u8 bytes follow the pixels")
    feather: float = Field(0.0, ge=0, le=1000, description="mask feather radius in px")
    review: bool = Field(False, description="also return the review map (u8, output size)")
    protect: List[Literal["faces", "text"]] = Field(default_factory=list, max_length=2)
    tile: Optional[int] = Field(None, ge=16, le=16384, description="force a tile size (px)")

    def pixel_bytes(self) -> int:
        return self.width * self.height * self.channels * DTYPE_SIZE[self.dtype]

    def mask_bytes(self) -> int:
        return self.width * self.height if self.mask else 0


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


def parse_header(raw: bytes) -> JobHeader:
    """Validate the JSON header; 422 with a readable message on any problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(422, "JSON header is not valid UTF-8") from None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise FrameError(422, f"malformed JSON header: {e}") from None
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
    if len(set(hdr.protect)) != len(hdr.protect):
        raise FrameError(422, "bad job header: protect lists an item twice")
    return hdr


def to_array(hdr: JobHeader, pixels: bytes | bytearray | memoryview) -> np.ndarray:
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


def result_header(arr: np.ndarray, hdr: JobHeader, review: Optional[np.ndarray],
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
