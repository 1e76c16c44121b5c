"""Translate an ncnn graph into ONNX, layer by layer, with the ``onnx`` package only.

Generic over the graph: each ncnn layer type maps to a few ONNX nodes, whatever model it
sits in; no model is special-cased. The image input is ``input`` (N,3,H,W) with H/W
dynamic, the output ``output``. ncnn blobs have no batch axis (CHW, or a flat vector for
pooled / fully-connected data); here every blob gets a batch axis, and the converter keeps
track of each blob's rank so per-channel vectors broadcast the way ncnn broadcasts them.

Facts this depends on (shared/ncnn-notes.md sections 3, 9):
* Convolution weights are [out][in/g][kh][kw] (= ONNX Conv). Deconvolution weights are also
  stored [out][in/g][kh][kw] and are transposed per group to ONNX's [in][out/g][kh][kw];
  Deconvolution pads *crop* the full transposed output, exactly ONNX ConvTranspose ``pads``.
* Interp is written as ``Resize`` with *scales* (never sizes) so H/W stay dynamic;
  ncnn nearest = asymmetric/floor, bilinear/bicubic = half-pixel, bicubic A = -0.75.
* Fused activations (param 9): 0 none, 1 ReLU, 2 LeakyReLU(p10[0]), 3 Clip(p10), 4 Sigmoid,
  5 Mish, 6 HardSwish(p10).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.models.convert.ncnn import Layer, NcnnModel

OPSET = 17
INPUT = "input"
OUTPUT = "output"


class UnsupportedLayer(NotImplementedError):
    """An ncnn layer type (or a parameter of one) the translator does not handle."""


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.alias: dict[str, str] = {}     # ncnn blob -> onnx value name
        self.rank: dict[str, int] = {}      # onnx value -> rank (with batch)
        self._n = 0

    def uniq(self, base: str) -> str:
        self._n += 1
        return f"{base}__{self._n}"

    def const(self, base: str, arr: np.ndarray) -> str:
        name = self.uniq(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, rank: int, **attrs) -> str:
        out = self.uniq(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.rank[out] = rank
        return out

    def src(self, blob: str) -> str:
        try:
            return self.alias[blob]
        except KeyError:
            raise UnsupportedLayer(f"blob '{blob}' is used before any layer produces it") from None

    def bind(self, blob: str, value: str) -> None:
        self.alias[blob] = value


def _f(v, default: float = 0.0) -> float:
    return float(v) if v is not None else default


def _activation(g: _Graph, x: str, layer: Layer) -> str:
    act = layer.get_int(9, 0)
    p = layer.get_list(10)
    r = g.rank[x]
    n = layer.name
    if act == 0:
        return x
    if act == 1:
        return g.node("Relu", [x], n + "_relu", r)
    if act == 2:
        slope = _f(p[0]) if p else 0.0
        if slope == 0.0:
            return g.node("Relu", [x], n + "_relu", r)
        return g.node("LeakyRelu", [x], n + "_lrelu", r, alpha=slope)
    if act == 3:
        lo = g.const(n + "_min", np.array(_f(p[0]), np.float32))
        hi = g.const(n + "_max", np.array(_f(p[1]), np.float32))
        return g.node("Clip", [x, lo, hi], n + "_clip", r)
    if act == 4:
        return g.node("Sigmoid", [x], n + "_sigmoid", r)
    if act == 5:
        return g.node("Mish", [x], n + "_mish", r)
    if act == 6:
        alpha, beta = (_f(p[0]), _f(p[1])) if len(p) >= 2 else (1 / 6, 0.5)
        hs = g.node("HardSigmoid", [x], n + "_hsig", r, alpha=alpha, beta=beta)
        return g.node("Mul", [x, hs], n + "_hswish", r)
    raise UnsupportedLayer(f"layer {n} ({layer.type}): fused activation type {act}")


def _pads(layer: Layer) -> list[int]:
    left = layer.get_int(4, 0)
    right = layer.get_int(15, left)
    top = layer.get_int(14, left)
    bottom = layer.get_int(16, top)
    if min(left, right, top, bottom) < 0:
        raise UnsupportedLayer(f"layer {layer.name} ({layer.type}): SAME padding (pad={left}) is not supported")
    return [top, left, bottom, right]


def _kernel(layer: Layer) -> tuple[int, int, int, int, int, int]:
    kw = layer.get_int(1, 0)
    kh = layer.get_int(11, kw)
    dw = layer.get_int(2, 1)
    dh = layer.get_int(12, dw)
    sw = layer.get_int(3, 1)
    sh = layer.get_int(13, sw)
    return kh, kw, dh, dw, sh, sw


def _conv(g: _Graph, layer: Layer, ins: list[str], depthwise: bool) -> str:
    out_c = layer.get_int(0, 0)
    kh, kw, dh, dw, sh, sw = _kernel(layer)
    group = layer.get_int(7, 1) if depthwise else 1
    w = layer.weights["weight"]
    in_per_group = w.size // (out_c * kh * kw)
    if in_per_group * out_c * kh * kw != w.size:
        raise UnsupportedLayer(f"layer {layer.name}: weight size {w.size} does not match its shape params")
    if layer.get_float(18, 0.0) != 0.0:
        raise UnsupportedLayer(f"layer {layer.name}: non-zero pad_value is not supported")
    inputs = [ins[0], g.const(layer.name + "_w", w.reshape(out_c, in_per_group, kh, kw))]
    if "bias" in layer.weights:
        inputs.append(g.const(layer.name + "_b", layer.weights["bias"]))
    y = g.node("Conv", inputs, layer.name, 4, kernel_shape=[kh, kw], strides=[sh, sw],
               dilations=[dh, dw], pads=_pads(layer), group=group)
    return _activation(g, y, layer)


def _deconv(g: _Graph, layer: Layer, ins: list[str], depthwise: bool) -> str:
    out_c = layer.get_int(0, 0)
    kh, kw, dh, dw, sh, sw = _kernel(layer)
    group = layer.get_int(7, 1) if depthwise else 1
    if layer.get_int(20, 0) > 0 or layer.get_int(21, 0) > 0:
        raise UnsupportedLayer(f"layer {layer.name}: Deconvolution with fixed output size is not supported")
    w = layer.weights["weight"]
    in_per_group = w.size // (out_c * kh * kw)
    in_c = in_per_group * group
    # ncnn [out][in/g][kh][kw] per group -> ONNX [in][out/g][kh][kw]
    w = w.reshape(group, out_c // group, in_per_group, kh, kw).transpose(0, 2, 1, 3, 4)
    w = w.reshape(in_c, out_c // group, kh, kw)
    inputs = [ins[0], g.const(layer.name + "_w", w)]
    if "bias" in layer.weights:
        inputs.append(g.const(layer.name + "_b", layer.weights["bias"]))
    opad_r = layer.get_int(18, 0)
    opad_b = layer.get_int(19, opad_r)
    attrs: dict[str, Any] = dict(kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw], pads=_pads(layer),
                                 group=group)
    if opad_r or opad_b:
        attrs["output_padding"] = [opad_b, opad_r]
    y = g.node("ConvTranspose", inputs, layer.name, 4, **attrs)
    return _activation(g, y, layer)


def _per_channel(g: _Graph, name: str, vec: np.ndarray, rank: int) -> str:
    """A per-channel vector shaped to broadcast over (N, C, ...) of the given rank."""
    return g.const(name, vec.reshape((-1,) + (1,) * (rank - 2)))


def _unsqueeze_to(g: _Graph, x: str, rank: int, base: str) -> str:
    """ncnn broadcasts a (C,) vector over CHW per channel: (N,C) -> (N,C,1,1)."""
    r = g.rank[x]
    if r >= rank:
        return x
    axes = g.const(base + "_axes", np.arange(r, rank, dtype=np.int64))
    return g.node("Unsqueeze", [x, axes], base + "_unsq", rank)


def _binary(g: _Graph, layer: Layer, ins: list[str]) -> str:
    op = layer.get_int(0, 0)
    ops = {0: "Add", 1: "Sub", 2: "Mul", 3: "Div", 4: "Max", 5: "Min", 6: "Pow", 7: "Sub", 8: "Div", 9: "Pow"}
    if op not in ops:
        raise UnsupportedLayer(f"layer {layer.name} (BinaryOp): operation {op} is not supported")
    a = ins[0]
    if layer.get_int(1, 0):
        b = g.const(layer.name + "_scalar", np.array(layer.get_float(2, 0.0), np.float32))
        rank = g.rank[a]
    else:
        b = ins[1]
        rank = max(g.rank[a], g.rank[b])
        a, b = _unsqueeze_to(g, a, rank, layer.name + "_a"), _unsqueeze_to(g, b, rank, layer.name + "_b")
    if op in (7, 8, 9):          # reversed operand order
        a, b = b, a
    return g.node(ops[op], [a, b], layer.name, rank)


def _eltwise(g: _Graph, layer: Layer, ins: list[str]) -> str:
    op = layer.get_int(0, 1)
    coeffs = layer.get_list(1)
    rank = max(g.rank[i] for i in ins)
    if op == 1:
        terms = []
        for i, x in enumerate(ins):
            c = float(coeffs[i]) if coeffs else 1.0
            if c != 1.0:
                x = g.node("Mul", [x, g.const(f"{layer.name}_c{i}", np.array(c, np.float32))],
                           f"{layer.name}_scaled{i}", g.rank[x])
            terms.append(x)
        return g.node("Sum", terms, layer.name, rank) if len(terms) > 1 else terms[0]
    if op == 0:
        y = ins[0]
        for x in ins[1:]:
            y = g.node("Mul", [y, x], layer.name, rank)
        return y
    if op == 2:
        return g.node("Max", ins, layer.name, rank)
    raise UnsupportedLayer(f"layer {layer.name} (Eltwise): operation {op} is not supported")


def _interp(g: _Graph, layer: Layer, ins: list[str]) -> str:
    rtype = layer.get_int(0, 0)
    hs, ws = layer.get_float(1, 1.0), layer.get_float(2, 1.0)
    if layer.get_int(3, 0) or layer.get_int(4, 0) or len(ins) > 1:
        raise UnsupportedLayer(f"layer {layer.name} (Interp): fixed output sizes are not supported "
                               "(they would freeze H/W); only scale factors are")
    align = layer.get_int(6, 0)
    scales = g.const(layer.name + "_scales", np.array([1.0, 1.0, hs, ws], np.float32))
    roi = ""
    attrs: dict[str, Any]
    if rtype == 1:
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    elif rtype in (2, 3):
        attrs = dict(mode="linear" if rtype == 2 else "cubic",
                     coordinate_transformation_mode="align_corners" if align else "half_pixel")
        if rtype == 3:
            attrs.update(cubic_coeff_a=-0.75, exclude_outside=0)
    else:
        raise UnsupportedLayer(f"layer {layer.name} (Interp): resize type {rtype} is not supported")
    return g.node("Resize", [ins[0], roi, scales], layer.name, 4, **attrs)


def _crop(g: _Graph, layer: Layer, ins: list[str]) -> str:
    woff, hoff, coff = layer.get_int(0, 0), layer.get_int(1, 0), layer.get_int(2, 0)
    if 9 in layer.params or layer.get_int(13, 0) or woff == -233:
        raise UnsupportedLayer(f"layer {layer.name} (Crop): the starts/ends and 3-D forms are not supported")
    if g.rank[ins[0]] != 4:
        raise UnsupportedLayer(f"layer {layer.name} (Crop): only image (CHW) blobs are supported")
    # axes C, H, W of the (N, C, H, W) tensor
    axes = g.const(layer.name + "_axes", np.array([1, 2, 3], np.int64))
    st = g.const(layer.name + "_starts", np.array([coff, hoff, woff], np.int64))
    if len(ins) == 2:        # crop input0 at (coff, hoff, woff) to the C/H/W of input1 (ncnn semantics)
        if g.rank[ins[1]] != 4:
            raise UnsupportedLayer(f"layer {layer.name} (Crop): the reference blob must be an image blob")
        shape = g.node("Shape", [ins[1]], layer.name + "_refshape", 1, start=1, end=4)
        ends = g.node("Add", [shape, st], layer.name + "_ends", 1)
    else:
        outw, outh, outc = layer.get_int(3, 0), layer.get_int(4, 0), layer.get_int(5, 0)
        w2, h2, c2 = layer.get_int(6, 0), layer.get_int(7, 0), layer.get_int(8, 0)
        big = np.iinfo(np.int64).max
        ends = g.const(layer.name + "_ends", np.array([
            coff + outc if outc > 0 else (-c2 if c2 else big),
            hoff + outh if outh > 0 else (-h2 if h2 else big),
            woff + outw if outw > 0 else (-w2 if w2 else big)], np.int64))
    return g.node("Slice", [ins[0], st, ends, axes], layer.name, 4)


def _padding(g: _Graph, layer: Layer, ins: list[str]) -> str:
    """ncnn Padding (0=top 1=bottom 2=left 3=right 4=type: 0 constant, 1 replicate, 2 reflect;
    5=value) on an image blob as ONNX Pad; channel padding (7/8) and per-channel values (6)
    are refused."""
    if layer.get_int(6, 0) or layer.get_int(7, 0) or layer.get_int(8, 0) or len(ins) != 1:
        raise UnsupportedLayer(f"layer {layer.name} (Padding): channel or per-channel padding is not supported")
    if g.rank[ins[0]] != 4:
        raise UnsupportedLayer(f"layer {layer.name} (Padding): only image (CHW) blobs are supported")
    top, bottom, left, right = (layer.get_int(k, 0) for k in (0, 1, 2, 3))
    mode = {0: "constant", 1: "edge", 2: "reflect"}.get(layer.get_int(4, 0))
    if mode is None:
        raise UnsupportedLayer(f"layer {layer.name} (Padding): type {layer.get_int(4, 0)} is not supported")
    pads = g.const(layer.name + "_pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    inputs = [ins[0], pads]
    if mode == "constant":
        inputs.append(g.const(layer.name + "_value", np.array(layer.get_float(5, 0.0), np.float32)))
    return g.node("Pad", inputs, layer.name, 4, mode=mode)


def _pooling(g: _Graph, layer: Layer, ins: list[str]) -> str:
    ptype = layer.get_int(0, 0)
    if ptype not in (0, 1):
        raise UnsupportedLayer(f"layer {layer.name} (Pooling): pooling type {ptype}")
    if layer.get_int(4, 0):
        y = g.node("GlobalMaxPool" if ptype == 0 else "GlobalAveragePool", [ins[0]], layer.name + "_gp", 4)
        return g.node("Flatten", [y], layer.name, 2, axis=1)
    if layer.get_int(7, 0):
        raise UnsupportedLayer(f"layer {layer.name} (Pooling): adaptive pooling is not supported")
    kw = layer.get_int(1, 0)
    kh = layer.get_int(11, kw)
    sw = layer.get_int(2, 1)
    sh = layer.get_int(12, sw)
    left = layer.get_int(3, 0)
    pads = [layer.get_int(13, left), left, layer.get_int(15, left), layer.get_int(14, left)]
    if layer.get_int(5, 0) != 1 and any(pads):
        raise UnsupportedLayer(f"layer {layer.name} (Pooling): only 'valid' pad mode with padding is supported")
    attrs: dict[str, Any] = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=pads)
    if layer.get_int(5, 0) == 0:
        attrs["ceil_mode"] = 1   # ncnn "full" padding mode rounds the output size up
    if ptype == 1:
        attrs["count_include_pad"] = layer.get_int(6, 0)
    return g.node("MaxPool" if ptype == 0 else "AveragePool", [ins[0]], layer.name, 4, **attrs)


def _innerproduct(g: _Graph, layer: Layer, ins: list[str]) -> str:
    out_n = layer.get_int(0, 0)
    x = ins[0]
    if g.rank[x] != 2:
        x = g.node("Flatten", [x], layer.name + "_flat", 2, axis=1)
    w = layer.weights["weight"]
    inputs = [x, g.const(layer.name + "_w", w.reshape(out_n, w.size // out_n))]
    if "bias" in layer.weights:
        inputs.append(g.const(layer.name + "_b", layer.weights["bias"]))
    y = g.node("Gemm", inputs, layer.name, 2, transB=1)
    return _activation(g, y, layer)


def _scale(g: _Graph, layer: Layer, ins: list[str]) -> str:
    x = ins[0]
    rank = g.rank[x]
    if len(ins) == 2:
        s = _unsqueeze_to(g, ins[1], rank, layer.name + "_s")
        return g.node("Mul", [x, s], layer.name, rank)
    y = g.node("Mul", [x, _per_channel(g, layer.name + "_scale", layer.weights["scale"], rank)],
               layer.name + "_mul", rank)
    if "bias" in layer.weights:
        y = g.node("Add", [y, _per_channel(g, layer.name + "_bias", layer.weights["bias"], rank)],
                   layer.name, rank)
    return y


def _prelu(g: _Graph, layer: Layer, ins: list[str]) -> str:
    x = ins[0]
    slope = layer.weights["slope"]
    rank = g.rank[x]
    s = g.const(layer.name + "_slope", slope.reshape(1) if slope.size == 1 else
                slope.reshape((-1,) + (1,) * (rank - 2)))
    return g.node("PRelu", [x, s], layer.name, rank)


def _relu(g: _Graph, layer: Layer, ins: list[str]) -> str:
    slope = layer.get_float(0, 0.0)
    if slope == 0.0:
        return g.node("Relu", ins[:1], layer.name, g.rank[ins[0]])
    return g.node("LeakyRelu", ins[:1], layer.name, g.rank[ins[0]], alpha=slope)


def _batchnorm(g: _Graph, layer: Layer, ins: list[str]) -> str:
    w = layer.weights
    eps = layer.get_float(1, 0.0)
    a = w["slope"] / np.sqrt(w["var"] + eps)
    b = w["bias"] - w["mean"] * a
    rank = g.rank[ins[0]]
    y = g.node("Mul", [ins[0], _per_channel(g, layer.name + "_a", a.astype(np.float32), rank)],
               layer.name + "_mul", rank)
    return g.node("Add", [y, _per_channel(g, layer.name + "_b", b.astype(np.float32), rank)], layer.name, rank)


def _simple(op: str, **attrs) -> Callable[[_Graph, Layer, list[str]], str]:
    def f(g: _Graph, layer: Layer, ins: list[str]) -> str:
        return g.node(op, ins[:1], layer.name, g.rank[ins[0]], **attrs)
    return f


def _clip(g: _Graph, layer: Layer, ins: list[str]) -> str:
    lo = g.const(layer.name + "_min", np.array(layer.get_float(0, -np.inf), np.float32))
    hi = g.const(layer.name + "_max", np.array(layer.get_float(1, np.inf), np.float32))
    return g.node("Clip", [ins[0], lo, hi], layer.name, g.rank[ins[0]])


def _swish(g: _Graph, layer: Layer, ins: list[str]) -> str:
    s = g.node("Sigmoid", ins[:1], layer.name + "_sig", g.rank[ins[0]])
    return g.node("Mul", [ins[0], s], layer.name, g.rank[ins[0]])


def _hardswish(g: _Graph, layer: Layer, ins: list[str]) -> str:
    r = g.rank[ins[0]]
    hs = g.node("HardSigmoid", ins[:1], layer.name + "_hsig", r,
                alpha=layer.get_float(0, 0.2), beta=layer.get_float(1, 0.5))
    return g.node("Mul", [ins[0], hs], layer.name, r)


def _pixelshuffle(g: _Graph, layer: Layer, ins: list[str]) -> str:
    mode = "DCR" if layer.get_int(1, 0) else "CRD"
    return g.node("DepthToSpace", ins[:1], layer.name, 4, blocksize=layer.get_int(0, 1), mode=mode)


def _concat(g: _Graph, layer: Layer, ins: list[str]) -> str:
    axis = layer.get_int(0, 0)
    rank = g.rank[ins[0]]
    return g.node("Concat", ins, layer.name, rank, axis=axis + 1 if axis >= 0 else axis)


def _flatten(g: _Graph, layer: Layer, ins: list[str]) -> str:
    return g.node("Flatten", ins[:1], layer.name, 2, axis=1)


def _memorydata(g: _Graph, layer: Layer, ins: list[str]) -> str:
    """A constant blob (pnnx exports put mean/std, scales and learned offsets here): an
    initializer with the batch axis every blob gets, ranked so BinaryOp broadcasts it as ncnn."""
    data = layer.weights.get("data")
    if data is None:
        raise UnsupportedLayer(f"layer {layer.name} (MemoryData) has no data: was the .bin loaded?")
    if data.ndim == 4:
        raise UnsupportedLayer(f"layer {layer.name}: 4-D MemoryData is not supported")
    name = g.const(layer.name, data[None].astype(np.float32))
    g.rank[name] = data.ndim + 1
    return name


_OPS: dict[str, Callable[[_Graph, Layer, list[str]], str]] = {
    "Convolution": lambda g, layer, i: _conv(g, layer, i, False),
    "ConvolutionDepthWise": lambda g, layer, i: _conv(g, layer, i, True),
    "Deconvolution": lambda g, layer, i: _deconv(g, layer, i, False),
    "DeconvolutionDepthWise": lambda g, layer, i: _deconv(g, layer, i, True),
    "ReLU": _relu,
    "PReLU": _prelu,
    "Sigmoid": _simple("Sigmoid"),
    "TanH": _simple("Tanh"),
    "Mish": _simple("Mish"),
    "Swish": _swish,
    "HardSwish": _hardswish,
    "HardSigmoid": lambda g, layer, i: g.node("HardSigmoid", i[:1], layer.name, g.rank[i[0]],
                                              alpha=layer.get_float(0, 0.2), beta=layer.get_float(1, 0.5)),
    "ELU": lambda g, layer, i: g.node("Elu", i[:1], layer.name, g.rank[i[0]], alpha=layer.get_float(0, 0.1)),
    "Clip": _clip,
    "PixelShuffle": _pixelshuffle,
    "Interp": _interp,
    "BinaryOp": _binary,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "Crop": _crop,
    "Pooling": _pooling,
    "InnerProduct": _innerproduct,
    "Scale": _scale,
    "BatchNorm": _batchnorm,
    "Flatten": _flatten,
    "MemoryData": _memorydata,
    "Padding": _padding,
}
_ALIASES = {"Split", "Noop", "Dropout"}   # blobs pass through unchanged


def supported_layer_types() -> list[str]:
    return sorted(set(_OPS) | _ALIASES | {"Input"})


def to_onnx(model: NcnnModel, input_blob: str = "", output_blob: str = "",
            doc: str = "", channels: int = 3) -> onnx.ModelProto:
    """Build an ONNX model (opset 17, input ``input`` N x C x H x W, output ``output``).

    ``input_blob``/``output_blob`` default to the first Input layer and the last blob of
    the graph. Raises :class:`UnsupportedLayer` naming the first layer it cannot translate.
    """
    g = _Graph()
    inputs = [layer for layer in model.layers if layer.type == "Input"]
    if not inputs:
        raise UnsupportedLayer("the ncnn graph has no Input layer")
    in_blob = input_blob or inputs[0].outputs[0]
    for layer in model.layers:
        if layer.type == "Input":
            if layer.outputs[0] != in_blob:
                raise UnsupportedLayer(f"graph has a second Input layer '{layer.name}'; one image input only")
            g.bind(in_blob, INPUT)
            g.rank[INPUT] = 4
            continue
        ins = [g.src(b) for b in layer.inputs]
        if layer.type in _ALIASES:
            for out in layer.outputs:
                g.bind(out, ins[0])
            continue
        fn = _OPS.get(layer.type)
        if fn is None:
            raise UnsupportedLayer(
                f"ncnn layer type '{layer.type}' (layer '{layer.name}') is not supported by the converter; "
                f"supported: {', '.join(supported_layer_types())}"
            )
        if len(layer.outputs) != 1:
            raise UnsupportedLayer(f"layer {layer.name} ({layer.type}) has {len(layer.outputs)} outputs")
        g.bind(layer.outputs[0], fn(g, layer, ins))
    out_blob = output_blob or model.layers[-1].outputs[0]
    last = g.src(out_blob)
    g.nodes.append(helper.make_node("Identity", [last], [OUTPUT], name="output_identity"))
    # Keep only what the output needs (graphs may carry side branches).
    needed = {OUTPUT}
    kept: list[onnx.NodeProto] = []
    for node in reversed(g.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    inits = [t for t in g.inits if t.name in needed]
    graph = helper.make_graph(
        kept, "ncnn_import",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", channels, "h", "w"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", None, None, None])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="enhancelayer.convert", doc_string=doc)
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m
