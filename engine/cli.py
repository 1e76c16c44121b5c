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
def models_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable list.")) -> None:
    """List the catalog: ids, tasks, scales, whether installed, licences."""
    from engine.registry import list_models

    rows = list_models()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    t = Table("id", "task", "scale", "installed", "cost (s/MP, CPU)", "license")
    for r in rows:
        t.add_row(r["id"], r["task"], f"{r['scale']}x", "yes" if r["installed"] else "no",
                  f"{r['ms_per_mp_cpu'] / 1000:.0f}", r["license"])
    Console().print(t)


def main() -> None:
    """Console entry point: one clear line and exit code 2 for every user-facing error."""
    try:
        app()
    except EnhanceError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
