# Batch code for the FULL gimp under Xvfb: calls AI Enhance… INTERACTIVELY with the model the
# params name; the test drives the task-first dialog with real keys (xdotool) and presses OK,
# and this records what the procedure returned and which layers the image holds afterwards.
import json
import os

P = json.load(open(os.environ["ELCI_PARAMS"]))
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(P["photo"]))
Gimp.Display.new(img)
src = img.get_layers()[0]
if P.get("select"):
    img.select_rectangle(Gimp.ChannelOps.REPLACE, *P["select"])
img.clean_all()
proc = Gimp.get_pdb().lookup_procedure("python-fu-enhancelayer")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [src])
cfg.set_property("model", P["model"])
ret = proc.run(cfg)
res = {"status": ret.index(0).value_nick, "layers": [lay.get_name() for lay in img.get_layers()]}
tmp = os.path.join(P["out"], "dialog.json.tmp")
with open(tmp, "w") as f:
    json.dump(res, f)
os.replace(tmp, os.path.join(P["out"], "dialog.json"))
