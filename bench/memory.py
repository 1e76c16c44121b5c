"""Peak memory of the pipeline on big photos under a memory budget (not a timed test).

    .venv/bin/python bench/memory.py                  # 1 and 5 MP (about 2 minutes on 2 cores)
    .venv/bin/python bench/memory.py --sizes 1 5 20 50 --budget 1.5GB

Each size runs in its own subprocess (so ru_maxrss is that run's peak): the input is the
NASA astronaut photo (public domain, bundled with scikit-image) resized to N megapixels
with Lanczos, 8-bit RGB; ``photo-x2`` at the default strength with grain, tiles from the
budget. Target (issue 4): peak RSS <= output bytes + budget, never an OOM kill.
Writes bench/results/memory.md (appends one row per size run).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "memory.md"


def child(mp: float, budget: str, model: str, device: str = "auto") -> None:
    import resource

    import cv2
    import numpy as np
    from skimage import data

    sys.path.insert(0, str(ROOT))
    from engine.batch import parse_size
    from engine.models.backends import load_model
    from engine.pipeline import GRAIN_DEFAULT, EnhanceOptions, enhance

    def rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    src = data.astronaut()
    side = int(round((mp * 1e6 / 1.5) ** 0.5))
    h, w = side, int(side * 1.5)
    img = cv2.resize(src, (w, h), interpolation=cv2.INTER_LANCZOS4)
    m = load_model(model, device)
    m.run(np.zeros((8, 8, 3), np.float32))
    base = rss()
    tiles: dict[str, int] = {}
    t = time.monotonic()
    res = enhance(img, EnhanceOptions(model=model, strength=0.6, grain=GRAIN_DEFAULT,
                                      memory_budget=parse_size(budget)),
                  progress=lambda d, n, s: tiles.update(n=n), model=m)
    dt = time.monotonic() - t
    print(json.dumps({"mp": h * w / 1e6, "w": w, "h": h, "peak": rss(), "base": base,
                      "input_bytes": img.nbytes, "output_bytes": res.image.nbytes,
                      "tile": res.tile, "tiles": tiles.get("n"), "seconds": dt,
                      "device": str(getattr(m, "device", device))}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 5])
    ap.add_argument("--budget", default="1.5GB")
    ap.add_argument("--model", default="photo-x2")
    ap.add_argument("--device", default="auto", help="auto (what users get), cpu (ONNX Runtime), ncnn, ...")
    ap.add_argument("--child", type=float)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.budget, a.model, a.device)
        return
    from engine.batch import parse_size

    budget = parse_size(a.budget)
    rows = []
    for mp in a.sizes:
        r = subprocess.run([sys.executable, __file__, "--child", str(mp), "--budget", a.budget,
                            "--model", a.model, "--device", a.device], capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            rows.append(f"| {mp:g} | failed (rc {r.returncode}) {r.stderr.strip().splitlines()[-1:]} |||||||")
            print(rows[-1], flush=True)
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        gb = 1 << 30
        ok = d["peak"] <= d["output_bytes"] + budget
        rows.append(f"| {d['mp']:.1f} ({d['w']}x{d['h']}) | {a.model} ({d['device']}) | {a.budget} | "
                    f"{d['tile']} / {d['tiles']} | "
                    f"{d['peak'] / gb:.2f} | {d['base'] / gb:.2f} | {d['input_bytes'] / gb:.3f} | "
                    f"{d['output_bytes'] / gb:.3f} | {(d['output_bytes'] + budget) / gb:.2f} "
                    f"{'yes' if ok else 'NO'} | {d['seconds']:.0f} |")
        print(rows[-1], flush=True)
    new = not RESULTS.exists()
    with RESULTS.open("a") as f:
        if new:
            f.write("# Peak memory (bench/memory.py)\n\nOne subprocess per size; ru_maxrss of that run. "
                    "Input: astronaut resized to N MP, u8 RGB; photo-x2, strength 60 %, grain on, "
                    "tiles from the budget. 2-core shared CPU host.\n\n"
                    "| input MP | model | budget | tile px / tiles | peak RSS GB | RSS before run GB "
                    "(python+ORT+input) | input GB | output GB | target GB (output + budget), met | seconds |\n"
                    "|---|---|---|---|---|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
