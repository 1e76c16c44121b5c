"""Plot the training curves (engine/data/trained/<task>_train_log.csv) into engine/data/trained/training_curves.png."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TRAINED = Path(__file__).resolve().parents[2] / "engine" / "data" / "trained"


def main() -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for task, col in (("denoise", "tab:blue"), ("sharpen", "tab:orange")):
        rows, st, off = [], [], 0
        for p in sorted(TRAINED.glob(f"{task}_train_log_stage*.csv")):   # stages, one after the other
            rs = list(csv.DictReader(p.open()))
            rows += rs
            st += [off + int(r["step"]) for r in rs]
            off = st[-1]
            axes[0].axvline(off, color=col, alpha=0.2, lw=0.8)
        if not rows:
            continue
        axes[0].plot(st, [float(r["train_loss_ema"]) for r in rows], color=col, label=task)
        axes[1].plot(st, [float(r["val_psnr"]) - float(r["val_input_psnr"]) for r in rows], color=col, label=task)
    axes[0].set_yscale("log")
    axes[0].set_title("training loss (Charbonnier, EMA); lines: stage ends")
    axes[1].set_title("val gain over degraded input (dB, training-photo patches)")
    for a in axes:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(TRAINED / "training_curves.png", dpi=80)


if __name__ == "__main__":
    main()
