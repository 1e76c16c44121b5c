"""The Krita plug-in's UI under PyQt6 (Krita 6 is Qt 6), outside Krita.

Krita 5 gives the plug-in PyQt5, Krita 6 PyQt6; ``plugin/krita/enhancelayer/qt.py`` picks
whichever exists and the rest writes scoped enums that both accept. This imports the real
plug-in modules with PyQt5 blocked and a stand-in ``krita`` module, then builds the form, the
docker and the dialog from the engine's real catalog and uses them as a retoucher would
(purpose → model → options → request). The real-Krita behaviour (PyQt5) is tested in
tests/hosts/test_krita.py.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
KRITA_PKG = REPO / "plugin" / "krita" / "enhancelayer"
NAME = "_krita6_enhancelayer"


def _fake_krita(QtWidgets: Any, QtCore: Any) -> types.ModuleType:
    """The part of Krita's Python API the UI modules touch at construction time."""
    mod = types.ModuleType("krita")

    class App(QtCore.QObject):
        def __init__(self) -> None:
            super().__init__()
            self.settings: dict = {}

        def readSetting(self, group: str, key: str, default: str) -> str:  # noqa: N802 - Krita API
            return self.settings.get((group, key), default)

        def writeSetting(self, group: str, key: str, value: str) -> None:  # noqa: N802
            self.settings[(group, key)] = value

        def activeDocument(self) -> None:  # noqa: N802
            return None

        def activeWindow(self) -> None:  # noqa: N802
            return None

    app = App()

    class Krita:
        @staticmethod
        def instance() -> Any:
            return None          # the package __init__ registers nothing (no running Krita)

    mod.Krita = Krita                      # type: ignore[attr-defined]
    mod.DockWidget = QtWidgets.QDockWidget  # type: ignore[attr-defined]
    mod.Extension = QtCore.QObject          # type: ignore[attr-defined]
    mod._app = app                          # type: ignore[attr-defined]
    return mod


@pytest.fixture(scope="module")
def qt6(tmp_path_factory: pytest.TempPathFactory) -> Any:
    old_platform = os.environ.get("QT_QPA_PLATFORM")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"        # no display needed (CI has none)
    saved = {k: sys.modules.get(k) for k in ("PyQt5", "krita")}
    sys.modules["PyQt5"] = None             # type: ignore[assignment]  # as in Krita 6: no PyQt5
    from PyQt6 import QtCore, QtWidgets
    qapp = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    krita = _fake_krita(QtWidgets, QtCore)
    sys.modules["krita"] = krita
    # the vendored client, as install_krita.py puts it beside the plug-in
    from tests.unit.test_plugin_core import _load_package, ec
    sys.modules[f"{NAME}.enhancelayer_client"] = ec
    # its submodules too: importing them afresh under this name would rebind ec.catalog & co.
    # for every other test
    for full in [k for k in sys.modules if k.startswith(ec.__name__ + ".")]:
        sys.modules[f"{NAME}.enhancelayer_client{full[len(ec.__name__):]}"] = sys.modules[full]
    _load_package(NAME, KRITA_PKG)
    # Krita.instance() is the fake app from here on (the UI reads settings through it)
    krita.Krita.instance = staticmethod(lambda: krita._app)
    mods = types.SimpleNamespace(qt=importlib.import_module(f"{NAME}.qt"),
                                 form=importlib.import_module(f"{NAME}.form"),
                                 ui=importlib.import_module(f"{NAME}.ui"),
                                 extension=importlib.import_module(f"{NAME}.extension"),
                                 core=importlib.import_module(f"{NAME}.core"), app=qapp)
    yield mods
    for k in [k for k in sys.modules if k.startswith(NAME)]:
        del sys.modules[k]
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v
    if old_platform is None:
        os.environ.pop("QT_QPA_PLATFORM", None)
    else:
        os.environ["QT_QPA_PLATFORM"] = old_platform


@pytest.fixture(scope="module")
def catalog() -> dict:
    from engine.tasks import published
    return published()


def test_the_plugin_runs_on_pyqt6(qt6: Any) -> None:
    assert qt6.qt.QT6 is True
    assert qt6.qt.QtCore.__name__.startswith("PyQt6")


def test_form_task_first_under_qt6(qt6: Any, catalog: dict) -> None:
    request = qt6.core.Request(model="jpeg-clean-1", scale=1, output="masked", values={})
    form = qt6.form.EnhanceForm(catalog, request)
    purposes = [form.purpose.itemText(i) for i in range(form.purpose.count())]
    assert purposes[:4] == ["Enlarge", "Reduce noise", "Remove JPEG blocks", "Sharpen / fix blur"]
    assert form.purpose.currentText() == "Remove JPEG blocks" and form.current_model() == "jpeg-clean-1"
    assert form.model.currentText() == "Light (level 1)"
    assert "sensitivity" not in form.controls and "strength" in form.controls
    assert form.select_model("restore-dust")
    assert form.purpose.currentText() == "Repair dust & scratches" and "sensitivity" in form.controls
    assert form.option_value("strength") == 100            # a repair starts at full strength (was 60)
    form.controls["sensitivity"].widget.setValue(0.8)
    form.set_region((1000, 1000))
    assert form.estimate.text().startswith("Takes ")
    form.scale.setValue(1)
    assert form.select_model("photo-x2") and "detail pass" in form.scale_note.text()
    req = form.request()
    assert req.model == "photo-x2" and req.values["sensitivity"] == pytest.approx(0.8)
    assert form.option_value("strength") == 60 and req.values["strength"] == 60      # back to the table's
    form.controls["strength"].widget.setValue(85)          # chosen by the user: kept across models
    assert form.select_model("descreen") and form.option_value("strength") == 85
    assert req.show_review is True and form.show_review.text() == "Show the review layer"
    form.show_review.setChecked(False)                    # the user's review-visibility setting
    assert form.request().show_review is False
    hidden = qt6.form.EnhanceForm(catalog, qt6.core.Request(model="denoise", show_review=False))
    assert not hidden.show_review.isChecked()


def test_docker_and_dialog_construct_under_qt6(qt6: Any, catalog: dict) -> None:
    docker = qt6.ui.EnhanceDocker()
    assert docker.windowTitle() == "AI Enhance" and docker.go.text() == "Enhance Selection"
    ctl = qt6.ui.Controller()
    ctl.catalog = catalog
    ctl.load_catalog = lambda done: None          # no engine here: the dialog keeps the given catalog
    dlg = qt6.ui.EnhanceDialog(ctl, qt6.core.Request(model="denoise", scale=1, output="masked", values={}))
    assert dlg.form.purpose.currentText() == "Reduce noise"
    ok = dlg.buttons.button(qt6.qt.QDialogButtonBox.StandardButton.Ok)
    assert ok.text() == "Enhance"
    assert qt6.extension.SHORTCUTS[qt6.extension.ACTION_ID] == "Ctrl+Alt+E"


def test_engine_settings_dialog_saves_what_the_user_chose(qt6: Any) -> None:
    """The docker's ⚙ dialog under PyQt6: studio fields only in studio mode, a refusal in plain
    words for settings that cannot work (nothing saved), kritarc keys written on Save, and the
    controller reading them back."""
    panel = importlib.import_module(f"{NAME}.engine_panel")
    core, app = qt6.core, sys.modules["krita"]._app
    app.settings.clear()
    assert core.read_engine_settings().mode == "local"
    dlg = panel.EngineSettingsDialog(core.read_engine_settings())
    assert dlg.mode.currentText() == "This computer" and not dlg.fields["url"].isEnabled()
    dlg.mode.setCurrentIndex(dlg.mode.findData("studio"))
    assert dlg.fields["url"].isEnabled()
    dlg.fields["url"].setText("http://gpu.studio:8443")
    dlg._save()
    assert "needs https://" in dlg.answer.text() and app.settings == {}          # refused, nothing saved
    fp = "SHA256:" + ":".join(["AB"] * 32)
    dlg.fields["url"].setText("https://gpu.studio:8443")
    dlg.fields["token"].setText("tok")
    dlg.fields["fingerprint"].setText(fp)
    dlg._save()
    assert app.settings[("enhancelayer", "engine_mode")] == "studio"
    assert app.settings[("enhancelayer", "engine_fingerprint")] == fp
    back = core.read_engine_settings()
    assert (back.mode, back.url, back.token) == ("studio", "https://gpu.studio:8443", "tok")
    docker = qt6.ui.EnhanceDocker()
    assert docker.engine.toolTip().startswith("Engine settings")
    docker.ctl.settings_changed()
    assert docker.ctl._settings == back and docker.ctl.client is None
    app.settings.clear()
