"""What this process can run on: usable CPU cores and which optional runtimes import.

Shared by the backends (onnx_backend.py, ncnn_backend.py) and the importer so that no backend
imports another one (onnx_backend's ``device="auto"`` needs to know whether ncnn is there;
ncnn_backend needs the thread count). Standard library only; the probes import the runtime
package but load nothing.
"""
from __future__ import annotations

import os


def cpu_threads() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def ncnn_available() -> bool:
    """The ``ncnn`` pip package imports (a broken install counts as absent)."""
    try:
        import ncnn  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


def openvino_available() -> bool:
    """The ``openvino`` package imports (a broken install counts as absent)."""
    try:
        import openvino  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True
