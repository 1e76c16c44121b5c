"""The engine's catalog as the plug-ins read it: model rows, THE margin rule, the model list's groups.

Both hosts ask the engine what it can do (``EngineClient.catalog()``, the body of
``GET /v1/models``) instead of keeping their own copy of the model ids: a model or a task
added to the engine shows up in Krita and GIMP without editing either plug-in. GIMP must
register its procedure's arguments when GIMP starts, before any engine runs, so the
installers also write a snapshot of the catalog beside this package (:data:`SNAPSHOT`,
read by :func:`load_snapshot`).

A catalog is ``{"models": [row, ...], "options": [option, ...], "purposes": [...]}``; a model
row has at least ``id``, ``task`` (its group), ``title``, ``scale``, ``installed`` and
``options`` (the option names its task takes), and ``margin``: the context pixels a host sends
around a selection. Engines since the task-first dialog add ``purpose``, ``label`` and
``description`` per row and the ``purposes`` list (engine/purposes.py): the dialogs ask "what
do you want to do" first (:func:`purposes`), then offer that purpose's models in plain words
(:func:`choice_label`, :func:`model_help`). For an older engine :func:`purposes` falls back to
the groups.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Optional

from .errors import UserError

Catalog = dict[str, Any]
Row = dict[str, Any]

# The model a fresh dialog starts on when the catalog has it (else the first installed one).
DEFAULT_MODEL = "photo-x2"
# Context pixels when a model row says nothing about its reach (an engine older than the margin).
DEFAULT_MARGIN = 16
# The catalog snapshot the installers write next to the vendored client (GIMP's registration).
SNAPSHOT = "engine_catalog.json"

# Group ids (a row's "task") in the order the model lists show them, with their titles; a group
# the engine adds later is shown after these, titled from its id.
GROUP_TITLES = {"upscale": "Upscale", "jpeg": "JPEG clean-up", "denoise": "Denoise",
                "sharpen": "Sharpen", "restore": "Restore"}


def model_margin(row: Row) -> int:
    """THE margin rule of both plug-ins: the row's ``margin``, else its ``receptive_field``
    (engines before the task registry), else :data:`DEFAULT_MARGIN`."""
    for key in ("margin", "receptive_field"):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return int(value)
    return DEFAULT_MARGIN


def models_of(catalog: Catalog) -> list[Row]:
    """The model rows of a catalog (an empty list for anything unreadable)."""
    rows = catalog.get("models") if isinstance(catalog, dict) else None
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("id"), str)] if isinstance(rows, list) else []


def find_model(catalog: Catalog, model_id: str) -> Optional[Row]:
    """The row of ``model_id``, or None when the engine has no such model."""
    for row in models_of(catalog):
        if row["id"] == model_id:
            return row
    return None


def is_installed(row: Row) -> bool:
    """A row without ``installed`` is taken as usable (the engine says so when it is not)."""
    return row.get("installed", True) is not False


def require_model(catalog: Catalog, model_id: str) -> Row:
    """The row of a model that can run now; UserError (saying what to do) before any work
    starts when the engine does not know it or its weights are not imported."""
    row = find_model(catalog, model_id)
    if row is None:
        raise UserError(f"The engine has no model '{model_id}': pick one from the list "
                        "(`enhancelayer models` lists them).")
    if not is_installed(row):
        raise UserError(f"The model '{model_id}' is not imported yet: run `enhancelayer import` "
                        "(or `python3 install.py` in the EnhanceLayer folder) and try again.")
    return row


def default_model(catalog: Catalog) -> str:
    """The model a dialog starts on: :data:`DEFAULT_MODEL` when present, else the first
    installed model, else the first one ("" for an empty catalog)."""
    rows = models_of(catalog)
    if any(r["id"] == DEFAULT_MODEL for r in rows):
        return DEFAULT_MODEL
    for r in rows:
        if is_installed(r):
            return r["id"]
    return rows[0]["id"] if rows else ""


def group_title(group: str) -> str:
    return GROUP_TITLES.get(group, group.replace("-", " ").replace("_", " ").title() or "Other")


def groups(catalog: Catalog) -> list[tuple[str, str, list[Row]]]:
    """``[(group id, title, rows)]``: the known groups first in :data:`GROUP_TITLES` order,
    then any other group in the order the engine lists it; rows keep the engine's order."""
    found: dict[str, list[Row]] = {}
    for row in models_of(catalog):
        found.setdefault(str(row.get("task") or "other"), []).append(row)
    order = [g for g in GROUP_TITLES if g in found] + [g for g in found if g not in GROUP_TITLES]
    return [(g, group_title(g), found[g]) for g in order]


NOT_IMPORTED = "not imported"


def model_label(row: Row) -> str:
    """A model's one-line label in a choice list, the same in both hosts: its title and id,
    and "(not imported)" when its weights are missing, so nobody picks it and learns only
    after OK (GIMP) or from a greyed row with a bare id (Krita)."""
    title = str(row.get("title") or row["id"])
    label = title if title == row["id"] else f"{title} [{row['id']}]"
    return label if is_installed(row) else f"{label} ({NOT_IMPORTED})"


# What a not-imported model's help says to do, in words (both hosts).
IMPORT_FIX = ("Not imported yet: run `python3 install.py` in the EnhanceLayer folder (it imports "
              "the models), then reload the list.")


def purposes(catalog: Catalog) -> list[dict[str, Any]]:
    """What the dialogs list first: ``[{"id", "title", "description", "advanced", "rows"}]`` in
    the engine's order, each with the rows that serve it (engine order, not-imported ones
    included so they can be shown greyed with the fix). A purpose without rows is left out
    (its task has not landed), and rows with no purpose (``identity``) are offered nowhere.
    An engine without purposes: one entry per group (:func:`groups`)."""
    rows = models_of(catalog)
    declared = catalog.get("purposes") if isinstance(catalog, dict) else None
    if not isinstance(declared, list) or not declared:
        return [{"id": g, "title": t, "description": "", "advanced": g == "user", "rows": members}
                for g, t, members in groups(catalog) if g != "identity"]
    found: dict[str, list[Row]] = {}
    for row in rows:
        p = row.get("purpose")
        if isinstance(p, str) and p:
            found.setdefault(p, []).append(row)
    out = []
    for p in declared:
        pid = p.get("id") if isinstance(p, dict) else None
        if isinstance(pid, str) and pid in found:
            out.append({"id": pid, "title": str(p.get("title") or pid), "description": str(p.get("description") or ""),
                        "advanced": p.get("advanced") is True, "rows": found.pop(pid)})
    for pid, members in found.items():          # a purpose newer than the list (should not happen)
        out.append({"id": pid, "title": group_title(pid), "description": "", "advanced": False, "rows": members})
    return out


def purpose_title(purpose: dict[str, Any]) -> str:
    """A purpose as the first list shows it ("Your own models (advanced)")."""
    return str(purpose["title"]) + (" (advanced)" if purpose.get("advanced") else "")


def purpose_of(catalog: Catalog, model_id: str) -> str:
    """The id of the purpose that offers ``model_id`` ("" when none does)."""
    for p in purposes(catalog):
        if any(r["id"] == model_id for r in p["rows"]):
            return str(p["id"])
    return ""


def first_runnable(rows: Sequence[Row]) -> str:
    """The model a purpose starts on: its first imported row (else its first; "" for none)."""
    for r in rows:
        if is_installed(r):
            return str(r["id"])
    return str(rows[0]["id"]) if rows else ""


def choice_label(row: Row) -> str:
    """A model's name among its purpose's choices ("2x, fast"), marked when not imported."""
    label = str(row.get("label") or row.get("title") or row["id"])
    return label if is_installed(row) else f"{label} ({NOT_IMPORTED})"


def model_help(row: Row) -> str:
    """The plain sentence under a model choice: its description, and the fix in words when it
    is not imported."""
    parts = [str(row.get("description") or "").strip()]
    if not is_installed(row):
        parts.append(IMPORT_FIX)
    return " ".join(p for p in parts if p)


def model_details(row: Row) -> str:
    """Which network it is, for those who want to know (a tooltip, not the dialog's text)."""
    title = str(row.get("title") or "")
    return f"Model: {title} [{row['id']}]" if title and title != row["id"] else f"Model: {row['id']}"


def scale_note(row: Optional[Row], scale: int) -> str:
    """What the host's scale does with this model, when it is not the obvious: a 2x model at
    1x is a detail pass; past the model's own scale the rest is ordinary resampling."""
    native = row.get("scale") if row else None
    if not isinstance(native, (int, float)) or isinstance(native, bool) or native <= 1:
        return ""
    n = int(native)
    if scale < n:
        return (f"The model enlarges {n}x; at {scale}x its result is brought back to size: a detail pass "
                "that keeps the image size.")
    if scale > n:
        return f"The model enlarges {n}x; the rest up to {scale}x is ordinary resampling."
    return ""


def snapshot_path(folder: Optional[str] = None) -> str:
    """Where the snapshot lives: beside this package unless ``folder`` says otherwise."""
    return os.path.join(folder or os.path.dirname(os.path.abspath(__file__)), SNAPSHOT)


def is_catalog(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("models"), list) \
        and isinstance(body.get("options", []), list)


def load_snapshot(folder: Optional[str] = None) -> Optional[Catalog]:
    """The catalog the installer saved, or None when there is none (or it is unreadable)."""
    try:
        with open(snapshot_path(folder), encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError):
        return None
    return body if is_catalog(body) else None


def save_snapshot(body: Catalog, folder: str) -> str:
    """Write ``body`` as the snapshot in ``folder``; returns the file written."""
    if not is_catalog(body):
        raise ValueError("not an engine catalog: expected {'models': [...], 'options': [...]}")
    path = snapshot_path(folder)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def engine_command(repo: str) -> list[str]:
    """The command that prints the engine's catalog (``enhancelayer tasks --json``) for the
    engine install.py put in ``<repo>/.venv``."""
    venv = os.path.join(repo, ".venv")
    exe = os.path.join(venv, "Scripts", "enhancelayer.exe") if sys.platform == "win32" \
        else os.path.join(venv, "bin", "enhancelayer")
    if os.path.exists(exe):
        return [exe, "tasks", "--json"]
    py = os.path.join(venv, "Scripts", "python.exe") if sys.platform == "win32" else os.path.join(venv, "bin", "python")
    return [py, "-m", "engine.cli", "tasks", "--json"]


def engine_catalog(argv: Sequence[str], cwd: Optional[str] = None, timeout: float = 180.0) -> Catalog:
    """Run ``argv`` (see :func:`engine_command`) and return the catalog it prints; RuntimeError
    saying why when it cannot (no engine installed, a failing engine, unreadable output)."""
    try:
        done = subprocess.run(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"cannot run {' '.join(argv)}: {e}") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{' '.join(argv)} failed (exit {done.returncode}): {tail[0][:300]}")
    try:
        body = json.loads(done.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    if not is_catalog(body):
        raise RuntimeError(f"{' '.join(argv)} printed no engine catalog")
    return body


def install_snapshot(folder: str, repo: str, catalog: Optional[Catalog] = None,
                     engine: Optional[Sequence[str]] = None) -> str:
    """What the installers do: save ``catalog`` (default: what ``engine`` prints, default: the
    engine in ``<repo>/.venv``) as the snapshot in ``folder``; returns the file written.
    RuntimeError when no engine answered."""
    if catalog is None:
        catalog = engine_catalog(list(engine) if engine else engine_command(repo), cwd=repo)
    return save_snapshot(catalog, folder)


def install_snapshot_or_warn(folder: str, repo: str, catalog: Optional[Catalog], engine: Optional[Sequence[str]],
                             host: str, without: str) -> Optional[str]:
    """:func:`install_snapshot` for an installer: the file written, or None with a warning on
    stderr that names the host and says what its plug-in does without a snapshot."""
    try:
        return install_snapshot(folder, repo, catalog, engine)
    except RuntimeError as e:
        print(f"EnhanceLayer ({host}): no engine catalog saved ({e}); {without}", file=sys.stderr)
        return None
