"""The shape of the code: no import cycles, no module reaching into another's private names.

Both are read from the source with `ast` (imports anywhere in a file count, lazy ones too).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("acestep_engine", "workbench")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path) -> set[str]:
    """Our modules that `module` imports (`from .x import y` counts x, and x.y when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            targets = submodules if len(submodules) == len(node.names) else [base] + submodules
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# Known cycles, to be removed (none now).
KNOWN_CYCLES: list[list[str]] = []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package):
    # Package __init__ files count too: a module importing its own package root would close a loop.
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    assert graph["acestep_engine.engine"] and "acestep_engine.engine" not in graph["acestep_engine.tasks.base"]
    found = [c for c in _cycles(graph) if c[0].split(".")[0] == package]
    known = [c for c in KNOWN_CYCLES if c[0].split(".")[0] == package]
    assert [c for c in found if c not in known] == [], "a new import cycle"
    assert [c for c in known if c not in found] == [], "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_the_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _private_definitions() -> dict[str, set[str]]:
    """Private names each module defines: top-level `_name`s and `self._name` attributes."""
    out = {}
    for module, path in MODULES.items():
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
                    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                            and target.value.id == "self":
                        names.add(target.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
        out[module] = {n for n in names if n.startswith("_") and not n.startswith("__")}
    return out


def _foreign_private_uses() -> list[str]:
    defined = _private_definitions()
    problems = []
    for module, path in MODULES.items():
        own = defined[module]
        others = set().union(*(names for m, names in defined.items() if m != module)) - own
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path, node)
                if target.split(".")[0] in PACKAGES and target != module:
                    problems += [f"{module}: from {target} import {a.name}" for a in node.names
                                 if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and node.attr in others:
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                if owner not in ("self", "cls"):
                    problems.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    return problems


def test_no_module_reaches_into_another_modules_private_names():
    assert _foreign_private_uses() == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_seen(package):
    assert sum(m.split(".")[0] == package for m in MODULES) >= 5
