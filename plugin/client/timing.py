"""Time in a retoucher's words: the estimate shown before a run, the ETA during one.

The engine publishes, per model row, ``ms_per_mp``: what it expects one input megapixel to
cost on this machine's default device (measured by its own jobs, see engine/speed.py), with
``speed_basis`` saying how sure it is. Both hosts turn that into the same sentence next to the
Enhance button, so nobody starts a 4x photo model on a CPU without knowing it takes minutes.
"""
from __future__ import annotations

from typing import Any, Optional

from .output import NO_SELECTION_NOTE

Row = dict[str, Any]

SLOW_S = 60.0           # beyond this the estimate suggests something faster
FASTER_BY = 3.0         # a model counts as "faster" at this ratio or more


def ms_per_mp(row: Row) -> Optional[float]:
    for key in ("ms_per_mp", "ms_per_mp_cpu"):     # an older engine has only the catalog figure
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
            return float(v)
    return None


def estimate_seconds(row: Row, width: int, height: int) -> Optional[float]:
    """Seconds the engine expects for a ``width`` x ``height`` input (context included)."""
    ms = ms_per_mp(row)
    return None if ms is None else ms * max(0, width) * max(0, height) / 1e6 / 1000.0


def duration(seconds: float) -> str:
    """"a few seconds", "about 40 s", "about 3 min", "about 1 h 20 min"."""
    if seconds < 5:
        return "a few seconds"
    if seconds < 90:
        return f"about {int(round(seconds / 5.0) * 5) or 5} s"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def estimate_text(catalog: dict, row: Optional[Row], width: int, height: int, siblings: tuple = ()) -> str:
    """The sentence shown before a run, e.g. "Takes about 3 min here. A GPU would be much
    faster, or try “4x, fast” (about 10 s)." "here" once the engine measured this machine;
    before that the catalog's time, said to be a 2-core CPU's. ``siblings``: the other rows of
    the same purpose, searched for a much faster one of the same scale."""
    if row is None or width <= 0 or height <= 0:
        return ""
    sec = estimate_seconds(row, width, height)
    if sec is None:
        return "No time estimate for this model yet."
    basis = row.get("speed_basis")
    where = "here" if basis in ("measured", "calibrated") else "on a 2-core CPU"   # catalog: not yet measured
    text = f"Takes {duration(sec)} {where}."
    if sec >= SLOW_S:
        tips = []
        engine = catalog.get("engine") if isinstance(catalog, dict) else None
        if not (isinstance(engine, dict) and engine.get("gpu")):
            tips.append("a GPU would be much faster")
        fast = _faster(row, width, height, siblings, sec)
        if fast:
            tips.append(fast)
        if tips:
            joined = ", or ".join(tips)
            text += " " + joined[0].upper() + joined[1:] + "."
    return text


def region_estimate(catalog: dict, row: Optional[Row], region: Optional[tuple[int, int]], whole_layer: bool,
                    siblings: tuple = ()) -> str:
    """The line both dialogs show for the region the host would send (``(w, h)``, margin
    included): :func:`estimate_text`, after the no-selection note when nothing is selected."""
    if row is None or region is None:
        return ""
    text = estimate_text(catalog, row, region[0], region[1], siblings)
    return f"{NO_SELECTION_NOTE} {text}" if whole_layer else text


def _faster(row: Row, width: int, height: int, siblings: tuple, sec: float) -> str:
    best: Optional[tuple[float, Row]] = None
    for other in siblings:
        same = other.get("id") == row.get("id")
        if same or other.get("installed") is False or other.get("scale") != row.get("scale"):
            continue
        s = estimate_seconds(other, width, height)
        if s is not None and s * FASTER_BY <= sec and (best is None or s < best[0]):
            best = (s, other)
    if best is None:
        return ""
    label = str(best[1].get("label") or best[1].get("title") or best[1]["id"])
    return f"try “{label}” ({duration(best[0])})"


def eta_text(message: str, eta: Any, progress: float) -> str:
    """The engine's progress message with the time left, once the first tile has measured the
    speed (before that the ETA is only the catalog's guess, so it is left out)."""
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or eta < 0 or progress <= 0.0 or progress >= 1.0:
        return message
    left = "a few seconds left" if eta < 5 else f"{duration(eta)} left"
    return f"{message} — {left}" if message else left
