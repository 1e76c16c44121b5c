"""Quality of dust & scratch repair and of the review map, on real photos.

    .venv/bin/python bench/quality_restore.py            # measure, write bench/results/quality_restore.md
    .venv/bin/python bench/quality_restore.py --fit      # refit engine/tasks/restore_dust.py's piece score
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
The piece classifier is fitted on seeds 1-2; seed 3 (and 4) are held out, and a
leave-one-photo-out refit shows how it does on a photo it never saw.

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
FIT_SEEDS = (1, 2)
TEST_SEEDS = (3, 4)


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


# --- fitting the piece classifier --------------------------------------------------------

def _pieces(img: np.ndarray, gt: np.ndarray | None):
    X, A, L = [], [], []
    for sl, sel, f, _ in R.candidate_features(img):
        X.append(f)
        A.append(float(sel.sum()))
        L.append(float(gt[sl][sel].mean()) if gt is not None else 0.0)
    return np.array(X).reshape(-1, len(R.FEATURES)), np.array(A), np.array(L)


def collect(photos: dict[str, np.ndarray], seeds) -> dict:
    data = {}
    for n, img in photos.items():
        data[(n, "clean")] = _pieces(img, None) + (img.shape[0] * img.shape[1],)
        for s in seeds:
            dam, _ = R.add_synthetic_defects(img, seed=s)
            gt = ground_truth(img, dam)
            data[(n, s)] = _pieces(dam, gt) + (int(gt.sum()),)
    return data


def fit(data: dict, names, seeds, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Area-weighted logistic regression: positives = pieces mostly on damage, negatives =
    pieces on clean photos and pieces off the damage."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    for n in names:
        x, a, _, _ = data[(n, "clean")]
        xs.append(x)
        ys.append(np.zeros(len(x)))
        ws.append(a)
        for s in seeds:
            x, a, lab, _ = data[(n, s)]
            pos = lab > 0.5
            # Negatives come from the clean photos only: pieces next to the damage (its
            # anti-aliased halo) look like damage and only blur the boundary.
            xs.append(x[pos])
            ys.append(np.ones(pos.sum()))
            ws.append(a[pos] * lab[pos])
    X, Y, W = np.concatenate(xs), np.concatenate(ys), np.sqrt(np.concatenate(ws))
    W = np.where(Y > 0, W / W[Y > 0].sum(), W / W[Y == 0].sum()) * len(Y) / 2
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = np.c_[(X - mu) / sd, np.ones(len(X))]
    b = np.zeros(Z.shape[1])
    for _ in range(5000):
        p = 1 / (1 + np.exp(-np.clip(Z @ b, -30, 30)))
        b -= 0.5 * (Z.T @ ((p - Y) * W) / len(Y) + l2 * np.r_[b[:-1], 0])
    w = b[:-1] / sd
    return w, float(b[-1] - np.sum(b[:-1] * mu / sd))


def curve(data, names, seeds, w, b, th) -> tuple[float, float]:
    """(max false-positive share over clean photos, mean approximate pixel recall)."""
    fps, recs = [], []
    for n in names:
        x, a, _, npx = data[(n, "clean")]
        fps.append(a[(x @ w + b) > th].sum() / npx)
        for s in seeds:
            x, a, lab, ngt = data[(n, s)]
            k = (x @ w + b) > th
            recs.append((a[k] * lab[k]).sum() / max(ngt, 1))
    return max(fps), float(np.mean(recs))


def do_fit() -> None:
    photos = {n: load_photo(n) for n in PHOTOS}
    data = collect(photos, FIT_SEEDS + TEST_SEEDS[:1])
    w, b = fit(data, PHOTOS, FIT_SEEDS)
    print("_W = np.array([" + ", ".join(f"{v:.4f}" for v in w) + "])")
    print(f"_B = {b:.4f}")
    for th in np.arange(0.0, 6.01, 0.5):
        fp, rec = curve(data, PHOTOS, TEST_SEEDS[:1], w, b, th)
        print(f"th={th:.1f}: max clean FP {fp * 100:.3f} %  held-out recall ~{rec:.3f}")


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


def loio(photos: dict[str, np.ndarray]) -> list[tuple[str, float, float, float, float]]:
    """Per photo: (name, piece FP, piece recall, full-detector FP, full-detector recall) with
    the classifier refitted without the photo; "full detector" is ``detect_defects`` as
    shipped (dilated mask, scratch tracing) running on the refitted weights."""
    data = collect(photos, FIT_SEEDS + TEST_SEEDS[:1])
    out = []
    th = R._score_threshold(0.5)
    w0, b0 = R._W, R._B
    try:
        for n in photos:
            w, b = fit(data, [m for m in photos if m != n], FIT_SEEDS)
            fp, rec = curve(data, [n], TEST_SEEDS[:1], w, b, th)
            R._W, R._B = w, b
            full_fp = float(R.detect_defects(photos[n]).mean())
            dam, _ = R.add_synthetic_defects(photos[n], seed=TEST_SEEDS[0])
            gt = ground_truth(photos[n], dam)
            full_rec = float((R.detect_defects(dam) & gt).sum() / max(gt.sum(), 1))
            R._W, R._B = w0, b0
            out.append((n, fp, rec, full_fp, full_rec))
    finally:
        R._W, R._B = w0, b0
    return out


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
              "", "Why: detection weighs each candidate against the photo's own noise level (one figure "
              "for the whole image), cuts long candidates along a 24 px grid fixed to the image's corner, "
              "and follows scratches along their whole length; none of that is local, so no finite margin "
              "makes a crop agree with the whole image. Making it local was measured earlier (3 photos x 2 "
              "boxes, 64 px margin): a local noise level took the disagreement from 823 to 669 px, the grid "
              "anchored at each component to 663, both to 506 - never 0, and each changes the fitted "
              "classifier. So "
              "the task asks for the whole image (`margin` = WHOLE_IMAGE) and both plug-ins send it; the "
              "cost is the whole layer's time (about 1-3 s per MP on 2 cores) for any selection."]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--images", action="store_true", help="write the docs/images examples only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality_restore.md"))
    ap.add_argument("--context", action="store_true", help="host crop vs whole image only (dust_context.md)")
    args = ap.parse_args()
    if args.context:
        write_context(ROOT / "bench" / "results" / "dust_context.md")
        return
    if args.fit:
        do_fit()
        return
    if args.images:
        make_images(ROOT / "docs" / "images")
        return
    photos = {n: load_photo(n) for n in PHOTOS}
    lines = ["# Dust & scratch repair and review map: quality on real photos", "",
             "Produced by `bench/quality_restore.py` (see its docstring for the definitions).",
             f"Photos: {', '.join(PHOTOS)}. Held-out damage seeds {TEST_SEEDS} "
             f"(the piece classifier in engine/tasks/restore_dust.py was fitted on seeds {FIT_SEEDS}).", ""]
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
    lines += ["", "### Leave-one-photo-out (classifier refitted without the photo, default threshold)", "",
              "Pieces: the classifier's accepted candidate pieces (no dilation, no tracing); full "
              "detector: `detect_defects` as shipped (1 px dilation, scratch tracing) on the refitted "
              "weights.", "",
              "| photo left out | clean FP area (pieces) | approx. recall (pieces, seed 3) | "
              "clean FP area (full detector) | recall (full detector, seed 3) |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {fp * 100:.3f} % | {rc:.3f} | {ffp * 100:.3f} % | {frc:.3f} |"
              for n, fp, rc, ffp, frc in loio(photos)]
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
              "* Default sensitivity is conservative by design: the clean-photo false-positive area "
              "stays under the 0.1 % target on every photo (max 0.046 %), with ~95 % precision. With "
              "the classifier refitted without the photo, grace_hopper's accepted pieces cover 0.103 %, "
              "which the 1 px mask dilation turns into 0.159 % (the full-detector column; identical "
              "with and without scratch tracing, so this is the classifier's, measured the same "
              "before tracing). Pixel recall is about 0.3 (0.19 before scratch "
              "tracing): specks and scratches on calm areas are found, and a scratch found in a calm "
              "part is now followed through busy texture. Still missed: specks over busy texture "
              "(fur, wrinkles, the orange suit) and scratches with no calm, confidently accepted part. "
              "Single-image detection is ambiguous: the false positives left are catch-lights, stars "
              "on a flag, specular rims and real dust specks on the coffee saucer.",
              "* Scratch tracing (oriented 21 px line filters, hysteresis per orientation band, long "
              "components containing an accepted thin piece are taken whole) adds no false-positive "
              "area at the default sensitivity; at 0.7 and above it also follows real lines (cup and "
              "saucer rims, the tripod), so false positives grow faster than before there "
              "(0.7: 0.46 % -> ~1 %). Measured variants: one band per component without orientation "
              "(a scratch crossing the saucer rim takes the rim along: coffee precision 0.60), bands "
              "of +-1 / +-3 directions (recall 0.269 / precision 0.932), trace seeds 1-2 score units "
              "below the threshold (recall 0.33-0.49 but clean FP 0.49-0.72 % on coffee, 0.54 % on "
              "camera).",
              "* Tried and dropped (no better recall at equal false positives): a 15 px disk (instead of 19 px), a "
              "two-pass significance, a thin-line channel (7 px disk), whole-component shape "
              "features, quadratic features, hand rules on excess/plateau; piece features for line "
              "evidence (median line score, traced-line length) and colour (chroma vs. ring) in the "
              "linear score; a per-feature binned (additive) score instead of the linear one.",
              "* PSNR over all damaged pixels improves by ~2.6 dB (7.8 -> 10.4 dB; ~1.7 dB before "
              "scratch tracing) because undetected damage stays; on the detected damaged pixels the "
              "repair gains 14-24 dB. Grain re-injection "
              "costs no measurable PSNR here (damage is mostly on smooth areas where the grain "
              "estimate is small).",
              "* Review map: the text/face floor (0.3) is what makes nearly all changed glyph pixels "
              "flagged; the structural-change term alone flags 22-32 % of them at >= 0.3, because "
              "photo-x2 mostly sharpens glyph edges (a mild structural change) rather than "
              "reshaping them. A pasted patch scores >= 0.6 (tests/unit/test_review.py)."]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
