#!/usr/bin/env python3
"""EnhanceLayer for GIMP 3: Filters > Enhance > AI Enhance…

A thin GIMP 3 plug-in (separate process, GIMP's own Python, standard library + PyGObject
only). It reads the selected layer's pixels under the selection's bounding box (plus the
model's margin, so tile borders see real context), sends them to the EnhanceLayer engine
through the vendored ``enhancelayer_client``, and adds the result as a NEW layer above the
source, masked to the selection. The source layer is never written to.

Why these choices:
- pixels travel in a Babl format of at least the image's precision and never through 8 bits
  (see ``_wire_format``): an 8-bit gamma image goes as "R'G'B'A u8" (exact round trip),
  16-bit gamma as u16, linear or float images as gamma-encoded float (the models expect
  gamma-encoded sRGB-like values; float keeps everything, including values above 1).
- the engine is asked for the result FIRST; the image is touched only once pixels are
  back, inside one undo group, so cancel or failure leaves nothing behind and one Ctrl+Z
  removes the whole effect.
- GIMP's status-bar cancel kills a plug-in outright, so interactive runs show their own
  small progress window whose Cancel button cancels the engine job too.
"""
from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

PROC = "python-fu-enhancelayer"
DEFAULT_MODEL = "photo-x2"
DEFAULT_MARGIN = 32          # px of context when the engine does not say the model's own

# The catalog's stable ids (engine/catalog.py), photo models first. Ids never change, so the
# list can live here; the engine says which are installed when the plug-in runs.
MODELS = (
    ("photo-x2", "Photo 2x (waifu2x photo, fast)"),
    ("photo-x4", "Photo 4x (Real-ESRGAN x4plus, slow on CPU)"),
    ("photo-x2-jpeg0", "Photo 2x + JPEG clean-up 0"),
    ("photo-x2-jpeg1", "Photo 2x + JPEG clean-up 1"),
    ("photo-x2-jpeg2", "Photo 2x + JPEG clean-up 2"),
    ("photo-x2-jpeg3", "Photo 2x + JPEG clean-up 3"),
    ("jpeg-clean-0", "JPEG clean-up 0 (1x)"),
    ("jpeg-clean-1", "JPEG clean-up 1 (1x)"),
    ("jpeg-clean-2", "JPEG clean-up 2 (1x)"),
    ("jpeg-clean-3", "JPEG clean-up 3 (1x)"),
    ("denoise", "Photo denoise (1x)"),
    ("sharpen", "Photo sharpen (1x)"),
    ("restore-dust", "Dust & scratch repair (1x)"),
    ("illustration-x4", "Illustration 4x (Real-ESRGAN anime)"),
    ("illustration-x2", "Illustration 2x (waifu2x CUNet)"),
    ("illustration-denoise-0", "Illustration denoise 0"),
    ("illustration-denoise-1", "Illustration denoise 1"),
    ("illustration-denoise-2", "Illustration denoise 2"),
    ("illustration-denoise-3", "Illustration denoise 3"),
    ("anime-video-x2", "Anime 2x (fast)"),
    ("anime-video-x3", "Anime 3x (fast)"),
    ("anime-video-x4", "Anime 4x (fast)"),
)
OUTPUT_MODES = (
    ("layer-masked", "New layer, masked to the selection"),
    ("layer", "New layer"),
    ("image", "New image"),
)


class UserError(Exception):
    """A problem the user can act on; the message is shown as it is."""


class UserCancelled(Exception):
    pass


# --------------------------------------------------------------------------- pixel formats
def _wire_format(image: Gimp.Image, has_alpha: bool) -> tuple[str, str, int]:
    """(Babl format, wire dtype, channels) that round-trips the image's pixels exactly
    (checked in GIMP 3.0.4: u8 gamma via u8; u8 linear via gamma u16; u16 linear via float)."""
    prec = image.get_precision()
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    name = prec.value_nick if hasattr(prec, "value_nick") else str(prec).lower()
    name = str(name).lower()
    linear = "linear" in name and "non" not in name
    custom_profile = image.get_color_profile() is not None
    if "u8" in name and not linear and not custom_profile:
        babl, dtype = "u8", "u8"
    elif ("u8" in name or "u16" in name) and not linear and not custom_profile:
        babl, dtype = "u16", "u16"
    elif "u8" in name and not custom_profile:
        babl, dtype = "u16", "u16"       # linear u8 -> gamma u16 -> linear u8 is exact
    else:
        babl, dtype = "float", "f32"     # linear u16, u32, half, float, double; custom profiles
    if gray:
        model, channels = ("Y'A", 2) if has_alpha else ("Y'", 1)
    else:
        model, channels = ("R'G'B'A", 4) if has_alpha else ("R'G'B'", 3)
    return f"{model} {babl}", dtype, channels


# --------------------------------------------------------------------------- engine access
def _client():
    try:
        import enhancelayer_client as ec
    except ImportError:
        raise UserError("EnhanceLayer's client is missing from the plug-in folder — "
                        "run `python3 install.py` in the EnhanceLayer folder again") from None
    url = os.environ.get("ENHANCELAYER_URL")
    if url:
        return ec, ec.EngineClient.remote(url, os.environ.get("ENHANCELAYER_TOKEN", ""),
                                          os.environ.get("ENHANCELAYER_CAFILE") or None)
    return ec, ec.EngineClient.local(start=True)


def _margin(models: list, model_id: str) -> int:
    for m in models or ():
        if isinstance(m, dict) and m.get("id") == model_id:
            if m.get("installed") is False:
                raise UserError(f"model '{model_id}' is not imported yet — run `enhancelayer import` "
                                "(or `python3 install.py`) and try again")
            rf = m.get("receptive_field")
            if isinstance(rf, (int, float)) and rf >= 0:
                return int(rf)
    return DEFAULT_MARGIN


class _Progress:
    """Runs the engine wait in a worker thread; the main thread (the only one that talks to
    GIMP) updates GIMP's progress and, interactively, a window with a Cancel button."""

    def __init__(self, interactive: bool, title: str):
        self.fraction, self.message = 0.0, title
        self.cancelled = False
        self.window = None
        Gimp.progress_init(title)
        if interactive:
            try:
                self._make_window(title)
            except Exception:           # no display: GIMP's own progress is enough
                self.window = None

    def _make_window(self, title: str) -> None:
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk
        self.Gtk = Gtk
        w = Gtk.Window(title="AI Enhance — progress")
        w.set_default_size(360, -1)
        w.set_keep_above(True)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8, margin=12)
        self.label = Gtk.Label(label=title, xalign=0)
        self.bar = Gtk.ProgressBar(show_text=True)
        btn = Gtk.Button(label="Cancel")
        btn.connect("clicked", lambda *_: self._cancel())
        w.connect("delete-event", lambda *_: (self._cancel(), True)[1])
        w.connect("key-press-event", self._key)
        for c in (self.label, self.bar, btn):
            box.pack_start(c, False, False, 0)
        w.add(box)
        w.show_all()
        btn.grab_focus()
        self.window = w

    def _cancel(self) -> None:
        self.cancelled = True
        self.message = "Cancelling…"

    def _key(self, _w, event) -> bool:
        if event.keyval == self.Gtk.accelerator_parse("Escape")[0]:
            self._cancel()
            return True
        return False

    def callback(self, fraction: float, message: str):
        if not self.cancelled:
            self.fraction, self.message = fraction, message
        return not self.cancelled

    def pump(self) -> None:
        Gimp.progress_update(max(0.0, min(1.0, self.fraction)))
        if self.message:
            Gimp.progress_set_text(self.message)
        if self.window is not None:
            self.bar.set_fraction(max(0.0, min(1.0, self.fraction)))
            self.label.set_text(self.message or "")
            while self.Gtk.events_pending():
                self.Gtk.main_iteration_do(False)

    def close(self) -> None:
        Gimp.progress_end()
        if self.window is not None:
            self.window.destroy()
            while self.Gtk.events_pending():
                self.Gtk.main_iteration_do(False)
            self.window = None


def _run_job(ec, client, progress: _Progress, pixels: bytes, w: int, h: int, channels: int,
             dtype: str, opts: dict):
    job = client.submit(pixels, w, h, channels, dtype, channel_order="RGBA", **opts)
    box: dict = {}

    def work():
        try:
            box["result"] = client.wait(job, progress=progress.callback)
        except BaseException as e:      # handed to the main thread
            box["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    while t.is_alive():
        progress.pump()
        if progress.cancelled:
            # Return at once: the engine stops the job within one tile and drops it; the
            # worker thread dies with this process.
            try:
                client.cancel(job)
            except ec.EngineError:
                pass
            raise UserCancelled()
        t.join(0.05)
    if "error" in box:
        e = box["error"]
        if isinstance(e, ec.Cancelled) or progress.cancelled:
            raise UserCancelled()
        raise e
    if progress.cancelled:
        raise UserCancelled()
    return box["result"]


# --------------------------------------------------------------------------- geometry
def _plan(image: Gimp.Image, drawable: Gimp.Drawable, margin: int):
    """Selection box (bx, by, bw, bh) and the crop sent (cx, cy, cw, ch), both in drawable
    coordinates; has_sel says whether a selection limits the area."""
    has_sel = not Gimp.Selection.is_empty(image)
    dw, dh = drawable.get_width(), drawable.get_height()
    if has_sel:
        r = drawable.mask_intersect()
        ok, bx, by, bw, bh = r[0], r[1], r[2], r[3], r[4]
        if not ok or bw <= 0 or bh <= 0:
            raise UserError("the selection does not touch the selected layer — select an area on "
                            "the layer (or Select > None to enhance all of it)")
    else:
        bx, by, bw, bh = 0, 0, dw, dh
    cx, cy = max(0, bx - margin), max(0, by - margin)
    cx2, cy2 = min(dw, bx + bw + margin), min(dh, by + bh + margin)
    return has_sel, (bx, by, bw, bh), (cx, cy, cx2 - cx, cy2 - cy)


def _crop_bytes(data: bytes, width: int, bpp: int, x: int, y: int, w: int, h: int) -> bytes:
    """Rows [y, y+h) and columns [x, x+w) of a row-major buffer `width` pixels wide."""
    if x == 0 and w == width:
        return bytes(data[y * width * bpp:(y + h) * width * bpp])
    row = width * bpp
    return b"".join(data[(y + j) * row + x * bpp:(y + j) * row + (x + w) * bpp] for j in range(h))


# --------------------------------------------------------------------------- the procedure
def _args(config) -> dict:
    g = config.get_property
    custom = (g("custom-model") or "").strip()
    return dict(model=custom or g("model"), strength=int(g("strength")), grain=float(g("grain")),
                keep_color=bool(g("keep-color")), scale=int(g("scale")), output=g("output-mode"),
                protect_faces=bool(g("protect-faces")), protect_text=bool(g("protect-text")),
                review=bool(g("review")))


def _dialog(procedure, config) -> bool:
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi
    GimpUi.init(PROC)
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title="AI Enhance")
    dialog.fill(None)
    ok = dialog.run()
    dialog.destroy()
    return bool(ok)


def run_enhance(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE and not _dialog(procedure, config):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    # Filters > Repeat (last values) runs without the dialog but still for a person watching:
    # show the progress window with Cancel and open new images in a display.
    interactive = run_mode != Gimp.RunMode.NONINTERACTIVE
    if run_mode == Gimp.RunMode.WITH_LAST_VALS:
        try:
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi
            GimpUi.init(PROC)
        except Exception:
            pass
    try:
        _enhance(image, list(drawables), _args(config), interactive)
    except UserCancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except UserError as e:
        return _fail(procedure, str(e), interactive)
    except Exception as e:                       # engine errors carry actionable messages
        msg = str(e) or e.__class__.__name__
        if e.__class__.__module__.split(".")[0] != "enhancelayer_client":
            msg = f"AI Enhance failed: {msg} (a plug-in bug — please report it)"
        return _fail(procedure, msg, interactive)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _fail(procedure, msg: str, interactive: bool):
    # GIMP shows the returned error itself (a message dialog when run from the menu, the
    # console / get_last_error() for scripts), so no extra Gimp.message here.
    msg = "AI Enhance: " + msg if not msg.startswith("AI Enhance") else msg
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(msg))


def _enhance(image: Gimp.Image, drawables: list, a: dict, interactive: bool) -> None:
    layers = [d for d in drawables if isinstance(d, Gimp.Layer) and not isinstance(d, Gimp.LayerMask)]
    if not layers:
        raise UserError("select a layer (not a channel or a layer mask) and try again")
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise UserError("indexed images are not supported — use Image > Mode > RGB first")
    model, scale = a["model"], max(1, int(a["scale"]))
    ec, client = _client()
    margin = _margin(client.models(), model)
    protect = [p for p, on in (("faces", a["protect_faces"]), ("text", a["protect_text"])) if on]
    opts = dict(model=model, strength=float(a["strength"]), grain=float(a["grain"]),
                keep_color=a["keep_color"], scale=float(scale), review=a["review"], protect=protect)

    # 1) read + enhance every layer; nothing in the image changes yet
    jobs = []
    progress = _Progress(interactive, f"AI Enhance: {model}")
    try:
        for layer in layers:
            has_sel, (bx, by, bw, bh), (cx, cy, cw, ch) = _plan(image, layer, margin)
            fmt, dtype, channels = _wire_format(image, layer.has_alpha())
            buf = layer.get_buffer()
            pixels = bytes(buf.get(Gegl.Rectangle.new(cx, cy, cw, ch), 1.0, fmt, Gegl.AbyssPolicy.NONE))
            res = _run_job(ec, client, progress, pixels, cw, ch, channels, dtype, opts)
            if res.channels != channels or res.dtype != dtype:
                raise UserError(f"the engine sent {res.channels}x{res.dtype} pixels for a "
                                f"{channels}x{dtype} request — update EnhanceLayer")
            sx, sy = res.width / cw, res.height / ch
            # keep only the selection's box: the margin was context for the model
            ox, oy = round((bx - cx) * sx), round((by - cy) * sy)
            ow, oh = min(round(bw * sx), res.width - ox), min(round(bh * sy), res.height - oy)
            bpp = channels * {"u8": 1, "u16": 2, "f32": 4}[dtype]
            out = _crop_bytes(res.pixels, res.width, bpp, ox, oy, ow, oh)
            review = None
            if res.review is not None and res.review_width == res.width:
                review = _crop_bytes(res.review, res.review_width, 1, ox, oy, ow, oh)
            defects = None      # restore-dust: the repaired spots (u8, 255 = repaired)
            if getattr(res, "defects", None) is not None and \
                    (res.defects_width, res.defects_height) == (res.width, res.height):
                defects = _crop_bytes(res.defects, res.width, 1, ox, oy, ow, oh)
            jobs.append(dict(layer=layer, has_sel=has_sel, box=(bx, by, bw, bh), out=out,
                             size=(ow, oh), fmt=fmt, review=review, defects=defects, sx=sx, sy=sy))
    finally:
        progress.close()

    # 2) write: one undo group; on any failure the new layers go again
    name = f"Enhanced · {model} · {a['strength']}%"
    if a["output"] == "image":
        for j in jobs:
            _new_image(image, j, name, interactive)
        return
    added: list = []
    image.undo_group_start()
    try:
        if scale > 1:
            w, h = image.get_width(), image.get_height()
            image.scale(w * scale, h * scale)       # GIMP's own interpolation (Preferences)
        for j in jobs:
            layer = j["layer"]
            _ok, lx, ly = layer.get_offsets()       # after the image scale when scale > 1
            bx, by = j["box"][0], j["box"][1]
            x, y = lx + round(bx * j["sx"]), ly + round(by * j["sy"])
            ow, oh = j["size"]
            parent = layer.get_parent()
            pos = image.get_item_position(layer)
            new = Gimp.Layer.new(image, name, ow, oh, _layer_type(image), 100.0, Gimp.LayerMode.NORMAL)
            image.insert_layer(new, parent, pos)
            added.append(new)
            new.set_offsets(x, y)
            _write(new, j["fmt"], j["out"], ow, oh)
            masked = a["output"] == "layer-masked" and j["has_sel"]
            if j["defects"] is not None:
                # the repaired spots are the mask (in "layer" mode too: for a dust repair the
                # mask is the point), times the selection when masked: a wrong repair can be
                # painted off the mask
                dm = j["defects"]
                if masked:
                    sel = image.get_selection().get_buffer().get(
                        Gegl.Rectangle.new(x, y, ow, oh), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
                    dm = _times(dm, bytes(sel))
                mask = new.create_mask(Gimp.AddMaskType.BLACK)
                new.add_mask(mask)
                _write(mask, "Y u8", dm, ow, oh)
            elif masked:
                new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
            if j["review"] is not None:
                rl = _review_layer(image, f"Review · {model}", j["review"], ow, oh)
                image.insert_layer(rl, parent, image.get_item_position(new))
                added.append(rl)
                rl.set_offsets(x, y)
        image.set_selected_layers([added[0]] if added else layers)
    except Exception:
        for lay in added:
            try:
                image.remove_layer(lay)
            except Exception:
                pass
        raise
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


def _times(a: bytes, b: bytes) -> bytes:
    """Product of two u8 masks (255 = 1): the defect mask times the selection."""
    if not a.translate(None, b"\x00\xff"):
        # a is only 0 and 255 (restore-dust's mask today): the product is b where a is 255,
        # a bitwise AND, done on two big integers in C rather than a Python loop
        return (int.from_bytes(a, "big") & int.from_bytes(b, "big")).to_bytes(len(a), "big")
    return bytes((p * q + 127) // 255 for p, q in zip(a, b))


def _layer_type(image: Gimp.Image):
    return (Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY
            else Gimp.ImageType.RGBA_IMAGE)


def _write(layer: Gimp.Layer, fmt: str, data: bytes, w: int, h: int) -> None:
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), fmt, data)
    buf.flush()
    layer.update(0, 0, w, h)


def _review_layer(image: Gimp.Image, name: str, review: bytes, w: int, h: int) -> Gimp.Layer:
    """Red where the model changed most / text and faces are; transparent elsewhere."""
    lay = Gimp.Layer.new(image, name, w, h, _layer_type(image), 60.0, Gimp.LayerMode.NORMAL)
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    if gray:
        px = b"".join(bytes((255, v)) for v in review)
        fmt = "Y'A u8"
    else:
        px = b"".join(bytes((255, 0, 0, v)) for v in review)
        fmt = "R'G'B'A u8"
    _write(lay, fmt, px, w, h)
    return lay


def _new_image(src: Gimp.Image, j: dict, name: str, interactive: bool) -> Gimp.Image:
    ow, oh = j["size"]
    img = Gimp.Image.new_with_precision(ow, oh, src.get_base_type(), src.get_precision())
    prof = src.get_color_profile()
    if prof is not None:
        img.set_color_profile(prof)
    img.undo_disable()
    lay = Gimp.Layer.new(img, name, ow, oh, _layer_type(img), 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(lay, None, 0)
    _write(lay, j["fmt"], j["out"], ow, oh)
    if j["review"] is not None:
        rl = _review_layer(img, name.replace("Enhanced", "Review", 1), j["review"], ow, oh)
        img.insert_layer(rl, None, 0)
    img.undo_enable()
    if interactive:
        Gimp.Display.new(img)
    return img


# --------------------------------------------------------------------------- registration
class EnhanceLayer(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROC]

    def do_create_procedure(self, name):
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_enhance, None)
        p.set_image_types("RGB*, GRAY*")
        p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE
                               | Gimp.ProcedureSensitivityMask.DRAWABLES)
        p.set_menu_label("AI Enhance…")
        p.add_menu_path("<Image>/Filters/Enhance")
        p.set_documentation(
            "Enhance the selection with a local AI model, as a new layer",
            "Sends the selected layer's pixels under the selection (plus context) to the local "
            "EnhanceLayer engine and adds the result as a new layer above it, masked to the "
            "selection. The original layer is not changed; one undo step removes the result.",
            name)
        p.set_attribution("EnhanceLayer", "EnhanceLayer contributors", "2026")
        rw = GObject.ParamFlags.READWRITE
        models = Gimp.Choice.new()
        for i, (mid, label) in enumerate(MODELS):
            models.add(mid, i, label, "")
        p.add_choice_argument("model", "_Model", "Model id (see `enhancelayer models`)",
                              models, DEFAULT_MODEL, rw)
        p.add_string_argument("custom-model", "Custom model _id", "Overrides the model above when "
                              "set, e.g. a user model from `enhancelayer models`", "", rw)
        p.add_int_argument("strength", "Str_ength (%)", "How much of the model's change is kept",
                           0, 100, 60, rw)
        p.add_double_argument("grain", "_Grain (%)", "Original fine texture put back (skin, film grain)",
                              0.0, 100.0, 0.0, rw)
        p.add_boolean_argument("keep-color", "_Keep colour", "Take only detail from the model, "
                               "colour from the original", False, rw)
        p.add_int_argument("scale", "Scale (_x)", "1: same size; 2-8: scale the image (GIMP's "
                           "interpolation) and put the enhanced pixels on top", 1, 8, 1, rw)
        modes = Gimp.Choice.new()
        for i, (nick, label) in enumerate(OUTPUT_MODES):
            modes.add(nick, i, label, "")
        p.add_choice_argument("output-mode", "O_utput", "Where the result goes", modes,
                              "layer-masked", rw)
        p.add_boolean_argument("protect-faces", "Protect _faces", "Keep faces closer to the original",
                               False, rw)
        p.add_boolean_argument("protect-text", "Protect _text", "Keep text closer to the original",
                               False, rw)
        p.add_boolean_argument("review", "Add revie_w layer", "Add a red layer where the result "
                               "needs a look (big changes, text, faces)", False, rw)
        return p


if __name__ == "__main__":
    Gimp.main(EnhanceLayer.__gtype__, sys.argv)
