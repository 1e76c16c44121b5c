"""The network task: run one neural network, tiled, on the image (every catalog model and every
user model is one of these).

Weights, runtimes and pre/post-processing come from ``engine/models`` (catalog, registry,
backends); seamless tiling from ``engine/pipeline/tiling.py``. This module only ties them to
the Task protocol, so the rest of the engine never asks what kind of model it holds.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from engine.models import registry
from engine.models.catalog import ModelSpec
from engine.options import Option
from engine.tasks.base import TaskInfo, TaskOutput, TaskRequest, info_row, option_names

# A network that measures the noise itself (our denoiser) also takes it from the job: the
# retoucher who knows the photo is noisier or cleaner than measured says so. In 8-bit levels
# (the noise's standard deviation per channel); the graph's estimate is that of the channel mean,
# sigma / sqrt(3). Giving the true sigma this way: +0.3 / +0.6 / +0.7 dB over measuring at sigma
# 15 / 25 / 50 on the development photos, but 0.1-0.4 dB below it on the 8 held-out photos (better
# on the smooth ones only; bench/results/quality.md): a control for more or less smoothing, not a
# calibration.
NOISE_LEVEL = Option("noise_level", "float", 0.0, "Noise level",
                     "How noisy the photo is, in 8-bit levels (about 5 faint, 15 clearly visible, 30 heavy): "
                     "higher removes more. 0 measures it from the photo.", minimum=0, maximum=100)


def describe(spec: ModelSpec) -> TaskInfo:
    return TaskInfo(id=spec.id, title=spec.title, group=spec.task, kind="network", scale=spec.scale,
                    margin=spec.receptive_field, license=spec.license, source=spec.source,
                    tile_invariant=spec.tile_invariant, ms_per_mp_cpu=spec.ms_per_mp_cpu, photo=spec.photo,
                    notes=spec.notes, tags=spec.tags, purpose=spec.purpose, label=spec.label,
                    description=spec.description, options=(NOISE_LEVEL,) if spec.measures_noise else ())


class NetworkTask:
    """A catalog network (``spec``) or a user model file (``user_path``; its scale is measured
    when it is loaded)."""

    def __init__(self, spec: ModelSpec, user_path: Optional[Path] = None, model: Any = None):
        self.spec = spec
        self.user_path = user_path
        self.info = describe(spec)
        self._model = model            # an already loaded model (bench, server cache), else loaded here

    def installed(self) -> bool:
        return True if self.user_path is not None else registry.is_installed(self.spec)

    def load(self, device: str = "auto") -> Any:
        """The loaded model (cached per id and runtime by engine.models.backends)."""
        if self._model is not None:
            return self._model
        from engine.models.backends import load_model

        return load_model(self.spec.id, device)

    def prepare(self, device: str = "auto") -> None:
        m = self.load(device)
        if self.user_path is not None:     # the probe measured its scale
            self.spec = m.spec
            self.info = describe(m.spec)

    def verify(self) -> None:
        if self.user_path is not None:
            return                                   # the user's own file: nothing to check against
        registry.verified_onnx_path(self.spec.id)
        if registry.has_ncnn_files(self.spec.id):
            registry.verified_ncnn_paths(self.spec.id)   # the wheel's .param/.bin (ncnn backend)

    def check(self, values: dict[str, Any]) -> None:
        return None                  # every value the option table allows runs

    def run(self, req: TaskRequest, device: str = "auto") -> TaskOutput:
        from engine.pipeline import staged, tiling

        model = self.load(device)
        spec = model.spec
        sp = staged.plan_staged(model, req.height, req.width, tile=req.tile, memory_budget=req.memory_budget)
        note = ""
        if sp is not None and sp.disk_short:      # no room for the feature maps: tiles, and say why
            note, sp = sp.disk_note(), None
        if sp is not None:        # a deep net under a small budget: stage by stage (engine/pipeline/staged.py)
            rows = staged.staged_rows(model, sp, req.rgb, req.height, req.width,
                                      progress=req.progress, cancel=req.cancel)
            return TaskOutput(scale=int(spec.scale), rows=rows, tile=max(sp.tiles),
                              tiles=len(sp.tail_plan.grid(*sp.padded)),
                              info={"tile": max(sp.tiles), "overlap": max(st.halo for st in sp.split.stages),
                                    "stages": len(sp.files), "work": round(sp.work, 3),
                                    "plain_work": round(sp.plain_work, 3)})
        plan = tiling.plan(spec, req.height, req.width, tile=req.tile, memory_budget=req.memory_budget,
                           device=str(getattr(model, "device", "cpu")))
        given = float(req.values.get(NOISE_LEVEL.name) or 0.0)
        run = _with_whole_image_statistic(model, req, given)
        if run is None and given > 0.0:
            note = "the noise level you gave could not be passed to this model: it measured the noise itself"
        run = run or model.run
        rows = tiling.tiled_rows(run, req.rgb, req.height, req.width, plan,
                                 progress=req.progress, cancel=req.cancel)
        return TaskOutput(scale=int(spec.scale), rows=rows, tile=plan.tile,
                          tiles=len(plan.grid(req.height, req.width)),
                          info={"tile": plan.tile, "overlap": plan.overlap, **({"note": note} if note else {})})

    def row(self) -> dict[str, Any]:
        if self.user_path is not None:
            row = info_row(self.info, True, option_names(self))
            row.update(scale=None, title=self.user_path.name, family="user", license="user-supplied",
                       source=str(self.user_path), ms_per_mp_cpu=None, tags=["user"])
            return row
        row = self.spec.to_json()
        row.update(info_row(self.info, self.installed(), option_names(self)))
        return row


def _with_whole_image_statistic(model: Any, req: TaskRequest, given: float
                                ) -> Optional[Callable[[np.ndarray], np.ndarray]]:
    """For a network that measures the image in its graph (our denoiser's noise level), the
    per-tile run with that measurement taken ONCE, over the whole image as an untiled run pads
    it, so every tile uses the same value and tiled == untiled (engine/models/global_stats.py);
    ``given`` > 0 (the job's noise_level) is used instead of measuring. None for every other network."""
    from engine.models import global_stats
    from engine.models.backends import prepost, with_image_statistic

    found = with_image_statistic(model)
    if found is None:
        return None
    split_model, stats = found
    spec = model.spec
    strip, hp, wp = global_stats.padded_reader(req.rgb, req.height, req.width, spec)
    fixed = {}
    for i, stat in enumerate(stats):
        if given > 0.0:              # the retoucher's level: sigma per channel -> what each statistic reads
            value = stat.for_sigma(given / 255.0)
        else:
            try:
                value = stat.of(strip, hp, wp)
            except ValueError:       # smaller than one block: the graph measures each tile itself
                return None
        fixed[global_stats.input_name(i)] = np.full((1, 1, 1, 1), value, np.float32)

    def net(t: np.ndarray) -> np.ndarray:
        return next(iter(split_model.feed({"input": t, **fixed}).values()))

    return lambda x: prepost.run_with(spec, net, x)
