"""restore-fill quality: real photos with synthetic tears, holes and missing corners, filled.

    .venv/bin/python bench/quality_fill.py            # writes bench/results/quality_fill.md + docs image
    .venv/bin/python bench/quality_fill.py --dev      # the development photos only, printed

Damage (written here, seeded): a *hole* (an irregular blob), a *tear* (a thick wandering line
across the crop) and a *corner* (a triangle cut off a corner), each at three sizes, on a
288x288 crop of each photo. The fill sees the damaged crop and the damage mask, as a host
sends it.

Against OpenCV's Telea and Navier-Stokes diffusion inpainting (radius 5). Inside the damage:
PSNR on RGB and on luma (BT.601 Y) against the undamaged photo, SSIM (luma; the mean of the
SSIM map over the damage), and *texture*: the energy of the high frequencies (the photo minus
its Gaussian blur, sigma 1.5 px) inside the damage, relative to the undamaged photo's there
(1.0 = as textured as the original; diffusion fills are far below it). PSNR and SSIM reward a
smooth average guess, so alone they would crown the blur: they are read with the texture.

Development photos (the parameters of engine/tasks/restore_fill.py were chosen on them):
camera, stereo_motorcycle (its left view). Test photos (reported; nothing fitted on them):
astronaut, chelsea, coffee, rocket, grace_hopper, and the textures grass, gravel, brick.
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

from engine.tasks import restore_fill as rf  # noqa: E402

real_photo = importlib.import_module("real_photos").real_photo
RESULTS = ROOT / "bench" / "results" / "quality_fill.md"
SHEET = ROOT / "docs" / "images" / "fill-example.png"
DEV = ("camera", "stereo_motorcycle")
TEST = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper", "grass", "gravel", "brick")
SHAPES = ("hole", "tear", "corner")
SIZES = {"S": 16, "M": 32, "L": 56}
SIDE = 288
Y601 = np.array([0.299, 0.587, 0.114], np.float32)


def crop(name: str) -> np.ndarray:
    if name == "stereo_motorcycle":
        from skimage import data
        img = data.stereo_motorcycle()[0].astype(np.float32) / 255.0
    else:
        img = real_photo(name)
    h, w = img.shape[:2]
    y0, x0 = max(0, (h - SIDE) // 2), max(0, (w - SIDE) // 2)
    return np.ascontiguousarray(img[y0:y0 + SIDE, x0:x0 + SIDE])


def damage(shape: str, size: int, seed: int, side: int = SIDE) -> np.ndarray:
    """A bool mask of one kind of damage; ``size`` is its width (hole: diameter)."""
    rng = np.random.default_rng(seed)
    m = np.zeros((side, side), np.uint8)
    c = side // 2
    if shape == "hole":
        n = 9
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = size * rng.uniform(0.35, 0.65, n) * 1.4
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    elif shape == "tear":
        xs = np.linspace(0, side - 1, 12)
        ys = c + np.cumsum(rng.normal(0, side / 40, 12))
        pts = np.stack([xs, ys], 1).astype(np.int32)
        cv2.polylines(m, [pts], False, 1, thickness=max(2, size // 2))
    else:
        k = int(size * 2.2)
        pts = np.array([[side - 1, side - 1 - k], [side - 1, side - 1], [side - 1 - k, side - 1]], np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def _y(a: np.ndarray) -> np.ndarray:
    return a @ Y601


def psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    d = (a - b)[m]
    mse = float(np.mean(d * d))
    return 99.0 if mse <= 1e-12 else 10 * np.log10(1.0 / mse)


def texture(img: np.ndarray, ref: np.ndarray, m: np.ndarray) -> float:
    def hf(a: np.ndarray) -> np.ndarray:
        y = _y(a)
        return y - cv2.GaussianBlur(y, (0, 0), 1.5)
    e_ref = float(np.mean(hf(ref)[m] ** 2))
    return float(np.mean(hf(img)[m] ** 2)) / max(e_ref, 1e-12)


def ssim(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    """Mean SSIM (luma, 7 px windows) over the damaged pixels."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(_y(a), _y(b), data_range=1.0, full=True)
    return float(smap[m].mean())


def baselines(damaged: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
    u8 = np.clip(damaged * 255 + 0.5, 0, 255).astype(np.uint8)
    mk = m.astype(np.uint8)
    return {name: cv2.inpaint(u8, mk, 5, flag).astype(np.float32) / 255.0
            for name, flag in (("telea", cv2.INPAINT_TELEA), ("ns", cv2.INPAINT_NS))}


def case(name: str, shape: str, size: str, names: tuple[str, ...] = TEST) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo, damage mask, damaged photo) of one bench case; the damage is lost content (gray)."""
    i, j, k = names.index(name), SHAPES.index(shape), list(SIZES).index(size)
    img = crop(name)
    m = damage(shape, SIZES[size], seed=100 * i + 10 * j + k)
    return img, m, np.where(m[..., None], 0.5, img).astype(np.float32)


def run(names: tuple[str, ...]) -> tuple[list[dict], float]:
    rows = []
    secs = 0.0
    px = 0
    for name in names:
        for shape in SHAPES:
            for sz_name in SIZES:
                img, m, damaged = case(name, shape, sz_name, names)
                t = time.perf_counter()
                out = rf.fill_texture(damaged, m)
                secs += time.perf_counter() - t
                px += int(m.sum())
                res = {"fill": out, **baselines(damaged, m)}
                row: dict = {"photo": name, "shape": shape, "size": sz_name, "px": int(m.sum())}
                for meth, o in res.items():
                    row[meth] = (psnr(o, img, m), psnr(_y(o), _y(img), m), texture(o, img, m), ssim(o, img, m))
                rows.append(row)
                print(f"{name:18s} {shape:6s} {sz_name} " + "  ".join(
                    f"{meth} {row[meth][0]:5.2f}/{row[meth][1]:5.2f} tex {row[meth][2]:.2f}" for meth in res),
                    flush=True)
    return rows, secs / max(px, 1) * 1e6


def summary(rows: list[dict]) -> dict[str, tuple[float, float, float, float]]:
    return {meth: tuple(float(np.mean([r[meth][i] for r in rows])) for i in range(4))   # type: ignore[misc]
            for meth in ("fill", "telea", "ns")}


def sheet(names: tuple[str, ...], out: Path) -> None:
    tiles = []
    for i, name in enumerate(names):
        img = crop(name)
        m = damage("hole", SIZES["L"], seed=7 + i) | damage("tear", SIZES["S"], seed=70 + i)
        damaged = np.where(m[..., None], 0.5, img).astype(np.float32)
        t = baselines(damaged, m)["telea"]
        f = rf.fill_texture(damaged, m)
        row = [damaged, t, f, img]
        tiles.append(np.concatenate([np.pad(a, ((4, 4), (4, 4), (0, 0)), constant_values=1.0) for a in row], 1))
    grid = np.concatenate(tiles, 0)
    head = np.ones((28, grid.shape[1], 3), np.float32)
    for k, text in enumerate(("damaged", "OpenCV Telea", "restore-fill", "original")):
        cv2.putText(head, text, (k * (SIDE + 8) + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([head, grid], 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))


def table(rows: list[dict]) -> str:
    lines = ["| photo | damage | px | restore-fill RGB / Y dB, SSIM | texture | Telea RGB / Y dB, SSIM | texture | "
             "NS RGB / Y dB, SSIM | texture |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[m][0]:.2f} / {r[m][1]:.2f}, {r[m][3]:.3f} | {r[m][2]:.2f}" for m in ("fill", "telea", "ns")]
        lines.append(f"| {r['photo']} | {r['shape']} {r['size']} | {r['px']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", action="store_true")
    args = ap.parse_args()
    if args.dev:
        rows, us = run(DEV)
        for meth, v in summary(rows).items():
            print(f"{meth:6s} RGB {v[0]:.2f}  Y {v[1]:.2f}  texture {v[2]:.2f}")
        print(f"fill: {us:.1f} s per filled MP")
        return
    dev_rows, _ = run(DEV)
    rows, us = run(TEST)
    s, sd = summary(rows), summary(dev_rows)
    smooth = [r for r in rows if r["photo"] not in ("grass", "gravel", "brick")]
    tex = [r for r in rows if r["photo"] in ("grass", "gravel", "brick")]
    within = sum(1 for r in rows if r["fill"][0] >= r["telea"][0] - 1.0)
    in_band = sum(1 for r in rows if 0.5 <= r["fill"][2] <= 1.5)
    sheet(("astronaut", "chelsea", "grass", "brick"), SHEET)
    md = [
        "# restore-fill quality (bench/quality_fill.py)", "",
        __doc__.split("\n\n", 1)[1].strip(), "",
        "## Summary (test photos, mean over every damage)", "",
        "| method | PSNR RGB (dB) | PSNR Y (dB) | SSIM (luma) | texture (1 = original) |", "|---|---|---|---|---|",
        *[f"| {meth} | {v[0]:.2f} | {v[1]:.2f} | {v[3]:.3f} | {v[2]:.2f} |" for meth, v in s.items()], "",
        f"- restore-fill within 1 dB (RGB) of Telea or better: {within} of {len(rows)} cases; "
        f"texture within 0.5-1.5x the original's: {in_band} of {len(rows)} "
        f"(Telea: {sum(1 for r in rows if 0.5 <= r['telea'][2] <= 1.5)}).",
        f"- photos: fill {summary(smooth)['fill'][0]:.2f} dB vs Telea {summary(smooth)['telea'][0]:.2f} dB; "
        f"textures (grass, gravel, brick): fill {summary(tex)['fill'][0]:.2f} dB vs Telea "
        f"{summary(tex)['telea'][0]:.2f} dB.",
        f"- development photos (for reference): fill {sd['fill'][0]:.2f} dB / texture {sd['fill'][2]:.2f}, "
        f"Telea {sd['telea'][0]:.2f} dB / texture {sd['telea'][2]:.2f}.",
        f"- time: {us:.1f} s per filled megapixel on this machine's CPU (2 cores; the cost follows the "
        "damage's area, not the photo's).", "",
        f"![damaged, Telea, restore-fill, original]({Path('../../docs/images') / SHEET.name})", "",
        "## Every case (test photos)", "", table(rows), "",
    ]
    RESULTS.write_text("\n".join(md))
    print("\n".join(md[:20]))


if __name__ == "__main__":
    main()
