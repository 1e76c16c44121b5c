"""The host work of the Krita plug-in, without any widget: tests drive it inside real Krita.

Flow (the three steps are apart because Krita's API must be called on the GUI thread while
the HTTP wait runs on a worker thread):

1. ``read_source(doc, node, opts, margin)``  GUI thread: pixels of the active layer inside the
   selection's bounding box plus the model's margin (clamped to the document), in Krita's
   native layout converted to a wire format the engine accepts.
2. ``run_job(client, src, opts, progress)``  any thread: submit + wait over HTTP.
3. ``write_result(src, opts, result)``        GUI thread: a NEW layer above the source (or a
   new document), masked to the selection. Nothing in the document changes before the result
   has arrived, so an error or a cancel leaves no layer behind.

Pixel layouts, checked in Krita 5.1.5 (tests/hosts/krita/probe_layout.py reproduces it):
integer RGBA (U8, U16) is B,G,R,A; float RGBA (F16, F32) is R,G,B,A; all little-endian.
F16 travels as f32 (the wire has u8/u16/f32 only) and is converted with ``struct`` (no numpy
inside Krita).
"""
from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

try:  # installed layout: install_krita.py vendors plugin/client/ as this sub-package
    from .enhancelayer_client import EngineClient, EngineError  # type: ignore
except ImportError:  # pragma: no cover - a hand-copied plug-in without its client
    EngineClient = None  # type: ignore

    class EngineError(Exception):  # type: ignore
        pass

SETTINGS_GROUP = "enhancelayer"
OUTPUT_MODES = ("masked", "layer", "document")

# Krita depth -> (wire dtype, bytes per channel in Krita, channel order Krita uses)
DEPTHS = {
    "U8": ("u8", 1, "BGRA"),
    "U16": ("u16", 2, "BGRA"),
    "F16": ("f32", 2, "RGBA"),
    "F32": ("f32", 4, "RGBA"),
}


class PluginError(Exception):
    """A problem the user can act on; the UI shows the message as is."""


class Cancelled(PluginError):
    """The user cancelled: no message box, nothing left in the document."""


@dataclass
class Options:
    model: str = "photo-x2"
    strength: int = 60          # percent
    grain: int = 0              # percent
    keep_color: bool = False
    scale: int = 1
    output: str = "masked"      # masked | layer | document
    protect: tuple = ()         # ("faces", "text")
    review: bool = False

    def as_settings(self) -> dict:
        return {"model": self.model, "strength": str(self.strength), "grain": str(self.grain),
                "keep_color": str(self.keep_color).lower(), "scale": str(self.scale),
                "output": self.output, "protect": ",".join(self.protect),
                "review": str(self.review).lower()}

    @classmethod
    def from_settings(cls, get: Callable[[str, str], str]) -> "Options":
        d = cls()

        def _int(key: str, default: int, lo: int, hi: int) -> int:
            try:
                return max(lo, min(hi, int(get(key, str(default)))))
            except (TypeError, ValueError):
                return default

        output = get("output", d.output)
        return cls(
            model=get("model", d.model) or d.model,
            strength=_int("strength", d.strength, 0, 100),
            grain=_int("grain", d.grain, 0, 100),
            keep_color=get("keep_color", "false") == "true",
            scale=_int("scale", d.scale, 1, 4),
            output=output if output in OUTPUT_MODES else d.output,
            protect=tuple(p for p in get("protect", "").split(",") if p in ("faces", "text")),
            review=get("review", "false") == "true",
        )


def load_options() -> Options:
    from krita import Krita
    app = Krita.instance()
    return Options.from_settings(lambda k, dflt: app.readSetting(SETTINGS_GROUP, k, dflt))


def save_options(opts: Options) -> None:
    from krita import Krita
    app = Krita.instance()
    for k, v in opts.as_settings().items():
        app.writeSetting(SETTINGS_GROUP, k, v)


def layer_name(opts: Options) -> str:
    return f"Enhanced · {opts.model} · {opts.strength}%"


# --------------------------------------------------------------------------- engine access

def user_message(e: Exception) -> str:
    """The client's message, plus what to do when it only says what happened."""
    msg = str(e)
    kind = type(e).__name__
    if kind == "EngineUnreachable" and " — " not in msg:
        msg += (" — start the engine (`enhancelayer serve`), or check the engine URL in "
                "Krita's settings group [enhancelayer] engine_url")
    return msg


def connect(url: str = "", token: str = "", cafile: str = "") -> Any:
    """The engine client: remote when a URL is configured, else the local engine (started
    on first use through the launcher install.py wrote)."""
    if EngineClient is None:
        raise PluginError("The EnhanceLayer client is missing from the Krita plug-in: "
                          "run `python3 install.py` again to reinstall the plug-in.")
    try:
        if url:
            return EngineClient.remote(url, token, cafile or None)
        return EngineClient.local(start=True)
    except EngineError as e:
        raise PluginError(user_message(e)) from None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def model_list(client: Any) -> list:
    try:
        return list(client.models())
    except EngineError as e:
        raise PluginError(user_message(e)) from None


def model_margin(models: list, model_id: str) -> int:
    """Context pixels to send around the selection so the model sees what lies beyond it."""
    for m in models:
        if _get(m, "id") == model_id:
            for key in ("margin", "receptive_field", "prepad"):
                v = _get(m, key)
                if isinstance(v, int) and v >= 0:
                    return v
            return 16
    raise PluginError(f"The engine has no model '{model_id}': pick one from the list "
                      "(or run `enhancelayer import` to install the models).")


# --------------------------------------------------------------------------- pixel formats

def _f16_to_f32(data: bytes) -> bytes:
    n = len(data) // 2
    return array("f", struct.unpack(f"<{n}e", data)).tobytes()


def _f32_to_f16(data: bytes) -> bytes:
    vals = array("f")
    vals.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover
        vals.byteswap()
    # struct's 'e' raises on values beyond the half range: clamp them first
    lim = 65504.0
    return struct.pack(f"<{len(vals)}e", *(lim if v > lim else (-lim if v < -lim else v) for v in vals))


def is_linear(profile: str) -> bool:
    """Krita's linear-light profiles (its default for new 16-bit/float documents is
    ``sRGB-elle-V2-g10.icc``); the models expect sRGB-encoded values."""
    p = (profile or "").lower()
    return "g10" in p or "linear" in p


def _srgb_encode(v: float) -> float:
    if v <= 0.0031308:
        return v * 12.92
    return 1.055 * v ** (1 / 2.4) - 0.055


def _srgb_decode(v: float) -> float:
    if v <= 0.04045:
        return v / 12.92
    return ((v + 0.055) / 1.055) ** 2.4


_LUTS: dict = {}


def _lut(code: str, encode: bool) -> list:
    key = (code, encode)
    if key not in _LUTS:
        top = 255 if code == "B" else 65535
        f = _srgb_encode if encode else _srgb_decode
        _LUTS[key] = [min(top, max(0, int(f(i / top) * top + 0.5))) for i in range(top + 1)]
    return _LUTS[key]


def transfer(data: bytes, wire_dtype: str, encode: bool) -> bytes:
    """linear -> sRGB (``encode``) or back, on the colour channels of RGBA/BGRA wire data;
    alpha (channel 3) is left alone. Pure Python (LUTs for integers)."""
    code = {"u8": "B", "u16": "H", "f32": "f"}[wire_dtype]
    arr = array(code)
    arr.frombytes(data)
    if code == "f":
        f = _srgb_encode if encode else _srgb_decode

        def g(v: float) -> float:
            return f(v) if v >= 0 else -f(-v)
        for c in range(3):
            arr[c::4] = array("f", map(g, arr[c::4]))
    else:
        lut = _lut(code, encode)
        for c in range(3):
            arr[c::4] = array(code, map(lut.__getitem__, arr[c::4]))
    return arr.tobytes()


def _alpha_times(data: bytes, depth: str, sel: bytes) -> bytes:
    """Multiply the alpha channel by a 1-byte-per-pixel selection (fallback when this Krita
    cannot make a transparency mask without a view)."""
    if depth == "U8":
        a = bytearray(data)
        for i, s in enumerate(sel):
            j = 4 * i + 3
            a[j] = (a[j] * s + 127) // 255
        return bytes(a)
    code = {"U16": "H", "F32": "f"}.get(depth)
    if code is None:  # F16
        vals = list(struct.unpack(f"<{len(data) // 2}e", data))
        for i, s in enumerate(sel):
            vals[4 * i + 3] *= s / 255.0
        return struct.pack(f"<{len(vals)}e", *vals)
    arr = array(code)
    arr.frombytes(data)
    for i, s in enumerate(sel):
        j = 4 * i + 3
        arr[j] = (arr[j] * s + 127) // 255 if code == "H" else arr[j] * (s / 255.0)
    return arr.tobytes()


def _times(a: bytes, b: bytes) -> bytes:
    """Product of two u8 masks (255 = 1), e.g. the defect mask times the selection."""
    if not a.translate(None, b"\x00\xff"):
        # a is only 0 and 255 (restore-dust's mask today): the product is b where a is 255,
        # i.e. a bitwise AND, done on two big integers in C instead of a Python loop
        return (int.from_bytes(a, "big") & int.from_bytes(b, "big")).to_bytes(len(a), "big")
    return bytes((x * y + 127) // 255 for x, y in zip(a, b))


def defect_mask(result: Any, width: int, height: int) -> Optional[bytes]:
    """The result's defect mask (u8, 255 = repaired spot) when it covers the result's
    ``width`` x ``height`` pixels, else None (a model without one, or an older engine)."""
    d = getattr(result, "defects", None)
    if d is None:
        return None
    d = bytes(d)
    if (getattr(result, "defects_width", 0), getattr(result, "defects_height", 0)) != (width, height) \
            or len(d) != width * height:
        return None
    return d


# --------------------------------------------------------------------------- step 1

@dataclass
class Source:
    doc: Any
    node: Any
    depth: str
    profile: str
    wire_dtype: str
    order: str
    region: tuple          # x, y, w, h sent to the engine (document coordinates)
    bbox: tuple            # x, y, w, h of the selection (or the document)
    pixels: bytes          # wire format
    selection: Any = None  # a copy of the user's selection (None: no selection)
    extra: dict = field(default_factory=dict)


def _selection_bbox(doc: Any) -> Optional[tuple]:
    sel = doc.selection()
    if sel is None or sel.width() <= 0 or sel.height() <= 0:
        return None
    x0, y0 = max(0, sel.x()), max(0, sel.y())
    x1, y1 = min(doc.width(), sel.x() + sel.width()), min(doc.height(), sel.y() + sel.height())
    if x1 <= x0 or y1 <= y0:
        return None
    data = bytes(sel.pixelData(x0, y0, x1 - x0, y1 - y0))
    if not any(data):
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def read_source(doc: Any, node: Any, opts: Options, margin: int) -> Source:
    """Read the pixels to send; raises PluginError for what the user must change first."""
    if doc is None:
        raise PluginError("Open an image first: there is no active document.")
    if node is None or node.type() in ("transparencymask", "filtermask", "selectionmask",
                                       "transformmask", "colorizemask"):
        raise PluginError("Select a paint layer in the Layers docker: the active node is a mask.")
    if opts.output not in OUTPUT_MODES:
        raise PluginError(f"Unknown output mode '{opts.output}'.")
    model, depth = node.colorModel(), node.colorDepth()
    if model != "RGBA" or depth not in DEPTHS:
        raise PluginError(
            f"The layer is {model}/{depth}; EnhanceLayer works on RGB/Alpha layers (8 or 16-bit "
            "integer, 16 or 32-bit float). Convert it with Image > Convert Image Color Space… "
            "(or duplicate the layer and convert the copy), then try again.")
    wire, bpc, order = DEPTHS[depth]
    bbox = _selection_bbox(doc)
    selection = doc.selection().duplicate() if bbox else None
    if bbox is None:
        bbox = (0, 0, doc.width(), doc.height())
    bx, by, bw, bh = bbox
    m = max(0, int(margin))
    rx0, ry0 = max(0, bx - m), max(0, by - m)
    rx1, ry1 = min(doc.width(), bx + bw + m), min(doc.height(), by + bh + m)
    rw, rh = rx1 - rx0, ry1 - ry0
    # pixelData takes document coordinates: a moved layer's offset is taken care of by Krita
    raw = bytes(node.pixelData(rx0, ry0, rw, rh))
    if len(raw) != rw * rh * 4 * bpc:
        raise PluginError("Krita returned no pixels for this layer: pick a paint layer.")
    pixels = _f16_to_f32(raw) if depth == "F16" else raw
    linear = is_linear(node.colorProfile())
    if linear:
        pixels = transfer(pixels, wire, encode=True)
    return Source(doc=doc, node=node, depth=depth, profile=node.colorProfile(), wire_dtype=wire,
                  order=order, region=(rx0, ry0, rw, rh), bbox=bbox, pixels=pixels,
                  selection=selection, extra={"linear": linear})


# --------------------------------------------------------------------------- step 2

def run_job(client: Any, src: Source, opts: Options,
            progress: Optional[Callable[[float, str], bool]] = None,
            on_job: Optional[Callable[[str], None]] = None) -> Any:
    """Submit and wait; thread-safe (touches no Krita object). ``progress`` returning False
    cancels the job (Cancelled is raised); ``on_job(job_id)`` lets a Cancel button call
    ``client.cancel(job_id)`` at once instead of waiting for the next progress change."""
    cancelled = {"flag": False}

    def _cb(fraction: float, msg: str = "") -> bool:
        if progress is None:
            return True
        ok = progress(fraction, msg)
        if ok is False:
            cancelled["flag"] = True
            return False
        return True

    _, _, rw, rh = src.region
    try:
        job = client.submit(src.pixels, rw, rh, 4, src.wire_dtype, channel_order=src.order,
                            model=opts.model, strength=opts.strength, grain=opts.grain,
                            keep_color=opts.keep_color, scale=opts.scale, mask=None, feather=0,
                            review=opts.review, protect=list(opts.protect))
        if on_job is not None:
            on_job(job)
        result = client.wait(job, progress=_cb)
    except EngineError as e:
        if cancelled["flag"] or type(e).__name__ in ("Cancelled", "JobCancelled"):
            raise Cancelled("Cancelled.") from None
        raise PluginError(user_message(e)) from None
    except OSError as e:  # a transport error the client did not wrap
        raise PluginError(f"Lost the connection to the EnhanceLayer engine ({e}); "
                          "start it with `enhancelayer serve` and try again.") from None
    if cancelled["flag"]:
        raise Cancelled("Cancelled.")
    s = opts.scale
    if (result.width, result.height) != (rw * s, rh * s) or result.channels != 4:
        raise PluginError(f"The engine returned {result.width}x{result.height}x{result.channels} "
                          f"for {rw}x{rh}x4 at scale {s}: update the engine and the plug-in "
                          "together (`python3 install.py`).")
    return result


# --------------------------------------------------------------------------- step 3

def _crop(data: bytes, width: int, px_bytes: int, x: int, y: int, w: int, h: int) -> bytes:
    row = width * px_bytes
    out = bytearray()
    for yy in range(y, y + h):
        start = yy * row + x * px_bytes
        out += data[start:start + w * px_bytes]
    return bytes(out)


def _to_native(src: Source, data: bytes) -> bytes:
    if src.extra.get("linear"):
        data = transfer(data, src.wire_dtype, encode=False)
    return _f32_to_f16(data) if src.depth == "F16" else bytes(data)


def _upsample_nearest(data: bytes, w: int, h: int, s: int) -> bytes:
    out = bytearray()
    for y in range(h):
        row = data[y * w:(y + 1) * w]
        big = bytes(b for b in row for _ in range(s))
        for _ in range(s):
            out += big
    return bytes(out)


def _active_view_shows(doc: Any) -> bool:
    from krita import Krita
    win = Krita.instance().activeWindow()
    view = win.activeView() if win is not None else None
    d = view.document() if view is not None else None
    return d is not None and d.rootNode().uniqueId() == doc.rootNode().uniqueId()


def _all_nodes(node: Any) -> list:
    out = []
    for c in node.childNodes():
        out.append(c)
        out += _all_nodes(c)
    return out


def _mask_ids(doc: Any) -> set:
    return {str(n.uniqueId()) for n in _all_nodes(doc.rootNode()) if n.type() == "transparencymask"}


def _new_layer_via_action(doc: Any, node: Any) -> Any:
    """Krita 5.1 with a view: let Krita's own "add paint layer" make the layer above the
    active node, so its layer docker activates it (``setActiveNode`` on a node made by the
    script is ignored by 5.1's full app, and its mask action works on the active node).
    Returns None when that cannot be done exactly above ``node``."""
    from krita import Krita
    from PyQt5.QtCore import QCoreApplication
    app = Krita.instance()
    action = app.action("add_new_paint_layer")
    active = doc.activeNode()
    if action is None or hasattr(doc, "createTransparencyMask") or not _active_view_shows(doc) \
            or active is None or active.uniqueId() != node.uniqueId():
        return None
    parent = node.parentNode()
    before = {str(c.uniqueId()) for c in parent.childNodes()}
    action.trigger()
    doc.waitForDone()
    QCoreApplication.processEvents()
    kids = parent.childNodes()
    new = [c for c in kids if str(c.uniqueId()) not in before]
    if len(new) != 1:
        return None
    ids = [str(c.uniqueId()) for c in kids]
    if new[0].type() != "paintlayer" or ids.index(str(new[0].uniqueId())) != ids.index(str(node.uniqueId())) + 1:
        new[0].remove()
        return None
    return new[0]


def _add_mask(doc: Any, layer: Any, sel: Any, user_sel: Any, name: str = "Selection") -> tuple:
    """Transparency mask from ``sel`` on ``layer``; returns (kind, mask node or None).

    Krita >= 5.2 has ``createTransparencyMask``; 5.1 only makes one through its action,
    which needs a view of the document (always there for a user). Without a view (5.1
    headless) the selection goes into the new layer's alpha instead ("alpha"). The user's
    selection (``user_sel``; None: there was none) is put back afterwards."""
    if hasattr(doc, "createTransparencyMask"):
        mask = doc.createTransparencyMask(name)
        mask.setSelection(sel)
        layer.addChildNode(mask, None)
        return "mask", mask
    from krita import Krita
    action = Krita.instance().action("add_new_transparency_mask")
    if action is not None and _active_view_shows(doc):
        import time
        from PyQt5.QtCore import QCoreApplication
        # the layer docker learns about the new layer through queued signals: until then
        # setActiveNode is ignored, so retry for a moment
        doc.waitForDone()
        t_end = time.monotonic() + 2.0
        while True:
            doc.setActiveNode(layer)
            QCoreApplication.processEvents()
            active = doc.activeNode()
            if active is not None and active.uniqueId() == layer.uniqueId():
                break
            if time.monotonic() > t_end:
                return "alpha", None
            time.sleep(0.02)
        ids_before = _mask_ids(doc)
        doc.setSelection(sel)
        doc.waitForDone()
        action.trigger()
        doc.waitForDone()
        new = [c for c in layer.childNodes() if c.type() == "transparencymask"
               and str(c.uniqueId()) not in ids_before]
        # a mask the action put anywhere else (it follows the view's active node) goes away
        for n in _all_nodes(doc.rootNode()):
            if n.type() == "transparencymask" and str(n.uniqueId()) not in ids_before \
                    and not any(n.uniqueId() == m.uniqueId() for m in new):
                n.remove()
        if user_sel is not None:
            doc.setSelection(user_sel)
        else:
            from krita import Selection
            doc.setSelection(Selection())      # there was none: deselect again
        if new:
            new[0].setName(name)
            return "mask", new[0]
    return "alpha", None


def write_result(src: Source, opts: Options, result: Any) -> dict:
    """Create the output; returns what was made (names, kinds, rectangles) for callers/tests."""
    from krita import Krita, Selection
    doc, node, s = src.doc, src.node, opts.scale
    rx, ry, rw, rh = src.region
    bx, by, bw, bh = src.bbox
    px = 4 * DEPTHS[src.depth][1]
    wire_px = 4 * {"u8": 1, "u16": 2, "f32": 4}[src.wire_dtype]
    name = layer_name(opts)
    info: dict = {"name": name, "region": list(src.region), "bbox": list(src.bbox), "scale": s,
                  "output": opts.output, "depth": src.depth,
                  "linear_profile": bool(src.extra.get("linear"))}
    data = bytes(result.pixels)
    if src.order != DEPTHS[src.depth][2]:  # pragma: no cover - guarded by DEPTHS
        raise PluginError("internal: channel order mismatch")

    if opts.output == "document":
        out = _crop(data, rw * s, wire_px, (bx - rx) * s, (by - ry) * s, bw * s, bh * s)
        app = Krita.instance()
        nd = app.createDocument(bw * s, bh * s, f"{doc.name() or 'Image'} · {opts.model}",
                                "RGBA", src.depth, src.profile, doc.resolution() * s)
        lay = nd.createNode(name, "paintlayer")
        nd.rootNode().addChildNode(lay, None)
        for c in nd.rootNode().childNodes():
            if c.uniqueId() != lay.uniqueId():
                c.setVisible(False)
        lay.setPixelData(_to_native(src, out), 0, 0, bw * s, bh * s)
        nd.refreshProjection()
        win = app.activeWindow()
        if win is not None:
            win.addView(nd)
        info.update(document=nd, layer=lay, mask="none", rect=[0, 0, bw * s, bh * s])
        return info

    created = []
    try:
        if s > 1:
            # Krita's own resampling for everything already there, then the enhanced layer
            # lands on the scaled coordinates
            doc.scaleImage(doc.width() * s, doc.height() * s, int(doc.xRes() * s),
                           int(doc.yRes() * s), "Bicubic")
            doc.waitForDone()
        masked = opts.output == "masked" and src.selection is not None
        # restore-dust: the repaired spots are the layer's mask (in "layer" mode too: for a
        # dust repair the mask is the point), so a wrong repair can be painted off
        defects = defect_mask(result, rw * s, rh * s)
        parent = node.parentNode()
        layer = _new_layer_via_action(doc, node) if (masked or defects is not None) else None
        if layer is not None:
            created.append(layer)
            layer.setName(name)
        else:
            layer = doc.createNode(name, "paintlayer")
            parent.addChildNode(layer, node)   # directly above the source layer
            created.append(layer)
        if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != \
                ("RGBA", src.depth, src.profile):
            layer.setColorSpace("RGBA", src.depth, src.profile)
        if masked:   # the whole region (with margin) so feathered edges have content
            x, y, w, h = rx * s, ry * s, rw * s, rh * s
            out = data
        else:
            x, y, w, h = bx * s, by * s, bw * s, bh * s
            out = _crop(data, rw * s, wire_px, (bx - rx) * s, (by - ry) * s, w, h)
        native = _to_native(src, out)
        mask_kind, mask_node = "none", None
        sel = None
        if masked:
            sel = src.selection
            if s > 1:
                scaled = doc.selection()   # Krita scaled the global selection with the image
                if scaled is not None and scaled.width() > 0:
                    sel = scaled.duplicate()
                else:
                    sel = Selection()
                    sel.setPixelData(_upsample_nearest(bytes(src.selection.pixelData(bx, by, bw, bh)),
                                                       bw, bh, s), bx * s, by * s, bw * s, bh * s)
        layer.setPixelData(native, x, y, w, h)
        if defects is not None:
            dm = defects if (x, y, w, h) == (rx * s, ry * s, rw * s, rh * s) else \
                _crop(defects, rw * s, 1, x - rx * s, y - ry * s, w, h)
            if sel is not None:
                dm = _times(dm, bytes(sel.pixelData(x, y, w, h)))
            info["defects"] = len(dm) - dm.count(0)
            mask_sel = Selection()
            mask_sel.setPixelData(dm, x, y, w, h)
            mask_kind, mask_node = ("alpha", None) if not info["defects"] else \
                _add_mask(doc, layer, mask_sel, doc.selection(), "Defects")
            if mask_kind == "alpha":   # no mask possible (5.1 without a view), or nothing repaired
                native = _alpha_times(native, src.depth, dm)
                layer.setPixelData(native, x, y, w, h)
        elif masked:
            mask_kind, mask_node = _add_mask(doc, layer, sel, doc.selection() or sel)
            if mask_kind == "alpha":
                native = _alpha_times(native, src.depth, bytes(sel.pixelData(x, y, w, h)))
                layer.setPixelData(native, x, y, w, h)
        review_layer = None
        review = getattr(result, "review", None)
        if opts.review and review:
            review_layer = _add_review(doc, parent, layer, opts, bytes(review), x, y, w, h,
                                       (rx * s, ry * s, rw * s, rh * s))
            if review_layer is not None:
                created.append(review_layer)
        doc.setActiveNode(layer)
        doc.refreshProjection()
        info.update(layer=layer, mask=mask_kind, mask_node=mask_node, review_layer=review_layer,
                    rect=[x, y, w, h])
        return info
    except Exception:
        for n in created:
            try:
                n.remove()
            except Exception:
                pass
        raise


def _add_review(doc: Any, parent: Any, above: Any, opts: Options, review: bytes,
                x: int, y: int, w: int, h: int, region: tuple) -> Any:
    """Hidden red overlay: alpha = how risky the change is there (0..255)."""
    rx, ry, rw, rh = region
    if len(review) == rw * rh * 4:       # float32 0..1
        vals = array("f")
        vals.frombytes(review)
        review = bytes(max(0, min(255, int(v * 255 + 0.5))) for v in vals)
    if len(review) != rw * rh:
        return None
    if (x, y, w, h) != (rx, ry, rw, rh):
        review = _crop(review, rw, 1, x - rx, y - ry, w, h)
    lay = doc.createNode(f"Review · {opts.model}", "paintlayer")
    lay.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    parent.addChildNode(lay, above)
    px = bytearray(len(review) * 4)
    px[2::4] = b"\xff" * len(review)
    px[3::4] = review
    lay.setPixelData(bytes(px), x, y, w, h)
    lay.setVisible(False)
    return lay


# --------------------------------------------------------------------------- all at once

def enhance(doc: Any, node: Any, client: Any, opts: Options,
            progress: Optional[Callable[[float, str], bool]] = None) -> dict:
    """Synchronous path (scripts and tests): read, run, write."""
    margin = model_margin(model_list(client), opts.model)
    src = read_source(doc, node, opts, margin)
    result = run_job(client, src, opts, progress)
    return write_result(src, opts, result)
