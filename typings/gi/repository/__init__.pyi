"""GObject-introspection namespaces the GIMP plug-in uses (Gimp 3.0, Gegl 0.4, GLib, GObject,
GimpUi 3.0, Gtk 3.0): small hand-written stubs of the API it calls."""
