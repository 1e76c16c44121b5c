"""Where a result goes and what it is called: output modes, layer names, the result's pieces.

One set of output-mode ids for both hosts (GIMP's older ``layer-masked`` / ``image`` map onto
them), one naming rule for the layers they add, and one way to cut a finished job's pixels,
review map and defect mask down to the box the host keeps (the margin was context only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .errors import UserError
from .geometry import Box, box_within, crop, scale_box
from .pixels import bytes_per_pixel, review_u8

if TYPE_CHECKING:
    from .client import Result

# A new layer masked to the selection | a new layer, no mask | a new document (GIMP: image).
OUTPUT_MODES = ("masked", "layer", "document")
DEFAULT_OUTPUT = "masked"
OUTPUT_TITLES = {"masked": "New layer, masked to the selection", "layer": "New layer",
                 "document": "New document"}
# Ids older GIMP plug-ins used, still understood where a stored value is read.
LEGACY_OUTPUT_MODES = {"layer-masked": "masked", "image": "document"}


def output_mode(value: str) -> str:
    """The output-mode id for ``value`` (an id, or a legacy one); UserError otherwise."""
    mode = LEGACY_OUTPUT_MODES.get(value, value)
    if mode not in OUTPUT_MODES:
        raise UserError(f"Unknown output mode '{value}': use one of {', '.join(OUTPUT_MODES)}.")
    return mode


def percent(value: Any) -> str:
    """60.0 -> "60", 12.5 -> "12.5"."""
    v = float(value)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def notice(info: dict[str, Any]) -> str:
    """The task's note when it flags it as worth a message box (``notice``: the result is not
    what the retoucher may expect - descreen found no screen, colorize was given a colour
    photo); "" otherwise. Krita's docker shows every note in its status line anyway."""
    note = str(info.get("note") or "").strip() if isinstance(info, dict) else ""
    return f"{note[:1].upper()}{note[1:]}." if note and info.get("notice") is True else ""


def layer_blend(row: dict[str, Any]) -> str:
    """The new layer's blend mode: "color" for a task whose result is colour on the original's
    brightness (colorize: the retoucher can regrade it as a colour layer), else "normal"."""
    return "color" if row.get("layer_blend") == "color" else "normal"


def layer_name(model: str, values: dict[str, Any]) -> str:
    """The enhanced layer's name: ``Enhanced · photo-x2 · 60%`` (no strength, no percent)."""
    strength = values.get("strength")
    return f"Enhanced · {model}" if strength is None else f"Enhanced · {model} · {percent(strength)}%"


def done_message(name: str, whole_layer: bool, note: str = "", steps: int = 0) -> str:
    """What the host says after a run: the new layer's name, and plainly when there was no
    selection, so the whole layer was enhanced (a retoucher who forgot to select must not
    have to discover that from the result); then what the task said of its result, if
    anything (descreen: "no halftone screen found: left as it is"). ``steps``: a chain's result,
    a layer group with one layer per step."""
    text = f"Added layer group “{name}” ({steps} steps, one layer each)." if steps else f"Added layer “{name}”."
    if whole_layer:
        text += " There was no selection, so the whole layer was enhanced."
    note = note.strip()
    return f"{text} {note[:1].upper()}{note[1:]}." if note else text


# Shown before a run when nothing is selected (both hosts' dialogs).
NO_SELECTION_NOTE = "Nothing is selected: the whole layer will be enhanced."
CANCELLED_MESSAGE = "Cancelled: nothing was added."
FAILED_MESSAGE = "Failed: nothing was added."


# The review layer, the same in both hosts: shown by default (the retoucher asked for it; the
# "Show the review layer" setting, Request.show_review, adds it hidden instead), at this opacity,
# its name saying what red means, or that nothing was flagged, so both layer panels carry the
# legend and nobody has to guess whether an empty-looking layer means "fine" or "broken".
REVIEW_VISIBLE = True
SHOW_REVIEW_LABEL = "Show the review layer"
SHOW_REVIEW_HELP = ("When a review map is asked for: add its layer visible (red = check here), "
                    "or hidden, to switch on when you want it")
REVIEW_OPACITY = 60                     # %
REVIEW_FLAG = 76     # heat 0.3 in u8 (0.3 x 255 = 76.5, which the engine rounds to even: 76); docs/review.md
REVIEW_LEGEND = "red = check here"
REVIEW_NOTHING = "nothing flagged"


def review_flagged(review: Optional[bytes]) -> bool:
    """Whether any pixel of a review map (u8) asks for a look."""
    return review is not None and any(v >= REVIEW_FLAG for v in review)


def review_name(model: str, review: Optional[bytes] = None) -> str:
    """"Review · photo-x2 · red = check here", or "… · nothing flagged" for a clean map."""
    if review is None:
        return f"Review · {model}"
    return f"Review · {model} · {REVIEW_LEGEND if review_flagged(review) else REVIEW_NOTHING}"


def document_name(source_name: str, model: str) -> str:
    """A new document's title: the source's name (or "Image") and the model."""
    return f"{source_name or 'Image'} · {model}"


@dataclass
class Piece:
    """The part of a result a host writes: ``box`` in the host's coordinates after scaling,
    pixels in the result's layout, the review map and defect mask (u8) cut to the same box."""

    box: Box
    pixels: bytes
    review: Optional[bytes] = None
    defects: Optional[bytes] = None


def check_result(result: Result, region: Box, scale: int, channels: int, dtype: str) -> None:
    """UserError unless the result is ``scale`` x the region sent, in the layout sent (an
    engine and a plug-in of different versions)."""
    _x, _y, w, h = region
    if (result.width, result.height, result.channels, result.dtype) != (w * scale, h * scale, channels, dtype):
        raise UserError(f"The engine returned {result.width}x{result.height}x{result.channels} {result.dtype} "
                        f"for {w}x{h}x{channels} {dtype} at scale {scale}: update the engine and the "
                        "plug-in together (`python3 install.py`).")


def defect_mask(result: Result) -> Optional[bytes]:
    """The result's defect mask (u8, 255 = repaired spot: restore-dust) when it covers the
    result's pixels, else None (a task without one)."""
    d = getattr(result, "defects", None)
    if d is None:
        return None
    d = bytes(d)
    size = (getattr(result, "defects_width", 0), getattr(result, "defects_height", 0))
    if size != (result.width, result.height) or len(d) != result.width * result.height:
        return None
    return d


def split_result(result: Result, region: Box, keep: Box, scale: int) -> Piece:
    """Cut a result (``scale`` x ``region``) to ``keep`` (a box inside ``region``, both in the
    host's coordinates before scaling): pixels, review map and defect mask alike."""
    rel = scale_box(box_within(keep, region), scale)
    px = bytes_per_pixel(result.channels, result.dtype)
    pixels = crop(result.pixels, result.width, px, rel)
    review = review_u8(result.review, result.width, result.height)
    defects = defect_mask(result)
    return Piece(box=scale_box(keep, scale), pixels=pixels,
                 review=None if review is None else crop(review, result.width, 1, rel),
                 defects=None if defects is None else crop(defects, result.width, 1, rel))
