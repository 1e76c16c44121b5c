"""The development study behind the denoiser's chroma filter (models/train/chroma_filter.py).

Development photos only, never the benchmark's (bench/quality.py): (1) wallpapers from Debian
packages that are neither training nor benchmark photos: every 14th-or-so of the .jpg files under
--wallpapers (lomiri-wallpapers, budgie-backgrounds, plasma-workspace-wallpapers, extracted as
models/train/README.md says), each shrunk to <= 1024 px, which also makes them very clean; (2) the
denoiser's own training photos from mate-backgrounds (--mate-dir; train.py's MATE_TRAIN) at their
native size, so with the JPEG and sensor noise a "clean" photo really has: a filter that only
looks harmless on spotless images is not chosen. Of each photo its most detailed and its flattest
256 px window (bench/quality.py's detail_crop / flat_crop). Noise: none, Gaussian 5/15/25/50,
luma-only 15, Poisson-Gaussian, and a spatially correlated Poisson-Gaussian (as demosaicking leaves),
each with a fixed seed per photo. For every radius / eps / full-weight level / clamp the filter
(chroma_filter.reference) runs on the committed graph's own network output with the noise level the
graph measured, and the RGB PSNR change against the network alone is printed: mean per condition,
the mean over all, and the worst change on a clean crop. The rule: the largest mean among the
settings that cost no clean crop, and no condition on average, more than CLEAN_COST.

    .venv/bin/python bench/denoise_chroma_study.py --wallpapers /tmp/wp/x \
        --mate-dir /tmp/mate/x/usr/share/backgrounds/mate/nature

``--luma`` runs the same photos, noises and rule for the brightness stage that follows the colour
one (chroma_filter.luma_reference: Lee's local linear MMSE filter of the luma, noise variance k x
the input's luma noise level squared, over a (2r+1)^2 window), on the colour stage's output, for
each radius r and k; its output: bench/results/denoise_luma_study.txt.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLEAN_COST = 0.05        # dB a clean crop may lose at most
NOISES = ("clean", "g5", "g15", "g25", "g50", "lum15", "pg", "pgcorr")


def _chroma_filter():
    from models.train import chroma_filter

    return chroma_filter


def degrade(kind: str, c: np.ndarray, r: np.random.Generator) -> np.ndarray:
    import cv2

    if kind == "clean":
        x = c
    elif kind.startswith("g"):
        x = c + r.normal(0, int(kind[1:]) / 255, c.shape)
    elif kind == "lum15":
        x = c + r.normal(0, 15 / 255, c.shape[:2])[..., None]
    elif kind == "pg":
        x = c + r.normal(0, 1, c.shape) * np.sqrt(0.01 * c + 0.02 ** 2)
    else:   # pgcorr
        n = cv2.GaussianBlur(r.normal(0, 1, c.shape).astype(np.float32), (0, 0), 0.7) * 2
        x = c + n * np.sqrt(0.01 * c + 0.02 ** 2)
    return (np.clip(np.round(x * 255), 0, 255) / 255).astype(np.float32)


def mate_training_photos() -> list[str]:
    """train.py's MATE_TRAIN, read from its source (train.py needs torch, this script does not)."""
    import ast

    tree = ast.parse((ROOT / "models" / "train" / "train.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MATE_TRAIN" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise SystemExit("MATE_TRAIN not found in models/train/train.py")


def photos(folder: Path, count: int, mate_dir: Path | None) -> dict[str, np.ndarray]:
    import cv2
    from PIL import Image

    from bench.quality import detail_crop, flat_crop

    files = sorted(p for p in folder.rglob("*.jpg") if "screenshot" not in p.name)
    files = files[::max(1, len(files) // count)][:count]
    if mate_dir is not None:
        files += [mate_dir / f"{n}.jpg" for n in mate_training_photos()]
    out = {}
    for f in files:
        a = np.asarray(Image.open(f).convert("RGB"), np.float32) / np.float32(255)
        s = 1024 / max(a.shape[:2])
        if s < 1 and f.parent != mate_dir:
            a = np.asarray(cv2.resize(a, (int(a.shape[1] * s), int(a.shape[0] * s)), interpolation=cv2.INTER_AREA))
        group = "native" if f.parent == mate_dir else "wp"
        out[f"{f.name}/{group}-detail"] = detail_crop(a, 256)
        out[f"{f.name}/{group}-flat"] = flat_crop(a, 256)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wallpapers", type=Path, required=True)
    ap.add_argument("--count", type=int, default=14)
    ap.add_argument("--mate-dir", type=Path, default=None, help="mate-backgrounds' nature/ folder")
    ap.add_argument("--luma", action="store_true", help="study the brightness stage (on the colour stage's output)")
    args = ap.parse_args(argv)
    cf = _chroma_filter()
    run = cf.with_network_output(ROOT / "engine" / "data" / "trained" / "denoise.onnx")
    if args.luma:
        grid: list[tuple] = list(itertools.product((3, 5, 7, 9), (0.02, 0.03, 0.05, 0.08)))
        header = "radius k"
    else:
        grid = list(itertools.product((3, 4, 6), (1e-4,), (3, 5, 8), (0.5, 1.0, 2.0, np.inf)))
        header = "radius eps full_at clamp"
    gain: dict[tuple[str, tuple], list[float]] = {}
    clean_worst: dict[tuple, float] = {}

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - b) ** 2)))

    for name, c in photos(args.wallpapers, args.count, args.mate_dir).items():
        for kind in NOISES:
            x = degrade(kind, c, np.random.default_rng(zlib.crc32(f"{name}/{kind}".encode())))
            _, net, level, luma = run(x)
            # --luma: the base is the shipped colour stage alone (not computed otherwise)
            colour = cf.reference(net.transpose(2, 0, 1), level) if args.luma else None
            base = psnr(net if colour is None else colour.transpose(1, 2, 0), c)
            for g in grid:
                if colour is not None:
                    out = cf.luma_reference(colour, luma, g[0], g[1]).transpose(1, 2, 0)
                else:
                    out = cf.reference(net.transpose(2, 0, 1), level, g[0], g[1], g[2] / 255, g[3]).transpose(1, 2, 0)
                d = psnr(out, c) - base
                gain.setdefault((f"{name.rsplit('/', 1)[1]}-{kind}", g), []).append(d)
                if kind == "clean":
                    clean_worst[g] = min(clean_worst.get(g, 0.0), d)
    conds = sorted({k[0] for k in gain})
    print(header + " | " + " ".join(conds) + " | mean | worst clean")
    mean_of = {}
    for g in grid:
        means = [float(np.mean(gain[(c, g)])) for c in conds]
        mean_of[g] = float(np.mean(means))
        print(" ".join(f"{v:g}" for v in g) + " | " + " ".join(f"{m:+.2f}" for m in means)
              + f" | {mean_of[g]:+.3f} | {clean_worst[g]:+.3f}")
    worst_kind = {g: min(float(np.mean(gain[(c, g)])) for c in conds) for g in grid}
    ok = [g for g in grid if clean_worst[g] >= -CLEAN_COST and worst_kind[g] >= -CLEAN_COST]
    if ok:
        g = max(ok, key=lambda k: mean_of[k])
        print(f"rule (largest mean gain; no clean crop and no condition's mean below -{CLEAN_COST} dB): "
              f"{header} = {' '.join(f'{v:g}' for v in g)}: {mean_of[g]:+.3f} dB, "
              f"worst condition {worst_kind[g]:+.3f} dB, worst clean {clean_worst[g]:+.3f} dB")
    else:
        print(f"no setting keeps every clean crop and condition within {CLEAN_COST} dB: no filter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
