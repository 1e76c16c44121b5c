"""Widgets: the "AI Enhance" docker, the run controller (HTTP wait on a QThread), messages.

All Krita document work goes through ``core`` on the GUI thread; the worker thread only
talks HTTP, so the UI stays alive and Cancel works while the engine runs. The docker's
option widgets are built from the engine's catalog (the option rows the chosen model's task
takes), so an option the engine adds shows up here without editing this file.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Optional

from krita import DockWidget, Krita
from PyQt5.QtCore import QObject, Qt, QThread, QTimer, pyqtSignal
from PyQt5.QtGui import QStandardItem, QStandardItemModel
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import core
from .core import catalog, options, output

TITLE = "AI Enhance"


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

    def __init__(self, fn: Callable[[_Worker], Any]):
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
        except Exception as e:  # noqa: BLE001 - a bug: still a message, never a silent failure
            self.failed.emit(f"Unexpected error in EnhanceLayer: {e!r}. Please report it.", False)


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

    def busy(self) -> bool:
        return self.worker is not None

    def get_client(self) -> Any:
        if self.client is None:
            self.client = core.connect(*_engine_settings())
        return self.client

    def load_catalog(self, done: Callable[[Optional[dict], str], None]) -> None:
        """Ask the engine for its catalog off the GUI thread; ``done(catalog or None, error)``."""
        def work(_w: _Worker) -> dict:
            return core.fetch_catalog(self.get_client())
        w = _Worker(work)

        def ok(cat: dict) -> None:
            self.catalog = cat
            done(cat, "")

        w.succeeded.connect(ok)
        w.failed.connect(lambda msg, _c: done(None, msg))
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
            client = self.get_client()
            if self.catalog is None:
                self.catalog = core.fetch_catalog(client)
            cat = self.catalog
            plan = core.make_plan(cat, request if request is not None else core.load_request(cat))
            src = core.read_source(doc, node, plan)
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
            return core.run_job(client, src, plan, cb, got_job)

        w = _Worker(work)
        self.worker = w
        w.progressed.connect(self.progress)

        def ok(result: Any) -> None:
            try:   # still busy while writing: making the mask spins the event loop
                info = core.write_result(src, plan, result)
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
                self.catalog = None
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
            except Exception:  # noqa: BLE001 - already finished or gone: the wait loop reports it
                pass
        threading.Thread(target=go, daemon=True).start()


# ------------------------------------------------------------------------------ option widgets

class OptionControl:
    """The widget(s) of one option row of the engine's table; ``value()`` in wire units."""

    def __init__(self, option: dict, value: Any, changed: Callable[[str, Any], None]):
        self.option = option
        self.name = option["name"]
        self.kind = options.widget_kind(option)
        self._changed = changed
        self.rows: list[tuple[str, QWidget]] = []      # (form label, widget); "" = spanning row
        getattr(self, "_make_" + self.kind)(value)
        help_text = str(option.get("help") or "")
        for _label, w in self.rows:
            w.setToolTip(help_text)

    def _emit(self, *_args: Any) -> None:
        self._changed(self.name, self.value())

    def _make_slider(self, value: Any) -> None:
        lo, hi = options.bounds(self.option)
        box = QWidget()
        h = QHBoxLayout(box)
        h.setContentsMargins(0, 0, 0, 0)
        s = QSlider(Qt.Horizontal)
        s.setObjectName(self.name)
        s.setRange(int(lo or 0), int(hi or 100))
        s.setValue(int(round(float(value if value is not None else (lo or 0)))))
        unit = self.option.get("unit") or ""
        lab = QLabel(f"{s.value()}{unit}")
        lab.setMinimumWidth(36)
        s.valueChanged.connect(lambda x: lab.setText(f"{x}{unit}"))
        s.valueChanged.connect(self._emit)
        h.addWidget(s, 1)
        h.addWidget(lab)
        self.widget: Any = s
        self.rows.append((str(self.option.get("label") or self.name), box))

    def _make_spin(self, value: Any) -> None:
        lo, hi = options.bounds(self.option)
        spin: Any
        if self.option.get("type") == "int":
            spin = QSpinBox()
            spin.setRange(int(lo if lo is not None else -2**31), int(hi if hi is not None else 2**31 - 1))
        else:
            spin = QDoubleSpinBox()
            spin.setDecimals(options.decimals(self.option))
            spin.setSingleStep(options.step(self.option))
            spin.setRange(lo if lo is not None else -1e9, hi if hi is not None else 1e9)
        spin.setObjectName(self.name)
        if self.option.get("unit"):
            spin.setSuffix(f" {self.option['unit']}")
        if value is not None:
            spin.setValue(value)
        spin.valueChanged.connect(self._emit)
        self.widget = spin
        self.rows.append((str(self.option.get("label") or self.name), spin))

    def _make_check(self, value: Any) -> None:
        box = QCheckBox(options.label(self.option))
        box.setObjectName(self.name)
        box.setChecked(bool(value))
        box.toggled.connect(self._emit)
        self.widget = box
        self.rows.append(("", box))

    def _make_combo(self, value: Any) -> None:
        combo = QComboBox()
        combo.setObjectName(self.name)
        for c in self.option.get("choices") or []:
            combo.addItem(str(c), c)
        i = combo.findData(value)
        combo.setCurrentIndex(max(0, i))
        combo.currentIndexChanged.connect(self._emit)
        self.widget = combo
        self.rows.append((str(self.option.get("label") or self.name), combo))

    def _make_checks(self, value: Any) -> None:
        self.widget = {}
        for c in self.option.get("choices") or []:
            box = QCheckBox(options.choice_label(self.option, str(c)))
            box.setObjectName(f"{self.name}-{c}")
            box.setChecked(c in (value or ()))
            box.toggled.connect(self._emit)
            self.widget[c] = box
            self.rows.append(("", box))

    def value(self) -> Any:
        if self.kind == "checks":
            return [c for c, box in self.widget.items() if box.isChecked()]
        if self.kind == "check":
            return self.widget.isChecked()
        if self.kind == "combo":
            return self.widget.currentData()
        return options.wire_value(self.option, self.widget.value())


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
        self.catalog: dict = core.snapshot_catalog() or {"models": [], "options": []}
        remembered = core.load_request(self.catalog)
        self.values: dict[str, Any] = dict(remembered.values)
        self.controls: dict[str, OptionControl] = {}

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
        v.addLayout(form)
        self.options_box = QWidget()
        self.options_form = QFormLayout(self.options_box)
        self.options_form.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.options_box)
        host = QFormLayout()
        self.scale = QSpinBox()
        self.scale.setObjectName("scale")
        self.scale.setSuffix(" ×")
        self.scale.setToolTip("1 × keeps the document size; more resizes the document with "
                              "Krita's resampling and places the enhanced layer on top")
        host.addRow("Scale", self.scale)
        self.output = QComboBox()
        self.output.setObjectName("output")
        for key in output.OUTPUT_MODES:
            self.output.addItem(output.OUTPUT_TITLES[key], key)
        self.output.setCurrentIndex(max(0, self.output.findData(remembered.output)))
        host.addRow("Output", self.output)
        v.addLayout(host)
        self._set_scale_range(remembered.scale)
        self.model.currentIndexChanged.connect(self._model_changed)
        self._fill_models(self.catalog, remembered.model)
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
        self.catalog = cat
        remembered = core.load_request(cat)
        for name, value in remembered.values.items():
            self.values.setdefault(name, value)
        self._set_scale_range(self.scale.value())
        self._fill_models(cat, self.current_model() or remembered.model)
        models = catalog.models_of(cat)
        self.status.setText(f"{sum(1 for m in models if catalog.is_installed(m))} models ready")

    def _set_scale_range(self, value: int) -> None:
        lo, hi = options.scale_range(self.catalog)
        self.scale.setRange(lo, hi)
        self.scale.setValue(max(lo, min(hi, int(value))))

    def _fill_models(self, cat: dict, selected: str) -> None:
        rows = catalog.models_of(cat) or [{"id": selected, "task": "upscale", "title": selected}]
        ids = [m["id"] for m in rows]
        store = QStandardItemModel(self.model)
        pick = -1
        for _group, title, members in catalog.groups({"models": rows}):
            head = QStandardItem(f"— {title} —")
            head.setFlags(Qt.NoItemFlags)
            store.appendRow(head)
            for m in members:
                installed = catalog.is_installed(m)
                it = QStandardItem(catalog.model_label(m))
                it.setData(m["id"], Qt.UserRole)
                it.setToolTip(str(m.get("notes") or m.get("title") or m["id"]))   # GIMP's help text too
                if not installed:
                    it.setFlags(Qt.NoItemFlags)
                store.appendRow(it)
                if m["id"] == selected or (pick < 0 and installed and selected not in ids):
                    pick = store.rowCount() - 1
        self.model.blockSignals(True)
        self.model.setModel(store)
        if pick >= 0:
            self.model.setCurrentIndex(pick)
        self.model.blockSignals(False)
        self._model_changed()

    def current_model(self) -> str:
        return self.model.currentData(Qt.UserRole) or ""

    # ---- options
    def _model_changed(self, *_args: Any) -> None:
        """Show the option widgets of the chosen model's task (from the engine's catalog)."""
        row = catalog.find_model(self.catalog, self.current_model())
        shown = options.shown_options(self.catalog, row) if row is not None else []
        old = self.options_box
        self.options_box = QWidget()
        self.options_form = QFormLayout(self.options_box)
        self.options_form.setContentsMargins(0, 0, 0, 0)
        self.controls = {}
        for opt in shown:
            value = self.values.get(opt["name"], options.default(opt))
            control = OptionControl(opt, value, self._value_changed)
            self.controls[opt["name"]] = control
            self.values[opt["name"]] = control.value()
            for text, widget in control.rows:
                if text:
                    self.options_form.addRow(text, widget)
                else:
                    self.options_form.addRow(widget)
        layout = old.parentWidget().layout() if old.parentWidget() is not None else None
        if layout is not None:
            layout.replaceWidget(old, self.options_box)
        old.hide()
        old.deleteLater()

    def _value_changed(self, name: str, value: Any) -> None:
        self.values[name] = value

    def option_value(self, name: str) -> Any:
        """The value of an option's widget (None when the chosen model does not show it)."""
        control = self.controls.get(name)
        return control.value() if control is not None else None

    # ---- run
    def request(self) -> core.Request:
        return core.Request(model=self.current_model() or catalog.default_model(self.catalog),
                            scale=self.scale.value(), output=self.output.currentData(),
                            values=dict(self.values))

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
            self.status.setText(output.done_message(info["name"], bool(info.get("whole_layer"))))
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
