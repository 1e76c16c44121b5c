"""Welch power spectra of one image channel, shared by the tasks that read a photo's spectrum:
``deblur-motion`` (a smear's stripes), ``deblur-focus`` (its fall-off) and ``descreen`` (the
peaks of a halftone screen).

Why Welch: one FFT of a whole photo is dominated by its layout and by the jump at its borders;
the mean over many Hann-windowed, mean-removed blocks is a smooth estimate of the local
spectrum, the same wherever the blocks lie, and its cost does not grow with the photo.
"""
from __future__ import annotations

import math

import numpy as np


def welch_power(ch: np.ndarray, block: int, max_blocks: int, dense: bool = False) -> np.ndarray:
    """Mean power spectrum (``block`` x ``block``, DC at [0, 0], not shifted) of Hann-windowed,
    mean-removed blocks spread evenly from edge to edge: as many per axis as fit half-overlapping
    (``dense``: one more, a little closer; descreen's peak finder was tuned on that grid, the
    deblur estimators on the other: each measured worse on the other's), thinned to at most
    sqrt(``max_blocks``) per axis; a channel smaller than a block is reflect-padded up to it."""
    h, w = ch.shape
    if h < block or w < block:
        ch = np.pad(ch, ((0, max(0, block - h)), (0, max(0, block - w))), mode="reflect")
        h, w = ch.shape
    side = max(1, int(math.sqrt(max_blocks)))
    extra = 0 if dense else -1
    ys = np.unique(np.linspace(0, h - block, min(side, max(1, 2 * h // block + extra))).astype(int))
    xs = np.unique(np.linspace(0, w - block, min(side, max(1, 2 * w // block + extra))).astype(int))
    win = np.outer(np.hanning(block), np.hanning(block))
    acc = np.zeros((block, block))
    for y in ys:
        for x in xs:
            b = ch[y:y + block, x:x + block].astype(np.float64)
            f = np.fft.fft2((b - b.mean()) * win)
            acc += f.real ** 2 + f.imag ** 2
    return acc / (len(ys) * len(xs))
