"""The work of one job, on a worker thread: frame pixels -> the task -> framed result parts.

Everything model- or task-specific is asked of the task registry (engine/tasks): the server
knows no model kinds.
"""
from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from engine.server import wire
from engine.server.jobs import Job


def scale_of(model: str) -> Optional[float]:
    """The task's own scale, None when it is only known after loading (user models)."""
    from engine import tasks
    task = tasks.get(model)
    return None if task.info.kind == "network" and model.startswith(tasks.USER_PREFIX) else float(task.info.scale)


def check_job(hdr: wire.JobFrame) -> None:
    """Everything knowable before a pixel is read: 404 for an unknown id, 409 for a task whose
    weights are not installed, 422 (FrameError) for option values the task cannot run."""
    from engine import tasks
    from engine.errors import BadInput, ModelNotInstalled
    from engine.options import by_name, to_pipeline
    task = tasks.get(hdr.model)                      # UnknownModel -> 404
    if not task.installed():
        from engine.models import catalog, registry
        raise ModelNotInstalled(registry.missing_hint(catalog.get(hdr.model)))
    try:
        tasks.require_inputs(task.info, hdr.mask, hdr.hints)
        if tasks.colour_result(task.info, hdr.hints) and hdr.channels < 3:
            raise BadInput(f"{task.info.id} makes colour: send the image as RGB or RGBA (channels 3 or 4)")
        task.check(to_pipeline(by_name(wire.OPTIONS), hdr.option_values()))
    except BadInput as e:
        raise wire.FrameError(422, str(e)) from None


def estimate_seconds(model: str, w: int, h: int, device: str = "auto") -> Optional[float]:
    """The job's expected time on THIS machine (the speed book's measured or calibrated ms per
    MP, see engine/speed.py), for the ETA before its first tile; None for user models."""
    from engine import speed, tasks
    task = tasks.get(model)
    if model.startswith(tasks.USER_PREFIX):
        return None
    ms, _basis = speed.book().estimate(task.info.id, task.info.ms_per_mp_cpu, device)
    return round(task.info.estimate_seconds(w, h, ms), 1)


def run_job(job: Job, progress: Any) -> list:
    """Worker side: pixels -> pipeline -> framed result parts. Same pipeline as the CLI."""
    from engine.options import by_name, to_pipeline
    from engine.pipeline import EnhanceOptions, enhance

    hdr: wire.JobFrame
    hdr, img, mask, hints, limits = job.payload
    two = hdr.channels == 2
    if two:
        img = wire.gray_alpha_to_rgba(img)
    values = hdr.option_values()
    table = by_name(wire.OPTIONS)
    tile = values.pop("tile")
    res = enhance(img, EnhanceOptions(model=hdr.model, mask=mask, hints=hints, tile=tile, max_input_mp=limits[0] / 1e6,
                                      max_output_mp=limits[1] / 1e6, **to_pipeline(table, values)),
                  progress=progress, cancel=job.cancel)
    out = res.image
    review = defects = None
    if values["review"] and res.review is not None:
        r = np.asarray(res.review, dtype=np.float32)
        review = np.rint(np.clip(r, 0.0, 1.0) * 255.0).astype(np.uint8)
    if res.defects is not None:
        defects = _defects_u8(res.defects, out.shape[1], out.shape[0])
    if two:
        out = wire.rgba_to_gray_alpha(out)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.dtype != wire.NP_DTYPE[hdr.dtype].newbyteorder("="):
        out = out.astype(wire.NP_DTYPE[hdr.dtype])
    extra: dict = {"seconds": round(time.time() - (job.started or time.time()), 3)}
    if res.info.get("note"):
        extra["note"] = str(res.info["note"])        # the task's word to the user (descreen: none found)
        if res.info.get("notice"):
            extra["notice"] = True                    # ...and worth a message box (the result is not the expected one)
    head = wire.result_header(out, hdr, review, extra, defects=defects)
    parts = [wire.pack(head), wire.from_array(out, hdr.channel_order)]
    if review is not None:
        parts.append(np.ascontiguousarray(review).tobytes())
    if defects is not None:
        parts.append(np.ascontiguousarray(defects).tobytes())
    return parts


def _defects_u8(defects: np.ndarray, width: int, height: int) -> np.ndarray:
    """restore-dust's repaired-spot mask (float 0..1, input size) as u8 at the output size:
    the hosts use it as the new layer's mask, so it must cover the layer pixel for pixel."""
    d: np.ndarray = np.clip(np.asarray(defects, dtype=np.float32), 0.0, 1.0)
    if d.ndim == 3:
        d = d[:, :, 0]
    if d.shape != (height, width):
        import cv2
        d = cv2.resize(d, (width, height), interpolation=cv2.INTER_LINEAR if width >= d.shape[1] else cv2.INTER_AREA)
    return np.rint(np.clip(d, 0.0, 1.0) * 255.0).astype(np.uint8)


