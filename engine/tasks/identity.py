"""``identity``: returns the input unchanged. Plumbing for transport benchmarks
(bench/roundtrip.py) and plug-in tests: it proves pixels survive the round trip bit for bit."""
from __future__ import annotations

from typing import Any

from engine.errors import BadInput
from engine.tasks.base import TaskInfo, TaskOutput, TaskRequest, info_row

INFO = TaskInfo(id="identity", title="Identity (returns the input unchanged)", group="identity",
                kind="classical", scale=1, margin=0, license="MIT (EnhanceLayer code)",
                source="engine/tasks/identity.py", ms_per_mp_cpu=0.0, blends=False,
                notes="No model runs: the engine returns the pixels it got. For transport benchmarks "
                      "(bench/roundtrip.py) and plug-in tests.")


class IdentityTask:
    info = INFO

    def installed(self) -> bool:
        return True

    def prepare(self, device: str = "auto") -> None:
        return None

    def verify(self) -> None:
        return None

    def check(self, values: dict[str, Any]) -> None:
        if values.get("scale") not in (None, 1, 1.0):
            raise BadInput("the identity model only works at scale 1")

    def run(self, req: TaskRequest, device: str = "auto") -> TaskOutput:
        self.check(req.values)
        if req.progress:
            req.progress(1, 1, "identity")
        return TaskOutput(scale=1, rows=iter(()), passthrough=True)

    def row(self) -> dict[str, Any]:
        return info_row(self.info, True, [])


TASK = IdentityTask()
