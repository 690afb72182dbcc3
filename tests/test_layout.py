"""The layout (src/__init__.py): rooms by stage, imports only downward, no cycle, nothing done at import time.

Imports are read from the source (every `import` and `from ... import`, at any depth, relative ones resolved),
so a deferred import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("src", "bench.lib")  # the project's importable code; the commands (main.py, bench/*.py) sit above it
ALLOWED_LINE = re.compile(r"^May import: (.+?)\.?$", re.MULTILINE)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of src/ and bench/lib/, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package.replace(".", "/")).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = project_modules()


def imported_modules(name: str, path: Path) -> set[str]:
    """The project modules `name` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import module`
        else:
            continue
        imported |= {target for target in targets if target in MODULES}
    return imported - {name}


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def room_of(name: str) -> str:
    """The room a module lives in: `src.data.kaggle` -> `data`; a command module at src's top level -> `src`;
    anything in bench/lib -> `bench.lib`."""
    if name.startswith("bench.lib"):
        return "bench.lib"
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and (REPO / "src" / parts[1]).is_dir() else "src"


ROOMS = sorted({room_of(name) for name in MODULES} - {"src", "bench.lib"})


def allowed_rooms(room: str) -> set[str]:
    """The rooms a room may import: those its package docstring names (`May import: core, data.`), and itself.
    The `python -m` commands at src's top level may import any room."""
    if room == "src":
        return set(ROOMS)
    package = f"src.{room}" if room != "bench.lib" else room
    docstring = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    match = ALLOWED_LINE.search(docstring)
    assert match, f"{MODULES[package]}: the docstring needs a line 'May import: <rooms>.'"
    words = match.group(1)
    if words == "nothing of the project":
        return {room}
    if words == "src (any room)":
        return set(ROOMS) | {room}
    rooms = {word.strip() for word in words.split(",")}
    assert rooms <= set(ROOMS), f"{MODULES[package]}: unknown room(s) {sorted(rooms - set(ROOMS))}"
    return rooms | {room}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph as [a, b, ..., a] (a imports b imports ... a), or None."""
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        return err.args[1][::-1]  # graphlib lists each node after the one it depends on
    return None


def wrong_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a room its own room does not allow (the package `src` itself aside)."""
    wrong = []
    for name, imported in graph.items():
        allowed = allowed_rooms(room_of(name))
        for target in sorted(imported - {"src"}):
            if room_of(target) not in allowed:
                wrong.append(f"{name} imports {target}: {MODULES[name].relative_to(REPO)} may import {sorted(allowed)}")
    return wrong


def test_every_room_says_what_it_owns_and_may_import():
    for room in ROOMS:
        docstring = ast.get_docstring(ast.parse(MODULES[f"src.{room}"].read_text())) or ""
        owns = docstring.split("May import:")[0].strip()
        assert len(owns.split()) >= 15, f"src/{room}/__init__.py: say in a paragraph what the room owns"
        allowed_rooms(room)


def test_no_module_imports_another_in_a_cycle():
    found = cycle(GRAPH)
    assert found is None, f"import cycle: {' imports '.join(found)}"


def test_rooms_are_floors_with_no_cycle_between_them():
    rooms = {room: allowed_rooms(room) - {room} for room in ROOMS}
    found = cycle(rooms)
    assert found is None, f"the rooms' docstrings allow a cycle: {' may import '.join(found)}"
    assert rooms["core"] == set(), "core is the ground floor and imports no other room"


def test_imports_run_only_to_the_rooms_a_room_allows():
    wrong = wrong_imports(GRAPH)
    assert not wrong, "\n".join(wrong)


def test_the_checks_catch_an_upward_import_and_the_cycle_it_makes():
    """The ground floor importing the engine breaks both rules; the product importing the benchmarks breaks one."""
    upward = {**GRAPH, "src.core.errors": GRAPH["src.core.errors"] | {"src.engine.train"}}
    assert cycle(upward) is not None
    assert wrong_imports(upward) == ["src.core.errors imports src.engine.train: src/core/errors.py may import ['core']"]
    into_bench = {**GRAPH, "src.engine.train": GRAPH["src.engine.train"] | {"bench.lib.detection"}}
    assert len(wrong_imports(into_bench)) == 1


def test_importing_every_module_does_no_work(tmp_path):
    """Importing the whole project in a fresh interpreter, from an empty folder, prints nothing and writes nothing."""
    names = sorted(name for name in MODULES if not name.endswith("__main__"))
    code = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + "".join(f"import {name}\n" for name in names)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []
