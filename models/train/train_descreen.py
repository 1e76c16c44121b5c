"""Train an inverse-halftoning network for descreen: an EXPERIMENT, not shipped.

Tried once (models/train/README.md, "Descreen network"): taken whole it shifted the benchmark
print's tones; limited to the band the classical filter removes it gained ~0.1 dB on the test
prints and left more screen, so the engine's descreen stays classical and no weights are
committed. Kept so the experiment can be repeated (a GPU, a bigger net, another print model).

Why learned: a halftone keeps the picture only below its screen frequency, so any linear
filter that removes the dots (the classical FFT notch + low-pass of engine/tasks/descreen.py,
or a Gaussian blur) also removes the picture's detail near that frequency; a network that has
seen many printed dots learns where an edge runs through them (inverse halftoning).

    .venv-train/bin/python models/train/train_descreen.py --mate-dir DIR --lr 5e-4 --out /tmp/ds   # CPU, 30 min

The net is the denoiser's TinyUNet (residual RGB): input "input" N,3,H,W float32 RGB 0..1 (a
scan of a halftone print), output "output" the same print as continuous tone (the same inks
laid down without a screen).

Photos: train_dust.py's training photos less stereo_motorcycle (a development photo of the
descreen benchmark); never camera, astronaut, chelsea, coffee, rocket, grace_hopper.

Printing, drawn by THIS file (the benchmark's simulation in bench/quality_descreen.py is another
one): per patch a period of 3.5-9 px, round or cosine dots, any screen angle per ink, dots
thresholded at 2x or 3x and area-integrated, scan blur 0.3-0.9 px, paper 0.9-1.0 white, a
little scan noise; gray (one black screen) or colour (C, M, Y, K with 30-70 % under-colour
removal, each ink at its own random angle).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.train.train import TinyUNet, add_stage_args, finish_stage, run_stage, start_stage
from models.train.train_dust import LUMA, Sampler, load_photos

DESCREEN_DEV = {"motorcycle"}      # train_dust's photo names that the descreen benchmark develops on


def _screen(h: int, w: int, period: float, angle: float, round_dots: bool, rng: np.random.Generator) -> np.ndarray:
    """Threshold map 0..1 of one ink's screen at the given (supersampled) size."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = math.radians(angle)
    ox, oy = rng.uniform(0, period, 2)
    u = (x + ox) * math.cos(t) + (y + oy) * math.sin(t)
    v = -(x + ox) * math.sin(t) + (y + oy) * math.cos(t)
    if round_dots:        # distance to the nearest cell centre, as a share of the cell
        du = (u / period) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        return np.clip(np.hypot(du, dv) / 0.7071, 0, 1)
    return 0.5 + 0.25 * (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period))


def _print_ink(cov: np.ndarray, period: float, angle: float, ss: int, round_dots: bool, blur: float,
               rng: np.random.Generator) -> np.ndarray:
    h, w = cov.shape
    big = cv2.resize(cov, (ss * w, ss * h), interpolation=cv2.INTER_LINEAR)
    dots = (big > _screen(ss * h, ss * w, ss * period, angle, round_dots, rng)).astype(np.float32)
    small = cv2.resize(dots, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (0, 0), blur)


def print_and_scan(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(the scanned halftone, the continuous-tone truth) of one clean patch."""
    period = rng.uniform(3.5, 9.0)
    ss = int(rng.choice([2, 3]))
    round_dots = bool(rng.random() < 0.5)
    blur = rng.uniform(0.3, 0.9)
    paper = rng.uniform(0.9, 1.0)
    if rng.random() < 0.4:
        k = 1.0 - rgb @ LUMA
        ink = _print_ink(k, period, rng.uniform(0, 90), ss, round_dots, blur, rng)
        scan = np.repeat((paper * (1 - ink))[..., None], 3, axis=2)
        truth = np.repeat((paper * (1 - k))[..., None], 3, axis=2)
    else:
        cmy = 1.0 - rgb
        k = rng.uniform(0.3, 0.7) * cmy.min(axis=2)
        cmy = cmy - k[..., None]
        inks = [_print_ink(cmy[..., i], period, rng.uniform(0, 90), ss, round_dots, blur, rng) for i in range(3)]
        kk = _print_ink(k, period, rng.uniform(0, 90), ss, round_dots, blur, rng)
        scan = paper * np.stack([(1 - inks[i]) * (1 - kk) for i in range(3)], axis=2)
        truth = paper * (1 - cmy) * (1 - k[..., None])
    scan = scan + rng.uniform(0, 0.01) * rng.standard_normal(scan.shape)
    return np.clip(scan, 0, 1).astype(np.float32), np.clip(truth, 0, 1).astype(np.float32)


def batch(sampler: Sampler, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs = np.empty((n, size, size, 3), np.float32)
    ys = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        xs[i], ys[i] = print_and_scan(sampler.clean_patch(size), sampler.rng)
    return (torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(ys).permute(0, 3, 1, 2).contiguous())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_args(ap, threads=2, steps=10000, budget_min=30.0, patch=96)
    ap.add_argument("--clip-grad", type=float, default=1.0,
                    help="gradient-norm cap (a first run at lr 2e-3 without it diverged at ~800 steps)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    seed = args.seed + 3000
    torch.manual_seed(seed)
    dev = torch.device(args.device)
    named = load_photos(Path(args.mate_dir), with_names=True)
    photos = [img for name, img in named if name not in DESCREEN_DEV]
    sampler = Sampler(photos, seed + 2)
    c1, c2, c3 = (int(v) for v in args.widths.split(","))
    net = TinyUNet(c1, c2, c3).to(dev)
    opt, nparams, out_dir = start_stage(net, args)
    vx, vy = (t.to(dev) for t in batch(Sampler(photos, 12345), 32, 128))   # training photos, logging only

    def val_psnr(a: torch.Tensor) -> float:
        return 10 * math.log10(1.0 / max(float(((a.clamp(0, 1) - vy) ** 2).mean()), 1e-12))

    print(json.dumps(dict(vars(args), params=nparams, torch=torch.__version__)), flush=True)

    def loss_of_batch() -> torch.Tensor:
        x, y = (t.to(dev) for t in batch(sampler, args.batch, args.patch))
        return torch.sqrt((net(x) - y) ** 2 + 1e-6).mean()      # Charbonnier

    def validate() -> tuple[list[str], str]:
        vp, vi = val_psnr(net(vx)), val_psnr(vx)
        return [f"{vp:.3f}", f"{vi:.3f}"], f"val {vi:.2f}->{vp:.2f} dB"

    step, train_s = run_stage(net, opt, args, out_dir / f"descreen_train_log{args.tag}.csv",
                              ["val_psnr", "val_input_psnr"], loss_of_batch, validate, every=250,
                              checkpoint=out_dir / f"descreen{args.tag}.pt", clip_grad=args.clip_grad)

    finish_stage(net, args, out_dir, "descreen", step, train_s, nparams, clip_grad=args.clip_grad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
