# Batch code run INSIDE real GIMP 3 (gimp-console-3.0 --batch-interpreter=python-fu-eval).
# Gimp, Gegl, Gio, GLib, GObject are already imported by the interpreter.
# Reads the scenario list from $ELCI_PARAMS (JSON), runs python-fu-enhancelayer on each
# non-interactively, and writes one JSON + raw pixel dumps per scenario into the out dir.
import hashlib
import json
import os
import traceback

P = json.load(open(os.environ["ELCI_PARAMS"]))
OUT = P["out"]
PREC = {"u8": Gimp.Precision.U8_NON_LINEAR, "u16": Gimp.Precision.U16_NON_LINEAR,
        "f32": Gimp.Precision.FLOAT_LINEAR}
FMT = {"u8": "R'G'B'A u8", "u16": "R'G'B'A u16", "f32": "R'G'B'A float"}


def layer_bytes(d, fmt):
    r = Gegl.Rectangle.new(0, 0, d.get_width(), d.get_height())
    return bytes(d.get_buffer().get(r, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def describe(layer, fmt):
    ok, x, y = layer.get_offsets()
    info = {"name": layer.get_name(), "x": x, "y": y, "w": layer.get_width(), "h": layer.get_height(),
            "mask": None, "visible": layer.get_visible(), "opacity": layer.get_opacity(),
            "mode": layer.get_mode().value_nick}
    m = layer.get_mask()
    if m is not None:
        mb = layer_bytes(m, "Y u8")
        info["mask"] = {"n255": mb.count(255), "n0": mb.count(0), "n": len(mb)}
        sel = layer.get_image().get_selection()
        r = Gegl.Rectangle.new(x, y, layer.get_width(), layer.get_height())
        sb = bytes(sel.get_buffer().get(r, 1.0, "Y u8", Gegl.AbyssPolicy.NONE))
        info["mask_equals_selection"] = sb == mb
    return info


def _accepts(cfg, name, value):
    """Whether a Gimp.Choice argument takes this nick (set_property refuses others)."""
    try:
        cfg.set_property(name, value)
    except Exception:  # noqa: BLE001 - any refusal means "not a choice"
        return False
    return cfg.get_property(name) == value


def scenario(s):
    res = {"name": s["name"]}
    pdb = Gimp.get_pdb()
    res["exists"] = pdb.procedure_exists("python-fu-enhancelayer")
    res["gimp_version"] = Gimp.version()
    if s.get("engine") is not None:     # the engine settings procedure first, as a user would
        ep = pdb.lookup_procedure("python-fu-enhancelayer-engine")
        ecfg = ep.create_config()
        ecfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
        for k, v in s["engine"].items():
            ecfg.set_property(f"engine-{k}", v)
        erv = ep.run(ecfg)
        res["engine_status"] = erv.index(0).value_nick
        res["engine_error"] = pdb.get_last_error() if res["engine_status"] != "success" else ""
        res["engine_menu"] = [list(ep.get_menu_paths()), ep.get_menu_label()]
    proc = pdb.lookup_procedure("python-fu-enhancelayer")
    res["args"] = [a.name for a in proc.get_arguments()]
    cfg0 = proc.create_config()
    res["output_modes"] = [c for c in ("masked", "layer", "document", "layer-masked", "image")
                           if _accepts(cfg0, "output-mode", c)]
    res["menu"] = list(proc.get_menu_paths())
    res["label"] = proc.get_menu_label()
    photo = P.get("photos", {}).get(s.get("photo"), P["photo"])     # a named photo, else the astronaut
    img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(photo))
    if s["precision"] != "u8":
        img.convert_precision(PREC[s["precision"]])
    src = img.get_layers()[0]
    if not src.has_alpha():
        src.add_alpha()
    ox, oy = s.get("offset", (0, 0))
    if ox or oy:     # canvas grows, the layer moves: the plug-in must handle layer offsets
        img.resize(img.get_width() + ox + 7, img.get_height() + oy + 5, ox, oy)
    if s.get("hole"):      # a transparent hole: alpha must come back as it was
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *s["hole"])
        src.edit_clear()
        Gimp.Selection.none(img)
    res["src_offsets"] = list(src.get_offsets())[1:]
    fmt = FMT[s["precision"]]
    before = hashlib.sha256(layer_bytes(src, fmt)).hexdigest()
    if s.get("select"):
        x, y, w, h = s["select"]
        if s.get("ellipse"):
            img.select_ellipse(Gimp.ChannelOps.REPLACE, x, y, w, h)
        else:
            img.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
    with open(os.path.join(OUT, f"{s['name']}-source.raw"), "wb") as f:
        f.write(layer_bytes(src, fmt))
    if s.get("hints"):    # colorize's colour strokes: a layer of the image, chosen as hints-layer
        W, H = img.get_width(), img.get_height()
        hl = Gimp.Layer.new(img, "Hints", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        img.insert_layer(hl, None, 0)
        px = bytearray(W * H * 4)
        for x, y, w, h, rgb in s["hints"]:
            for yy in range(y, y + h):
                row = bytes(list(rgb) + [255]) * w
                px[(yy * W + x) * 4:(yy * W + x + w) * 4] = row
        hl.get_buffer().set(Gegl.Rectangle.new(0, 0, W, H), "R'G'B'A u8", bytes(px))
        s["args"] = dict(s["args"], **{"hints-layer": hl})
    n_images = len(Gimp.get_images())
    ids_before = [lay.get_id() for lay in img.get_layers()]
    img.clean_all()
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [src])
    for k, v in s["args"].items():
        cfg.set_property(k, v)
    rv = proc.run(cfg)
    res["status"] = rv.index(0).value_nick
    res["error"] = pdb.get_last_error() if res["status"] != "success" else ""
    res["dirty"] = img.is_dirty()
    res["undo_enabled"] = img.undo_is_enabled()
    res["image_size"] = [img.get_width(), img.get_height()]
    res["src_unchanged"] = hashlib.sha256(layer_bytes(src, fmt)).hexdigest() == before
    res["src_size"] = [src.get_width(), src.get_height()]
    res["src_offsets_after"] = list(src.get_offsets())[1:]
    layers = img.get_layers()
    res["order"] = [lay.get_name() for lay in layers]
    new = [lay for lay in layers if lay.get_id() not in ids_before]
    res["new_layers"] = [describe(lay, fmt) for lay in new]
    for i, lay in enumerate(new):
        with open(os.path.join(OUT, f"{s['name']}-layer{i}.raw"), "wb") as f:
            f.write(layer_bytes(lay, fmt))
        if lay.is_group():          # a chain's result: its step layers, top first, and their masks
            kids = lay.get_children()
            res.setdefault("group_children", {})[str(i)] = [describe(k, fmt) for k in kids]
            for k, kid in enumerate(kids):
                with open(os.path.join(OUT, f"{s['name']}-layer{i}-step{k}.raw"), "wb") as f:
                    f.write(layer_bytes(kid, fmt))
        if lay.get_mask() is not None:   # the mask and the selection under the layer, u8
            ok, x, y = lay.get_offsets()
            r = Gegl.Rectangle.new(x, y, lay.get_width(), lay.get_height())
            with open(os.path.join(OUT, f"{s['name']}-mask{i}.raw"), "wb") as f:
                f.write(layer_bytes(lay.get_mask(), "Y u8"))
            with open(os.path.join(OUT, f"{s['name']}-sel{i}.raw"), "wb") as f:
                f.write(bytes(img.get_selection().get_buffer().get(r, 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
    imgs = [im for im in Gimp.get_images() if im.get_id() != img.get_id()]
    res["new_images"] = len(Gimp.get_images()) - n_images
    if s["args"].get("output-mode") == "document" and res["new_images"] == 1:
        ni = imgs[-1]
        nl = ni.get_layers()[0]
        res["image_layer"] = describe(nl, fmt)
        res["image_precision"] = ni.get_precision().value_nick
        with open(os.path.join(OUT, f"{s['name']}-image.raw"), "wb") as f:
            f.write(layer_bytes(nl, fmt))
        ni.delete()
    img.delete()
    return res


for s in P["scenarios"]:
    try:
        r = scenario(s)
    except Exception:  # noqa: BLE001 - recorded for the test, which fails with the traceback
        r = {"name": s["name"], "crash": traceback.format_exc()}
    with open(os.path.join(OUT, s["name"] + ".json"), "w") as f:
        json.dump(r, f, indent=1)
    print("ELCI done", s["name"], flush=True)
