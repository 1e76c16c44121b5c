"""Every bad or hostile request gets its 4xx, fast, and the engine stays up (never a 5xx)."""
from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from .conftest import elc, frame

GOOD = {"model": "identity", "width": 4, "height": 3, "channels": 3, "dtype": "u8"}


def _post(eng, body: bytes, **kw):
    return eng.raw("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/octet-stream"}, **kw)


def test_good_frame_is_accepted(shared_engine):
    st, _h, b = _post(shared_engine, frame(GOOD, bytes(4 * 3 * 3)))
    assert st == 202, b
    assert json.loads(b)["state"] in ("queued", "running", "done")


@pytest.mark.parametrize("payload_len", [0, 35, 37, 4 * 3 * 3 * 2])
def test_length_mismatch_is_400(shared_engine, payload_len):
    st, _h, b = _post(shared_engine, frame(GOOD, bytes(payload_len)))
    assert st == 400, b
    assert json.loads(b)["error"] == "bad_frame"


def test_mask_length_counts(shared_engine):
    h = dict(GOOD, mask=True)
    assert _post(shared_engine, frame(h, bytes(36)))[0] == 400          # mask missing
    assert _post(shared_engine, frame(h, bytes(36 + 12)))[0] == 202


def test_header_longer_than_body_is_400(shared_engine):
    body = struct.pack(">I", 500) + b'{"model": "identity"}'
    assert _post(shared_engine, body)[0] == 400


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe\x00", b'"text"', b"{}"])
def test_malformed_json_is_422(shared_engine, raw):
    st, _h, b = _post(shared_engine, struct.pack(">I", len(raw)) + raw)
    assert st == 422, b


@pytest.mark.parametrize("patch", [
    {"channels": 5}, {"channels": "3"}, {"dtype": "u32"}, {"width": 0}, {"height": -1},
    {"width": 1.5}, {"strength": 150}, {"strength": "a lot"}, {"channel_order": "ARGB"},
    {"protect": ["hands"]}, {"protect": ["faces", "faces"]}, {"scale": 0}, {"scale": 100},
    {"tile": 3}, {"strenght": 50}, {"keep_color": "yes"}, {"model": ""}, {"width": True},
])
def test_bad_fields_are_422(shared_engine, patch):
    h = dict(GOOD, **patch)
    st, _h, b = _post(shared_engine, frame(h, bytes(36)))
    assert st == 422, (patch, b)
    assert json.loads(b)["error"] == "bad_header"


def test_zero_header_length_is_422(shared_engine):
    assert _post(shared_engine, struct.pack(">I", 0) + b"xx")[0] == 422


def test_huge_header_length_is_413(shared_engine):
    assert _post(shared_engine, struct.pack(">I", 10_000_000) + b"{}")[0] == 413


def test_unknown_model_is_404(shared_engine):
    st, _h, b = _post(shared_engine, frame(dict(GOOD, model="photo-x9000"), bytes(36)))
    assert st == 404, b
    assert json.loads(b)["error"] == "unknown_model"


def test_not_installed_model_is_409(shared_engine):
    st, _h, b = _post(shared_engine, frame(dict(GOOD, model="photo-x2"), bytes(36)))
    assert st == 409, b
    assert "enhancelayer import" in json.loads(b)["detail"]


def test_dimensions_over_limit_are_413_without_reading_the_body(shared_engine):
    """The engine answers from the frame header while the client has sent almost nothing."""
    h = dict(GOOD, width=2000, height=2000, channels=4)        # 4 MP > --max-pixels 1e6
    head = frame(h)
    total = len(head) + 2000 * 2000 * 4
    s = socket.create_connection(("127.0.0.1", shared_engine.port), timeout=10)
    try:
        t0 = time.monotonic()
        s.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{shared_engine.port}\r\n"
                   f"Authorization: Bearer {shared_engine.token}\r\nContent-Length: {total}\r\n\r\n").encode() + head)
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 413"), data[:200]
        assert time.monotonic() - t0 < 5
    finally:
        s.close()


def test_content_length_over_limit_is_413_before_reading(shared_engine):
    s = socket.create_connection(("127.0.0.1", shared_engine.port), timeout=10)
    try:
        s.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{shared_engine.port}\r\n"
                   f"Authorization: Bearer {shared_engine.token}\r\nContent-Length: 99999999999\r\n\r\n").encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 413")
    finally:
        s.close()


def test_output_over_limit_is_413(shared_engine):
    h = dict(GOOD, width=900, height=900, channels=1, scale=8.0)   # output 51 MP > 4 x 1 MP
    assert _post(shared_engine, frame(h, bytes(900 * 900)))[0] == 413


def test_missing_content_length_is_411(shared_engine):
    s = socket.create_connection(("127.0.0.1", shared_engine.port), timeout=10)
    try:
        s.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{shared_engine.port}\r\n"
                   f"Authorization: Bearer {shared_engine.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n").encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 411")
    finally:
        s.close()


def test_truncated_upload_does_not_hang_or_leak(shared_engine):
    """The client announces 36 bytes of pixels, sends 10 and hangs up: no job, budget freed."""
    head = frame(GOOD)
    s = socket.create_connection(("127.0.0.1", shared_engine.port), timeout=10)
    s.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{shared_engine.port}\r\n"
               f"Authorization: Bearer {shared_engine.token}\r\nContent-Length: {len(head) + 36}\r\n\r\n").encode()
              + head + bytes(10))
    s.close()
    time.sleep(0.3)
    assert shared_engine.raw("GET", "/v1/health", auth=False)[0] == 200


def test_unknown_job_is_404(shared_engine):
    for m, p in (("GET", "/v1/jobs/nope"), ("GET", "/v1/jobs/nope/result"), ("DELETE", "/v1/jobs/nope")):
        assert shared_engine.raw(m, p)[0] == 404


def test_result_is_kept_until_confirmed_then_forgotten(shared_engine):
    """A fetch alone does not drop the result (a download may break off): it can be fetched
    again; the client's result() confirms it (DELETE) and then the job is gone (404)."""
    c = shared_engine.client()
    job = c.submit(bytes(range(36)), 4, 3, 3, "u8", model="identity")
    while c.status(job)["state"] != "done":
        time.sleep(0.02)
    for _ in range(2):
        st, _h, b = shared_engine.raw("GET", f"/v1/jobs/{job}/result")
        assert st == 200 and b.endswith(bytes(range(36)))
    assert c.result(job).pixels == bytes(range(36))
    assert shared_engine.raw("GET", f"/v1/jobs/{job}/result")[0] == 404
    with pytest.raises(elc.JobNotFound):
        c.result(job)


def test_client_checks_sizes_before_sending(shared_engine):
    c = shared_engine.client()
    with pytest.raises(elc.BadRequest):
        c.submit(bytes(35), 4, 3, 3, "u8", model="identity")
    with pytest.raises(elc.BadRequest):
        c.submit(bytes(36), 4, 3, 3, "u8", model="identity", mask=bytes(5))
    with pytest.raises(elc.UnknownModel):
        c.submit(bytes(36), 4, 3, 3, "u8", model="photo-x9000")
    with pytest.raises(elc.ModelNotInstalled):
        c.submit(bytes(36), 4, 3, 3, "u8", model="photo-x2")
    with pytest.raises(elc.TooLarge) as ei:
        c.submit(bytes(2000 * 2000), 2000, 2000, 1, "u8", model="identity")
    assert "smaller selection" in str(ei.value)


def test_queue_memory_limit_is_429(tmp_path):
    from .conftest import start_engine
    eng = start_engine(tmp_path / "home", args=("--max-queued-mb", "1"))
    try:
        c = eng.client()
        w = h = 400                                 # 400*400*4 in + out = 1.28 MB > 1 MiB
        with pytest.raises(elc.Busy):
            c.submit(bytes(w * h * 4), w, h, 4, "u8", model="identity")
        job = c.submit(bytes(200 * 200 * 4), 200, 200, 4, "u8", model="identity")   # 0.32 MB fits
        time.sleep(0.2)
        # its result (0.16 MB) is held until fetched: 4 more like it do not fit
        with pytest.raises(elc.Busy):
            for _ in range(6):
                c.submit(bytes(200 * 200 * 4), 200, 200, 4, "u8", model="identity")
        for j in c.jobs():
            if j["state"] == "done":
                c.result(j["id"])
        c.wait(c.submit(bytes(200 * 200 * 4), 200, 200, 4, "u8", model="identity"))
        assert job
    finally:
        eng.stop()


def test_unfetched_results_expire(tmp_path):
    from .conftest import start_engine
    eng = start_engine(tmp_path / "home", args=("--result-ttl", "1"))
    try:
        c = eng.client()
        job = c.submit(bytes(12), 2, 2, 3, "u8", model="identity")
        while c.status(job)["state"] != "done":
            time.sleep(0.02)
        time.sleep(2.0)                                   # the sweeper runs every 0.5 s
        with pytest.raises(elc.JobNotFound):
            c.status(job)
        assert c.jobs() == []
    finally:
        eng.stop()


def test_a_broken_model_fails_the_job_not_the_server(tmp_path):
    """A user drops a corrupt .onnx into user-models: the job fails with a message, the engine
    answers 200 to status and stays up (never a 5xx)."""
    from .conftest import start_engine
    home = tmp_path / "home"
    (home / "user-models").mkdir(parents=True)
    (home / "user-models" / "broken.onnx").write_bytes(b"this is not an onnx file" * 10)
    eng = start_engine(home)
    try:
        c = eng.client()
        assert any(m["id"] == "user:broken" for m in c.models())
        job = c.submit(bytes(16 * 16 * 3), 16, 16, 3, "u8", model="user:broken", scale=None)
        with pytest.raises(elc.JobFailed) as ei:
            c.wait(job)
        assert str(ei.value)
        st = c.status(job)
        assert st["state"] == "failed" and st["error"]["kind"] and st["error"]["message"]
        code, _h, b = eng.raw("GET", f"/v1/jobs/{job}/result")
        assert code == 409 and json.loads(b)["error"] == "failed"
        assert eng.raw("GET", "/v1/health", auth=False)[0] == 200
    finally:
        eng.stop()
