"""Reading and scaling training photos: the helpers every trainer here shares, torch-free (so
benchmarks and the engine's own environment can use them too)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def to_rgb_f32(a: np.ndarray) -> np.ndarray:
    """float32 RGB 0..1 from a gray/RGB/RGBA uint8 or float array."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    a = a[..., :3]
    return (a.astype(np.float32) / 255.0) if a.dtype == np.uint8 else a.astype(np.float32)


def box_down2(img: np.ndarray) -> np.ndarray:
    """2x box averaging: tames the mate photos' own JPEG history and sensor noise."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.float32)


def shrink(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` with its longest side at most ``side`` px (area averaging)."""
    f = side / max(img.shape[:2])
    if f >= 1.0:
        return img
    return cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                      interpolation=cv2.INTER_AREA)


def read_photo(path: Path) -> np.ndarray:
    """float32 RGB 0..1 of a JPEG/PNG or (budgie-backgrounds) JPEG XL file."""
    if path.suffix == ".jxl":
        import imagecodecs
        return to_rgb_f32(imagecodecs.jpegxl_decode(path.read_bytes()))
    from PIL import Image
    return to_rgb_f32(np.asarray(Image.open(path).convert("RGB")))
