"""Which engine a plug-in talks to, the same in both hosts: "This computer" (the local engine,
started on demand) or "Studio engine" (a shared engine on another machine: its https URL, the
user's token and the engine's certificate fingerprint, or a CA file).

The hosts keep these four values where they keep settings (Krita: kritarc ``[enhancelayer]``;
GIMP: ``enhancelayer-engine.json`` in its profile, 0600, since it holds a token) and build
their settings panel from :data:`FIELDS`; the checks, the client and the words of "Test
connection" live here so both panels behave alike.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Optional

from . import errors as E
from .client import EngineClient, normalize_fingerprint

LOCAL, STUDIO = "local", "studio"
MODES = ((LOCAL, "This computer"), (STUDIO, "Studio engine"))
# (key, label, help) of the studio fields, in panel order
FIELDS = (
    ("url", "Engine URL", "https://host:port, as the engine printed it when it started"),
    ("token", "Access token", "your token from the engine's machine (the admin gives it to you)"),
    ("fingerprint", "Certificate fingerprint", "SHA256:AB:CD:... as `enhancelayer serve --init-tls` printed it"),
    ("cafile", "CA file (instead)", "a CA certificate file, when the engine has a certificate from your own CA"),
)


@dataclass
class EngineSettings:
    mode: str = LOCAL
    url: str = ""
    token: str = ""
    fingerprint: str = ""
    cafile: str = ""

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> EngineSettings:
        """From stored values (missing or odd ones: the defaults); a URL without a mode is a studio
        engine (settings written before the panel existed)."""
        def text(k: str) -> str:
            v = values.get(k)
            return v.strip() if isinstance(v, str) else ""
        mode = text("mode") or (STUDIO if text("url") else LOCAL)
        return cls(mode if mode in (LOCAL, STUDIO) else LOCAL, text("url"), text("token"), text("fingerprint"),
                   text("cafile"))

    def values(self) -> dict[str, str]:
        return {"mode": self.mode, "url": self.url, "token": self.token, "fingerprint": self.fingerprint,
                "cafile": self.cafile}

    def problems(self) -> list[str]:
        """What keeps these settings from working, in plain words ([] = fine)."""
        if self.mode == LOCAL:
            return []
        out = []
        u = urllib.parse.urlsplit(self.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            out.append("The engine URL must look like https://host:port.")
        elif u.scheme == "http":
            out.append("A studio engine needs https:// (the token and your pictures cross the network).")
        if not self.token:
            out.append("The access token is missing.")
        if self.fingerprint:
            try:
                normalize_fingerprint(self.fingerprint)
            except E.EngineError:
                out.append("The certificate fingerprint is not a SHA-256 fingerprint (SHA256:AB:CD:...).")
        elif not self.cafile and u.scheme == "https":
            out.append("Give the engine's certificate fingerprint (or a CA file), so nobody in between can "
                       "pose as the engine.")
        return out

    def client(self, start: bool = True, check: bool = True) -> EngineClient:
        """The client these settings describe (the one rule of both hosts: local engine, or the
        studio engine at its URL); UserError when they cannot work. ``check=False``: settings
        stored earlier (typed into kritarc, or the environment) are used as they are, as they
        were before the panels existed: there the URL decides, and none means this computer."""
        if self.mode == LOCAL or (not check and not self.url):
            return EngineClient.local(start=start)
        bad = self.problems() if check else []
        if bad:
            raise E.UserError(" ".join(bad))
        return EngineClient.remote(self.url, self.token, self.cafile or None,
                                   fingerprint=self.fingerprint or None)


def connection_words(result: dict) -> str:
    """One line for "Test connection" from EngineClient.test_connection()."""
    gpu = f"GPU ({result['gpu']})" if result.get("gpu") else "CPU"
    waiting = int(result.get("queued", 0))
    return (f"Connected in {result['latency_ms']:.0f} ms: engine {result.get('version', '?')} on the {gpu}, "
            f"{result.get('models', 0)} of {result.get('models_total', 0)} models ready, "
            f"{waiting} job{'s' if waiting != 1 else ''} waiting.")


def try_connection(settings: EngineSettings) -> tuple[bool, str, str]:
    """(ok, the line to show, details) for a settings panel's "Test connection"; never raises."""
    from .messages import explain

    try:
        return True, connection_words(settings.client(start=True).test_connection()), ""
    except E.UserError as e:
        return False, str(e), ""
    except E.EngineError as e:
        m = explain(e, remote=settings.mode == STUDIO)
        return False, m.text, m.details


def load_json(path: str) -> Optional[dict]:
    """A host's stored settings file ({} when there is none; None when it is unreadable)."""
    import json
    import os

    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def save_json(path: str, settings: EngineSettings) -> None:
    """Atomically, readable by this user alone (it holds a token)."""
    import json
    import os

    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(settings.values(), indent=1).encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
