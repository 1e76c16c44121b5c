"""Full job cycles with a real model (photo-x2) through client + real server, compared with
calling the pipeline directly; progress, cancel within one tile, two clients, engine death."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from .conftest import elc


def _pixels(r) -> np.ndarray:
    dt = {"u8": np.uint8, "u16": "<u2", "f32": "<f4"}[r.dtype]
    return np.frombuffer(r.pixels, dtype=dt).reshape(r.height, r.width, r.channels)


def _direct(img, **kw):
    from engine.pipeline import EnhanceOptions, enhance
    return enhance(img, EnhanceOptions(**kw))


def test_photo_x2_matches_the_pipeline(model_engine, astronaut):
    img = np.ascontiguousarray(astronaut[120:216, 160:288])              # 128x96 crop of a real photo
    c = model_engine.client()
    r = c.enhance(img.tobytes(), 128, 96, 3, "u8", model="photo-x2", strength=60, scale=None)
    assert (r.width, r.height, r.channels, r.dtype) == (256, 192, 3, "u8")
    ref = _direct(img, model="photo-x2", strength=0.6).image
    diff = np.abs(_pixels(r).astype(int) - ref.astype(int)).max()
    assert diff <= 1, diff
    assert np.abs(_pixels(r).astype(int)[::2, ::2] - img.astype(int)).mean() < 12     # a 2x of the input


def test_krita_bgra_u16_with_mask_and_review(model_engine, coffee):
    """Krita hands B,G,R,A; the engine answers in the same order, same depth, mask applied."""
    rgb = coffee[100:164, 200:280].astype(np.uint16) * 257
    h, w = rgb.shape[:2]
    alpha = np.full((h, w, 1), 65535, np.uint16)
    alpha[:8] = 30000
    rgba = np.concatenate([rgb, alpha], axis=2)
    bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).astype("<u2")
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2:] = 255
    c = model_engine.client()
    r = c.enhance(bgra.tobytes(), w, h, 4, "u16", channel_order="BGRA", model="photo-x2", strength=80,
                  scale=1, mask=mask.tobytes(), feather=2, review=True, keep_color=True)
    assert (r.width, r.height, r.channels, r.dtype, r.channel_order) == (w, h, 4, "u16", "BGRA")
    got = _pixels(r)[..., [2, 1, 0, 3]]
    ref = _direct(rgba, model="photo-x2", strength=0.8, scale=1, mask=mask.astype(np.float32) / 255,
                  feather=2, review=True, keep_color=True)
    assert np.abs(got.astype(np.int64) - ref.image.astype(np.int64)).max() <= 257
    assert np.array_equal(got[..., 3], rgba[..., 3])                  # alpha untouched at 1x
    assert np.array_equal(got[:, :w // 2 - 8, :3], rgba[:, :w // 2 - 8, :3])   # outside the mask
    assert r.review is not None and (r.review_width, r.review_height) == (w, h)
    rv = np.frombuffer(r.review, np.uint8).reshape(h, w)
    assert np.abs(rv.astype(int) - np.rint(ref.review * 255).astype(int)).max() <= 1


def test_progress_moves(model_engine, chelsea):
    img = np.ascontiguousarray(chelsea[:192, :192])
    seen = []
    c = model_engine.client()
    r = c.enhance(img.tobytes(), 192, 192, 3, "u8", model="photo-x2", scale=1, tile=64,
                  progress=lambda f, m: seen.append((f, m)), poll=0.02)
    fr = [f for f, _m in seen]
    assert r.width == 192
    assert fr == sorted(fr) and fr[-1] == 1.0
    assert len({f for f in fr if 0 < f < 1}) >= 2, seen        # several distinct steps in between


def _big(astronaut) -> np.ndarray:
    return np.ascontiguousarray(np.tile(astronaut, (2, 2, 1))[:768, :768])


def test_cancel_stops_within_one_tile(model_engine, astronaut):
    img = _big(astronaut)
    c = model_engine.client()
    job = c.submit(img.tobytes(), 768, 768, 3, "u8", model="photo-x2", scale=1, tile=64)
    deadline = time.monotonic() + 120
    while True:
        st = c.status(job)
        if st["tiles_done"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert st["state"] == "running" and st["tiles_total"] > 20
    at_cancel = c.cancel(job)["tiles_done"]
    t0 = time.monotonic()
    while c.status(job)["state"] == "running":
        assert time.monotonic() - t0 < 30
        time.sleep(0.02)
    end = c.status(job)
    assert end["state"] == "cancelled"
    assert end["tiles_done"] <= at_cancel + 1, (at_cancel, end)
    with pytest.raises(elc.Cancelled):
        c.wait(job)


def test_progress_callback_cancels(model_engine, astronaut):
    img = _big(astronaut)
    c = model_engine.client()
    calls = []

    def cb(f, msg):
        calls.append(f)
        return f == 0.0                       # cancel at the first real progress
    t0 = time.monotonic()
    with pytest.raises(elc.Cancelled):
        c.enhance(img.tobytes(), 768, 768, 3, "u8", model="photo-x2", scale=1, tile=64, progress=cb, poll=0.05)
    assert time.monotonic() - t0 < 60
    assert c.jobs()[-1]["state"] == "cancelled"


def test_two_clients_both_complete(model_engine, astronaut, coffee):
    crops = [np.ascontiguousarray(astronaut[:96, :112]), np.ascontiguousarray(coffee[50:146, 100:212])]
    results: dict = {}

    def work(i):
        c = model_engine.client()             # separate client, separate connections
        try:
            results[i] = c.enhance(crops[i].tobytes(), 112, 96, 3, "u8", model="photo-x2", scale=None,
                                   strength=100)
        except Exception as e:                # noqa: BLE001 - reported below
            results[i] = e
    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(180)
    for i in range(2):
        r = results[i]
        assert isinstance(r, elc.Result), r
        ref = _direct(crops[i], model="photo-x2", strength=1.0).image
        assert np.abs(_pixels(r).astype(int) - ref.astype(int)).max() <= 1


def test_engine_killed_mid_job_is_reported_within_seconds(model_engine, astronaut):
    img = _big(astronaut)
    c = model_engine.client()
    job = c.submit(img.tobytes(), 768, 768, 3, "u8", model="photo-x2", scale=1, tile=64)
    err = {}

    def waiter():
        try:
            c.wait(job, poll=0.1)
        except elc.EngineError as e:
            err["e"] = e
            err["t"] = time.monotonic()
    t = threading.Thread(target=waiter)
    t.start()
    while c.status(job)["tiles_done"] < 1:
        time.sleep(0.05)
    os.kill(model_engine.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    t.join(30)
    assert isinstance(err.get("e"), elc.EngineStopped), err
    assert err["t"] - killed < 5
    msg = str(err["e"])
    assert "stopped during the job" in msg and "engine.log" in msg


def test_out_of_memory_maps_to_a_clear_message():
    """The worker turns an OutOfMemory from the pipeline into the agreed kind and message."""
    from engine.errors import OutOfMemory
    from engine.server.jobs import JobManager

    def runner(job, progress):
        raise OutOfMemory("tile 16 does not fit")
    jm = JobManager(runner, max_bytes=1 << 20)
    jm.reserve(10)
    job = jm.submit(model="photo-x2", device="test", reserved=10, payload=None, estimate_s=None)
    for _ in range(100):
        if job.state == "failed":
            break
        time.sleep(0.01)
    assert job.error["kind"] == "out_of_memory"
    assert "close other apps or choose a smaller selection" in job.error["message"]
    assert jm.reserved() == 0
    jm.close()


def test_second_job_queues_behind_the_first_with_an_eta(model_engine, astronaut):
    img = np.ascontiguousarray(astronaut[:256, :256])
    c = model_engine.client()
    a = c.submit(img.tobytes(), 256, 256, 3, "u8", model="photo-x2", scale=1, tile=64)
    b = c.submit(img.tobytes(), 256, 256, 3, "u8", model="photo-x2", scale=1, tile=64)
    d = c.submit(img.tobytes(), 256, 256, 3, "u8", model="photo-x2", scale=1, tile=64)
    st = c.status(b)
    assert st["state"] == "queued", st
    assert "queued behind 1" in st["message"]
    assert st["eta"] is not None and st["eta"] > 0
    assert c.cancel(d)["state"] == "cancelled"           # a queued job is cancelled at once
    with pytest.raises(elc.Cancelled):
        c.wait(d)
    ra, rb = c.wait(a), c.wait(b)
    assert ra.pixels == rb.pixels                       # same input, same answer
