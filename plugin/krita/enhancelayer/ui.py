"""Widgets: the "AI Enhance" docker, the run controller (HTTP wait on a QThread), messages.

All Krita document work goes through ``core`` on the GUI thread; the worker thread only
talks HTTP, so the UI stays alive and Cancel works while the engine runs.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from krita import DockWidget, Krita
from PyQt5.QtCore import QObject, QThread, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QStandardItem, QStandardItemModel
from PyQt5.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QMessageBox,
                             QProgressBar, QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget)

from . import core

TITLE = "AI Enhance"
TASK_TITLES = {"upscale": "Upscale", "jpeg": "JPEG clean-up", "denoise": "Denoise",
               "sharpen": "Sharpen", "restore": "Restore"}
OUTPUT_TITLES = (("masked", "New layer, masked to selection"), ("layer", "New layer"),
                 ("document", "New document"))


def show_error(parent: Optional[QWidget], text: str) -> None:
    """The one place errors reach the user: a Krita message box with an actionable line."""
    box = QMessageBox(QMessageBox.Warning, TITLE, text, QMessageBox.Ok, parent)
    box.setObjectName("enhancelayer_error")
    box.exec_()


def _engine_settings() -> tuple:
    app = Krita.instance()
    g = core.SETTINGS_GROUP
    return (app.readSetting(g, "engine_url", ""), app.readSetting(g, "engine_token", ""),
            app.readSetting(g, "engine_cafile", ""))


class _Worker(QThread):
    """Runs a callable off the GUI thread; reports through queued signals."""

    progressed = pyqtSignal(float, str)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str, bool)

    def __init__(self, fn: Callable[["_Worker"], Any]):
        super().__init__()
        self.fn = fn
        self.cancel_requested = False
        self.job = ""

    def run(self) -> None:  # noqa: D401 - QThread API
        try:
            self.succeeded.emit(self.fn(self))
        except core.Cancelled:
            self.failed.emit("", True)
        except core.PluginError as e:
            self.failed.emit(str(e), False)
        except Exception as e:  # a bug: still a message, never a silent failure
            self.failed.emit(f"Unexpected error in EnhanceLayer: {e!r}. Please report it.", False)


class Controller(QObject):
    """One enhance at a time: read (GUI thread) -> HTTP (worker) -> write (GUI thread)."""

    progress = pyqtSignal(float, str)
    finished = pyqtSignal(object, str)   # info dict or None, error text ("" on success/cancel)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.worker: Optional[_Worker] = None
        self.client: Any = None
        self.models: list = []

    def busy(self) -> bool:
        return self.worker is not None

    def get_client(self) -> Any:
        if self.client is None:
            self.client = core.connect(*_engine_settings())
        return self.client

    def load_models(self, done: Callable[[list, str], None]) -> None:
        def work(_w: _Worker) -> list:
            return core.model_list(self.get_client())
        w = _Worker(work)

        def ok(models: list) -> None:
            self.models = models
            done(models, "")

        w.succeeded.connect(ok)
        w.failed.connect(lambda msg, _c: done([], msg))
        w.finished.connect(w.deleteLater)
        self._keep = w
        w.start()

    def start(self, opts: core.Options, parent_widget: Optional[QWidget] = None,
              doc: Any = None, node: Any = None) -> bool:
        """Enhance ``node`` of ``doc`` (default: the active layer of the active document)."""
        if self.busy():
            return False
        if doc is None:
            doc = Krita.instance().activeDocument()
            node = doc.activeNode() if doc is not None else None
        core.save_options(opts)
        try:
            client = self.get_client()
            margin = core.model_margin(self.models or core.model_list(client), opts.model)
            src = core.read_source(doc, node, opts, margin)
        except core.PluginError as e:
            show_error(parent_widget, str(e))
            self.finished.emit(None, str(e))
            return False

        def work(w: _Worker) -> Any:
            def cb(fraction: float, msg: str) -> bool:
                w.progressed.emit(fraction, msg)
                return not w.cancel_requested
            def got_job(job: str) -> None:
                w.job = job
                if w.cancel_requested:
                    self._cancel_job(client, job)
            return core.run_job(client, src, opts, cb, got_job)

        w = _Worker(work)
        self.worker = w
        w.progressed.connect(self.progress)

        def ok(result: Any) -> None:
            try:   # still busy while writing: making the mask spins the event loop
                info = core.write_result(src, opts, result)
            except core.PluginError as e:
                self.worker = None
                show_error(parent_widget, str(e))
                self.finished.emit(None, str(e))
                return
            self.worker = None
            self.finished.emit(info, "")

        def fail(msg: str, cancelled: bool) -> None:
            self.worker = None
            if cancelled:
                self.finished.emit(None, "")
                return
            if "reach the engine" in msg or "stopped" in msg:
                self.client = None   # connect afresh next time (the engine may restart)
            show_error(parent_widget, msg)
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
            except Exception:
                pass   # already finished or gone: the wait loop reports what happened
        threading.Thread(target=go, daemon=True).start()


class EnhanceDocker(DockWidget):
    instances: list = []

    def __init__(self):
        super().__init__()
        self.setWindowTitle(TITLE)
        self.setObjectName("enhancelayer_docker")
        EnhanceDocker.instances.append(self)
        self.ctl = Controller(self)
        self.ctl.progress.connect(self._on_progress)
        self.ctl.finished.connect(self._on_finished)
        opts = core.load_options()

        root = QWidget(self)
        v = QVBoxLayout(root)
        form = QFormLayout()
        row = QHBoxLayout()
        self.model = QComboBox()
        self.model.setObjectName("model")
        self.model.setToolTip("Models come from the EnhanceLayer engine, grouped by task")
        self.refresh = QPushButton("⟳")
        self.refresh.setToolTip("Reload the model list from the engine")
        self.refresh.setFixedWidth(28)
        self.refresh.clicked.connect(self.reload_models)
        row.addWidget(self.model, 1)
        row.addWidget(self.refresh)
        form.addRow("Model", row)
        self._fill_models([{"id": opts.model, "task": "upscale", "title": opts.model}], opts.model)

        self.strength = self._slider(opts.strength, "strength")
        form.addRow("Strength", self.strength[0])
        self.grain = self._slider(opts.grain, "grain")
        form.addRow("Grain", self.grain[0])
        self.scale = QSpinBox()
        self.scale.setObjectName("scale")
        self.scale.setRange(1, 4)
        self.scale.setSuffix(" ×")
        self.scale.setValue(opts.scale)
        self.scale.setToolTip("1 × keeps the document size; more resizes the document with "
                              "Krita's resampling and places the enhanced layer on top")
        form.addRow("Scale", self.scale)
        self.output = QComboBox()
        self.output.setObjectName("output")
        for key, title in OUTPUT_TITLES:
            self.output.addItem(title, key)
        self.output.setCurrentIndex(max(0, [k for k, _ in OUTPUT_TITLES].index(opts.output)))
        form.addRow("Output", self.output)
        v.addLayout(form)
        self.keep_color = QCheckBox("Keep colour (detail only)")
        self.keep_color.setChecked(opts.keep_color)
        self.faces = QCheckBox("Protect faces")
        self.faces.setChecked("faces" in opts.protect)
        self.text = QCheckBox("Protect text")
        self.text.setChecked("text" in opts.protect)
        self.review = QCheckBox("Add review map (hidden layer)")
        self.review.setChecked(opts.review)
        for w in (self.keep_color, self.faces, self.text, self.review):
            v.addWidget(w)
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
        buttons.addWidget(self.go, 1)
        buttons.addWidget(self.stop)
        v.addLayout(buttons)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        v.addWidget(self.status)
        v.addStretch(1)
        self.setWidget(root)
        self._models_loaded = False
        QTimer.singleShot(1500, self._first_load)

    def _slider(self, value: int, name: str) -> tuple:
        box = QWidget()
        h = QHBoxLayout(box)
        h.setContentsMargins(0, 0, 0, 0)
        s = QSlider(Qt.Horizontal)
        s.setObjectName(name)
        s.setRange(0, 100)
        s.setValue(value)
        lab = QLabel(f"{value}%")
        lab.setMinimumWidth(36)
        s.valueChanged.connect(lambda x: lab.setText(f"{x}%"))
        h.addWidget(s, 1)
        h.addWidget(lab)
        return box, s

    # ---- models
    def _first_load(self) -> None:
        if not self._models_loaded:
            self.reload_models()

    def reload_models(self) -> None:
        self.status.setText("Asking the engine for its models…")
        self.refresh.setEnabled(False)
        self.ctl.load_models(self._models_arrived)

    def _models_arrived(self, models: list, error: str) -> None:
        self.refresh.setEnabled(True)
        if error:
            self.status.setText(error)
            return
        self._models_loaded = True
        self._fill_models(models, self.current_model() or core.load_options().model)
        self.status.setText(f"{sum(1 for m in models if m.get('installed', True))} models ready")

    def _fill_models(self, models: list, selected: str) -> None:
        store = QStandardItemModel(self.model)
        groups: dict = {}
        for m in models:
            groups.setdefault(m.get("task", "other"), []).append(m)
        pick = -1
        for task in list(TASK_TITLES) + [t for t in groups if t not in TASK_TITLES]:
            if task not in groups:
                continue
            head = QStandardItem(f"— {TASK_TITLES.get(task, task.title())} —")
            head.setFlags(Qt.NoItemFlags)
            store.appendRow(head)
            for m in groups[task]:
                installed = m.get("installed", True)
                it = QStandardItem(m["id"] + ("" if installed else "  (not imported)"))
                it.setData(m["id"], Qt.UserRole)
                it.setToolTip(m.get("title", m["id"]))
                if not installed:
                    it.setFlags(Qt.NoItemFlags)
                store.appendRow(it)
                if m["id"] == selected or (pick < 0 and installed and selected not in
                                           [x["id"] for x in models]):
                    pick = store.rowCount() - 1
        self.model.setModel(store)
        if pick >= 0:
            self.model.setCurrentIndex(pick)

    def current_model(self) -> str:
        return self.model.currentData(Qt.UserRole) or ""

    # ---- run
    def options(self) -> core.Options:
        protect = tuple(p for p, box in (("faces", self.faces), ("text", self.text)) if box.isChecked())
        return core.Options(model=self.current_model() or "photo-x2",
                            strength=self.strength[1].value(), grain=self.grain[1].value(),
                            keep_color=self.keep_color.isChecked(), scale=self.scale.value(),
                            output=self.output.currentData(), protect=protect,
                            review=self.review.isChecked())

    def start(self) -> None:
        if self.ctl.busy():
            return
        self.go.setEnabled(False)
        self.stop.setEnabled(True)
        self.bar.setValue(0)
        self.bar.setFormat("Sending…")
        if not self.ctl.start(self.options(), self):
            self._idle()

    def _on_progress(self, fraction: float, msg: str) -> None:
        self.bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.bar.setFormat(f"{msg or 'Enhancing'} — %p%")

    def _on_finished(self, info: Any, error: str) -> None:
        self._idle()
        if info:
            self.bar.setValue(1000)
            self.bar.setFormat("Done")
            self.status.setText(f"Added layer “{info['name']}”")
        elif not error:
            self.bar.setFormat("Cancelled")
        else:
            self.bar.setFormat("Failed")

    def _idle(self) -> None:
        self.go.setEnabled(True)
        self.stop.setEnabled(False)

    def canvasChanged(self, canvas: Any) -> None:  # noqa: N802 - Krita API
        pass
