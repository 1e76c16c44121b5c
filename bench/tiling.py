"""Tiled vs untiled per model: max difference and overhead (not a timed test).

    .venv/bin/python bench/tiling.py                        # every installed catalog network
    .venv/bin/python bench/tiling.py --models photo-x2 photo-x4
    .venv/bin/python bench/tiling.py --staged               # photo-x4: plain tiles vs stages

For each model: a crop of the astronaut photo (public domain, scikit-image) is run once
whole (``model.run``) and once through the pipeline with small forced tiles (many seams),
strength 100 %, grain 0, float32 in/out, so the difference is the tiler's alone.
Overhead: the extra input pixels the overlaps make the network process, (a) for the small
test tiles and (b) for the tile the memory budget picks (1.5 GB) on a 20 MP (5472x3648)
photo; plus the measured wall time ratio on the crop (shared 2-core host: +-30 %).
Writes bench/results/tiling.md.

``--staged``: photo-x4 run stage by stage (engine/pipeline/staged.py) against the plain tiler:
the estimated work on a 20 MP photo at 1.5 GB and at the default budget (both runtimes), the
staged output vs the untiled network on a crop (float32, many seams), and the wall time of
both on the same image and budget, side by side in this process. Appends a dated section.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.models import catalog  # noqa: E402
from engine.pipeline import EnhanceOptions, enhance, tiling  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tiling.md"
BUDGET = int(1.5 * (1 << 30))


def bench(model_id: str) -> str:
    from skimage import data

    from engine.models.backends import load_model

    spec = catalog.get(model_id)
    heavy = spec.receptive_field >= 64
    crop = (slice(40, 360), slice(100, 420)) if heavy else (slice(100, 292), slice(120, 376))
    tile = 96 if heavy else 64
    x = np.ascontiguousarray(data.astronaut()[crop]).astype(np.float32) / 255.0
    h, w = x.shape[:2]
    m = load_model(model_id, "cpu")
    m.run(x[:16, :16].copy())
    t = time.monotonic()
    whole = m.run(x)
    t_whole = time.monotonic() - t
    t = time.monotonic()
    res = enhance(x, EnhanceOptions(model=model_id, strength=1.0, grain=0.0, tile=tile), model=m)
    t_tiled = time.monotonic() - t
    d = np.abs(res.image - whole)
    p = tiling.plan(spec, h, w, tile=tile)
    big = tiling.plan(spec, 3648, 5472, memory_budget=BUDGET)
    ov_small = p.processed(h, w) / (h * w) - 1
    ov_big = big.processed(3648, 5472) / (3648 * 5472) - 1
    inv = "yes" if spec.tile_invariant else "NO (global ops)"
    return (f"| {model_id} | {inv} | {spec.receptive_field} | {w}x{h}, tile {tile}+{p.overlap}, "
            f"{len(p.grid(h, w))} tiles | {d.max():.2e} ({d.max() * 255:.3f} LSB) | "
            f"{(d > 0.5 / 255).mean() * 100:.3f} % | {ov_small * 100:.0f} % | {t_tiled / t_whole:.2f}x | "
            f"{big.tile}+{big.overlap}: {ov_big * 100:.0f} % |")


def _gather(rows) -> np.ndarray:
    """The rows a tiler yields, in order, as one image."""
    return np.concatenate([r for _y0, r in rows])


def staged_section(wall_mp: float) -> str:
    """photo-x4: plain tiler vs stages (work estimates, fidelity, wall time in one process)."""
    from skimage import data

    from engine.models.backends import load_model
    from engine.models.backends.precision import BF16_DEVICE, bf16_cpu
    from engine.pipeline import staged

    H, W = 3648, 5472
    lines = ["| runtime | budget | plain: tile+context, work | staged: stages, stage tile, tail tile, work | "
             "feature maps |", "|---|---|---|---|---|"]
    devices = ["openvino", *([BF16_DEVICE] if bf16_cpu() else [])]
    for dev in devices:
        m = load_model("photo-x4", dev)
        for name, budget in (("1.5 GB", BUDGET), ("default (4 GB cap)", tiling.default_budget(dev))):
            pl = tiling.plan(m.spec, H, W, memory_budget=budget, device=dev)
            sp = staged.plan_staged(m, H, W, memory_budget=budget)
            st = ("not used" if sp is None else
                  f"{len(sp.files)}, {sp.tiles[1]}+{sp.split.stages[1].halo}, {sp.tail_plan.tile}+"
                  f"{sp.tail_plan.overlap}, **{sp.work:.2f}x**")
            maps = "" if sp is None else f"{sp.feature_bytes / 2**30:.1f} GB ({'RAM' if sp.in_ram else 'disk'})"
            lines.append(f"| {dev} | {name} | {pl.tile}+{pl.overlap}, {pl.processed(H, W) / (H * W):.2f}x | "
                         f"{st} | {maps} |")
    # fidelity: float32, forced small stage tiles (many seams), against the whole-image network
    m = load_model("photo-x4", "cpu")
    x = np.ascontiguousarray(data.astronaut()[40:360, 100:420]).astype(np.float32) / 255.0
    h, w = x.shape[:2]
    whole = m.run(x)
    sp = staged.plan_staged(m, h, w, stage_tile=96, max_halo=16)
    assert sp is not None
    got = _gather(staged.staged_rows(m, sp, lambda a, b, c, d: x[a:b, c:d], h, w))
    d = float(np.abs(got - whole).max())
    fid = (f"Float32 (ORT CPU), {w}x{h} crop, stage tiles 96 px ({len(sp.files)} stages, "
           f"{len(tiling.grid_of(96, *sp.padded))} tiles each): max difference to the untiled network "
           f"{d:.2e} ({d * 255:.4f} LSB).")
    # wall time, same image and budget, plain tiler then stages, device auto
    side = int(np.sqrt(wall_mp * 1e6))
    base = data.astronaut().astype(np.float32) / 255.0
    big = np.tile(np.concatenate([base, base[:, ::-1]], 1), (side // 512 + 1, side // 1024 + 1, 1))[:side, :side]
    m = load_model("photo-x4", "auto")
    times = {}
    for how in ("plain", "staged"):
        opts = EnhanceOptions(model="photo-x4", strength=1.0, grain=0.0, memory_budget=BUDGET, device="auto")
        if how == "plain":
            opts = opts.replace(tile=tiling.plan(m.spec, side, side, memory_budget=BUDGET, device=m.device).tile)
        t = time.monotonic()
        res = enhance(big, opts, model=m)
        times[how] = (time.monotonic() - t, res)
    diff = float(np.abs(times["plain"][1].image - times["staged"][1].image).max())
    info = times["staged"][1].info
    wall = (f"Wall time on a {side}x{side} image ({side * side / 1e6:.1f} MP, astronaut tiled), 1.5 GB, "
            f"device auto ({m.device}): plain tiler {times['plain'][0]:.0f} s (work estimate "
            f"{info['plain_work']:.2f}x), stages {times['staged'][0]:.0f} s (estimate {info['work']:.2f}x): "
            f"**{times['plain'][0] / times['staged'][0]:.2f}x faster**; max difference between the two "
            f"{diff * 255:.2f} LSB.")
    return "\n".join(lines) + "\n\n- " + fid + "\n- " + wall + "\n"


def main() -> None:
    from engine.models import registry

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--staged", action="store_true", help="photo-x4: plain tiler vs stages")
    ap.add_argument("--wall-mp", type=float, default=1.0, help="image size of the --staged wall-time run")
    a = ap.parse_args()
    if a.staged:
        text = staged_section(a.wall_mp)
        print(text)
        with RESULTS.open("a") as f:
            f.write(f"\n## {time.strftime('%Y-%m-%d')}: photo-x4 stage by stage (bench/tiling.py --staged)\n\n"
                    "Work = multiply-adds the network does, including every tile's context, divided by the "
                    "untiled network's on the same photo (20 MP = 5472x3648).\n\n" + text)
        return
    installed = {s.id for s in catalog.CATALOG if registry.is_installed(s)}     # the networks
    ids = a.models or [s.id for s in catalog.CATALOG if s.id in installed]
    rows = []
    for mid in ids:
        if mid not in installed:
            rows.append(f"| {mid} | not installed: not measured |||||||")
        else:
            rows.append(bench(mid))
        print(rows[-1], flush=True)
    new = not RESULTS.exists()
    with RESULTS.open("a") as f:
        if new:
            f.write("# Tiled vs untiled (bench/tiling.py)\n\n"
                    "Crop of the astronaut photo, float32, strength 100 %, grain 0: the difference "
                    "is the tiler's alone. Overlap = receptive field + feather (4 px for "
                    "tile-invariant models, 32 px for the others), rounded to the model's alignment.\n"
                    "Overhead = extra input pixels the network processes because of overlaps.\n\n"
                    "| model | tile-invariant | receptive field px | crop, tiling | max diff tiled vs untiled "
                    "| pixels off by > 0.5 LSB | overlap overhead (test tiles) | wall time tiled / untiled "
                    "| 20 MP at 1.5 GB: tile+overlap, overhead |\n"
                    "|---|---|---|---|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
