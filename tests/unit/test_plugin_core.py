"""The plug-in core (plugin/client: catalog, options, geometry, pixels, output) without a host.

Fast, plain pytest: the core is stdlib-only Python that both plug-ins vendor as
``enhancelayer_client``. The host modules are imported too (Krita's ``core`` needs no Krita at
import time; GIMP's plug-in gets a stand-in ``gi``) to prove that both take the margin, the
output-mode ids and the request checks from the one core instead of their own copies. The
real-host behaviour is tested in tests/hosts/.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import struct
import sys
import types
from array import array
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "plugin" / "client"
KRITA_PKG = REPO / "plugin" / "krita" / "enhancelayer"
GIMP_FILE = REPO / "plugin" / "gimp" / "enhancelayer" / "enhancelayer.py"


def _load_package(name: str, folder: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _client() -> types.ModuleType:
    """plugin/client under the name the installers give it (shared with tests/server)."""
    return sys.modules.get("enhancelayer_client") or _load_package("enhancelayer_client", CLIENT_DIR)


ec = _client()
catalog, options, geometry, pixels, output = ec.catalog, ec.options, ec.geometry, ec.pixels, ec.output


@pytest.fixture(scope="module")
def krita_core() -> types.ModuleType:
    """The Krita plug-in's ``core`` as installed: its vendored client is this client."""
    sys.modules["_krita_enhancelayer.enhancelayer_client"] = ec
    # its submodules too: an import of one that is not aliased loads the file a second time and
    # rebinds the package's attribute (ec.errors), so the server tests' pytest.raises(elc.errors...)
    # would stop matching what the client raises
    for full in [k for k in sys.modules if k.startswith(ec.__name__ + ".")]:
        sys.modules["_krita_enhancelayer.enhancelayer_client" + full[len(ec.__name__):]] = sys.modules[full]
    _load_package("_krita_enhancelayer", KRITA_PKG)        # no krita module here: registers nothing
    import importlib
    return importlib.import_module("_krita_enhancelayer.core")


@pytest.fixture(scope="module")
def gimp_plugin() -> types.ModuleType:
    """The GIMP plug-in module, with a stand-in ``gi`` (its module body only defines things)."""
    gi = types.ModuleType("gi")
    gi.require_version = lambda _ns, _v: None                                # type: ignore[attr-defined]
    repo = types.ModuleType("gi.repository")
    for ns in ("Gegl", "GLib", "GObject"):
        setattr(repo, ns, types.SimpleNamespace())
    repo.Gimp = types.SimpleNamespace(PlugIn=object)                         # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("gi", "gi.repository")}
    path = list(sys.path)
    sys.modules.update({"gi": gi, "gi.repository": repo})
    try:
        spec = importlib.util.spec_from_file_location("_gimp_enhancelayer", GIMP_FILE)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path[:] = path
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


def _opt(name: str, kind: str, default: Any, **kw: Any) -> dict:
    row = {"name": name, "type": kind, "default": default, "minimum": None, "maximum": None, "choices": None,
           "nullable": False, "unit": "", "label": name.replace("_", " ").title(), "help": f"{name} help",
           "advanced": False, "tasks": []}
    row.update(kw)
    return row


BLEND = ["strength", "grain", "keep_color", "scale", "feather", "review", "protect", "tile"]
CATALOG = {
    "models": [
        {"id": "photo-x4", "task": "upscale", "title": "Photo 4x", "scale": 4, "margin": 80, "receptive_field": 80,
         "installed": True, "options": BLEND},
        {"id": "jpeg-clean-1", "task": "jpeg", "title": "JPEG 1", "scale": 1, "margin": 8, "installed": True,
         "options": BLEND},
        {"id": "old-engine", "task": "upscale", "title": "Old row", "scale": 2, "receptive_field": 20,
         "installed": True, "options": BLEND},
        {"id": "bare", "task": "mystery-group", "title": "bare", "scale": 1, "installed": True, "options": BLEND},
        {"id": "restore-dust", "task": "restore", "title": "Dust", "scale": 1, "margin": 32, "installed": True,
         "options": [*(o for o in BLEND if o != "scale"), "sensitivity"],      # a repair keeps the size
         "defaults": {"strength": 100.0}},                                     # ...and starts at full strength
        {"id": "not-here", "task": "denoise", "title": "Missing", "scale": 1, "margin": 32, "installed": False,
         "options": BLEND},
        {"id": "identity", "task": "identity", "title": "Identity", "scale": 1, "margin": 0, "installed": True,
         "options": []},
    ],
    "options": [
        _opt("strength", "float", 60.0, minimum=0, maximum=100, unit="%"),
        _opt("grain", "float", 0.0, minimum=0, maximum=100, unit="%"),
        _opt("keep_color", "bool", False),
        _opt("scale", "float", None, minimum=0, maximum=16, nullable=True, unit="x"),
        _opt("feather", "float", 0.0, minimum=0, maximum=1000, unit="px"),
        _opt("review", "bool", False),
        _opt("protect", "multi", [], choices=["faces", "text"]),
        _opt("tile", "int", None, minimum=16, maximum=16384, nullable=True, unit="px", advanced=True),
        _opt("sensitivity", "float", 0.5, minimum=0, maximum=1),
    ],
}


# ------------------------------------------------------------------------------ one margin, one set of ids

@pytest.mark.parametrize(("row", "margin"), [
    ({"margin": 8, "receptive_field": 80}, 8),      # the engine's margin wins
    ({"receptive_field": 20}, 20),                  # an engine before the task registry
    ({"margin": 0}, 0),
    ({}, catalog.DEFAULT_MARGIN),
    ({"margin": -1, "receptive_field": True}, catalog.DEFAULT_MARGIN),    # nonsense is ignored
])
def test_the_margin_rule(row: dict, margin: int) -> None:
    assert catalog.model_margin(row) == margin
    assert catalog.DEFAULT_MARGIN == 16


def test_both_hosts_plan_with_the_same_margin_and_ids(krita_core, gimp_plugin) -> None:
    """Krita and GIMP send the same context around a selection and name the output modes the
    same: both plan through the core (and their modules hold the core's objects)."""
    assert krita_core.catalog is catalog and krita_core.options is options and krita_core.output is output
    assert gimp_plugin.ec is ec
    for row in CATALOG["models"]:
        if not catalog.is_installed(row):
            continue
        for mode in output.OUTPUT_MODES:
            req = options.Request(model=row["id"], scale=1, output=mode, values={"strength": 60.0})
            k, g = krita_core.make_plan(CATALOG, req), gimp_plugin.make_plan(CATALOG, req)
            assert k.margin == g.margin == catalog.model_margin(row)
            assert k.submit == g.submit
            assert k.request.output == g.request.output == mode
    assert [m for m, _title in gimp_plugin.output_choices()] == list(output.OUTPUT_MODES)
    assert output.OUTPUT_MODES == ("masked", "layer", "document")


def test_host_files_keep_no_copy_of_the_core() -> None:
    """No host file defines its own margin, output modes, crop, mask product or model list."""
    banned_defs = {"model_margin", "_margin", "_times", "_crop", "_crop_bytes", "_alpha_times", "_upsample_nearest",
                   "_f16_to_f32", "_f32_to_f16", "transfer", "layer_name", "defect_mask", "model_list"}
    banned_names = {"DEFAULT_MARGIN", "MODELS", "OUTPUT_MODES", "DEFAULT_MODEL", "TASK_TITLES", "Options"}
    files = [*KRITA_PKG.glob("*.py"), GIMP_FILE]
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.name not in banned_defs | banned_names, f"{f.name} defines {node.name}"
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    assert not (isinstance(t, ast.Name) and t.id in banned_names), f"{f.name} assigns {t.id}"
    form = (KRITA_PKG / "form.py").read_text(encoding="utf-8")
    for used in ("output.OUTPUT_MODES", "catalog.purposes(", "catalog.choice_label(", "catalog.model_help(",
                 "options.shown_options(", "timing.region_estimate(", "catalog.purpose_title("):
        assert used in form, f"the Krita form does not take {used} from the core"


def test_gimp_plugin_holds_no_model_id() -> None:
    from engine.tasks import published
    source = GIMP_FILE.read_text(encoding="utf-8")
    ids = [r["id"] for r in published()["models"]]
    assert len(ids) > 10
    assert [i for i in ids if f'"{i}"' in source or f"'{i}'" in source] == []


def test_legacy_output_ids_map_onto_the_one_set() -> None:
    assert output.output_mode("layer-masked") == "masked"
    assert output.output_mode("image") == "document"
    assert output.output_mode("layer") == "layer"
    with pytest.raises(ec.UserError, match="output mode"):
        output.output_mode("sideways")


# ------------------------------------------------------------------------------ catalog

def test_require_model_says_what_to_do_before_any_work() -> None:
    assert catalog.require_model(CATALOG, "photo-x4")["scale"] == 4
    with pytest.raises(ec.UserError, match="enhancelayer models"):
        catalog.require_model(CATALOG, "photo-x9000")
    with pytest.raises(ec.UserError, match="enhancelayer import"):
        catalog.require_model(CATALOG, "not-here")
    with pytest.raises(ec.UserError, match="not imported"):
        options.plan(CATALOG, options.Request(model="not-here"))


def test_groups_follow_the_engine_known_groups_first() -> None:
    got = [(g, title, [r["id"] for r in rows]) for g, title, rows in catalog.groups(CATALOG)]
    assert got == [("upscale", "Upscale", ["photo-x4", "old-engine"]), ("jpeg", "JPEG clean-up", ["jpeg-clean-1"]),
                   ("denoise", "Denoise", ["not-here"]), ("restore", "Restore", ["restore-dust"]),
                   ("mystery-group", "Mystery Group", ["bare"]), ("identity", "Identity", ["identity"])]


def test_default_model() -> None:
    assert catalog.default_model(CATALOG) == "photo-x4"       # no photo-x2 here: the first installed one
    assert catalog.default_model({"models": [{"id": "photo-x2"}, {"id": "a"}]}) == "photo-x2"
    assert catalog.default_model({"models": [{"id": "a", "installed": False}]}) == "a"
    assert catalog.default_model({}) == ""


def test_snapshot_round_trip(tmp_path: Path) -> None:
    path = catalog.save_snapshot(CATALOG, str(tmp_path))
    assert Path(path).name == catalog.SNAPSHOT == "engine_catalog.json"
    assert catalog.load_snapshot(str(tmp_path)) == CATALOG
    Path(path).write_text("{not json")
    assert catalog.load_snapshot(str(tmp_path)) is None
    assert catalog.load_snapshot(str(tmp_path / "nowhere")) is None
    with pytest.raises(ValueError):
        catalog.save_snapshot({"models": "no"}, str(tmp_path))


def test_engine_catalog_runs_the_command(tmp_path: Path) -> None:
    body = {"models": [{"id": "m"}], "options": []}
    ok = [sys.executable, "-c", f"print({json.dumps(json.dumps(body))})"]
    assert catalog.engine_catalog(ok) == body
    with pytest.raises(RuntimeError, match="exit 3"):
        catalog.engine_catalog([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    with pytest.raises(RuntimeError, match="no engine catalog"):
        catalog.engine_catalog([sys.executable, "-c", "print('[]')"])
    with pytest.raises(RuntimeError, match="cannot run"):
        catalog.engine_catalog([str(tmp_path / "missing-enhancelayer"), "tasks", "--json"])
    written = catalog.install_snapshot(str(tmp_path), str(REPO), engine=ok)
    assert catalog.load_snapshot(str(tmp_path)) == body and written.endswith(catalog.SNAPSHOT)


def test_engine_command_uses_the_repository_venv(tmp_path: Path) -> None:
    argv = catalog.engine_command(str(tmp_path))
    assert argv[-2:] == ["tasks", "--json"] and str(tmp_path / ".venv") in argv[0]


# ------------------------------------------------------------------------------ options

def test_dialogs_show_the_task_options_minus_host_and_engineering_ones() -> None:
    dust = catalog.find_model(CATALOG, "restore-dust")
    names = [o["name"] for o in options.shown_options(CATALOG, dust)]
    assert names == ["strength", "grain", "keep_color", "review", "protect", "sensitivity"]
    photo = catalog.find_model(CATALOG, "photo-x4")
    assert "sensitivity" not in [o["name"] for o in options.shown_options(CATALOG, photo)]
    assert options.shown_options(CATALOG, catalog.find_model(CATALOG, "identity")) == []
    every = [o["name"] for o in options.every_shown_option(CATALOG)]
    assert every == ["strength", "grain", "keep_color", "review", "protect", "sensitivity"]
    assert not options.is_shown(_opt("knob", "int", 1, advanced=True))
    assert not options.is_shown(_opt("tile", "int", 1))        # never shown, marked or not


def test_models_taking_lists_the_options_only_some_models_take() -> None:
    got = {o["name"]: users for o, users in options.models_taking(CATALOG)}
    everyone_but_identity = [r["id"] for r in CATALOG["models"] if r["id"] != "identity"]
    assert got["sensitivity"] == ["restore-dust"]
    assert got["strength"] == everyone_but_identity
    assert set(got) == {"strength", "grain", "keep_color", "review", "protect", "sensitivity"}


@pytest.mark.parametrize(("option", "kind"), [
    (_opt("s", "float", 60.0, minimum=0, maximum=100, unit="%"), "slider"),
    (_opt("s", "float", 0.5, minimum=0, maximum=1), "spin"),
    (_opt("s", "int", 3, minimum=1), "spin"),
    (_opt("s", "bool", False), "check"),
    (_opt("s", "choice", "a", choices=["a", "b"]), "combo"),
    (_opt("s", "multi", [], choices=["a", "b"]), "checks"),
])
def test_widget_kind(option: dict, kind: str) -> None:
    assert options.widget_kind(option) == kind


def test_spin_steps_and_labels() -> None:
    sens = _opt("sensitivity", "float", 0.5, minimum=0, maximum=1, label="Sensitivity")
    assert (options.step(sens), options.decimals(sens)) == (0.01, 2)
    assert options.step(_opt("n", "int", 1, minimum=0, maximum=3)) == 1.0
    assert options.label(_opt("strength", "float", 60.0, unit="%", label="Strength")) == "Strength (%)"
    assert options.choice_label(_opt("protect", "multi", [], label="Protect"), "faces") == "Protect faces"


@pytest.mark.parametrize(("value", "text"), [(60.0, "60"), (0.25, "0.25"), (True, "true"), (False, "false"),
                                             (["faces", "text"], "faces,text"), ([], ""), (None, ""), ("a", "a")])
def test_to_text(value: Any, text: str) -> None:
    assert options.to_text(value) == text


def test_from_text_reads_back_clamps_and_defaults() -> None:
    t = options.option_table(CATALOG)
    assert options.from_text(t["strength"], "60") == 60.0
    assert options.from_text(t["strength"], "250") == 100.0           # clamped into the range
    assert options.from_text(t["strength"], "lots") == 60.0           # unreadable: the default
    assert options.from_text(t["strength"], None) == 60.0             # never stored
    assert options.from_text(t["strength"], "nan") == 60.0
    assert options.from_text(t["keep_color"], "true") is True
    assert options.from_text(t["keep_color"], "") is False
    assert options.from_text(t["protect"], "text,bogus,faces") == ["faces", "text"]
    assert options.from_text(t["protect"], "") == []
    assert options.from_text(t["sensitivity"], "0.75") == 0.75
    assert options.from_text(_opt("n", "int", 5, minimum=1, maximum=9), "7.6") == 8
    choice = _opt("c", "choice", "a", choices=["a", "b"])
    assert (options.from_text(choice, "b"), options.from_text(choice, "z")) == ("b", "a")
    stored = {"strength": "80", "review": "true"}
    values = options.values_from_text(options.every_shown_option(CATALOG), stored.get)
    assert values == {"strength": 80.0, "grain": 0.0, "keep_color": False, "review": True, "protect": [],
                      "sensitivity": 0.5}


def test_a_model_own_default_wins_over_the_table_and_reads_back() -> None:
    t = options.option_table(CATALOG)
    dust, photo = catalog.find_model(CATALOG, "restore-dust"), catalog.find_model(CATALOG, "photo-x4")
    assert options.default(t["strength"], dust) == 100.0
    assert options.default(t["strength"], photo) == options.default(t["strength"]) == 60.0
    assert options.default(t["sensitivity"], dust) == 0.5              # not in its defaults: the table's
    assert options.default(t["strength"], {"defaults": "junk"}) == 60.0
    assert options.from_text(t["strength"], None, dust) == 100.0      # never stored: the model's start
    assert options.from_text(t["strength"], "lots", dust) == 100.0
    assert options.from_text(t["strength"], "35", dust) == 35.0
    stored = {"review": "true"}
    assert options.values_from_text(options.every_shown_option(CATALOG), stored.get, dust)["strength"] == 100.0


def test_values_at_the_last_model_default_follow_the_new_model_and_chosen_ones_stay() -> None:
    dust, photo = catalog.find_model(CATALOG, "restore-dust"), catalog.find_model(CATALOG, "photo-x4")
    start = {"strength": 60.0, "grain": 10.0, "protect": [], "sensitivity": 0.5}
    to_dust = options.follow_model(CATALOG, photo, dust, start)
    assert to_dust == {**start, "strength": 100.0}          # untouched 60 % -> the repair's 100 %
    assert options.follow_model(CATALOG, dust, photo, to_dust) == start     # and back
    chosen = {**start, "strength": 80.0}
    assert options.follow_model(CATALOG, photo, dust, chosen) == chosen     # the user's 80 stays
    assert options.follow_model(CATALOG, None, dust, start) == start        # opening: as remembered
    assert options.follow_model(CATALOG, photo, None, start) == start
    assert start["strength"] == 60.0                                        # the caller's dict untouched


def test_procedure_argument_names_and_values() -> None:
    t = options.option_table(CATALOG)
    assert options.arg_names(t["keep_color"]) == ["keep-color"]
    assert options.arg_names(t["protect"]) == ["protect-faces", "protect-text"]
    args = {"strength": 70, "keep-color": 1, "protect-faces": True, "protect-text": False, "sensitivity": 0.8}
    got = options.values_from_args([t["strength"], t["keep_color"], t["protect"], t["sensitivity"], t["grain"]],
                                   args.get)
    # grain has no argument (newer than the registration): left out, the engine's default applies
    assert got == {"strength": 70.0, "keep_color": True, "protect": ["faces"], "sensitivity": 0.8}
    assert isinstance(got["strength"], float)


def test_submit_options_take_the_task_options_and_the_host_scale() -> None:
    dust = catalog.find_model(CATALOG, "restore-dust")
    values = {"strength": 100, "sensitivity": 0.7, "feather": 9.0, "unknown": 1, "protect": ("faces",)}
    got = options.submit_options(CATALOG, dust, options.Request(model="restore-dust", scale=1, values=values))
    assert got == {"model": "restore-dust", "strength": 100.0, "sensitivity": 0.7, "protect": ["faces"]}
    # no feather (the host masks), nothing the task does not take, no scale (it keeps the size)
    with pytest.raises(ec.UserError, match="scale to 1"):
        options.submit_options(CATALOG, dust, options.Request(model="restore-dust", scale=2))
    photo = catalog.find_model(CATALOG, "photo-x4")
    assert options.submit_options(CATALOG, photo, options.Request("photo-x4", scale=3))["scale"] == 3.0
    assert "sensitivity" not in options.submit_options(CATALOG, photo, options.Request("photo-x4", values=values))
    ident = catalog.find_model(CATALOG, "identity")
    assert options.submit_options(CATALOG, ident, options.Request("identity", values=values)) == {"model": "identity"}
    with pytest.raises(ec.UserError, match="scale to 1"):
        options.submit_options(CATALOG, ident, options.Request("identity", scale=2))
    with pytest.raises(ec.UserError, match="whole number"):
        options.submit_options(CATALOG, photo, options.Request("photo-x4", scale=0))


def test_takes_scale_follows_the_task_options() -> None:
    """The dialogs show Scale only for a model whose task takes it (repair tasks keep the size)."""
    assert options.takes_scale(catalog.find_model(CATALOG, "photo-x4"))
    assert options.takes_scale(catalog.find_model(CATALOG, "jpeg-clean-1"))      # a 1x model: clean, then resample
    assert not options.takes_scale(catalog.find_model(CATALOG, "restore-dust"))
    assert not options.takes_scale(catalog.find_model(CATALOG, "identity"))
    assert not options.takes_scale(None)
    assert "scale" in options.args_not_taken(CATALOG, catalog.find_model(CATALOG, "restore-dust"))
    assert "scale" not in options.args_not_taken(CATALOG, catalog.find_model(CATALOG, "photo-x4"))


def test_scale_range() -> None:
    assert options.scale_range(CATALOG) == (1, options.HOST_SCALE_MAX) == (1, 8)
    small = {"options": [_opt("scale", "float", None, maximum=4)], "models": []}
    assert options.scale_range(small) == (1, 4)
    assert options.scale_range({}) == (1, 8)


def test_plan_normalises_the_request() -> None:
    p = options.plan(CATALOG, options.Request(model="jpeg-clean-1", scale=1, output="layer-masked",
                                              values={"strength": 60}))
    assert p.request.output == "masked" and p.margin == 8 and p.submit["scale"] == 1.0


def test_every_engine_option_has_a_widget_and_a_round_trip() -> None:
    """The engine's real table: each shown option gets a widget, stores and reads back, and
    GIMP's argument names include the ones scripts and the host tests use."""
    from engine.tasks import published
    live = published()
    shown = options.every_shown_option(live)
    assert {"strength", "grain", "keep_color", "review", "protect", "sensitivity"} <= {o["name"] for o in shown}
    assert "tile" not in {o["name"] for o in shown} and "scale" not in {o["name"] for o in shown}
    for o in shown:
        assert options.widget_kind(o) in ("slider", "spin", "check", "combo", "checks")
        d = options.default(o)
        assert options.from_text(o, options.to_text(d)) == d, o["name"]
    args = [a for o in shown for a in options.arg_names(o)]
    assert {"strength", "grain", "keep-color", "protect-faces", "protect-text", "review", "sensitivity"} <= set(args)
    for row in catalog.models_of(live):
        assert catalog.model_margin(row) == row["margin"]


# ------------------------------------------------------------------------------ geometry

def test_context_region_clamps_at_the_edges() -> None:
    assert geometry.context_region((0, 0, 70, 50), 8, 300, 200) == (0, 0, 78, 58)
    assert geometry.context_region((100, 60, 60, 40), 8, 300, 200) == (92, 52, 76, 56)
    assert geometry.context_region((280, 190, 20, 10), 32, 300, 200) == (248, 158, 52, 42)
    assert geometry.context_region((10, 10, 5, 5), -3, 300, 200) == (10, 10, 5, 5)


def test_clamp_box() -> None:
    assert geometry.clamp_box((-5, -5, 20, 20), 10, 10) == (0, 0, 10, 10)
    assert geometry.clamp_box((20, 0, 5, 5), 10, 10) is None
    assert geometry.clamp_box((2, 3, 4, 5), 10, 10) == (2, 3, 4, 5)


def test_crop_and_boxes() -> None:
    w, h, px = 5, 4, 2
    data = bytes(range(w * h * px))
    got = geometry.crop(data, w, px, (1, 1, 2, 2))
    assert got == bytes([12, 13, 14, 15, 22, 23, 24, 25])
    assert geometry.crop(data, w, px, (0, 1, 5, 2)) == data[10:30]
    assert geometry.box_within((12, 13, 4, 4), (10, 10, 20, 20)) == (2, 3, 4, 4)
    assert geometry.scale_box((1, 2, 3, 4), 2) == (2, 4, 6, 8)


def test_upsample_nearest() -> None:
    assert geometry.upsample_nearest(bytes([1, 2, 3, 4]), 2, 2, 2) == bytes([1, 1, 2, 2, 1, 1, 2, 2,
                                                                             3, 3, 4, 4, 3, 3, 4, 4])


# ------------------------------------------------------------------------------ pixels

def test_sample_sizes() -> None:
    assert pixels.SAMPLE_BYTES == {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
    assert pixels.bytes_per_pixel(4, "f16") == 8 and pixels.bytes_per_pixel(2, "u16") == 4


def test_multiply_masks_both_paths_agree_with_the_formula() -> None:
    b = bytes(range(256))
    binary = bytes((0, 255) * 128)
    soft = bytes((i * 7) % 256 for i in range(256))
    for a in (binary, soft):
        assert pixels.multiply_masks(a, b) == bytes((x * y + 127) // 255 for x, y in zip(a, b))
    with pytest.raises(ValueError):
        pixels.multiply_masks(b"\x00", b"\x00\x00")


def test_alpha_times_selection_every_depth() -> None:
    sel = bytes([0, 128, 255])
    u8 = bytes([10, 20, 30, 200] * 3)
    assert pixels.alpha_times(u8, "u8", sel)[3::4] == bytes([0, (200 * 128 + 127) // 255, 200])
    assert pixels.alpha_times(u8, "u8", sel)[0::4] == bytes([10] * 3)          # colour untouched
    u16 = array("H", [1, 2, 3, 60000] * 3).tobytes()
    got16 = array("H")
    got16.frombytes(pixels.alpha_times(u16, "u16", sel))
    assert list(got16[3::4]) == [0, (60000 * 128 + 127) // 255, 60000]
    f32 = array("f", [0.1, 0.2, 0.3, 0.8] * 3).tobytes()
    gotf = array("f")
    gotf.frombytes(pixels.alpha_times(f32, "f32", sel))
    assert gotf[3] == 0 and abs(gotf[7] - 0.8 * 128 / 255) < 1e-6 and abs(gotf[11] - 0.8) < 1e-6
    f16 = struct.pack("<12e", *([0.1, 0.2, 0.3, 1.0] * 3))
    goth = struct.unpack("<12e", pixels.alpha_times(f16, "f16", sel))
    assert goth[3] == 0 and abs(goth[7] - 128 / 255) < 1e-3 and goth[11] == 1.0
    ya = bytes([50, 200, 60, 200])            # gray + alpha: the alpha is the last channel
    assert pixels.alpha_times(ya, "u8", bytes([0, 255]), channels=2) == bytes([50, 0, 60, 200])


def test_half_floats_round_trip_and_clamp() -> None:
    vals = [0.0, 0.5, 1.0, -2.0, 1234.0]
    half = struct.pack(f"<{len(vals)}e", *vals)
    f32 = pixels.f16_to_f32(half)
    assert list(array("f", f32)) == vals
    assert pixels.f32_to_f16(f32) == half
    big = array("f", [1e6, -1e6]).tobytes()
    assert struct.unpack("<2e", pixels.f32_to_f16(big)) == (65504.0, -65504.0)


def test_srgb_transfer_round_trips_and_keeps_alpha() -> None:
    u16 = array("H", [0, 1000, 30000, 12345, 65535, 500, 40000, 777]).tobytes()
    enc = pixels.srgb_transfer(u16, "u16", encode=True)
    back = array("H")
    back.frombytes(pixels.srgb_transfer(enc, "u16", encode=False))
    orig = array("H", [0, 1000, 30000, 12345, 65535, 500, 40000, 777])
    assert back[3] == 12345 and back[7] == 777                       # alpha left alone
    assert max(abs(a - b) for a, b in zip(back, orig)) <= 40         # the tables round, a little
    f = array("f", [0.2, 0.5, -0.1, 0.7]).tobytes()
    enc_f = array("f")
    enc_f.frombytes(pixels.srgb_transfer(f, "f32", encode=True))
    assert abs(enc_f[0] - pixels.srgb_encode(0.2)) < 1e-6 and abs(enc_f[2] + pixels.srgb_encode(0.1)) < 1e-6
    assert abs(enc_f[3] - 0.7) < 1e-7
    assert abs(pixels.srgb_decode(pixels.srgb_encode(0.3)) - 0.3) < 1e-9
    u8 = bytes([0, 128, 255, 77])
    assert pixels.srgb_transfer(u8, "u8", encode=True)[3] == 77


def test_review_maps_and_overlay() -> None:
    assert pixels.review_u8(bytes([1, 2, 3, 4]), 2, 2) == bytes([1, 2, 3, 4])
    assert pixels.review_u8(array("f", [0.0, 0.5, 1.0, 2.0]).tobytes(), 2, 2) == bytes([0, 128, 255, 255])
    assert pixels.review_u8(bytes(3), 2, 2) is None and pixels.review_u8(None, 2, 2) is None
    assert pixels.red_overlay(bytes([9]), "RGBA") == bytes([255, 0, 0, 9])
    assert pixels.red_overlay(bytes([9]), "BGRA") == bytes([0, 0, 255, 9])      # Krita's integer order
    assert pixels.red_overlay(bytes([9, 8]), "YA") == bytes([255, 9, 255, 8])


# ------------------------------------------------------------------------------ output

@pytest.mark.parametrize(("values", "name"), [({"strength": 60.0}, "Enhanced · photo-x2 · 60%"),
                                              ({"strength": 12.5}, "Enhanced · photo-x2 · 12.5%"),
                                              ({"strength": 100}, "Enhanced · photo-x2 · 100%"),
                                              ({}, "Enhanced · photo-x2")])
def test_layer_names(values: dict, name: str) -> None:
    assert output.layer_name("photo-x2", values) == name
    assert output.review_name("photo-x2") == "Review · photo-x2"
    assert output.review_name("photo-x2", bytes([0, 10, 200])) == "Review · photo-x2 · red = check here"
    assert output.review_name("photo-x2", bytes([0, 10, 75])) == "Review · photo-x2 · nothing flagged"
    assert output.document_name("", "photo-x2") == "Image · photo-x2"


def test_model_label_names_title_id_and_missing_weights() -> None:
    assert catalog.model_label({"id": "photo-x2", "title": "Photo 2x"}) == "Photo 2x [photo-x2]"
    assert catalog.model_label({"id": "denoise"}) == "denoise"
    assert catalog.model_label({"id": "photo-x4", "title": "Photo 4x", "installed": False}) == \
        "Photo 4x [photo-x4] (not imported)"


def test_done_message_says_when_the_whole_layer_was_used() -> None:
    name = "Enhanced · denoise · 60%"
    assert output.done_message(name, whole_layer=False) == f"Added layer “{name}”."
    whole = output.done_message(name, whole_layer=True)
    assert whole.startswith(f"Added layer “{name}”.") and "no selection" in whole and "whole layer" in whole
    assert "nothing was added" in output.CANCELLED_MESSAGE and "nothing was added" in output.FAILED_MESSAGE
    assert output.notice({"note": "no halftone screen found: left as it is", "notice": True}) == \
        "No halftone screen found: left as it is."
    assert output.notice({"note": "1200 px filled"}) == "" and output.notice({}) == ""
    said = output.done_message("Enhanced · descreen · 100%", False, "no halftone screen found: left as it is")
    assert said == "Added layer “Enhanced · descreen · 100%”. No halftone screen found: left as it is."


def _result(width: int, height: int, channels: int = 4, dtype: str = "u8", **kw: Any) -> Any:
    n = width * height * channels * pixels.SAMPLE_BYTES[dtype]
    return ec.Result(bytes(i % 251 for i in range(n)), width, height, channels, dtype, **kw)


def test_split_result_cuts_pixels_review_and_defects_alike() -> None:
    region, keep, s = (10, 20, 6, 4), (12, 21, 3, 2), 2         # host coordinates, before scaling
    w, h = 12, 8
    review = bytes(range(w * h))
    defects = bytes((i * 3) % 256 for i in range(w * h))
    res = _result(w, h, review=review, review_width=w, review_height=h, defects=defects, defects_width=w,
                  defects_height=h)
    piece = output.split_result(res, region, keep, s)
    assert piece.box == (24, 42, 6, 4)
    rel = (4, 2, 6, 4)
    assert piece.pixels == geometry.crop(res.pixels, w, 4, rel)
    assert piece.review == geometry.crop(review, w, 1, rel)
    assert piece.defects == geometry.crop(defects, w, 1, rel)
    whole = output.split_result(_result(w, h), region, region, s)
    assert whole.box == (20, 40, 12, 8) and whole.review is None and whole.defects is None
    wrong = _result(w, h, defects=bytes(5), defects_width=1, defects_height=5)
    assert output.split_result(wrong, region, keep, s).defects is None


def test_check_result_refuses_another_shape() -> None:
    output.check_result(_result(12, 8), (0, 0, 6, 4), 2, 4, "u8")
    with pytest.raises(ec.UserError, match="update the engine and the plug-in"):
        output.check_result(_result(12, 8), (0, 0, 6, 4), 1, 4, "u8")
    with pytest.raises(ec.UserError):
        output.check_result(_result(6, 4, channels=3), (0, 0, 6, 4), 1, 4, "u8")


# ------------------------------------------------------------------------------ the client's submit

def test_submit_sends_the_options_verbatim_and_no_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict = {}

    def fake_request(self: Any, method: str, path: str, body: Any = None, length: Any = None, **_kw: Any) -> tuple:
        sent["body"] = b"".join(bytes(p) for p in body)
        return 202, "application/json", b'{"id": "j1"}'

    monkeypatch.setattr(ec.EngineClient, "_request", fake_request)
    c = ec.EngineClient("http://127.0.0.1:9", "t")
    assert c.submit(bytes(12), 2, 2, 3, "u8", model="restore-dust", strength=100, sensitivity=0.7,
                    protect=("faces",)) == "j1"
    header, payload = ec.wire.split_frame(sent["body"])
    assert header == {"model": "restore-dust", "width": 2, "height": 2, "channels": 3, "dtype": "u8",
                      "channel_order": "RGBA", "mask": False, "strength": 100, "sensitivity": 0.7,
                      "protect": ["faces"]}
    assert bytes(payload) == bytes(12)
    c.submit(bytes(12), 2, 2, 3, "u8")
    header, _ = ec.wire.split_frame(sent["body"])
    assert set(header) == {"model", "width", "height", "channels", "dtype", "channel_order", "mask"}
    assert header["model"] == catalog.DEFAULT_MODEL
    with pytest.raises(ec.BadRequest, match="JSON"):
        c.submit(bytes(12), 2, 2, 3, "u8", strength=object())


def test_catalog_call(monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = iter([{"models": [{"id": "a"}]}, {"models": [{"id": "a"}], "options": [{"name": "x"}]}, {"oops": 1}])
    monkeypatch.setattr(ec.EngineClient, "_json", lambda self, *a, **k: next(bodies))
    c = ec.EngineClient("http://127.0.0.1:9", "t")
    assert c.catalog() == {"models": [{"id": "a"}], "options": []}       # an engine before the table
    assert c.models() == [{"id": "a"}]
    with pytest.raises(ec.EngineError, match="unreadable model list"):
        c.catalog()


# ------------------------------------------------------------------------------ installers

def _installer(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_installers_vendor_the_catalog_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gimp = _installer("_install_gimp", REPO / "plugin" / "gimp" / "install_gimp.py")
    dest = gimp.install(profile_dir=tmp_path / "gimp", catalog=CATALOG)
    assert catalog.load_snapshot(str(dest / "enhancelayer_client")) == CATALOG
    assert "enhancelayer_client/engine_catalog.json" in gimp.written(dest)
    dest = gimp.install(profile_dir=tmp_path / "gimp2", engine=[sys.executable, "-c", "raise SystemExit(2)"])
    assert not (dest / "enhancelayer_client" / catalog.SNAPSHOT).exists()
    assert "no engine catalog saved" in capsys.readouterr().err
    krita = _installer("_install_krita", REPO / "plugin" / "krita" / "install_krita.py")
    out = krita.install(profile_dir=tmp_path / "krita", kritarc=tmp_path / "kritarc", catalog=CATALOG)
    assert catalog.load_snapshot(out["client"]) == CATALOG and out["catalog"].endswith(catalog.SNAPSHOT)


# ------------------------------------------------------------------------------ task-first choice

TASK_FIRST = {
    "purposes": [{"id": "enlarge", "title": "Enlarge", "description": "Bigger."},
                 {"id": "colorize", "title": "Colorize", "description": "Not landed yet."},
                 {"id": "denoise", "title": "Reduce noise", "description": "Less noise."},
                 {"id": "custom", "title": "Your own models", "description": "", "advanced": True}],
    "models": [
        {"id": "photo-x4", "purpose": "enlarge", "label": "4x, best", "title": "Real-ESRGAN x4plus",
         "description": "Best detail.", "scale": 4, "ms_per_mp": 160_000.0, "speed_basis": "catalog"},
        {"id": "identity", "purpose": "", "title": "Identity"},
        {"id": "denoise", "purpose": "denoise", "label": "Automatic", "description": "Measures the noise.",
         "scale": 1, "installed": False},
        {"id": "photo-x4-fast", "purpose": "enlarge", "label": "4x, fast", "scale": 4, "ms_per_mp": 8_000.0},
        {"id": "photo-x2", "purpose": "enlarge", "label": "2x, fast", "scale": 2, "ms_per_mp": 3_000.0},
        {"id": "user:mine", "purpose": "custom", "label": "mine"},
        {"id": "later", "purpose": "brand-new", "label": "x"},
    ],
    "options": [],
}


def test_purposes_in_engine_order_with_their_rows_hidden_and_empty_ones_left_out() -> None:
    got = [(p["id"], p["title"], p["advanced"], [r["id"] for r in p["rows"]]) for p in catalog.purposes(TASK_FIRST)]
    assert got == [("enlarge", "Enlarge", False, ["photo-x4", "photo-x4-fast", "photo-x2"]),
                   ("denoise", "Reduce noise", False, ["denoise"]),
                   ("custom", "Your own models", True, ["user:mine"]),
                   ("brand-new", "Brand New", False, ["later"])]
    assert catalog.purpose_of(TASK_FIRST, "photo-x2") == "enlarge"
    assert catalog.purpose_of(TASK_FIRST, "identity") == ""      # offered nowhere
    assert catalog.first_runnable(catalog.purposes(TASK_FIRST)[1]["rows"]) == "denoise"   # none imported: first
    assert catalog.first_runnable([{"id": "a", "installed": False}, {"id": "b"}]) == "b"


def test_an_engine_without_purposes_falls_back_to_its_groups() -> None:
    got = [(p["id"], [r["id"] for r in p["rows"]]) for p in catalog.purposes(CATALOG)]
    assert got == [("upscale", ["photo-x4", "old-engine"]), ("jpeg", ["jpeg-clean-1"]), ("denoise", ["not-here"]),
                   ("restore", ["restore-dust"]), ("mystery-group", ["bare"])]      # identity left out


def test_choice_label_and_help_are_plain_words_with_the_fix() -> None:
    rows = {r["id"]: r for r in TASK_FIRST["models"]}
    assert catalog.choice_label(rows["photo-x4"]) == "4x, best"
    assert catalog.choice_label(rows["denoise"]) == "Automatic (not imported)"
    assert catalog.choice_label({"id": "old", "title": "Old title"}) == "Old title"
    helped = catalog.model_help(rows["denoise"])
    assert helped.startswith("Measures the noise.") and "install.py" in helped
    assert catalog.model_help(rows["photo-x4"]) == "Best detail."        # no network names in the text
    assert catalog.model_details(rows["photo-x4"]) == "Model: Real-ESRGAN x4plus [photo-x4]"
    assert catalog.model_details({"id": "x"}) == "Model: x"


def test_scale_note_explains_a_detail_pass_and_resampling() -> None:
    x2 = {"id": "photo-x2", "scale": 2}
    assert "detail pass" in catalog.scale_note(x2, 1)
    assert catalog.scale_note(x2, 2) == ""
    assert "resampling" in catalog.scale_note(x2, 4)
    assert catalog.scale_note({"id": "denoise", "scale": 1}, 1) == "" and catalog.scale_note(None, 1) == ""


def test_time_estimate_words_and_hints() -> None:
    timing = ec.timing
    rows = {r["id"]: r for r in TASK_FIRST["models"]}
    enlarge = tuple(catalog.purposes(TASK_FIRST)[0]["rows"])
    assert timing.duration(2) == "a few seconds" and timing.duration(41) == "about 40 s"
    assert timing.duration(200) == "about 3 min" and timing.duration(4000) == "about 1 h 07 min"
    # 1 MP with photo-x4 on a CPU: 160 s -> a GPU or the much faster 4x sibling (not the 2x one)
    text = timing.estimate_text(TASK_FIRST, rows["photo-x4"], 1000, 1000, enlarge)
    assert text.startswith("Takes about 3 min on a 2-core CPU.")
    assert "A GPU would be much faster, or try “4x, fast” (about 10 s)." in text
    assert "2x" not in text
    gpu = dict(TASK_FIRST, engine={"gpu": "cuda"})
    assert "GPU" not in timing.estimate_text(gpu, rows["photo-x4"], 1000, 1000, enlarge)
    measured = dict(rows["photo-x2"], speed_basis="measured")
    assert timing.estimate_text(TASK_FIRST, measured, 1000, 1000, enlarge) == "Takes a few seconds here."
    assert timing.estimate_text(TASK_FIRST, {"id": "user:x"}, 10, 10) == "No time estimate for this model yet."
    assert timing.estimate_text(TASK_FIRST, None, 10, 10) == ""


def test_eta_only_once_the_first_tile_measured_the_speed() -> None:
    timing = ec.timing
    assert timing.eta_text("loading the model", 30.0, 0.0) == "loading the model"
    assert timing.eta_text("tile 2/6", 61.0, 0.33) == "tile 2/6 — about 60 s left"
    assert timing.eta_text("tile 5/6", 2.0, 0.83) == "tile 5/6 — a few seconds left"
    assert timing.eta_text("done", 0.0, 1.0) == "done"
    assert timing.eta_text("tile 1/2", None, 0.5) == "tile 1/2"


def test_krita_action_file_declares_the_extension_actions_and_shortcuts() -> None:
    """Krita takes default shortcuts from the .action file (what makes Ctrl+Alt+E work and
    show in Configure Krita › Keyboard Shortcuts); its names must be the extension's ids."""
    import xml.etree.ElementTree as ET

    tree = ast.parse((KRITA_PKG / "extension.py").read_text(encoding="utf-8"))
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    want = {consts["ACTION_ID"]: "Ctrl+Alt+E", consts["AGAIN_ID"]: "Ctrl+Alt+Shift+E"}
    root = ET.parse(KRITA_PKG.parent / "enhancelayer.action").getroot()
    got = {a.get("name"): a.findtext("shortcut") for a in root.iter("Action")}
    assert got == want
    assert {a.get("name"): a.findtext("text") for a in root.iter("Action")} == {
        consts["ACTION_ID"]: "Enhance Selection…", consts["AGAIN_ID"]: "Enhance Selection Again"}


def test_args_not_taken_hide_other_tasks_options() -> None:
    """GIMP registers one argument per option of every task; its dialog hides those the chosen
    model does not take (restore-dust's sensitivity while denoising), as Krita's form does."""
    from engine.tasks import published

    cat = published()
    denoise, dust = catalog.find_model(cat, "denoise"), catalog.find_model(cat, "restore-dust")
    hidden = options.args_not_taken(cat, denoise)
    assert {"sensitivity", "clip", "cast"} <= hidden and "strength" not in hidden and "protect-faces" not in hidden
    assert "sensitivity" not in options.args_not_taken(cat, dust)
    assert options.args_not_taken(cat, None) >= {"strength", "sensitivity"}     # nothing chosen: nothing applies


def test_failures_in_plain_words_with_the_details_apart() -> None:
    """Every failure a user can meet: a plain sentence with one thing to do; the technical
    message (URLs, HTTP codes, errno) only as details."""
    m = ec.messages
    refused = ec.EngineUnreachable("cannot reach the engine at http://127.0.0.1:9: [Errno 111] Connection refused")
    local, remote = m.explain(refused), m.explain(refused, remote=True)
    assert local.text == m.ENGINE_GONE and remote.text == m.REMOTE_GONE
    assert "127.0.0.1" not in local.text and "Errno" in local.details
    cases = {ec.EngineNotInstalled("no launcher"): "install.py", ec.EngineStartFailed("exit 3"): "did not start",
             ec.TokenRejected("401"): "token", ec.TooLarge("413: 60 MP"): "smaller area",
             ec.OutOfMemory("oom"): "memory", ec.ModelNotInstalled("409"): "not imported",
             ec.Busy("429"): "busy", ec.JobFailed("boom"): "failed", ec.EngineStopped("died"): "stopped",
             ValueError("bug"): "report it"}
    for err, word in cases.items():
        got = m.explain(err)
        assert word in got.text and got.text.endswith("."), (err, got)
        assert str(err) in got.details, (err, got)
        assert got.joined() == f"{got.text}\n\nDetails: {got.details}"
    plain = m.explain(ec.UserError("Select a layer first."))
    assert plain == m.Message("Select a layer first.") and plain.joined() == "Select a layer first."


def test_region_estimate_and_purpose_title_shared_by_both_dialogs() -> None:
    rows = {r["id"]: r for r in TASK_FIRST["models"]}
    x2 = rows["photo-x2"]
    alone = ec.timing.estimate_text(TASK_FIRST, x2, 800, 600)
    assert ec.timing.region_estimate(TASK_FIRST, x2, (800, 600), False) == alone
    assert ec.timing.region_estimate(TASK_FIRST, x2, (800, 600), True) == f"{output.NO_SELECTION_NOTE} {alone}"
    assert ec.timing.region_estimate(TASK_FIRST, None, (800, 600), True) == ""
    assert ec.timing.region_estimate(TASK_FIRST, x2, None, True) == ""
    ps = catalog.purposes(TASK_FIRST)
    assert [catalog.purpose_title(p) for p in ps][-2:] == ["Your own models (advanced)", "Brand New"]


def test_is_remote_is_the_one_rule_for_engines_not_ours_to_start(tmp_path: Path) -> None:
    assert ec.is_remote(ec.EngineClient("http://127.0.0.1:9", "t")) is True
    assert ec.is_remote(ec.EngineClient("http://127.0.0.1:9", "t", config_dir=str(tmp_path))) is False
