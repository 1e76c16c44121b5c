"""Failures in a retoucher's words: one plain sentence with one thing to do, and the technical
detail apart (Krita: the message box's "Show Details…"; GIMP: after a blank line).

Both hosts turn every exception they show through :func:`explain`, so "Connection refused",
HTTP codes, URLs and settings keys reach the user only as details. Errors the plug-in core
raises itself (``UserError``: a model not imported, nothing to enhance, ...) are already
written for the user and pass through as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import errors as E


@dataclass(frozen=True)
class Message:
    text: str            # what happened + what to do, plain words
    details: str = ""    # the technical message, for "Details" / a bug report

    def joined(self) -> str:
        """One string for hosts without a details area (GIMP's error message)."""
        return f"{self.text}\n\nDetails: {self.details}" if self.details and self.details != self.text else self.text


ENGINE_MISSING = ("The EnhanceLayer engine is not installed for this user. Run `python3 install.py` "
                  "in the EnhanceLayer folder, then try again.")
ENGINE_WONT_START = ("The EnhanceLayer engine did not start. Try again; if it keeps failing, run "
                     "`python3 install.py` in the EnhanceLayer folder again.")
SERVICE_DOWN = ("The EnhanceLayer engine is not running, and GIMP from Flatpak cannot start it. Run "
                "`systemctl --user start enhancelayer` (or log out and in again), then try again.")
ENGINE_GONE = "The EnhanceLayer engine stopped and could not be restarted. Try again in a moment."
REMOTE_GONE = "The remote EnhanceLayer engine does not answer. Check that it is running and that the URL is right."
TOKEN = "The EnhanceLayer engine refused the access token. Copy the token again from the engine's machine."
FORBIDDEN = "The EnhanceLayer engine refused this connection. Use the engine URL exactly as the engine printed it."
TOO_LARGE = "The selection is too large for the engine. Select a smaller area, or enlarge in parts."
OUT_OF_MEMORY = ("The computer ran out of memory, even working in the smallest pieces. Close other programs "
                 "or select a smaller area.")
NOT_IMPORTED = ("This model is not imported yet. Run `python3 install.py` in the EnhanceLayer folder "
                "(it imports the models), then try again.")
UNKNOWN_MODEL = "The engine does not have this model. Pick another one from the list."
NEEDS_SELECTION = ("This repairs the selected area: select the tear, hole or stain first (a little beyond its "
                   "edges), then try again.")
NEEDS_HINTS = ("Colorize needs your colour strokes: paint a few strokes of colour on a new layer, choose it "
               "as “Colour hints”, then try again.")
BUSY = "The engine is busy with other work. Try again when it is done."
FAILED = "The enhancement failed. Try again; if it fails again, try another model or a smaller area."
BUG = "Something went wrong inside EnhanceLayer. Please report it with the details."
CERTIFICATE = ("The studio engine's certificate is not the one saved in the engine settings. If the engine "
               "was set up again, paste its new fingerprint there; if not, ask whoever runs it before going on.")


def explain(e: BaseException, remote: bool = False) -> Message:
    """The message for ``e``; ``remote``: the engine is on another machine (not ours to start)."""
    detail = str(e) or type(e).__name__
    if isinstance(e, E.UserError):
        return Message(detail)
    table: tuple[tuple[type, str], ...] = (
        (E.EngineNotInstalled, ENGINE_MISSING), (E.EngineNotStartable, SERVICE_DOWN),
        (E.EngineStartFailed, ENGINE_WONT_START),
        (E.EngineNotRunning, ENGINE_WONT_START), (E.TokenRejected, TOKEN), (E.Forbidden, FORBIDDEN),
        (E.TooLarge, TOO_LARGE), (E.OutOfMemory, OUT_OF_MEMORY), (E.ModelNotInstalled, NOT_IMPORTED),
        (E.UnknownModel, UNKNOWN_MODEL), (E.Busy, BUSY), (E.JobFailed, FAILED), (E.BadRequest, BUG),
        (E.CertificateChanged, CERTIFICATE),
    )
    if isinstance(e, E.EngineUnreachable):        # EngineStopped too: after the silent restart
        return Message(REMOTE_GONE if remote else ENGINE_GONE, detail)
    for cls, text in table:
        if isinstance(e, cls):
            return Message(text, detail)
    if isinstance(e, E.EngineError):
        return Message(FAILED, detail)
    return Message(BUG, f"{type(e).__name__}: {detail}")
