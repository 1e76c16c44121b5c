"""Train EnhanceLayer's dust & scratch *detector* (``engine/data/trained/dust.onnx``).

Why learned: the classical detector (top-hat residuals + a 12-feature linear piece score,
engine/tasks/restore_dust.py) finds 30 % of the damage at < 0.1 % false positives; what
separates a scratch from a real thin line is context (does it continue, does it cross the
texture's grain, does it sit on the picture or over it), which a small convolutional net
sees and a per-piece feature vector does not.

    .venv-train/bin/python models/train/train_dust.py --mate-dir DIR            # CPU, ~40 min
    .venv-train/bin/python models/train/train_dust.py --device cuda --steps 40000 --batch 64

The net is the denoiser's TinyUNet with a one-channel tail and no residual: input "input"
N,3,H,W float32 RGB 0..1 (any H, W), output "output" N,1,H,W = probability that the pixel is
damage (luminance moved by more than 0.08, the benchmark's ground-truth rule).

Data: the denoiser's TRAINING photos (models/train/README.md) less rocket and brick, plus
scikit-image's other bundled photos (SKIMAGE_TRAIN below); never the dust benchmark's
astronaut, coffee, chelsea, camera, rocket, brick, grace_hopper, nor the denoiser's held-out
photos.

Damage: drawn by THIS file's generator, on purpose different from the benchmark's
``add_synthetic_defects`` (quadratic Bezier scratches and 9-gon specks): scratches are
random-walk polylines (smooth or wavy, sometimes broken, width 0.6-3.5 px), hairs are short
curly lines, specks are 5-12-gons or ellipses of radius 0.6-8 px; each is tinted, more or less
opaque (0.3-1), softened by a blur of 0-0.8 px, bright or dark. A quarter of the patches get
no damage at all. Photos are randomly grayed, re-exposed, rescaled and given mild noise, so
the detector does not learn one photo style.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.train.train import (
    MATE_TRAIN,
    Block,
    TinyUNet,
    add_stage_args,
    box_down2,
    finish_stage,
    run_stage,
    start_stage,
    to_rgb_f32,
)

# DATA: the denoiser's training photos minus those of the dust benchmark (rocket, brick), plus
# scikit-image's other bundled photos: printed text, coins, a motorcycle, the moon, micrographs
# and a retina are hard negatives (thin strokes, highlights, vessels that are NOT damage).
SKIMAGE_TRAIN = ["grass", "gravel", "hubble_deep_field", "text", "page", "coins", "moon", "cell",
                 "retina", "immunohistochemistry", "microaneurysms", "clock"]
SKIMAGE_STEREO = "stereo_motorcycle"    # its left view
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
GT_STEP = 0.08       # a pixel is damage when the damage moved its luminance by more than this
IGNORE_BELOW = 0.03  # pixels moved by 0.03..0.08 (soft rims) are left out of the loss
SS = 4               # supersampling of the drawing


def load_photos(mate_dir: Path, with_names: bool = False, wallpapers: Path | None = None) -> list:
    """The training photos (float32 RGB 0..1), or (name, photo) pairs with ``with_names``;
    with ``wallpapers`` (stage 3) also :func:`wallpaper_photos`."""
    import skimage.data as sd
    from PIL import Image
    named = []
    for name in MATE_TRAIN:
        p = mate_dir / f"{name}.jpg"
        if not p.exists():
            raise SystemExit(f"missing {p}: fetch mate-backgrounds (see models/train/README.md)")
        named.append((name, box_down2(to_rgb_f32(np.asarray(Image.open(p).convert("RGB")))).astype(np.float32)))
    for name in SKIMAGE_TRAIN:
        named.append((name, to_rgb_f32(getattr(sd, name)())))
    named.append(("motorcycle", to_rgb_f32(getattr(sd, SKIMAGE_STEREO)()[0])))
    if wallpapers is not None:
        named += wallpaper_photos(wallpapers)
    return named if with_names else [img for _, img in named]


def wallpaper_photos(root: Path) -> list[tuple[str, np.ndarray]]:
    """The colorization experiment's training and development wallpaper photos
    (colorize_photos.TRAIN, DEV; not its held-out ones) at <= 1280 px: more clean, varied
    photos, so that fewer of the picture's own thin lines are taken for damage."""
    from models.train.colorize_photos import DEV, TRAIN, wallpaper
    from models.train.photos import shrink
    return [(name, shrink(wallpaper(root, name, pkg), 1280)) for name, pkg in [*TRAIN, *DEV.items()]]


def _polyline(rng: np.random.Generator, size: int, hair: bool) -> np.ndarray:
    """Random-walk polyline in supersampled pixel units."""
    if hair:
        n, step, turn = rng.integers(6, 20), rng.uniform(1.5, 3.0), rng.uniform(0.2, 0.6)
    else:
        n, step, turn = rng.integers(15, 60), rng.uniform(2.0, 6.0), rng.uniform(0.0, 0.12)
    x, y = rng.uniform(-0.2, 1.2) * size, rng.uniform(-0.2, 1.2) * size
    a = rng.uniform(0, 2 * math.pi)
    bend = rng.normal(0, turn / 3)
    pts = []
    for _ in range(int(n)):
        pts.append((x, y))
        a += bend + rng.normal(0, turn)
        x += step * math.cos(a)
        y += step * math.sin(a)
    return np.array(pts) * SS


def _draw_one(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    size = max(h, w)
    canvas = np.zeros((h * SS, w * SS), np.float32)
    kind = rng.random()
    if kind < 0.45:                                   # scratch
        pts = _polyline(rng, size, hair=False)
        width = rng.uniform(0.6, 3.5)
        segs = [pts]
        if rng.random() < 0.25:                       # broken scratch
            cut = sorted(rng.choice(np.arange(1, len(pts) - 1), size=min(2, len(pts) - 2), replace=False))
            segs = [pts[:cut[0]], pts[cut[-1]:]]
        for s in segs:
            if len(s) >= 2:
                cv2.polylines(canvas, [np.round(s).astype(np.int32)], False, 1.0,
                              max(1, int(round(width * SS))), cv2.LINE_AA)
    elif kind < 0.6:                                  # hair / fibre
        pts = _polyline(rng, size, hair=True)
        cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 1.0,
                      max(1, int(round(rng.uniform(0.8, 2.5) * SS))), cv2.LINE_AA)
    else:                                             # speck
        r = math.exp(rng.uniform(math.log(0.6), math.log(8.0)))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            k = int(rng.integers(5, 13))
            angs = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = r * rng.uniform(0.5, 1.3, k)
            poly = np.stack([cx + rad * np.cos(angs), cy + rad * np.sin(angs)], 1)
            cv2.fillPoly(canvas, [np.round(poly * SS).astype(np.int32)], 1.0, cv2.LINE_AA)
        else:
            cv2.ellipse(canvas, (int(cx * SS), int(cy * SS)),
                        (max(1, int(r * SS)), max(1, int(r * SS * rng.uniform(0.4, 1.0)))),
                        rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    a = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    blur = rng.uniform(0, 0.8)
    if blur > 0.15:
        a = cv2.GaussianBlur(a, (0, 0), blur)
    return np.clip(a, 0, 1)


def damage(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A damaged copy of a clean patch (any H x W)."""
    h, w = clean.shape[:2]
    out = clean.copy()
    n = 0 if rng.random() < 0.25 else int(rng.integers(1, 11))
    for _ in range(n):
        a = _draw_one(rng, h, w) * rng.uniform(0.3, 1.0)
        bright = rng.random() < 0.5
        level = rng.uniform(0.7, 1.0) if bright else rng.uniform(0.0, 0.3)
        colour = np.clip(level + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
        if rng.random() < 0.3:                        # a little texture inside the defect
            colour = colour * (1 + 0.08 * rng.standard_normal((h, w, 1)).astype(np.float32))
        out = out * (1 - a[..., None]) + colour * a[..., None]
    return np.clip(out, 0, 1).astype(np.float32)


def regular_lines(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` with a regular pattern of thin lines drawn INTO the picture (not damage: label
    0): mortar between bricks or tiles, or gaps between planks. Why: the
    detector's clean-photo false positives are thin bright or dark lines that belong to the
    picture; what tells mortar from a scratch is that it repeats at a period, crosses at right
    angles and stops at joints, which only examples of it can teach. Period 6-32 px, line width
    0.6-3 px, a random angle, lighter or darker than the picture, its strength varying along the
    line, each row of bricks, tiles or planks a little re-toned, softened like the photo's edges."""
    h, w = clean.shape[:2]
    size = int(math.ceil(math.hypot(h, w))) + 4
    period = rng.uniform(6.0, 32.0)
    kind = rng.choice(["bricks", "grid", "planks"], p=[0.4, 0.3, 0.3])
    aspect = rng.uniform(1.5, 3.5) if kind == "bricks" else rng.uniform(1.0, 2.5)
    lines = np.zeros((size * SS, size * SS), np.float32)
    cells = np.zeros((size, size), np.float32)
    lw = max(1, int(round(rng.uniform(0.6, 3.0) * SS)))
    off = rng.uniform(0, period)
    rows = np.arange(off - period, size + period, period)
    for i, y in enumerate(rows):
        yy = int(round(y * SS))
        cv2.line(lines, (0, yy), (size * SS, yy), 1.0, lw, cv2.LINE_AA)
        cells[max(0, int(y)):max(0, int(y + period)), :] += rng.normal(0, 0.04)
        if kind == "planks":
            continue
        step = period * aspect
        shift = (step / 2 if (kind == "bricks" and i % 2) else 0.0) + rng.uniform(-0.5, 0.5)
        for x in np.arange(shift - step, size + step, step):
            xx = int(round(x * SS))
            cv2.line(lines, (xx, yy), (xx, int(round((y + period) * SS))), 1.0, lw, cv2.LINE_AA)
    a = cv2.resize(lines, (size, size), interpolation=cv2.INTER_AREA)
    # strength varies along the lines (worn mortar, uneven gaps)
    vary = cv2.GaussianBlur(rng.uniform(0.4, 1.0, (size, size)).astype(np.float32), (0, 0), period / 2)
    a = a * np.clip(vary / max(float(vary.max()), 1e-6), 0, 1)
    rot = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(0, 180), 1.0)
    rot[:, 2] -= [(size - w) / 2, (size - h) / 2]
    a = cv2.warpAffine(a, rot, (w, h), flags=cv2.INTER_LINEAR)
    tone = cv2.warpAffine(cells, rot, (w, h), flags=cv2.INTER_NEAREST)
    blur = rng.uniform(0, 0.8)
    if blur > 0.15:
        a = cv2.GaussianBlur(a, (0, 0), blur)
    a = np.clip(a, 0, 1) * rng.uniform(0.4, 1.0)
    base = np.clip(clean * (1 + tone[..., None]), 0, 1)
    luma = float((clean @ LUMA).mean())
    bright = rng.random() < (0.8 if luma < 0.5 else 0.3)
    level = rng.uniform(0.6, 1.0) if bright else rng.uniform(0.0, 0.35)
    colour = np.clip(level + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    return np.clip(base * (1 - a[..., None]) + colour * a[..., None], 0, 1).astype(np.float32)


class Sampler:
    def __init__(self, photos: list[np.ndarray], seed: int, regular: float = 0.0):
        self.photos = photos
        self.regular = regular        # share of the patches given a regular line pattern
        self.rng = np.random.default_rng(seed)
        areas = np.array([p.shape[0] * p.shape[1] for p in photos], np.float64)
        self.p = np.sqrt(areas) / np.sqrt(areas).sum()

    def clean_patch(self, size: int) -> np.ndarray:
        rng = self.rng
        img = self.photos[rng.choice(len(self.photos), p=self.p)]
        scale = rng.uniform(0.5, 1.0) if rng.random() < 0.5 else 1.0
        src = int(math.ceil(size / scale))
        src = min(src, img.shape[0], img.shape[1])
        y = rng.integers(0, img.shape[0] - src + 1)
        x = rng.integers(0, img.shape[1] - src + 1)
        c = img[y:y + src, x:x + src]
        if src != size:
            c = cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
        k = rng.integers(8)
        c = np.rot90(c, k % 4)
        if k >= 4:
            c = c[:, ::-1]
        c = np.ascontiguousarray(c, np.float32)
        if rng.random() < 0.3:
            c = np.repeat((c @ LUMA)[..., None], 3, axis=2)
        if rng.random() < 0.5:                        # exposure / contrast
            g = rng.uniform(0.7, 1.4)
            c = np.clip(c, 0, 1) ** g * rng.uniform(0.8, 1.1)
        if rng.random() < 0.4:                        # mild sensor / film noise
            c = c + rng.uniform(0, 0.02) * rng.standard_normal(c.shape).astype(np.float32)
        return np.clip(c, 0, 1).astype(np.float32)

    def batch(self, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs = np.empty((n, size, size, 3), np.float32)
        ys = np.empty((n, size, size), np.float32)
        ws = np.empty((n, size, size), np.float32)
        for i in range(n):
            c = self.clean_patch(size)
            if self.regular > 0 and self.rng.random() < self.regular:
                c = regular_lines(c, self.rng)
            d = damage(c, self.rng)
            moved = np.abs((d - c) @ LUMA)
            xs[i] = d
            ys[i] = moved > GT_STEP
            ws[i] = (moved <= IGNORE_BELOW) | (moved > GT_STEP)
        t = torch.from_numpy
        return t(xs).permute(0, 3, 1, 2).contiguous(), t(ys)[:, None], t(ws)[:, None]


class DustNet(TinyUNet):
    """TinyUNet with a one-channel probability output instead of a residual RGB correction."""

    def __init__(self, c1: int = 16, c2: int = 32, c3: int = 64):
        super().__init__(c1, c2, c3)
        self.tail = torch.nn.Conv2d(c1, 1, 3, padding=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xp = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="replicate")
        f1 = self.enc1(self.head(xp))
        f2 = self.enc2(self.down1(f1))
        f3 = self.mid(self.down2(f2))
        g2 = self.dec2(self.up2(f3) + f2)
        g1 = self.dec1(self.up1(g2) + f1)
        return self.tail(g1)[:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class DeepDustNet(DustNet):
    """DustNet with a third 2x level (stride 8): a receptive field of about +-54 px instead of
    +-27, to see more of a line's surroundings (one thin line of many, like mortar, or a lone
    scratch?). Its input must be cut at multiples of 8 (local_net's tiles are)."""

    def __init__(self, c1: int = 16, c2: int = 32, c3: int = 64, c4: int = 64):
        super().__init__(c1, c2, c3)
        self.mid = Block(c3, 2)
        self.down3 = nn.Conv2d(c3, c4, 2, stride=2)
        self.mid3 = Block(c4, 3)
        self.up3 = nn.Sequential(nn.Conv2d(c4, 4 * c3, 1), nn.PixelShuffle(2))
        self.dec3 = Block(c3, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xp = F.pad(x, (0, (8 - w % 8) % 8, 0, (8 - h % 8) % 8), mode="replicate")
        f1 = self.enc1(self.head(xp))
        f2 = self.enc2(self.down1(f1))
        f3 = self.mid(self.down2(f2))
        g3 = self.dec3(self.up3(self.mid3(self.down3(f3))) + f3)
        g2 = self.dec2(self.up2(g3) + f2)
        g1 = self.dec1(self.up1(g2) + f1)
        return self.tail(g1)[:, :, :h, :w]


def deep_from_shallow(deep: DeepDustNet, shallow_state: dict) -> None:
    """Load a DustNet's weights into ``deep`` so that it computes exactly what the DustNet did:
    the shallow ``mid``'s first two convolutions stay ``mid``, its third becomes ``dec3``, and
    the new level's way back (``up3``) starts at zero, so the third level adds nothing until
    training makes it useful. Why: a deep net from scratch did not reach the shipped net's recall
    in 25 CPU minutes; starting from the shipped net spends the minutes on the new context."""
    state = deep.state_dict()
    for k, v in shallow_state.items():
        if k == "mid.4.weight" or k == "mid.4.bias":
            state["dec3.0." + k.split(".")[-1]] = v
        elif k in state and state[k].shape == v.shape:
            state[k] = v
        else:
            raise ValueError(f"unexpected shallow weight {k}")
    state["up3.0.weight"] = torch.zeros_like(state["up3.0.weight"])
    state["up3.0.bias"] = torch.zeros_like(state["up3.0.bias"])
    deep.load_state_dict(state)


def make_net(widths: str, deep: bool) -> DustNet:
    c1, c2, c3 = (int(v) for v in widths.split(","))
    return DeepDustNet(c1, c2, c3) if deep else DustNet(c1, c2, c3)


def val_stats(net: DustNet, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    """(recall at the threshold that flags 0.1 % of the clean pixels, that threshold)."""
    with torch.no_grad():
        p = net(x)
    neg = p[(y == 0) & (w > 0)]
    th = float(torch.quantile(neg[:: max(1, neg.numel() // 500_000)], 0.999))
    pos = p[y > 0]
    return float((pos > th).float().mean()) if pos.numel() else 0.0, th


# ---------------------------------------------------------------------------------------
# Calibration of the default threshold, on clean photos that are neither training nor
# benchmark photos: the photographic patterns of Debian's gimp-data (stone, wood, fabric,
# paper, water, sky, food, animal, plant; not "Legacy", which are drawn), tiled 3x3 as they
# are made to tile. They are hard negatives on purpose (bricks, cracks, bark, a lightning bolt).
# ---------------------------------------------------------------------------------------
CAL_SHARE = 0.001        # the default flags at most this share of the calibration pixels
CAL_GRID = [round(0.1 * i, 1) for i in range(121)]     # logits 0.0 .. 12.0


def read_gimp_pattern(path: Path) -> np.ndarray:
    """A GIMP .pat file (big-endian header: size, version, width, height, bytes per pixel,
    "GPAT", name; then the pixels) as float32 RGB 0..1."""
    import struct
    b = path.read_bytes()
    hs, _ver, w, h, bpp = struct.unpack(">5I", b[:20])
    if b[20:24] != b"GPAT":
        raise ValueError(f"{path}: not a GIMP pattern")
    a = np.frombuffer(b[hs:hs + w * h * bpp], np.uint8).reshape(h, w, bpp)
    a = np.repeat(a[..., :1], 3, axis=2) if bpp in (1, 2) else a[..., :3]
    return a.astype(np.float32) / 255.0


def calibration_photos(patterns_dir: Path) -> dict[str, np.ndarray]:
    files = sorted(p for p in patterns_dir.glob("*/*.pat") if p.parent.name != "Legacy")
    if not files:
        raise SystemExit(f"no GIMP patterns under {patterns_dir}: fetch gimp-data (see models/train/README.md)")
    return {f"{p.parent.name}/{p.stem}": np.tile(read_gimp_pattern(p), (3, 3, 1)) for p in files}


def calibrate(net: DustNet, patterns_dir: Path) -> dict:
    """Flagged share (1 px dilation, as the engine ships) per logit threshold; the default is
    the lowest logit of CAL_GRID at which the pooled share is <= CAL_SHARE."""
    photos = calibration_photos(patterns_dir)
    probs = {}
    with torch.no_grad():
        for name, img in photos.items():
            probs[name] = net(torch.from_numpy(img).permute(2, 0, 1)[None])[0, 0].numpy()
    total = sum(p.size for p in probs.values())
    k3 = np.ones((3, 3), np.uint8)
    curve = []
    for z in CAL_GRID:
        t = 1.0 / (1.0 + math.exp(-z))
        per = {n: float(cv2.dilate((p > t).astype(np.uint8), k3).sum()) for n, p in probs.items()}
        curve.append({"logit": z, "pooled_share": sum(per.values()) / total,
                      "worst": max(per, key=lambda n: per[n] / probs[n].size),
                      "worst_share": max(per[n] / probs[n].size for n in per)})
    chosen = next((c["logit"] for c in curve if c["pooled_share"] <= CAL_SHARE), CAL_GRID[-1])
    # recall at that threshold on the same patterns damaged by this file's generator (to compare
    # stages without looking at the benchmark)
    rng = np.random.default_rng(7)
    t = 1.0 / (1.0 + math.exp(-chosen))
    hit = pos = 0
    with torch.no_grad():
        for img in photos.values():
            for _ in range(4):
                d = damage(img, rng)
                gt = np.abs((d - img) @ LUMA) > GT_STEP
                p = net(torch.from_numpy(d).permute(2, 0, 1)[None])[0, 0].numpy()
                m = cv2.dilate((p > t).astype(np.uint8), k3).astype(bool)
                hit, pos = hit + int((m & gt).sum()), pos + int(gt.sum())
    return {"patterns": sorted(photos), "pixels": total, "target_share": CAL_SHARE,
            "default_logit": chosen, "damaged_recall_at_default": hit / max(pos, 1), "curve": curve}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_args(ap, threads=2, steps=8000, budget_min=40.0, patch=80)
    ap.add_argument("--hard-neg", type=float, default=0.0,
                    help="extra loss weight of a negative pixel in proportion to its predicted probability")
    ap.add_argument("--calibrate", metavar="PT", default=None,
                    help="no training: calibrate the default threshold of these weights (.pt) on the GIMP "
                         "patterns and write dust_calibration.json to --out")
    ap.add_argument("--patterns-dir", default=os.environ.get("GIMP_PATTERNS", "/usr/share/gimp/3.0/patterns"))
    ap.add_argument("--deep", action="store_true",
                    help="DeepDustNet (a third level, ~+-54 px receptive field; an experiment, not shipped)")
    ap.add_argument("--init-shallow", default=None, metavar="PT",
                    help="with --deep: start from these DustNet weights (.pt), computing what they did")
    ap.add_argument("--regular", type=float, default=0.0,
                    help="share of the patches given a regular line pattern (bricks, tiles, planks) as picture")
    ap.add_argument("--wallpapers", default=None,
                    help="also train on the wallpaper photos extracted there (models/train/colorize_photos.py)")
    args = ap.parse_args(argv)
    if args.calibrate:
        torch.set_num_threads(args.threads)
        cal_net = make_net(args.widths, args.deep)
        cal_net.load_state_dict(torch.load(args.calibrate, map_location="cpu", weights_only=True))
        cal = calibrate(cal_net.eval(), Path(args.patterns_dir))
        Path(args.out, "dust_calibration.json").write_text(json.dumps(cal, indent=1) + "\n")
        print(json.dumps({k: cal[k] for k in ("pixels", "target_share", "default_logit", "damaged_recall_at_default")}),
              flush=True)
        return 0

    torch.set_num_threads(args.threads)
    seed = args.seed + 2000
    torch.manual_seed(seed)
    dev = torch.device(args.device)
    photos = load_photos(Path(args.mate_dir), wallpapers=Path(args.wallpapers) if args.wallpapers else None)
    sampler = Sampler(photos, seed + 2, regular=args.regular)
    net = make_net(args.widths, args.deep)
    if args.init_shallow:
        if not isinstance(net, DeepDustNet):
            raise SystemExit("--init-shallow needs --deep")
        deep_from_shallow(net, torch.load(args.init_shallow, map_location="cpu", weights_only=True))
    net = net.to(dev)
    opt, nparams, out_dir = start_stage(net, args)
    val = Sampler(photos, 12345, regular=args.regular).batch(48, 128)     # training photos, logging only
    vx, vy, vw = (t.to(dev) for t in val)

    print(json.dumps(dict(vars(args), params=nparams, torch=torch.__version__)), flush=True)

    def loss_of_batch() -> torch.Tensor:
        x, y, w = (t.to(dev) for t in sampler.batch(args.batch, args.patch))
        logits = net.logits(x)
        if args.hard_neg > 0:
            # stage 2: a confident false positive costs more (focal-like, negatives only), so
            # the high thresholds that keep clean photos clean lose less of the damage
            w = w * (1 + args.hard_neg * (1 - y) * torch.sigmoid(logits).detach())
        return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum() / w.sum()

    def validate() -> tuple[list[str], str]:
        rec, th = val_stats(net, vx, vy, vw)
        return [f"{rec:.4f}", f"{th:.4f}"], f"val recall {rec:.3f} @ th {th:.3f}"

    step, train_s = run_stage(net, opt, args, out_dir / f"dust_train_log{args.tag}.csv",
                              ["val_recall_at_0.1pct", "val_threshold"], loss_of_batch, validate, every=250,
                              checkpoint=out_dir / f"dust{args.tag}.pt")
    finish_stage(net, args, out_dir, "dust", step, train_s, nparams, hard_neg=args.hard_neg, deep=args.deep,
                 photos=len(photos), wallpapers=bool(args.wallpapers), regular=args.regular,
                 init_shallow=bool(args.init_shallow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
