"""The task-first top of GIMP's "AI Enhance" dialog: What to do → Model, in plain words.

GIMP builds the rest of the dialog from the procedure's arguments (GimpUi.ProcedureDialog);
this part replaces the bare "Model" choice with the same two-step choice the Krita docker
shows, from the same shared core (``catalog.purposes``, ``catalog.choice_label``,
``catalog.model_help``, ``catalog.scale_note``, ``timing.estimate_text``): the engine's
purposes, that purpose's models (not-imported ones shown greyed, with the fix in words), one
sentence about the chosen model, what the scale means for it and the time it will take for
THIS selection. The choice is written to the procedure's ``model`` argument, so scripts,
Filters › Repeat and the greyed-out options keep working as before.

``ENHANCELAYER_DIALOG_REPORT``: a file the chooser rewrites (JSON) with what it shows after
every change, for the GUI tests that drive the dialog with real keys (tests/hosts/test_gimp.py).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import Gtk  # noqa: E402

if TYPE_CHECKING:
    import plugin.client as ec
else:
    import enhancelayer_client as ec

REPORT_ENV = "ENHANCELAYER_DIALOG_REPORT"
Region = Callable[[Optional[dict]], Optional[tuple[int, int, bool]]]   # row -> (w, h, whole layer)


def _combo(mnemonic: str) -> tuple[Gtk.Label, Gtk.ComboBox, Gtk.ListStore]:
    """A combo of (label, id, sensitive) rows; insensitive rows are shown greyed."""
    store = Gtk.ListStore(str, str, bool)
    combo = Gtk.ComboBox.new_with_model(store)
    cell = Gtk.CellRendererText()
    combo.pack_start(cell, True)
    combo.add_attribute(cell, "text", 0)
    combo.add_attribute(cell, "sensitive", 2)
    label = Gtk.Label.new_with_mnemonic(mnemonic)
    label.set_xalign(0.0)
    label.set_mnemonic_widget(combo)
    return label, combo, store


def _note() -> Gtk.Label:
    lab = Gtk.Label(label="", xalign=0.0)
    lab.set_line_wrap(True)
    lab.set_max_width_chars(52)
    return lab


class TaskChooser:
    """The widgets (``self.box``) and their logic; ``config`` is the procedure's config."""

    def __init__(self, catalog: dict, config: Any, region: Region,
                 on_model: Optional[Callable[[Optional[dict]], None]] = None):
        self.catalog, self.config, self.region, self.on_model = catalog, config, region, on_model
        self.purposes = ec.catalog.purposes(catalog)
        self._filling = False
        self.box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        grid = Gtk.Grid()
        grid.set_row_spacing(6)
        grid.set_column_spacing(12)
        plabel, self.purpose, self.purpose_store = _combo("What to _do")
        mlabel, self.model, self.model_store = _combo("_Model")
        for row, (lab, combo) in enumerate(((plabel, self.purpose), (mlabel, self.model))):
            combo.set_hexpand(True)
            grid.attach(lab, 0, row, 1, 1)
            grid.attach(combo, 1, row, 1, 1)
        self.help, self.scale_note, self.estimate = _note(), _note(), _note()
        for w in (grid, self.help, self.scale_note, self.estimate):
            self.box.pack_start(w, False, False, 0)
        for p in self.purposes:
            self.purpose_store.append([ec.catalog.purpose_title(p), p["id"], True])
        current = str(config.get_property("model") or "")
        want = ec.catalog.purpose_of(catalog, current)
        ids = [p["id"] for p in self.purposes]
        self.purpose.set_active(ids.index(want) if want in ids else 0)
        self._fill_models(current)
        self.purpose.connect("changed", lambda *_: self._fill_models(""))
        self.model.connect("changed", lambda *_: None if self._filling else self._model_changed())
        config.connect("notify::scale", lambda *_: self._hints())
        self.box.show_all()
        self._hints()

    def current_purpose(self) -> dict:
        i = self.purpose.get_active()
        return self.purposes[i] if 0 <= i < len(self.purposes) else {"id": "", "rows": [], "title": ""}

    def current_row(self) -> Optional[dict]:
        rows = self.current_purpose()["rows"]
        i = self.model.get_active()
        return rows[i] if 0 <= i < len(rows) else None

    def _fill_models(self, selected: str) -> None:
        rows = self.current_purpose()["rows"]
        ids = [r["id"] for r in rows]
        if selected not in ids or not ec.catalog.is_installed(rows[ids.index(selected)]):
            selected = ec.catalog.first_runnable(rows)
        self._filling = True           # the refill's own "changed" signals are not choices
        try:
            self.model_store.clear()
            for r in rows:
                self.model_store.append([ec.catalog.choice_label(r), r["id"], ec.catalog.is_installed(r)])
            self.model.set_active(ids.index(selected) if selected in ids else -1)
        finally:
            self._filling = False
        self._model_changed()

    def _model_changed(self) -> None:
        row = self.current_row()
        if row is not None and ec.catalog.is_installed(row):
            self.config.set_property("model", row["id"])
        elif row is not None:                     # a greyed row picked by keys: step back
            self._fill_models("")
            return
        if self.on_model is not None:
            self.on_model(row)
        self.help.set_text(ec.catalog.model_help(row) if row else "")
        self.help.set_tooltip_text(ec.catalog.model_details(row) if row else "")
        self._hints()

    def _hints(self) -> None:
        row = self.current_row()
        note = ec.catalog.scale_note(row, int(self.config.get_property("scale") or 1))
        self.scale_note.set_text(note)
        self.scale_note.set_visible(bool(note))
        got = self.region(row) if row is not None else None
        text = ec.timing.region_estimate(self.catalog, row, got[:2] if got else None, bool(got and got[2]),
                                         tuple(self.current_purpose()["rows"]))
        self.estimate.set_text(text)
        self.estimate.set_visible(bool(text))
        self._report()

    def _option_args(self) -> dict[str, Any]:
        """The option arguments' values as the dialog shows them (for the report)."""
        out: dict[str, Any] = {}
        for opt in ec.options.every_shown_option(self.catalog):
            for name in ec.options.arg_names(opt):
                try:
                    out[name] = self.config.get_property(name)
                except TypeError:          # not registered (an option newer than the plug-in)
                    pass
        return out

    def _report(self) -> None:
        path = os.environ.get(REPORT_ENV)
        if not path:
            return
        row = self.current_row()
        body = {"purposes": [p["title"] for p in self.purposes],
                "purpose": self.current_purpose().get("title", ""),
                "models": [ec.catalog.choice_label(r) for r in self.current_purpose()["rows"]],
                "model": row["id"] if row else "", "config_model": str(self.config.get_property("model") or ""),
                "help": self.help.get_text(), "scale_note": self.scale_note.get_text(),
                "hidden_args": sorted(ec.options.args_not_taken(self.catalog, row)),
                "args": self._option_args(),
                "estimate": self.estimate.get_text()}
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(body, f)
            os.replace(path + ".tmp", path)
        except OSError:
            pass
