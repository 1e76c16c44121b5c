"""EnhanceLayer for Krita: local AI enhancement of the selection into a new masked layer.

Thin by design: ``core`` does the document work (no widgets, driven by the tests inside
real Krita), ``ui`` holds the docker and the run controller, ``extension`` the menu action;
the engine client and the host-independent plug-in core are vendored as
``enhancelayer_client`` by install_krita.py.
"""
try:
    import krita
except ImportError:  # imported outside Krita (a linter, the unit tests): nothing to register
    krita = None  # type: ignore[assignment]


def _register() -> None:
    """Add the extension (menu action) and the docker to the running Krita."""
    from .extension import EnhanceLayerExtension
    from .ui import EnhanceDocker

    app = krita.Krita.instance()
    app.addExtension(EnhanceLayerExtension(app))
    app.addDockWidgetFactory(krita.DockWidgetFactory("enhancelayer_docker",
                                                     krita.DockWidgetFactoryBase.DockRight, EnhanceDocker))


# A ``krita`` without ``Krita`` is not Krita's module: a folder named krita on sys.path (the
# host tests' tests/hosts/krita/ when pytest collects them) imports as a namespace package.
_app_class = getattr(krita, "Krita", None)
if _app_class is not None and _app_class.instance() is not None:
    _register()
