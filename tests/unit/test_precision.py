"""Reduced precision on the CPU (engine/models/backends/precision.py): ``auto`` runs a model in
bf16 only where this CPU has bf16 units and a measurement on this machine finds it faithful
(>= 40 dB from float32) and faster; ``full`` keeps float32; the gate refuses an unfaithful or
slower bf16; the decision is measured once and cached; a bad setting is one clear line."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import EnhanceError
from engine.models.backends import load_model, precision

FP32 = ("ncnn-cpu", "openvino", "cpu")     # the loaded models' device names


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * float(np.log10(1.0 / np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2)))


def test_auto_runs_bf16_only_where_this_cpu_has_it_and_it_measured_faithful(models_installed, astronaut,
                                                                            monkeypatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "auto")
    m = load_model("photo-x2", "auto")
    if precision.bf16_cpu():
        assert m.device == precision.BF16_DEVICE
        d = precision.decisions()["photo-x2"]
        assert d["use"] and d["psnr_db"] >= precision.FLOOR_DB and d["speedup"] >= precision.MIN_SPEEDUP, d
        x = astronaut[200:264, 180:244].astype(np.float32) / 255.0        # not the probe crop
        assert _psnr(m.run(x), load_model("photo-x2", "cpu").run(x)) >= precision.FLOOR_DB
    else:
        assert m.device in FP32
        with pytest.raises(EnhanceError, match="no bf16 units"):
            load_model("photo-x2", precision.BF16_DEVICE)


def test_full_precision_keeps_float32(models_installed, monkeypatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "full")
    for model_id in ("photo-x2", "photo-x4"):
        assert load_model(model_id, "auto").device in FP32
    assert load_model("photo-x2", "cpu").device == "cpu"            # an explicit device keeps its precision


def test_a_bad_setting_is_one_clear_line(monkeypatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "half")
    with pytest.raises(EnhanceError, match="use one of auto, full"):
        precision.precision_mode()


def test_the_gate_refuses_an_unfaithful_or_slower_bf16():
    x = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)

    def same(v: np.ndarray) -> np.ndarray:
        return v

    def noisy(v: np.ndarray) -> np.ndarray:              # ~26 dB from float32
        return v + np.random.default_rng(1).normal(0, 0.05, v.shape).astype(np.float32)

    def slow(v: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        return v

    def slow_fp32(v: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return v
    assert not precision.measure(slow_fp32, noisy, "cpu", x).use        # faster but unfaithful
    assert not precision.measure(same, slow, "cpu", x).use              # faithful but slower
    good = precision.measure(slow_fp32, same, "cpu", x)
    assert good.use and good.psnr_db >= precision.FLOOR_DB and good.speedup >= precision.MIN_SPEEDUP


def test_the_decision_is_measured_once_and_cached(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(precision, "_cache_path", lambda: tmp_path / "precision.json")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    loads: list[str] = []

    class Loaded:
        def __init__(self, dev: str) -> None:
            loads.append(dev)
            self.dev = dev

        def run(self, v: np.ndarray) -> np.ndarray:
            if self.dev != precision.BF16_DEVICE:
                time.sleep(0.03)
            return v
    first = precision.decide("m", onnx, "cpu", Loaded)
    assert first.use and loads == ["cpu", precision.BF16_DEVICE]
    again = precision.decide("m", onnx, "cpu", Loaded)
    assert again == first and len(loads) == 2, "measured again instead of read from the cache"
    stored = json.loads((tmp_path / "precision.json").read_text())
    assert [v["use"] for v in stored.values()] == [True]


def test_a_decision_is_read_from_disk_once_per_process(tmp_path: Path, monkeypatch):
    """Every job's model load asks for the decision: after the first answer the JSON file is
    not read again (it would be, per job, without the in-process memo)."""
    cache = tmp_path / "precision.json"
    monkeypatch.setattr(precision, "_cache_path", lambda: cache)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"xy")
    key = precision._key("m2", onnx, "cpu")
    cache.write_text(json.dumps({key: {"use": True, "psnr_db": 50.0, "max_lsb": 1.0, "speedup": 2.0,
                                       "versus": "cpu"}}))

    def never(dev: str):
        raise AssertionError("measured although the decision is on disk")
    first = precision.decide("m2", onnx, "cpu", never)
    reads: list[Path] = []
    real_read = Path.read_text

    def counting(self: Path, *a, **k) -> str:
        reads.append(self)
        return real_read(self, *a, **k)
    monkeypatch.setattr(Path, "read_text", counting)
    again = [precision.decide("m2", onnx, "cpu", never) for _ in range(3)]
    assert again == [first] * 3 and first.use and first.speedup == 2.0
    assert cache not in reads, "the decision file was read again for each job"
