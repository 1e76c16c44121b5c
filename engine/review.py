"""Review map and protection masks: tell the retoucher where the model may have lied.

AI enhancement hallucinates where it matters most: an "8" becomes a "B", skin turns to
plastic, a button becomes an eye. The review map is a per-pixel heat map (0..1) at output
size combining

* **structural change**: how far the model output departs from a plain resample of the
  original, as local structural dissimilarity (1 - SSIM on luminance, Gaussian windows at
  two scales) plus a local-mean term. Unlike ``|diff|`` it ignores a uniform brightness
  shift and mild global sharpening, and lights up where *structure* was invented or lost;
* **risk regions**: text (PP-OCRv4 detection network shipped in the rapidocr-onnxruntime
  wheel, extracted by ``enhancelayer import``) and faces (OpenCV's bundled Haar cascades).
  Changes inside them are weighted up and the regions themselves get a floor value.

``protection_mask`` turns the same detections into a feathered 0..1 mask (1 = protect)
that the pipeline uses to lower the strength there.

Nothing here downloads anything: a missing detector is an ``EnhanceError`` saying to run
``enhancelayer import``.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from engine.errors import BadInput, EnhanceError, ModelNotInstalled

KINDS = ("faces", "text")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# --- helpers ----------------------------------------------------------------------------


def _as_rgb_f32(img: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise BadInput(f"{what}: expected an HxWx3 RGB image, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return np.ascontiguousarray(a, dtype=np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0) @ _LUMA, dtype=np.float32)


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


# --- text detection (PP-OCRv4 det, DB head) ------------------------------------------------


def _text_detector_path() -> Path:
    try:
        from engine.models.registry import text_detector_path
    except ImportError:
        raise EnhanceError("text detection needs the model registry (engine.models.registry); "
                           "this install is incomplete: reinstall EnhanceLayer") from None
    p = text_detector_path()
    if p is None or not Path(p).is_file():
        raise ModelNotInstalled("the text detector (PP-OCRv4 det) is not installed: run "
                                "'enhancelayer import' once, then try again")
    return Path(p)


def _session(path: Path):
    from engine.models.backends.runtimes import cpu_session

    return cpu_session(path)


def text_probability(rgb: np.ndarray, *, detector_path: str | Path | None = None,
                     limit_side: int = 736, max_side: int = 2048) -> np.ndarray:
    """PP-OCRv4 detection probability map (float32 HxW 0..1) at the image's size.

    Pre-processing as the network was trained: BGR, shorter side brought to ``limit_side``
    (small images are enlarged, text must be a few pixels tall), both sides rounded to a
    multiple of 32, ``(x/255 - 0.5) / 0.5``. The longer side is capped at ``max_side`` so a
    40 MP photo costs seconds, not minutes.
    """
    rgb = _as_rgb_f32(rgb, "text detection")
    h, w = rgb.shape[:2]
    path = Path(detector_path) if detector_path else _text_detector_path()
    ratio = limit_side / min(h, w) if min(h, w) < limit_side else 1.0
    ratio = min(ratio, max_side / max(h, w)) if max(h, w) * ratio > max_side else ratio
    rh = max(32, int(round(h * ratio / 32.0)) * 32)
    rw = max(32, int(round(w * ratio / 32.0)) * 32)
    bgr = _to_u8(rgb)[..., ::-1]
    x = cv2.resize(bgr, (rw, rh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = (x / 255.0 - 0.5) / 0.5
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    sess = _session(path)
    prob = sess.run(None, {sess.get_inputs()[0].name: x})[0][0, 0]
    return cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def detect_text(rgb: np.ndarray, *, detector_path: str | Path | None = None,
                thresh: float = 0.3, box_thresh: float = 0.5, unclip_ratio: float = 1.6,
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Text regions: (bool HxW mask, list of 4x2 int box corners in pixel coordinates).

    DB post-processing: binarise the probability at ``thresh``, keep connected regions whose
    mean probability is at least ``box_thresh``, and grow each region's minimum-area
    rectangle by ``area * unclip_ratio / perimeter`` (the shrunk text kernel the network
    predicts is smaller than the glyphs).
    """
    prob = text_probability(rgb, detector_path=detector_path)
    h, w = prob.shape
    bitmap = cv2.dilate((prob > thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros((h, w), np.uint8)
    boxes: list[np.ndarray] = []
    for c in contours[:1000]:
        rect = cv2.minAreaRect(c)
        if min(rect[1]) < 3:
            continue
        comp = np.zeros((h, w), np.uint8)
        cv2.drawContours(comp, [c], -1, 1, thickness=-1)
        score = float(prob[comp.astype(bool)].mean()) if comp.any() else 0.0
        if score < box_thresh:
            continue
        (cx, cy), (bw, bh), ang = rect
        area, perim = bw * bh, 2.0 * (bw + bh)
        d = area * unclip_ratio / max(perim, 1e-6)
        big = ((cx, cy), (bw + 2 * d, bh + 2 * d), ang)
        if min(big[1]) < 5:
            continue
        pts = np.round(cv2.boxPoints(big)).astype(np.int32)
        pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
        pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
        cv2.fillPoly(mask, [pts], 1)
        boxes.append(pts)
    return mask.astype(bool), boxes


# --- faces (OpenCV Haar cascades bundled in opencv-python(-headless) 4.x) -------------------

_CASCADES: dict[str, cv2.CascadeClassifier] = {}


def _cascade(name: str) -> cv2.CascadeClassifier:
    c = _CASCADES.get(name)
    if c is None:
        base = getattr(getattr(cv2, "data", None), "haarcascades", "")
        path = os.path.join(base, name)
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise EnhanceError(f"face detection needs OpenCV's bundled '{name}' "
                               "(opencv-python-headless 4.x); reinstall EnhanceLayer")
        _CASCADES[name] = c
    return c


def detect_faces(rgb: np.ndarray, *, profile: bool = True) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in pixel coordinates: frontal + (optionally) profile cascades.

    Runs on a copy whose longer side is at most 800 px (Haar is scale-searched anyway);
    ``minNeighbors=5`` keeps false alarms on textures rare.
    """
    rgb = _as_rgb_f32(rgb, "face detection")
    h, w = rgb.shape[:2]
    s = min(1.0, 800.0 / max(h, w))
    g = cv2.cvtColor(_to_u8(rgb), cv2.COLOR_RGB2GRAY)
    if s < 1.0:
        g = cv2.resize(g, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    g = cv2.equalizeHist(g)
    gh, gw = g.shape
    min_side = max(20, int(min(gh, gw) * 0.04))
    found: list[tuple[int, int, int, int]] = []
    for name, flip in (("haarcascade_frontalface_default.xml", False),
                       ("haarcascade_profileface.xml", False),
                       ("haarcascade_profileface.xml", True)):
        if "profile" in name and not profile:
            continue
        img = g[:, ::-1] if flip else g
        r = _cascade(name).detectMultiScale(img, scaleFactor=1.1, minNeighbors=5,
                                            minSize=(min_side, min_side))
        for (x, y, bw, bh) in (r if len(r) else []):
            if flip:
                x = gw - x - bw
            found.append((int(x / s), int(y / s), int(bw / s), int(bh / s)))
    return _merge_boxes(found)


def _merge_boxes(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Drop boxes mostly inside a bigger one (frontal and profile cascades overlap)."""
    boxes = sorted(boxes, key=lambda b: -b[2] * b[3])
    kept: list[tuple[int, int, int, int]] = []
    for b in boxes:
        x, y, w, h = b
        dup = False
        for k in kept:
            ix = max(0, min(x + w, k[0] + k[2]) - max(x, k[0]))
            iy = max(0, min(y + h, k[1] + k[3]) - max(y, k[1]))
            if ix * iy > 0.5 * w * h:
                dup = True
                break
        if not dup:
            kept.append(b)
    return kept


def faces_mask(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Elliptic face regions, a little larger than the Haar box (forehead, chin, cheeks)."""
    h, w = shape
    m = np.zeros((h, w), np.uint8)
    for (x, y, bw, bh) in boxes:
        c = (int(x + bw / 2), int(y + bh * 0.55))
        ax = (max(1, int(bw * 0.62)), max(1, int(bh * 0.75)))
        cv2.ellipse(m, c, ax, 0, 0, 360, 1, -1)
    return m.astype(bool)


def _regions(rgb: np.ndarray, kinds: tuple[str, ...], detector_path=None) -> np.ndarray:
    h, w = rgb.shape[:2]
    out = np.zeros((h, w), bool)
    for k in kinds:
        if k == "faces":
            out |= faces_mask((h, w), detect_faces(rgb))
        elif k == "text":
            out |= detect_text(rgb, detector_path=detector_path)[0]
        else:
            raise BadInput(f"unknown protect kind '{k}': use {', '.join(KINDS)}")
    return out


def _feather(mask: np.ndarray, feather: float) -> np.ndarray:
    """Soft mask that is 1 over the whole region and falls to 0 over ``feather`` px outside."""
    m = mask.astype(np.uint8)
    if feather <= 0 or not m.any():
        return m.astype(np.float32)
    r = max(1, int(round(feather / 2)))
    grown = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    soft = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), max(feather / 4.0, 0.5))
    return np.clip(np.maximum(soft, m.astype(np.float32)), 0.0, 1.0)


def default_feather(shape: tuple[int, ...]) -> float:
    """Feather width for protection masks: 1.5 % of the shorter side, at least 3 px."""
    return max(3.0, 0.015 * min(shape[:2]))


def protection_mask(rgb: np.ndarray, kinds: tuple[str, ...], feather: float | None = None,
                    *, detector_path: str | Path | None = None) -> np.ndarray:
    """float32 HxW 0..1 mask, 1 = protect (faces and/or text found in ``rgb``), feathered."""
    rgb = _as_rgb_f32(rgb, "protection mask")
    kinds = tuple(k.strip().lower() for k in kinds if k and k.strip())
    if not kinds:
        return np.zeros(rgb.shape[:2], np.float32)
    m = _regions(rgb, kinds, detector_path)
    f = default_feather(rgb.shape) if feather is None else float(feather)
    return _feather(m, f).astype(np.float32)


# --- structural change ----------------------------------------------------------------------

_C2 = 0.03 ** 2


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _structure_dissim(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    """1 - the contrast-structure term of SSIM: how differently the local patterns vary."""
    ma, mb = _blur(a, sigma), _blur(b, sigma)
    va = np.maximum(_blur(a * a, sigma) - ma * ma, 0.0)
    vb = np.maximum(_blur(b * b, sigma) - mb * mb, 0.0)
    cov = _blur(a * b, sigma) - ma * mb
    return np.clip(1.0 - (2 * cov + _C2) / (va + vb + _C2), 0.0, 2.0)


def _local_shift(a: np.ndarray, b: np.ndarray, sigma: float, wide: float = 12.0) -> np.ndarray:
    """Local change of the mean that a wider neighbourhood does not share.

    SSIM's luminance term would flag every dark area after an exposure or tone change; this
    only reacts to a blob brighter/darker than its surroundings' own shift.
    """
    d = _blur(a, sigma) - _blur(b, sigma)
    return np.abs(d - _blur(a - b, wide))


def change_map(resampled: np.ndarray, result: np.ndarray, *, tau: float = 0.35,
               strip_rows: int = 1024) -> np.ndarray:
    """Structural departure of ``result`` from ``resampled`` (same size), float32 HxW 0..1.

    1 - SSIM's contrast-structure term at two window sizes (sigma 1.5 and 4 px: invented
    texture and invented shapes), together with a local-mean change relative to the wider
    surroundings (beyond 0.02, x2: a 0.12 local blob counts like a structure loss of 0.2). The maximum
    is mapped through ``1 - exp(-d / tau)`` so values mean the same on every image: no
    per-image stretch, a model that changed nothing gives a dark map, not amplified noise,
    and a global brightness/contrast change stays dark too.
    """
    ra, rb = np.asarray(resampled), np.asarray(result)
    if ra.shape[:2] != rb.shape[:2]:
        raise BadInput(f"review map: resampled {ra.shape[:2]} and result {rb.shape[:2]} differ in size")
    h = ra.shape[0]
    out = np.empty(ra.shape[:2], np.float32)
    # Horizontal strips with a margin of > 3 sigma of the widest filter: the same numbers as
    # one pass, without ten full-size float32 temporaries for a 100+ MP output.
    margin = 48
    for y0 in range(0, h, strip_rows):
        y1 = min(h, y0 + strip_rows)
        a0, a1 = max(0, y0 - margin), min(h, y1 + margin)
        a = _luma(_as_rgb_f32(ra[a0:a1], "review map"))
        b = _luma(_as_rgb_f32(rb[a0:a1], "review map"))
        d = np.maximum(_structure_dissim(a, b, 1.5), _structure_dissim(a, b, 4.0))
        d = np.maximum(d, 2.0 * np.maximum(_local_shift(a, b, 2.0) - 0.02, 0.0))
        d = _blur(d, 1.0)
        out[y0:y1] = 1.0 - np.exp(-d[y0 - a0:y0 - a0 + (y1 - y0)] / tau)
    return out


def review_layers(original_rgb: np.ndarray, resampled: np.ndarray, result: np.ndarray, *,
                  kinds: tuple[str, ...] = KINDS, detector_path: str | Path | None = None,
                  ) -> dict[str, np.ndarray]:
    """The parts of the review map at output size: ``change``, ``text``, ``faces`` (0..1)."""
    orig = _as_rgb_f32(original_rgb, "review map")
    out_h, out_w = np.asarray(result).shape[:2]
    layers = {"change": change_map(resampled, result)}
    for k in ("text", "faces"):
        if k in kinds:
            try:
                m = _regions(orig, (k,), detector_path).astype(np.float32)
            except ModelNotInstalled:
                if k == "text" and detector_path is None:
                    # Review still works without the optional detector; the CLI's doctor
                    # reports the missing model.
                    m = np.zeros(orig.shape[:2], np.float32)
                else:
                    raise
            layers[k] = cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return layers


def combine(layers: dict[str, np.ndarray], *, risk_floor: float = 0.3,
            risk_gain: float = 1.0) -> np.ndarray:
    """Heat = change, doubled inside text/faces, with a floor of ``risk_floor`` there."""
    change = layers["change"]
    risk = np.zeros_like(change)
    for k in ("text", "faces"):
        if k in layers:
            risk = np.maximum(risk, layers[k])
    heat = np.maximum(change * (1.0 + risk_gain * risk), risk_floor * risk)
    return np.clip(heat, 0.0, 1.0).astype(np.float32)


def review_map(original_rgb: np.ndarray, resampled: np.ndarray, result: np.ndarray, *,
               kinds: tuple[str, ...] = KINDS, detector_path: str | Path | None = None,
               ) -> np.ndarray:
    """float32 HxW 0..1 at output size: where the retoucher should look first.

    ``original_rgb``: the input (input size, detections run on it); ``resampled``: a plain
    resample of it to the output size; ``result``: the model output (output size).
    If the text detector has not been imported, the map is made without text regions.
    """
    return combine(review_layers(original_rgb, resampled, result, kinds=kinds,
                                 detector_path=detector_path))


# --- rendering --------------------------------------------------------------------------------

# A perceptually ordered ramp of our own: transparent dark blue -> magenta -> orange -> yellow.
_RAMP = np.array([[0.00, 0.05, 0.05, 0.35],
                  [0.35, 0.55, 0.10, 0.60],
                  [0.65, 0.95, 0.35, 0.15],
                  [1.00, 1.00, 0.95, 0.30]], dtype=np.float32)


def _colorize(v: np.ndarray) -> np.ndarray:
    x = _RAMP[:, 0]
    return np.stack([np.interp(v, x, _RAMP[:, i]) for i in (1, 2, 3)], -1).astype(np.float32)


def render_review_overlay(heat: np.ndarray, base: np.ndarray | None = None, *,
                          opacity: float = 0.8) -> np.ndarray:
    """uint8 HxWx4 RGBA picture of a review map.

    Without ``base``: a transparent overlay (alpha grows with the heat, low values almost
    invisible) for a host layer above the result. With ``base`` (the result, any size is
    resized to the map): the base dimmed to gray under the coloured heat, fully opaque, for
    ``--review FILE``.
    """
    v = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if v.ndim != 2:
        raise BadInput(f"review overlay: expected an HxW map, got shape {v.shape}")
    col = _colorize(v)
    alpha = opacity * np.clip(v / 0.6, 0.0, 1.0) ** 0.8
    if base is None:
        rgba = np.concatenate([col, alpha[..., None]], -1)
        return np.round(rgba * 255).astype(np.uint8)
    b = _as_rgb_f32(base, "review overlay")
    if b.shape[:2] != v.shape:
        b = cv2.resize(b, (v.shape[1], v.shape[0]), interpolation=cv2.INTER_AREA)
    gray = _luma(b)[..., None] * np.ones(3, np.float32) * 0.6 + 0.2
    rgb = gray * (1 - alpha[..., None]) + col * alpha[..., None]
    rgba = np.concatenate([rgb, np.ones_like(v)[..., None]], -1)
    return np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8)


def save_review_png(path: str | Path, heat: np.ndarray, base: np.ndarray | None = None) -> Path:
    """Write ``render_review_overlay`` as a PNG (temporary name, then rename), making its folder
    when it is missing (``--review reviews/`` for a batch)."""
    from engine.imageio import make_folder

    path = Path(path)
    rgba = render_review_overlay(heat, base)
    make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    ok = cv2.imwrite(str(tmp), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise EnhanceError(f"could not write the review map to {path}: check the folder exists "
                           "and is writable")
    os.replace(tmp, path)
    return path


__all__ = ["KINDS", "change_map", "combine", "detect_faces", "detect_text", "faces_mask",
           "protection_mask", "render_review_overlay", "review_layers", "review_map",
           "save_review_png", "text_probability", "default_feather"]

