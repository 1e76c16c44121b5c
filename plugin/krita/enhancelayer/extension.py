"""The extension: registers "Enhance Selection…" (Tools > Scripts, Ctrl+Alt+E).

The action runs the open docker's settings, or (docker closed) the remembered request with a
progress dialog; both go through ``ui.Controller``, so they behave alike.
"""
from __future__ import annotations

from typing import Any, Optional

from krita import Extension, Krita
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import QProgressDialog

from .ui import TITLE, Controller, EnhanceDocker

ACTION_ID = "enhancelayer_enhance_selection"
SHORTCUT = "Ctrl+Alt+E"


class EnhanceLayerExtension(Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self.ctl: Optional[Controller] = None
        self.dialog: Optional[QProgressDialog] = None

    def setup(self) -> None:
        pass

    def createActions(self, window: Any) -> None:  # noqa: N802 - Krita API
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

        def show(fraction: float, message: str) -> None:
            dlg.setValue(int(fraction * 1000))
            dlg.setLabelText(message or "Enhancing…")
        self.ctl.progress.connect(show)
        self.ctl.finished.connect(lambda info, err: dlg.reset())
        self.dialog = dlg
        if not self.ctl.start(None, parent):     # None: the remembered request
            dlg.reset()
