"""The core stays pure: nothing under controller/ imports a controller framework."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"ryu", "os_ken", "eventlet"}
CORE = Path(__file__).resolve().parent.parent / "controller"


def test_controller_imports_no_framework() -> None:
    """controller/ must import neither ryu, os_ken nor eventlet, so it runs under either."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert len(list(CORE.rglob("*.py"))) > 5  # the scan really looked at the core
