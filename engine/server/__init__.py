"""The engine's HTTP server, one module per job.

- ``security``: Host/Origin/token guard (ASGI middleware) and the server's ``Settings``;
- ``wire``: the binary frame format and the job header schema;
- ``jobs``: the job queue, progress, cancel, result hand-off;
- ``worker``: what one job does (frame -> task -> result parts);
- ``app``: the FastAPI routes;
- ``startup``: ``serve()``: token and discovery files, lock, logging, socket, idle exit.
"""
from __future__ import annotations

from engine.server.app import create_app
from engine.server.security import Settings
from engine.server.startup import load_token, serve

__all__ = ["create_app", "serve", "Settings", "load_token"]
