"""Train EnhanceLayer's own blind photo denoiser / sharpener and export them to ONNX.

Reproducible: fixed seeds, a fixed data recipe (see DATA below and README.md), the
hyper-parameters on the command line and written into the log.  The trained ONNX files
take "input" NCHW float32 RGB 0..1 (any H/W) and give "output" of the same shape.

    python models/train/train.py --task denoise            # CPU, ~25 min
    python models/train/train.py --task sharpen
    python models/train/train.py --task denoise --device cuda --budget-min 10 --steps 20000 --batch 64

Needs the training venv (torch, numpy, scikit-image, pillow, onnx); the photos of
Debian's mate-backgrounds package are fetched by the caller (see README.md) and given
with --mate-dir.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # run as a script: the repository root
from models.train.photos import box_down2, to_rgb_f32

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# ---------------------------------------------------------------------------------------
# DATA recipe.  Held out for evaluation (never seen in training): skimage astronaut,
# coffee, chelsea, camera; matplotlib grace_hopper.jpg; mate-backgrounds LadyBird,
# Storm, Wood.  Everything below is training data.
# ---------------------------------------------------------------------------------------
MATE_TRAIN = ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
              "RainDrops", "TwoWings", "YellowFlower"]
MATE_HELDOUT = ["LadyBird", "Storm", "Wood"]
SKIMAGE_TRAIN = ["brick", "grass", "gravel", "rocket", "hubble_deep_field"]
SKIMAGE_HELDOUT = ["astronaut", "coffee", "chelsea", "camera"]
MATE_SHA256 = "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"  # mate-backgrounds_1.26.0-1_all.deb


def load_training_photos(mate_dir: Path) -> list[np.ndarray]:
    import skimage.data as sd
    from PIL import Image
    photos = []
    for name in MATE_TRAIN:
        p = mate_dir / f"{name}.jpg"
        if not p.exists():
            raise SystemExit(f"missing {p}: fetch mate-backgrounds (see models/train/README.md)")
        photos.append(box_down2(to_rgb_f32(np.asarray(Image.open(p).convert("RGB")))).astype(np.float32))
    for name in SKIMAGE_TRAIN:
        photos.append(to_rgb_f32(getattr(sd, name)()))
    return photos


# ---------------------------------------------------------------------------------------
# Network: a small 3-level U-Net with residual output (predicts the correction).
# The input is reflect-padded to a multiple of 4 inside the graph, so any H/W works.
# ---------------------------------------------------------------------------------------
class Block(nn.Sequential):
    def __init__(self, c: int, n: int):
        layers = []
        for _ in range(n):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
        super().__init__(*layers)


def noise_estimate(x: torch.Tensor) -> torch.Tensor:
    """Global noise level estimate, inside the graph (so the model stays blind for the user):
    Immerkaer's Laplacian-difference estimator on the luma, per 32x32 block, minimum over the
    blocks (flat blocks show the noise alone).  N,1,1,1; needs H, W >= 34."""
    y = x.mean(dim=1, keepdim=True)
    k = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=x.device).view(1, 1, 3, 3)
    r = F.conv2d(y, k).abs()
    s = F.avg_pool2d(r, 32, stride=32) * (math.sqrt(math.pi / 2) / 6.0)
    return s.amin(dim=(2, 3), keepdim=True)


class TinyUNet(nn.Module):
    def __init__(self, c1: int = 16, c2: int = 32, c3: int = 64, noise_input: bool = False):
        super().__init__()
        self.noise_input = noise_input
        self.head = nn.Sequential(nn.Conv2d(4 if noise_input else 3, c1, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))
        self.enc1 = Block(c1, 1)
        self.down1 = nn.Conv2d(c1, c2, 2, stride=2)
        self.enc2 = Block(c2, 2)
        self.down2 = nn.Conv2d(c2, c3, 2, stride=2)
        self.mid = Block(c3, 3)
        self.up2 = nn.Sequential(nn.Conv2d(c3, 4 * c2, 1), nn.PixelShuffle(2))
        self.dec2 = Block(c2, 2)
        self.up1 = nn.Sequential(nn.Conv2d(c2, 4 * c1, 1), nn.PixelShuffle(2))
        self.dec1 = Block(c1, 1)
        self.tail = nn.Conv2d(c1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph = (4 - h % 4) % 4
        pw = (4 - w % 4) % 4
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate")
        if self.noise_input:
            est = noise_estimate(xp) * 10.0          # ~0.2..2 for sigma 5..55
            f1 = self.enc1(self.head(torch.cat([xp, est.expand_as(xp[:, :1])], dim=1)))
        else:
            f1 = self.enc1(self.head(xp))
        f2 = self.enc2(self.down1(f1))
        f3 = self.mid(self.down2(f2))
        g2 = self.dec2(self.up2(f3) + f2)
        g1 = self.dec1(self.up1(g2) + f1)
        out = xp + self.tail(g1)
        return out[:, :, :h, :w]


# ---------------------------------------------------------------------------------------
# Degradations (synthetic, on the fly)
# ---------------------------------------------------------------------------------------
def add_noise(clean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blind noise: Gaussian sigma 5..55 (70 %) or Poisson-Gaussian (30 %), per patch;
    colour (independent per channel) mixed with luminance (shared) noise at a random ratio."""
    b = clean.shape[0]
    dev = clean.device
    r = torch.rand(b, 6, generator=g).to(dev)
    sigma = (5 + 50 * r[:, 0]) / 255.0
    pg = r[:, 1] < 0.3
    a = torch.exp(math.log(0.001) + (math.log(0.03) - math.log(0.001)) * r[:, 2])  # shot-noise gain
    bg = 0.04 * r[:, 3]                                                               # read noise
    rho = torch.where(r[:, 4] < 0.5, torch.zeros_like(r[:, 4]), r[:, 5])              # luminance share
    var = torch.where(pg.view(b, 1, 1, 1), a.view(b, 1, 1, 1) * clean.clamp(0, 1) + bg.view(b, 1, 1, 1) ** 2,
                      (sigma ** 2).view(b, 1, 1, 1).expand_as(clean))
    n_col = torch.randn(clean.shape, generator=g).to(dev)
    n_lum = torch.randn((b, 1) + tuple(clean.shape[2:]), generator=g).to(dev)
    rho = rho.view(b, 1, 1, 1)
    n = torch.sqrt(1 - rho) * n_col + torch.sqrt(rho) * n_lum
    return (clean + n * torch.sqrt(var)).clamp(0, 1)


def motion_kernel(length: float, angle: float, size: int) -> np.ndarray:
    """Straight-line motion PSF: points along the segment splatted bilinearly."""
    k = np.zeros((size, size), np.float64)
    c = (size - 1) / 2
    n = max(int(length * 8), 2)
    for t in np.linspace(-length / 2, length / 2, n):
        x, y = c + t * math.cos(angle), c + t * math.sin(angle)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx < size and 0 <= y0 + dy < size:
                k[y0 + dy, x0 + dx] += wgt
    return k / k.sum()


def gauss_kernel(sigma: float, size: int) -> np.ndarray:
    ax = np.arange(size) - (size - 1) / 2
    g1 = np.exp(-ax ** 2 / (2 * sigma ** 2))
    k = np.outer(g1, g1)
    return k / k.sum()


KSIZE = 15


def blur_batch(big: torch.Tensor, rng: np.random.Generator, g: torch.Generator) -> torch.Tensor:
    """big: B,3,P+14,P+14 -> blurred B,3,P,P (valid conv) + light noise.
    Gaussian defocus sigma 0.8..2 (55 %), motion 3..11 px any angle (35 %),
    a mix of both (5 %), none (5 %: the net must leave sharp photos alone)."""
    b = big.shape[0]
    ks = []
    for _ in range(b):
        u = rng.random()
        if u < 0.55:
            k = gauss_kernel(rng.uniform(0.8, 2.0), KSIZE)
        elif u < 0.90:
            k = motion_kernel(rng.uniform(3, 11), rng.uniform(0, math.pi), KSIZE)
        elif u < 0.95:
            from scipy.signal import convolve2d
            k = convolve2d(motion_kernel(rng.uniform(3, 7), rng.uniform(0, math.pi), KSIZE),
                           gauss_kernel(rng.uniform(0.5, 1.0), 7), mode="same")
            k /= k.sum()
        else:
            k = np.zeros((KSIZE, KSIZE))
            k[KSIZE // 2, KSIZE // 2] = 1
        ks.append(k)
    w = torch.from_numpy(np.stack(ks).astype(np.float32)).to(big.device)       # B,k,k
    w = w[:, None].repeat_interleave(3, 0)                                     # B*3,1,k,k
    x = big.reshape(1, b * 3, big.shape[2], big.shape[3])
    y = F.conv2d(x, w.flip(-1).flip(-2), groups=b * 3).reshape(b, 3, big.shape[2] - KSIZE + 1, -1)
    sig = torch.from_numpy(rng.uniform(0, 3, b).astype(np.float32) / 255).to(big.device).view(b, 1, 1, 1)
    y = y + sig * torch.randn(y.shape, generator=g).to(big.device)
    return y.clamp(0, 1)


class Sampler:
    """Random crops with rot90/flip.  With probability `detail`, the most textured of 4 candidate
    crops is taken: the wallpaper photos are mostly sky and bokeh, and a net fed mostly flat
    patches learns to smooth away fine texture."""

    def __init__(self, photos: list[np.ndarray], seed: int, detail: float = 0.0):
        self.photos = photos
        self.detail = detail
        self.rng = np.random.default_rng(seed)
        areas = np.array([p.shape[0] * p.shape[1] for p in photos], np.float64)
        self.p = np.sqrt(areas) / np.sqrt(areas).sum()  # big photos more often, not overwhelmingly

    def batch(self, n: int, size: int) -> torch.Tensor:
        out = np.empty((n, size, size, 3), np.float32)
        for i in range(n):
            img = self.photos[self.rng.choice(len(self.photos), p=self.p)]
            ncand = 4 if (self.detail > 0 and self.rng.random() < self.detail) else 1
            best = -1.0
            for _ in range(ncand):
                y = self.rng.integers(0, img.shape[0] - size + 1)
                x = self.rng.integers(0, img.shape[1] - size + 1)
                cand = img[y:y + size, x:x + size]
                e = (float(np.abs(np.diff(cand, axis=0)).mean() + np.abs(np.diff(cand, axis=1)).mean())
                     if ncand > 1 else 0.0)
                if e > best:
                    best, c = e, cand
            k = self.rng.integers(8)
            c = np.rot90(c, k % 4)
            if k >= 4:
                c = c[:, ::-1]
            out[i] = c
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def lr_at(step: int, steps: int, elapsed: float, budget: float, base_lr: float) -> float | None:
    """The learning rate of a stage: cosine from ``base_lr`` to 1e-5 over
    max(step / steps, elapsed / budget) (so a stage stopped by its wall-clock budget still
    anneals), after a 200-step linear warm-up; None once the stage is over."""
    prog = max(step / steps, elapsed / budget)
    if prog >= 1.0:
        return None
    lr = 1e-5 + 0.5 * (base_lr - 1e-5) * (1 + math.cos(math.pi * prog))
    return lr * (step + 1) / 200 if step < 200 else lr


def export_onnx(net: nn.Module, path: Path, batch_axis: bool = False) -> dict:
    """Export ``net`` (opset 17, "input" -> "output", dynamic H and W, and N with ``batch_axis``)
    and check the file against torch with ONNX Runtime on an odd-sized input. Returns the
    summary fields: sha256, size and the largest difference."""
    import onnxruntime as ort

    dummy = torch.rand(1, 3, 67, 61)
    axes = {0: "n", 2: "h", 3: "w"} if batch_axis else {2: "h", 3: "w"}
    torch.onnx.export(net, dummy, str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": axes, "output": axes}, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net(dummy).numpy()
    got = sess.run(["output"], {"input": dummy.numpy()})[0]
    return {"onnx_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "onnx_bytes": path.stat().st_size,
            "onnx_vs_torch_maxdiff": float(np.abs(ref - got).max())}


def add_stage_args(ap: argparse.ArgumentParser, *, threads: int, steps: int, budget_min: float, patch: int,
                   init_help: str = "start from this state_dict (.pt): the next stage") -> None:
    """The arguments every trainer here takes (one training stage, its data and where it writes)."""
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--steps", type=int, default=steps, help="optimizer steps (the lr schedule follows them)")
    ap.add_argument("--budget-min", type=float, default=budget_min,
                    help="wall-clock cap in minutes (0 = none); when it binds, the lr schedule follows time")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=patch)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", default="16,32,64")
    ap.add_argument("--init", default=None, help=init_help)
    ap.add_argument("--tag", default="", help="suffix for the log/summary/.pt file names (stages)")
    ap.add_argument("--mate-dir",
                    default=os.environ.get("MATE_DIR", "/work/data_mate/x/usr/share/backgrounds/mate/nature"))
    ap.add_argument("--out", default=str(ROOT / "engine" / "data" / "trained"))


def start_stage(net: nn.Module, args: argparse.Namespace) -> tuple[torch.optim.Optimizer, int, Path]:
    """The previous stage's weights (``--init``) into ``net``; its Adam optimizer, parameter count
    and output folder (created)."""
    if args.init:
        net.load_state_dict(torch.load(args.init, map_location=args.device, weights_only=True))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    return torch.optim.Adam(net.parameters(), lr=args.lr), sum(p.numel() for p in net.parameters()), out_dir


def run_stage(net: nn.Module, opt: torch.optim.Optimizer, args: argparse.Namespace, log_path: Path,
              columns: list[str], loss_of_batch: Callable[[], torch.Tensor],
              validate: Callable[[], tuple[list[str], str]], every: int = 100,
              checkpoint: Path | None = None, clip_grad: float | None = None) -> tuple[int, float]:
    """One training stage, as every trainer here runs it: ``args.steps`` optimizer steps or
    ``args.budget_min`` minutes (the lr follows :func:`lr_at`), a loss EMA, and every ``every``
    steps (and after the first) a CSV row (step, elapsed_s, lr, train_loss_ema, then
    ``validate()``'s values under ``columns``), a printed line and, with ``checkpoint``, the
    weights so far (resumable with --init); ``clip_grad`` caps the gradient norm. Returns (steps
    done, seconds)."""
    t0 = time.time()
    budget = args.budget_min * 60 if args.budget_min > 0 else float("inf")
    ema: float | None = None
    step = 0
    with open(log_path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["step", "elapsed_s", "lr", "train_loss_ema", *columns])
        while step < args.steps:
            lr = lr_at(step, args.steps, time.time() - t0, budget, args.lr)
            if lr is None:
                break
            for pg_ in opt.param_groups:
                pg_["lr"] = lr
            net.train()
            loss = loss_of_batch()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % every == 0 or step == 1:
                net.eval()
                with torch.no_grad():
                    values, text = validate()
                wr.writerow([step, round(time.time() - t0, 1), f"{lr:.2e}", f"{ema:.5f}", *values])
                fh.flush()
                print(f"step {step} t={time.time() - t0:.0f}s lr={lr:.2e} loss={ema:.5f} {text}", flush=True)
                if checkpoint is not None:
                    torch.save(net.state_dict(), checkpoint)
    return step, time.time() - t0


def finish_stage(net: nn.Module, args: argparse.Namespace, out_dir: Path, name: str, steps: int, train_s: float,
                 nparams: int, export_net: nn.Module | None = None, batch_axis: bool = True, **fields) -> dict:
    """The end of every trainer's stage: ``net`` (eval, CPU) exported to ``<name>.onnx`` (through
    ``export_net``, a wrapper, when given) and checked, its state_dict to ``<name><tag>.pt``
    (gitignored; written under a temporary name, then renamed), and the stage's summary (the
    common facts, then ``fields``) to ``<name>_train_summary<tag>.json`` and stdout."""
    net.eval().cpu()
    exported = export_onnx(export_net or net, out_dir / f"{name}.onnx", batch_axis=batch_axis)
    pt = out_dir / f"{name}{args.tag}.pt"
    torch.save(net.state_dict(), pt.with_suffix(".pt.tmp"))
    os.replace(pt.with_suffix(".pt.tmp"), pt)
    summary = dict(task=name, tag=args.tag, init=args.init, steps=steps, train_seconds=round(train_s, 1),
                   params=nparams, widths=[int(v) for v in args.widths.split(",")], batch=args.batch,
                   patch=args.patch, lr=args.lr, seed=args.seed, **fields, **exported,
                   device=args.device, threads=args.threads, torch=torch.__version__)
    (out_dir / f"{name}_train_summary{args.tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["denoise", "sharpen"], required=True)
    add_stage_args(ap, threads=1, steps=12000, budget_min=25.0, patch=64,
                   init_help="start from this state_dict (.pt) instead of random weights; "
                             "a 3-channel head is widened to 4 with zero weights for the noise-estimate channel")
    ap.add_argument("--detail", type=float, default=0.0,
                    help="share of batches' crops picked as the most textured of 4")
    ap.add_argument("--noise-input", action="store_true", help="feed the in-graph noise estimate as a 4th channel")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    seed = args.seed + (0 if args.task == "denoise" else 1000)
    torch.manual_seed(seed)
    np.random.seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    dev = torch.device(args.device)

    photos = load_training_photos(Path(args.mate_dir))
    sampler = Sampler(photos, seed + 2, args.detail)
    c1, c2, c3 = (int(v) for v in args.widths.split(","))
    net = TinyUNet(c1, c2, c3, noise_input=args.noise_input).to(dev)
    if args.init:
        sd = torch.load(args.init, map_location=dev, weights_only=True)
        w = sd["head.0.weight"]
        if args.noise_input and w.shape[1] == 3:
            sd["head.0.weight"] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
        net.load_state_dict(sd)
    nparams = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    # fixed validation patches from the TRAINING photos (logging only, never used to pick weights)
    vs = Sampler(photos, 12345)
    vrng = np.random.default_rng(12346)
    vg = torch.Generator().manual_seed(12347)
    if args.task == "denoise":
        vclean = vs.batch(32, args.patch)
        vdeg = add_noise(vclean, vg)
    else:
        vbig = vs.batch(32, args.patch + KSIZE - 1)
        vclean = vbig[:, :, KSIZE // 2:-(KSIZE // 2), KSIZE // 2:-(KSIZE // 2)].contiguous()
        vdeg = blur_batch(vbig, vrng, vg)
    vclean, vdeg = vclean.to(dev), vdeg.to(dev)

    log_path = out_dir / f"{args.task}_train_log{args.tag}.csv"
    meta = dict(vars(args), params=nparams, torch=torch.__version__, seed_effective=seed)
    print(json.dumps(meta), flush=True)

    def loss_of_batch() -> torch.Tensor:
        if args.task == "denoise":
            clean = sampler.batch(args.batch, args.patch).to(dev)
            deg = add_noise(clean, g)
        else:
            big = sampler.batch(args.batch, args.patch + KSIZE - 1).to(dev)
            clean = big[:, :, KSIZE // 2:-(KSIZE // 2), KSIZE // 2:-(KSIZE // 2)]
            deg = blur_batch(big, rng, g)
        return torch.sqrt((net(deg) - clean) ** 2 + 1e-6).mean()  # Charbonnier

    def validate() -> tuple[list[str], str]:
        vp, vi = psnr(net(vdeg), vclean), psnr(vdeg, vclean)
        return [f"{vp:.3f}", f"{vi:.3f}"], f"val {vi:.2f}->{vp:.2f} dB"

    step, train_s = run_stage(net, opt, args, log_path, ["val_psnr", "val_input_psnr"], loss_of_batch, validate)

    finish_stage(net, args, out_dir, args.task, step, train_s, nparams, batch_axis=False,
                 noise_input=args.noise_input, detail=args.detail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
