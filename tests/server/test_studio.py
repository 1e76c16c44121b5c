"""The studio engine (issue 18 item 4): ``serve --init-tls`` makes its own certificate once and
prints the fingerprint; a client that pins it connects, runs a job and tests the connection
(latency, load, models); a different certificate is refused in plain words; /v1/health shows
the load."""
from __future__ import annotations

import stat

import numpy as np
import pytest

from .conftest import elc, start_engine

pytest.importorskip("cryptography", reason="a core dependency: pip install -e .")


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory, models_dir):
    home = tmp_path_factory.mktemp("studio") / "home"
    eng = start_engine(home, models=models_dir, args=("--init-tls",))
    yield eng
    eng.stop()


def test_init_tls_makes_the_certificate_once_and_prints_its_fingerprint(tls_engine, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from engine.server import tls

    cert, key = tls.cert_paths(tls_engine.cfg)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    crt = x509.load_pem_x509_certificate(cert.read_bytes())
    want = "SHA256:" + ":".join(f"{b:02X}" for b in crt.fingerprint(hashes.SHA256()))
    assert tls_engine.info["fingerprint"] == want
    assert f"certificate fingerprint (clients pin it in their engine settings): {want}" in \
        (tls_engine.home / "serve.out").read_text()
    sans = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert tls_engine.url.startswith("https://127.0.0.1:")
    before = cert.read_bytes()
    assert tls.init_tls(tls_engine.cfg, "0.0.0.0") == (cert, key, False)     # reused, never remade
    assert cert.read_bytes() == before


def test_a_pinned_client_connects_tests_and_enhances(tls_engine, coffee):
    c = elc.EngineClient.remote(tls_engine.url, tls_engine.token, fingerprint=tls_engine.info["fingerprint"].lower())
    t = c.test_connection()
    assert t["latency_ms"] > 0 and t["version"] and t["models"] >= 1 and t["models_total"] >= t["models"]
    assert {"queued", "running", "gpu"} <= set(t)
    px = np.ascontiguousarray(coffee[:64, :80])
    res = c.enhance(px.tobytes(), 80, 64, 3, "u8", model="denoise", strength=100)
    out = np.frombuffer(res.pixels, np.uint8).reshape(64, 80, 3)
    assert out.shape == px.shape and np.abs(out.astype(int) - px).mean() > 0.1


def test_another_certificate_is_refused_in_plain_words(tls_engine):
    wrong = "SHA256:" + ":".join(["AB"] * 32)
    c = elc.EngineClient.remote(tls_engine.url, tls_engine.token, fingerprint=wrong)
    with pytest.raises(elc.CertificateChanged) as e:
        c.health()
    assert tls_engine.info["fingerprint"] in str(e.value)
    assert elc.messages.explain(e.value, remote=True).text.startswith("The studio engine's certificate is not")
    with pytest.raises(elc.EngineUnreachable, match="not trusted"):     # no pin, no CA: not trusted either
        elc.EngineClient.remote(tls_engine.url, tls_engine.token).health()


@pytest.mark.parametrize("text, ok", [
    ("sha256:" + "ab" * 32, True), (" " + ":".join(["Ab"] * 32) + " ", True), ("SHA-256:" + "0" * 64, True),
    ("ab" * 31, False), ("SHA256:" + "zz" * 32, False), ("", False)])
def test_fingerprints_as_users_paste_them(text: str, ok: bool):
    if ok:
        fp = elc.client.normalize_fingerprint(text)
        assert fp.startswith("SHA256:") and len(fp) == 7 + 95
    else:
        with pytest.raises(elc.EngineError, match="not a SHA-256 certificate fingerprint"):
            elc.client.normalize_fingerprint(text)


def test_health_shows_the_load(bare_engine):
    import json

    st, _h, body = bare_engine.raw("GET", "/v1/health", auth=False)
    h = json.loads(body)
    assert st == 200 and h["queued"] == 0 and h["running"] == 0 and h["clients_waiting"] == 0


def test_the_settings_panels_core_tests_the_connection(tls_engine):
    """What both hosts' "Test connection" shows, from their stored values."""
    st = elc.studio
    good = st.EngineSettings.from_values({"url": tls_engine.url, "token": tls_engine.token,
                                          "fingerprint": tls_engine.info["fingerprint"]})
    assert good.mode == st.STUDIO and good.problems() == []
    ok, line, _details = st.try_connection(good)
    assert ok and line.startswith("Connected in ") and "models ready" in line, line
    wrong = st.EngineSettings.from_values(dict(good.values(), fingerprint="SHA256:" + ":".join(["CD"] * 32)))
    ok, line, details = st.try_connection(wrong)
    assert not ok and line == elc.messages.CERTIFICATE and tls_engine.info["fingerprint"] in details
    bad_token = st.EngineSettings.from_values(dict(good.values(), token="x" * 43))
    ok, line, _details = st.try_connection(bad_token)
    assert not ok and line == elc.messages.TOKEN
