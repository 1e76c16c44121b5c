#!/usr/bin/env python3
"""EnhanceLayer for GIMP 3: Filters > Enhance > AI Enhance…

A thin GIMP 3 plug-in (separate process, GIMP's own Python, standard library + PyGObject
only). It reads the selected layer's pixels under the selection's bounding box (plus the
model's margin, so tile borders see real context), sends them to the EnhanceLayer engine
through the vendored ``enhancelayer_client``, and adds the result as a NEW layer above the
source, masked to the selection. The source layer is never written to.

Everything that is not a call into GIMP's API is the shared plug-in core in
``enhancelayer_client`` (also used by the Krita plug-in): the margin rule, output modes,
layer names, crops, mask products, option arguments and submit keywords. This file holds
no model id and no option list: GIMP registers the procedure when it starts, before any
engine runs, so the model choice and one argument per job option come from the catalog
snapshot the installer saved (``enhancelayer_client/engine_catalog.json``); at run time
the live engine's catalog says which of them the chosen model's task takes.

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

import functools
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

if TYPE_CHECKING:   # the same package, as the type checker finds it in the repository
    import plugin.client as ec
    from plugin.client.options import Plan, Request
else:
    try:
        import enhancelayer_client as ec
        from enhancelayer_client.options import Plan, Request
    except ImportError:  # a hand-copied plug-in without its client: it registers, then says so
        ec = Plan = Request = None

PROC = "python-fu-enhancelayer"
# GIMP's word for a new document
OUTPUT_TITLES = {"masked": "New layer, masked to the selection", "layer": "New layer", "document": "New image"}
MISSING_CLIENT = ("EnhanceLayer's client is missing from the plug-in folder — "
                  "run `python3 install.py` in the EnhanceLayer folder again")
_BIG = 1e9


class UserError(Exception):
    """A problem the user can act on; the message is shown as it is (the core's UserError
    is handled the same way)."""


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
def _engine() -> Any:
    """engine_settings.py beside this file: which engine to use, and its settings procedure."""
    if TYPE_CHECKING:
        from plugin.gimp.enhancelayer import engine_settings
    else:
        import engine_settings  # beside this file (sys.path above)
    return engine_settings


def _client(start: bool = True) -> Any:
    """The engine of the saved engine settings (``ENHANCELAYER_URL`` & co. win): a studio
    engine, else the local one (started when ``start``)."""
    if ec is None:
        raise UserError(MISSING_CLIENT)
    return _engine().client(start)


def request_from_config(procedure: Any, config: Any, catalog: dict) -> Request:
    """What the procedure's arguments ask for: the model (``custom-model`` wins when set), the
    scale, the output mode and the values of the options the model's task takes, read from
    the arguments of the same names (an option newer than the registration is left out: the
    engine uses its default)."""
    g = config.get_property
    names = {a.name for a in procedure.get_arguments()}
    custom = (g("custom-model") or "").strip() if "custom-model" in names else ""
    model = custom or str(g("model") or "")
    row = ec.catalog.find_model(catalog, model)
    shown = ec.options.shown_options(catalog, row) if row is not None else []
    values = ec.options.values_from_args(shown, lambda n: g(n) if n in names else None)
    show = bool(g("show-review")) if "show-review" in names else ec.output.REVIEW_VISIBLE
    hints = g(HINTS_ARG) if HINTS_ARG in names else None
    return ec.options.Request(model=model, scale=int(g("scale")), output=str(g("output-mode")), values=values,
                              show_review=show, hints_layer=str(hints.get_id()) if hints is not None else "")


def make_plan(catalog: dict, request: Request) -> Plan:
    """The request checked against the live catalog before any pixel is read (a model that is
    unknown or not imported is reported here, with what to do)."""
    return ec.options.plan(catalog, request)


class _Progress:
    """Runs the engine wait in a worker thread; the main thread (the only one that talks to
    GIMP) updates GIMP's progress and, interactively, a window with a Cancel button."""

    def __init__(self, interactive: bool, title: str):
        self.fraction, self.message = 0.0, title
        self.cancelled = False
        self.window: Any = None
        Gimp.progress_init(title)
        if interactive:
            try:
                self._make_window(title)
            except Exception:  # noqa: BLE001 - no display: GIMP's own progress is enough
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
        w.connect("delete-event", self._on_delete)
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

    def _on_delete(self, *_args: Any) -> bool:
        self._cancel()
        return True          # keep the window until the run ends

    def _key(self, _w: Any, event: Any) -> bool:
        if event.keyval == self.Gtk.accelerator_parse("Escape")[0]:
            self._cancel()
            return True
        return False

    def callback(self, fraction: float, message: str) -> bool:
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


def _run_job(client: Any, progress: _Progress, pixels: bytes, w: int, h: int, channels: int,
             dtype: str, submit: dict) -> tuple[Any, Any]:
    """The engine's result and the client that made it: a local engine found gone is started
    again and the job sent once more, silently (``with_restart``); keep the returned client."""
    def work(c: Any) -> Any:
        return _submit_and_wait(c, progress, pixels, w, h, channels, dtype, submit)
    return ec.with_restart(client, work, _client)


def _run_steps(client: Any, progress: _Progress, pixels: bytes, w: int, h: int, channels: int,
               dtype: str, plan: Plan, inputs: dict) -> tuple[list, Any]:
    """A chain task's steps (``plan.steps``), each on the previous step's result, each with the
    inputs it takes (colorize: the hints); returns (the step results, the client to keep)."""
    current = {"client": client}

    def one(data: bytes, step_plan: Plan, each: Any) -> Any:
        submit = dict(step_plan.submit, **ec.chain.step_inputs(step_plan, inputs))

        def work(c: Any) -> Any:
            return _submit_and_wait(c, progress, data, w, h, channels, dtype, submit, each)
        res, current["client"] = ec.with_restart(current["client"], work, _client)
        return res
    return ec.chain.run_steps(pixels, plan.steps, one, progress.callback), current["client"]


def _submit_and_wait(client: Any, progress: _Progress, pixels: bytes, w: int, h: int, channels: int,
                     dtype: str, submit: dict, callback: Optional[Any] = None) -> Any:
    """One job, with the progress window pumped and its Cancel honoured; ``callback`` (a
    chain's per-step progress) replaces the window's own callback."""
    job = client.submit(pixels, w, h, channels, dtype, channel_order="RGBA", **submit)
    box: dict = {}

    def work() -> None:
        try:
            box["result"] = client.wait(job, progress=callback or progress.callback)
        except BaseException as e:      # noqa: BLE001 - handed to the main thread
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
def _boxes(image: Gimp.Image, drawable: Gimp.Drawable, margin: int) -> tuple[bool, tuple, tuple]:
    """(has_sel, selection box, region sent), both boxes (x, y, w, h) in drawable coordinates;
    has_sel says whether a selection limits the area."""
    has_sel = not Gimp.Selection.is_empty(image)
    dw, dh = drawable.get_width(), drawable.get_height()
    if has_sel:
        r = drawable.mask_intersect()
        ok, bx, by, bw, bh = r[0], r[1], r[2], r[3], r[4]
        if not ok or bw <= 0 or bh <= 0:
            raise UserError("the selection does not touch the selected layer — select an area on "
                            "the layer (or Select > None to enhance all of it)")
        box = (bx, by, bw, bh)
    else:
        box = (0, 0, dw, dh)
    return has_sel, box, ec.geometry.context_region(box, margin, dw, dh)


# --------------------------------------------------------------------------- the procedure
# Arguments GIMP's dialog does not show as plain widgets: the image procedure's own, the model
# (the task chooser replaces it) and the custom model id (under "Advanced").
SCALE_ARG = "scale"              # the host's integer scale (the engine option of the same name)
HINTS_ARG = "hints-layer"        # colorize's colour strokes: a layer of the same image
_NOT_FILLED = ("run-mode", "image", "drawables", "model", "custom-model")


def _dialog(procedure: Any, config: Any, image: Any = None, drawables: Any = None) -> bool:
    """GIMP's procedure dialog, task first: the shared task chooser on top (What to do →
    Model → description, scale note, time estimate), then the option arguments, scale and
    output, and the custom model id under "Advanced". Without a catalog: GIMP's plain dialog."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi
    GimpUi.init(PROC)
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title="AI Enhance")
    _grey_out_unused(dialog, config)
    cat = _dialog_catalog()
    if cat is None or not ec.catalog.purposes(cat):
        dialog.fill(None)
    else:
        if TYPE_CHECKING:
            from plugin.gimp.enhancelayer.task_chooser import TaskChooser
        else:
            from task_chooser import TaskChooser  # beside this file (sys.path above)

        layer = next((d for d in (drawables or []) if isinstance(d, Gimp.Layer)), None)
        filled = [a.name for a in procedure.get_arguments() if a.name not in _NOT_FILLED]
        dialog.fill(filled)

        shown_row: list[Optional[dict]] = [None]     # the model whose options are shown

        def show_options_of(row: Optional[dict]) -> None:
            """Only the options the chosen model's task takes are shown (as in Krita), and the
            colour-hints layer only for a task that colours from one; an option still at the
            last model's default moves to this one's (a repair starts at 100 %)."""
            _follow_model(procedure, config, cat, shown_row[0], row)
            shown_row[0] = row
            hidden = ec.options.args_not_taken(cat, row)
            if not ec.options.takes_hints(row):
                hidden = hidden | {HINTS_ARG}
            if SCALE_ARG in hidden:
                config.set_property(SCALE_ARG, 1)    # hidden, so it must not keep a 2x from before
            for name in filled:
                widget = dialog.get_widget(name, GObject.TYPE_NONE)
                if widget is not None:
                    widget.set_visible(name not in hidden)

        chooser = TaskChooser(cat, config, lambda row: _region_size(image, layer, row), show_options_of)
        content = dialog.get_content_area()
        content.pack_start(chooser.box, False, False, 0)
        content.reorder_child(chooser.box, 0)
        if "custom-model" in {a.name for a in procedure.get_arguments()}:
            content.pack_start(_advanced(GimpUi, config), False, False, 0)
    ok = dialog.run()
    dialog.destroy()
    return bool(ok)


def _follow_model(procedure: Any, config: Any, cat: dict, before: Optional[dict], after: Optional[dict]) -> None:
    """The shared rule (``options.follow_model``) applied to the procedure's arguments: the
    values that move are written back, so the widgets show them and OK sends them."""
    names = {a.name for a in procedure.get_arguments()}
    every = ec.options.every_shown_option(cat)
    now = ec.options.values_from_args(every, lambda n: config.get_property(n) if n in names else None)
    moved = ec.options.follow_model(cat, before, after, now)
    for opt in every:
        name = opt["name"]
        if name not in now or moved[name] == now[name]:
            continue
        args = ec.options.arg_names(opt)
        if opt.get("type") == "multi":
            for arg, choice in zip(args, opt.get("choices") or []):
                config.set_property(arg, choice in moved[name])
        else:
            config.set_property(args[0], moved[name])


def _advanced(GimpUi: Any, config: Any) -> Any:
    """The "Advanced" expander: the custom model id (a user model), hidden by default."""
    from gi.repository import Gtk
    exp = Gtk.Expander(label="Advanced")
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
    box.pack_start(Gtk.Label(label="Custom model id (overrides the choice above), e.g. user:mymodel",
                             xalign=0.0), False, False, 0)
    box.pack_start(GimpUi.prop_entry_new(config, "custom-model", -1), False, False, 0)
    exp.add(box)
    exp.show_all()
    return exp


def _dialog_catalog() -> Optional[dict]:
    """What the dialog lists: the running engine's catalog (its speed is measured on this
    machine), else the installer's snapshot. The dialog never starts the engine: that waits
    until OK, so opening the dialog stays instant."""
    if ec is None:
        return None
    try:
        return dict(_client(start=False).catalog())
    except Exception:  # noqa: BLE001 - not running / unreachable: the snapshot is enough to choose
        return ec.catalog.load_snapshot()


def _region_size(image: Any, layer: Any, row: Optional[dict]) -> Optional[tuple[int, int, bool]]:
    """(w, h, no selection) the engine would get for ``row`` (selection + margin), or None."""
    if image is None or layer is None:
        return None
    try:
        has_sel, _box, region = _boxes(image, layer, ec.catalog.model_margin(row or {}))
    except UserError:
        return None                    # the selection misses the layer: OK says so
    return region[2], region[3], not has_sel


def _grey_out_unused(dialog: Any, config: Any) -> None:
    """The dialog shows every option argument; those the chosen model's task does not take
    are greyed out (sensitive only while "model" is one of the models that take them)."""
    snapshot = ec.catalog.load_snapshot() if ec is not None else None
    if not snapshot:
        return
    try:
        for opt, users in ec.options.models_taking(snapshot):
            values = Gimp.ValueArray.new(len(users))
            for model_id in users:
                values.append(GObject.Value(GObject.TYPE_STRING, model_id))
            for arg in ec.options.arg_names(opt):
                dialog.set_sensitive_if_in(arg, config, "model", values, True)
    except Exception:  # noqa: BLE001 - an older GimpUi without it: every widget stays usable
        pass


def run_enhance(procedure: Any, run_mode: Any, image: Any, drawables: Any, config: Any, data: Any) -> Any:
    if run_mode == Gimp.RunMode.INTERACTIVE and not _dialog(procedure, config, image, drawables):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    # Filters > Repeat (last values) runs without the dialog but still for a person watching:
    # show the progress window with Cancel and open new images in a display.
    interactive = run_mode != Gimp.RunMode.NONINTERACTIVE
    if run_mode == Gimp.RunMode.WITH_LAST_VALS:
        try:
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi
            GimpUi.init(PROC)
        except Exception:  # noqa: BLE001 - no GimpUi (batch): the run needs none
            pass
    try:
        notices = _enhance(image, list(drawables), procedure, config, interactive)
        if interactive and notices:      # the layer is added; say once why it may look unchanged
            Gimp.message("\n".join(notices))
    except UserCancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except UserError as e:
        return _fail(procedure, str(e), interactive)
    except Exception as e:  # noqa: BLE001 - in plain words; the technical message after "Details:"
        if ec is None:
            return _fail(procedure, MISSING_CLIENT, interactive)
        msg = ec.messages.explain(e, remote=_engine().current().mode == ec.studio.STUDIO)
        return _fail(procedure, msg.joined(), interactive)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _fail(procedure: Any, msg: str, interactive: bool) -> Any:
    # GIMP shows the returned error itself (a message dialog when run from the menu, the
    # console / get_last_error() for scripts), so no extra Gimp.message here; and it already
    # names the procedure ("AI Enhance") around the message, so no prefix of ours: with one the
    # dialog read "AI Enhance: AI Enhance: ..." (issue 16).
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(msg))


def _read_all(image: Gimp.Image, layers: list, client: Any, plan: Plan, interactive: bool) -> list:
    """Enhance every layer; nothing in the image changes yet. One dict per layer."""
    scale = plan.request.scale
    jobs = []
    progress = _Progress(interactive, f"AI Enhance: {plan.request.model}")
    try:
        for layer in layers:
            has_sel, box, region = _boxes(image, layer, plan.margin)
            fmt, dtype, channels = _wire_format(image, layer.has_alpha())
            cx, cy, cw, ch = region
            buf = layer.get_buffer()
            pixels = bytes(buf.get(Gegl.Rectangle.new(cx, cy, cw, ch), 1.0, fmt, Gegl.AbyssPolicy.NONE))
            # the selection as the input of restore-fill, the hints layer as colorize's
            inputs = ec.options.job_inputs(
                plan, has_sel, functools.partial(_selection_bytes, image, layer, region),
                _hints_reader(image, layer, region, plan))
            submit = dict(plan.submit, **inputs)
            if plan.steps:   # a chain (restore): one result per step, each its own layer
                results, client = _run_steps(client, progress, pixels, cw, ch, channels, dtype, plan, inputs)
            else:
                res, client = _run_job(client, progress, pixels, cw, ch, channels, dtype, submit)
                results = [res]
            for res in results:
                ec.output.check_result(res, region, scale, channels, dtype)
            # keep only the selection's box: the margin was context for the model
            pieces = [ec.output.split_result(res, region, box, scale) for res in results]
            jobs.append(dict(layer=layer, has_sel=has_sel, piece=pieces[-1], steps=pieces, fmt=fmt,
                             notice=" ".join(filter(None, (ec.output.notice(getattr(r, "info", None) or {})
                                                           for r in results)))))
    finally:
        progress.close()
    return jobs


def _hints_reader(image: Gimp.Image, layer: Gimp.Drawable, region: tuple, plan: Plan) -> Optional[Any]:
    """Reads the chosen colour-hints layer (RGBA u8) under ``region`` of ``layer``, where the
    two layers overlap in the image (transparent elsewhere); None when none is chosen."""
    if not plan.request.hints_layer:
        return None
    hints = Gimp.Item.get_by_id(int(plan.request.hints_layer))
    if not isinstance(hints, Gimp.Drawable) or hints.get_image().get_id() != image.get_id():
        return None

    def read() -> bytes:
        _ok, lx, ly = layer.get_offsets()
        _ok, hx, hy = hints.get_offsets()
        cx, cy, cw, ch = region
        rect = Gegl.Rectangle.new(lx + cx - hx, ly + cy - hy, cw, ch)
        return bytes(hints.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))
    return read


def _selection_bytes(image: Gimp.Image, layer: Gimp.Drawable, region: tuple) -> bytes:
    """The selection (u8) under ``region`` (layer coordinates)."""
    _ok, lx, ly = layer.get_offsets()
    cx, cy, cw, ch = region
    return bytes(image.get_selection().get_buffer().get(
        Gegl.Rectangle.new(lx + cx, ly + cy, cw, ch), 1.0, "Y u8", Gegl.AbyssPolicy.NONE))


def _enhance(image: Gimp.Image, drawables: list, procedure: Any, config: Any, interactive: bool) -> list[str]:
    """Enhance the layers and add the results (one undo step); returns the tasks' notices
    (a result that is not the expected one, e.g. descreen found no screen)."""
    layers = [d for d in drawables if isinstance(d, Gimp.Layer) and not isinstance(d, Gimp.LayerMask)]
    if not layers:
        raise UserError("select a layer (not a channel or a layer mask) and try again")
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise UserError("indexed images are not supported — use Image > Mode > RGB first")
    client = _client()
    try:
        live = client.catalog()
        plan = make_plan(live, request_from_config(procedure, config, live))
    except ec.UserError as e:
        raise UserError(str(e)) from None
    if ec.options.makes_colour(plan) and image.get_base_type() == Gimp.ImageBaseType.GRAY:
        raise UserError("colour cannot go into a grayscale image: use Image > Mode > RGB first, then try again")
    jobs = _read_all(image, layers, client, plan, interactive)
    notices = sorted({j["notice"] for j in jobs if j["notice"]})

    # write: one undo group; on any failure the new layers go again
    model, mode, scale = plan.request.model, plan.request.output, plan.request.scale
    name = ec.output.layer_name(model, plan.submit)   # the options the task took
    if mode == "document":
        for j in jobs:
            _new_image(image, j, name, model, interactive, plan.request.show_review)
        return notices
    added: list = []
    image.undo_group_start()
    try:
        if scale > 1:
            w, h = image.get_width(), image.get_height()
            image.scale(w * scale, h * scale)       # GIMP's own interpolation (Preferences)
        for j in jobs:
            layer, piece = j["layer"], j["piece"]
            _ok, lx, ly = layer.get_offsets()       # after the image scale when scale > 1
            px, py, ow, oh = piece.box
            at = (lx + px, ly + py)
            parent = layer.get_parent()
            pos = image.get_item_position(layer)
            masked = mode == "masked" and j["has_sel"]
            if plan.steps:
                # a chain: a group named like a result layer, its opacity the strength, one
                # layer per step bottom-up, each the image after its step, each masked
                top = _group(image, name, ec.chain.group_opacity(plan.request, plan.row))
                image.insert_layer(top, parent, pos)
                added.append(top)
                for i, (step, step_piece) in enumerate(zip(plan.steps, j["steps"])):
                    _result_layer(image, top, 0, ec.chain.step_layer_name(i, step), _blend(step.plan.row), j["fmt"],
                                  step_piece, at, masked)
            else:
                top = _result_layer(image, parent, pos, name, _blend(plan.row), j["fmt"], piece, at, masked)
                added.append(top)
            if piece.review is not None:
                rl = _review_layer(image, ec.output.review_name(model, piece.review), piece.review, ow, oh,
                                   plan.request.show_review)
                image.insert_layer(rl, parent, image.get_item_position(top))
                added.append(rl)
                rl.set_offsets(*at)
        image.set_selected_layers([added[0]] if added else layers)
    except Exception:
        for lay in added:
            try:
                image.remove_layer(lay)
            except Exception:  # noqa: BLE001 - best-effort clean-up; the first error is re-raised
                pass
        raise
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    return notices


def _blend(row: dict) -> Any:
    """GIMP's layer mode for a task's layer: HSL Color for colorize (colour over the original's
    brightness, to regrade), else Normal (``output.layer_blend``)."""
    return Gimp.LayerMode.HSL_COLOR if ec.output.layer_blend(row) == "color" else Gimp.LayerMode.NORMAL


def _group(image: Gimp.Image, name: str, opacity: float) -> Any:
    """A new layer group (GIMP 3.0 and 3.2 both take the name at creation)."""
    group = Gimp.GroupLayer.new(image, name)
    group.set_opacity(float(opacity))
    return group


def _result_layer(image: Gimp.Image, parent: Any, pos: int, name: str, blend: Any, fmt: str, piece: Any,
                  at: tuple, masked: bool) -> Gimp.Layer:
    """A new layer at ``pos`` in ``parent`` holding a result piece at ``at`` (image
    coordinates), masked: by the repaired spots (restore-dust's defect mask, in "layer" mode
    too: for a dust repair the mask is the point) times the selection when masked, else by
    the selection when masked. A wrong repair can be painted off the mask."""
    _x, _y, ow, oh = piece.box
    new = Gimp.Layer.new(image, name, ow, oh, _layer_type(image), 100.0, blend)
    image.insert_layer(new, parent, pos)
    new.set_offsets(*at)
    _write(new, fmt, piece.pixels, ow, oh)
    if piece.defects is not None:
        dm = piece.defects
        if masked:
            sel = image.get_selection().get_buffer().get(
                Gegl.Rectangle.new(at[0], at[1], ow, oh), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
            dm = ec.pixels.multiply_masks(dm, bytes(sel))
        mask = new.create_mask(Gimp.AddMaskType.BLACK)
        new.add_mask(mask)
        _write(mask, "Y u8", dm, ow, oh)
    elif masked:
        new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
    return new


def _layer_type(image: Gimp.Image) -> Any:
    return (Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY
            else Gimp.ImageType.RGBA_IMAGE)


def _write(layer: Gimp.Drawable, fmt: str, data: bytes, w: int, h: int) -> None:
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), fmt, data)
    buf.flush()
    layer.update(0, 0, w, h)


def _review_layer(image: Gimp.Image, name: str, review: bytes, w: int, h: int, visible: bool) -> Gimp.Layer:
    """Red where the model changed most / text and faces are; transparent elsewhere; hidden
    when the user's "Show the review layer" is off."""
    lay = Gimp.Layer.new(image, name, w, h, _layer_type(image), float(ec.output.REVIEW_OPACITY),
                         Gimp.LayerMode.NORMAL)
    lay.set_visible(bool(visible))
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    _write(lay, "Y'A u8" if gray else "R'G'B'A u8", ec.pixels.red_overlay(review, "YA" if gray else "RGBA"), w, h)
    return lay


def _new_image(src: Gimp.Image, j: dict, name: str, model: str, interactive: bool,
               show_review: bool) -> Gimp.Image:
    piece = j["piece"]
    _x, _y, ow, oh = piece.box
    img = Gimp.Image.new_with_precision(ow, oh, src.get_base_type(), src.get_precision())
    prof = src.get_color_profile()
    if prof is not None:
        img.set_color_profile(prof)
    img.undo_disable()
    lay = Gimp.Layer.new(img, name, ow, oh, _layer_type(img), 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(lay, None, 0)
    _write(lay, j["fmt"], piece.pixels, ow, oh)
    if piece.review is not None:
        rl = _review_layer(img, ec.output.review_name(model, piece.review), piece.review, ow, oh, show_review)
        img.insert_layer(rl, None, 0)
    img.undo_enable()
    if interactive:
        Gimp.Display.new(img)
    return img


# --------------------------------------------------------------------------- registration
def output_choices() -> list[tuple[str, str]]:
    """(id, label) of the output-mode choice: the core's ids, GIMP's words."""
    modes = ec.output.OUTPUT_MODES if ec is not None else ("masked", "layer", "document")
    return [(m, OUTPUT_TITLES.get(m, m)) for m in modes]


def _add_model_argument(p: Any, snapshot: Optional[dict], rw: Any) -> None:
    """A choice of the snapshot's models (grouped as the engine groups them), or a plain id
    when the installer saved no snapshot."""
    models = [r for _g, _t, rows in ec.catalog.groups(snapshot) for r in rows] if snapshot else []
    if not snapshot or not models:
        default = ec.catalog.DEFAULT_MODEL if ec is not None else ""
        p.add_string_argument("model", "_Model", "Model id (see `enhancelayer models`)", default, rw)
        return
    choice = Gimp.Choice.new()
    for i, row in enumerate(models):
        choice.add(row["id"], i, ec.catalog.model_label(row),
                   str(row.get("description") or row.get("notes") or ""))
    p.add_choice_argument("model", "_Model", "Model (see `enhancelayer models`)", choice,
                          ec.catalog.default_model(snapshot), rw)


def _add_option_argument(p: Any, opt: dict, rw: Any) -> None:
    """One procedure argument per engine option (a multi option: one boolean per choice),
    named as ``options.arg_names`` says, so scripts set them by name."""
    kind, name, help_text = opt.get("type"), ec.options.arg_name(opt["name"]), str(opt.get("help") or "")
    label, default = ec.options.label(opt), ec.options.default(opt)
    lo, hi = ec.options.bounds(opt)
    if default is None and kind != "multi":
        return          # "automatic" cannot be a procedure argument's value: the engine decides
    if kind == "float":
        p.add_double_argument(name, label, help_text, -_BIG if lo is None else lo, _BIG if hi is None else hi,
                              float(default), rw)
    elif kind == "int":
        p.add_int_argument(name, label, help_text, -2**31 if lo is None else int(lo),
                           2**31 - 1 if hi is None else int(hi), int(default), rw)
    elif kind == "bool":
        p.add_boolean_argument(name, label, help_text, bool(default), rw)
    elif kind == "choice":
        choice = Gimp.Choice.new()
        for i, c in enumerate(opt.get("choices") or []):
            choice.add(str(c), i, str(c), "")
        p.add_choice_argument(name, label, help_text, choice, str(default), rw)
    elif kind == "multi":
        for c, arg in zip(opt.get("choices") or [], ec.options.arg_names(opt)):
            p.add_boolean_argument(arg, ec.options.choice_label(opt, str(c)), help_text, c in (default or ()), rw)


class EnhanceLayer(Gimp.PlugIn):
    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_query_procedures(self) -> list:
        return [PROC, _engine().PROC_ENGINE]

    def do_create_procedure(self, name: str) -> Any:
        if name == _engine().PROC_ENGINE:
            return _engine().create(self, name)
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
            "selection. The original layer is not changed; one undo step removes the result. "
            "Options a model's task does not take are ignored for it.",
            name)
        p.set_attribution("EnhanceLayer", "EnhanceLayer contributors", "2026")
        rw = GObject.ParamFlags.READWRITE
        snapshot = ec.catalog.load_snapshot() if ec is not None else None
        _add_model_argument(p, snapshot, rw)
        p.add_string_argument("custom-model", "Custom model _id", "Overrides the model above when "
                              "set, e.g. a user model from `enhancelayer models`", "", rw)
        for opt in ec.options.every_shown_option(snapshot) if snapshot else []:
            _add_option_argument(p, opt, rw)
        top = ec.options.scale_range(snapshot or {})[1] if ec is not None else 8
        p.add_int_argument("scale", "Scale (_x)", f"1: same size; 2-{top}: scale the image (GIMP's "
                           "interpolation) and put the enhanced pixels on top", 1, top, 1, rw)
        modes = Gimp.Choice.new()
        for i, (nick, title) in enumerate(output_choices()):
            modes.add(nick, i, title, "")
        p.add_choice_argument("output-mode", "O_utput", "Where the result goes", modes,
                              output_choices()[0][0], rw)
        review_label, review_help = ((ec.output.SHOW_REVIEW_LABEL, ec.output.SHOW_REVIEW_HELP) if ec is not None
                                     else ("Show the review layer", ""))
        p.add_layer_argument(HINTS_ARG, "Colour _hints layer", "Colorize: a layer with a few strokes of colour "
                             "(its opaque pixels); the colours spread over the photo along its edges", True, rw)
        p.add_boolean_argument("show-review", review_label, review_help,
                               ec.output.REVIEW_VISIBLE if ec is not None else True, rw)
        return p


if __name__ == "__main__":
    Gimp.main(EnhanceLayer.__gtype__, sys.argv)
