"""What this process can run on: usable CPU cores and which optional runtimes import.

Shared by the backends (onnx_backend.py, ncnn_backend.py) and the importer so that no backend
imports another one (onnx_backend's ``device="auto"`` needs to know whether ncnn is there;
ncnn_backend needs the thread count). Standard library only; the probes import the runtime
package but load nothing.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional


def cpu_threads() -> int:
    """The CPU cores this process may use: ``$ENHANCELAYER_THREADS`` when set (a Ray worker
    gets the CPUs its task reserved, so two tasks on one machine do not fight over the cores),
    else its affinity mask where the OS has one."""
    forced = os.environ.get("ENHANCELAYER_THREADS", "").strip()
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


_cpu_sessions: dict[str, object] = {}
_cpu_sessions_lock = threading.Lock()


def cpu_session(path: os.PathLike[str] | str) -> Any:
    """An ONNX Runtime CPU session for a small helper network (text detector, dust detector),
    created once per process and shared: these run beside the model backends, not through them,
    and loading one costs more than running it on a small image."""
    import onnxruntime as ort

    key = str(path)
    with _cpu_sessions_lock:
        s = _cpu_sessions.get(key)
        if s is None:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = cpu_threads()
            s = ort.InferenceSession(key, opts, providers=["CPUExecutionProvider"])
            _cpu_sessions[key] = s
        return s


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


# ---------------------------------------------------------------------- Vulkan (ncnn's GPU path)
# ncnn's GpuInfo.type(): Vulkan's VkPhysicalDeviceType order
_VK_KINDS = {0: "discrete", 1: "integrated", 2: "virtual", 3: "cpu"}
_SOFTWARE_NAMES = ("llvmpipe", "lavapipe", "swiftshader", "softpipe")


@dataclass(frozen=True)
class VulkanDevice:
    """One Vulkan device ncnn can use."""

    index: int
    name: str
    kind: str               # discrete, integrated, virtual, cpu, other
    heap_mb: int            # ncnn's heap budget for it (what a tile may use)

    @property
    def software(self) -> bool:
        """A CPU rasteriser (Mesa llvmpipe/lavapipe, SwiftShader): correct, slow, never picked
        automatically — the CPU backends are ~10x faster on the same cores."""
        return self.kind == "cpu" or any(s in self.name.lower() for s in _SOFTWARE_NAMES)

    def describe(self) -> str:
        soft = ", software: only on request" if self.software else ""
        return f"vulkan:{self.index} {self.name} ({self.kind}, {self.heap_mb} MB heap{soft})"


_vulkan_cache: Optional[list[VulkanDevice]] = None
_vulkan_lock = threading.Lock()


def vulkan_devices() -> list[VulkanDevice]:
    """The Vulkan devices of ncnn's wheel (probed once per process, ~0.1 s). ncnn prints each
    device's capabilities to stderr when it starts Vulkan; that is muted here, so a CLI error
    stays one line. No ncnn, no Vulkan loader or no driver: an empty list."""
    global _vulkan_cache
    with _vulkan_lock:
        if _vulkan_cache is None:
            _vulkan_cache = _probe_vulkan() if ncnn_available() else []
        return list(_vulkan_cache)


def _probe_vulkan() -> list[VulkanDevice]:
    import ncnn

    with _stderr_muted():
        try:
            n = int(ncnn.get_gpu_count())
            out = []
            for i in range(n):
                info = ncnn.get_gpu_info(i)
                heap = int(ncnn.get_gpu_device(i).get_heap_budget())
                out.append(VulkanDevice(i, str(info.device_name()), _VK_KINDS.get(int(info.type()), "other"), heap))
        except Exception:  # noqa: BLE001 - a broken driver counts as no device
            return []
    return out


@contextmanager
def _stderr_muted():
    """File descriptor 2 to /dev/null for the duration (C code writes there, not sys.stderr)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def vulkan_gpu() -> Optional[VulkanDevice]:
    """The Vulkan device ``auto`` and ``vulkan`` use: the first real GPU, discrete before
    integrated; never a software device."""
    real = [d for d in vulkan_devices() if not d.software]
    real.sort(key=lambda d: (d.kind != "discrete", d.index))
    return real[0] if real else None
