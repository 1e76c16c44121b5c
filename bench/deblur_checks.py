"""Deblurring beyond PSNR: ringing at edges, clean photos, and side-by-side sheets.

    python bench/deblur_checks.py --mate-dir /path/to/mate/nature    # ~4 min on 2 cores

On bench/quality.py's held-out photos and blur cases (the same crops, blur and noise):

- **Overshoot**: how far an output goes beyond what the clean photo holds around each pixel:
  mean over pixels of max(0, out - local max of clean) + max(0, local min of clean - out), in
  8-bit levels, the local window 5x5 px (ringing and halos are exactly this: bright and dark
  fringes outside the range of the edge they sit on). Also its 99.9th percentile. For
  Richardson-Lucy and Wiener given the TRUE blur (best setting per photo, as in quality.md) and
  deblur-motion (blind) on the motion cases, deblur-focus (blind, and given the true radius)
  on the Gaussian ones.
- **Clean photos**: deblur-motion and deblur-focus (blind) on the unblurred crops: how many each
  leaves untouched (their "no blur found" answer) and the PSNR of its output against the input.

Writes bench/results/deblur_checks.md, docs/images/deblur-example.png (rows: coffee,
chelsea and astronaut crops; columns: blurred, RL and Wiener with the true blur, deblur-motion,
original; luma PSNR on each tile) and docs/images/deblur-focus-example.png (the same crops
under a Gaussian blur of 1.6 px: blurred, RL, Wiener, deblur-focus blind, at the true radius
and at 1.5 times it, original).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import quality as Q  # noqa: E402

SHEET_ROWS = (("coffee", (60, 160, 260, 360), 13, 60.0), ("chelsea", (40, 140, 240, 340), 17, 0.0),
              ("astronaut", (20, 180, 220, 380), 9, 110.0))
FOCUS_RADIUS = 1.6
METHODS = {"richardson-lucy": Q.m_rl, "wiener": Q.m_wiener}
OURS = {"blur-m": {"deblur-motion": Q.m_deblur},
        "blur-g": {"deblur-focus": Q.m_deblur_focus, "deblur-focus-told-radius": Q.m_deblur_focus_told}}


def overshoot(clean: np.ndarray, out: np.ndarray, border: int = 8) -> tuple[float, float]:
    """(mean, 99.9th percentile) of the overshoot in 8-bit levels, luma, ``border`` px left out."""
    from scipy.ndimage import maximum_filter, minimum_filter

    ref, o = Q.luma(clean), Q.luma(Q.q8(out))
    over = np.maximum(0, o - maximum_filter(ref, 5)) + np.maximum(0, minimum_filter(ref, 5) - o)
    over = over[border:-border, border:-border] * 255
    return float(over.mean()), float(np.percentile(over, 99.9))


def _focus_too_large(x, case, ctx):
    return Q.m_deblur_focus(x, case, ctx, radius=case.radius * 1.5)


def sheet(path: Path, focus: bool) -> None:
    """Rows: SHEET_ROWS' crops; motion: their own smear, or focus: a Gaussian of FOCUS_RADIUS."""
    from PIL import Image, ImageDraw
    from skimage import data

    tiles: list[list[tuple[np.ndarray, str]]] = []
    for name, (y0, x0, y1, x1), length, angle in SHEET_ROWS:
        clean = getattr(data, name)()[y0:y1, x0:x1].astype(np.float32) / 255.0
        psf = Q.gauss_psf(FOCUS_RADIUS) if focus else Q.motion_psf(length, angle)
        case = Q.Case("blur", "blur", Q._blur(psf), psf=psf, radius=FOCUS_RADIUS if focus else 0.0)
        blurred = case.degrade(clean, np.random.default_rng(1))
        ctx = {"clean": clean, "sigma": 1 / 255}
        what = f"Gaussian {FOCUS_RADIUS} px" if focus else f"{length} px {angle:.0f} deg"
        outs = [(blurred, f"blurred {what}"), (Q.m_rl(blurred, case, ctx), "RL, true blur"),
                (Q.m_wiener(blurred, case, ctx), "Wiener, true blur")]
        if focus:
            outs += [(Q.m_deblur_focus(blurred, case, ctx), "deblur-focus, blind"),
                     (Q.m_deblur_focus_told(blurred, case, ctx), f"deblur-focus told {FOCUS_RADIUS}"),
                     (_focus_too_large(blurred, case, ctx), f"told {FOCUS_RADIUS * 1.5:g} (too large)")]
        else:
            outs.append((Q.m_deblur(blurred, case, ctx), "deblur-motion, blind"))
        tiles.append([(o, f"{label} {Q.metrics(clean, o, 8)[0]:.1f} dB") for o, label in outs] + [(clean, "original")])
    h, w = tiles[0][0][0].shape[:2]
    cols = len(tiles[0])
    img = Image.new("RGB", (cols * w + 4 * (cols - 1), len(tiles) * (h + 18)), "white")
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(tiles):
        for c, (px, label) in enumerate(row):
            x, y = c * (w + 4), r * (h + 18)
            img.paste(Image.fromarray((np.clip(px, 0, 1) * 255 + 0.5).astype(np.uint8)), (x, y + 16))
            draw.text((x + 2, y + 2), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mate-dir", default=None)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "deblur_checks.md"))
    ap.add_argument("--sheet", default=str(ROOT / "docs" / "images" / "deblur-example.png"))
    ap.add_argument("--focus-sheet", default=str(ROOT / "docs" / "images" / "deblur-focus-example.png"))
    args = ap.parse_args()
    photos, notes = Q.load_photos(None, args.crop, args.mate_dir)
    cases = [c for c in Q.all_cases() if c.name.startswith(("blur-m", "blur-g"))]
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for case in cases:
        for pname, clean in photos.items():
            deg = case.applied(pname, clean)
            ctx = {"clean": clean, "sigma": case.sigma}
            rows.setdefault((case.name, "input"), []).append(overshoot(clean, deg))
            for m, fn in {**METHODS, **OURS[case.name[:6]]}.items():
                rows.setdefault((case.name, m), []).append(overshoot(clean, fn(deg, case, ctx)))
    clean_lines = []
    for m, fn in (("deblur-motion", Q.m_deblur), ("deblur-focus", Q.m_deblur_focus)):
        untouched, changed = 0, []
        for pname, clean in photos.items():
            out = fn(clean, None, {})
            if np.array_equal(Q.q8(out), Q.q8(clean)):
                untouched += 1
            else:
                changed.append(f"{pname} ({Q.metrics(clean, out, 8)[0]:.1f} dB against the input)")
        clean_lines.append(f"- {m} (blind) left {untouched} of {len(photos)} untouched"
                           + (f"; changed: {', '.join(changed)}." if changed else "."))
    lines = ["# Deblurring: ringing and clean photos (bench/deblur_checks.py)", "",
             f"Generated by `python bench/deblur_checks.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             f"Photos: bench/quality.py's held-out crops ({', '.join(photos)}), {args.crop} px; its blur cases "
             "(noise sigma 1/255, 8 bit). RL and Wiener get the TRUE blur at their best setting per photo; "
             "deblur-motion and deblur-focus find the blur themselves; deblur-focus-told-radius is given the "
             "true radius.", "",
             "## Overshoot at edges (8-bit levels beyond the clean photo's local 5x5 range; lower is better)", "",
             "| case | method | mean | 99.9th percentile |", "|---|---|---:|---:|"]
    for (case_name, m), v in rows.items():
        lines.append(f"| {case_name} | {m} | {np.mean([a for a, _ in v]):.3f} | {np.mean([b for _, b in v]):.1f} |")
    lines += ["", "## Clean (unblurred) photos", ""] + clean_lines + [""]
    lines += [f"- {n}" for n in notes]
    Path(args.out).write_text("\n".join(lines) + "\n")
    sheet(Path(args.sheet), focus=False)
    sheet(Path(args.focus_sheet), focus=True)
    print("wrote", args.out, args.sheet, "and", args.focus_sheet)


if __name__ == "__main__":
    main()
