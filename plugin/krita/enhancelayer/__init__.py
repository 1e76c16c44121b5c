"""EnhanceLayer for Krita: local AI enhancement of the selection into a new masked layer.

Thin by design: ``core`` does the document work (no widgets, driven by the tests inside
real Krita), ``ui`` holds the docker and the run controller, the engine client is vendored
as ``enhancelayer_client`` by install_krita.py.
"""
try:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita
except ImportError:  # imported outside Krita (e.g. by a linter): nothing to register
    Krita = None

if Krita is not None and Krita.instance() is not None:
    from .extension import EnhanceLayerExtension
    from .ui import EnhanceDocker

    _app = Krita.instance()
    _app.addExtension(EnhanceLayerExtension(_app))
    _app.addDockWidgetFactory(DockWidgetFactory("enhancelayer_docker",
                                                DockWidgetFactoryBase.DockRight, EnhanceDocker))
