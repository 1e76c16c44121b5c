"""``enhancelayer doctor``: what this machine can run, and what is missing, in one screen.

Every check is a (name, ok, detail) row; nothing here raises for a missing optional part.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    name: str
    ok: bool | None          # None = optional part absent (not an error)
    detail: str


def _mem() -> str:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        avail = os.sysconf("SC_AVPHYS_PAGES")
        return f"{pages * size / 2**30:.1f} GiB total, {avail * size / 2**30:.1f} GiB free"
    except (ValueError, OSError, AttributeError):
        return "unknown"


def _gpus() -> list[str]:
    """NVIDIA GPUs with memory via nvidia-smi when present (no torch needed)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln.strip() for ln in out.splitlines() if ln.strip()]


def checks() -> list[Check]:
    from engine import paths
    from engine.models import catalog, registry
    from engine.models.backends.onnx_backend import available_providers, cpu_threads, resolve_device
    from engine.tasks.network import NetworkTask

    rows: list[Check] = [
        Check("python", sys.version_info >= (3, 10), f"{platform.python_version()} ({sys.executable})"),
        Check("platform", True, f"{platform.platform()} {platform.machine()}"),
        Check("cpu", True, f"{cpu_threads()} usable cores; {platform.processor() or platform.machine()}"),
        Check("memory", True, _mem()),
    ]
    try:
        import onnxruntime as ort

        rows.append(Check("onnxruntime", True, f"{ort.__version__}; providers: {', '.join(available_providers())}"))
    except Exception as e:  # noqa: BLE001
        rows.append(Check("onnxruntime", False, f"not importable: {e} (pip install onnxruntime)"))
    try:
        import openvino as ov

        devs = ov.Core().available_devices
        rows.append(Check("openvino", True, f"{ov.__version__.split('-')[0]}; devices: {', '.join(devs)}"))
    except Exception:  # noqa: BLE001
        rows.append(Check("openvino", None, "not installed (optional: pip install enhancelayer[openvino])"))
    from engine.models.backends.precision import doctor_line

    ok, text = doctor_line()
    rows.append(Check("precision", ok, text))
    gpus = _gpus()
    rows.append(Check("gpu", None if not gpus else True, "; ".join(gpus) if gpus else "no NVIDIA GPU found"))
    from engine.models.backends.runtimes import vulkan_devices, vulkan_gpu

    vk = vulkan_devices()
    rows.append(Check("vulkan", True if vulkan_gpu() else None,
                      "; ".join(d.describe() for d in vk) if vk else
                      "no Vulkan device (a GPU's Vulkan driver, or Mesa's mesa-vulkan-drivers for the software one)"))
    try:
        dev = resolve_device("auto")
        if dev == "cpu":   # CPU-only: the runtime is picked per model (CPU_AUTO, bench/results/backends.md)
            picks = {mid: resolve_device("auto", mid) for mid in ("photo-x2", "anime-video-x4", "illustration-x2",
                                                                 "photo-x4", "denoise")}
            dev = "CPU, per model: " + ", ".join(f"{k} -> {v}" for k, v in picks.items())
        rows.append(Check("device auto", True, dev))
    except Exception as e:  # noqa: BLE001
        rows.append(Check("device auto", False, str(e)))
    try:
        import torch

        rows.append(Check("torch extra", True, f"torch {torch.__version__}"))
    except Exception:  # noqa: BLE001
        rows.append(Check("torch extra", None, "not installed (only needed for user .pth/.safetensors models)"))
    try:
        import ncnn

        rows.append(Check("ncnn", True, f"{getattr(ncnn, '__version__', '?')} (import verification reference; "
                            "CPU backend for the 3x3-conv models)"))
    except Exception:  # noqa: BLE001
        rows.append(Check("ncnn", None, "not installed: 'enhancelayer import' cannot verify against ncnn"))

    rows.append(Check("models folder", True, str(paths.models_dir())))
    found, missing, bad = [], [], []
    for spec in catalog.CATALOG:          # the networks: classical tasks have no weights to check
        task = NetworkTask(spec)
        if not task.installed():
            missing.append(spec.id)
            continue
        try:
            task.verify()
            found.append(spec.id)
        except Exception:  # noqa: BLE001
            bad.append(spec.id)
    rows.append(Check("models installed", bool(found), f"{len(found)}: {', '.join(found) or '-'}"))
    if missing:
        wheel_missing = [m for m in missing if catalog.get(m).wheel_files]
        own_missing = [m for m in missing if not catalog.get(m).wheel_files]
        hint = []
        if wheel_missing:
            hint.append(f"{', '.join(wheel_missing)} (run 'enhancelayer import')")
        if own_missing:
            hint.append(f"{', '.join(own_missing)} (not trained yet, see models/README.md)")
        rows.append(Check("models missing", False if wheel_missing else None, "; ".join(hint)))
    if bad:
        rows.append(Check("models tampered", False,
                          f"{', '.join(bad)}: sha256 mismatch, run 'enhancelayer import --only <id>'"))
    try:
        rows.append(Check("text detector", True, str(registry.text_detector_path())))
    except Exception as e:  # noqa: BLE001
        rows.append(Check("text detector", False, str(e)))
    rows.extend(host_checks())
    users = registry.user_models()
    rows.append(Check("user models", None if not users else True,
                      f"{len(users)} in {paths.user_models_dir()}" + (": " + ", ".join(p.name for p in users)
                                                                       if users else "")))
    return rows


def host_checks(system_python_libs: Path = Path("/usr/lib/python3/dist-packages")) -> list[Check]:
    """Krita and GIMP 3 as the plug-ins need them.

    Debian's Krita lists PyQt5 and sip only as "Recommends": without them its Python (and so
    the plug-in) silently fails to load, the most common "the menu never appears".
    """
    rows: list[Check] = []
    krita = shutil.which("krita")
    if not krita:
        rows.append(Check("krita", None, "not found (the Krita plug-in needs Krita 5)"))
    elif sys.platform.startswith("linux") and krita.startswith("/usr/bin") and system_python_libs.is_dir() \
            and not (system_python_libs / "PyQt5").is_dir():
        rows.append(Check("krita", False, f"{krita}, but its Python lacks PyQt5: apt-get install python3-pyqt5 "
                                          "python3-sip (python3-pyqt5.sip on Debian 13), or the plug-in cannot load"))
    else:
        rows.append(Check("krita", True, krita))
    gimp = shutil.which("gimp-3.0") or shutil.which("gimp-console-3.0")
    rows.append(Check("gimp 3", True if gimp else None, gimp or "not found (GIMP 2.10 has no Python 3 plug-ins)"))
    return rows
