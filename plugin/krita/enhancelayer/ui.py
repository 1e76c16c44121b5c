"""Widgets: the "AI Enhance" docker, the "Enhance Selection…" dialog, the run controller
(HTTP wait on a QThread), messages.

All Krita document work goes through ``core`` on the GUI thread; the worker thread only
talks HTTP, so the UI stays alive and Cancel works while the engine runs. Docker and dialog
show the same task-first form (``form.EnhanceForm``), built from the engine's catalog.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Optional

from krita import DockWidget, Krita

from . import core
from .core import catalog, output
from .form import EnhanceForm
from .qt import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QObject,
    QProgressBar,
    QPushButton,
    QThread,
    QTimer,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)

TITLE = "AI Enhance"


def show_error(parent: Optional[QWidget], text: str, details: str = "") -> None:
    """The one place errors reach the user: a Krita message box with one plain sentence and
    one thing to do; the technical message behind "Show Details…"."""
    box = QMessageBox(QMessageBox.Icon.Warning, TITLE, text, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("enhancelayer_error")
    if details and details != text:
        box.setDetailedText(details)
    box.exec()




class _Worker(QThread):
    """Runs a callable off the GUI thread; reports through queued signals."""

    progressed = pyqtSignal(float, str)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str, bool, str)      # message, cancelled, technical details

    def __init__(self, fn: Callable[[_Worker], Any]):
        super().__init__()
        self.fn = fn
        self.cancel_requested = False
        self.job = ""

    def run(self) -> None:  # noqa: D401 - QThread API
        try:
            self.succeeded.emit(self.fn(self))
        except core.Cancelled:
            self.failed.emit("", True, "")
        except core.PluginError as e:
            self.failed.emit(str(e), False, core.details_of(e))
        except Exception as e:  # noqa: BLE001 - a bug: still a message, never a silent failure
            msg = core.messages.explain(e)
            self.failed.emit(msg.text, False, msg.details)


class Controller(QObject):
    """One enhance at a time: check + read (GUI thread) -> HTTP (worker) -> write (GUI thread)."""

    progress = pyqtSignal(float, str)
    finished = pyqtSignal(object, str)   # info dict or None, error text ("" on success/cancel)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.worker: Optional[_Worker] = None
        self.client: Any = None
        self.catalog: Optional[dict] = None
        self._keep: Optional[_Worker] = None
        self._settings: Any = None             # studio.EngineSettings, read on the GUI thread

    def busy(self) -> bool:
        return self.worker is not None

    def get_client(self) -> Any:
        """The cached client (connect() with the settings last read on the GUI thread)."""
        if self.client is None:
            self.client = core.connect_settings(self._settings or core.read_engine_settings())
        return self.client

    def known_catalog(self) -> dict:
        """What a form shows before the engine answers: the last live catalog, else the
        installer's snapshot, else an empty one."""
        return self.catalog or core.snapshot_catalog() or {"models": [], "options": []}

    def _reconnect(self) -> Any:
        """The engine stopped since the last run: start it again, silently (any thread: it
        touches no Krita object; the settings were read on the GUI thread)."""
        self.client = core.connect_settings(self._settings or core.read_engine_settings())
        return self.client

    def settings_changed(self) -> None:
        """The engine settings were saved: the next call connects anew and reloads the catalog."""
        self._settings = core.read_engine_settings()
        self.client = None
        self.catalog = None

    def load_catalog(self, done: Callable[[Optional[dict], str], None]) -> None:
        """Ask the engine for its catalog off the GUI thread; ``done(catalog or None, error)``."""
        self._settings = core.read_engine_settings()

        def work(_w: _Worker) -> dict:
            return core.fetch_catalog(self.get_client(), self._reconnect)
        w = _Worker(work)

        def ok(cat: dict) -> None:
            self.catalog = cat
            done(cat, "")

        w.succeeded.connect(ok)
        w.failed.connect(lambda msg, _c, _d: done(None, msg))
        w.finished.connect(w.deleteLater)
        self._keep = w
        w.start()

    def start(self, request: Optional[core.Request] = None, parent_widget: Optional[QWidget] = None,
              doc: Any = None, node: Any = None) -> bool:
        """Enhance ``node`` of ``doc`` (default: the active layer of the active document) with
        ``request`` (default: the remembered one)."""
        if self.busy():
            return False
        if doc is None:
            doc = Krita.instance().activeDocument()
            node = doc.activeNode() if doc is not None else None
        if request is not None:
            core.save_request(request)
        try:
            self._settings = core.read_engine_settings()   # read on the GUI thread, used by reconnect
            client = self.get_client()
            if self.catalog is None:
                self.catalog = core.fetch_catalog(client, self._reconnect)
                client = self.client
            cat = self.catalog
            plan = core.make_plan(cat, request if request is not None else core.load_request(cat))
            src = core.read_source(doc, node, plan)
        except core.PluginError as e:
            show_error(parent_widget, str(e), core.details_of(e))
            self.finished.emit(None, str(e))
            return False

        def work(w: _Worker) -> Any:
            def cb(fraction: float, msg: str) -> bool:
                w.progressed.emit(fraction, msg)
                return not w.cancel_requested

            def got_job(job: str) -> None:
                w.job = job
                if w.cancel_requested:
                    self._cancel_job(self.client, job)

            return core.run_job(client, src, plan, cb, got_job, self._reconnect)

        w = _Worker(work)
        self.worker = w
        w.progressed.connect(self.progress)

        def ok(result: Any) -> None:
            try:   # still busy while writing: making the mask spins the event loop
                info = core.write_result(src, plan, result)
            except core.PluginError as e:
                self.worker = None
                show_error(parent_widget, str(e), core.details_of(e))
                self.finished.emit(None, str(e))
                return
            self.worker = None
            self.finished.emit(info, "")

        def fail(msg: str, cancelled: bool, details: str) -> None:
            self.worker = None
            if cancelled:
                self.finished.emit(None, "")
                return
            if msg in (core.messages.ENGINE_GONE, core.messages.REMOTE_GONE):
                self.client = None   # connect afresh next time (the engine may restart)
                self.catalog = None
            show_error(parent_widget, msg, details)
            self.finished.emit(None, msg)

        w.succeeded.connect(ok)
        w.failed.connect(fail)
        w.finished.connect(w.deleteLater)
        w.start()
        return True

    def cancel(self) -> None:
        w = self.worker
        if w is not None and not w.cancel_requested:
            w.cancel_requested = True
            if w.job:
                self._cancel_job(self.client, w.job)

    @staticmethod
    def _cancel_job(client: Any, job: str) -> None:
        """DELETE the job now, off the GUI thread (a remote engine may answer slowly); the
        worker's wait then sees "cancelled" and nothing is written."""
        def go() -> None:
            try:
                client.cancel(job)
            except Exception:  # noqa: BLE001 - already finished or gone: the wait loop reports it
                pass
        threading.Thread(target=go, daemon=True).start()


# ------------------------------------------------------------------------------ docker + dialog

REGION_POLL_MS = 1000       # how often the docker re-reads the selection's size for the estimate


def update_region(form: EnhanceForm) -> None:
    """Tell ``form`` the size the engine would get from the active document's selection."""
    doc = Krita.instance().activeDocument()
    got = core.region_size(doc, form.current_row())
    form.set_region(got[:2] if got else None, whole_layer=bool(got and got[2]))
    form.set_layers(core.layer_choices(doc))


class EnhanceDocker(DockWidget):
    instances: list = []

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(TITLE)
        self.setObjectName("enhancelayer_docker")
        EnhanceDocker.instances.append(self)
        self.ctl = Controller(self)
        self.ctl.progress.connect(self._on_progress)
        self.ctl.finished.connect(self._on_finished)
        cat = self.ctl.known_catalog()
        root = QWidget(self)
        v = QVBoxLayout(root)
        self.form = EnhanceForm(cat, core.load_request(cat), root)
        v.addWidget(self.form)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setFormat("Ready")
        self.bar.setTextVisible(True)
        v.addWidget(self.bar)
        buttons = QHBoxLayout()
        self.go = QPushButton("Enhance Selection")
        self.go.setObjectName("enhance")
        self.go.clicked.connect(self.start)
        self.stop = QPushButton("Cancel")
        self.stop.setObjectName("cancel")
        self.stop.setEnabled(False)
        self.stop.clicked.connect(self.ctl.cancel)
        self.refresh = QPushButton("⟳")
        self.refresh.setToolTip("Reload the model list from the engine")
        self.refresh.setFixedWidth(28)
        self.refresh.clicked.connect(self.reload_models)
        self.engine = QPushButton("⚙")
        self.engine.setObjectName("engine_settings")
        self.engine.setToolTip("Engine settings: this computer or a studio engine, Test connection")
        self.engine.setFixedWidth(28)
        self.engine.clicked.connect(self.edit_engine)
        buttons.addWidget(self.go, 1)
        buttons.addWidget(self.stop)
        buttons.addWidget(self.refresh)
        buttons.addWidget(self.engine)
        v.addLayout(buttons)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        v.addWidget(self.status)
        v.addStretch(1)
        self.setWidget(root)
        self._models_loaded = False
        self._poll = QTimer(self)
        self._poll.timeout.connect(self._update_region)
        self._poll.start(REGION_POLL_MS)
        QTimer.singleShot(1500, self._first_load)

    # the form's parts under the names tests and the menu action use
    @property
    def model(self) -> Any:
        return self.form.model

    @property
    def controls(self) -> dict:
        return self.form.controls

    def current_model(self) -> str:
        return self.form.current_model()

    def option_value(self, name: str) -> Any:
        return self.form.option_value(name)

    def request(self) -> core.Request:
        return self.form.request()

    def edit_engine(self) -> None:
        """The engine settings dialog; after Save the next run uses the engine chosen there."""
        from .engine_panel import EngineSettingsDialog

        if self.ctl.busy():
            return
        dlg = EngineSettingsDialog(core.read_engine_settings(), self)
        if dlg.exec():
            self.ctl.settings_changed()
            self.reload_models()

    # ---- models
    def _first_load(self) -> None:
        if not self._models_loaded:
            self.reload_models()

    def reload_models(self) -> None:
        self.status.setText("Asking the engine for its models…")
        self.refresh.setEnabled(False)
        self.ctl.load_catalog(self._catalog_arrived)

    def _catalog_arrived(self, cat: Optional[dict], error: str) -> None:
        self.refresh.setEnabled(True)
        if cat is None:
            self.status.setText(error)
            return
        self._models_loaded = True
        self.form.set_catalog(cat)
        models = catalog.models_of(cat)
        self.status.setText(f"{sum(1 for m in models if catalog.is_installed(m))} models ready")

    def _update_region(self) -> None:
        if self.isVisible():
            update_region(self.form)

    # ---- run
    def start(self) -> None:
        if self.ctl.busy():
            return
        self.go.setEnabled(False)
        self.stop.setEnabled(True)
        self.bar.setValue(0)
        self.bar.setFormat("Sending…")
        if not self.ctl.start(self.request(), self):
            self._idle()

    def _on_progress(self, fraction: float, msg: str) -> None:
        self.bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.bar.setFormat(f"{msg or 'Enhancing'} — %p%")

    def _on_finished(self, info: Any, error: str) -> None:
        self._idle()
        if info:
            self.bar.setValue(1000)
            self.bar.setFormat("Done")
            self.status.setText(output.done_message(info["name"], bool(info.get("whole_layer")),
                                                    str(info.get("note") or ""), len(info.get("steps") or ())))
        elif not error:
            self.bar.setFormat("Cancelled")
            self.status.setText(output.CANCELLED_MESSAGE)   # never the previous run's "Added layer…"
        else:
            self.bar.setFormat("Failed")
            self.status.setText(output.FAILED_MESSAGE)

    def _idle(self) -> None:
        self.go.setEnabled(True)
        self.stop.setEnabled(False)

    def canvasChanged(self, canvas: Any) -> None:  # noqa: N802 - Krita API
        pass


class EnhanceDialog(QDialog):
    """What "Enhance Selection…" opens: the docker's form with the last settings, the time
    estimate for the current selection, and Enhance / Cancel. The catalog is refreshed from
    the engine in the background while the dialog is open."""

    def __init__(self, ctl: Controller, request: core.Request, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle(f"{TITLE} — Enhance Selection")
        self.setObjectName("enhancelayer_dialog")
        cat = ctl.known_catalog()
        v = QVBoxLayout(self)
        self.form = EnhanceForm(cat, request, self)
        v.addWidget(self.form)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Enhance")
        ok.setObjectName("enhance")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        v.addWidget(self.buttons)
        update_region(self.form)
        self.form.model.currentIndexChanged.connect(lambda *_: update_region(self.form))
        ctl.load_catalog(self._catalog_arrived)

    def _catalog_arrived(self, cat: Optional[dict], _error: str) -> None:
        if cat is not None:
            self.form.set_catalog(cat)
            update_region(self.form)

    def request(self) -> core.Request:
        return self.form.request()
