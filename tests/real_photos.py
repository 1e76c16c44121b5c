"""Real photos available offline, as float32 RGB 0..1 (shared by tests; imported as a module).

scikit-image's bundled photos (public domain / CC0) and matplotlib's grace_hopper.jpg (US Navy,
public domain). Gray photos come back replicated to RGB.
"""
from __future__ import annotations

import os

import cv2
import numpy as np


def real_photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib

        p = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        a = cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    else:
        from skimage import data

        a = getattr(data, name)()
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a[..., :3].astype(np.float32) / 255.0
