"""The extension: registers "Enhance Selection…" (Tools > Scripts, Ctrl+Alt+E)."""
from __future__ import annotations

from krita import Extension, Krita
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import QProgressDialog

from . import core
from .ui import TITLE, Controller, EnhanceDocker

ACTION_ID = "enhancelayer_enhance_selection"
SHORTCUT = "Ctrl+Alt+E"


class EnhanceLayerExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.ctl = None
        self.dialog = None

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:  # noqa: N802 - Krita API
        action = window.createAction(ACTION_ID, "Enhance Selection…", "tools/scripts")
        action.setToolTip("Enhance the selection with the local AI engine into a new masked layer")
        if action.shortcut().isEmpty():
            action.setShortcut(QKeySequence(SHORTCUT))
        action.triggered.connect(self.run)

    def run(self) -> None:
        """Use the docker's settings when it is open, else the remembered ones."""
        for d in EnhanceDocker.instances:
            try:
                if d.isVisible():
                    d.start()
                    return
            except RuntimeError:   # a deleted docker (window closed)
                continue
        if self.ctl is not None and self.ctl.busy():
            return
        win = Krita.instance().activeWindow()
        parent = win.qwindow() if win is not None else None
        self.ctl = Controller()
        dlg = QProgressDialog("Enhancing…", "Cancel", 0, 1000, parent)
        dlg.setWindowTitle(TITLE)
        dlg.setMinimumDuration(300)
        dlg.canceled.connect(self.ctl.cancel)
        self.ctl.progress.connect(lambda f, m: (dlg.setValue(int(f * 1000)),
                                                dlg.setLabelText(m or "Enhancing…")))
        self.ctl.finished.connect(lambda info, err: dlg.reset())
        self.dialog = dlg
        if not self.ctl.start(core.load_options(), parent):
            dlg.reset()
