"""Write engine/data/trained/manifest.json: sha256, size, licence and training facts of our own models
(the denoiser, the sharpener and restore-dust's detector).

Run after models/train/train.py (it reads <task>_train_summary*.json next to the ONNX files) and, for
the denoiser, models/train/chroma_filter.py (<task>_post.json: what was appended to the trained graph).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

TRAINED = Path(__file__).resolve().parents[2] / "engine" / "data" / "trained"
LICENSE = "MIT (trained by EnhanceLayer, see models/train/)"
SCRIPTS = {"dust": "models/train/train_dust.py"}
IO = {"dust": "input 'input' N,3,H,W float32 RGB 0..1 (any H, W); output 'output' N,1,H,W: probability that "
              "the pixel is dust or a scratch (restore-dust's detector)"}


def main() -> None:
    models = {}
    for name in ("denoise", "sharpen", "dust"):
        p = TRAINED / f"{name}.onnx"
        if not p.is_file():
            continue
        stages = [json.loads(q.read_text()) for q in sorted(TRAINED.glob(f"{name}_train_summary_stage*.json"))]
        post = TRAINED / f"{name}_post.json"
        models[name] = {
            "file": p.name,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "bytes": p.stat().st_size,
            "license": LICENSE,
            "script": SCRIPTS.get(name, "models/train/train.py"),
            "reproduce": "models/train/reproduce.sh",
            "params": stages[-1]["params"] if stages else None,
            "train_seconds_total": round(sum(st["train_seconds"] for st in stages), 1),
            "io": IO.get(name, "input 'input' N,3,H,W float32 RGB 0..1 (any H, W); output 'output' same shape, "
                               "not clipped"),
            "training_stages": stages,
        }
        if post.is_file():
            models[name]["post_processing"] = json.loads(post.read_text())
    out = {"format": 1, "models": models}
    (TRAINED / "manifest.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v["sha256"] for k, v in models.items()}))


if __name__ == "__main__":
    main()
