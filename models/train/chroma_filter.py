"""Append the colour and the brightness clean-up to the trained denoiser's ONNX graph (``denoise.onnx``).

Why: measured on development photos that are neither training nor benchmark photos
(bench/denoise_chroma_study.py), the trained network leaves low-frequency *colour* mottling in
flat areas: its luma is good, its chroma is not. Colour rarely has detail of its own where
brightness has none, so each chroma channel (BT.601 Cb, Cr of the network's output) is replaced
by a local linear function of the output's own luma: a guided filter (He, Sun & Tang, "Guided
image filtering", ECCV 2010, written here from the paper) with the luma as guide, radius
``RADIUS`` px, regulariser ``EPS``. Luma is untouched.

How much it may change is set by the *colour* noise of the input, measured in the graph the way
the network measures its noise level (Immerkaer's estimator, 32 px blocks, the flattest block) on
the input's Cb and on its Cr, the larger of the two; the engine feeds these once per image like
the network's own level (engine/models/global_stats.py), so tiles agree. The change is blended in
with weight min(1, colour level / ``FULL_AT``) and clamped at each pixel to +-``CLAMP`` x colour
level: a clean photo, or one whose noise is in the brightness only (film grain, a phone JPEG
after in-camera colour noise reduction), is left as the network made it, and colour detail that
the brightness does not show loses at most about a noise level.

The settings are the rule of bench/denoise_chroma_study.py (its output: bench/results/
denoise_chroma_study.txt): on development photos (Debian wallpapers shrunk to <= 1024 px, and the
denoiser's own training photos at native size, each's most detailed and flattest 256 px window,
8 noise kinds), the largest mean RGB gain over the network alone among the settings that cost no
clean crop, and no condition (crop kind x noise kind) on average, more than ``CLEAN_COST`` (0.05
dB). Radius 3 / eps 1e-4 / full at 8 colour levels / clamp 0.5 colour level: +0.47 dB mean, worst
clean crop -0.01 dB, worst condition -0.02 dB, luma-only noise within 0.01 dB. History (same
study): weighting by the network's overall level instead, luma-only noise at sigma 15 cost
detailed native-size crops 0.48 dB; without the clamp clean crops lost up to 2.9 dB; the rule
first bounded only the clean crops, and picked radius 4 / full at 5 levels / clamp 2, which the
study itself showed costing detailed native-size crops 0.18 dB at sigma 15 and the benchmark's
held-out LadyBird 1.2 dB, so the per-condition bound was added.

Where it loses: colour detail whose brightness does not show it, at a red/green edge of similar
luma (the held-out LadyBird and astronaut detail crops at sigma 15: -0.46 / -0.17 dB against
the network alone), because a guided filter assumes colour follows brightness within its window.

Then the brightness stage (:func:`luma_reference`): Lee's local linear MMSE filter of the luma
over a (2 ``LUMA_RADIUS`` + 1)^2 window, noise variance ``LUMA_K`` x the input's luma noise level
squared (the same in-graph estimator on the BT.601 luma, the fourth statistic the engine feeds):
windows that vary no more than the noise are averaged (the network's leftover low-frequency
blotches on skies and walls), textured ones keep the network's luma. The change is added to R, G
and B alike, so the colour stage's Cb/Cr stay. Settings by the same photos and rule
(``bench/denoise_chroma_study.py --luma``, bench/results/denoise_luma_study.txt): radius 7, k
0.05: +0.37 dB mean RGB over the colour stage alone, flat crops +0.2..+2.2 dB per condition,
worst condition -0.049 dB, worst clean crop -0.03 dB.

In the graph it runs in every backend and tile by tile with the network (the model's receptive
field grows by 2 x RADIUS + 2 x LUMA_RADIUS: engine/models/catalog.py), so tiled == untiled
still holds.

    python models/train/chroma_filter.py engine/data/trained/denoise.onnx   # in place, once
    python models/train/chroma_filter.py --check engine/data/trained/denoise.onnx

The first form refuses a graph that already has the filter; the file it writes is recorded in
``denoise_post.json`` (read by manifest.py). ``--check`` compares the graph with the numpy
reference :func:`reference` on a noisy photo.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RADIUS = 3                # box radius of the guided filter (px)
EPS = 1e-4                # its regulariser (luma variance units, 0..1 scale)
FULL_AT = 8.0 / 255.0     # colour noise level at which the filter applies fully
CLAMP = 0.5               # the change per pixel is at most this many colour noise levels
# the flat-area brightness stage after it (see the module doc): a local linear MMSE (Lee) filter
# of the luma with noise variance LUMA_K x (the input's luma noise level)^2 in a (2r+1)^2 window
LUMA_RADIUS = 7
LUMA_K = 0.05
PREFIX = "chroma_filter/"
NET_OUTPUT = "net_output"
# BT.601 RGB -> Y Cb Cr (no offsets: the chroma is centred on 0)
RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                       [-0.168736, -0.331264, 0.5],
                       [0.5, -0.418688, -0.081312]], np.float32)


def _box(z: np.ndarray, r: int) -> np.ndarray:
    """Mean over (2r+1)^2 windows of C x H x W, borders mirrored without repeating the edge (as
    ONNX Pad mode=reflect)."""
    zp = np.pad(z, ((0, 0), (r, r), (r, r)), mode="reflect")
    c = np.cumsum(np.cumsum(np.pad(zp, ((0, 0), (1, 0), (1, 0))), axis=1), axis=2)
    k = 2 * r + 1
    return (c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]) / np.float32(k * k)


def luma_reference(rgb_chw: np.ndarray, luma_level: float, radius: int = LUMA_RADIUS, k: float = LUMA_K) -> np.ndarray:
    """The brightness stage in numpy on one 3 x H x W float image, given the input's luma noise
    level: y' = m + max(v - k level^2, 0) / v (y - m) with the window's mean m and variance v of
    the luma y, added to R, G and B alike (so Cb and Cr do not change)."""
    x = rgb_chw.astype(np.float64)
    y = np.einsum("j,jhw->hw", RGB_TO_YCC[0].astype(np.float64), x)[None]
    m = _box(np.concatenate([y, y * y]), radius)
    mean, var = m[:1], np.maximum(m[1:] - m[:1] ** 2, 0.0)
    gain = np.maximum(var - k * luma_level ** 2, 0.0) / np.maximum(var, 1e-12)
    return (x + (mean + gain * (y - mean) - y)).astype(np.float32)


def reference(rgb_chw: np.ndarray, level: float, radius: int = RADIUS, eps: float = EPS,
              full_at: float = FULL_AT, clamp: float = CLAMP, luma_level: float | None = None) -> np.ndarray:
    """The filter in numpy on one 3 x H x W float image, given the colour noise statistic
    ``level``, then (when ``luma_level`` is given) the brightness stage (the other settings are
    the shipped ones unless given: bench/denoise_chroma_study.py varies them)."""
    ycc = np.einsum("ij,jhw->ihw", RGB_TO_YCC, rgb_chw.astype(np.float64))
    guide, chroma = ycc[:1], ycc[1:]
    m = _box(np.concatenate([guide, chroma, guide * chroma, guide * guide]), radius)
    mi, mp, mip, mii = m[:1], m[1:3], m[3:5], m[5:]
    a = (mip - mi * mp) / (mii - mi * mi + eps)
    b = mp - a * mi
    ab = _box(np.concatenate([a, b]), radius)
    q = ab[:2] * guide + ab[2:]
    w = min(1.0, max(0.0, level / full_at))
    limit = clamp * level
    out = np.concatenate([guide, chroma + w * np.clip(q - chroma, -limit, limit)])
    rgb = np.einsum("ij,jhw->ihw", np.linalg.inv(RGB_TO_YCC.astype(np.float64)), out).astype(np.float32)
    return rgb if luma_level is None else luma_reference(rgb, luma_level)


def append_filter(model):
    """``model`` (onnx.ModelProto of the trained denoiser) with the chroma filter after its output."""
    from onnx import TensorProto, helper, numpy_helper

    from engine.models import global_stats

    g = model.graph
    if any(n.name.startswith(PREFIX) for n in g.node):
        raise SystemExit("this graph already has the chroma filter")
    found = global_stats.find(model)
    if found is None:
        raise SystemExit("no in-graph noise statistic found: is this the denoiser (--noise-input)?")
    measured = found[1]                          # the network's estimator: its kernel, block, scale
    padded = [n.output[0] for n in g.node if n.op_type == "Pad" and n.input[0] == g.input[0].name]
    if len(padded) != 1:
        raise SystemExit("expected one Pad of the graph input (the network's)")
    out_name = g.output[0].name
    for n in g.node:
        n.output[:] = [NET_OUTPUT if o == out_name else o for o in n.output]
        n.input[:] = [NET_OUTPUT if i == out_name else i for i in n.input]

    made: set[str] = set()

    def const(name: str, value: np.ndarray) -> str:
        if name not in made:            # the box filters of one radius share their pads
            made.add(name)
            g.initializer.append(numpy_helper.from_array(np.asarray(value), PREFIX + name))
        return PREFIX + name

    nodes = []

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [PREFIX + name], name=PREFIX + name, **attrs))
        return PREFIX + name

    def box(x: str, name: str, r: int = RADIUS) -> str:
        pads = const(f"pads{r}", np.array([0, 0, r, r, 0, 0, r, r], np.int64))
        padded = node("Pad", [x, pads], name + "_pad", mode="reflect")
        return node("AveragePool", [padded], name, kernel_shape=[2 * r + 1, 2 * r + 1], strides=[1, 1])

    def channels(x: str, lo: int, hi: int, name: str) -> str:
        return node("Slice", [x, const(name + "_lo", np.array([lo], np.int64)),
                              const(name + "_hi", np.array([hi], np.int64)),
                              const(name + "_ax", np.array([1], np.int64))], name)

    ycc = node("Conv", [NET_OUTPUT, const("to_ycc", RGB_TO_YCC.reshape(3, 3, 1, 1))], "ycc")
    guide, chroma = channels(ycc, 0, 1, "guide"), channels(ycc, 1, 3, "chroma")
    stack = node("Concat", [guide, chroma, node("Mul", [guide, chroma], "ip"), node("Mul", [guide, guide], "ii")],
                 "stack", axis=1)
    m = box(stack, "means")
    mi, mp, mip, mii = (channels(m, 0, 1, "mi"), channels(m, 1, 3, "mp"), channels(m, 3, 5, "mip"),
                        channels(m, 5, 6, "mii"))
    cov = node("Sub", [mip, node("Mul", [mi, mp], "mi_mp")], "cov")
    var = node("Sub", [mii, node("Mul", [mi, mi], "mi_mi")], "var")
    a = node("Div", [cov, node("Add", [var, const("eps", np.array(EPS, np.float32))], "var_eps")], "a")
    b = node("Sub", [mp, node("Mul", [a, mi], "a_mi")], "b")
    ab = box(node("Concat", [a, b], "ab", axis=1), "ab_means")
    q = node("Add", [node("Mul", [channels(ab, 0, 2, "ma"), guide], "ma_i"), channels(ab, 2, 4, "mb")], "q")
    # the colour noise level: the network's estimator (global_stats.py's shape, so the engine feeds
    # each of these once per image too) on Cb and on Cr of the padded input; the larger of the two
    levels = []
    for k, name in ((1, "cb"), (2, "cr"), (0, "luma")):
        mixed = node("Conv", [padded[0], const(f"{name}_mix", RGB_TO_YCC[k].reshape(1, 3, 1, 1))], f"{name}_mixed")
        lap = node("Conv", [mixed, const(f"{name}_kernel", measured.kernel.reshape(1, 1, 3, 3))], f"{name}_lap")
        pooled = node("AveragePool", [node("Abs", [lap], f"{name}_abs")], f"{name}_blocks",
                      kernel_shape=[measured.block] * 2, strides=[measured.block] * 2)
        scaled = node("Mul", [pooled, const(f"{name}_scale", np.array(measured.scale, np.float32))], f"{name}_scaled")
        levels.append(node("ReduceMin", [scaled], f"{name}_level", axes=[2, 3], keepdims=1))
    luma_level = levels.pop()
    stat = node("Max", levels, "colour_level")
    w = node("Clip", [node("Mul", [stat, const("per_level", np.array(1.0 / FULL_AT, np.float32))], "level"),
                      const("zero", np.array(0.0, np.float32)), const("one", np.array(1.0, np.float32))], "weight")
    limit = node("Mul", [stat, const("clamp", np.array(CLAMP, np.float32))], "limit")
    change = node("Min", [node("Max", [node("Sub", [q, chroma], "change"), node("Neg", [limit], "neg_limit")],
                               "change_lo"), limit], "change_clamped")
    chroma2 = node("Add", [chroma, node("Mul", [w, change], "weighted")], "chroma_out")
    inv = np.linalg.inv(RGB_TO_YCC.astype(np.float64)).astype(np.float32).reshape(3, 3, 1, 1)
    ycc2 = node("Concat", [guide, chroma2], "ycc_out", axis=1)
    rgb2 = node("Conv", [ycc2, const("to_rgb", inv)], "chroma_rgb")
    # the brightness stage (luma_reference): Lee's filter of the luma, the change added to R, G, B
    # moments of y - 0.5 (the variance is the same; float32 loses less to the subtraction below)
    yc = node("Sub", [guide, const("half", np.array(0.5, np.float32))], "y_centred")
    lm = box(node("Concat", [yc, node("Mul", [yc, yc], "yy")], "y_yy", axis=1), "luma_means", LUMA_RADIUS)
    mean, mean2 = channels(lm, 0, 1, "y_mean"), channels(lm, 1, 2, "yy_mean")
    lvar = node("Relu", [node("Sub", [mean2, node("Mul", [mean, mean], "mean_sq")], "luma_var_raw")], "luma_var")
    noise = node("Mul", [node("Mul", [luma_level, luma_level], "luma_level_sq"),
                         const("luma_k", np.array(LUMA_K, np.float32))], "luma_noise_var")
    gain = node("Div", [node("Relu", [node("Sub", [lvar, noise], "signal_raw")], "signal"),
                        node("Max", [lvar, const("tiny", np.array(1e-12, np.float32))], "var_floor")], "luma_gain")
    detail = node("Sub", [yc, mean], "luma_detail")
    delta = node("Sub", [node("Mul", [gain, detail], "kept_detail"), detail], "luma_change")
    nodes.append(helper.make_node("Add", [rgb2, delta], [out_name], name=PREFIX + "out"))
    g.node.extend(nodes)
    del g.value_info[:]
    g.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    return model


def with_network_output(path: Path) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, float, float]]:
    """A runner of the filtered graph at ``path``: H x W x 3 float32 -> (its output, the network's
    own output before the filters, both H x W x 3, and the colour and the luma noise levels the
    graph measured)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(path))
    model.graph.output.extend([helper.make_tensor_value_info(NET_OUTPUT, 1, None),
                               helper.make_tensor_value_info(PREFIX + "colour_level", 1, None),
                               helper.make_tensor_value_info(PREFIX + "luma_level", 1, None)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        out, net, level, luma = sess.run(None, {"input": np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)})
        return (out[0].transpose(1, 2, 0), net[0].transpose(1, 2, 0), float(np.ravel(level)[0]),
                float(np.ravel(luma)[0]))
    return run


def check(path: Path) -> float:
    """Largest difference between the graph and :func:`reference` on a noisy photo crop."""
    import skimage.data as sd

    rng = np.random.default_rng(0)
    x = sd.astronaut()[100:197, 200:293].astype(np.float32) / 255
    x = np.clip(x + rng.normal(0, 20 / 255, x.shape), 0, 1).astype(np.float32)
    out, net, level, luma = with_network_output(path)(x)
    ref = reference(net.transpose(2, 0, 1), level, luma_level=luma).transpose(1, 2, 0)
    return float(np.abs(out - ref).max())


def main(argv: list[str] | None = None) -> int:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--check", action="store_true", help="compare the filtered graph with the numpy reference")
    args = ap.parse_args(argv)
    if args.check:
        diff = check(args.onnx)
        print(f"graph vs numpy reference: max difference {diff:.2e}")
        return 0 if diff < 1e-4 else 1
    raw = args.onnx.read_bytes()
    model = append_filter(onnx.load_from_string(raw))
    onnx.checker.check_model(model)
    onnx.save(model, str(args.onnx))
    diff = check(args.onnx)
    facts = {"script": "models/train/chroma_filter.py", "radius": RADIUS, "eps": EPS, "full_at_level": FULL_AT,
             "clamp_levels": CLAMP, "luma_radius": LUMA_RADIUS, "luma_k": LUMA_K,
             "network_sha256": hashlib.sha256(raw).hexdigest(),
             "sha256": hashlib.sha256(args.onnx.read_bytes()).hexdigest(), "check_maxdiff": diff}
    (args.onnx.parent / f"{args.onnx.stem}_post.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps(facts))
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
