"""EnhanceLayer engine client and plug-in core: one stdlib-only package shared by the Krita and
GIMP plug-ins.

install.py copies this folder into each host's plug-in folder as ``enhancelayer_client``;
it uses relative imports only and no third-party modules (Python 3.10-3.13). Two halves:

- the engine client: ``client`` (``EngineClient``), ``errors``, ``paths``, ``wire``;
  see docs/api.md for the HTTP API and the full client reference;
- the plug-in core, everything of a plug-in that is not a call into Krita's or GIMP's API:
  ``catalog`` (model rows, the margin rule, purposes and model choices in plain words, the
  catalog snapshot), ``timing`` (the time estimate before a run, the ETA during), ``messages``
  (failures in plain words, the technical detail apart), ``options``
  (which option widgets, stored values, procedure arguments, submit keywords), ``geometry``
  (selection box + margin, crops), ``pixels`` (sample sizes, mask products, half floats,
  sRGB transfer, review overlay), ``output`` (output modes, layer names, result pieces) and
  ``chain`` (a chain task such as "Restore old photo" run step by step, one layer each).
  Unit-tested without a host in tests/unit/test_plugin_core.py.
"""
from . import catalog, chain, geometry, messages, options, output, pixels, studio, timing
from .client import API, NOT_INSTALLED, OOM_MESSAGE, EngineClient, Result, is_remote, with_restart
from .errors import (
                     BadRequest,
                     Busy,
                     Cancelled,
                     CertificateChanged,
                     EngineError,
                     EngineNotInstalled,
                     EngineNotRunning,
                     EngineNotStartable,
                     EngineStartFailed,
                     EngineStopped,
                     EngineUnreachable,
                     Forbidden,
                     JobFailed,
                     JobNotFound,
                     ModelNotInstalled,
                     OutOfMemory,
                     TokenRejected,
                     TooLarge,
                     UnknownModel,
                     UserError,
)
from .paths import config_dir

__version__ = "1"
__all__ = [
    "API", "NOT_INSTALLED", "OOM_MESSAGE", "EngineClient", "Result", "config_dir", "is_remote", "with_restart",
    "EngineError", "EngineNotInstalled", "EngineNotRunning", "EngineNotStartable", "EngineStartFailed", "EngineStopped",
    "EngineUnreachable", "TokenRejected", "Forbidden", "BadRequest", "TooLarge", "UnknownModel",
    "ModelNotInstalled", "Busy", "JobNotFound", "OutOfMemory", "JobFailed", "Cancelled", "UserError",
    "CertificateChanged",
    "catalog", "chain", "geometry", "messages", "options", "output", "pixels", "studio", "timing",
]
