"""The architecture rules of docs/internals.md, checked on the source (ast, no imports run):

- model kinds are told apart in one place: no ``family ==`` outside engine/models/registry.py;
- layers only import downwards (models never import tasks, the pipeline or the server, ...);
- no import cycles between engine modules at module level;
- the plug-ins hold no catalog model id and never import the engine;
- every task of the registry has a unique id and its own options do not clash with the common ones.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "engine"


def _module(p: Path) -> str:
    parts = p.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(p: Path, module_level_only: bool = False) -> set[str]:
    """engine.* modules imported by a file (``from engine import x`` counts as engine.x)."""
    tree = ast.parse(p.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and n.module.split(".")[0] == "engine":
            for a in n.names:
                out.add(f"{n.module}.{a.name}" if n.module == "engine" else n.module)
        elif isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name.split(".")[0] == "engine"}
    return out


def _engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def _under(mod: str, *prefixes: str) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


# (who, may not import) — lower layers never reach up
RULES = [
    (("engine.errors", "engine.paths"), ("engine",)),
    (("engine.options",), ("engine.models", "engine.tasks", "engine.pipeline", "engine.server", "engine.cli",
                           "engine.batch", "engine.doctor", "engine.review", "engine.imageio")),
    (("engine.models",), ("engine.tasks", "engine.pipeline", "engine.server", "engine.cli", "engine.batch",
                          "engine.doctor", "engine.review", "engine.imageio", "engine.options")),
    (("engine.pipeline.tiling", "engine.pipeline.blend", "engine.pipeline.formats"),
     ("engine.tasks", "engine.server", "engine.cli", "engine.batch", "engine.doctor")),
    (("engine.tasks",), ("engine.server", "engine.cli", "engine.batch", "engine.doctor")),
    (("engine.server",), ("engine.cli", "engine.batch", "engine.doctor")),
]
ALLOWED = {"engine.errors", "engine.paths"}      # anyone may import these


def test_no_family_switch_outside_the_model_registry() -> None:
    hits = []
    for p in [*_engine_files(), *sorted((REPO / "plugin").rglob("*.py"))]:
        if p == ENGINE / "models" / "registry.py":
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"family\s*[!=]=", line):
                hits.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert not hits, "model kinds must be asked of the task registry:\n" + "\n".join(hits)


@pytest.mark.parametrize("who,forbidden", RULES, ids=lambda x: x[0] if isinstance(x, tuple) else None)
def test_layers_import_only_downwards(who: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    bad = []
    for p in _engine_files():
        mod = _module(p)
        if not _under(mod, *who):
            continue
        for imp in _imports(p):
            if imp in ALLOWED or _under(imp, *who):
                continue
            if _under(imp, *forbidden):
                bad.append(f"{mod} imports {imp}")
    assert not bad, "\n".join(bad)


def test_no_module_level_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    mods = {_module(p): p for p in _engine_files()}
    for mod, p in mods.items():
        deps = set()
        for imp in _imports(p, module_level_only=True):
            while imp and imp not in mods:      # engine.models.catalog.ModelSpec -> engine.models.catalog
                imp = imp.rpartition(".")[0]
            if imp and imp != mod:
                deps.add(imp)
        graph[mod] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if _under(m, d):                    # a package's own __init__ is loaded first anyway
                continue
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(d):], d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_plugins_hold_no_model_id_and_do_not_import_the_engine() -> None:
    from engine import tasks

    every = tasks.all_tasks()
    # ids that are also a group name ("denoise" the model, "denoise" the task group) can't be told apart
    ids = {t.info.id for t in every} - {t.info.group for t in every} - {"identity"}
    for p in sorted((REPO / "plugin").rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        assert not any(imp for imp in _imports(p)), f"{p.relative_to(REPO)} imports the engine"
        if p.is_relative_to(REPO / "plugin" / "client"):
            continue            # the shared core may name the default model; the hosts may not
        found = sorted(i for i in ids if re.search(rf"[\"']{re.escape(i)}[\"']", text))
        assert not found, f"{p.relative_to(REPO)} hard-codes model ids {found}: ask the engine"


def test_task_ids_unique_and_own_options_do_not_shadow_common_ones() -> None:
    from engine import options, tasks

    every = tasks.all_tasks()
    ids = [t.info.id for t in every]
    assert len(ids) == len(set(ids))
    common = {o.name for o in options.COMMON}
    for t in every:
        own = [o.name for o in t.info.options]
        assert len(own) == len(set(own)), t.info.id
        assert not (set(own) & common), f"{t.info.id} redeclares a common option"
    # each module named in CLASSICAL defines exactly the task the registry returns
    for name in tasks.CLASSICAL:
        import importlib

        task = importlib.import_module(f"engine.tasks.{name}").TASK
        assert tasks.get(task.info.id) is task
