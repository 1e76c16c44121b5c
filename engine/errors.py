"""Errors the user can act on.

Every error that reaches the CLI or the HTTP API is an ``EnhanceError``: its message is
one line that says what happened and what to do. Anything else is a bug.
"""
from __future__ import annotations


class EnhanceError(Exception):
    """A problem the user can fix (bad input, missing model, ...). CLI exit code 2."""

    exit_code = 2
    http_status = 400


class UnknownModel(EnhanceError):
    http_status = 404


class ModelNotInstalled(EnhanceError):
    http_status = 409


class BadInput(EnhanceError):
    http_status = 400


class TooLarge(EnhanceError):
    http_status = 413


class WeightsTampered(EnhanceError):
    """A converted weight file does not match the sha256 in its manifest."""

    http_status = 500


class OutOfMemory(EnhanceError):
    """Raised by a backend when a tile does not fit; the tiler reacts by halving the tile."""

    http_status = 507


class Cancelled(EnhanceError):
    http_status = 409


class CannotWrite(EnhanceError):
    """An output cannot be written for a reason of the user's disk (full, read-only, no
    permission, a file in the way): their environment, not an engine bug, so exit code 2."""

    http_status = 507
