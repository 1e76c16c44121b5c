"""Test-only pykrita plug-in: in the FULL Krita app (a window and a view, as a user has), it
opens the photo, selects an area, runs EnhanceLayer's own core (``core.enhance``: read, engine,
write) and then triggers Krita's own Undo action once, recording the layers after each step.
tests/hosts/test_krita.py installs it beside the real plug-in; $ENHANCELAYER_UNDO_SPEC names
the spec (photo, selection, model, where to write the result)."""
import json
import os
import time

from krita import Krita, Selection
from PyQt5.QtCore import QCoreApplication, QTimer

SPEC = os.environ.get("ENHANCELAYER_UNDO_SPEC", "")


def _layers(doc):
    """[name, [child names]] of the top-level nodes; a group's children with their own children."""
    def kids(n):
        return [c.name() if not c.childNodes() or n.type() != "grouplayer" else [c.name(), kids(c)]
                for c in n.childNodes()]
    return [[n.name(), kids(n)] for n in doc.rootNode().childNodes()]


def _settle(doc, seconds=0.5):
    doc.waitForDone()
    t_end = time.time() + seconds
    while time.time() < t_end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def _run():
    spec = json.load(open(SPEC))
    res = {}
    try:
        from enhancelayer import core
        app = Krita.instance()
        res["version"] = app.version()
        doc = app.openDocument(spec["png"])
        app.activeWindow().addView(doc)
        _settle(doc, 1.0)
        src = doc.rootNode().childNodes()[0]
        sel = Selection()
        sel.select(*spec["select"], 255)
        doc.setSelection(sel)
        doc.setActiveNode(src)
        _settle(doc)
        client = core.connect()
        req = core.Request(model=spec["model"], scale=1, output="masked",
                           values={"strength": 60, **spec.get("values", {})})
        info = core.enhance(doc, src, client, req)
        _settle(doc)
        res["mask"] = info["mask"]
        res["after_run"] = _layers(doc)
        app.action("edit_undo").trigger()
        _settle(doc, 1.0)
        res["after_one_undo"] = _layers(doc)
        doc.setModified(False)
    except Exception as e:  # noqa: BLE001 - reported to the test
        res["error"] = repr(e)
    with open(spec["out"] + ".tmp", "w") as f:
        json.dump(res, f)
    os.replace(spec["out"] + ".tmp", spec["out"])
    os._exit(0)


if SPEC:
    Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(3000, _run))
