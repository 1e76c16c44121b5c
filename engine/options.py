"""The job options, declared once: name, type, range, default, unit, help.

Every place that takes a job option derives it from this table instead of spelling it out:

- ``engine/server/wire.py`` builds the JSON header schema (pydantic) from it;
- ``engine/pipeline`` validates and converts values with :func:`validate` / :func:`to_pipeline`;
- ``engine/cli.py`` makes one ``enhancelayer run`` flag per option (:func:`cli_flag`);
- ``GET /v1/models`` publishes the table (:func:`publish`) with, per task, the names it uses,
  so the plug-ins build their widgets from what the engine says and the stdlib client sends
  any option by name (``submit(**options)``).

Values are in *wire units* everywhere outside the pipeline (strength 60 means 60 %); the
pipeline works in fractions, and ``factor`` says how to get there (``pipeline = wire / factor``).

Options every task uses (the blend stage's: strength, grain, ...) are in :data:`COMMON`; an
option only one task has (restore-dust's ``sensitivity``) is declared in that task's module
and reaches this table through the task registry (``engine.tasks.all_options``), so adding a
task never edits this file.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import BadInput

Kind = Literal["float", "int", "bool", "choice", "multi"]


@dataclass(frozen=True)
class Option:
    """One job option. ``minimum``/``maximum`` are inclusive unless ``exclusive_minimum``."""

    name: str
    kind: Kind
    default: Any
    label: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False          # None is allowed and means "automatic"
    unit: str = ""                  # "%", "px" or ""
    factor: float = 1.0             # pipeline value = wire value / factor
    advanced: bool = False          # an engineering knob: dialogs for retouchers leave it out
    cli: bool = True                # False: the CLI spells it differently (see engine/cli.py)
    tasks: tuple[str, ...] = field(default=(), compare=False)   # filled in by the registry

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe_range(self) -> str:
        if self.kind in ("choice", "multi"):
            return ", ".join(self.choices)
        lo = "" if self.minimum is None else f"{'>' if self.exclusive_minimum else ''}{self.minimum:g}"
        hi = "" if self.maximum is None else f"{self.maximum:g}"
        return f"{lo}-{hi}{self.unit}" if lo and hi else (f"> {self.minimum:g}" if lo else "")

    def check(self, value: Any) -> Any:
        """The value if it is allowed (converted to its Python type), else BadInput."""
        if value is None:
            if self.nullable:
                return None
            raise BadInput(f"{self.name} must be given (no automatic value)")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise BadInput(f"{self.name} must be true or false (got {value!r})")
            return value
        if self.kind in ("float", "int"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadInput(f"{self.name} must be a number (got {value!r})")
            if self.kind == "int" and (isinstance(value, float) and not value.is_integer()):
                raise BadInput(f"{self.name} must be a whole number (got {value!r})")
            v = float(value)
            low_bad = self.minimum is not None and (v <= self.minimum if self.exclusive_minimum
                                                    else v < self.minimum)
            if math.isnan(v) or math.isinf(v) or low_bad or (self.maximum is not None and v > self.maximum):
                raise BadInput(f"{self.name} must be {self.describe_range()} (got {value!r})")
            return int(v) if self.kind == "int" else v
        if self.kind == "choice":
            if value not in self.choices:
                raise BadInput(f"{self.name} must be one of {', '.join(self.choices)} (got {value!r})")
            return value
        # multi: a list of distinct choices
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise BadInput(f"{self.name} must be a list of {', '.join(self.choices)} (got {value!r})")
        bad = [v for v in value if v not in self.choices]
        if bad:
            raise BadInput(f"unknown {self.name} value {bad[0]!r}: use {', '.join(self.choices)}")
        if len(set(value)) != len(value):
            raise BadInput(f"{self.name} lists an item twice")
        return tuple(value)

    def to_pipeline(self, value: Any) -> Any:
        if value is None or self.factor == 1.0 or self.kind not in ("float", "int"):
            return value
        return value / self.factor

    def from_pipeline(self, value: Any) -> Any:
        if value is None or self.factor == 1.0 or self.kind not in ("float", "int"):
            return value
        return value * self.factor

    def publish(self) -> dict[str, Any]:
        """The JSON row ``GET /v1/models`` sends (plug-ins build their widgets from it)."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {"name": self.name, "type": self.kind, "default": default, "minimum": self.minimum,
                "maximum": self.maximum, "exclusive_minimum": self.exclusive_minimum,
                "choices": list(self.choices) or None, "nullable": self.nullable, "unit": self.unit,
                "label": self.label, "help": self.help, "advanced": self.advanced, "tasks": list(self.tasks)}


PROTECT_KINDS = ("faces", "text")

COMMON: tuple[Option, ...] = (
    Option("strength", "float", 60.0, "Strength", "How much of the model's change is kept.",
           minimum=0, maximum=100, unit="%", factor=100.0),
    Option("grain", "float", 0.0, "Grain", "How much of the original's fine texture (skin, film grain) "
           "is put back, so the result does not look plastic.", minimum=0, maximum=100, unit="%",
           factor=100.0, cli=False),
    Option("keep_color", "bool", False, "Keep colour",
           "Take only detail from the model, colour from the original."),
    Option("scale", "float", None, "Scale", "Output size / input size; automatic = the model's own scale.",
           minimum=0, maximum=16, exclusive_minimum=True, nullable=True, unit="x"),
    Option("feather", "float", 0.0, "Mask feather", "Feather radius of the mask, in input pixels.",
           minimum=0, maximum=1000, unit="px"),
    Option("review", "bool", False, "Review map", "Also return where the result needs a look "
           "(big changes, text, faces).", cli=False),
    Option("protect", "multi", (), "Protect", "Keep these closer to the original.", choices=PROTECT_KINDS),
    Option("tile", "int", None, "Tile size", "Force a tile size in px; automatic = from the memory budget.",
           minimum=16, maximum=16384, nullable=True, unit="px", advanced=True, cli=False),
)


# What a blend option is set to for a task that skips it (TaskInfo.skips), in pipeline units.
NEUTRAL: dict[str, Any] = {"strength": 1.0, "grain": 0.0, "keep_color": False, "protect": (), "scale": None}


def by_name(options: Iterable[Option]) -> dict[str, Option]:
    return {o.name: o for o in options}


def validate(table: Mapping[str, Option], values: Mapping[str, Any], *, wire_units: bool = True) -> dict[str, Any]:
    """Check ``values`` against ``table``; returns every option (defaults filled in) in wire units.

    ``wire_units=False``: the values are in pipeline units (fractions) and are converted first.
    Unknown names raise BadInput (a typo like ``strenght`` must not be silently ignored)."""
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise BadInput(f"unknown option {unknown[0]!r}: the options are {', '.join(table)}")
    out: dict[str, Any] = {}
    for name, opt in table.items():
        if name in values:
            v = values[name]
            if not wire_units and v is not None and not isinstance(v, bool):
                try:
                    v = opt.from_pipeline(v)
                except TypeError:
                    pass              # not a number: check() says so
            out[name] = opt.check(list(v) if isinstance(v, tuple) else v)
        else:
            out[name] = opt.default
    return out


def to_pipeline(table: Mapping[str, Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """Wire-unit values -> the pipeline's units (fractions for % options)."""
    return {k: table[k].to_pipeline(v) for k, v in values.items()}


def publish(options: Sequence[Option]) -> list[dict[str, Any]]:
    return [o.publish() for o in options]
