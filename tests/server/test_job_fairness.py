"""The job manager in-process (a narrow piece, with a runner that only records the order):
round-robin between clients, per-client limits, results kept until confirmed."""
from __future__ import annotations

import threading
import time

import pytest

from engine.server import jobs as J


def _manager(order: list[str], gate: threading.Event, **kw) -> J.JobManager:
    def runner(job: J.Job, progress) -> list:
        gate.wait(10)
        order.append(job.payload)
        return [b"x" * 10]

    return J.JobManager(runner, **kw)


def _wait_all(m: J.JobManager, n: int) -> None:
    t0 = time.monotonic()
    while sum(1 for j in m.list() if j["state"] == "done") < n:
        assert time.monotonic() - t0 < 10
        time.sleep(0.01)


def test_a_second_client_is_not_stuck_behind_the_first():
    order: list[str] = []
    gate = threading.Event()
    m = _manager(order, gate, max_bytes=1 << 20)
    for i in range(6):
        m.reserve(1, "alice")
        m.submit(model="m", device="cpu", reserved=1, payload=f"a{i}", estimate_s=None, client="alice")
    time.sleep(0.1)                        # a0 is running (held by the gate), a1..a5 queued
    for i in range(2):
        m.reserve(1, "bob")
        m.submit(model="m", device="cpu", reserved=1, payload=f"b{i}", estimate_s=None, client="bob")
    gate.set()
    _wait_all(m, 8)
    m.close()
    assert order[:5] == ["a0", "b0", "a1", "b1", "a2"], order      # FIFO would run b0 7th


def test_one_client_cannot_take_every_slot_or_byte():
    gate = threading.Event()
    m = _manager([], gate, max_bytes=1000, max_jobs=8)         # 3/4 each: 6 slots, 750 bytes
    for i in range(6):
        m.reserve(10, "alice")
        m.submit(model="m", device="cpu", reserved=10, payload=i, estimate_s=None, client="alice")
    with pytest.raises(J.Busy, match="6 jobs"):
        m.reserve(10, "alice")
    m.reserve(10, "bob")                                       # bob still gets in
    with pytest.raises(J.Busy, match="one client may hold"):
        m.reserve(800, "bob")
    gate.set()
    m.close()


def test_a_sent_result_stays_until_confirmed_or_its_grace(monkeypatch):
    gate = threading.Event()
    gate.set()
    m = _manager([], gate, max_bytes=1 << 20)
    m.reserve(10)
    job = m.submit(model="m", device="cpu", reserved=10, payload="p", estimate_s=None)
    _wait_all(m, 1)
    m.fetched(job.id)                        # sent completely (perhaps not received)
    assert m.take_result(job.id) is not None
    monkeypatch.setattr(J, "SENT_GRACE", 0.0)
    m.sweep()
    assert m.take_result(job.id) is None and m.reserved() == 0
    m.close()


def test_memory_pressure_drops_sent_results_first():
    gate = threading.Event()
    gate.set()
    m = _manager([], gate, max_bytes=100, per_client=1.0)
    m.reserve(10)
    sent = m.submit(model="m", device="cpu", reserved=10, payload="s", estimate_s=None)
    m.reserve(10)
    kept = m.submit(model="m", device="cpu", reserved=10, payload="k", estimate_s=None)
    _wait_all(m, 2)
    m.fetched(sent.id)
    m.reserve(85)                            # fits only once the sent result is dropped
    assert m.take_result(sent.id) is None and m.take_result(kept.id) is not None
    m.close()
