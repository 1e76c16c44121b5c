"""What a retoucher wants to do: the first choice of both plug-ins' dialogs.

A *purpose* is a job in a retoucher's words ("Reduce noise", "Repair dust & scratches"),
with one plain sentence saying when to reach for it. Every task names the purpose it serves
(``TaskInfo.purpose``) together with a short choice label and a one-sentence description of
its own; the dialogs then show purpose -> model -> options, all from ``GET /v1/models``, so
Krita and GIMP list the same words and a new task appears in both without editing either.

A task with no purpose (``identity``, plumbing for tests) is not offered in the dialogs; the
CLI and scripts still reach it by id. User models serve :data:`CUSTOM`, which the dialogs
keep behind "Advanced".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Purpose:
    id: str
    title: str
    description: str
    advanced: bool = False          # the dialogs show it only under "Advanced"


CUSTOM = "custom"

# In the order the dialogs list them.
PURPOSES: tuple[Purpose, ...] = (
    Purpose("enlarge", "Enlarge",
            "Make the selection bigger with new detail: 2x is fast; 4x best detail is slow on a CPU, "
            "4x fast and faithful is quick."),
    Purpose("denoise", "Reduce noise",
            "Remove grain and colour speckles from a low-light or high-ISO shot while keeping edges."),
    Purpose("jpeg", "Remove JPEG blocks",
            "Clean the blocky squares and halos of a heavily compressed photo, at its own size."),
    Purpose("sharpen", "Sharpen / fix blur",
            "Bring back crispness lost to slightly missed focus or a soft lens, or undo the smear of a camera "
            "or subject that moved."),
    Purpose("dust", "Repair dust & scratches",
            "Find specks, hairs and thin scratches on a scanned print or slide and fill them in."),
    Purpose("restore", "Restore old photo",
            "A scanned print in one go: dust & scratches, faded colour and noise (sharpness if you tick it)."),
    Purpose("damage", "Repair tears, holes & stains",
            "Select a tear, a hole or a missing corner of an old print: it is rebuilt from the photo around it. "
            "Or select a water stain: its brown film is lifted and the picture under it kept."),
    Purpose("old-photo", "Restore faded colour",
            "Bring back the colour and contrast of a faded, yellowed or colour-cast print."),
    Purpose("colorize", "Colorize",
            "Give a black-and-white photo colour: paint a few colour strokes on a separate layer; "
            "they spread along the photo's edges."),
    Purpose("descreen", "Remove print dots (halftone)",
            "Scans of magazines, newspapers and printed photos: remove the dot pattern of the print."),
    Purpose("illustration", "Illustration / anime",
            "Enlarge or clean drawings, line art, anime and cartoons (not photographs)."),
    Purpose(CUSTOM, "Your own models",
            "Models you put in the engine's user models folder (see the README).", advanced=True),
)

_BY_ID = {p.id: p for p in PURPOSES}


def get(purpose_id: str) -> Purpose:
    """The purpose with this id; KeyError for a task that names one not declared here (a bug
    the unit tests catch)."""
    return _BY_ID[purpose_id]


def publish() -> list[dict[str, Any]]:
    """The ``purposes`` list of ``GET /v1/models``, in dialog order."""
    return [{"id": p.id, "title": p.title, "description": p.description, "advanced": p.advanced}
            for p in PURPOSES]
