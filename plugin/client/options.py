"""Job options as the plug-ins handle them: which to show, which widget, how to store, what to send.

The engine declares every job option once (``engine/options.py``) and publishes the table in
its catalog: ``{"name", "type": float|int|bool|choice|multi, "default", "minimum", "maximum",
"choices", "nullable", "unit", "label", "help", "advanced", "tasks"}``, values in wire units
(strength 60 = 60 %). The dialogs of both hosts are built from those rows, so an option the
engine adds appears in Krita and GIMP without editing either plug-in. Nothing here knows an
option by name except the few the hosts fill in themselves (:data:`HOST_FILLED`) and the
engineering knobs no retoucher should see (:data:`NEVER_SHOWN`).

What the user picked travels as a :class:`Request` (model, host scale, output mode, option
values); :func:`submit_options` turns it into ``EngineClient.submit`` keywords.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

from .catalog import Catalog, Row, model_margin, require_model
from .chain import Step, chain_rows
from .errors import UserError
from .output import REVIEW_VISIBLE, output_mode

Option = dict[str, Any]

# Options the hosts fill themselves: the scale from their own integer control (the document is
# scaled with the host's resampling, so output = scale x region), the feather because they mask
# with the selection themselves and send no mask.
HOST_FILLED = ("scale", "feather")
# Engineering knobs a dialog never shows, also when the engine does not mark them "advanced".
NEVER_SHOWN = ("tile",)
# The integer scales the hosts offer (1 keeps the size), capped by the engine's "scale" maximum.
HOST_SCALE_MAX = 8


@dataclass
class Request:
    """What the user asked for, host-independent: the model, the host's integer scale, the
    output mode id (see ``output.OUTPUT_MODES``), the option values by name (wire units) and
    whether a review layer starts visible (``output.REVIEW_VISIBLE`` by default)."""

    model: str
    scale: int = 1
    output: str = "masked"
    values: dict[str, Any] = field(default_factory=dict)
    show_review: bool = REVIEW_VISIBLE
    hints_layer: str = ""           # the host's id of the colour-hints layer (colorize), "" = none chosen


# ------------------------------------------------------------------------------ the table

def option_table(catalog: Catalog) -> dict[str, Option]:
    """The catalog's option rows by name, in the engine's order."""
    rows = catalog.get("options") if isinstance(catalog, dict) else None
    if not isinstance(rows, list):
        return {}
    return {r["name"]: r for r in rows if isinstance(r, dict) and isinstance(r.get("name"), str)}


def task_option_names(row: Row) -> list[str]:
    names = row.get("options")
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def task_options(catalog: Catalog, row: Row) -> list[Option]:
    """The option rows the model's task takes, in the order the model row lists them."""
    table = option_table(catalog)
    return [table[n] for n in task_option_names(row) if n in table]


def is_shown(option: Option) -> bool:
    """Whether a dialog shows this option (not host-filled, not an engineering knob)."""
    name = option.get("name")
    return name not in HOST_FILLED and name not in NEVER_SHOWN and not option.get("advanced")


def shown_options(catalog: Catalog, row: Row) -> list[Option]:
    """The options a dialog shows for this model."""
    return [o for o in task_options(catalog, row) if is_shown(o)]


def every_shown_option(catalog: Catalog) -> list[Option]:
    """Every option some task takes that a dialog shows, in the engine's order (GIMP registers
    one procedure argument per option, whatever the model)."""
    used = {n for row in catalog.get("models", []) if isinstance(row, dict) for n in task_option_names(row)}
    return [o for name, o in option_table(catalog).items() if name in used and is_shown(o)]


def models_taking(catalog: Catalog) -> list[tuple[Option, list[str]]]:
    """Every shown option that only some models take, with their ids: a dialog that cannot
    hide widgets per model (GIMP's) greys those out unless the chosen model is one of them."""
    rows = [r for r in catalog.get("models", []) if isinstance(r, dict) and isinstance(r.get("id"), str)]
    out = []
    for o in every_shown_option(catalog):
        users = [r["id"] for r in rows if o["name"] in task_option_names(r)]
        if len(users) < len(rows):
            out.append((o, users))
    return out


# ------------------------------------------------------------------------------ widgets

def bounds(option: Option) -> tuple[Optional[float], Optional[float]]:
    def num(v: Any) -> Optional[float]:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
    return num(option.get("minimum")), num(option.get("maximum"))


def widget_kind(option: Option) -> str:
    """The widget both dialogs use for an option: ``slider`` (a percentage), ``spin`` (other
    numbers), ``check`` (bool), ``combo`` (choice) or ``checks`` (multi: one box per choice)."""
    kind = option.get("type")
    if kind in ("float", "int"):
        lo, hi = bounds(option)
        return "slider" if option.get("unit") == "%" and lo is not None and hi is not None else "spin"
    return {"bool": "check", "choice": "combo", "multi": "checks"}.get(str(kind), "spin")


def step(option: Option) -> float:
    """A spin box's step: 1 for whole numbers and wide ranges, finer for narrow float ranges."""
    if option.get("type") == "int":
        return 1.0
    lo, hi = bounds(option)
    span = (hi - lo) if lo is not None and hi is not None else 100.0
    return 1.0 if span >= 20 else (0.1 if span >= 2 else 0.01)


def decimals(option: Option) -> int:
    s = step(option)
    return 0 if s >= 1 else (1 if s >= 0.1 else 2)


def label(option: Option) -> str:
    """The option's label with its unit: "Strength (%)", "Sensitivity"."""
    text = str(option.get("label") or option.get("name", ""))
    unit = option.get("unit") or ""
    return f"{text} ({unit})" if unit and option.get("type") in ("float", "int") else text


def choice_label(option: Option, choice: str) -> str:
    """One check box of a multi option: "Protect faces"."""
    return f"{option.get('label') or option.get('name')} {choice}"


def default(option: Option, row: Optional[Row] = None) -> Any:
    """Where the option starts for the model of ``row``: that task's own default (a repair's
    strength is 100: ``row["defaults"]``), else the option table's."""
    own = row.get("defaults") if isinstance(row, dict) else None
    d = own[option.get("name")] if isinstance(own, dict) and option.get("name") in own else option.get("default")
    return list(d) if isinstance(d, (list, tuple)) else d


def follow_model(catalog: Catalog, before: Optional[Row], after: Optional[Row],
                 values: dict[str, Any]) -> dict[str, Any]:
    """The option values once the user picks another model in a dialog: a value still at the
    previous model's default was never chosen, so it moves to the new model's (strength 60 for
    denoise becomes 100 for descreen, and back); a value the user set stays. ``before`` None
    (the dialog opening with the remembered model) changes nothing. Both dialogs call this."""
    if before is None or after is None:
        return dict(values)
    out = dict(values)
    for name, option in option_table(catalog).items():
        if name in out and out[name] == default(option, before):
            out[name] = default(option, after)
    return out


# ------------------------------------------------------------------------------ values

def clamp(option: Option, value: float) -> float:
    lo, hi = bounds(option)
    if lo is not None and value < lo:
        value = lo
    if hi is not None and value > hi:
        value = hi
    return value


def wire_value(option: Option, value: Any) -> Any:
    """A widget's or an argument's value as the wire wants it (int, float, bool, str, list).
    Numbers are not range-checked: the engine's table does that, once."""
    kind = option.get("type")
    if value is None:
        return None
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(round(float(value)))
    if kind == "bool":
        return bool(value)
    if kind == "choice":
        return str(value)
    if kind == "multi":
        return [str(v) for v in value]
    return value


def to_text(value: Any) -> str:
    """A value as host settings store it (Krita: strings): ``60``, ``0.5``, ``true``,
    ``faces,text``; None (automatic) is ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, (int, float)):
        v = float(value)
        return str(int(v)) if v.is_integer() else f"{v:g}"
    return str(value)


def from_text(option: Option, text: Optional[str], row: Optional[Row] = None) -> Any:
    """The value ``to_text`` stored; anything unreadable or out of range gives the default of
    the model of ``row`` (numbers are clamped into the option's range)."""
    kind = option.get("type")
    if text is None or (text == "" and kind not in ("multi", "choice")):
        return default(option, row)
    if kind == "bool":
        return text.strip().lower() in ("true", "1", "yes") if text.strip() else default(option, row)
    if kind in ("float", "int"):
        try:
            v = float(text)
        except ValueError:
            return default(option, row)
        if not math.isfinite(v):
            return default(option, row)
        v = clamp(option, v)
        return int(round(v)) if kind == "int" else v
    choices = [str(c) for c in option.get("choices") or []]
    if kind == "choice":
        return text if text in choices else default(option, row)
    if kind == "multi":
        return [c for c in choices if c in text.split(",")]
    return text


def values_from_text(options: Iterable[Option], read: Callable[[str], Optional[str]],
                     row: Optional[Row] = None) -> dict[str, Any]:
    """Option values from stored strings (``read(name)`` -> text, or None when not stored: the
    default of the model of ``row``)."""
    return {o["name"]: from_text(o, read(o["name"]), row) for o in options}


def arg_name(name: str) -> str:
    """A procedure argument's name for an option: ``keep_color`` -> ``keep-color``."""
    return name.replace("_", "-")


def arg_names(option: Option) -> list[str]:
    """The argument names of one option; a multi option is one boolean per choice
    (``protect`` -> ``protect-faces``, ``protect-text``)."""
    base = arg_name(option["name"])
    if option.get("type") == "multi":
        return [f"{base}-{arg_name(str(c))}" for c in option.get("choices") or []]
    return [base]


def args_not_taken(catalog: Catalog, row: Optional[Row]) -> set[str]:
    """The procedure arguments of options the model of ``row`` does not take: a dialog built
    from every argument (GIMP's) hides them while that model is chosen. The host's scale is
    one of them for a task that keeps the size."""
    taken = {o["name"] for o in shown_options(catalog, row)} if row is not None else set()
    hidden = {a for o in every_shown_option(catalog) if o["name"] not in taken for a in arg_names(o)}
    return hidden if takes_scale(row) else hidden | {arg_name("scale")}


def values_from_args(options: Iterable[Option], read: Callable[[str], Any]) -> dict[str, Any]:
    """Option values from named procedure arguments; ``read(arg)`` returns None when there is
    no such argument (an option newer than the registration), and the option is left out:
    the engine then uses its default."""
    out: dict[str, Any] = {}
    for o in options:
        names = arg_names(o)
        got = [read(n) for n in names]
        if any(g is None for g in got):
            continue
        if o.get("type") == "multi":
            out[o["name"]] = [str(c) for c, on in zip(o.get("choices") or [], got) if on]
        else:
            out[o["name"]] = wire_value(o, got[0])
    return out


# ------------------------------------------------------------------------------ the request

def scale_range(catalog: Catalog) -> tuple[int, int]:
    """The integer scales a host offers: 1 to :data:`HOST_SCALE_MAX`, or less when the
    engine's "scale" option allows less."""
    opt = option_table(catalog).get("scale")
    hi = bounds(opt)[1] if opt else None
    top = HOST_SCALE_MAX if hi is None else max(1, min(HOST_SCALE_MAX, int(hi)))
    return 1, top


def submit_options(catalog: Catalog, row: Row, request: Request) -> dict[str, Any]:
    """``EngineClient.submit`` keywords for a request: the model, the values of the options
    its task takes (in wire types; others are dropped), and the host's scale. A model whose
    task takes no scale can only run at scale 1 (UserError otherwise)."""
    names = task_option_names(row)
    table = option_table(catalog)
    out: dict[str, Any] = {"model": row["id"]}
    for name in names:
        if name in HOST_FILLED or name not in request.values:
            continue
        opt = table.get(name, {"name": name})
        out[name] = wire_value(opt, request.values[name])
    scale = int(request.scale)
    if scale < 1:
        raise UserError(f"The scale must be a whole number from 1 up, not {request.scale}.")
    if "scale" in names:
        out["scale"] = float(scale)
    elif scale != 1:
        raise UserError(f"The model '{row['id']}' always keeps the size: set the scale to 1.")
    return out


@dataclass
class Plan:
    """A request checked against the engine's catalog, ready to run: the model's row, THE
    margin to send around the selection, and the ``submit`` keywords."""

    request: Request
    row: Row
    margin: int
    submit: dict[str, Any]
    needs_mask: bool = False        # the task works on the selected area: the selection goes as the mask
    needs_hints: bool = False       # the task colours from a hints layer: its pixels go as the hints
    takes_hints: bool = False       # a hints layer is optional for it (restore: for its colorize step)
    # a chain task (restore) run as its steps, one layer each (chain.Step); [] = one job
    steps: list[Step] = field(default_factory=list)


def plan(catalog: Catalog, request: Request) -> Plan:
    """Check a request before any pixel is read (UserError: unknown or not imported model,
    unknown output mode, a scale the model cannot do) and work out what to send."""
    row = require_model(catalog, request.model)
    checked = Request(model=request.model, scale=int(request.scale), output=output_mode(request.output),
                      values=dict(request.values), show_review=bool(request.show_review),
                      hints_layer=str(request.hints_layer or ""))
    return Plan(request=checked, row=row, margin=model_margin(row), submit=submit_options(catalog, row, checked),
                needs_mask=bool(row.get("needs_mask")), needs_hints=bool(row.get("needs_hints")),
                takes_hints=takes_hints(row), steps=step_plans(catalog, row, checked))


# The job's options that are the group's own (its opacity) or the chain's (which steps), never a step's.
CHAIN_ONLY = ("strength", "steps")


def _chosen_steps(catalog: Catalog, request: Request) -> list[str]:
    """The steps the request ticks (the ``steps`` option), else the engine's default ticks."""
    value = request.values.get("steps")
    if value is None:
        value = option_table(catalog).get("steps", {}).get("default")
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def step_plans(catalog: Catalog, row: Row, request: Request) -> list[Step]:
    """A chain task's chosen steps (plugin/client/chain.py), in the engine's order, each checked
    against the catalog like any job (UserError for a step whose model is missing or not
    imported), the finishing options (grain, keep colour, protect, review) on the last step
    only; [] when the task is not a chain or its result goes to a new document (one image:
    the one-job chain)."""
    rows = chain_rows(row)
    if not rows or request.output == "document":
        return []
    chosen = _chosen_steps(catalog, request)
    picked = [r for r in rows if r["step"] in chosen]
    if not picked:
        raise UserError("Tick at least one step to run.")
    finishing = {k: v for k, v in request.values.items() if k not in CHAIN_ONLY}
    steps = []
    for i, r in enumerate(picked):
        require_model(catalog, r["model"])
        values = dict(finishing if i == len(picked) - 1 else {}, strength=float(r.get("strength", 100.0)))
        step_request = Request(model=r["model"], scale=request.scale, output=request.output, values=values,
                               show_review=request.show_review)
        steps.append(Step(name=r["step"], label=str(r.get("label") or r["step"]), plan=plan(catalog, step_request)))
    return steps


def takes_scale(row: Optional[Row]) -> bool:
    """Whether the host's scale means anything for this model: its task takes a "scale"
    option. Repair tasks (dust, stain, fill, colour, colorize) always keep the size, so the
    dialogs hide their scale control and run them at 1 (one rule for both hosts)."""
    return row is not None and "scale" in task_option_names(row)


def takes_hints(row: Optional[Row]) -> bool:
    """Whether the dialogs offer the colour-hints layer for this model: colorize needs one, the
    restore chain takes one for its colorize step."""
    return bool(row is not None and (row.get("needs_hints") or row.get("takes_hints")))


def makes_colour(plan: Plan) -> bool:
    """Whether the job turns a gray image into colour (colorize, or a chain with its step):
    a host refuses it on a grayscale document, which cannot hold the result."""
    return any(bool(p.row.get("colour_output")) for p in (plan, *(s.plan for s in plan.steps)))


def selection_mask(plan: Plan, has_selection: bool, read: Callable[[], bytes]) -> Optional[bytes]:
    """What goes as the job's mask: nothing, unless the task works on the selected area
    (``row["needs_mask"]``: restore-fill); then the selection as u8 bytes of the region sent,
    from the host's ``read()``, and a plain UserError when there is no selection."""
    if not plan.needs_mask:
        return None
    if not has_selection:
        from .messages import NEEDS_SELECTION

        raise UserError(NEEDS_SELECTION)
    return bytes(read())


def job_inputs(plan: Plan, has_selection: bool, read_selection: Callable[[], bytes],
               read_hints: Optional[Callable[[], bytes]]) -> dict[str, bytes]:
    """What a job sends besides the pixels, as ``EngineClient.submit`` keywords: ``mask`` (the
    selection) for a task that needs_mask, ``hints`` (the hints layer) for one that
    needs_hints; nothing for the others. Both hosts call this one rule."""
    out: dict[str, bytes] = {}
    mask = selection_mask(plan, has_selection, read_selection)
    if mask is not None:
        out["mask"] = mask
    hints = hints_input(plan, read_hints)
    if hints is not None:
        out["hints"] = hints
    return out


def hints_input(plan: Plan, read: Optional[Callable[[], bytes]]) -> Optional[bytes]:
    """What goes as the job's hints: nothing, unless the task colours from a hints layer
    (``row["needs_hints"]``: colorize, or a chain with a step that does); then that layer as RGBA
    u8 bytes of the region sent, from the host's ``read`` (None: no layer chosen, a plain
    UserError). A task that only takes hints (a one-job restore chain) gets them when chosen."""
    needed = plan.needs_hints or any(s.plan.needs_hints for s in plan.steps)
    if not needed and not (plan.takes_hints and read is not None):
        return None
    if read is None:
        from .messages import NEEDS_HINTS

        raise UserError(NEEDS_HINTS)
    return bytes(read())
