"""The core stays pure and layered: no framework, no I/O, no import cycle, the facade on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "controller"
FRAMEWORKS = {"ryu", "os_ken", "eventlet"}
# I/O and concurrency belong to the shell (apps/): storage, sockets, threads, processes, files
IO_MODULES = {"sqlalchemy", "sqlite3", "socket", "ssl", "select", "selectors", "asyncio",
              "threading", "multiprocessing", "concurrent", "subprocess", "os", "shutil",
              "pathlib", "io", "tempfile", "urllib", "http", "requests", "logging", "signal"}
CLOCK_CALLS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"),
               ("time", "sleep"), ("datetime", "now"), ("datetime", "utcnow"),
               ("date", "today")}
IO_BUILTINS = {"open", "print", "input", "exec", "eval", "breakpoint"}
# the layers, lowest first: a module may import from its own layer (no cycle) or those below
LAYERS = (("errors", "validate", "jsonbody"), ("model", "intents", "writes", "limits", "logcfg",
                                              "channel"),
          ("auth", "cluster"),
          ("network",), ("selection",), ("instances",), ("dataplane",), ("config",),
          ("core", "health", "located"),
          ("views", "trackview", "admission", "reload", "observer"), ("api",))


def _modules() -> dict[str, ast.Module]:
    """Every module under controller/ by dotted name, parsed."""
    out = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _imports(tree: ast.Module) -> list[str]:
    """Absolute names a module imports (`from a.b import c` counts as a.b and a.b.c)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _layer(module: str) -> int:
    """The layer index of a controller module (by its first component below `controller`)."""
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS: place it")


MODULES = _modules()


def test_the_scan_sees_the_core() -> None:
    """The scans below really look at the core's sub-packages."""
    assert {"controller.core", "controller.network.topology", "controller.dataplane.modes",
            "controller.selection.engine", "controller.instances.liveness"} <= set(MODULES)


@pytest.mark.parametrize("banned", [FRAMEWORKS, IO_MODULES], ids=["framework", "io"])
def test_controller_imports_no_framework_and_no_io(banned: set[str]) -> None:
    """controller/ imports neither a framework nor an I/O or threading module."""
    offenders = [f"{m}: {n}" for m, tree in MODULES.items() for n in _imports(tree)
                 if n.split(".")[0] in banned]
    assert offenders == []


def test_controller_reads_no_clock_and_opens_nothing() -> None:
    """Time is a parameter (`now`) and files are the shell's: no clock read, no open()."""
    offenders = []
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in IO_BUILTINS:
                offenders.append(f"{name}: {func.id}()")
            elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                  and (func.value.id, func.attr) in CLOCK_CALLS):
                offenders.append(f"{name}: {func.value.id}.{func.attr}()")
    assert offenders == []


def test_no_import_cycle_inside_controller() -> None:
    """The module import graph under controller/ has no cycle."""
    graph = {m: {n for n in _imports(t) if n in MODULES and n != m} for m, t in MODULES.items()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(node):], node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


def test_layers_only_import_downwards() -> None:
    """Values below features, features below config, the facade and the API on top; a
    feature package never imports one above it, so sub-packages form no cycle."""
    offenders = []
    for module, tree in MODULES.items():
        if module == "controller":
            continue
        for name in _imports(tree):
            if name in MODULES and name != "controller" and _layer(name) > _layer(module):
                offenders.append(f"{module} -> {name}")
    assert offenders == []


def test_no_module_over_400_lines_and_a_thin_facade() -> None:
    """Small modules; the facade stays well under the limit."""
    lengths = {p.name: len(p.read_text().splitlines()) for p in CORE.rglob("*.py")}
    assert max(lengths.values()) <= 400, lengths
    assert lengths["core.py"] <= 330


def test_every_subpackage_states_its_boundary() -> None:
    """Each sub-package opens with a docstring that says what it answers."""
    for init in CORE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "Boundary" in doc, init
