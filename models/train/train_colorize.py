"""Automatic colorization: an EXPERIMENT, not shipped (models/train/README.md, "Automatic
colorization"). No weights of it are in the engine: on photos it never saw, its colours were
further from the originals than leaving the photo gray.

Why it was tried: with no colour hints there is nothing to propagate; what colour a gray
region had (sky, foliage, skin, wood, water) is a question of what it is, which only a model
that has seen colour photos can guess (issue 14, item 2b: "a compact model trained here on
the offline photos for a plausible starting point").

    .venv-train/bin/python models/train/train_colorize.py --loss classes --steps 2000 --lr 5e-4 \
        --wallpapers DIR --mate-dir DIR                          # CPU, ~9 min; writes to out/colorize/

The net sees the WHOLE photo at a working size (longest side :data:`WORK_SIDE` px) so that it
can use global context: input "input" N,3,H,W RGB 0..1 (only its BT.601 luma is used; any H,
W: padded to 16 inside), output "output" N,2,H,W = CIELAB a*, b* divided by 100.

Losses (``--loss``): ``classes``, classification over a*b* classes with class rebalancing,
decoded as the annealed mean (Zhang, Isola & Efros, "Colorful image colorization", ECCV 2016,
written here from the paper), and ``l1``, a plain regression of a*b*. Both keep the weights
that do best on the development photos (colorize_photos.DEV and stereo_motorcycle: early
stopping), and ``classes`` picks its temperature there too.

Data (all from Debian packages, fetched by apt at TRAINING time only; the engine downloads
nothing): the denoiser's mate-backgrounds training photos, and the photographs (not the
drawings) of plasma-workspace-wallpapers 5.27.5 (GPL-2+), budgie-backgrounds 4.2 (CC0-1.0,
JPEG XL, decoded with imagecodecs) and lomiri-wallpapers 16.04/20.04 (Ubuntu's wallpaper
contest photos); the list is colorize_photos.TRAIN. Held out, never trained on: scikit-image's
astronaut, coffee, chelsea, rocket; matplotlib's grace_hopper; mate LadyBird, Storm, Wood; and
colorize_photos.HELD_OUT (4 wallpaper photos: animal, architecture, landscape, forest).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.train.colorize_photos import DEV, TRAIN, wallpaper
from models.train.photos import box_down2, read_photo, shrink
from models.train.train import MATE_TRAIN, ROOT, add_stage_args, finish_stage, run_stage, start_stage

WORK_SIDE = 256           # the net runs on the whole photo scaled to this longest side
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

def load_photos(root: Path, mate_dir: Path) -> list[tuple[str, np.ndarray]]:
    """(name, float32 RGB 0..1 with the longest side <= 640) of every training photo
    (colorize_photos.TRAIN and the denoiser's mate-backgrounds training photos)."""
    named = [(name, box_down2(read_photo(mate_dir / f"{name}.jpg"))) for name in MATE_TRAIN]
    named += [(name, wallpaper(root, name, package)) for name, package in TRAIN]
    return [(n, shrink(img, 640).astype(np.float32)) for n, img in named]


def to_lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2Lab)


class Sampler:
    """Crops of the photos at the scales the net sees them at: the photo at a longest side of
    WORK_SIDE..1.75*WORK_SIDE, a square crop of ``size``; flips; luma input, a*b*/100 target."""

    def __init__(self, photos: list[np.ndarray], seed: int):
        self.rng = np.random.default_rng(seed)
        self.levels = [[shrink(p, round(WORK_SIDE * f)) for f in (1.0, 1.35, 1.75)] for p in photos]

    def one(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        img = self.levels[rng.integers(len(self.levels))][rng.integers(3)]
        h, w = img.shape[:2]
        if min(h, w) < size:
            img = cv2.resize(img, (max(size, w), max(size, h)), interpolation=cv2.INTER_LINEAR)
            h, w = img.shape[:2]
        y = rng.integers(0, h - size + 1)
        x = rng.integers(0, w - size + 1)
        c = img[y:y + size, x:x + size]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        c = np.ascontiguousarray(c)
        lab = to_lab(c)
        return c @ LUMA, lab[..., 1:] / 100.0

    def batch(self, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        ys = np.empty((n, 1, size, size), np.float32)
        abs_ = np.empty((n, 2, size, size), np.float32)
        for i in range(n):
            y, ab = self.one(size)
            ys[i, 0] = y
            abs_[i] = ab.transpose(2, 0, 1)
        return torch.from_numpy(ys), torch.from_numpy(abs_)


def _convs(cin: int, cout: int, n: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
    return nn.Sequential(*layers)


def ab_bins(step: float = 10.0) -> np.ndarray:
    """The a*b* classes (Zhang, Isola & Efros, "Colorful image colorization", 2016): the centres
    of a ``step`` grid over a*, b* in -110..110 that some sRGB colour falls in (Q x 2, Lab units)."""
    g = np.linspace(0.0, 1.0, 48, dtype=np.float32)
    cube = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 1, 3)
    ab = to_lab(cube)[:, 0, 1:]
    idx = np.floor((ab + 110.0) / step).astype(int)
    seen = sorted({(int(i), int(j)) for i, j in idx})
    return np.array([[-110.0 + (i + 0.5) * step, -110.0 + (j + 0.5) * step] for i, j in seen], np.float32)


def soft_targets(ab: torch.Tensor, centres: torch.Tensor, k: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """N,Q,h,w soft one-hot of the a*b* map ``ab`` (N,2,h,w, Lab units): its ``k`` nearest
    classes weighted by a Gaussian of the distance (Zhang et al.'s soft encoding)."""
    n, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(flat, centres).pow(2)
    val, idx = d2.topk(k, dim=1, largest=False)
    wt = torch.softmax(-val / (2 * sigma * sigma), dim=1)
    out = torch.zeros(flat.shape[0], centres.shape[0]).scatter_(1, idx, wt)
    return out.reshape(n, h, w, -1).permute(0, 3, 1, 2)


class ColorNet(nn.Module):
    """A 5-level U-Net encoder (strides 1..16) whose bottom also gets the image's mean feature
    (global context, as Iizuka et al. 2016 fuse global features), decoded to stride 4, where a
    1x1 conv gives either a*b*/100 directly (``centres`` None: the L1 regression) or the logits
    of the a*b* classes (``centres``: Zhang et al.'s classification, decoded as their annealed
    mean, softmax at ``temperature``). ``forward``: a*b*/100 upsampled to full size, N,2,H,W
    (H, W multiples of 16)."""

    def __init__(self, centres: np.ndarray | None = None, widths: tuple[int, ...] = (16, 32, 48, 64, 96),
                 temperature: float = 0.38):
        super().__init__()
        c = widths
        self.temperature = temperature
        self.classes = centres is not None
        self.register_buffer("centres", torch.from_numpy(centres / 100.0) if centres is not None else torch.zeros(0, 2))
        self.enc = nn.ModuleList([_convs(1, c[0], 1)] + [_convs(c[i - 1], c[i]) for i in range(1, len(c))])
        self.glob = nn.Sequential(nn.Linear(c[-1], c[-1]), nn.LeakyReLU(0.1, inplace=True))
        self.fuse = _convs(2 * c[-1], c[-1], 2)
        self.up = nn.ModuleList([nn.Conv2d(c[i], c[i - 1], 1) for i in range(len(c) - 1, 2, -1)])
        self.dec = nn.ModuleList([_convs(c[i - 1], c[i - 1], 2) for i in range(len(c) - 1, 2, -1)])
        self.head = nn.Conv2d(c[2], centres.shape[0] if centres is not None else 2, 1)

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        """N,Q,H/4,W/4 class logits (or N,2,H/4,W/4 pre-activation a*b* in regression)."""
        x = y - 0.5
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        g = self.glob(x.mean(dim=(2, 3)))
        x = self.fuse(torch.cat([x, g[:, :, None, None].expand_as(x)], dim=1))
        for up, dec, skip in zip(self.up, self.dec, [skips[3], skips[2]]):
            x = dec(F.interpolate(up(x), scale_factor=2.0, mode="bilinear", align_corners=False) + skip)
        return self.head(x)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """a*b*/100 at stride 4."""
        if not self.classes:
            return torch.tanh(logits) * 1.1
        p = torch.softmax(logits / self.temperature, dim=1)
        return torch.einsum("nqhw,qc->nchw", p, self.centres)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        ab = self.decode(self.logits(y))
        return F.interpolate(ab, scale_factor=4.0, mode="bilinear", align_corners=False)


def class_weights(sampler: Sampler, centres: torch.Tensor, crops: int, size: int, mix: float = 0.5) -> torch.Tensor:
    """Zhang et al.'s class rebalancing: 1 / ((1 - mix) p + mix / Q) with p the classes'
    frequency in ``crops`` training crops (at stride 4), normalised so that E_p[w] = 1: rare,
    saturated colours are not drowned by the many grays and browns."""
    counts = torch.zeros(centres.shape[0])
    for _ in range(crops // 16):
        _y, ab = sampler.batch(16, size)
        counts += soft_targets(F.avg_pool2d(ab * 100.0, 4), centres).sum(dim=(0, 2, 3))
    p = counts / counts.sum()
    w = 1.0 / ((1 - mix) * p + mix / len(p))
    return w / (p * w).sum()


def dev_photos(root: Path) -> list[np.ndarray]:
    """The development photos: colorize_photos.DEV and scikit-image's stereo_motorcycle (left)."""
    import skimage.data as sd
    return [wallpaper(root, n, pkg) for n, pkg in DEV.items()] + [sd.stereo_motorcycle()[0].astype(np.float32) / 255]


def dev_pair(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1,3,H,W gray RGB input, 1,2,H,W true a*b*/100) of a photo at the working size."""
    y = rgb @ LUMA
    ab = to_lab(np.ascontiguousarray(rgb, np.float32))[..., 1:] / 100.0
    return (torch.from_numpy(np.repeat(y[None, None], 3, axis=1).astype(np.float32)),
            torch.from_numpy(ab.transpose(2, 0, 1)[None].astype(np.float32)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_args(ap, threads=2, steps=2000, budget_min=15.0, patch=160)
    ap.set_defaults(out=str(ROOT / "out" / "colorize"))     # an experiment: never next to the engine's weights
    ap.add_argument("--wallpapers", default=os.environ.get("WALLPAPERS", "/work/colortrain/root"),
                    help="a folder holding the extracted wallpaper packages' usr/ trees (env WALLPAPERS)")
    ap.add_argument("--clip-grad", type=float, default=1.0, help="gradient norm cap (lr 2e-3 without it diverged)")
    ap.add_argument("--loss", choices=["l1", "classes"], default="classes",
                    help="classes: Zhang et al.'s rebalanced classification; l1: regression of a*b*")
    args = ap.parse_args(argv)
    args.widths = args.widths if args.widths != "16,32,64" else "16,32,48,64,96"
    torch.set_num_threads(args.threads)
    seed = args.seed + 3000
    torch.manual_seed(seed)
    np.random.seed(seed)
    dev = torch.device(args.device)
    named = load_photos(Path(args.wallpapers), Path(args.mate_dir))
    photos = [p for _, p in named]
    sampler = Sampler(photos, seed + 2)
    widths = tuple(int(v) for v in args.widths.split(","))
    centres = ab_bins() if args.loss == "classes" else None
    net = ColorNet(centres, widths).to(dev)
    opt, nparams, out_dir = start_stage(net, args)
    ct = torch.from_numpy(centres) if centres is not None else None
    weights = class_weights(Sampler(photos, seed + 7), ct, 640, args.patch).to(dev) if ct is not None else None
    vy, vab = (t.to(dev) for t in Sampler(photos, 12345).batch(32, args.patch))     # training photos, logging only
    classes = 0 if centres is None else len(centres)
    print(json.dumps(dict(vars(args), params=nparams, photos=len(photos), classes=classes,
                          torch=torch.__version__)), flush=True)

    def loss_of_batch() -> torch.Tensor:
        y, ab = (t.to(dev) for t in sampler.batch(args.batch, args.patch))
        if ct is None or weights is None:
            return F.l1_loss(net(y), ab)
        z = soft_targets(F.avg_pool2d(ab * 100.0, 4), ct).to(dev)
        logp = F.log_softmax(net.logits(y), dim=1)
        w = weights[z.argmax(dim=1)]                           # the weight of each pixel's own class
        return -((z * logp).sum(dim=1) * w).mean()

    dev_set = [dev_pair(shrink(p, WORK_SIDE)) for p in dev_photos(Path(args.wallpapers))]
    best = {"err": float("inf"), "step": 0}
    best_path = out_dir / f"colorize{args.tag}_best.pt"

    def validate() -> tuple[list[str], str]:
        pred = net(vy)
        l1 = F.l1_loss(pred, vab).item() * 100
        chroma = float(pred.pow(2).sum(1).sqrt().mean().item() * 100)
        errs = [float((_OneChannel(net)(x) - ab).pow(2).sum(1).sqrt().mean()) * 100 for x, ab in dev_set]
        err = float(np.mean(errs))
        if err < best["err"]:
            best.update(err=err, step=int(opt.state_dict()["state"][0]["step"]) if opt.state_dict()["state"] else 0)
            torch.save(net.state_dict(), best_path)
        return ([f"{l1:.3f}", f"{chroma:.2f}", f"{err:.3f}"],
                f"val ab L1 {l1:.2f} chroma {chroma:.1f} (truth {truth_chroma:.1f}) dev ab error {err:.2f} "
                f"(gray {dev_gray:.2f})")

    truth_chroma = float(vab.pow(2).sum(1).sqrt().mean().item() * 100)
    dev_gray = float(np.mean([float(ab.pow(2).sum(1).sqrt().mean()) * 100 for _x, ab in dev_set]))
    step, train_s = run_stage(net, opt, args, out_dir / f"colorize_train_log{args.tag}.csv",
                              ["val_ab_l1", "val_chroma", "dev_ab_error"], loss_of_batch, validate, every=250,
                              checkpoint=out_dir / f"colorize{args.tag}.pt", clip_grad=args.clip_grad)
    # the weights that did best on the development photos (early stopping), not the last ones
    net.load_state_dict(torch.load(best_path, map_location=args.device, weights_only=True))
    net.eval().cpu()
    temps = {}
    if classes:   # the annealed mean's temperature, chosen on the development photos too
        for t in (0.38, 0.5, 0.7, 1.0):
            net.temperature = t
            with torch.no_grad():
                temps[t] = float(np.mean([float((_OneChannel(net)(x) - ab).pow(2).sum(1).sqrt().mean()) * 100
                                          for x, ab in dev_set]))
        net.temperature = min(temps, key=lambda k: temps[k])
        print(json.dumps({"dev_ab_error_by_temperature": temps, "chosen": net.temperature}), flush=True)
    finish_stage(net, args, out_dir, "colorize", step, train_s, nparams, export_net=_OneChannel(net),
                 loss=args.loss, classes=classes, temperature=net.temperature if classes else None,
                 clip_grad=args.clip_grad, photos=[n for n, _ in named], kept_step=best["step"],
                 dev_ab_error=round(best["err"], 3), dev_ab_error_gray=round(dev_gray, 3),
                 dev_ab_error_by_temperature={str(k): round(v, 3) for k, v in temps.items()})
    return 0


class _OneChannel(nn.Module):
    """Export wrapper: the graph takes RGB 0..1 (as export_onnx's check and the engine's other
    nets do), computes its BT.601 luma and pads H, W up to a multiple of 16 itself, so the
    engine can send any size."""

    def __init__(self, net: ColorNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        h, w = y.shape[-2], y.shape[-1]
        yp = F.pad(y, (0, (16 - w % 16) % 16, 0, (16 - h % 16) % 16), mode="replicate")
        return self.net(yp)[:, :, :h, :w]


if __name__ == "__main__":
    sys.exit(main())
