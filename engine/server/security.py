"""Who may talk to the engine: Host/Origin checks (CSRF and DNS-rebinding defence) and the
bearer token, as pure ASGI middleware that answers before any routing or body read.

Security model (docs/security.md): loopback + random port by default; a per-user token
(0600) on every request except ``GET /v1/health``, compared in constant time; requests with
a foreign ``Origin`` or ``Host`` are refused; no CORS headers at all.
"""
from __future__ import annotations

import hmac
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Optional

from fastapi.responses import JSONResponse

from engine.server import wire
from engine.server.tokens import OWNER

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024          # input: 8192 x 8192
OUTPUT_FACTOR = 4                              # output pixels may be 4x the input limit


@dataclass
class Settings:
    token: str
    clients: dict[str, str] = field(default_factory=dict)   # more tokens: name -> token (--tokens FILE)
    host: str = "127.0.0.1"
    port: int = 0
    allow_hosts: tuple[str, ...] = ()
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_queued_bytes: int = 4 * 1024 ** 3
    result_ttl: float = 600.0
    log_path: Optional[str] = None
    last_activity: float = field(default_factory=time.monotonic)
    in_flight: int = 0

    @property
    def max_out_pixels(self) -> int:
        return self.max_pixels * OUTPUT_FACTOR

    @property
    def max_body(self) -> int:
        return 4 + wire.MAX_HEADER + self.max_pixels * 4 * 4 + self.max_pixels

    def wildcard(self) -> bool:
        return self.host in ("", "0.0.0.0", "::")


# ---------------------------------------------------------------------- host/origin/auth guard
def _split_host(value: str) -> tuple[Optional[str], Optional[int]]:
    """'[::1]:8080' -> ('::1', 8080); 'localhost' -> ('localhost', None); junk -> (None, None)."""
    v = value.strip()
    if not v or any(c.isspace() for c in v) or "/" in v or "@" in v:
        return None, None
    try:
        u = urllib.parse.urlsplit("//" + v)
        port = u.port
        host = u.hostname
    except ValueError:
        return None, None
    return (host.lower() if host else None), port


def _host_ok(s: Settings, value: Optional[str]) -> bool:
    if value is None:
        return False
    host, port = _split_host(value)
    if host is None:
        return False
    names = set(LOOPBACK_NAMES) | {h.lower() for h in s.allow_hosts}
    if not s.wildcard():
        names.add(s.host.lower())
    elif not s.allow_hosts:
        return True                     # 0.0.0.0 without --allow-host: LAN names unknown; token guards
    if host not in names:
        return False
    if port is None:            # only a proxy in front (on its default port) leaves the port out
        return host in {h.lower() for h in s.allow_hosts}
    return port == s.port or s.wildcard()


def _origin_ok(s: Settings, value: str) -> bool:
    """Only the engine's own origin (its Swagger page) may send an Origin header."""
    try:
        u = urllib.parse.urlsplit(value.strip())
        host, port = (u.hostname or "").lower(), u.port
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or host not in (LOOPBACK_NAMES | ({s.host.lower()} - {""})):
        return False
    return port == s.port


def json_error(status: int, kind: str, detail: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": kind}, status_code=status, headers=headers)


class Guard:
    """Pure ASGI middleware: Host/Origin (403) and token (401) before any routing or body read."""

    def __init__(self, app: Any, settings: Settings):
        self.app = app
        self.fastapi = app              # the FastAPI app inside (its .state holds the job manager)
        self.s = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return                      # no websockets here
        self.s.last_activity = time.monotonic()
        raw: dict[str, list[str]] = {}
        for k, v in scope.get("headers") or []:
            raw.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
        resp, client = self._check(scope, raw)
        if resp is not None:
            return await resp(scope, receive, send)
        scope["enhancelayer.client"] = client
        self.s.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.s.in_flight -= 1
            self.s.last_activity = time.monotonic()

    def _check(self, scope, h: dict[str, list[str]]) -> tuple[Optional[JSONResponse], Optional[str]]:
        """(the refusal, or None; the client's name, None for the token-free health call)."""
        hosts = h.get("host", [])
        if len(hosts) != 1 or not _host_ok(self.s, hosts[0]):
            return json_error(403, "forbidden_host", "Host header not allowed: use the engine's URL "
                               "(127.0.0.1) or start it with --allow-host NAME"), None
        origins = h.get("origin", [])
        if len(origins) > 1 or (origins and not _origin_ok(self.s, origins[0])):
            return json_error(403, "forbidden_origin", "requests from web pages are refused "
                               "(foreign Origin header)"), None
        path = scope.get("path", "")
        if path == "/v1/health" and scope.get("method") in ("GET", "HEAD"):
            return None, None
        client = self._client(h)
        if client is None:
            return json_error(401, "unauthorized", "missing or wrong token (Authorization: Bearer <token>)",
                               {"WWW-Authenticate": 'Bearer realm="enhancelayer"'}), None
        return None, client

    def _client(self, h: dict[str, list[str]]) -> Optional[str]:
        """The name of the client whose token the request carries ("owner" for the engine's own
        token), None for no or a wrong token. Every token is compared, in constant time, so the
        answer's timing does not tell which one nearly matched."""
        auths = h.get("authorization", [])
        given = b""
        if len(auths) == 1:
            scheme, _, cred = auths[0].strip().partition(" ")
            if scheme.lower() == "bearer":
                given = cred.strip().encode("latin-1")      # the header's own bytes, lossless
        found = None
        for name, tok in ((OWNER, self.s.token), *self.s.clients.items()):
            if hmac.compare_digest(given, tok.encode("utf-8")) and given and found is None:
                found = name
        return found


