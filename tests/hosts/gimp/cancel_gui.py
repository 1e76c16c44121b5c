# Batch code for the FULL gimp under Xvfb: calls AI Enhance… INTERACTIVELY on a slow model;
# the test presses OK in the dialog and then Cancel in the progress window (xdotool), and
# this records what the procedure returned and what the image holds afterwards.
import hashlib
import json
import os
import time

P = json.load(open(os.environ["ELCI_PARAMS"]))
def pix(d):
    r = Gegl.Rectangle.new(0, 0, d.get_width(), d.get_height())
    return hashlib.sha256(bytes(d.get_buffer().get(r, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))).hexdigest()

img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(P["photo"]))
Gimp.Display.new(img)
src = img.get_layers()[0]
img.select_rectangle(Gimp.ChannelOps.REPLACE, *P["select"])
img.clean_all()
before = pix(src)
proc = Gimp.get_pdb().lookup_procedure("python-fu-enhancelayer")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [src])
cfg.set_property("model", P["model"])
t0 = time.time()
status = proc.run(cfg).index(0).value_nick
res = {"status": status, "returned_at": time.time(), "layers": [lay.get_name() for lay in img.get_layers()],
       "src_unchanged": pix(src) == before, "dirty": img.is_dirty(), "images": len(Gimp.get_images())}
tmp = os.path.join(P["out"], "cancel.json.tmp")
with open(tmp, "w") as f:
    json.dump(res, f)
os.replace(tmp, os.path.join(P["out"], "cancel.json"))
