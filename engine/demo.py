"""Before/after comparison image for the install demo and the README."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def comparison(before: Path, after: Path, out: Path, crop: int = 320, label_model: str = "") -> Path:
    """Write a side-by-side PNG: plain bicubic resize of ``before`` vs ``after``, full + a zoomed crop.

    The zoom is where detail differs most, so the reader sees what the model did.
    """
    a = Image.open(after).convert("RGB")
    b = Image.open(before).convert("RGB").resize(a.size, Image.Resampling.BICUBIC)
    an = np.asarray(a, dtype=np.float32)
    bn = np.asarray(b, dtype=np.float32)
    h, w = an.shape[:2]
    c = min(crop, h, w)
    # pick the crop with the largest mean change (coarse grid search)
    diff = np.abs(an - bn).mean(axis=2)
    best, by, bx = -1.0, 0, 0
    step = max(c // 4, 8)
    for y in range(0, h - c + 1, step):
        for x in range(0, w - c + 1, step):
            s = float(diff[y:y + c, x:x + c].mean())
            if s > best:
                best, by, bx = s, y, x
    box = (bx, by, bx + c, by + c)
    zoom = 2 if c * 2 <= 800 else 1
    zb = b.crop(box).resize((c * zoom, c * zoom), Image.Resampling.NEAREST)
    za = a.crop(box).resize((c * zoom, c * zoom), Image.Resampling.NEAREST)
    pad, head = 8, 28
    W = pad * 3 + zb.width * 2
    H = head + zb.height + pad
    canvas = Image.new("RGB", (W, H), (32, 32, 32))
    canvas.paste(zb, (pad, head))
    canvas.paste(za, (pad * 2 + zb.width, head))
    d = ImageDraw.Draw(canvas)
    d.text((pad, 8), "before: bicubic resize", fill=(230, 230, 230))
    d.text((pad * 2 + zb.width, 8), f"after: EnhanceLayer {label_model}".rstrip(), fill=(230, 230, 230))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    canvas.save(tmp)
    tmp.replace(out)
    return out
