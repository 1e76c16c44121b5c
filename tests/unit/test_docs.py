"""The docs say what the code does: the option table in docs/api.md lists exactly the engine's
options with their defaults, and docs/internals.md names every engine module."""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _api_option_rows() -> dict[str, str]:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    head = text.index("| option | type | default |")
    rows = {}
    for line in text[head:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[2]
    return rows


def test_api_doc_lists_every_option_with_its_default() -> None:
    from engine import tasks

    rows = _api_option_rows()
    table = {o.name: o for o in tasks.all_options()}
    assert set(rows) == set(table), f"docs/api.md options {sorted(rows)} != engine {sorted(table)}"
    for name, opt in table.items():
        d = opt.default
        if isinstance(d, tuple):                      # a multi option: its JSON list
            shown = json.dumps(list(d))
        else:
            shown = "null" if d is None else (str(d).lower() if isinstance(d, bool) else f"{d:g}")
        assert rows[name].startswith(shown), f"{name}: docs say default {rows[name]!r}, engine {shown!r}"
    for task in tasks.all_tasks():                     # a task's own default is named in the cell
        for name, value in task.info.defaults:
            assert f"{value:g} for" in rows[name] and f"`{task.info.id}`" in rows[name], \
                f"{name}: docs/api.md does not say that {task.info.id} starts it at {value:g}"


def test_internals_doc_names_every_engine_module() -> None:
    text = (REPO / "docs" / "internals.md").read_text(encoding="utf-8")
    missing = []
    for p in sorted((REPO / "engine").rglob("*.py")):
        rel = p.relative_to(REPO).as_posix()
        if p.name == "__init__.py" and p.parent.name in ("convert", "server"):
            continue      # package markers; their modules are listed
        if rel not in text:
            missing.append(rel)
    assert not missing, f"docs/internals.md does not describe: {missing}"
