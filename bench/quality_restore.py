"""Quality of dust & scratch repair and of the review map, on real photos.

    .venv/bin/python bench/quality_restore.py            # measure, write bench/results/quality_restore.md
    .venv/bin/python bench/quality_restore.py --context  # host crop vs whole image -> dust_context.md

Photos: scikit-image's astronaut, coffee, chelsea, camera, rocket, brick and matplotlib's
grace_hopper (all bundled in the wheels, no download). Damage: ``add_synthetic_defects``
(6 curved scratches 1-3 px wide, 40 specks radius 1-6 px, bright and dark, anti-aliased) at
fixed seeds. Ground truth = pixels whose luminance the damage moved by more than 0.08.

Restore measures (default sensitivity 0.5):
* recall: share of ground-truth pixels inside the returned defect mask;
* precision: share of mask pixels within 2 px of ground truth (the mask is dilated 1 px on
  purpose to cover soft edges, so exact-pixel precision would punish the right behaviour);
* PSNR inside the ground-truth area vs the clean photo: damaged input, repair with grain,
  repair without grain (grain adds independent noise, which costs PSNR by design);
* false-positive area: mask pixels on the clean photo, as a share of all pixels.
The detector (engine/data/trained/dust.onnx) never saw these photos: it is trained on other
photos with damage from another generator (models/train/train_dust.py), and its default
threshold is calibrated on a third set (GIMP's photographic patterns). The operating curve
(recall and false positives at each threshold) is reported so the default can be judged.

Review map: three lines of text rendered with DejaVu Sans Bold (matplotlib's copy) onto
each photo; the "model" is photo-x2 (waifu2x upconv_7 photo) when imported, otherwise a
classical unsharp mask (the report says which). Measured: of the glyph pixels the model
changed (|luma(result) - luma(bicubic)| > 0.02), the share whose heat is >= 0.3.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.tasks import restore_dust as R  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket", "brick", "grace_hopper")
GT_STEP = 0.08
TEST_SEEDS = (3, 4)
CURVE_LOGITS = (3.0, 4.0, 5.0, 6.0, 7.0, 8.0)


def load_photo(name: str) -> np.ndarray:
    """float32 RGB 0..1."""
    if name == "grace_hopper":
        import matplotlib

        p = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        bgr = cv2.imread(p, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(p)
        a = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        from skimage import data

        a = getattr(data, name)()
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a.astype(np.float32) / 255.0


def ground_truth(clean: np.ndarray, damaged: np.ndarray) -> np.ndarray:
    return np.abs(R._luma(damaged) - R._luma(clean)) > GT_STEP


def psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    e = float(((a - b) ** 2)[m].mean())
    return 10 * math.log10(1.0 / max(e, 1e-12))


# --- restore measures ---------------------------------------------------------------------

def restore_rows(photos: dict[str, np.ndarray], sensitivity: float = 0.5):
    rows = []
    for n, img in photos.items():
        t = time.perf_counter()
        fp_mask = R.detect_defects(img, sensitivity)
        dt = time.perf_counter() - t
        for s in TEST_SEEDS:
            dam, _ = R.add_synthetic_defects(img, seed=s)
            gt = ground_truth(img, dam)
            rep, m = R.repair(dam, sensitivity)
            rep0, _ = R.repair(dam, sensitivity, grain=0.0)
            m = m > 0.5
            tol = cv2.dilate(gt.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            rows.append(dict(
                photo=n, seed=s, fp=float(fp_mask.mean()), secs=dt,
                recall=float((m & gt).sum() / max(gt.sum(), 1)),
                precision=float((m & tol).sum() / max(m.sum(), 1)),
                psnr_damaged=psnr(dam, img, gt), psnr_repaired=psnr(rep, img, gt),
                psnr_repaired_nograin=psnr(rep0, img, gt),
                psnr_detected_damaged=psnr(dam, img, gt & m) if (gt & m).any() else float("nan"),
                psnr_detected_repaired=psnr(rep0, img, gt & m) if (gt & m).any() else float("nan"),
            ))
    return rows


# --- review measures ----------------------------------------------------------------------

TEXTS = (("GATE 8B 1938", 0.055), ("Kodak 400 TX", 0.045), ("No. 4471", 0.065))


def render_text(img: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Photo with three lines of text drawn on it, and the glyph mask (bool)."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")
    im = Image.fromarray(np.round(img * 255).astype(np.uint8))
    mask = Image.new("L", im.size, 0)
    d, dm = ImageDraw.Draw(im), ImageDraw.Draw(mask)
    rng = np.random.default_rng(seed)
    h = im.size[1]
    for i, (txt, rel) in enumerate(TEXTS):
        f = ImageFont.truetype(font, max(12, int(rel * h)))
        x = int(rng.uniform(0.03, 0.45) * im.size[0])
        y = int((0.08 + 0.3 * i + rng.uniform(0, 0.12)) * h)
        col = (250, 250, 250) if i % 2 == 0 else (12, 12, 12)
        other = tuple(255 - c for c in col)
        d.text((x, y), txt, font=f, fill=col, stroke_width=1, stroke_fill=other)
        dm.text((x, y), txt, font=f, fill=255, stroke_width=1)
    return np.asarray(im).astype(np.float32) / 255.0, np.asarray(mask) > 0


def get_model():
    """(name, callable rgb -> rgb at 2x): photo-x2 if imported, else unsharp-mask + bicubic."""
    try:
        from engine.models.backends import load_model

        m = load_model("photo-x2", device="cpu")
        return "photo-x2 (waifu2x upconv_7 photo, ONNX on CPU)", lambda x: np.clip(m.run(x), 0, 1)
    except Exception as e:  # noqa: BLE001 - report and fall back
        def sharpen(x):
            up = cv2.resize(x, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
            return np.clip(up + 1.5 * (up - cv2.GaussianBlur(up, (0, 0), 1.5)), 0, 1)
        return f"classical unsharp mask after bicubic 2x (photo-x2 unavailable: {e})", sharpen


def review_rows(photos: dict[str, np.ndarray]):
    from engine import review as RV

    name, model = get_model()
    rows = []
    for n in ("astronaut", "coffee", "chelsea", "grace_hopper"):
        img, glyphs = render_text(photos[n])
        t = time.perf_counter()
        out = model(img)
        t_model = time.perf_counter() - t
        h, w = out.shape[:2]
        up = np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
        t = time.perf_counter()
        layers = RV.review_layers(img, up, out)
        heat = RV.combine(layers)
        t_map = time.perf_counter() - t
        g2 = cv2.resize(glyphs.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        changed = np.abs(R._luma(out) - R._luma(up)) > 0.02
        ct = changed & g2
        rest = changed & ~cv2.dilate(g2.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
        rows.append(dict(
            photo=n, changed_text_px=int(ct.sum()),
            flagged_03=float((heat[ct] >= 0.3).mean()) if ct.any() else float("nan"),
            flagged_05=float((heat[ct] >= 0.5).mean()) if ct.any() else float("nan"),
            text_detected=float((layers.get("text", np.zeros_like(heat))[g2] > 0.5).mean()),
            change_only_03=float((layers["change"][ct] >= 0.3).mean()) if ct.any() else float("nan"),
            other_flagged_03=float((heat[rest] >= 0.3).mean()) if rest.any() else float("nan"),
            secs_model=t_model, secs_map=t_map,
        ))
    return name, rows


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def make_images(out_dir: Path) -> None:
    """docs/images/review-example.png and dust-example.png (README examples)."""
    from engine import review as RV

    out_dir.mkdir(parents=True, exist_ok=True)
    img, _ = render_text(load_photo("astronaut"))
    name, model = get_model()
    out = model(img)
    h, w = out.shape[:2]
    up = np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    # A deliberately invented patch (texture pasted from elsewhere) to show what a
    # hallucination looks like on the map.
    out = out.copy()
    out[700:800, 120:220] = out[150:250, 600:700]
    heat = RV.review_map(img, up, out)
    over = RV.render_review_overlay(heat, out)[..., :3]
    u8 = lambda a: np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    left = cv2.resize(u8(out), (512, 512), interpolation=cv2.INTER_AREA)
    right = cv2.resize(over, (512, 512), interpolation=cv2.INTER_AREA)
    pic = np.concatenate([_label(left, f"result: {name.split(' (')[0]} + pasted patch"),
                          _label(right, "review map (text, face, structural change)")], 1)
    cv2.imwrite(str(out_dir / "review-example.png"), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
    clean = load_photo("grace_hopper")
    dam, _ = R.add_synthetic_defects(clean, seed=3)
    rep, m = R.repair(dam)
    mask_vis = np.repeat(m[..., None], 3, 2)
    crop = (slice(0, 600), slice(0, 512))
    tiles = [_label(u8(dam[crop]), "damaged (synthetic)"), _label(u8(rep[crop]), "repaired"),
             _label(u8(mask_vis[crop]), "defect mask (layer mask)")]
    pic = np.concatenate([cv2.resize(t, (384, 450), interpolation=cv2.INTER_AREA) for t in tiles], 1)
    cv2.imwrite(str(out_dir / "dust-example.png"), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))


CONTEXT_PHOTOS = ("astronaut", "coffee", "camera")
CONTEXT_MARGINS = (32, 64, 128)


def context_rows() -> list[dict]:
    """What a host crop finds inside a selection box vs what the whole image finds there, for
    a few margins and for the margin the plug-ins send (the catalog's: the whole image).
    Two boxes per photo, held-out damage seed 3."""
    from engine import tasks
    from plugin.client.geometry import context_region

    sent = int(tasks.get("restore-dust").info.margin)
    rows = []
    for name in CONTEXT_PHOTOS:
        img = load_photo(name)
        dam, _ = R.add_synthetic_defects(img, seed=TEST_SEEDS[0])
        whole = R.detect_defects(dam)
        h, w = whole.shape
        # a retoucher selects damage: the two boxes (of a 4 x 4 grid of w/3 x h/4 boxes) with the most
        grid = [(x, y, w // 3, h // 4) for y in range(0, h - h // 4 + 1, max(1, (h - h // 4) // 3))
                for x in range(0, w - w // 3 + 1, max(1, (w - w // 3) // 3))]
        for box in sorted(grid, key=lambda b: -int(whole[b[1]:b[1] + b[3], b[0]:b[0] + b[2]].sum()))[:2]:
            bx, by, bw, bh = box
            inside = whole[by:by + bh, bx:bx + bw]
            row: dict[Any, Any] = {"photo": name, "box": box, "whole": int(inside.sum())}
            for m in (*CONTEXT_MARGINS, sent):
                cx, cy, cw, ch = context_region(box, m, w, h)
                crop = R.detect_defects(dam[cy:cy + ch, cx:cx + cw])
                got = crop[by - cy:by - cy + bh, bx - cx:bx - cx + bw]
                row[m] = int((got != inside).sum())
            rows.append(row)
    return rows


def write_context(out: Path) -> None:
    from engine import tasks

    sent = int(tasks.get("restore-dust").info.margin)
    rows = context_rows()
    cols = [*CONTEXT_MARGINS, sent]
    head = " | ".join(f"{m} px" for m in CONTEXT_MARGINS)
    lines = ["# Dust & scratches: a host's crop vs the whole image", "",
             "Produced by `bench/quality_restore.py --context`. Held-out damage seed "
             f"{TEST_SEEDS[0]} on {', '.join(CONTEXT_PHOTOS)}; per photo the two selection boxes (of a 4 x 4 "
             "grid of w/3 x h/4 boxes) with the most damage found in the whole image. A host sends "
             "the selection's box plus a margin; the figures are the pixels inside the box where the "
             "defect mask of that crop differs from the whole image's. The last column is what the "
             f"plug-ins send now: the catalog margin of restore-dust ({sent} px, clamped: the whole layer).", "",
             f"| photo | box (x, y, w, h) | mask px in the box (whole image) | {head} | plug-ins now |",
             "|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['box']} | {r['whole']} | " + " | ".join(str(r[m]) for m in cols) + " |")
    total = {m: sum(r[m] for r in rows) for m in cols}
    lines += [f"| all | | {sum(r['whole'] for r in rows)} | " + " | ".join(str(total[m]) for m in cols) + " |",
              "", "Why: detection is a network with a receptive field of about +-27 px, run in 512 px tiles "
              "with a 32 px halo anchored at the image's corner, so it is local; but its two 2x "
              "downsamplings make its output depend on where a crop starts (modulo 4 px), so a crop with "
              "enough context agrees with the whole image only nearly (the columns above), not exactly. "
              "The task keeps asking for the whole image (`margin` = WHOLE_IMAGE), so the plug-ins' "
              "mask inside a selection is the whole image's, bit for bit."]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def curve_rows(photos: dict[str, np.ndarray], logits: tuple[float, ...] = CURVE_LOGITS,
               clean: dict[str, np.ndarray] | None = None) -> list[tuple[float, float, float, float]]:
    """(logit, max clean FP share, mean recall, mean precision) of ``detect_defects`` at each
    threshold of ``logits`` (the detector runs once per image; ``clean``: the clean photos'
    probabilities when the caller has them already)."""
    probs = {(n, 0): (clean[n] if clean is not None else R.defect_probability(img)) for n, img in photos.items()}
    gts = {}
    for n, img in photos.items():
        for s in TEST_SEEDS:
            dam, _ = R.add_synthetic_defects(img, seed=s)
            probs[(n, s)] = R.defect_probability(dam)
            gts[(n, s)] = ground_truth(img, dam)
    k3 = np.ones((3, 3), np.uint8)
    out = []
    for z in logits:
        t = R.probability_at(z)
        masks = {k: cv2.dilate((p > t).astype(np.uint8), k3).astype(bool) for k, p in probs.items()}
        fp = max(float(masks[(n, 0)].mean()) for n in photos)
        rec, prec = [], []
        for k, gt in gts.items():
            m = masks[k]
            tol = cv2.dilate(gt.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            rec.append((m & gt).sum() / max(gt.sum(), 1))
            prec.append((m & tol).sum() / max(m.sum(), 1))
        out.append((z, fp, float(np.mean(rec)), float(np.mean(prec))))
    return out


def candidate_rows(onnx_path: str, logit: float) -> list[str]:
    """The operating curve of a CANDIDATE detector (a dust.onnx a training run wrote; nothing is
    installed or changed) at its own calibrated default ``logit`` and every half logit 3-8, with each
    clean photo's flagged share at that default: how models/train/README.md's "tried and not
    shipped" figures were measured. The whole photo in one run (the engine's tiles give the
    same result)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

    def probability(rgb: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.clip(rgb, 0.0, 1.0).transpose(2, 0, 1)[None], dtype=np.float32)
        return sess.run(None, {"input": x})[0][0, 0]

    R.defect_probability = probability          # this process only: a benchmark of the candidate
    photos = {n: load_photo(n) for n in PHOTOS}
    out = [f"candidate {onnx_path} (default logit {logit})", "", "| logit | max clean FP area | mean recall | "
           "mean precision |", "|---|---|---|---|"]
    clean = {n: probability(img) for n, img in photos.items()}
    curve = curve_rows(photos, (logit, *(0.5 * k for k in range(6, 17))), clean)     # and logits 3.0, 3.5 .. 8.0
    out += [f"| {z:.1f} | {fp * 100:.3f} % | {rc:.3f} | {pr:.3f} |" for z, fp, rc, pr in curve]
    t = R.probability_at(logit)
    k3 = np.ones((3, 3), np.uint8)
    out += ["", "clean photos flagged at the default (3x3 dilation): " + ", ".join(
        f"{n} {cv2.dilate((p > t).astype(np.uint8), k3).mean() * 100:.3f} %" for n, p in clean.items())]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", action="store_true", help="write the docs/images examples only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality_restore.md"))
    ap.add_argument("--context", action="store_true", help="host crop vs whole image only (dust_context.md)")
    ap.add_argument("--candidate", nargs=2, metavar=("ONNX", "LOGIT"),
                    help="print the operating curve of a candidate detector at its calibrated default logit "
                         "(train_dust.py --calibrate); writes nothing")
    args = ap.parse_args()
    if args.candidate:
        print("\n".join(candidate_rows(args.candidate[0], float(args.candidate[1]))))
        return
    if args.context:
        write_context(ROOT / "bench" / "results" / "dust_context.md")
        return
    if args.images:
        make_images(ROOT / "docs" / "images")
        return
    import json

    from engine import paths

    cal = json.loads((paths.own_models_dir() / "dust_calibration.json").read_text())
    photos = {n: load_photo(n) for n in PHOTOS}
    lines = ["# Dust & scratch repair and review map: quality on real photos", "",
             "Produced by `bench/quality_restore.py` (see its docstring for the definitions).",
             f"Photos: {', '.join(PHOTOS)}; damage seeds {TEST_SEEDS} of `add_synthetic_defects`. The "
             "detector (engine/data/trained/dust.onnx, models/train/train_dust.py) was trained on other photos "
             "with damage from another generator and never saw these photos; its default threshold (logit "
             f"{R._LOGIT_AT_DEFAULT}) is the calibration's on {len(cal['patterns'])} GIMP photographic patterns "
             f"(the lowest logit flagging <= {cal['target_share'] * 100:.1f} % of their pixels).", ""]
    rows = restore_rows(photos)
    lines += ["## Restore (`restore-dust`, sensitivity 0.5)", "",
              "| photo | seed | clean FP area | recall | precision | PSNR damaged | PSNR repaired "
              "(grain) | PSNR repaired (no grain) | PSNR on detected px: damaged -> repaired | s/photo |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['seed']} | {r['fp'] * 100:.3f} % | {r['recall']:.3f} | "
                     f"{r['precision']:.3f} | {r['psnr_damaged']:.1f} | {r['psnr_repaired']:.1f} | "
                     f"{r['psnr_repaired_nograin']:.1f} | {r['psnr_detected_damaged']:.1f} -> "
                     f"{r['psnr_detected_repaired']:.1f} | {r['secs']:.2f} |")
    mean = lambda k: float(np.nanmean([r[k] for r in rows]))  # noqa: E731
    lines += ["", f"Mean: recall {mean('recall'):.3f}, precision {mean('precision'):.3f}, PSNR in the "
              f"defect area {mean('psnr_damaged'):.1f} dB damaged -> {mean('psnr_repaired'):.1f} dB "
              f"repaired with grain ({mean('psnr_repaired_nograin'):.1f} dB without grain); "
              f"max clean FP area {max(r['fp'] for r in rows) * 100:.3f} %.", ""]
    sweep = []
    for s in (0.3, 0.7, 0.9):
        rr = restore_rows({n: photos[n] for n in PHOTOS}, s)
        sweep.append((s, max(r["fp"] for r in rr), float(np.mean([r["recall"] for r in rr])),
                      float(np.mean([r["precision"] for r in rr]))))
    lines += ["### Sensitivity", "", "| sensitivity | max clean FP area | mean recall | mean precision |",
              "|---|---|---|---|",
              f"| 0.5 | {max(r['fp'] for r in rows) * 100:.3f} % | {mean('recall'):.3f} | {mean('precision'):.3f} |"]
    lines += [f"| {s} | {fp * 100:.3f} % | {rc:.3f} | {pr:.3f} |" for s, fp, rc, pr in sweep]
    lines += ["", "### Operating curve (threshold in logits; 1 px dilation as shipped)", "",
              "| logit | threshold | max clean FP area | mean recall | mean precision |", "|---|---|---|---|---|"]
    lines += [f"| {z:.1f} | {R.probability_at(z):.5f} | {fp * 100:.3f} % | {rc:.3f} | {pr:.3f} |"
              for z, fp, rc, pr in curve_rows(photos)]
    name, rv = review_rows(photos)
    lines += ["", "## Review map", "", f"Model: {name}.", "",
              "| photo | changed glyph px | flagged (heat >= 0.3) | flagged (heat >= 0.5) | change term "
              "alone >= 0.3 | glyph px in detected text | changed non-text px flagged >= 0.3 | "
              "model s | map s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rv:
        lines.append(f"| {r['photo']} | {r['changed_text_px']} | {r['flagged_03']:.3f} | "
                     f"{r['flagged_05']:.3f} | {r['change_only_03']:.3f} | {r['text_detected']:.3f} | "
                     f"{r['other_flagged_03']:.3f} | {r['secs_model']:.1f} | {r['secs_map']:.1f} |")
    lines += ["", "## Reading these figures", "",
              "* Before the learned detector (commit 9329dab and earlier), a classical detector (top-hat "
              "residuals, a 12-feature linear piece score, scratch tracing) gave recall 0.299, precision 0.956 "
              "and max clean FP 0.046 % at its default, and 0.604 / 0.673 / 1.773 % at sensitivity 0.9; its "
              "score was fitted on THESE photos (damage seeds 1-2), so its false-positive figures were partly "
              "in-sample. The learned detector has seen none of them.",
              "* Against the issue's target (recall >= 0.6 at <= 0.1 % false positives on clean photos): the "
              "calibrated default reaches recall 0.69 (precision 0.93) but flags 0.65 % of the brick wall and "
              "0.36 % of the coffee photo (0.10 % or less on the other five); at a threshold that keeps every "
              "clean photo under 0.1 % (logit 7, the operating curve) recall is 0.35. So the recall half is "
              "met and the joint target is missed; at equal false positives the learned detector finds more "
              "than the classical one did at any setting (classical 0.45 at 0.98 %, learned 0.72 at 0.84 %).",
              "* The default threshold was fixed before these figures by a rule on other photos (GIMP's "
              "patterns, <= 0.1 % of their pixels); the benchmark photos were not used to pick it, nor to "
              "pick between the two training stages (stage 2 won on recall over the damaged patterns at each "
              "stage's calibrated threshold, 0.378 vs 0.366). Stage 1's operating points on these photos were "
              "looked at while the calibration rule was being written (its figures are in the issue note).",
              "* What is still flagged on clean photos: thin bright lines that belong to the picture (the mortar "
              "between bricks, the specular rim of the coffee saucer) - a single-image detector cannot always "
              "tell them from a scratch; the defect mask is the layer's mask, so they are painted off.",
              "* PSNR over all damaged pixels counts the undetected damage too; on the detected damaged "
              "pixels the repair gains 14-24 dB. Grain re-injection costs no measurable PSNR here (damage "
              "is mostly on smooth areas where the grain estimate is small).",
              "* Review map: the text/face floor (0.3) is what makes nearly all changed glyph pixels "
              "flagged; the structural-change term alone flags 22-32 % of them at >= 0.3, because "
              "photo-x2 mostly sharpens glyph edges (a mild structural change) rather than "
              "reshaping them. A pasted patch scores >= 0.6 (tests/unit/test_review.py)."]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
