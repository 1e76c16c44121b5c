"""uvicorn's HTTP/1.1 protocol with two defences it lacks: a deadline for a request's headers,
and a cap on idle connections per client address.

Why: without them anyone who can reach the port — no token needed — opens hundreds of
connections and sends nothing (or one header byte every few seconds), and the engine holds
them all forever (issue 17: 200 such connections all held after 10 s; one held ≥ 144 s).
Now a connection must deliver a complete request head within ``HEADER_TIMEOUT`` s of opening
(or of its previous response), and when one address holds more than ``MAX_IDLE_PER_CLIENT``
connections that are between requests, its oldest idle one is closed — never one that is
in the middle of a request, so a busy client's upload or download is not cut.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
MAX_IDLE_PER_CLIENT = 16

_open: dict[str, list[GuardedH11Protocol]] = {}      # client address -> its connections, oldest first


class GuardedH11Protocol(H11Protocol):
    """H11Protocol + header deadline + per-address idle cap (see the module docstring)."""

    _deadline: Optional[asyncio.TimerHandle] = None
    _addr: str = ""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._addr = str(self.client[0]) if self.client else ""
        mine = _open.setdefault(self._addr, [])
        mine.append(self)
        idle = [c for c in mine if c._idle()]
        for old in idle[:max(0, len(idle) - MAX_IDLE_PER_CLIENT)]:
            old._close()
        self._arm()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        mine = _open.get(self._addr, [])
        if self in mine:
            mine.remove(self)
        if not mine:
            _open.pop(self._addr, None)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self.cycle is not None:
            self._disarm()                     # a request head arrived in time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()                        # the next request's head has the same deadline

    # ------------------------------------------------------------------ helpers
    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(HEADER_TIMEOUT, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._idle():
            self._close()

    def _close(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()


def open_connections() -> int:
    """How many connections the engine holds now (for tests and the health report)."""
    return sum(len(v) for v in _open.values())
