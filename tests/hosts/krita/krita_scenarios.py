"""Runs INSIDE real Krita (kritarunner): drives the installed plug-in's own code path.

    kritarunner -s krita_scenarios -f main /path/spec.json

The spec names a scenario and its inputs; the results (JSON + raw pixel files) go to
spec["out_dir"]. Nothing here fakes the engine or Krita: the plug-in's ``core`` talks to the
real engine the test started, through the vendored client.
"""
import hashlib
import json
import os
import struct
import sys
import time
import traceback


def _w(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _window_for(app, doc):
    """A window + view like a user has (Krita 5.1 makes transparency masks through a view)."""
    win = app.activeWindow() or app.openWindow()
    view = win.addView(doc)
    app.setActiveDocument(doc) if hasattr(app, "setActiveDocument") else None
    return win, view


def _make_doc(app, spec):
    """Either open the test's PNG, or build a document from the test's raw BGRA/RGBA bytes."""
    if spec.get("png"):
        doc = app.openDocument(spec["png"])
    else:
        W, H = spec["width"], spec["height"]
        doc = app.createDocument(W, H, "t", "RGBA", spec["depth"], spec.get("profile", ""), 72.0)
        bg = doc.rootNode().childNodes()[0]
        data = open(spec["raw"], "rb").read()
        if spec["depth"] == "F16":   # the test sends f32; Krita's F16 wants half floats
            n = len(data) // 4
            data = struct.pack(f"<{n}e", *struct.unpack(f"<{n}f", data))
        assert bg.setPixelData(data, 0, 0, W, H) is not False
    doc.waitForDone()
    return doc


def _select(doc, spec):
    from krita import Selection
    if not spec.get("select"):
        doc.setSelection(Selection())   # an empty selection: none
        return None
    x, y, w, h = spec["select"]
    sel = Selection()
    sel.select(x, y, w, h, 255)
    if spec.get("feather"):
        sel.feather(spec["feather"])
    doc.setSelection(sel)
    return sel


def run(spec, res):
    from enhancelayer import core
    from krita import Krita
    app = Krita.instance()
    out = spec["out_dir"]
    doc = _make_doc(app, spec)
    res["krita_version"] = app.version()
    if spec.get("window", True):   # 5.2's kritarunner crashes opening a window; it needs none
        _window_for(app, doc)
    W, H = doc.width(), doc.height()
    src_node = doc.rootNode().childNodes()[0]
    if spec.get("offset"):
        # a layer moved with the Move tool: its pixels live at another place in the document
        dx, dy = spec["offset"]
        src_node.move(dx, dy)
        doc.waitForDone()
    res["doc_size_before"] = [W, H]
    res["depth"] = src_node.colorDepth()
    res["profile"] = src_node.colorProfile()
    hints_id = ""
    if spec.get("hints"):     # colorize's colour strokes on a paint layer above the source (8-bit BGRA)
        hl = doc.createNode("Hints", "paintlayer")
        px = bytearray(W * H * 4)
        for x, y, w, h, rgb in spec["hints"]:
            for yy in range(y, y + h):
                px[(yy * W + x) * 4:(yy * W + x + w) * 4] = bytes([rgb[2], rgb[1], rgb[0], 255]) * w
        hl.setPixelData(bytes(px), 0, 0, W, H)
        doc.rootNode().addChildNode(hl, src_node)
        doc.waitForDone()
        hints_id = str(hl.uniqueId()) if spec.get("choose_hints", True) else ""
    before_bytes = bytes(src_node.pixelData(0, 0, W, H))
    _w(os.path.join(out, "source_before.raw"), before_bytes)
    names_before = [n.name() for n in doc.rootNode().childNodes()]
    _select(doc, spec)
    doc.setActiveNode(src_node)
    # without a view (5.2's kritarunner) Krita has no active layer at all: activeNode() is None
    has_active = doc.activeNode() is not None
    # what the docker would send: the host's own controls + the option values by name
    opts = core.Request(model=spec["model"], scale=spec.get("scale", 1), output=spec.get("output", "masked"),
                        values={"strength": spec.get("strength", 60), "grain": spec.get("grain", 0),
                                "review": spec.get("review", False), **spec.get("values", {})},
                        show_review=spec.get("show_review", True), hints_layer=hints_id)
    if spec.get("engine_url"):
        client = core.connect(spec["engine_url"], spec.get("token", "x"))
    else:
        client = core.connect()

    if spec["scenario"] == "unavailable_ui":
        return _unavailable_ui(spec, res, doc, names_before, opts)
    if spec["scenario"] == "cancel_ui":
        return _cancel_ui(spec, res, doc, names_before, opts)
    if spec["scenario"] == "restart_ui":
        return _restart_ui(spec, res, doc, names_before, opts)
    if spec["scenario"] == "studio_ui":
        return _studio_ui(spec, res, doc, names_before, opts)

    t0 = time.time()
    try:
        info = core.enhance(doc, src_node, client, opts)
    except core.PluginError as e:
        res["error"] = str(e)
        info = None
    res["seconds"] = time.time() - t0
    doc.waitForDone()
    active = doc.activeNode()
    res["source_active"] = (active is not None and active.uniqueId() == src_node.uniqueId()) if has_active else None
    kids = doc.rootNode().childNodes()
    res["layers_after"] = [n.name() for n in kids]
    res["layer_types_after"] = [n.type() for n in kids]
    res["layers_before"] = names_before
    res["doc_size_after"] = [doc.width(), doc.height()]
    W2, H2 = doc.width(), doc.height()
    if spec.get("scale", 1) == 1:
        after = bytes(src_node.pixelData(0, 0, W, H))
        res["source_unchanged"] = after == before_bytes
        res["source_sha_before"] = hashlib.sha256(before_bytes).hexdigest()
        res["source_sha_after"] = hashlib.sha256(after).hexdigest()
    if info is None:
        return
    res["info"] = {k: v for k, v in info.items() if isinstance(v, (str, int, float, list, type(None)))}
    if spec.get("output") == "document":
        nd = info["document"]
        res["new_doc_size"] = [nd.width(), nd.height()]
        res["new_doc_layers"] = [n.name() for n in nd.rootNode().childNodes()]
        _w(os.path.join(out, "layer.raw"), bytes(info["layer"].pixelData(0, 0, nd.width(), nd.height())))
        res["source_doc_layers"] = [n.name() for n in doc.rootNode().childNodes()]
        return
    layer = info.get("group") or info["layer"]    # a chain's result: its layer group
    if info.get("group") is not None:
        steps = layer.childNodes()       # bottom first
        res["group"] = {"type": layer.type(), "opacity": layer.opacity(),
                        "children": [[c.name(), c.type(), [[m.name(), m.type()] for m in c.childNodes()]]
                                     for c in steps], "blending": [c.blendingMode() for c in steps]}
        for i, c in enumerate(steps):
            _w(os.path.join(out, f"step{i}.raw"), bytes(c.pixelData(0, 0, W, H)))
            for m in c.childNodes():
                if m.type() == "transparencymask":
                    _w(os.path.join(out, f"step{i}_mask.raw"), bytes(m.pixelData(0, 0, W, H)))
    # with a review map, Krita >= 5.2 puts the result layer and the review layer in one group
    top = info.get("review_group") or layer
    if info.get("review_group") is not None:
        res["review_group"] = {"name": top.name(), "type": top.type(), "pass_through": top.passThroughMode(),
                               "children": [c.name() for c in top.childNodes()]}
    res["layer_index"] = [n.uniqueId() for n in kids].index(top.uniqueId())
    res["source_index"] = [n.uniqueId() for n in kids].index(src_node.uniqueId())
    res["layer_name"] = layer.name()
    res["blending_mode"] = layer.blendingMode()
    res["layer_depth"] = layer.colorDepth()
    res["children"] = [(c.name(), c.type()) for c in layer.childNodes()]
    _w(os.path.join(out, "layer.raw"), bytes(layer.pixelData(0, 0, W2, H2)))
    doc.refreshProjection()
    doc.waitForDone()
    _w(os.path.join(out, "layer_projection.raw"), bytes(layer.projectionPixelData(0, 0, W2, H2)))
    sel = doc.selection()
    res["selection_after"] = [sel.x(), sel.y(), sel.width(), sel.height()] if sel else None
    if sel is not None:
        _w(os.path.join(out, "selection.raw"), bytes(sel.pixelData(0, 0, W2, H2)))
    for c in layer.childNodes():
        if c.type() == "transparencymask":
            _w(os.path.join(out, "mask.raw"), bytes(c.pixelData(0, 0, W2, H2)))
    if info.get("review_layer") is not None:
        rl = info["review_layer"]
        res["review_layer"] = {"name": rl.name(), "visible": rl.visible(), "opacity": rl.opacity()}
        _w(os.path.join(out, "review.raw"), bytes(rl.pixelData(0, 0, W2, H2)))
    # what the user sees with the source hidden: the enhanced layer alone, masked
    for n in kids:
        n.setVisible(n.uniqueId() == top.uniqueId())
    doc.refreshProjection()
    doc.waitForDone()
    _w(os.path.join(out, "composite.raw"), bytes(doc.pixelData(0, 0, W2, H2)))


def _spin(app, until, seconds):
    from PyQt5.QtCore import QCoreApplication, QEventLoop
    t_end = time.time() + seconds
    while not until() and time.time() < t_end:
        QCoreApplication.processEvents(QEventLoop.AllEvents, 50)
        time.sleep(0.01)


def _unavailable_ui(spec, res, doc, names_before, opts):
    """The docker's own controller against an engine that is not there: a message box."""
    from enhancelayer import core, ui
    from krita import Krita
    from PyQt5.QtCore import QTimer
    from PyQt5.QtWidgets import QApplication, QMessageBox
    app = Krita.instance()
    g = core.SETTINGS_GROUP
    app.writeSetting(g, "engine_url", spec["engine_url"])
    app.writeSetting(g, "engine_token", "not-a-token")
    seen = []

    def close_box():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QMessageBox) and w.isVisible():
                seen.append(w.text())
                res.setdefault("details", []).append(w.detailedText())
                w.accept()
                return
        QTimer.singleShot(100, close_box)

    QTimer.singleShot(100, close_box)
    ctl = ui.Controller()
    done = []
    ctl.finished.connect(lambda info, err: done.append((info, err)))
    ctl.start(opts, None, doc, doc.rootNode().childNodes()[0])
    _spin(app, lambda: bool(done), 30)
    app.writeSetting(g, "engine_url", "")      # the next run in this profile: local engine
    app.writeSetting(g, "engine_token", "")
    res["messages"] = seen
    res["finished"] = [[i is not None, e] for i, e in done]
    res["layers_before"] = names_before
    res["layers_after"] = [n.name() for n in doc.rootNode().childNodes()]


def _close_message_boxes():
    """Accept every message box the plug-in shows from now on; returns the list of their texts."""
    from PyQt5.QtCore import QTimer
    from PyQt5.QtWidgets import QApplication, QMessageBox
    boxes = []

    def close_box():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QMessageBox) and w.isVisible():
                boxes.append(w.text())
                w.accept()
        QTimer.singleShot(100, close_box)

    QTimer.singleShot(100, close_box)
    return boxes


def _cancel_ui(spec, res, doc, names_before, opts):
    """Cancel while the engine works: no layer, no message box, the document unchanged."""
    from enhancelayer import core, ui
    from krita import Krita
    app = Krita.instance()
    app.writeSetting(core.SETTINGS_GROUP, "engine_url", "")   # the local engine of this test
    boxes = _close_message_boxes()
    ctl = ui.Controller()
    done, progress = [], []
    ctl.finished.connect(lambda info, err: done.append((info, err)))
    ctl.progress.connect(lambda f, m: progress.append(f))
    started = ctl.start(opts, None, doc, doc.rootNode().childNodes()[0])
    res["started"] = started
    _spin(app, lambda: bool(done) or ctl.worker is not None and len(progress) > 0, 30)
    ctl.cancel()
    _spin(app, lambda: bool(done), 60)
    res["finished"] = [[i is not None, e] for i, e in done]
    res["boxes"] = boxes
    res["progress"] = progress[:20]
    res["layers_before"] = names_before
    res["layers_after"] = [n.name() for n in doc.rootNode().childNodes()]
    res["doc_size_after"] = [doc.width(), doc.height()]


def _studio_ui(spec, res, doc, names_before, opts):
    """The docker's controller with the engine settings the ⚙ dialog saves: a studio engine
    (URL, token, pinned fingerprint) -> the layer comes from there; the same with a wrong
    fingerprint -> one plain message box, nothing added; then back to This computer."""
    from enhancelayer import core, ui
    from krita import Krita
    app = Krita.instance()
    boxes = _close_message_boxes()
    src = doc.rootNode().childNodes()[0]
    done = []
    for fp in (spec["fingerprint"], "SHA256:" + ":".join(["AB"] * 32)):
        core.save_engine_settings(core.studio.EngineSettings("studio", spec["studio_url"], spec["studio_token"], fp))
        ctl = ui.Controller()
        ctl.finished.connect(lambda info, err: done.append((info, err)))
        n = len(done)
        doc.setActiveNode(src)
        ctl.start(opts, None, doc, src)
        _spin(app, lambda n=n: len(done) > n, 120)
        res.setdefault("layers_each", []).append([x.name() for x in doc.rootNode().childNodes()])
    core.save_engine_settings(core.studio.EngineSettings())
    res["mode_after"] = core.read_engine_settings().mode
    res["boxes"] = boxes
    res["finished"] = [[i is not None, e] for i, e in done]
    res["layers_before"] = names_before


def _restart_ui(spec, res, doc, names_before, opts):
    """Two runs of the docker's controller; between them the engine is killed (SIGKILL, as a
    crash would): the second run must restart it silently (no message box) and add its layer."""
    import signal

    from enhancelayer import core, ui
    from krita import Krita
    app = Krita.instance()
    app.writeSetting(core.SETTINGS_GROUP, "engine_url", "")
    boxes = _close_message_boxes()
    disc = os.path.join(spec["config_dir"], "engine.json")
    ctl = ui.Controller()
    done = []
    ctl.finished.connect(lambda info, err: done.append((info, err)))
    src = doc.rootNode().childNodes()[0]
    ctl.start(opts, None, doc, src)
    _spin(app, lambda: bool(done), 90)
    pids = [json.load(open(disc))["pid"]]
    os.kill(pids[0], signal.SIGKILL)
    t_end = time.time() + 10
    while time.time() < t_end:
        try:
            os.kill(pids[0], 0)
        except OSError:
            break
        time.sleep(0.05)
    res["killed"] = True
    doc.setActiveNode(src)
    ctl.start(opts, None, doc, src)
    _spin(app, lambda: len(done) >= 2, 120)
    pids.append(json.load(open(disc))["pid"] if os.path.exists(disc) else None)
    res["pids"] = pids
    res["boxes"] = boxes
    res["finished"] = [[i is not None, e] for i, e in done]
    res["layers_before"] = names_before
    res["layers_after"] = [n.name() for n in doc.rootNode().childNodes()]


def main(args=None):
    spec = json.load(open(args[0]))
    res = {"ok": False}
    try:
        run(spec, res)
        res["ok"] = True
    except Exception:  # noqa: BLE001 - recorded for the test, which fails with the traceback
        res["traceback"] = traceback.format_exc()
    with open(os.path.join(spec["out_dir"], "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    sys.stdout.flush()
    # leave without Krita asking to save: close every document unmodified
    from krita import Krita
    for d in Krita.instance().documents():
        d.setModified(False)
    os._exit(0)
