"""Our own trained models (engine/data/trained/*.onnx) on photos NOT used in training.

Runs the committed ONNX files with onnxruntime only (no torch).  Held-out photos: scikit-image
astronaut, coffee, chelsea, camera and matplotlib's grace_hopper.jpg (models/train/train.py
trains on mate-backgrounds photos and skimage brick/grass/gravel/rocket/hubble_deep_field).
Every degradation uses a fixed seed; thresholds are well below the measured gains (see
bench/results/quality.md) but far above what an identity or a broken net would give.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from real_photos import real_photo

ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
TRAINED = REPO / "engine" / "data" / "trained"
HELDOUT = ["astronaut", "coffee", "chelsea", "camera", "grace_hopper"]
CROP = 160


def _photo(name: str) -> np.ndarray:
    a = real_photo(name)
    h, w = a.shape[:2]
    y, x = (h - CROP) // 2, (w - CROP) // 2
    return np.ascontiguousarray(a[y:y + CROP, x:x + CROP])


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    pytest.importorskip("skimage")
    return {n: _photo(n) for n in HELDOUT}


def _session(name: str):
    p = TRAINED / f"{name}.onnx"
    assert p.is_file(), f"{p} missing: train it with models/train/train.py --task {name}"
    return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])


def _run(sess, x: np.ndarray) -> np.ndarray:
    y = sess.run(["output"], {"input": np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)})[0]
    return y[0].transpose(1, 2, 0)


def _q8(x: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(x, 0, 1) * 255) / 255).astype(np.float32)


def _psnr(ref: np.ndarray, out: np.ndarray, border: int = 8) -> float:
    def y(a):
        a = np.clip(a, 0, 1)
        return (0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2])[border:-border, border:-border]
    mse = float(np.mean((y(ref) - y(_q8(out))) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _gains(sess, photos, degrade, seed: int) -> dict[str, float]:
    out = {}
    for i, (n, clean) in enumerate(photos.items()):
        rng = np.random.default_rng(seed + i)
        deg = degrade(clean, rng)
        out[n] = _psnr(clean, _run(sess, deg)) - _psnr(clean, deg)
    return out


# ----------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("name", ["denoise", "sharpen", "dust"])
def test_manifest_sha256_matches_and_licence(name: str) -> None:
    man = json.loads((TRAINED / "manifest.json").read_text())
    entry = man["models"][name]
    data = (TRAINED / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert entry["license"].startswith("MIT")
    assert len(data) < 5 * 1024 * 1024
    assert (REPO / entry["script"]).is_file()


@pytest.mark.parametrize("name", ["denoise", "sharpen"])
def test_any_size_keeps_shape(name: str) -> None:
    sess = _session(name)
    x = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32)
    y = _run(sess, x)
    assert y.shape == x.shape and np.isfinite(y).all()


# ----------------------------------------------------------------------------- denoise
def _gauss(sigma):
    return lambda x, r: _q8(x + r.normal(0, sigma / 255, x.shape))


def test_denoise_sigma25_gains_5db(photos) -> None:
    g = _gains(_session("denoise"), photos, _gauss(25), seed=25)
    assert min(g.values()) >= 4.0, g
    assert np.mean(list(g.values())) >= 5.0, g


def test_denoise_sigma50_and_15(photos) -> None:
    s = _session("denoise")
    g50 = _gains(s, photos, _gauss(50), seed=50)
    g15 = _gains(s, photos, _gauss(15), seed=15)
    assert np.mean(list(g50.values())) >= 8.0, g50
    assert np.mean(list(g15.values())) >= 3.0, g15


def test_denoise_luminance_and_poisson_noise(photos) -> None:
    s = _session("denoise")
    lum = _gains(s, photos, lambda x, r: _q8(x + r.normal(0, 25 / 255, x.shape[:2] + (1,))), seed=7)
    pg = _gains(s, photos, lambda x, r: _q8(x + r.normal(0, 1, x.shape) * np.sqrt(0.01 * x + 0.02 ** 2)), seed=8)
    assert np.mean(list(lum.values())) >= 4.0, lum
    assert np.mean(list(pg.values())) >= 4.0, pg


def test_denoise_leaves_clean_photo_nearly_alone(photos) -> None:
    s = _session("denoise")
    for n, clean in photos.items():
        assert _psnr(clean, _run(s, clean)) >= 33.0, n


def _chroma_filter_module():
    """models/train/chroma_filter.py (a training-side script, not part of the engine package)."""
    from models.train import chroma_filter

    return chroma_filter


def test_denoise_graph_has_the_filters_its_reference_states() -> None:
    """The committed graph = the trained network, then models/train/chroma_filter.py's colour and
    brightness stages: equal to the script's numpy reference (a wrong weight, radius, noise
    factor or colour matrix fails)."""
    assert _chroma_filter_module().check(TRAINED / "denoise.onnx") < 1e-4


def _psnr_rgb(ref: np.ndarray, out: np.ndarray, border: int = 8) -> float:
    d = (ref - _q8(out))[border:-border, border:-border]
    return 10 * math.log10(1.0 / max(float(np.mean(d ** 2)), 1e-12))


_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)


def test_denoise_filters_gain_on_rgb_each_on_its_own_part_and_spare_clean_photos(photos) -> None:
    """On held-out photos with colour noise the filters improve RGB PSNR over the network alone;
    the colour stage changes only the chroma (its luma is the network's) and the brightness stage
    only the luma (its Cb/Cr are the colour stage's); a clean photo stays as the network made it
    (both follow the measured noise). Measured at sigma 25 on these centre crops: +0.16..+0.58 dB
    RGB (mean 0.30; the colour stage alone gave +0.22..+0.59, the brightness stage costs chelsea's
    fur 0.06); the clean crops change by at most 0.19 of an 8-bit level."""
    cf = _chroma_filter_module()
    run = cf.with_network_output(TRAINED / "denoise.onnx")
    gains = []
    for i, (n, clean) in enumerate(photos.items()):
        noisy = _gauss(25)(clean, np.random.default_rng(250 + i))
        out, net, level, luma = run(noisy)
        gains.append(_psnr_rgb(clean, out) - _psnr_rgb(clean, net))
        colour = cf.reference(net.transpose(2, 0, 1), level).transpose(1, 2, 0)
        assert float(np.abs(colour @ _YCC[0] - net @ _YCC[0]).max()) < 1e-5, n
        assert float(np.abs(out @ _YCC[1:].T - colour @ _YCC[1:].T).max()) < 1e-4, n
        out_c, net_c, _, _ = run(clean)
        assert float(np.abs(out_c - net_c).max()) < 0.5 / 255, n
    assert min(gains) > 0.1 and float(np.mean(gains)) >= 0.2, gains


def _psnr_y_in(img: np.ndarray, y: np.ndarray, where: tuple) -> float:
    d = (_q8(img) @ _YCC[0] - y)[where]
    return 10 * math.log10(1.0 / max(float(np.mean(d ** 2)), 1e-12))


def test_denoise_brightness_stage_smooths_flat_windows_and_keeps_textured_ones() -> None:
    """The brightness stage (Lee's filter of the luma, noise variance 0.03 x the input's luma
    noise level squared) takes the network's leftover blotches off flat areas, and where the
    photo has texture it keeps the network's luma. Held-out photos at sigma 25: on each photo's
    flattest 64 px window the luma PSNR rises over the colour stage alone (measured +0.31..+2.04
    dB, mean 1.2), over the whole photo it does not fall by more than 0.05 dB (measured
    +0.04..+0.15)."""
    cf = _chroma_filter_module()
    run = cf.with_network_output(TRAINED / "denoise.onnx")
    flat_gains = []
    pytest.importorskip("skimage")
    for i, n in enumerate(HELDOUT):
        a = real_photo(n)
        out, net, level, _ = run(_gauss(25)(a, np.random.default_rng(700 + i)))
        colour = cf.reference(net.transpose(2, 0, 1), level).transpose(1, 2, 0)
        y = a @ _YCC[0]
        # the flattest 64 px window of the clean photo (lowest variance), away from the borders
        v = np.lib.stride_tricks.sliding_window_view(y[16:-16, 16:-16], (64, 64))[::16, ::16].var(axis=(2, 3))
        r, c = np.unravel_index(int(np.argmin(v)), v.shape)
        win = (slice(16 + 16 * r, 16 + 16 * r + 64), slice(16 + 16 * c, 16 + 16 * c + 64))
        flat_gains.append(_psnr_y_in(out, y, win) - _psnr_y_in(colour, y, win))
        whole = (slice(8, -8), slice(8, -8))
        assert _psnr_y_in(out, y, whole) >= _psnr_y_in(colour, y, whole) - 0.05, n
    assert min(flat_gains) > 0.1 and float(np.mean(flat_gains)) >= 0.5, flat_gains


def test_denoise_colour_stage_leaves_brightness_only_noise_to_the_network(photos) -> None:
    """Noise in the brightness alone (film grain; a phone JPEG after in-camera colour noise
    reduction) has no colour noise to remove: the colour stage, which follows the colour noise
    level, leaves the network's colour as it was (weighting by the overall level cost such photos
    up to 0.48 dB: models/train/chroma_filter.py); the brightness stage costs a detailed crop at
    most what its selection rule allows (0.05 dB; measured -0.03 on chelsea, gains elsewhere)."""
    run = _chroma_filter_module().with_network_output(TRAINED / "denoise.onnx")
    for i, (n, clean) in enumerate(photos.items()):
        rng = np.random.default_rng(400 + i)
        noisy = _q8(clean + rng.normal(0, 25 / 255, clean.shape[:2] + (1,)))
        out, net, colour_level, _ = run(noisy)
        # measured 0-1.5 levels (rounding, and clipping in the cup's highlights), where the same
        # sigma in colour reads ~15; the colour change at most 0.26 of a level
        assert colour_level < 2 / 255, (n, colour_level * 255)
        assert float(np.abs(out @ _YCC[1:].T - net @ _YCC[1:].T).max()) < 1 / 255, n
        assert _psnr_rgb(clean, out) >= _psnr_rgb(clean, net) - 0.05, n


# ----------------------------------------------------------------------------- sharpen
def _gauss_psf(sigma: float) -> np.ndarray:
    r = int(math.ceil(3 * sigma))
    ax = np.arange(-r, r + 1)
    g = np.exp(-ax ** 2 / (2 * sigma ** 2))
    k = np.outer(g, g)
    return k / k.sum()


def _motion_psf(length: int) -> np.ndarray:
    k = np.zeros((length, length))
    np.fill_diagonal(k, 1.0)          # 45 degree streak
    return k / k.sum()


def _blur(psf, noise=1.0):
    from scipy.ndimage import convolve

    def f(x, r):
        b = np.stack([convolve(x[..., c], psf, mode="reflect") for c in range(3)], -1)
        return _q8(b + r.normal(0, noise / 255, x.shape))
    return f


def test_sharpen_gaussian_defocus_gains_1db(photos) -> None:
    pytest.importorskip("scipy")
    s = _session("sharpen")
    for sig in (1.0, 1.8):
        g = _gains(s, photos, _blur(_gauss_psf(sig)), seed=int(sig * 10))
        assert np.mean(list(g.values())) >= 1.0, (sig, g)
        assert min(g.values()) >= 0.3, (sig, g)


def test_sharpen_short_motion_blur_gains(photos) -> None:
    """Short motion blur is the sharpener's weak case (about +0.4..0.7 dB, versus +3.4 dB for
    defocus; see bench/results/quality.md): it must still gain on average and harm no photo."""
    pytest.importorskip("scipy")
    s = _session("sharpen")
    for name, psf in (("diagonal", _motion_psf(5)), ("horizontal", np.full((1, 5), 0.2))):
        g = _gains(s, photos, _blur(psf), seed=5)
        assert np.mean(list(g.values())) >= 0.25, (name, g)
        assert min(g.values()) >= -0.3, (name, g)


def test_sharpen_leaves_sharp_photo_nearly_alone(photos) -> None:
    s = _session("sharpen")
    for n, clean in photos.items():
        assert _psnr(clean, _run(s, clean)) >= 40.0, n


def test_sharpen_does_not_ring_on_a_step_edge() -> None:
    """A blurred step edge comes back steeper, with little overshoot (unsharp masking rings)."""
    pytest.importorskip("scipy")
    s = _session("sharpen")
    x = np.full((64, 64, 3), 0.25, np.float32)
    x[:, 32:] = 0.75
    b = _blur(_gauss_psf(1.5), noise=0.0)(x, np.random.default_rng(0))
    y = _run(s, b)
    row = y[32, 8:-8, 1]
    assert row.max() <= 0.75 + 0.06 and row.min() >= 0.25 - 0.06, (row.min(), row.max())
    # steeper than the blurred input
    assert np.abs(np.diff(row)).max() > 1.3 * np.abs(np.diff(b[32, 8:-8, 1])).max()


def test_own_weights_the_manifest_does_not_list_are_refused(tmp_path, monkeypatch) -> None:
    """An .onnx dropped next to ours without a manifest entry is not trusted (before, a missing
    entry skipped the check and any such file ran)."""
    import shutil

    from engine import paths
    from engine.errors import WeightsTampered
    from engine.models import registry

    shutil.copy(TRAINED / "manifest.json", tmp_path / "manifest.json")
    shutil.copy(TRAINED / "denoise.onnx", tmp_path / "denoise.onnx")
    shutil.copy(TRAINED / "denoise.onnx", tmp_path / "stranger.onnx")
    monkeypatch.setattr(paths, "own_models_dir", lambda: tmp_path)
    assert registry.verified_own_weights("denoise") == tmp_path / "denoise.onnx"
    with pytest.raises(WeightsTampered, match="not listed"):
        registry.verified_own_weights("stranger")
