"""The engine settings both plug-ins' panels edit (plugin/client/studio.py), without a host."""
from __future__ import annotations

import os
import stat

import pytest

from tests.unit.test_plugin_core import ec

FP = "SHA256:" + ":".join(["AB"] * 32)


@pytest.mark.parametrize("values, problem", [
    ({"mode": "studio", "url": "https://gpu.studio:8443", "token": "t", "fingerprint": FP}, None),
    ({"mode": "studio", "url": "https://gpu.studio:8443", "token": "t", "cafile": "/etc/ca.pem"}, None),
    ({"mode": "studio", "url": "gpu.studio:8443", "token": "t", "fingerprint": FP}, "must look like https://"),
    ({"mode": "studio", "url": "http://gpu.studio:8443", "token": "t"}, "needs https://"),
    ({"mode": "studio", "url": "https://gpu.studio:8443", "fingerprint": FP}, "token is missing"),
    ({"mode": "studio", "url": "https://gpu.studio:8443", "token": "t", "fingerprint": "AB:CD"}, "not a SHA-256"),
    ({"mode": "studio", "url": "https://gpu.studio:8443", "token": "t"}, "Give the engine's certificate fingerprint"),
    ({"mode": "local", "url": "nonsense"}, None),
])
def test_problems_in_plain_words(values: dict, problem) -> None:
    s = ec.studio.EngineSettings.from_values(values)
    found = s.problems()
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found
        with pytest.raises(ec.UserError, match=problem.split(" ")[0]):
            s.client()


def test_values_round_trip_and_old_settings_mean_studio(tmp_path) -> None:
    st = ec.studio
    assert st.EngineSettings.from_values({}).mode == st.LOCAL
    assert st.EngineSettings.from_values({"url": " https://h:1 "}).mode == st.STUDIO       # before the panel
    assert st.EngineSettings.from_values({"mode": "cloud", "url": "https://h:1"}).mode == st.LOCAL
    s = st.EngineSettings(st.STUDIO, "https://h:1", "tok", FP, "")
    path = str(tmp_path / "enhancelayer-engine.json")
    st.save_json(path, s)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert st.EngineSettings.from_values(st.load_json(path) or {}) == s
    assert st.load_json(str(tmp_path / "none.json")) == {}
    (tmp_path / "bad.json").write_text("{")
    assert st.load_json(str(tmp_path / "bad.json")) is None


def test_connection_words() -> None:
    line = ec.studio.connection_words({"latency_ms": 12.4, "version": "0.1.0", "gpu": "cuda", "models": 23,
                                       "models_total": 25, "queued": 1})
    assert line == "Connected in 12 ms: engine 0.1.0 on the GPU (cuda), 23 of 25 models ready, 1 job waiting."
