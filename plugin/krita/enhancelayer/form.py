"""The settings form, shared by the "AI Enhance" docker and the "Enhance Selection…" dialog.

Task first, as a retoucher thinks: "What to do" (the engine's purposes: Enlarge, Reduce noise,
Repair dust & scratches…), then the model among that purpose's choices in plain words with a
one-sentence description under it, then the options the chosen model's task takes, the host
scale (with what it means for this model) and the output. Everything comes from the engine's
catalog through the shared plug-in core (``catalog.purposes``, ``catalog.choice_label``,
``catalog.model_help``, ``options.shown_options``, ``timing.estimate_text``), so GIMP's dialog
shows the same words and a task the engine adds appears here without editing this file.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from . import core
from .core import catalog, options, output, timing
from .qt import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QStandardItem,
    QStandardItemModel,
    Qt,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)

ROLE = Qt.ItemDataRole.UserRole


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
        s = QSlider(Qt.Orientation.Horizontal)
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


def _hint_label(name: str) -> QLabel:
    lab = QLabel("")
    lab.setObjectName(name)
    lab.setWordWrap(True)
    lab.setTextFormat(Qt.TextFormat.PlainText)
    return lab


class EnhanceForm(QWidget):
    """What to do → model → options → scale → output, and the time estimate."""

    changed = pyqtSignal()          # any choice changed (the estimate may have)

    def __init__(self, cat: dict, request: core.Request, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.catalog = cat
        self.values: dict[str, Any] = dict(request.values)
        self.controls: dict[str, OptionControl] = {}
        self._shown_row: Optional[dict] = None              # the model whose options are shown
        self.region: Optional[tuple[int, int]] = None      # (w, h) the engine would get
        self.whole_layer = False                           # no selection: the whole layer goes
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        self.purpose = QComboBox()
        self.purpose.setObjectName("purpose")
        top.addRow("What to do", self.purpose)
        self.model = QComboBox()
        self.model.setObjectName("model")
        top.addRow("Model", self.model)
        v.addLayout(top)
        self.help = _hint_label("model_help")
        v.addWidget(self.help)
        self.options_box = QWidget()
        self.options_form = QFormLayout(self.options_box)
        self.options_form.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.options_box)
        host = QFormLayout()
        # colorize's colour strokes: a paint layer of the document (shown only for such a task)
        self.hints_layer = QComboBox()
        self.hints_layer.setObjectName("hints_layer")
        self.hints_layer.setToolTip("The layer with your colour strokes: paint a few strokes of colour on a new "
                                    "paint layer; the colours spread over the photo along its edges")
        self._hints_label = QLabel("Colour hints")
        host.addRow(self._hints_label, self.hints_layer)
        self._wanted_hints = request.hints_layer
        self.scale = QSpinBox()
        self.scale.setObjectName("scale")
        self.scale.setSuffix(" ×")
        self.scale.setToolTip("1 × keeps the document size; more resizes the document with "
                              "Krita's resampling and places the enhanced layer on top")
        self._scale_label = QLabel("Scale")
        host.addRow(self._scale_label, self.scale)
        self.output = QComboBox()
        self.output.setObjectName("output")
        for key in output.OUTPUT_MODES:
            self.output.addItem(output.OUTPUT_TITLES[key], key)
        self.output.setCurrentIndex(max(0, self.output.findData(request.output)))
        host.addRow("Output", self.output)
        self.show_review = QCheckBox(output.SHOW_REVIEW_LABEL)
        self.show_review.setObjectName("show_review")
        self.show_review.setToolTip(output.SHOW_REVIEW_HELP)
        self.show_review.setChecked(bool(request.show_review))
        host.addRow("", self.show_review)
        v.addLayout(host)
        self.scale_note = _hint_label("scale_note")
        v.addWidget(self.scale_note)
        self.estimate = _hint_label("estimate")
        v.addWidget(self.estimate)
        self._set_scale_range(request.scale)
        self.purpose.currentIndexChanged.connect(self._purpose_changed)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.scale.valueChanged.connect(self._hints)
        self.output.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.set_catalog(cat, request.model)

    # ---- catalog
    def set_catalog(self, cat: dict, selected: str = "") -> None:
        """Fill the lists from ``cat``, keeping ``selected`` (default: the current model)."""
        selected = selected or self.current_model()
        self.catalog = cat
        for name, value in core.load_request(cat).values.items():
            self.values.setdefault(name, value)
        self._set_scale_range(self.scale.value())
        self._purposes = catalog.purposes(cat)
        want = catalog.purpose_of(cat, selected) if selected else ""
        self.purpose.blockSignals(True)
        self.purpose.clear()
        for p in self._purposes:
            self.purpose.addItem(catalog.purpose_title(p), p["id"])
            self.purpose.setItemData(self.purpose.count() - 1, p["description"], Qt.ItemDataRole.ToolTipRole)
        i = self.purpose.findData(want) if want else -1
        self.purpose.setCurrentIndex(i if i >= 0 else 0)
        self.purpose.blockSignals(False)
        self._fill_models(selected)

    def _set_scale_range(self, value: int) -> None:
        lo, hi = options.scale_range(self.catalog)
        self.scale.setRange(lo, hi)
        self.scale.setValue(max(lo, min(hi, int(value))))

    def current_purpose(self) -> dict:
        pid = self.purpose.currentData()
        return next((p for p in self._purposes if p["id"] == pid), {"id": "", "rows": [], "description": ""})

    def _purpose_changed(self, *_args: Any) -> None:
        self._fill_models("")

    def _fill_models(self, selected: str) -> None:
        rows = self.current_purpose()["rows"]
        ids = [r["id"] for r in rows]
        if selected not in ids:
            selected = catalog.first_runnable(rows)
        store = QStandardItemModel(self.model)
        for r in rows:
            it = QStandardItem(catalog.choice_label(r))
            it.setData(r["id"], ROLE)
            it.setToolTip(f"{catalog.model_help(r)}\n{catalog.model_details(r)}".strip())
            if not catalog.is_installed(r):
                it.setFlags(Qt.ItemFlag.NoItemFlags)     # shown with the fix, not runnable
            store.appendRow(it)
        self.model.blockSignals(True)
        self.model.setModel(store)
        if selected in ids:
            self.model.setCurrentIndex(ids.index(selected))
        self.model.blockSignals(False)
        self._model_changed()

    def select_model(self, model_id: str) -> bool:
        """Choose ``model_id`` as a user would: its purpose first, then the model."""
        pid = catalog.purpose_of(self.catalog, model_id)
        i = self.purpose.findData(pid)
        if i < 0:
            return False
        self.purpose.setCurrentIndex(i)
        j = self.model.findData(model_id, ROLE)
        if j < 0:
            return False
        self.model.setCurrentIndex(j)
        return True

    def current_model(self) -> str:
        return str(self.model.currentData(ROLE) or "")

    def current_row(self) -> Optional[dict]:
        return catalog.find_model(self.catalog, self.current_model())

    # ---- options
    def _model_changed(self, *_args: Any) -> None:
        """Show the option widgets of the chosen model's task (from the engine's catalog)."""
        row = self.current_row()
        # an option still at the last model's default moves to this one's (a repair starts at 100 %)
        self.values = options.follow_model(self.catalog, self._shown_row, row, self.values)
        self._shown_row = row
        shown = options.shown_options(self.catalog, row) if row is not None else []
        old = self.options_box
        self.options_box = QWidget()
        self.options_form = QFormLayout(self.options_box)
        self.options_form.setContentsMargins(0, 0, 0, 0)
        self.controls = {}
        for opt in shown:
            value = self.values.get(opt["name"], options.default(opt, row))
            control = OptionControl(opt, value, self._value_changed)
            self.controls[opt["name"]] = control
            self.values[opt["name"]] = control.value()
            for text, widget in control.rows:
                if text:
                    self.options_form.addRow(text, widget)
                else:
                    self.options_form.addRow(widget)
        layout = self.layout()
        if layout is not None:
            layout.replaceWidget(old, self.options_box)
        old.hide()
        old.deleteLater()
        # a repair task always keeps the size: no Scale row for it, and the value goes back to 1
        scaled = options.takes_scale(row)
        if not scaled:
            self.scale.setValue(1)
        self.scale.setVisible(scaled)
        self._scale_label.setVisible(scaled)
        needs_hints = options.takes_hints(row)
        self.hints_layer.setVisible(needs_hints)
        self._hints_label.setVisible(needs_hints)
        self.help.setText(catalog.model_help(row) if row is not None else "")
        self.help.setToolTip(catalog.model_details(row) if row is not None else "")
        self._hints()

    def _value_changed(self, name: str, value: Any) -> None:
        self.values[name] = value

    def option_value(self, name: str) -> Any:
        """The value of an option's widget (None when the chosen model does not show it)."""
        control = self.controls.get(name)
        return control.value() if control is not None else None

    def set_layers(self, layers: list[tuple[str, str]]) -> None:
        """The document's paint layers (name, id) for the "Colour hints" choice, keeping the
        current choice (or the one last used) when it is still there."""
        keep = self.hints_layer.currentData() or self._wanted_hints
        if [(self.hints_layer.itemText(i), self.hints_layer.itemData(i)) for i in range(self.hints_layer.count())] \
                == list(layers):
            return
        self.hints_layer.blockSignals(True)
        self.hints_layer.clear()
        for name, uid in layers:
            self.hints_layer.addItem(name, uid)
        i = self.hints_layer.findData(keep) if keep else -1
        self.hints_layer.setCurrentIndex(i if i >= 0 else (0 if layers else -1))
        self.hints_layer.blockSignals(False)

    # ---- hints
    def set_region(self, region: Optional[tuple[int, int]], whole_layer: bool = False) -> None:
        """The size the engine would get now (selection + margin) and whether there is no
        selection (then the whole layer is enhanced, and the form says so); updates the hints."""
        if (region, whole_layer) != (self.region, self.whole_layer):
            self.region, self.whole_layer = region, whole_layer
            self._hints()

    def _hints(self, *_args: Any) -> None:
        row = self.current_row()
        note = catalog.scale_note(row, self.scale.value())
        self.scale_note.setText(note)
        self.scale_note.setVisible(bool(note))
        text = timing.region_estimate(self.catalog, row, self.region, self.whole_layer,
                                      tuple(self.current_purpose()["rows"]))
        self.estimate.setText(text)
        self.estimate.setVisible(bool(text))
        self.changed.emit()

    # ---- the request
    def request(self) -> core.Request:
        return core.Request(model=self.current_model() or catalog.default_model(self.catalog),
                            scale=self.scale.value(), output=self.output.currentData(),
                            values=dict(self.values), show_review=self.show_review.isChecked(),
                            hints_layer=str(self.hints_layer.currentData() or ""))
