"""Run one of our own small image-to-image networks over a whole image, in tiles.

For the tasks that use a trained helper network inside a classical task (today restore-dust's
detector): the weights are package data checked against the
manifest (``registry.verified_own_weights``), the session is created once per process
(``runtimes.cpu_session``), and the image is cut into ``TILE_CORE`` px tiles with a
``TILE_HALO`` px halo. The halo exceeds the nets' receptive field (TinyUNet: about +-27 px) and
the tile origins are multiples of 4 (the nets' two 2x downsamplings), so every tile computes
exactly what the whole image would: the result does not depend on the tiling, and memory stays
bounded on a 20 MP photo.
"""
from __future__ import annotations

import numpy as np

TILE_CORE = 512          # output px per side of one tile (~60 MB of activations for TinyUNet)
TILE_HALO = 32           # context px per side: > the receptive field, a multiple of 4


def run_tiled(name: str, rgb: np.ndarray) -> np.ndarray:
    """``engine/data/trained/<name>.onnx`` applied to ``rgb`` (float32 HxWx3, 0..1): its output
    as float32 C x H x W (C = the net's output channels), unclipped."""
    from engine.models.backends.runtimes import cpu_session
    from engine.models.registry import verified_own_weights

    core, halo = int(TILE_CORE), int(TILE_HALO)
    if core % 4 or halo % 4:
        raise ValueError("tile core and halo must be multiples of 4")
    sess = cpu_session(verified_own_weights(name))
    h, w = rgb.shape[:2]
    x = np.clip(rgb, 0.0, 1.0).transpose(2, 0, 1)[None]
    out: np.ndarray | None = None
    for y0 in range(0, h, core):
        for x0 in range(0, w, core):
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            yb, xb = min(h, y0 + core + halo), min(w, x0 + core + halo)
            tile = np.ascontiguousarray(x[:, :, ya:yb, xa:xb], dtype=np.float32)
            res = sess.run(None, {"input": tile})[0][0]
            if out is None:
                out = np.empty((res.shape[0], h, w), np.float32)
            out[:, y0:y0 + core, x0:x0 + core] = res[:, y0 - ya:y0 - ya + core, x0 - xa:x0 - xa + core]
    assert out is not None
    return out
