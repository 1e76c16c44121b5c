"""Reduced precision on the CPU: bf16 through OpenVINO where this CPU has bf16 units, chosen per
model by measurement, and a switch for full precision.

CPUs with AMX or AVX-512 BF16 (Intel Sapphire Rapids and later, AMD Zen 4 and later) run a
network's convolutions in bfloat16 several times faster than in float32: measured here on
photo-x2 2.6x and on photo-x4 6.9x the ncnn fp32 runtime (bench/results/precision.md). bf16
keeps 8 bits of mantissa, so the output is no longer bit-identical to the upstream model's:
on real photos it stays 53-54 dB from fp32 (a few 8-bit steps at the very worst pixel).

``device="auto"`` on a CPU-only machine therefore runs a model in bf16 when all of these hold:

* the precision setting is ``auto`` (``ENHANCELAYER_PRECISION=full``, or ``--precision full``
  on the CLI and ``serve``, keeps every model in float32: bit-faithful output);
* OpenVINO reports BF16 among this CPU's capabilities (:func:`bf16_cpu`);
* a one-time measurement on this machine (:func:`decide`, cached per model file, OpenVINO
  version and CPU in the cache folder) finds the bf16 output at least :data:`FLOOR_DB` from the
  float32 runtime ``auto`` would otherwise use, on a real photo crop, AND at least
  :data:`MIN_SPEEDUP` faster than it.

Explicit devices keep their precision: ``cpu``, ``ncnn``, ``openvino`` are float32,
``openvino-bf16`` is bf16 (refused on a CPU without bf16 units).
"""
from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EnhanceError

PRECISION_ENV = "ENHANCELAYER_PRECISION"
MODES = ("auto", "full")
BF16_DEVICE = "openvino-bf16"
FLOOR_DB = 40.0          # bf16 output vs float32, PSNR on RGB (the fidelity floor)
MIN_SPEEDUP = 1.2        # bf16 must beat the float32 runtime by this much to be worth its error
_CACHE_FILE = "precision.json"
_lock = threading.Lock()


def precision_mode() -> str:
    """``auto`` (reduced precision where measured faithful and faster) or ``full`` (float32 always)."""
    mode = (os.environ.get(PRECISION_ENV, "") or "auto").strip().lower()
    if mode not in MODES:
        raise EnhanceError(f"precision {mode!r} (--precision / {PRECISION_ENV}): use one of {', '.join(MODES)}")
    return mode


@lru_cache(maxsize=1)
def bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (OpenVINO's CPU capabilities list BF16)."""
    from engine.models.backends.runtimes import openvino_available

    if not openvino_available():
        return False
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - no usable OpenVINO CPU plug-in: no bf16
        return False


@dataclass
class Decision:
    """What the measurement found for one model on this machine."""

    use: bool
    psnr_db: float          # bf16 vs float32 on the probe crop (RGB, 0..1 scale)
    max_lsb: float          # largest difference, in 8-bit steps
    speedup: float          # float32 time / bf16 time on the probe crop (min of 2 runs each, after the fidelity run)
    versus: str             # the float32 runtime compared with


# Decisions already made or read in this process, by (cache file, key): a job's model load asks for
# the decision every time, and the key (file size and mtime, runtime versions) already says
# when it would change, so the JSON file is read once per process and model, not per job.
_seen: dict[tuple[str, str], Decision] = {}


def _cache_path() -> Path:
    from engine.paths import cache_dir

    return cache_dir() / _CACHE_FILE


def _key(model_id: str, path: Path, versus: str) -> str:
    import openvino as ov

    st = path.stat()
    return "|".join((model_id, str(st.st_size), str(int(st.st_mtime)), ov.__version__, platform.processor()
                     or platform.machine(), str(os.cpu_count()), versus))


def probe_image() -> np.ndarray:
    """The probe crop: the engine's verification photo (a real face crop, 88x72), small enough
    that the one-time measurement of a big network (photo-x4) takes seconds. float32 HxWx3 0..1."""
    from PIL import Image

    a = np.asarray(Image.open(Path(__file__).resolve().parents[2] / "data" / "verify-astronaut.png").convert("RGB"))
    return np.ascontiguousarray(a.astype(np.float32) / 255.0)


def measure(run_fp32: Callable[[np.ndarray], np.ndarray], run_bf16: Callable[[np.ndarray], np.ndarray],
            versus: str, x: np.ndarray | None = None) -> Decision:
    """Compare two runs of one model (HxWx3 float -> HxWx3 float) on the probe crop."""
    x = probe_image() if x is None else x
    ref = np.clip(run_fp32(x), 0.0, 1.0)
    low = np.clip(run_bf16(x), 0.0, 1.0)
    mse = float(np.mean((ref.astype(np.float64) - low) ** 2))
    psnr = 99.0 if mse == 0 else 10.0 * float(np.log10(1.0 / mse))

    def best(f: Callable[[np.ndarray], np.ndarray]) -> float:
        ts = []
        for _ in range(2):
            t0 = time.perf_counter()
            f(x)
            ts.append(time.perf_counter() - t0)
        return min(ts)
    speed = best(run_fp32) / max(best(run_bf16), 1e-9)
    max_lsb = float(np.abs(ref - low).max() * 255.0)
    return Decision(use=psnr >= FLOOR_DB and speed >= MIN_SPEEDUP, psnr_db=round(psnr, 2),
                    max_lsb=round(max_lsb, 2), speedup=round(speed, 2), versus=versus)


def decide(model_id: str, path: Path, versus: str, load: Callable[[str], Any]) -> Decision:
    """The measured decision for ``model_id`` (ONNX at ``path``) against the float32 runtime
    ``versus``, from the cache or measured now (``load(device)`` gives a loaded model with
    ``run``). A failure to build the bf16 model counts as "do not use"."""
    cache = _cache_path()
    key = _key(model_id, path, versus)
    seen = (str(cache), key)
    with _lock:
        if seen in _seen:
            return _seen[seen]
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}
        if isinstance(known.get(key), dict):
            try:
                d = _seen[seen] = Decision(**known[key])
                return d
            except TypeError:
                pass
        try:
            d = measure(load(versus).run, load(BF16_DEVICE).run, versus)
        except EnhanceError:
            d = Decision(use=False, psnr_db=0.0, max_lsb=255.0, speedup=0.0, versus=versus)
        known[key] = asdict(d)
        _seen[seen] = d
        try:
            from engine.paths import write_replacing

            write_replacing(cache, json.dumps(known, indent=1))
        except OSError:
            pass                      # a read-only cache: measured again next time
        return d


def decisions() -> dict[str, dict]:
    """Every cached decision (for ``doctor``), by model id (the latest entry per id)."""
    try:
        known = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k.split("|", 1)[0]: v for k, v in known.items() if isinstance(v, dict)}


def doctor_line() -> tuple[bool | None, str]:
    """(ok, text) for ``enhancelayer doctor``: bf16 units, the mode, what was measured so far."""
    try:
        mode = precision_mode()
    except EnhanceError as e:
        return False, str(e)
    if not bf16_cpu():
        return None, "no bf16 units on this CPU (or no OpenVINO): every model runs in float32"
    seen = "; ".join(f"{m} {'bf16' if d.get('use') else 'float32'} ({d.get('psnr_db')} dB, {d.get('speedup')}x)"
                     for m, d in sorted(decisions().items()))
    what = ("auto runs a model in bf16 where measured >= 40 dB from float32 and faster"
            if mode == "auto" else "full: float32 everywhere")
    return True, f"bf16 units: yes; precision {mode}: {what}" + (f"; measured: {seen}" if seen else "")
