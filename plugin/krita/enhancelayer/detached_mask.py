"""A transparency mask for Krita 5.1, made without a view and outside any layer tree.

Why: Krita 5.1's Python API has no ``createTransparencyMask`` (5.2 added it); a mask made with
``createNode`` has no selection to paint, and the "add transparency mask" action needs the layer
active in a view and is an undo step of its own, so a result came back as TWO undo steps (the
first Ctrl+Z removed only the mask and left the unmasked layer: issue 16). A mask that Krita
LOADS from a file does have a selection. So: a one-pixel Photoshop document whose only layer
carries a layer mask (Krita's PSD import turns it into a transparency mask) is opened without a
view, its mask duplicated and the document closed. The copy is painted like any node
(``setPixelData``) and added to the new layer off the tree; the caller then adds the layer once:
one undo step, as on 5.2. Checked in Krita 5.1.5 (kritarunner and the full app).

The file is written here, byte by byte, after Adobe's published PSD layout (header, empty
colour-mode and resource sections, one layer record with a user mask, raw channel data, and an
RLE merged image).
"""
from __future__ import annotations

import os
import struct
import tempfile
from typing import Any, Optional

_LAYER_CHANNELS = (-1, 0, 1, 2, -2)    # alpha, R, G, B, the user mask: one byte each (1x1)


def _pascal_name(name: bytes) -> bytes:
    """A layer name: length byte + bytes, padded to a multiple of 4 (PSD)."""
    b = bytes([len(name)]) + name
    return b + b"\0" * (-len(b) % 4)


def template_psd() -> bytes:
    """A 1x1 RGB 8-bit PSD: one transparent layer with a 1x1 layer mask (all hidden)."""
    rect = struct.pack(">iiii", 0, 0, 1, 1)                     # top, left, bottom, right
    record = rect + struct.pack(">H", len(_LAYER_CHANNELS))
    for cid in _LAYER_CHANNELS:
        record += struct.pack(">hI", cid, 2 + 1)               # compression field + one byte
    mask = rect + struct.pack(">BB2x", 0, 0)                   # default colour 0, flags 0
    extra = struct.pack(">I", len(mask)) + mask + struct.pack(">I", 0) + _pascal_name(b"mask")
    record += b"8BIMnorm" + bytes([255, 0, 0, 0]) + struct.pack(">I", len(extra)) + extra
    channels = b"".join(struct.pack(">HB", 0, 0) for _ in _LAYER_CHANNELS)   # raw, value 0
    layers = struct.pack(">h", 1) + record + channels
    layers += b"\0" * (len(layers) % 2)
    section = struct.pack(">I", len(layers)) + layers + struct.pack(">I", 0)
    row = bytes([0, 0])                                        # PackBits: one literal zero byte
    merged = struct.pack(">H", 1) + struct.pack(">H", len(row)) * 3 + row * 3
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 1, 1, 8, 3)
    return header + struct.pack(">II", 0, 0) + struct.pack(">I", len(section)) + section + merged


def transparency_mask(app: Any, name: str) -> Optional[Any]:
    """A transparency mask node in no document (paint it with ``setPixelData``, then add it to
    a layer), named ``name``; None when Krita could not load the template."""
    fd, path = tempfile.mkstemp(prefix="enhancelayer-mask-", suffix=".psd")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(template_psd())
        # batch mode: no import dialog can stop the retoucher's run (the file is ours and plain)
        batch = bool(app.batchmode())
        app.setBatchmode(True)
        try:
            scratch = app.openDocument(path)
        finally:
            app.setBatchmode(batch)
        if scratch is None:
            return None
        try:
            scratch.waitForDone()
            found = [c for n in scratch.topLevelNodes() for c in n.childNodes() if c.type() == "transparencymask"]
            mask = found[0].duplicate() if found else None
        finally:
            scratch.close()
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
    if mask is not None:
        mask.setName(name)
    return mask
