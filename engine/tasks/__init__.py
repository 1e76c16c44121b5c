"""The task registry: every capability of the engine, by id, and the options each one takes.

    from engine import tasks
    task = tasks.get("restore-dust")        # UnknownModel for a bad id
    tasks.all_tasks()                       # catalog networks, then classical tasks, then user models
    tasks.option_table(task)                # {name: Option} this task accepts

Network models come from the catalog (``engine/models/catalog.py``) and the user models folder;
classical tasks are the modules named in :data:`CLASSICAL`, each exposing ``TASK``. Adding a
classical task = its module + one line here + its test. The modules are imported on first
use, so ``enhancelayer serve`` starts without loading OpenCV.
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from typing import Any

from engine import options as _options
from engine.errors import UnknownModel
from engine.options import Option
from engine.tasks.base import (
    Task,
    TaskInfo,
    TaskOutput,
    TaskRequest,
    WholeImageTask,
    colour_result,
    declared_options,
    option_names,
    option_table,
    require_inputs,
)

# One line per classical task: the module under engine/tasks/ that defines TASK.
CLASSICAL: tuple[str, ...] = (
    "restore_dust",
    "restore_color",
    "descreen",
    "deblur",
    "deblur_focus",
    "restore_fill",
    "restore_stain",
    "colorize",
    "restore_chain",
    "identity",
)

__all__ = ["CLASSICAL", "Task", "TaskInfo", "TaskOutput", "TaskRequest", "WholeImageTask", "all_options",
           "all_tasks", "colour_result", "declared_options", "default_text", "get", "job_options", "option_names",
           "option_table", "published", "require_inputs", "USER_PREFIX"]

USER_PREFIX = "user:"
_lock = threading.Lock()
_classical: dict[str, Task] | None = None


def _load_classical() -> dict[str, Task]:
    global _classical
    with _lock:
        if _classical is None:
            found: dict[str, Task] = {}
            for name in CLASSICAL:
                task: Task = importlib.import_module(f"engine.tasks.{name}").TASK
                if task.info.id in found:
                    raise AssertionError(f"two tasks have the id {task.info.id!r} (bug)")
                found[task.info.id] = task
            _classical = found
        return _classical


def _network(model_id: str) -> Task:
    from engine.models import catalog
    from engine.tasks.network import NetworkTask

    return NetworkTask(catalog.get(model_id))


def _user(model_id: str) -> Task:
    from engine.models import registry
    from engine.models.backends import user_spec
    from engine.tasks.network import NetworkTask

    path = registry.user_model_path(model_id)       # UnknownModel when the file is not there
    return NetworkTask(user_spec(path), user_path=path)


def get(task_id: str) -> Task:
    """The task with this id; UnknownModel (with the command that lists the ids) otherwise."""
    if not isinstance(task_id, str) or not task_id:
        raise UnknownModel("no model id given: run 'enhancelayer models' to list the ids")
    if task_id.startswith(USER_PREFIX):
        return _user(task_id)
    classical = _load_classical()
    if task_id in classical:
        return classical[task_id]
    return _network(task_id)


def all_tasks() -> list[Task]:
    """Catalog networks, then classical tasks, then user models (the order the lists show)."""
    from engine.models import catalog, registry
    from engine.tasks.network import NetworkTask

    out: list[Task] = [NetworkTask(spec) for spec in catalog.CATALOG]
    out += list(_load_classical().values())
    for p in registry.user_models():
        try:
            out.append(_user(USER_PREFIX + p.stem))
        except UnknownModel:
            pass
    return out


def all_options() -> list[Option]:
    """Every option of every task, each once (as declared: the defaults are the table's, a
    task's own are in its row), with the ids of the tasks that use it."""
    from dataclasses import replace

    users: dict[str, list[str]] = {}
    rows: dict[str, Option] = {}
    for task in all_tasks():
        for name, opt in declared_options(task).items():
            prev = rows.get(name)
            if prev is not None and replace(prev, tasks=()) != replace(opt, tasks=()):
                raise AssertionError(f"option {name!r} is declared differently by two tasks (bug)")
            rows.setdefault(name, opt)
            users.setdefault(name, []).append(task.info.id)
    return [replace(o, tasks=tuple(users[n])) for n, o in rows.items()]


def job_options(task_id: str, declared: Sequence[Option] = ()) -> dict[str, Option]:
    """Every option a job may name, each starting at ``task_id``'s default where the task has
    its own (``TaskInfo.defaults``): what the HTTP API and the pipeline fill in for an option a
    job leaves out. An unknown id gets the table's defaults (it is refused elsewhere, by name).
    ``declared``: :func:`all_options` when the caller holds it already (the HTTP header's, made
    at import), so a request does not list every task (and the user's model folder) again."""
    table = {o.name: o for o in (declared or all_options())}
    try:
        task = get(task_id)
    except UnknownModel:
        return table
    table.update(option_table(task))
    return table


def default_text(option: Option) -> str:
    """The option's default in words, with the tasks that start it elsewhere: "60; 100 for
    restore-dust, descreen"; one wording for ``run --help``, ``tasks --table`` and the API schema."""
    def show(v: Any) -> str:
        if v is None:
            return "automatic"
        if isinstance(v, bool):
            return "on" if v else "off"
        if isinstance(v, (tuple, list)):
            return ",".join(v) or "none"
        return f"{v:g}" if isinstance(v, float) else str(v)

    by_value: dict[str, list[str]] = {}
    for task in all_tasks():
        for name, value in task.info.defaults:
            if name == option.name:
                by_value.setdefault(show(value), []).append(task.info.id)
    own = "; ".join(f"{v} for {', '.join(ids)}" for v, ids in by_value.items())
    return show(option.default) + (f"; {own}" if own else "")


def published() -> dict[str, Any]:
    """The body of ``GET /v1/models`` and ``enhancelayer tasks --json``: every task's row, the
    option table and the purposes (engine/purposes.py), so plug-ins build their dialogs from
    what the engine says; each row also carries this machine's speed estimate (engine/speed.py)
    and ``engine.gpu`` says whether a GPU runs the default device."""
    from engine import purposes, speed

    book = speed.book()
    rows = []
    for task in all_tasks():
        row = task.row()
        ms, basis = book.estimate(task.info.id, task.info.ms_per_mp_cpu)
        row["ms_per_mp"], row["speed_basis"] = round(ms, 1), basis
        rows.append(row)
    return {"models": rows, "options": _options.publish(all_options()), "purposes": purposes.publish(),
            "engine": {"gpu": _gpu()}}


def _gpu() -> str:
    """The GPU runtime the default device uses ("" when it runs on the CPU)."""
    try:
        from engine.models.backends.onnx_backend import GPU_PROVIDERS, resolve_device

        key = resolve_device("auto")
    except Exception:  # noqa: BLE001 - no runtime installed: no GPU either
        return ""
    return key if key in GPU_PROVIDERS else ""
