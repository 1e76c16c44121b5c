"""colorize quality: colour photos made black-and-white, coloured again from a few hint strokes.

    .venv/bin/python bench/quality_colorize.py          # writes bench/results/quality_colorize.md + docs image
    .venv/bin/python bench/quality_colorize.py --dev    # the development photo only, printed

Hints (written here, seeded): STROKES short strokes (5-15 px long, 3 px wide) at random places,
each painted in ONE colour: the true colour at its centre, as a retoucher picks one colour per
stroke. The input is the photo's BT.601 luma, repeated to RGB.

Compared: the gray image itself (no colour), a sepia tone of it, our reimplementation of
Levin, Lischinski & Weiss 2004 as the paper states it (YUV chroma, the exact solve at full
size) and the engine's ``colorize`` (a*b* chroma; the solve on <= WORK_MP megapixels, brought
back with a guided filter). Metrics against the original colour photo: mean CIEDE2000
(skimage.color.deltaE_ciede2000 on CIELAB), PSNR of a*, b* (in units of 100, i.e. peak 100)
and PSNR on RGB (the luma is the input's in every method except sepia, so RGB differences
are colour differences). Times on this machine's CPU.

Development photo (the choices in engine/tasks/colorize.py were made on it): stereo_motorcycle
(its left view). Test photos: astronaut, chelsea, coffee, rocket, grace_hopper (nothing fitted
on them).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.tasks import colorize as cz  # noqa: E402

real_photo = importlib.import_module("real_photos").real_photo
RESULTS = ROOT / "bench" / "results" / "quality_colorize.md"
SHEET = ROOT / "docs" / "images" / "colorize-example.png"
DEV = ("stereo_motorcycle",)
TEST = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper")
STROKES = 40
Y601 = np.array([0.299, 0.587, 0.114], np.float32)


def photo(name: str) -> np.ndarray:
    if name == "stereo_motorcycle":
        from skimage import data
        return data.stereo_motorcycle()[0].astype(np.float32) / 255.0
    return real_photo(name)


def strokes(rgb: np.ndarray, n: int = STROKES, seed: int = 0) -> np.ndarray:
    """An RGBA float hints image: n short one-colour strokes, the true colour at each centre."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    hints = np.zeros((h, w, 4), np.float32)
    for _ in range(n):
        cy, cx = int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
        ang = rng.uniform(0, np.pi)
        half = rng.uniform(2.5, 7.5)
        dy, dx = half * np.sin(ang), half * np.cos(ang)
        colour = tuple(float(v) for v in rgb[cy, cx]) + (1.0,)
        cv2.line(hints, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), colour, 3)
    return hints


def gray_of(rgb: np.ndarray) -> np.ndarray:
    return np.repeat((rgb @ Y601)[..., None], 3, axis=2).astype(np.float32)


def sepia(gray: np.ndarray) -> np.ndarray:
    tone = np.array([1.07, 0.95, 0.76], np.float32)
    out = gray * tone
    return np.clip(out + (gray[..., :1] - out @ Y601[:, None]), 0, 1)


def levin_yuv(gray: np.ndarray, hints: np.ndarray) -> np.ndarray:
    """The paper's method: YUV chroma from the hints, solved at full size."""
    where = hints[..., 3] >= 0.5
    y = gray[..., 0]
    ycc = cv2.cvtColor(np.ascontiguousarray(hints[..., :3]), cv2.COLOR_RGB2YCrCb)
    c = cz.propagate(y, ycc[..., 1:], where)
    out = cv2.cvtColor(np.dstack([y, c]).astype(np.float32), cv2.COLOR_YCrCb2RGB)
    return np.clip(out, 0, 1)


def metrics(out: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    from skimage.color import deltaE_ciede2000, rgb2lab

    lo, lt = rgb2lab(out.astype(np.float64)), rgb2lab(truth.astype(np.float64))
    de = float(np.mean(deltaE_ciede2000(lt, lo)))
    mse_ab = float(np.mean(((lo[..., 1:] - lt[..., 1:]) / 100.0) ** 2))
    mse = float(np.mean((out.astype(np.float64) - truth) ** 2))
    return de, 10 * np.log10(1.0 / max(mse_ab, 1e-12)), 10 * np.log10(1.0 / max(mse, 1e-12))


def run(names: tuple[str, ...]) -> tuple[list[dict], dict[str, float]]:
    rows, secs, mps = [], {"levin": 0.0, "colorize": 0.0}, 0.0
    for name in names:
        truth = photo(name)
        gray = gray_of(truth)
        hints = strokes(truth)
        colours, where = cz.hints_of(hints, gray.shape[:2])
        res = {"gray": gray, "sepia": sepia(gray)}
        t = time.perf_counter()
        res["levin"] = levin_yuv(gray, hints)
        secs["levin"] += time.perf_counter() - t
        t = time.perf_counter()
        res["colorize"] = cz.colorize(gray, colours, where)
        secs["colorize"] += time.perf_counter() - t
        mps += gray.shape[0] * gray.shape[1] / 1e6
        row: dict = {"photo": name, "size": f"{gray.shape[1]}x{gray.shape[0]}", "hint_px": int(where.sum())}
        row.update({k: metrics(v, truth) for k, v in res.items()})
        rows.append(row)
        print(name, "  ".join(f"{k} dE {row[k][0]:.2f} ab {row[k][1]:.2f} rgb {row[k][2]:.2f}" for k in res),
              flush=True)
    return rows, {k: v / mps for k, v in secs.items()}


def sheet(names: tuple[str, ...], out: Path) -> None:
    tiles = []
    for name in names:
        truth = cv2.resize(photo(name), (256, 256), interpolation=cv2.INTER_AREA)
        gray = gray_of(truth)
        hints = strokes(truth, n=STROKES // 2)
        shown = np.where(hints[..., 3:] > 0.5, hints[..., :3], gray)
        colours, where = cz.hints_of(hints, gray.shape[:2])
        row = [shown, cz.colorize(gray, colours, where), truth]
        tiles.append(np.concatenate([np.pad(a, ((4, 4), (4, 4), (0, 0)), constant_values=1.0) for a in row], 1))
    grid = np.concatenate(tiles, 0)
    head = np.ones((28, grid.shape[1], 3), np.float32)
    for k, text in enumerate(("gray + hint strokes", "colorize", "original")):
        cv2.putText(head, text, (k * 264 + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([head, grid], 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", action="store_true")
    args = ap.parse_args()
    dev, _ = run(DEV)
    if args.dev:
        return
    rows, spm = run(TEST)
    meths = ("gray", "sepia", "levin", "colorize")
    mean = {m: [float(np.mean([r[m][i] for r in rows])) for i in range(3)] for m in meths}
    ratio = max(r["colorize"][0] / r["gray"][0] for r in rows)
    sheet(("astronaut", "chelsea", "coffee"), SHEET)
    lines = [
        "# colorize quality (bench/quality_colorize.py)", "", __doc__.split("\n\n", 1)[1].strip(), "",
        f"## Test photos ({STROKES} strokes each)", "",
        "| photo | size | hint px | " + " | ".join(f"{m}: dE00 / a*b* dB / RGB dB" for m in meths) + " |",
        "|---|---|---|" + "---|" * len(meths),
    ]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['size']} | {r['hint_px']} | "
                     + " | ".join(f"{r[m][0]:.2f} / {r[m][1]:.2f} / {r[m][2]:.2f}" for m in meths) + " |")
    lines.append("| **mean** | | | " + " | ".join(f"**{mean[m][0]:.2f}** / {mean[m][1]:.2f} / {mean[m][2]:.2f}"
                                                for m in meths) + " |")
    lines += ["",
              f"- colorize's dE00 is at most {ratio:.2f}x the gray image's on every test photo (target <= 0.3x); "
              f"mean {mean['colorize'][0]:.2f} vs Levin (paper, full size) {mean['levin'][0]:.2f}.",
              f"- time: colorize {spm['colorize']:.1f} s per MP, Levin at full size {spm['levin']:.1f} s per MP "
              "(this machine, 2 cores).",
              f"- development photo: colorize dE00 {dev[0]['colorize'][0]:.2f}, Levin {dev[0]['levin'][0]:.2f}, "
              f"gray {dev[0]['gray'][0]:.2f}.",
              "- Without hints the task refuses to run (no automatic colorization model: none ships offline "
              "weights; the one trained here coloured held-out photos further from the truth than gray and is not "
              "shipped: models/train/README.md, \"Automatic colorization\").", "",
              f"![gray + hint strokes, colorize, original](../../docs/images/{SHEET.name})", ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
