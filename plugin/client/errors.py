"""Errors the plug-ins show to the retoucher as they are: each message says what to do.

Catch ``EngineError`` for all of them; ``Cancelled`` when the user pressed Cancel.
``UserError`` is apart: the plug-in core raises it, before any engine work, for what the user
must change first (a model that is not imported, an output mode that does not exist, ...).
"""
from __future__ import annotations


class EngineError(Exception):
    """Base class. ``status`` is the HTTP status when the engine answered, else None;
    ``kind`` the engine's error kind (e.g. "out_of_memory") when it said one."""

    def __init__(self, message: str, status: int | None = None, kind: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind

    def __str__(self) -> str:
        return self.message


class EngineNotInstalled(EngineError):
    """No launcher file: install.py has not run for this user."""


class EngineNotRunning(EngineError):
    """``local(start=False)`` found no running engine."""


class EngineNotStartable(EngineNotRunning):
    """Not running, and this host may not start it (a Flatpak sandbox): a per-user service must."""


class EngineStartFailed(EngineError):
    """The launcher ran but the engine did not become healthy in time."""


class EngineUnreachable(EngineError):
    """Connection refused / timed out / TLS failure (remote mode, or the engine went away).
    ``timed_out``: the engine did not answer in time (busy) rather than refusing."""

    timed_out = False


class CertificateChanged(EngineError):
    """The remote engine's TLS certificate is not the one pinned in the settings (a new
    certificate on the engine, or someone in between)."""


class EngineStopped(EngineUnreachable):
    """The engine process died or restarted while a job was running."""


class TokenRejected(EngineError):
    """401: wrong or missing token."""


class Forbidden(EngineError):
    """403: the engine refused this Host/Origin."""


class BadRequest(EngineError):
    """400/422: the engine could not use what the plug-in sent (a plug-in bug, usually)."""


class TooLarge(EngineError):
    """413: the image is over the engine's size limit."""


class UnknownModel(EngineError):
    """404 on a model id: the catalog has no such model."""


class ModelNotInstalled(EngineError):
    """409: the model is in the catalog but its weights are not imported."""


class Busy(EngineError):
    """429: too many pixels queued; try again when the current jobs are done."""


class JobNotFound(EngineError):
    """404 on a job id: unknown, already fetched, or expired."""


class OutOfMemory(EngineError):
    """The job failed for memory even at the smallest tile."""


class JobFailed(EngineError):
    """The job failed for another reason; the message is the engine's."""


class Cancelled(EngineError):
    """The job was cancelled (by the progress callback returning False, or ``cancel``)."""


class UserError(Exception):
    """Something the user must change before the plug-in can run (raised by the plug-in core,
    never by the engine); the hosts show the message as it is."""
