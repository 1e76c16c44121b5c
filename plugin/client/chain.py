"""A chain task in the hosts: its steps run one by one, each added as its own layer in a group.

The engine publishes a task that is a chain of other tasks ("Restore old photo": dust &
scratches -> faded colour -> noise -> sharpness) with its steps in the catalog row
(``row["chain"]``: step name, model id, strength in %, plain label). A restorer wants each
step as its own layer, so that one can be hidden, masked or deleted without redoing the
others (issue 14). So the hosts do not send the chain as one job: they run the chosen steps
one after the other on the same region, each step's result being the next step's input, and
stack the results bottom-up in a layer group named like any result layer. Each step's layer
holds the image after that step; the group's opacity is the job's strength, which blends the
final result with the original exactly as the engine's one-job chain does.

What is shared by both hosts lives here and in ``options.step_plans`` (which steps, each
planned like any job; ``options.plan`` fills ``Plan.steps`` with them): how their jobs follow
each other with one progress bar and one cancel (:func:`run_steps`), what each step takes of
the job's inputs (:func:`step_inputs`), and the names (:func:`step_layer_name`). The finishing options of the job
(grain, keep colour, protect, review map) go with the LAST step only: they shape the final
image, not every intermediate one. A new document output keeps the one-job chain (one image).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .catalog import Row

if TYPE_CHECKING:
    from .options import Plan, Request


@dataclass
class Step:
    """One step of a chain as the host runs it: its name in the engine ("dust"), its plain
    label ("Dust & scratches") and the checked plan of its job."""

    name: str
    label: str
    plan: Plan


def chain_rows(row: Row) -> list[dict[str, Any]]:
    """The steps a model row publishes, in order ([] for a task that is not a chain)."""
    rows = row.get("chain")
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("step"), str)
            and isinstance(r.get("model"), str)]


def step_layer_name(index: int, step: Step) -> str:
    """A step's layer in the group: "1 · Dust & scratches" (numbered bottom-up, the order they ran)."""
    return f"{index + 1} · {step.label}"


def group_opacity(request: Request, row: Row) -> float:
    """The group's opacity in %: the job's strength, when not given the chain's own default
    (``row["defaults"]``: 100, its steps running at their own strengths), else 100."""
    value = request.values.get("strength")
    if value is None:
        own = row.get("defaults")
        value = own.get("strength") if isinstance(own, dict) else None
    return max(0.0, min(100.0, float(100.0 if value is None else value)))


def step_notes(steps: Sequence[Step], results: Sequence[Any]) -> str:
    """What the steps said of their results, as one line ("color: cast removed; …")."""
    notes = []
    for step, res in zip(steps, results):
        note = str((getattr(res, "info", None) or {}).get("note") or "").strip()
        if note:
            notes.append(f"{step.name}: {note}")
    return "; ".join(notes)


def step_inputs(step_plan: Plan, inputs: dict[str, bytes]) -> dict[str, bytes]:
    """Of what the chain's job sends besides the pixels (``options.job_inputs``), what this step
    takes: the hints for a step that colours from them (colorize), the mask for one that works
    on the selected area; nothing for the others (the engine refuses inputs a task does not take)."""
    wanted = {"hints": step_plan.needs_hints, "mask": step_plan.needs_mask}
    return {k: v for k, v in inputs.items() if wanted.get(k)}


# run_one(pixels, step plan, progress) -> the engine's Result for that step
RunOne = Callable[[bytes, "Plan", Callable[[float, str], bool]], Any]


def run_steps(pixels: bytes, steps: Sequence[Step], run_one: RunOne,
              progress: Optional[Callable[[float, str], bool]] = None) -> list[Any]:
    """Run the steps in order, each on the previous step's result (the first on ``pixels``),
    with one progress over all of them ("Noise (3/3): …"); ``run_one`` raises when a step is
    cancelled or fails, so no later step runs and the host adds nothing. Returns the results."""
    results: list[Any] = []
    n = len(steps)
    for i, step in enumerate(steps):
        def each(fraction: float, message: str = "", i: int = i, step: Step = step) -> bool:
            if progress is None:
                return True
            return progress((i + max(0.0, min(1.0, fraction))) / n, f"{step.label} ({i + 1}/{n}): {message}")

        res = run_one(pixels, step.plan, each)
        results.append(res)
        pixels = bytes(res.pixels)
    return results
