""""Restore old photo": the steps a restorer runs on a scanned print, in order, as one task
(catalog id ``restore``).

dust & scratches -> faded colour -> colour from the retoucher's hint strokes (a black-and-white
print; needs the job's hints) -> noise -> sharpness, each step optional (the ``steps`` option),
each one the engine's own task run through the same pipeline as on its own, so the
chain is exactly what running the steps one after the other by hand gives. Inside the chain
a repair step runs at full strength (a dust speck at 60 % is still a speck; a colour
correction at 60 % is still a cast) and the two finishing steps at the strength a restorer
would pick by default (:data:`STEP_STRENGTH`); the job's own strength then blends the whole
result with the original, like any task's.

Progress is reported per step, and a cancel takes effect between steps (and within the
network steps' tiles). The result is one image. The task also publishes its steps
(``TaskInfo.chain``, the catalog row's ``chain``): the hosts run them one by one through the
same pipeline, each step's result the next one's input, and add each as its own layer in a
layer group (plugin/client/chain.py), so a step can be hidden, masked or deleted.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import Cancelled
from engine.options import Option
from engine.tasks.base import (
    FULL_STRENGTH,
    WHOLE_IMAGE,
    Rows,
    TaskInfo,
    TaskOutput,
    TaskRequest,
    info_row,
    option_names,
)

# (step name, task id, strength inside the chain), in the order a restorer runs them
# (colorize, for a black-and-white print, needs the job's colour hints and is never a default)
STEPS: tuple[tuple[str, str, float], ...] = (
    ("dust", "restore-dust", 1.0),
    ("color", "restore-color", 1.0),
    ("colorize", "colorize", 1.0),
    ("denoise", "denoise", 0.6),
    ("sharpen", "sharpen", 0.5),
)
STEP_STRENGTH = {name: s for name, _tid, s in STEPS}
# what each step's layer is called in the hosts' layer group
STEP_LABELS = {"dust": "Dust & scratches", "color": "Faded colour", "colorize": "Colour from your hints",
               "denoise": "Noise", "sharpen": "Sharpness"}
DEFAULT_STEPS = ("dust", "color", "denoise")


def _steps_option() -> Option:
    return Option("steps", "multi", DEFAULT_STEPS, "Steps",
                  "Which steps to run, always in this order: dust & scratches, faded colour, colour from "
                  "your hint strokes (a black-and-white print), noise, sharpness.",
                  choices=tuple(name for name, _tid, _s in STEPS))


class RestoreChain:
    """The chain as a task (see the module docstring)."""

    def __init__(self) -> None:
        self.info = TaskInfo(
            id="restore", title="Restore old photo (dust, colour, noise, sharpness)", group="restore",
            # the whole image, as restore-dust needs (a crop finds other dust than the whole photo)
            kind="classical", scale=1, margin=WHOLE_IMAGE, skips=("scale",),
            license="MIT (EnhanceLayer code and models)",
            source="engine/tasks/restore_chain.py", tile_invariant=False, ms_per_mp_cpu=3000.0,
            notes="Runs restore-dust, restore-color, denoise and sharpen in that order (the ones chosen in steps).",
            options=(_steps_option(),), defaults=FULL_STRENGTH, purpose="restore", takes_hints=True,
            chain=tuple((n, tid, s * 100.0, STEP_LABELS[n]) for n, tid, s in STEPS), label="The usual steps, in order",
            description="Dust & scratches, then faded colour, then noise (and sharpness if you tick it); "
                        "each step becomes its own layer in a layer group, to hide or mask on its own.")

    def _tasks(self) -> list:
        from engine import tasks

        return [tasks.get(tid) for _n, tid, _s in STEPS]

    def installed(self) -> bool:
        return all(t.installed() for t in self._tasks())

    def prepare(self, device: str = "auto") -> None:
        return None                  # each step loads its own model when it runs

    def verify(self) -> None:
        for t in self._tasks():
            t.verify()

    def check(self, values: dict[str, Any]) -> None:
        from engine.errors import BadInput

        if not values.get("steps"):
            raise BadInput("restore needs at least one step (steps: dust, color, denoise, sharpen)")

    def run(self, req: TaskRequest, device: str = "auto") -> TaskOutput:
        from engine import tasks

        self.check(req.values)
        out = TaskOutput(scale=1, rows=iter(()), tiles=1)
        chosen = [s for s in STEPS if s[0] in tuple(req.values["steps"])]
        for _name, tid, _s in chosen:          # colorize's hints: the one wording of a missing input
            if tasks.get(tid).info.needs_hints:
                tasks.require_inputs(tasks.get(tid).info, True, req.hints is not None)

        def rows() -> Rows:
            from engine.pipeline import EnhanceOptions, enhance

            img = np.clip(req.rgb(0, req.height, 0, req.width), 0.0, 1.0).astype(np.float32)
            notes = []
            for i, (name, tid, strength) in enumerate(chosen):
                if req.cancel is not None and req.cancel.is_set():
                    raise Cancelled("cancelled")

                def step_progress(done: int, total: int, msg: str, i: int = i, name: str = name) -> None:
                    if req.progress is not None:
                        frac = (i + (done / total if total else 0.0)) / len(chosen)
                        req.progress(int(frac * 1000), 1000, f"{name} ({i + 1}/{len(chosen)}): {msg}")

                hints = req.hints if tasks.get(tid).info.needs_hints else None
                res = enhance(img, EnhanceOptions(model=tid, strength=strength, device=device,
                                                  memory_budget=req.memory_budget, hints=hints),
                              progress=step_progress, cancel=req.cancel)
                img = np.asarray(res.image, np.float32)
                if res.info.get("note"):
                    notes.append(f"{name}: {res.info['note']}")
            out.info["note"] = "; ".join([f"steps: {', '.join(s[0] for s in chosen)}", *notes])
            if req.progress is not None:
                req.progress(1000, 1000, "done")
            yield 0, img

        out.rows = rows()
        return out

    def row(self) -> dict[str, Any]:
        return info_row(self.info, self.installed(), option_names(self))


TASK = RestoreChain()
