"""Test-only pykrita plug-in (tests/hosts/test_krita.py installs it into a throw-away profile).

In the full Krita app under Xvfb it checks what a user would see: the "Enhance Selection…"
and "Enhance Selection Again" actions in Tools > Scripts with their shortcuts, the "AI
Enhance" docker with the engine's purposes and models in plain words; then it opens the test
photo, selects an area, picks the purpose and model in the docker, presses the docker's own
"Enhance Selection" button, waits for the new layer and lets the test take a screenshot.
Then, docker closed, it waits while the TEST presses the real Ctrl+Alt+E (xdotool): it reports
the dialog that opens, the test screenshots it and presses Return, and the probe reports the
layer that run added. Control files live in $ENHANCELAYER_PROBE_DIR.
"""
import json
import os
import time

from krita import Krita
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QDockWidget

DIR = os.environ.get("ENHANCELAYER_PROBE_DIR", "")
state = {"t0": time.time(), "res": {}}


def _write(name, obj):
    tmp = os.path.join(DIR, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, os.path.join(DIR, name))


def _menu_paths(menu, prefix, out):
    for a in menu.actions():
        if a.menu() is not None:
            _menu_paths(a.menu(), prefix + [a.menu().title().replace("&", "")], out)
        elif a.objectName().startswith("enhancelayer_enhance"):
            out.append(" > ".join(prefix + [a.text().replace("&", "")]))


def _finish(rc=0):
    for d in Krita.instance().documents():
        d.setModified(False)
    os._exit(rc)


def step1():
    app = Krita.instance()
    res = state["res"]
    win = app.activeWindow()
    act = app.action("enhancelayer_enhance_selection")
    res["action"] = act is not None
    if act is not None:
        res["action_text"] = act.text()
        res["shortcut"] = act.shortcut().toString()
    again = app.action("enhancelayer_enhance_again")
    res["again_shortcut"] = again.shortcut().toString() if again is not None else None
    paths = []
    qwin = win.qwindow()
    for a in qwin.menuBar().actions():
        if a.menu() is not None:
            _menu_paths(a.menu(), [a.menu().title().replace("&", "")], paths)
    res["menu_paths"] = paths
    dock = qwin.findChild(QDockWidget, "enhancelayer_docker")
    res["docker"] = dock is not None
    if dock is None:
        _write("ready.json", res)
        return
    res["docker_title"] = dock.windowTitle()
    # a tidy window for the README screenshot: full screen, Layers + AI Enhance only
    qwin.setGeometry(0, 0, 1440, 900)
    qwin.showMaximized()
    for d in qwin.findChildren(QDockWidget):
        if d.objectName() not in ("KisLayerBox", "enhancelayer_docker") and d.isVisible():
            d.hide()
    dock.setFloating(False)
    dock.show()
    dock.raise_()
    state["dock"] = dock
    spec = json.load(open(os.path.join(DIR, "spec.json")))
    doc = app.openDocument(spec["png"])
    win.addView(doc)
    from krita import Selection
    sel = Selection()
    x, y, w, h = spec["select"]
    sel.select(x, y, w, h, 255)
    sel.feather(spec.get("feather", 0))
    doc.setSelection(sel)
    doc.setActiveNode(doc.rootNode().childNodes()[0])
    state["doc"] = doc
    QTimer.singleShot(200, wait_models)


def wait_models():
    dock = state["dock"]
    res = state["res"]
    if not dock._models_loaded and time.time() - state["t0"] < 90:
        QTimer.singleShot(300, wait_models)
        return
    form = dock.form
    res["docker_status"] = dock.status.text()
    res["strength_default"] = dock.option_value("strength")
    # every purpose with its model list, as a user sees them by opening the first combo
    listed = {}
    for i in range(form.purpose.count()):
        form.purpose.setCurrentIndex(i)
        listed[form.purpose.itemText(i)] = [form.model.itemText(j) for j in range(form.model.count())]
    res["purposes"] = listed
    spec = json.load(open(os.path.join(DIR, "spec.json")))
    res["model_found"] = form.select_model(spec["model"])
    res["purpose_selected"] = form.purpose.currentText()
    res["model_items"] = [dock.model.itemText(i) for i in range(dock.model.count())]
    res["model_text"] = dock.model.currentText()
    res["model_selected"] = dock.current_model()
    res["model_help"] = form.help.text()
    res["option_widgets"] = sorted(dock.controls)
    dock._update_region()
    res["estimate"] = form.estimate.text()
    dock.go.click()            # the user's click
    state["t1"] = time.time()
    QTimer.singleShot(200, wait_layer)


def wait_layer():
    dock, doc, res = state["dock"], state["doc"], state["res"]
    if (dock.ctl.busy() or dock.bar.format() not in ("Done", "Failed", "Cancelled")) \
            and time.time() - state["t1"] < 120:
        QTimer.singleShot(200, wait_layer)
        return
    doc.waitForDone()
    res["layers"] = [(n.name(), n.type(), [(c.name(), c.type()) for c in n.childNodes()])
                     for n in doc.rootNode().childNodes()]
    res["bar"] = dock.bar.format()
    res["docker_status_after"] = dock.status.text()
    res["seconds"] = time.time() - state["t1"]
    QTimer.singleShot(1500, ready)   # let the canvas and layer docker repaint


def ready():
    res = state["res"]
    res["display"] = os.environ.get("DISPLAY")
    res["xauthority"] = os.environ.get("XAUTHORITY")
    _write("ready.json", res)
    QTimer.singleShot(200, wait_shot)


def wait_shot():
    if os.path.exists(os.path.join(DIR, "shot_done")) or time.time() - state["t0"] > 240:
        QTimer.singleShot(0, await_keys)
        return
    QTimer.singleShot(200, wait_shot)


def await_keys():
    """Docker closed, a new selection, the canvas focused: the test now presses Ctrl+Alt+E."""
    from krita import Selection
    dock, doc = state["dock"], state["doc"]
    dock.hide()
    doc.setActiveNode(doc.rootNode().childNodes()[0])
    sel = Selection()
    sel.select(10, 10, 60, 50, 255)
    doc.setSelection(sel)
    state["n_before"] = len(_enhanced(doc))
    state["t2"] = time.time()
    Krita.instance().activeWindow().qwindow().activateWindow()
    _write("keys.json", {"waiting": True})
    QTimer.singleShot(200, wait_dialog)


def wait_dialog():
    from PyQt5.QtWidgets import QApplication
    w = QApplication.activeModalWidget()
    if w is None or w.objectName() != "enhancelayer_dialog":
        if time.time() - state["t2"] < 60:
            QTimer.singleShot(200, wait_dialog)
            return
        _write("dialog.json", {"opened": False})
        QTimer.singleShot(0, final)
        return
    form = w.form
    shown = {"opened": True, "title": w.windowTitle(), "purpose": form.purpose.currentText(),
             "model": form.current_model(), "model_text": form.model.currentText(),
             "help": form.help.text(), "estimate": form.estimate.text(),
             "scale_note": form.scale_note.text() if form.scale_note.isVisible() else "",
             "scale_shown": form.scale.isVisible()}
    # a repair task keeps the size: its Scale row disappears and a 2x left from before goes back to 1
    first = form.current_model()
    form.scale.setValue(2)
    form.select_model("restore-dust")
    shown["repair"] = {"model": form.current_model(), "scale_shown": form.scale.isVisible(),
                       "scale": form.scale.value(), "strength": form.option_value("strength")}
    form.select_model(first)
    shown["back"] = {"model": form.current_model(), "scale_shown": form.scale.isVisible(),
                     "scale": form.scale.value(), "strength": form.option_value("strength")}
    _write("dialog.json", shown)
    state["t3"] = time.time()
    QTimer.singleShot(300, wait_action)


def _enhanced(doc):
    return [n for n in doc.rootNode().childNodes() if n.name().startswith("Enhanced")]


def wait_action():
    doc = state["doc"]
    layers = _enhanced(doc)
    if len(layers) <= state["n_before"] and time.time() - state["t3"] < 90:
        QTimer.singleShot(300, wait_action)
        return
    QTimer.singleShot(1000, final)


def final():
    doc = state["doc"]
    _write("final.json", {"layers": [(n.name(), n.type(), [(c.name(), c.type()) for c in n.childNodes()])
                                     for n in doc.rootNode().childNodes()],
                          "active": doc.activeNode().name() if doc.activeNode() else None})
    _finish(0)


def _on_window():
    QTimer.singleShot(2500, step1)


if DIR:
    Krita.instance().notifier().windowCreated.connect(_on_window)
