"""Imports run one way (DESIGN.md): runtime -> nothing of ours, zoo -> runtime, training -> runtime,
export -> training + runtime; the command line (posezoo.runtime.cli) is a leaf nothing imports.

Every import statement of the package is parsed, lazy ones inside functions and TYPE_CHECKING
blocks included, so a wrong-way import fails here even if no test happens to run it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"runtime": "posezoo.runtime", "zoo": "posezoo.zoo", "training": "posezoo.training",
            "export": "posezoo.export"}
CLI = "posezoo.runtime.cli"
#: which of our packages each package may import (itself always)
ALLOWED = {"posezoo.runtime": set(), "posezoo.zoo": {"posezoo.runtime"}, "posezoo.training": {"posezoo.runtime"},
           "posezoo.export": {"posezoo.training", "posezoo.runtime"}}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, dotted in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([dotted, *parts])] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import posezoo.runtime.x.y` names its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_imports_run_one_way_and_nothing_imports_the_command_line():
    wrong = []
    for name, targets in _graph().items():
        in_cli = name == CLI or name.startswith(CLI + ".")
        for target in targets:
            to_cli = target == CLI or target.startswith(CLI + ".")
            if to_cli and not in_cli:
                wrong.append(f"{name} imports the command line ({target})")
            elif not in_cli and not to_cli and _package(target) != _package(name) \
                    and _package(target) not in ALLOWED[_package(name)]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports against the direction of DESIGN.md:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_and_relative_imports():
    graph = _graph()
    assert "posezoo.runtime.model" in graph["posezoo.runtime.video"]  # relative, top level
    assert "posezoo.export" in graph["posezoo.runtime.cli.training"]  # absolute, inside a function
    assert "posezoo.zoo.resolve" in graph["posezoo.runtime.cli.zoo"]


def test_light_packages_import_no_framework_or_engine():
    code = ("import sys, posezoo.runtime, posezoo.zoo, posezoo.runtime.cli; "
            "posezoo.runtime.cli.build_parser(); "
            "bad = {m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'ray', 'submitit')}; "
            "bad |= {m for m in sys.modules if m.startswith(('posezoo.training', 'posezoo.export'))}; "
            "assert not bad, sorted(bad)")
    subprocess.run([sys.executable, "-c", code], check=True)
