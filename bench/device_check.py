"""The GPU check in one run (issue 19 item 2): on a machine with an NVIDIA GPU, after

    python3 install.py --gpu                     # the gpu extra (onnxruntime-gpu) + the models
    .venv/bin/python bench/device_check.py --out gpu-results/

it writes, section by section as they finish (so a run cut short still leaves what it measured):

1. ``environment``: nvidia-smi, ONNX Runtime's version and providers, ncnn's Vulkan devices;
2. ``fidelity``: each model on each GPU device (CUDA, TensorRT, a real Vulkan GPU) against the
   ncnn CPU float32 reference on the import check's real photo crop: PSNR on RGB, and pass/fail
   against the importer's bound (``importer.MIN_PSNR_DB``; fp16 devices against 40 dB);
3. ``speed``: ms per input megapixel (min of the rounds, every device in rotation within this
   process) and the ratio to ncnn CPU float32 on the same crop;
4. ``photo-x4, 20 MP``: one 5472x3648 image end to end through the pipeline on the GPU device
   (tile plan from the free VRAM), in a child process with a time limit, with the peak GPU memory
   polled from nvidia-smi.

Each section has a share of ``--minutes`` (default 12: one run and a rerun fit a 15-minute GPU
slot). Without a GPU the sections say so and the script still runs on ``--devices cpu`` (the
test suite runs it that way with ``--quick``, so the script is known to work before a GPU is lent).
Results: ``<out>/results.md`` and ``results.json``; commit them as bench/results/gpu.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ("photo-x2", "anime-video-x2", "photo-x4")
FP16_FLOOR_DB = 40.0


def _gpu_devices() -> list[str]:
    from engine.models.backends.onnx_backend import GPU_PROVIDERS, available_providers
    from engine.models.backends.runtimes import vulkan_gpu

    provs = available_providers()
    devs = [d for d in ("cuda", "tensorrt") if GPU_PROVIDERS[d] in provs]
    gpu = vulkan_gpu()
    if gpu is not None:
        devs.append(f"vulkan:{gpu.index}")
    return devs


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    from engine.models.backends.runtimes import vulkan_devices

    smi = shutil.which("nvidia-smi")
    gpu = (subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=20).stdout.strip() if smi else "no nvidia-smi")
    return {"machine": platform.machine(), "cpu": platform.processor(), "nvidia": gpu,
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "vulkan": [d.describe() for d in vulkan_devices()], "gpu_devices": _gpu_devices()}


def _crop(model_id: str, side: int) -> np.ndarray:
    from engine.models import catalog, importer

    crop, _where = importer.verification_image(catalog.get(model_id))
    return np.ascontiguousarray(crop[:side, :side].astype(np.float32))


def fidelity_and_speed(devices: list[str], side: int, rounds: int, deadline: float) -> list[dict[str, Any]]:
    from engine.models import importer
    from engine.models.backends import load_model, prepost

    rows: list[dict[str, Any]] = []
    for mid in MODELS:
        x = _crop(mid, side // 2 if mid == "photo-x4" else side)
        ref_model = load_model(mid, "ncnn")
        ref = ref_model.run(x)
        models = {"ncnn-cpu": ref_model}
        for dev in devices:
            try:
                models[dev] = load_model(mid, dev)
                models[dev].run(x)                      # warm-up (TensorRT builds its engine here)
            except Exception as e:  # noqa: BLE001 - one device failing is a result, not the end
                rows.append({"model": mid, "device": dev, "error": str(e).splitlines()[0][:200]})
                models.pop(dev, None)
        times: dict[str, list[float]] = {k: [] for k in models}
        names = list(models)
        for i in range(rounds):
            if time.monotonic() > deadline:
                break
            for k in names[i % len(names):] + names[:i % len(names)]:
                t0 = time.perf_counter()
                models[k].run(x)
                times[k].append(time.perf_counter() - t0)
        mp = x.shape[0] * x.shape[1] / 1e6
        for k, m in models.items():
            if k == "ncnn-cpu" or not times[k]:
                continue
            p = prepost.psnr(ref, m.run(x))
            floor = FP16_FLOOR_DB if k.startswith(("tensorrt", "vulkan")) else importer.MIN_PSNR_DB
            rows.append({"model": mid, "device": k, "input": f"{x.shape[1]}x{x.shape[0]}", "psnr_db": p,
                         "floor_db": floor, "pass": bool(p >= floor),
                         "ms_per_mp": min(times[k]) * 1000 / mp,
                         "speed_vs_ncnn_cpu": min(times["ncnn-cpu"]) / min(times[k])})
        if time.monotonic() > deadline:
            rows.append({"model": "-", "device": "-", "error": "time share used up: later models not measured"})
            break
    return rows


def big_photo(device: str, h: int, w: int, limit_s: float) -> dict[str, Any]:
    """photo-x4 on an h x w image in a child process (time limit), peak GPU memory polled."""
    cmd = [sys.executable, __file__, "--child-big", device, str(h), str(w)]
    peak = [0]
    stop = threading.Event()
    smi = shutil.which("nvidia-smi")

    def poll() -> None:
        while smi and not stop.is_set():
            out = subprocess.run([smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out and out[0].isdigit():
                peak[0] = max(peak[0], int(out[0]))
            stop.wait(0.5)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s)
    except subprocess.TimeoutExpired:
        return {"device": device, "size": f"{w}x{h}", "error": f"not done within {limit_s:.0f} s"}
    finally:
        stop.set()
        th.join()
    if p.returncode != 0:
        return {"device": device, "size": f"{w}x{h}", "error": (p.stderr.strip().splitlines() or ["?"])[-1][:300]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res.update(device=device, size=f"{w}x{h}", peak_gpu_mb=peak[0] if smi else None)
    return res


def child_big(device: str, h: int, w: int) -> None:
    """The big-photo run itself (in its own process): a smooth random image, the default plan."""
    from engine.models.backends import load_model
    from engine.pipeline import EnhanceOptions, enhance

    m = load_model("photo-x4", device)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.2, 0.8, w, dtype=np.float32)[None, :, None]
    x = np.clip(rng.random((h, w, 3), dtype=np.float32) * 0.2 + ramp, 0, 1).astype(np.float32)
    t = time.monotonic()
    r = enhance(x, EnhanceOptions(model="photo-x4", device=device), model=m)
    print(json.dumps({"seconds": time.monotonic() - t, "tile": r.tile, "tiles": r.tiles, "out": list(r.image.shape),
                      "runtime": m.device,
                      "info": {k: v for k, v in r.info.items() if isinstance(v, (int, float, str))}}))


def write(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    env = results.get("environment", {})
    lines = ["# GPU check (bench/device_check.py)", "",
             f"{time.strftime('%Y-%m-%d')}; GPU: {env.get('nvidia', '?')}; ONNX Runtime {env.get('onnxruntime', '?')} "
             f"providers {env.get('providers', '?')}; Vulkan: {env.get('vulkan', '?')}.", ""]
    if results.get("fidelity"):
        lines += ["| model | device | input | PSNR vs ncnn CPU fp32 (dB) | floor | pass | ms per MP | vs ncnn CPU |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["fidelity"]:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['device']} | error: {r['error']} ||||||")
            else:
                lines.append(f"| {r['model']} | {r['device']} | {r['input']} | {r['psnr_db']:.1f} | "
                             f"{r['floor_db']:.0f} | {'yes' if r['pass'] else 'NO'} | {r['ms_per_mp']:,.0f} | "
                             f"{r['speed_vs_ncnn_cpu']:.1f}x |")
    for r in results.get("big", []):
        lines += ["", f"photo-x4 end to end, {r['size']} on {r['device']}: " +
                  (f"error: {r['error']}" if "error" in r else
                   f"{r['seconds']:.0f} s, runtime {r['runtime']}, tile {r['tile']} ({r['tiles']} tiles), "
                   f"peak GPU memory {r['peak_gpu_mb']} MB, info {r['info']}")]
    for note in results.get("notes", []):
        lines += ["", note]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child-big", nargs=3, metavar=("DEVICE", "H", "W"), help=argparse.SUPPRESS)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--devices", nargs="*", help="default: every GPU device found (cuda, tensorrt, vulkan:N)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a check of the script itself)")
    a = ap.parse_args()
    if a.child_big:
        child_big(a.child_big[0], int(a.child_big[1]), int(a.child_big[2]))
        return 0
    if a.out is None:
        ap.error("--out is required")
    t0 = time.monotonic()
    budget = a.minutes * 60
    results: dict[str, Any] = {"environment": environment(), "notes": []}
    write(a.out, results)
    devices = a.devices if a.devices is not None else results["environment"]["gpu_devices"]
    if not devices:
        results["notes"].append("No GPU device found (no CUDA/TensorRT provider, no real Vulkan GPU): "
                                "nothing to measure. Install the gpu extra: python3 install.py --gpu")
        write(a.out, results)
        return 1
    side, rounds = (64, 2) if a.quick else (256, 5)
    results["fidelity"] = fidelity_and_speed(devices, side, rounds, t0 + 0.45 * budget)
    write(a.out, results)
    h, w = (96, 144) if a.quick else (3648, 5472)
    main_dev = next((d for d in devices if d == "cuda"), devices[0])   # TensorRT builds an engine per tile shape
    results["big"] = [big_photo(main_dev, h, w, max(30.0, budget - (time.monotonic() - t0) - 20))]
    write(a.out, results)
    print((a.out / "results.md").read_text())
    return 0 if all(r.get("pass", True) and "error" not in r for r in results["fidelity"]) else 2


if __name__ == "__main__":
    sys.exit(main())
