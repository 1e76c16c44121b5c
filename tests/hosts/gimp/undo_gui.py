# Batch code for the FULL gimp under Xvfb: runs AI Enhance… on an image shown in a display,
# then waits while the test presses a real Ctrl+Z (xdotool) and records what one undo did.
# Gimp, Gegl, Gio, GLib, GObject are already imported by the interpreter.
import hashlib
import json
import os
import time

P = json.load(open(os.environ["ELCI_PARAMS"]))
def out(name, obj):
    tmp = os.path.join(P["out"], name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, os.path.join(P["out"], name))
def pix(d):
    r = Gegl.Rectangle.new(0, 0, d.get_width(), d.get_height())
    return hashlib.sha256(bytes(d.get_buffer().get(r, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))).hexdigest()

img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(P["photo"]))
Gimp.Display.new(img)
src = img.get_layers()[0]
img.select_rectangle(Gimp.ChannelOps.REPLACE, *P["select"])
img.clean_all()       # the selection is not part of what one undo must remove
before = pix(src)
proc = Gimp.get_pdb().lookup_procedure("python-fu-enhancelayer")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [src])
cfg.set_property("model", P["model"])
status = proc.run(cfg).index(0).value_nick
Gimp.displays_flush()
after_run = [lay.get_name() for lay in img.get_layers()]
out("ran.json", {"status": status, "layers": after_run, "error": Gimp.get_pdb().get_last_error()})
t0 = time.time()
while time.time() - t0 < P["wait"] and len(img.get_layers()) == len(after_run):
    time.sleep(0.2)
time.sleep(1.0)    # a second undo step, if one had been pushed, would need another Ctrl+Z anyway
out("undone.json", {"layers": [lay.get_name() for lay in img.get_layers()], "src_unchanged": pix(src) == before,
                    "selection": list(Gimp.Selection.bounds(img))[1:], "dirty": img.is_dirty()})
