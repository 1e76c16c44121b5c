"""The Task protocol: what every capability of the engine looks like to its callers.

A task takes an image (and the job's option values) and produces model-side pixels that the
pipeline then blends with the original (strength, mask, grain, keep colour, resampling), plus
optional extra layers (restore-dust's defect mask). Callers (pipeline, server, CLI, batch,
doctor, plug-ins through ``/v1/models``) never switch on what kind of task it is: they read
its :class:`TaskInfo` descriptor and call :meth:`Task.prepare` / :meth:`Task.run`.

Two shapes exist today:

- ``engine/tasks/network.py``: one task per neural network (catalog models and user models);
  tiled, rows streamed as tiles finish;
- :class:`WholeImageTask`: a classical algorithm that looks at the whole image at once
  (``engine/tasks/restore_dust.py``); a new one is one module with a ``TASK`` object.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Optional, Protocol

import numpy as np

from engine.options import Option

Kind = Literal["network", "classical"]
ProgressFn = Callable[[int, int, str], None]
Rows = Iterator[tuple[int, np.ndarray]]
# rgb(y0, y1, x0, x1) -> float32 HxWx3 0..1 RGB of the input box (gray repeated, alpha left out)
RgbReader = Callable[[int, int, int, int], np.ndarray]


# A margin that asks the hosts for the whole image (their context region is clamped to it): for a
# task whose result at a pixel depends on the whole photo (restore-dust compares each spot with
# the photo's own noise level and cuts long scratches along a grid fixed to the image), so that a
# selection gets exactly what the whole image would get there.
WHOLE_IMAGE = 1 << 20


# The defaults of a repair (TaskInfo.defaults): all of the repair is kept unless the retoucher
# lowers it, since a speck, a screen, a cast or a smear kept at 40 % is still visible.
FULL_STRENGTH: tuple[tuple[str, Any], ...] = (("strength", 100.0),)


@dataclass(frozen=True)
class TaskInfo:
    """What callers may know about a task without running it (like spandrel's descriptors)."""

    id: str
    title: str
    group: str                      # what it is for: upscale, jpeg, denoise, sharpen, restore, ...
    kind: Kind
    scale: int                      # output / input size it delivers by default
    margin: int                     # context px a host should send around a selection (WHOLE_IMAGE: all of it)
    license: str
    source: str
    tile_invariant: bool = True     # tiled / cropped runs equal a whole-image run
    ms_per_mp_cpu: float = 0.0      # end-to-end cost per input megapixel on 2 cores (estimates)
    photo: bool = True              # meant for photographs
    notes: str = ""
    tags: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()    # options only this task has (declared in its module)
    blends: bool = True             # False: the input comes back untouched, no blend options apply
    needs_mask: bool = False        # True: the job's mask (the host's selection) is the task's input
    needs_hints: bool = False       # True: the job's hints image (RGBA, colour strokes) is its input
    takes_hints: bool = False       # True: a hints image is optional (restore: for its colorize step)
    colour_output: bool = False     # True: a gray input comes back as RGB (colorize)
    layer_blend: str = "normal"     # the hosts' blend mode for its layer ("color": colorize)
    # Blend options that make no sense for it (a filled hole at 60 % strength shows the hole):
    # not offered, and the pipeline runs them at their neutral value (options.NEUTRAL).
    skips: tuple[str, ...] = ()
    # Where this task starts an option at another value than the table's (wire units): a repair
    # starts at strength 100, since a dust speck, a halftone screen or a colour cast kept at 40 %
    # is still there. The CLI, the HTTP API and both dialogs start from these (options.py).
    defaults: tuple[tuple[str, Any], ...] = ()
    # A task that is a chain of other tasks (restore): its steps as the hosts may run them one
    # by one, each as its own layer - (step name, task id, strength in %, plain label), in order.
    chain: tuple[tuple[str, str, float, str], ...] = ()
    # What the dialogs show (engine/purposes.py): the retoucher's job it serves ("" = not offered
    # in the dialogs, e.g. identity), its name among that job's choices, one plain sentence.
    purpose: str = ""
    label: str = ""
    description: str = ""

    def estimate_seconds(self, width: int, height: int, ms_per_mp: Optional[float] = None) -> float:
        """Rough time before a long job: ``ms_per_mp`` (this machine's, engine/speed.py) or the
        catalog's 2-core CPU cost per input megapixel."""
        ms = self.ms_per_mp_cpu if ms_per_mp is None else ms_per_mp
        return ms * (width * height / 1e6) / 1000.0


@dataclass
class TaskRequest:
    """One run: the input (read on demand), its size, and the option values (pipeline units)."""

    rgb: RgbReader
    height: int
    width: int
    values: dict[str, Any]
    tile: Optional[int] = None
    memory_budget: Optional[int] = None
    progress: Optional[ProgressFn] = None
    cancel: Any = None              # a threading.Event-like object (``is_set()``)
    mask: Optional[np.ndarray] = None   # HxW float 0..1, unfeathered: only for tasks that need_mask
    hints: Optional[np.ndarray] = None  # HxWx4 RGBA (u8/u16/float): only for tasks that need_hints


@dataclass
class TaskOutput:
    """Model-side rows at ``scale`` x the input size, yielded in order, plus extra layers at the
    input size (filled in by the time the rows are exhausted)."""

    scale: int
    rows: Rows
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    tile: int = 0
    tiles: int = 0
    info: dict[str, Any] = field(default_factory=dict)   # "note": said to the user; "notice": worth a message
    passthrough: bool = False       # True: the caller returns the input as it is (identity)


class Task(Protocol):
    """A capability of the engine; see the module docstring."""

    info: TaskInfo

    def installed(self) -> bool:
        """Cheap check that it can run (weights present); no hashing."""
        ...

    def prepare(self, device: str = "auto") -> None:
        """Load what it needs (once; cached), or raise ModelNotInstalled / WeightsTampered."""
        ...

    def verify(self) -> None:
        """Check installed weights against their manifests (sha256); WeightsTampered if not."""
        ...

    def check(self, values: dict[str, Any]) -> None:
        """Refuse option values (pipeline units) it cannot run, with BadInput: the engine asks
        before it accepts a job (422), so a job never fails later for what was known at once."""
        ...

    def run(self, req: TaskRequest, device: str = "auto") -> TaskOutput:
        ...

    def row(self) -> dict[str, Any]:
        """The JSON row of ``GET /v1/models`` and ``enhancelayer models --json``."""
        ...


def declared_options(task: Task) -> dict[str, Option]:
    """The options this task accepts as they are declared: the common blend options (unless it
    returns its input untouched) and its own (``TaskInfo.options``), defaults the table's."""
    from engine.options import COMMON, by_name

    common = tuple(o for o in COMMON if o.name not in task.info.skips) if task.info.blends else ()
    return by_name((*common, *task.info.options))


def option_table(task: Task) -> dict[str, Option]:
    """The options this task accepts, each starting at THIS task's default (``TaskInfo.defaults``
    over the declared one): what a job of this task gets for an option it does not give."""
    from dataclasses import replace

    table = declared_options(task)
    for name, value in task.info.defaults:
        if name not in table:
            raise AssertionError(f"{task.info.id} sets a default for {name!r}, an option it does not take (bug)")
        table[name] = replace(table[name], default=table[name].check(value))
    return table


def option_names(task: Task) -> list[str]:
    return list(option_table(task))


def info_row(info: TaskInfo, installed: bool, option_names: list[str]) -> dict[str, Any]:
    """The JSON row every task shares (network tasks add their catalog fields)."""
    return {"id": info.id, "task": info.group, "kind": info.kind, "title": info.title, "scale": info.scale,
            "margin": info.margin, "receptive_field": info.margin, "tile_invariant": info.tile_invariant,
            "ms_per_mp_cpu": info.ms_per_mp_cpu, "license": info.license, "source": info.source,
            "photo": info.photo, "notes": info.notes, "tags": list(info.tags), "installed": installed,
            "options": option_names, "purpose": info.purpose, "label": info.label or info.title,
            "description": info.description, "needs_mask": info.needs_mask,
            "needs_hints": info.needs_hints, "takes_hints": info.takes_hints or info.needs_hints,
            "layer_blend": info.layer_blend,
            "colour_output": info.colour_output,
            # where its options start elsewhere than the option table's default (wire units)
            "defaults": {name: list(v) if isinstance(v, tuple) else v for name, v in info.defaults},
            "chain": [{"step": n, "model": tid, "strength": pct, "label": label}
                      for n, tid, pct, label in info.chain]}


def require_inputs(info: TaskInfo, has_mask: bool, has_hints: bool) -> None:
    """BadInput for a job without an input its task needs (the selection as mask, a hints
    image), or with a hints image its task does not take: the one wording the server (422),
    the CLI and the pipeline give."""
    from engine.errors import BadInput

    if info.needs_mask and not has_mask:
        raise BadInput(f"{info.id} works on the selected area: select the damage first "
                       "(CLI: --mask FILE, white where it is)")
    if info.needs_hints and not has_hints:
        raise BadInput(f"{info.id} needs colour hints: paint a few strokes of colour on a separate layer and "
                       "choose it as the hints (CLI: --hints FILE, an RGBA image)")
    if has_hints and not (info.needs_hints or info.takes_hints):
        raise BadInput(f"{info.id} takes no colour hints (only colorize and restore's colorize step do)")


def selected(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The job's mask (HxW, or HxWx1) as the selection a task works on (bool HxW: >= half
    selected; the soft edge is the pipeline's blend), or BadInput when its size is not the
    image's. For the tasks whose input the selection is (``needs_mask``)."""
    from engine.errors import BadInput

    m = np.asarray(mask, dtype=np.float32)
    if m.ndim == 3:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise BadInput(f"the mask is {m.shape[1]}x{m.shape[0]} px but the image is {shape[1]}x{shape[0]}")
    return m >= 0.5


def colour_result(info: TaskInfo, has_hints: bool) -> bool:
    """Whether a gray input comes back in colour: a colour_output task (colorize), or one that
    takes optional hints and got them (restore with its colorize step)."""
    return info.colour_output or (info.takes_hints and has_hints)


# fn(rgb, values) -> (rgb, extra layers) or (rgb, extra layers, result info such as {"note": ...});
# a task that needs_mask / needs_hints gets them as keywords: fn(rgb, values, mask=..., hints=...)
WholeImageFn = Callable[..., tuple]


def _step(req: TaskRequest, done: int, total: int, what: str) -> None:
    from engine.errors import Cancelled

    if req.cancel is not None and req.cancel.is_set():
        raise Cancelled("cancelled")
    if req.progress:
        req.progress(done, total, what)


@dataclass
class WholeImageTask:
    """A classical task that needs the whole image at once: ``fn(rgb, values) -> (rgb, layers)``.

    ``rgb`` is float32 HxWx3 in 0..1; ``values`` holds the job's option values (pipeline units,
    the task's own options included); ``layers`` are extra HxW float maps (0..1) such as a
    defect mask; an optional third item is the result's info (``{"note": "..."}``, said to the
    user). Progress is reported as one step."""

    info: TaskInfo
    fn: WholeImageFn
    verb: str = "working"
    # True: fn also takes ``step=(done, total, what)``, which reports its own progress (a long
    # task in tiles) and raises Cancelled once the job is cancelled, so cancel stops it there
    steps: bool = False

    def installed(self) -> bool:
        return True

    def prepare(self, device: str = "auto") -> None:
        return None

    def verify(self) -> None:
        return None                  # code, no weights

    def check(self, values: dict[str, Any]) -> None:
        return None                  # every value the option table allows runs

    def run(self, req: TaskRequest, device: str = "auto") -> TaskOutput:
        out = TaskOutput(scale=1, rows=iter(()), tiles=1)

        def rows() -> Rows:
            if req.progress:
                req.progress(0, 1, self.verb)
            rgb = np.clip(req.rgb(0, req.height, 0, req.width), 0.0, 1.0)
            inputs: dict[str, Any] = {}
            if self.info.needs_mask:
                inputs["mask"] = req.mask
            if self.info.needs_hints:
                inputs["hints"] = req.hints
            if self.steps:
                inputs["step"] = partial(_step, req)
            done = self.fn(rgb, req.values, **inputs)
            pixels, layers = done[0], done[1]
            out.layers.update(layers)
            if len(done) > 2:
                out.info.update(done[2])
            if req.progress:
                req.progress(1, 1, "done")
            yield 0, np.asarray(pixels, dtype=np.float32)

        out.rows = rows()
        return out

    def row(self) -> dict[str, Any]:
        return info_row(self.info, True, option_names(self))
