"""EnhanceLayer engine client: one stdlib-only package shared by the Krita and GIMP plug-ins.

install.py copies this folder into each host's plug-in folder as ``enhancelayer_client``;
it uses relative imports only and no third-party modules (Python 3.10-3.13).
See docs/api.md for the HTTP API and the full client reference.
"""
from .client import API, NOT_INSTALLED, OOM_MESSAGE, EngineClient, Result
from .errors import (BadRequest, Busy, Cancelled, EngineError, EngineNotInstalled, EngineNotRunning,
                     EngineStartFailed, EngineStopped, EngineUnreachable, Forbidden, JobFailed,
                     JobNotFound, ModelNotInstalled, OutOfMemory, TokenRejected, TooLarge,
                     UnknownModel)
from .paths import config_dir

__version__ = "1"
__all__ = [
    "API", "NOT_INSTALLED", "OOM_MESSAGE", "EngineClient", "Result", "config_dir",
    "EngineError", "EngineNotInstalled", "EngineNotRunning", "EngineStartFailed", "EngineStopped",
    "EngineUnreachable", "TokenRejected", "Forbidden", "BadRequest", "TooLarge", "UnknownModel",
    "ModelNotInstalled", "Busy", "JobNotFound", "OutOfMemory", "JobFailed", "Cancelled",
]
