"""The loaded-model cache is bounded (issue 17: an engine that served every model kept them all):
least recently used models are dropped; a cache hit keeps a model. A narrow unit test of the
cache with stand-in loaders (no model file is read)."""
from __future__ import annotations

from engine.models import backends as B


def test_cache_keeps_at_most_max_loaded_and_drops_the_least_recently_used(monkeypatch):
    monkeypatch.setattr(B, "_cache", B.OrderedDict())
    made: list[int] = []

    def load(i: int):
        return B._cached((f"m{i}", "cpu", ""), lambda: made.append(i) or object())

    first = load(0)
    for i in range(1, B.MAX_LOADED):
        load(i)
    assert load(0) is first and made == list(range(B.MAX_LOADED))      # a hit: not made again
    load(B.MAX_LOADED)                                                # one more: m1 is the oldest now
    assert len(B._cache) == B.MAX_LOADED
    assert ("m1", "cpu", "") not in B._cache and ("m0", "cpu", "") in B._cache
    load(1)
    assert made[-1] == 1                                              # dropped, so made again
