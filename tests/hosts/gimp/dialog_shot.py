# Batch code for the FULL gimp under Xvfb (README screenshot, not a test): opens the photo
# in a display, selects an ellipse and calls AI Enhance… interactively, so its
# GimpUi.ProcedureDialog stays on screen until the caller takes the screenshot and quits.
import os

img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.environ["ELCI_PHOTO"]))
Gimp.Display.new(img)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 150, 60, 220, 260)
Gimp.displays_flush()
proc = Gimp.get_pdb().lookup_procedure("python-fu-enhancelayer")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", img.get_selected_layers())
proc.run(cfg)
