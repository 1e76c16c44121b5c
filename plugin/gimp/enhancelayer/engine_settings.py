"""GIMP's engine settings: Filters › Enhance › AI Enhance Engine Settings… (procedure
``python-fu-enhancelayer-engine``), the same choices as Krita's ⚙ dialog: This computer or a
studio engine (URL, token, certificate fingerprint or CA file), saved in GIMP's profile as
``enhancelayer-engine.json`` (0600: it holds a token); on OK the connection is tested and the
result said in the same words as Krita's. ``ENHANCELAYER_URL`` & co. in the environment still
win over the file (scripts, CI).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

if TYPE_CHECKING:
    import plugin.client as ec
else:
    import enhancelayer_client as ec

PROC_ENGINE = "python-fu-enhancelayer-engine"
FILE = "enhancelayer-engine.json"
ENV = {"url": "ENHANCELAYER_URL", "token": "ENHANCELAYER_TOKEN", "fingerprint": "ENHANCELAYER_FINGERPRINT",
       "cafile": "ENHANCELAYER_CAFILE"}


def settings_path() -> str:
    return os.path.join(Gimp.directory(), FILE)


def current() -> Any:
    """The engine to use: the environment's URL when set, else the saved settings."""
    if os.environ.get(ENV["url"]):
        return ec.studio.EngineSettings.from_values({k: os.environ.get(v, "") for k, v in ENV.items()})
    return ec.studio.EngineSettings.from_values(ec.studio.load_json(settings_path()) or {})


def client(start: bool = True) -> Any:
    """The client for :func:`current` (a studio engine as configured, checks or not: settings
    written by hand keep working as before)."""
    return current().client(start, check=False)


def add_arguments(p: Any) -> None:
    rw = GObject.ParamFlags.READWRITE
    saved = current()
    modes = Gimp.Choice.new()
    for i, (key, title) in enumerate(ec.studio.MODES):
        modes.add(key, i, title, "")
    p.add_choice_argument("engine-mode", "_Engine", "This computer, or a studio engine on another machine",
                          modes, saved.mode, rw)
    for key, label, help_text in ec.studio.FIELDS:
        p.add_string_argument(f"engine-{key}", label, help_text, getattr(saved, key), rw)


def run(procedure: Any, config: Any, _data: Any) -> Any:
    interactive = config.get_property("run-mode") == Gimp.RunMode.INTERACTIVE
    if interactive:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi
        GimpUi.init(PROC_ENGINE)
        dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title="AI Enhance · Engine settings")
        dialog.fill(None)
        ok = dialog.run()
        dialog.destroy()
        if not ok:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    s = ec.studio.EngineSettings(str(config.get_property("engine-mode")),
                                 *(str(config.get_property(f"engine-{k}") or "").strip()
                                   for k, _l, _h in ec.studio.FIELDS))
    bad = s.problems()
    if bad:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(" ".join(bad)))
    try:
        ec.studio.save_json(settings_path(), s)
    except OSError as e:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(f"Could not save the engine settings: {e}"))
    ok, line, details = ec.studio.try_connection(s)
    said = f"Engine settings saved. {line}" if ok else f"Engine settings saved, but the test failed: {line}"
    if details:
        said += f"\n\nDetails: {details}"
    Gimp.message(said)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def create(plugin: Any, name: str) -> Any:
    p = Gimp.Procedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run, None)
    p.set_menu_label("AI Enhance Engine Settings…")
    p.add_menu_path("<Image>/Filters/Enhance")
    p.set_documentation("Choose the engine AI Enhance uses: this computer or a studio engine",
                        "This computer starts the local engine when needed. A studio engine runs on another "
                        "machine: give its https URL, your token and its certificate fingerprint (printed by "
                        "`enhancelayer serve --init-tls`). The connection is tested when you press OK.", name)
    p.set_attribution("EnhanceLayer", "EnhanceLayer contributors", "2026")
    p.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode, Gimp.RunMode.NONINTERACTIVE,
                        GObject.ParamFlags.READWRITE)
    add_arguments(p)
    return p
