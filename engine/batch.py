"""``enhancelayer run``: enhance files, folders and globs in one go.

Rules the photographer with 2,000 scans relies on:
- originals are never overwritten: an output that is the input is refused;
- the output format follows the input (same extension) unless ``--format``;
- every output is written to a temporary name and renamed (engine.imageio.write); ``--resume``
  still decodes each existing output fully (someone may have cut it since) and redoes it when
  it does not; temporaries left by a killed run are removed at the start of every run;
- a disk that refuses an output (full, read-only, no permission) is a user problem (exit 2),
  in plain words, never an "unexpected error";
- one bad file is reported in one line and skipped; the exit code at the end is 2 if any
  file failed on a user-fixable problem (unreadable, too large, mask size ...), 1 if one
  failed on an unexpected error, 0 otherwise;
- a rich progress bar shows images and the current image's tiles, with ETAs, and long
  jobs get a time estimate first (TaskInfo.estimate_seconds, CPU figures).
"""
from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from engine import imageio
from engine.errors import BadInput, EnhanceError

LONG_JOB_S = 20.0


@dataclass
class Item:
    src: Path
    dst: Path


def parse_size(text: Optional[str]) -> Optional[int]:
    """'1.5GB', '800MB', '2G', '1073741824' -> bytes."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*", text.lower())
    if not m:
        raise BadInput(f"cannot read the memory budget '{text}': write it like 1.5GB or 800MB")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    v = int(float(m.group(1)) * mult)
    if v < (64 << 20):
        raise BadInput(f"memory budget {text} is too small: give at least 64MB")
    return v


def expand_inputs(items: Sequence[str]) -> list[Path]:
    """Files, folders (their image files, not recursive) and globs, in order, de-duplicated."""
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            out.append(p)

    for it in items:
        p = Path(it)
        if p.is_dir():
            for q in sorted(p.iterdir()):
                if q.is_file() and q.suffix.lower() in imageio.EXTENSIONS and not q.name.startswith("."):
                    add(q)
        elif p.exists():
            add(p)
        elif glob.has_magic(it):
            hits = sorted(glob.glob(it, recursive=True))
            files = [Path(h) for h in hits if Path(h).is_file() and Path(h).suffix.lower() in imageio.EXTENSIONS]
            if not files:
                raise BadInput(f"no image files match '{it}'")
            for q in files:
                add(q)
        else:
            raise BadInput(f"{it}: no such file or folder")
    if not out:
        raise BadInput("no input images found")
    return out


def plan_outputs(inputs: Sequence[Path], output: Path, fmt: Optional[str]) -> list[Item]:
    """-o is a file for one input (when it has an image extension), a folder otherwise."""
    if fmt:
        fmt = imageio.format_for("x", fmt)
    single_file = (len(inputs) == 1 and not output.is_dir()
                   and output.suffix.lower() in imageio.EXTENSIONS)
    if len(inputs) == 1 and not output.is_dir() and not single_file and _looks_like_extension(output.suffix):
        raise BadInput(f"-o {output}: '{output.suffix}' is not a format enhancelayer writes: use .png, .jpg, "
                       ".tif or .webp (for an output folder, a name without an extension)")
    if len(inputs) > 1 and output.suffix.lower() in imageio.EXTENSIONS and not output.is_dir():
        raise BadInput(f"-o {output}: several inputs need an output folder, not a file name")
    if output.exists() and not output.is_dir() and not single_file:
        raise BadInput(f"-o {output}: exists and is not a folder")
    items: list[Item] = []
    used: set[str] = set()
    originals = {q.resolve() for q in inputs}
    for src in inputs:
        if single_file:
            dst = output
            if fmt and imageio.format_for(dst) != fmt:
                raise BadInput(f"-o {output}: the extension does not match --format {fmt}")
        else:
            in_fmt = imageio.EXTENSIONS.get(src.suffix.lower())
            ext = src.suffix if (fmt is None or fmt == in_fmt) else imageio.FORMAT_EXT[fmt]
            stem, n = src.stem, 1
            name = stem + ext
            while name.lower() in used:
                n += 1
                name = f"{stem}-{n}{ext}"
            used.add(name.lower())
            dst = output / name
        if dst.resolve() in originals or (dst.exists() and any(os.path.samefile(dst, q) for q in inputs)):
            raise BadInput(f"{src}: the output would overwrite the original: choose another -o")
        items.append(Item(src, dst))
    return items


def _looks_like_extension(suffix: str) -> bool:
    """'.bmp', '.heic', '.jxl', '.exr': what a user means as a file type (so '-o out.bmp' is not
    made a folder named out.bmp/). A dot and digits only ('scans.2024') reads as a folder name."""
    return re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,4}", suffix) is not None


def prepare_output_folders(items: Sequence[Item]) -> None:
    """Create the output folder(s) once, before any work (one clear line if the disk refuses),
    and remove the temporaries a killed earlier run left for these outputs."""
    for folder in sorted({it.dst.parent for it in items}):
        imageio.make_folder(folder)
    imageio.remove_stale_temps(it.dst for it in items)


def _read_mask(path: Path) -> np.ndarray:
    img = imageio.read(path)
    m = img.pixels
    if m.ndim == 3:
        m = m[:, :, 3] if m.shape[2] == 4 and np.any(m[:, :, 3] != m[:, :, 3].flat[0]) else m[:, :, 0]
    return np.ascontiguousarray(m)


def _read_hints(path: Path) -> np.ndarray:
    """colorize's hints: an RGBA image (an image without alpha has no way to say where the hints are)."""
    px = imageio.read(path).pixels
    if px.ndim != 3 or px.shape[2] != 4:
        raise BadInput(f"{path}: the hints image must have an alpha channel (its opaque pixels are the hints): "
                       "save the hints layer alone, as PNG with transparency")
    return np.ascontiguousarray(px)


@dataclass
class BatchJob:
    """What every image of a batch is enhanced with, the same on this machine or on a Ray
    worker (picklable: engine/cluster.py ships it once to the cluster)."""

    model: str
    device: str
    opts: Any                       # engine.pipeline.EnhanceOptions (the mask included)
    fmt: Optional[str]
    review: Optional[Path]
    defects: Optional[Path]
    count: int                      # images to do: side outputs go to a folder when > 1


Runner = Callable[["BatchPlan", Any, bool], "Tally"]     # (plan, console, quiet) -> tally


@dataclass
class BatchPlan:
    job: BatchJob
    task: Any
    items: list[Item]
    todo: list[Item]
    skipped: int


@dataclass
class Tally:
    done: int = 0
    failed_user: int = 0
    failed_bug: int = 0


def plan_batch(inputs: Sequence[str], model: str, output: Path, *, options: Optional[dict[str, Any]] = None,
               grain: bool = False, mask: Optional[Path] = None, tile: Optional[int] = None,
               memory_budget: Optional[str] = None, device: str = "auto", fmt: Optional[str] = None,
               resume: bool = False, review: Optional[Path] = None, defects: Optional[Path] = None,
               say: Any = print, hints: Optional[Path] = None) -> BatchPlan:
    """Check every argument, plan the outputs and pick what is left to do, before any image is
    read or anything is written; argument errors raise EnhanceError (exit 2). The runner loads
    the model, then calls :func:`prepare_output_folders`."""
    from engine import tasks
    from engine.options import by_name, to_pipeline, validate
    from engine.pipeline import GRAIN_DEFAULT, EnhanceOptions
    from engine.pipeline.tiling import MIN_TILE

    task = tasks.get(model)                              # UnknownModel before any file is touched
    table = tasks.option_table(task) if task.info.blends else by_name(tasks.all_options())
    given = {k: v for k, v in (options or {}).items() if v is not None}
    not_used = sorted(set(given) - set(table))
    if not_used:
        raise BadInput(f"{model} does not take --{not_used[0].replace('_', '-')} "
                       f"(its options: {', '.join(table) or 'none'})")
    values = validate(table, given)
    if tile is not None and (tile < 0 or 0 < tile < MIN_TILE):
        raise BadInput(f"--tile must be 0 (whole image) or at least {MIN_TILE} px (got {tile})")
    budget = parse_size(memory_budget)
    srcs = expand_inputs(inputs)
    items = plan_outputs(srcs, Path(output), fmt)
    tasks.require_inputs(task.info, bool(mask), bool(hints))
    mask_px = _read_mask(Path(mask)) if mask else None
    hints_px = _read_hints(Path(hints)) if hints else None
    pipe = to_pipeline(table, values)
    pipe.pop("tile", None)                               # the --tile flag below (0 = whole image)
    if grain:
        pipe["grain"] = GRAIN_DEFAULT
    pipe["review"] = review is not None
    opts = EnhanceOptions(model=model, tile=tile, memory_budget=budget, device=device, **pipe)
    if mask_px is not None:
        opts = opts.replace(mask=mask_px)
    if hints_px is not None:
        opts = opts.replace(hints=hints_px)
    todo = [it for it in items if not (resume and imageio.is_complete(it.dst))]
    skipped = len(items) - len(todo)
    if skipped:
        say(f"resume: {skipped} of {len(items)} outputs already complete, skipped")
    job = BatchJob(model, device, opts, fmt, review, defects, len(todo))
    return BatchPlan(job, task, items, todo, skipped)


def enhance_one(job: BatchJob, it: Item, loaded: Any, progress: Any = None) -> str:
    """Read, enhance and write one image (and its side outputs) atomically; the task's note for
    the user ("" or e.g. descreen's "no halftone screen found"). Raises what went wrong (see
    :func:`outcome`)."""
    from engine.pipeline import enhance

    img = imageio.read(it.src, max_mp=job.opts.max_input_mp)
    res = enhance(img.pixels, job.opts, progress=progress, model=loaded)
    out_fmt = imageio.format_for(it.dst, job.fmt)
    imageio.write(it.dst, imageio.Image(res.image, img.icc, img.exif, out_fmt, img.extra), out_fmt)
    if job.review is not None and res.review is not None:
        from engine.review import save_review_png

        save_review_png(side_path(job.review, it.dst, "review", job.count), res.review, base=_rgb01(res.image))
    if job.defects is not None and res.defects is not None:
        dm = np.clip(np.asarray(res.defects) * 255 + 0.5, 0, 255).astype(np.uint8)
        imageio.write(side_path(job.defects, it.dst, "defects", job.count), imageio.Image(dm), "png")
    return str(res.info.get("note", ""))


def outcome(e: BaseException, src: Path) -> tuple[str, str]:
    """("user" | "bug", the one line to print) for an image that failed."""
    if isinstance(e, EnhanceError):
        msg = str(e)
        if msg.startswith(src.name + ": "):
            msg = msg[len(src.name) + 2:]
        return "user", f"[red]failed:[/] {src}: {msg}"
    if isinstance(e, MemoryError):
        return "user", f"[red]failed:[/] {src}: out of memory: use --memory-budget or --tile"
    return "bug", f"[red]failed (unexpected error, please report):[/] {src}: {type(e).__name__}: {e}"


def run_batch(inputs: Sequence[str], model: str, output: Path, *, options: Optional[dict[str, Any]] = None,
              grain: bool = False, mask: Optional[Path] = None, tile: Optional[int] = None,
              memory_budget: Optional[str] = None, device: str = "auto", fmt: Optional[str] = None,
              resume: bool = False, review: Optional[Path] = None, quiet: bool = False,
              defects: Optional[Path] = None, runner: Optional[Runner] = None, hints: Optional[Path] = None) -> int:
    """Run the batch; returns the exit code. Argument errors raise EnhanceError (exit 2).

    ``options``: job option values in wire units (``{"strength": 60, "sensitivity": 0.7}``),
    checked against the option table (engine/options.py + the task's own). ``grain``: the CLI's
    ``--grain`` (the default amount); ``review``/``defects``: where to write those maps.
    ``runner``: who runs the planned images (default: this process, one after the other; the
    CLI's ``--ray`` passes engine/cluster.py's ``run_on_ray``)."""
    from rich.console import Console

    con = Console(stderr=True, quiet=quiet, soft_wrap=True)
    plan = plan_batch(inputs, model, output, options=options, grain=grain, mask=mask, tile=tile,
                      memory_budget=memory_budget, device=device, fmt=fmt, resume=resume, review=review,
                      defects=defects, say=con.print, hints=hints)
    t0 = time.monotonic()
    tally = (runner or _run_here)(plan, con, quiet)
    dt = time.monotonic() - t0
    failed = tally.failed_user + tally.failed_bug
    con.print(f"{tally.done} written, {plan.skipped} skipped, {failed} failed in {_fmt_s(dt)} -> {output}")
    if tally.failed_bug:
        return 1
    return 2 if tally.failed_user else 0


def progress_columns() -> tuple:
    """The progress bar's columns, the same for a local and a Ray batch. A bar added with
    ``percent=True`` shows a percentage instead of "done/total": the current image's bar, whose
    units are tiles for one model but thousandths of the whole for a chain of steps (a
    retoucher saw "tiles 1000/1000" for "Restore old photo")."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    class CountOrPercent(MofNCompleteColumn):
        def render(self, task: Any) -> Any:
            if task.fields.get("percent"):
                from rich.text import Text

                return Text(f"{task.percentage:>3.0f} %", style="progress.percentage")
            return super().render(task)

    return (TextColumn("{task.description}"), BarColumn(), CountOrPercent(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


def step_label(name: str, msg: str, width: int = 48) -> str:
    """The current image's bar label: its name and what the engine says it is doing (the
    step of a chain, "tile 3/20", "removing the blur"), cut to ``width`` characters."""
    text = f"{name}: {msg}" if msg else name
    return text if len(text) <= width else text[:width - 1] + "…"


def announce_estimate(plan: BatchPlan, con: Any, where: str) -> None:
    """A time estimate before a long batch (catalog CPU figures)."""
    est = 0.0
    for it in plan.todo:
        try:
            w, h = imageio.probe(it.src)
            est += plan.task.info.estimate_seconds(w, h)
        except EnhanceError:
            pass
    if est > LONG_JOB_S:
        con.print(f"{len(plan.todo)} image(s) with {plan.task.info.id}: estimated {_fmt_s(est)} ({where})")


def _run_here(plan: BatchPlan, con: Any, quiet: bool) -> Tally:
    from rich.console import Console
    from rich.progress import Progress

    job = plan.job
    plan.task.prepare(job.device)                        # load once: ModelNotInstalled before the loop
    loaded = getattr(plan.task, "load", lambda _d: None)(job.device)
    prepare_output_folders(plan.items)
    device = str(getattr(loaded, "device", "cpu"))
    cpu = device in ("cpu", "ncnn-cpu", "openvino", "openvino-bf16")     # the CPU runtimes a loaded model names
    where = "CPU, bf16" if device == "openvino-bf16" else "CPU"
    announce_estimate(plan, con, where if cpu else "CPU figures; a GPU is faster")
    tally = Tally()
    with Progress(*progress_columns(), console=con, transient=False) as prog:
        report = Console(stderr=True, soft_wrap=True).print if quiet else prog.console.print
        t_img = prog.add_task("images", total=len(plan.todo))
        t_tile = prog.add_task("", total=1, percent=True)
        for it in plan.todo:
            prog.update(t_tile, description=step_label(it.src.name, ""), completed=0, total=1)

            def cb(done_t: int, total_t: int, msg: str, _t=t_tile, _name=it.src.name) -> None:
                prog.update(_t, description=step_label(_name, msg), completed=done_t, total=max(1, total_t))

            try:
                note = enhance_one(job, it, loaded, cb)
                tally.done += 1
                if note:
                    report(f"{it.src.name}: {note}", highlight=False)
            except Exception as e:  # noqa: BLE001 - report, skip, go on; exit code says it
                kind, line = outcome(e, it.src)
                if kind == "user":
                    tally.failed_user += 1
                else:
                    tally.failed_bug += 1
                report(line, highlight=False)
            prog.advance(t_img)
    return tally


def side_path(where: Path, dst: Path, kind: str, n: int) -> Path:
    """A side output (review map, defect mask): the file given, or <stem>-<kind>.png in a folder."""
    p = Path(where)
    return p / f"{dst.stem}-{kind}.png" if n > 1 or p.is_dir() else p


def _rgb01(img: np.ndarray) -> np.ndarray:
    """Any result image as float RGB 0..1 (the review overlay is drawn on a dimmed copy)."""
    a = np.asarray(img)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    f = a.astype(np.float32) / np.float32(scale)
    if f.ndim == 2:
        f = f[:, :, None]
    f = f[:, :, :3] if f.shape[2] >= 3 else np.repeat(f[:, :, :1], 3, axis=2)
    return np.clip(f, 0.0, 1.0)


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
