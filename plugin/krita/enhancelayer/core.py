"""The host work of the Krita plug-in, without any widget: tests drive it inside real Krita.

Everything that is not a call into Krita's API lives in the shared plug-in core (the vendored
``enhancelayer_client``: the margin rule, output modes, layer names, crops, mask products,
half floats, the sRGB transfer, option values, submit keywords); this module reads and writes
Krita documents with it.

Flow (the three steps are apart because Krita's API must be called on the GUI thread while
the HTTP wait runs on a worker thread):

1. ``read_source(doc, node, plan)``          GUI thread: pixels of the active layer inside the
   selection's bounding box plus the model's margin (clamped to the document), in Krita's
   native layout converted to a wire format the engine accepts. ``plan`` comes from
   ``make_plan(catalog, request)``, which checks the request against the engine's catalog.
2. ``run_job(client, src, plan, progress)``  any thread: submit + wait over HTTP.
3. ``write_result(src, plan, result)``        GUI thread: a NEW layer above the source (or a
   new document), masked to the selection. Nothing in the document changes before the result
   has arrived, so an error or a cancel leaves no layer behind.

Pixel layouts, checked in Krita 5.1.5 and 5.2.9 (tests/hosts/test_krita.py compares them
with the engine's direct output): integer RGBA (U8, U16) is B,G,R,A; float RGBA (F16, F32) is
R,G,B,A; all little-endian. F16 travels as f32 (the wire has u8/u16/f32 only).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:   # the same package, as the type checker finds it in the repository
    from plugin.client import (
        EngineClient,
        EngineError,
        EngineUnreachable,
        UserError,
        catalog,
        chain,
        geometry,
        is_remote,
        messages,
        options,
        output,
        pixels,
        studio,
        timing,
        with_restart,
    )
    from plugin.client.options import Plan, Request
else:
    try:  # installed layout: install_krita.py vendors plugin/client/ as this sub-package
        from .enhancelayer_client import (
            EngineClient,
            EngineError,
            EngineUnreachable,
            UserError,
            catalog,
            chain,
            geometry,
            is_remote,
            messages,
            options,
            output,
            pixels,
            studio,
            timing,  # noqa: F401 - the form reads it from here (one vendored import place)
            with_restart,
        )
        from .enhancelayer_client.options import Plan, Request
    except ImportError:  # pragma: no cover - a hand-copied plug-in without its client: it loads,
        EngineClient = Plan = Request = studio = None     # and connect() says to reinstall

        class EngineError(Exception):
            pass

        class UserError(Exception):
            pass

from . import detached_mask

SETTINGS_GROUP = "enhancelayer"
_UNSET = "\x00unset"          # readSetting's default: tells "never stored" from ""

# Krita depth -> (sample dtype in Krita, wire dtype, channel order Krita uses)
DEPTHS = {
    "U8": ("u8", "u8", "BGRA"),
    "U16": ("u16", "u16", "BGRA"),
    "F16": ("f16", "f32", "RGBA"),
    "F32": ("f32", "f32", "RGBA"),
}
MASK_TYPES = ("transparencymask", "filtermask", "selectionmask", "transformmask", "colorizemask")

# A problem the user can act on; the UI shows the message as is. The core's own UserError
# (unknown model, model not imported, ...) is one.
PluginError = UserError


class Cancelled(PluginError):
    """The user cancelled: no message box, nothing left in the document."""


# --------------------------------------------------------------------------- settings

def _read_setting(key: str) -> Optional[str]:
    from krita import Krita
    text = Krita.instance().readSetting(SETTINGS_GROUP, key, _UNSET)
    return None if text == _UNSET else text


def load_request(cat: dict) -> Request:
    """The remembered request (Krita's settings group [enhancelayer], name -> string), read
    with the engine's option table; what is missing or unreadable gets the catalog's default."""
    model = _read_setting("model") or catalog.default_model(cat)
    lo, hi = options.scale_range(cat)
    try:
        scale = max(lo, min(hi, int(_read_setting("scale") or 1)))
    except ValueError:
        scale = 1
    if not options.takes_scale(catalog.find_model(cat, model)):
        scale = 1      # the form hides Scale for a task that keeps the size (a 2x left from before)
    try:
        mode = output.output_mode(_read_setting("output") or output.DEFAULT_OUTPUT)
    except UserError:
        mode = output.DEFAULT_OUTPUT
    values = options.values_from_text(options.every_shown_option(cat), _read_setting, catalog.find_model(cat, model))
    shown = _read_setting("show_review")
    return options.Request(model=model, scale=scale, output=mode, values=values,
                           show_review=output.REVIEW_VISIBLE if shown is None else shown == "true",
                           hints_layer=_read_setting("hints_layer") or "")


def save_request(request: Request) -> None:
    from krita import Krita
    app = Krita.instance()
    app.writeSetting(SETTINGS_GROUP, "model", request.model)
    app.writeSetting(SETTINGS_GROUP, "scale", str(int(request.scale)))
    app.writeSetting(SETTINGS_GROUP, "output", request.output)
    app.writeSetting(SETTINGS_GROUP, "show_review", "true" if request.show_review else "false")
    # colorize's hints layer (a layer id of this session's documents: "Again" reuses it)
    app.writeSetting(SETTINGS_GROUP, "hints_layer", request.hints_layer)
    for name, value in request.values.items():
        app.writeSetting(SETTINGS_GROUP, name, options.to_text(value))


# --------------------------------------------------------------------------- engine access

def plugin_error(e: Exception, remote: bool = False) -> PluginError:
    """The client's error in a retoucher's words (``messages.explain``), the technical message
    kept as ``details`` for the message box's "Show Details…"; ``remote``: the engine is not
    ours to start (a URL is configured). Thread-safe: reads no Krita setting."""
    msg = messages.explain(e, remote=remote)
    err = PluginError(msg.text)
    err.details = msg.details          # type: ignore[attr-defined]
    return err


def details_of(e: BaseException) -> str:
    return str(getattr(e, "details", "") or "")


# kritarc [enhancelayer] keys of the engine settings (studio.EngineSettings fields)
ENGINE_KEYS = {"mode": "engine_mode", "url": "engine_url", "token": "engine_token",
               "fingerprint": "engine_fingerprint", "cafile": "engine_cafile"}


def read_engine_settings() -> Any:
    """Which engine to use, from kritarc (GUI thread); None without the vendored client
    (connect_settings then says to reinstall)."""
    if studio is None:
        return None
    values = {k: _read_setting(key) or "" for k, key in ENGINE_KEYS.items()}
    return studio.EngineSettings.from_values(values)


def save_engine_settings(settings: Any) -> None:
    from krita import Krita
    app = Krita.instance()
    for k, v in settings.values().items():
        app.writeSetting(SETTINGS_GROUP, ENGINE_KEYS[k], v)


def connect_settings(settings: Any) -> Any:
    """The client for these engine settings (studio.EngineSettings.client: the local engine,
    started on first use through the launcher install.py wrote, or the studio engine, its
    certificate pinned by the fingerprint when one is set, else checked against the CA file);
    errors as messages for the user. Any thread: reads no Krita object."""
    if EngineClient is None or settings is None:
        raise PluginError("The EnhanceLayer client is missing from the Krita plug-in: "
                          "run `python3 install.py` again to reinstall the plug-in.")
    try:
        return settings.client(start=True, check=False)
    except EngineError as e:
        raise plugin_error(e, remote=settings.mode == studio.STUDIO and bool(settings.url)) from None


def connect(url: str = "", token: str = "", cafile: str = "", fingerprint: str = "") -> Any:
    """:func:`connect_settings` for a studio engine at ``url``, or the local engine without one."""
    settings = None if studio is None else \
        studio.EngineSettings(studio.STUDIO if url else studio.LOCAL, url, token, fingerprint, cafile)
    return connect_settings(settings)


def fetch_catalog(client: Any, reconnect: Optional[Callable[[], Any]] = None) -> dict:
    """The engine's catalog (models + option table), errors as messages for the user;
    ``reconnect`` as in :func:`run_job` (an engine that stopped is started again, silently)."""
    try:
        if reconnect is None:
            return dict(client.catalog())
        return dict(with_restart(client, lambda c: c.catalog(), reconnect)[0])
    except EngineError as e:
        raise plugin_error(e, remote=is_remote(client)) from None


def snapshot_catalog() -> Optional[dict]:
    """The catalog install_krita.py saved beside the client, for a docker that shows its
    widgets before the engine answers (None when there is none)."""
    return catalog.load_snapshot() if EngineClient is not None else None


def make_plan(cat: dict, request: Request) -> Plan:
    """The request checked against the catalog (model known and imported, output mode, scale)."""
    return options.plan(cat, request)


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

    @property
    def sample_dtype(self) -> str:
        """The dtype of Krita's own samples ("f16" for F16; the wire carries f32)."""
        return DEPTHS[self.depth][0]


def is_linear(profile: str) -> bool:
    """Krita's linear-light profiles (its default for new 16-bit/float documents is
    ``sRGB-elle-V2-g10.icc``); the models expect sRGB-encoded values."""
    p = (profile or "").lower()
    return "g10" in p or "linear" in p


def _selection_box(doc: Any) -> tuple[Any, Optional[tuple]]:
    """(the selection, its bounds clamped to the document) — bounds only, no pixels read;
    (None or the selection, None) when nothing of it lies on the document."""
    sel = doc.selection()
    if sel is None or sel.width() <= 0 or sel.height() <= 0:
        return sel, None
    return sel, geometry.clamp_box((sel.x(), sel.y(), sel.width(), sel.height()), doc.width(), doc.height())


def _selection_bbox(doc: Any) -> Optional[tuple]:
    sel, box = _selection_box(doc)
    if box is None or not any(bytes(sel.pixelData(*box))):
        return None
    return box


def region_size(doc: Any, row: Optional[dict]) -> Optional[tuple[int, int, bool]]:
    """(w, h, no selection) the engine would get for the current selection (the whole document
    without one), margin included, for the time estimate. Cheap enough for a timer: bounds
    only, no pixels."""
    if doc is None:
        return None
    dw, dh = doc.width(), doc.height()
    sel, box = _selection_box(doc)
    region = geometry.context_region(box or (0, 0, dw, dh), catalog.model_margin(row or {}), dw, dh)
    whole = sel is None or sel.width() <= 0 or sel.height() <= 0
    return region[2], region[3], whole


def layer_choices(doc: Any) -> list[tuple[str, str]]:
    """(name, unique id) of the document's paint layers, top first: what the form offers as
    colorize's "Colour hints" layer."""
    if doc is None:
        return []
    return [(n.name(), str(n.uniqueId())) for n in reversed(_all_nodes(doc.rootNode())) if n.type() == "paintlayer"]


def _hints_reader(doc: Any, layer_id: str, region: tuple) -> Optional[Callable[[], bytes]]:
    """Reads the chosen colour-hints layer under ``region`` as RGBA u8; None when none is
    chosen or it is gone."""
    node = next((n for n in _all_nodes(doc.rootNode()) if str(n.uniqueId()) == layer_id), None) if layer_id else None
    if node is None:
        return None
    if node.colorModel() != "RGBA" or node.colorDepth() not in DEPTHS:
        raise PluginError("The colour hints layer must be an RGB/Alpha paint layer: paint the strokes on a "
                          "new paint layer, then try again.")
    sample, _wire, order = DEPTHS[node.colorDepth()]
    rx, ry, rw, rh = region
    return lambda: pixels.to_rgba8(bytes(node.pixelData(rx, ry, rw, rh)), sample, order)


def read_source(doc: Any, node: Any, plan: Plan) -> Source:
    """Read the pixels to send; raises PluginError for what the user must change first."""
    if doc is None:
        raise PluginError("Open an image first: there is no active document.")
    if node is None or node.type() in MASK_TYPES:
        raise PluginError("Select a paint layer in the Layers docker: the active node is a mask.")
    model, depth = node.colorModel(), node.colorDepth()
    if model != "RGBA" or depth not in DEPTHS:
        raise PluginError(
            f"The layer is {model}/{depth}; EnhanceLayer works on RGB/Alpha layers (8 or 16-bit "
            "integer, 16 or 32-bit float). Convert it with Image > Convert Image Color Space… "
            "(or duplicate the layer and convert the copy), then try again.")
    sample, wire, order = DEPTHS[depth]
    bbox = _selection_bbox(doc)
    selection = doc.selection().duplicate() if bbox else None
    if bbox is None:
        bbox = (0, 0, doc.width(), doc.height())
    region = geometry.context_region(bbox, plan.margin, doc.width(), doc.height())
    rx, ry, rw, rh = region
    # the selection as the input of restore-fill, the hints layer as colorize's
    inputs = options.job_inputs(plan, selection is not None,
                                lambda: selection.pixelData(rx, ry, rw, rh),   # type: ignore[union-attr]
                                _hints_reader(doc, plan.request.hints_layer, region))
    # pixelData takes document coordinates: a moved layer's offset is taken care of by Krita
    raw = bytes(node.pixelData(rx, ry, rw, rh))
    if len(raw) != rw * rh * pixels.bytes_per_pixel(4, sample):
        raise PluginError("Krita returned no pixels for this layer: pick a paint layer.")
    data = pixels.f16_to_f32(raw) if sample == "f16" else raw
    linear = is_linear(node.colorProfile())
    if linear:
        data = pixels.srgb_transfer(data, wire, encode=True)
    return Source(doc=doc, node=node, depth=depth, profile=node.colorProfile(), wire_dtype=wire,
                  order=order, region=region, bbox=bbox, pixels=data,
                  selection=selection, extra={"linear": linear, "inputs": inputs})


# --------------------------------------------------------------------------- step 2

def run_job(client: Any, src: Source, plan: Plan,
            progress: Optional[Callable[[float, str], bool]] = None,
            on_job: Optional[Callable[[str], None]] = None,
            reconnect: Optional[Callable[[], Any]] = None) -> Any:
    """Submit and wait; thread-safe (touches no Krita object). ``progress`` returning False
    cancels the job (Cancelled is raised); ``on_job(job_id)`` lets a Cancel button call
    ``client.cancel(job_id)`` at once instead of waiting for the next progress change.
    ``reconnect()``: a client to a freshly started local engine, used once, silently, when the
    engine turns out to be gone (see the core's ``with_restart``).

    A chain task (``plan.steps``: "Restore old photo") runs its steps one after the other, each
    on the previous step's result, and returns their results as a list (``chain.run_steps``)."""
    if not plan.steps:
        return _run_one(client, src, plan, progress, on_job, reconnect)[0]
    current = {"client": client}

    def one(data: bytes, step_plan: Plan, each: Callable[[float, str], bool]) -> Any:
        step_src = replace(src, pixels=data, extra=dict(src.extra, inputs=chain.step_inputs(step_plan,
                                                                                          src.extra["inputs"])))
        result, current["client"] = _run_one(current["client"], step_src, step_plan, each, on_job, reconnect)
        return result
    return chain.run_steps(src.pixels, plan.steps, one, progress)


def _run_one(client: Any, src: Source, plan: Plan, progress: Optional[Callable[[float, str], bool]],
             on_job: Optional[Callable[[str], None]], reconnect: Optional[Callable[[], Any]]) -> tuple[Any, Any]:
    """One job (see :func:`run_job`); returns (the result, the client that made it: a restarted
    engine's client is the one to use for the next step)."""
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

    def work(c: Any) -> Any:
        job = c.submit(src.pixels, rw, rh, 4, src.wire_dtype, channel_order=src.order, **src.extra["inputs"],
                       **plan.submit)
        if on_job is not None:
            on_job(job)
        return c.wait(job, progress=_cb)

    try:
        result, client = (work(client), client) if reconnect is None else with_restart(client, work, reconnect)
    except EngineError as e:
        if cancelled["flag"] or type(e).__name__ in ("Cancelled", "JobCancelled"):
            raise Cancelled("Cancelled.") from None
        raise plugin_error(e, remote=is_remote(client)) from None
    except OSError as e:  # a transport error the client did not wrap: the engine is gone
        raise plugin_error(EngineUnreachable(f"{type(e).__name__}: {e}"), remote=is_remote(client)) from None
    if cancelled["flag"]:
        raise Cancelled("Cancelled.")
    output.check_result(result, src.region, plan.request.scale, 4, src.wire_dtype)
    return result, client


# --------------------------------------------------------------------------- step 3

def _to_native(src: Source, data: bytes) -> bytes:
    if src.extra.get("linear"):
        data = pixels.srgb_transfer(data, src.wire_dtype, encode=False)
    return pixels.f32_to_f16(data) if src.sample_dtype == "f16" else bytes(data)


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


def _activate(doc: Any, node: Any, wait_s: float = 2.0, settle_s: float = 0.3) -> bool:
    """Make ``node`` the active layer. With a view, Krita learns about added nodes through
    queued signals: its node manager activates a node the script just added a moment later,
    and the layer docker ignores ``setActiveNode`` until it knows the node. So keep setting it
    until it has held for ``settle_s`` (at most ``wait_s``); True when it took."""
    import time

    def took() -> bool:
        active = doc.activeNode()
        return active is not None and active.uniqueId() == node.uniqueId()

    doc.setActiveNode(node)
    if not _active_view_shows(doc):   # no view, no docker to wait for (and no active layer to retry for)
        return took()
    from .qt import QCoreApplication
    doc.waitForDone()
    t_end = time.monotonic() + wait_s
    held_since: Optional[float] = None
    while True:
        QCoreApplication.processEvents()
        now = time.monotonic()
        if took():
            held_since = now if held_since is None else held_since
            if now - held_since >= settle_s:
                return True
        else:
            held_since = None
            doc.setActiveNode(node)
        if now > t_end:
            return took()
        time.sleep(0.02)


def _keep_source_active(doc: Any, node: Any, added: Any, delays_ms: tuple = (100, 300, 700, 1500)) -> None:
    """With a view, Krita 5.1 made the layer a script added active only after the script had
    returned to the event loop (the full app, tests/hosts/test_krita.py's dialog run: the
    result was active ~1 s later although :func:`_activate` had held for 0.3 s). So look again
    a few times: while the active layer is the one just added (or inside it), make the source
    active again; a layer the user picked meanwhile is left alone. Measured: with these checks
    the source stayed active in 5 of 5 full-app runs, without them in 0 of 5; the checks never
    had to act when logged, so the exact sequence inside Krita is not understood (a check that
    only reads ``activeNode`` is enough; empty timers are not)."""
    if not _active_view_shows(doc):
        return
    from .qt import QTimer

    added_ids = {str(added.uniqueId())} | {str(n.uniqueId()) for n in _all_nodes(added)}

    def check() -> None:
        try:
            active = doc.activeNode()
            if active is not None and str(active.uniqueId()) in added_ids:
                doc.setActiveNode(node)
        except RuntimeError:          # the document (or the node) went away meanwhile
            pass
    for ms in delays_ms:
        QTimer.singleShot(ms, check)


def _add_mask(doc: Any, layer: Any, sel: Any, box: tuple, name: str = "Selection") -> tuple:
    """Transparency mask from ``sel`` (within ``box``) on ``layer``, made off the tree so the
    caller adds layer and mask in one undo step; returns (kind, mask node or None).

    Krita >= 5.2 has ``createTransparencyMask``; 5.1 gets a detached mask from a loaded
    template (:mod:`detached_mask`). Where neither works: ("alpha", None), and the caller puts
    the selection into the layer's alpha instead."""
    if hasattr(doc, "createTransparencyMask"):
        mask = doc.createTransparencyMask(name)
        mask.setSelection(sel)
    else:
        from krita import Krita
        mask = detached_mask.transparency_mask(Krita.instance(), name)
        if mask is None:
            return "alpha", None
        mask.setPixelData(bytes(sel.pixelData(*box)), *box)
    layer.addChildNode(mask, None)
    return "mask", mask


def _new_document(src: Source, plan: Plan, piece: output.Piece, name: str, info: dict) -> dict:
    """Output "document": the kept box alone, in a new document of the source's colour space."""
    from krita import Krita
    _x, _y, w, h = piece.box
    app = Krita.instance()
    doc = src.doc
    nd = app.createDocument(w, h, output.document_name(doc.name(), plan.request.model),
                            "RGBA", src.depth, src.profile, doc.resolution() * plan.request.scale)
    lay = nd.createNode(name, "paintlayer")
    nd.rootNode().addChildNode(lay, None)
    for c in nd.rootNode().childNodes():
        if c.uniqueId() != lay.uniqueId():
            c.setVisible(False)
    lay.setPixelData(_to_native(src, piece.pixels), 0, 0, w, h)
    nd.refreshProjection()
    win = app.activeWindow()
    if win is not None:
        win.addView(nd)
    info.update(document=nd, layer=lay, mask="none", rect=[0, 0, w, h])
    return info


def _scaled_selection(src: Source, s: int) -> Any:
    """The user's selection on the document after Krita scaled it ``s`` times."""
    from krita import Selection
    if s == 1:
        return src.selection
    scaled = src.doc.selection()   # Krita scaled the global selection with the image
    if scaled is not None and scaled.width() > 0:
        return scaled.duplicate()
    bx, by, bw, bh = src.bbox
    user_sel = src.selection
    assert user_sel is not None, "only a masked output scales a selection"
    sel = Selection()
    sel.setPixelData(geometry.upsample_nearest(bytes(user_sel.pixelData(bx, by, bw, bh)), bw, bh, s),
                     bx * s, by * s, bw * s, bh * s)
    return sel


def write_result(src: Source, plan: Plan, result: Any) -> dict:
    """Create the output; returns what was made (names, kinds, rectangles) for callers/tests.
    ``result`` is a list of step results for a chain task (:func:`run_job`): its layers go into
    a layer group (:func:`_add_group`)."""
    doc, node, s = src.doc, src.node, plan.request.scale
    mode, model = plan.request.output, plan.request.model
    name = output.layer_name(model, plan.submit)   # the options the task took
    last = result[-1] if plan.steps else result
    note = chain.step_notes(plan.steps, result) if plan.steps else \
        str((getattr(result, "info", None) or {}).get("note") or "")
    info: dict = {"name": name, "region": list(src.region), "bbox": list(src.bbox), "scale": s,
                  "output": mode, "depth": src.depth, "whole_layer": src.selection is None,
                  "linear_profile": bool(src.extra.get("linear")), "note": note}
    if src.order != DEPTHS[src.depth][2]:  # pragma: no cover - guarded by DEPTHS
        raise PluginError("internal: channel order mismatch")

    if mode == "document":
        return _new_document(src, plan, output.split_result(result, src.region, src.bbox, s), name, info)

    created: list = []
    try:
        if s > 1:
            # Krita's own resampling for everything already there, then the enhanced layer
            # lands on the scaled coordinates
            doc.scaleImage(doc.width() * s, doc.height() * s, int(doc.xRes() * s),
                           int(doc.yRes() * s), "Bicubic")
            doc.waitForDone()
        masked = mode == "masked" and src.selection is not None
        # masked: the whole region (with margin) so feathered edges have content
        keep = src.region if masked else src.bbox
        piece = output.split_result(last, src.region, keep, s)
        parent = node.parentNode()
        # everything is built off the tree (masks included: Krita >= 5.2 makes them directly,
        # 5.1 from a loaded template) and added once below: one undo step removes it all
        sel = _scaled_selection(src, s) if masked else None
        if plan.steps:
            group, (layer, mask_kind, mask_node) = _add_group(src, plan, result, name, keep, sel, info)
        else:
            # restore-dust: the repaired spots are the layer's mask (in "layer" mode too: for a
            # dust repair the mask is the point), so a wrong repair can be painted off
            group = None
            layer = doc.createNode(name, "paintlayer")
            _prepare_layer(src, layer, output.layer_blend(plan.row))
            mask_kind, mask_node = _paint(src, layer, piece, sel, info)
        review_layer = None
        if plan.request.values.get("review") and piece.review:
            review_layer = _review_layer(doc, model, piece.review, piece.box, plan.request.show_review)
        top = group if group is not None else layer
        if review_layer is not None:
            # the result AND its review map: both in one group, added once
            if group is None:
                group = top = doc.createGroupLayer(name)
                group.setPassThroughMode(True)     # the result blends with the photo as if loose
                group.addChildNode(layer, None)
                info["review_group"] = group
            group.addChildNode(review_layer, group.childNodes()[-1])
        parent.addChildNode(top, node)             # directly above the source, masks included
        created.append(top)
        # the source stays the active layer: the next run enhances the original again, not the
        # enhanced copy (issue 16; GIMP keeps the source selected too)
        _activate(doc, node)
        _keep_source_active(doc, node, top)
        doc.refreshProjection()
        info.update(layer=layer, mask=mask_kind, mask_node=mask_node, review_layer=review_layer,
                    rect=list(piece.box))
        return info
    except Exception:
        for n in created:
            try:
                n.remove()
            except Exception:  # noqa: BLE001 - best-effort clean-up; the first error is re-raised
                pass
        raise


def _prepare_layer(src: Source, layer: Any, blend: str) -> None:
    """The new layer in the source's colour space, in the task's blend mode."""
    if blend == "color":
        layer.setBlendingMode("color")     # colorize: colour over the original's brightness
    if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != ("RGBA", src.depth, src.profile):
        layer.setColorSpace("RGBA", src.depth, src.profile)


def _paint(src: Source, layer: Any, piece: Any, sel: Any, info: dict) -> tuple:
    """Write a result piece into ``layer`` (off the tree) and mask it: the repaired spots
    (restore-dust's defect mask, times the selection when masked), else the selection
    (``sel``; None: no mask). Where no mask can be made the mask goes into the layer's alpha.
    Returns (mask kind, mask node or None)."""
    from krita import Selection
    doc = src.doc
    x, y, w, h = piece.box
    native = _to_native(src, piece.pixels)
    layer.setPixelData(native, x, y, w, h)
    if piece.defects is not None:
        dm = piece.defects
        if sel is not None:
            dm = pixels.multiply_masks(dm, bytes(sel.pixelData(x, y, w, h)))
        info["defects"] = len(dm) - dm.count(0)
        mask_sel = Selection()
        mask_sel.setPixelData(dm, x, y, w, h)
        kind, mask = ("alpha", None) if not info["defects"] else _add_mask(doc, layer, mask_sel, piece.box, "Defects")
        if kind == "alpha":   # no mask possible, or nothing repaired
            layer.setPixelData(pixels.alpha_times(native, src.sample_dtype, dm), x, y, w, h)
        return kind, mask
    if sel is None:
        return "none", None
    kind, mask = _add_mask(doc, layer, sel, piece.box)
    if kind == "alpha":
        layer.setPixelData(pixels.alpha_times(native, src.sample_dtype, bytes(sel.pixelData(x, y, w, h))), x, y, w, h)
    return kind, mask


def _add_group(src: Source, plan: Plan, results: list, name: str, keep: tuple, sel: Any, info: dict) -> tuple:
    """A chain's result: a layer group, named like a result layer, its opacity the job's
    strength, holding one layer per step bottom-up ("1 · Dust & scratches", …), each the image
    after its step, each with its mask (the selection; the repaired spots for the dust step).
    Built off the tree: the caller adds it once (one undo step). Returns the group and the top
    step's (layer, mask kind, mask node)."""
    doc = src.doc
    group = doc.createGroupLayer(name)
    group.setOpacity(int(round(chain.group_opacity(plan.request, plan.row) * 255 / 100)))
    below, made = None, []
    for i, (step, res) in enumerate(zip(plan.steps, results)):
        layer = doc.createNode(chain.step_layer_name(i, step), "paintlayer")
        _prepare_layer(src, layer, output.layer_blend(step.plan.row))
        kind, mask = _paint(src, layer, output.split_result(res, src.region, keep, plan.request.scale), sel, info)
        group.addChildNode(layer, below)           # above the previous step's layer
        made.append((layer, kind, mask))
        below = layer
    info["group"] = group
    info["steps"] = [[lay.name(), kind] for lay, kind, _m in made]
    return group, made[-1]


def _review_layer(doc: Any, model: str, review: bytes, box: tuple, visible: bool = output.REVIEW_VISIBLE) -> Any:
    """Red overlay, alpha = how risky the change is there (0..255); named with its legend and
    shown (unless the user's "Show the review layer" is off) as GIMP's is (``output.REVIEW_*``).
    Made and painted off the tree: the caller adds it with the result."""
    x, y, w, h = box
    lay = doc.createNode(output.review_name(model, review), "paintlayer")
    lay.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    lay.setPixelData(pixels.red_overlay(review, "BGRA"), x, y, w, h)
    lay.setOpacity(int(round(output.REVIEW_OPACITY * 255 / 100)))
    lay.setVisible(bool(visible))
    return lay


# --------------------------------------------------------------------------- all at once

def enhance(doc: Any, node: Any, client: Any, request: Request,
            progress: Optional[Callable[[float, str], bool]] = None) -> dict:
    """Synchronous path (scripts and tests): check, read, run, write."""
    plan = make_plan(fetch_catalog(client), request)
    src = read_source(doc, node, plan)
    result = run_job(client, src, plan, progress)
    return write_result(src, plan, result)
