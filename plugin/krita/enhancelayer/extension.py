"""The extension: the "Enhance Selection…" and "Enhance Selection Again" actions.

"Enhance Selection…" (Ctrl+Alt+E) opens the dialog with the last settings, as a Krita
filter's "…" promises; "Enhance Selection Again" (Ctrl+Alt+Shift+E) runs the remembered
settings at once. Both are declared in ``enhancelayer.action``, which install_krita.py puts in
the profile's ``actions`` folder: Krita reads its default shortcuts from such files, so the
shortcuts work, show in the menu and can be changed in Settings › Configure Krita › Keyboard
Shortcuts like Krita's own. Runs go through ``ui.Controller`` with a progress dialog.
"""
from __future__ import annotations

from typing import Any, Optional

from krita import Extension, Krita

from . import core
from .qt import QDialog, QKeySequence, QProgressDialog
from .ui import TITLE, Controller, EnhanceDialog, EnhanceDocker

ACTION_ID = "enhancelayer_enhance_selection"
AGAIN_ID = "enhancelayer_enhance_again"
# The defaults of enhancelayer.action, set here too for a profile without the file (a hand copy).
SHORTCUTS = {ACTION_ID: "Ctrl+Alt+E", AGAIN_ID: "Ctrl+Alt+Shift+E"}
SHORTCUT = SHORTCUTS[ACTION_ID]


class EnhanceLayerExtension(Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self.ctl: Optional[Controller] = None
        self.progress: Optional[QProgressDialog] = None
        self.dialog: Optional[EnhanceDialog] = None

    def setup(self) -> None:
        pass

    def createActions(self, window: Any) -> None:  # noqa: N802 - Krita API
        action = window.createAction(ACTION_ID, "Enhance Selection…", "tools/scripts")
        action.setToolTip("Choose what to do and enhance the selection into a new masked layer")
        action.triggered.connect(self.open_dialog)
        again = window.createAction(AGAIN_ID, "Enhance Selection Again", "tools/scripts")
        again.setToolTip("Enhance the selection with the last settings, without the dialog")
        again.triggered.connect(self.run_again)
        for act in (action, again):
            if act.shortcut().isEmpty():
                act.setShortcut(QKeySequence(SHORTCUTS[act.objectName()]))

    def _controller(self) -> Controller:
        if self.ctl is None:
            self.ctl = Controller()
        return self.ctl

    @staticmethod
    def _parent() -> Any:
        win = Krita.instance().activeWindow()
        return win.qwindow() if win is not None else None

    def _last_request(self, ctl: Controller) -> core.Request:
        """The open docker's settings, else the remembered ones."""
        for d in EnhanceDocker.instances:
            try:
                if d.isVisible():
                    return d.request()
            except RuntimeError:   # a deleted docker (window closed)
                continue
        return core.load_request(ctl.known_catalog())

    def open_dialog(self) -> None:
        ctl = self._controller()
        if ctl.busy() or self.dialog is not None:
            return
        dlg = EnhanceDialog(ctl, self._last_request(ctl), self._parent())
        self.dialog = dlg
        try:
            ok = dlg.exec() == QDialog.DialogCode.Accepted
            request = dlg.request()
        finally:
            self.dialog = None
            dlg.deleteLater()
        if ok:
            self._run(request)

    def run_again(self) -> None:
        self._run(None)

    def _run(self, request: Optional[core.Request]) -> None:
        """Enhance with ``request`` (None: the remembered one) under a progress dialog."""
        ctl = self._controller()
        if ctl.busy():
            return
        parent = self._parent()
        dlg = QProgressDialog("Enhancing…", "Cancel", 0, 1000, parent)
        dlg.setWindowTitle(TITLE)
        dlg.setObjectName("enhancelayer_progress")
        dlg.setMinimumDuration(300)
        dlg.canceled.connect(ctl.cancel)

        def show(fraction: float, message: str) -> None:
            dlg.setValue(int(fraction * 1000))
            dlg.setLabelText(message or "Enhancing…")

        def done(_info: Any, _err: str) -> None:
            for sig, slot in ((ctl.progress, show), (ctl.finished, done)):
                try:
                    sig.disconnect(slot)
                except (TypeError, RuntimeError):
                    pass
            dlg.reset()
        ctl.progress.connect(show)
        ctl.finished.connect(done)
        self.progress = dlg
        if not ctl.start(request, parent):
            dlg.reset()
