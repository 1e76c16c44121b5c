"""A bounded schemathesis run over the served OpenAPI schema against the real server on
127.0.0.1: whatever it sends, never a 5xx (and every answer is quick)."""
from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from .conftest import start_engine

MAX_EXAMPLES = 20           # per operation and mode: 7 operations x 2 modes -> at most 280 cases


@pytest.fixture(scope="module")
def fuzz_engine(tmp_path_factory):
    eng = start_engine(tmp_path_factory.mktemp("fuzz") / "home", args=("--max-pixels", "250000"))
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_engine):
    st, _h, body = fuzz_engine.raw("GET", "/openapi.json")
    assert st == 200
    raw = json.loads(body)
    paths = {"/v1/health", "/v1/models", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result"}
    assert paths <= set(raw["paths"])
    assert "application/octet-stream" in raw["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert "channel_order" in raw["components"]["schemas"]["JobHeader"]["properties"]
    schema = schemathesis.openapi.from_dict(raw)
    schema.config.update(base_url=fuzz_engine.url)
    return schema


def _ops(schema):
    for r in schema.get_all_operations():
        yield r.ok()


def _fuzz(op, mode, headers: dict, statuses: dict):
    """The hypothesis test for one operation (a function per operation: no loop variable in a closure)."""
    label = op.label

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        resp = case.call(headers=headers, timeout=20)
        statuses.setdefault(label, set()).add(resp.status_code)
        assert resp.status_code < 500, (label, resp.status_code, resp.text[:300])
        assert float(getattr(resp.elapsed, "total_seconds", lambda: resp.elapsed)()) < 10
        case.validate_response(resp, checks=[not_a_server_error])
    return run


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema, fuzz_engine, mode):
    """Positive and negative (schema-violating) cases for every operation, with a valid token.
    (schemathesis' own pytest plug-in does not load under pytest 9; hypothesis drives it here.)"""
    assert fuzz_engine.url.startswith("http://127.0.0.1:")         # loopback only
    headers = {"Authorization": f"Bearer {fuzz_engine.token}"}
    statuses: dict = {}
    for op in _ops(api_schema):
        run = _fuzz(op, mode, headers, statuses)
        try:
            run()
        except Unsatisfiable:
            assert mode == schemathesis.GenerationMode.NEGATIVE     # nothing to negate (no parameters)
    print({k: sorted(v) for k, v in statuses.items()})
    assert len(statuses) >= (6 if mode == schemathesis.GenerationMode.POSITIVE else 3), statuses
    assert fuzz_engine.raw("GET", "/v1/health", auth=False)[0] == 200      # still up


def _frame_strategy():
    """A plausible header (random valid values), then 0-2 fields replaced by junk or removed."""
    from hypothesis import strategies as st
    junk = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                     st.text(max_size=8), st.lists(st.text(max_size=6), max_size=3), st.just("identity"))
    base = st.fixed_dictionaries({
        "model": st.sampled_from(["identity", "identity", "identity", "photo-x2", "nope", "user:x"]),
        "width": st.integers(1, 48), "height": st.integers(1, 48), "channels": st.integers(1, 4),
        "dtype": st.sampled_from(["u8", "u16", "f32"]),
    }, optional={
        "channel_order": st.sampled_from(["RGBA", "BGRA"]), "strength": st.floats(0, 100),
        "grain": st.none() | st.floats(0, 100), "keep_color": st.booleans(),
        "scale": st.sampled_from([None, 1, 1.0]), "mask": st.booleans(), "feather": st.floats(0, 50),
        "review": st.booleans(), "protect": st.sampled_from([[], ["faces"], ["text", "faces"]]),
        "tile": st.none() | st.integers(16, 300),
    })
    names = ["model", "width", "height", "channels", "dtype", "channel_order", "strength", "grain", "keep_color",
             "scale", "mask", "feather", "review", "protect", "tile", "extra"]
    mutations = st.lists(st.tuples(st.sampled_from(names), st.booleans(), junk), max_size=2)

    def apply(t):
        hdr, muts, delta, exact = t
        hdr = dict(hdr)
        for name, drop, value in muts:
            if drop:
                hdr.pop(name, None)
            else:
                hdr[name] = value
        return hdr, delta, exact
    return st.tuples(base, mutations, st.integers(-3, 3), st.booleans()).map(apply)


def test_structured_frame_fuzz_never_5xx(fuzz_engine):
    """Frames with plausible-but-wrong JSON headers and payloads off by a few bytes."""
    import struct

    from hypothesis import given as _given
    seen: set = set()

    @_given(_frame_strategy())
    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(t):
        hdr, delta, exact = t
        try:
            need = int(hdr.get("width", 0)) * int(hdr.get("height", 0)) * int(hdr.get("channels", 0)) * \
                {"u8": 1, "u16": 2, "f32": 4}.get(hdr.get("dtype"), 1)
            need += int(hdr.get("width", 0)) * int(hdr.get("height", 0)) if hdr.get("mask") is True else 0
        except (TypeError, ValueError, OverflowError):
            need = 7
        need = max(0, min(need, 600 * 600 * 16)) + (0 if exact else delta)
        h = json.dumps(hdr).encode()
        body = struct.pack(">I", len(h)) + h + bytes(max(0, need))
        st, _hd, b = fuzz_engine.raw("POST", "/v1/jobs", body=body)
        seen.add(st)
        assert st < 500, (hdr, st, b[:300])
        if st == 202:
            jid = json.loads(b)["id"]
            fuzz_engine.raw("DELETE", f"/v1/jobs/{jid}")
    run()
    assert {202, 400, 404, 422} <= seen, seen
