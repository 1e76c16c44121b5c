"""How fast each task runs on THIS machine, for the time shown before a run.

The catalog's ``ms_per_mp_cpu`` figures were measured on one 2-core CPU; a retoucher's laptop,
workstation or GPU is faster or slower. The engine therefore records what its own jobs took
(milliseconds per input megapixel, model loading left out) and publishes, per task, the best
estimate it has for its default device:

- ``measured``: this task ran here before (an average that follows recent runs);
- ``calibrated``: other tasks ran here; the catalog figure times how much faster or slower
  this machine was on those (the median ratio), since machines differ mostly by a factor;
- ``catalog``: nothing ran here yet; the catalog figure as it is.

The book is a small JSON file in the cache folder, so estimates survive engine restarts; it is
rewritten atomically and a damaged file only means "nothing measured yet". Jobs under
:data:`MIN_MP` are not recorded: their time is mostly fixed cost, not per-pixel work.
"""
from __future__ import annotations

import json
import statistics
import threading
from pathlib import Path
from typing import Any, Optional

from engine.paths import write_replacing

FILE = "speed.json"
MIN_MP = 0.05           # smaller jobs say little about per-pixel cost
WEIGHT = 0.5            # weight of the newest run in a task's average
FACTOR_RANGE = (0.02, 50.0)   # a machine-wide ratio outside this is a measurement accident


def _key(model: str, device: str) -> str:
    return f"{model}@{device or 'auto'}"


class SpeedBook:
    """Measured ms per input megapixel, by (task id, requested device)."""

    def __init__(self, path: Optional[Path]):
        self.path = path
        self._lock = threading.Lock()
        self._rows: Optional[dict[str, dict[str, float]]] = None

    def _load(self) -> dict[str, dict[str, float]]:
        if self._rows is None:
            rows: dict[str, dict[str, float]] = {}
            try:
                body = json.loads(self.path.read_text(encoding="utf-8")) if self.path else {}
            except (OSError, ValueError):
                body = {}
            for k, v in (body.items() if isinstance(body, dict) else ()):
                if isinstance(v, dict) and _positive(v.get("ms_per_mp")) and _positive(v.get("catalog"), zero=True):
                    rows[str(k)] = {"ms_per_mp": float(v["ms_per_mp"]), "catalog": float(v["catalog"]),
                                    "runs": float(v.get("runs") or 1)}
            self._rows = rows
        return self._rows

    def record(self, model: str, device: str, megapixels: float, seconds: float, catalog_ms: float) -> None:
        """Add one finished job (``seconds`` of compute for ``megapixels`` of input)."""
        if megapixels < MIN_MP or not _positive(seconds):
            return
        ms = 1000.0 * seconds / megapixels
        with self._lock:
            rows = self._load()
            k = _key(model, device)
            old = rows.get(k)
            if old is None:
                rows[k] = {"ms_per_mp": ms, "catalog": float(catalog_ms), "runs": 1.0}
            else:
                old["ms_per_mp"] = (1.0 - WEIGHT) * old["ms_per_mp"] + WEIGHT * ms
                old["catalog"] = float(catalog_ms)
                old["runs"] += 1.0
            self._save(rows)

    def _save(self, rows: dict[str, dict[str, float]]) -> None:
        if self.path is None:
            return
        try:
            write_replacing(self.path, json.dumps(rows, indent=1, sort_keys=True))
        except OSError:
            pass                     # a read-only cache only costs the estimate its calibration

    def factor(self, device: str = "auto") -> Optional[float]:
        """This machine's speed relative to the catalog's (2.0 = twice as slow), from every task
        measured on ``device``; None when none was."""
        suffix = "@" + (device or "auto")
        with self._lock:
            ratios = [r["ms_per_mp"] / r["catalog"] for k, r in self._load().items()
                      if k.endswith(suffix) and r["catalog"] > 0]
        if not ratios:
            return None
        lo, hi = FACTOR_RANGE
        return min(hi, max(lo, statistics.median(ratios)))

    def estimate(self, model: str, catalog_ms: float, device: str = "auto") -> tuple[float, str]:
        """(ms per input megapixel, basis): see the module docstring for the three bases."""
        with self._lock:
            row = self._load().get(_key(model, device))
        if row is not None:
            return row["ms_per_mp"], "measured"
        f = self.factor(device)
        if f is not None and catalog_ms > 0:
            return catalog_ms * f, "calibrated"
        return catalog_ms, "catalog"


def _positive(v: Any, zero: bool = False) -> bool:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    return ok and (v >= 0 if zero else v > 0) and v == v and v != float("inf")


_book: Optional[SpeedBook] = None
_book_lock = threading.Lock()


def book() -> SpeedBook:
    """The engine's book, in its cache folder (``engine.paths.cache_dir``; a new one when that
    folder changes, as it does between tests that set ``ENHANCELAYER_HOME``)."""
    global _book
    from engine import paths
    path = paths.cache_dir() / FILE
    with _book_lock:
        if _book is None or _book.path != path:
            _book = SpeedBook(path)
        return _book
