"""The shape of the code: the engine's wings import only the wings below them, no import cycles, no
module reaching into another's private names.

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
    assert graph["acestep_engine.engine"] and "acestep_engine.engine" not in graph["acestep_engine.generation.tasks.base"]
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


# ------------------------------------------------------------------------------------------- wings
# The engine's wings (docs/architecture.md) and what each may import. The words every wing shares sit
# at the top of the package; the front door (the package root, `engine`, `cli`, a wing's `__main__`
# command) may import anything and nothing imports it.
SHARED = {"acestep_engine.errors", "acestep_engine.progress", "acestep_engine.blueprint",
          "acestep_engine.json_files", "acestep_engine.arguments"}
FRONT_DOOR = {"acestep_engine", "acestep_engine.engine", "acestep_engine.cli", "acestep_engine.render",
              "acestep_engine.render.plan", "acestep_engine.render.work", "acestep_engine.render.runner",
              "acestep_engine.render.board", "acestep_engine.render.summary", "acestep_engine.render.worker"}
WINGS = ("runtime", "takes", "models", "generation", "lm", "lora")
MAY_IMPORT = {
    "shared": set(),
    "runtime": set(),
    "takes": set(),
    "models": {"runtime"},
    "generation": {"runtime", "takes", "models"},
    "lm": {"runtime", "takes", "models", "generation"},
    "lora": {"runtime", "takes", "models", "generation"},
}


def _place(module: str) -> str:
    """'shared', 'front door', a wing's name, or 'workbench'."""
    if module.split(".")[0] == "workbench":
        return "workbench"
    if module in SHARED:
        return "shared"
    if module in FRONT_DOOR or module.endswith(".__main__"):
        return "front door"
    wing = module.split(".")[1]
    assert wing in WINGS, f"{module} is in no wing: put it in one (docs/architecture.md says where)"
    return wing


def _wing_breaches(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for module, targets in graph.items():
        here = _place(module)
        if here in ("front door", "workbench"):
            continue
        for target in targets:
            there = _place(target)
            if there == "workbench" or there == "front door":
                out.append(f"{module} ({here}) imports {target} ({there})")
            elif there != here and there != "shared" and there not in MAY_IMPORT[here]:
                out.append(f"{module} ({here}) imports {target} ({there})")
    return sorted(out)


def test_every_engine_module_is_in_a_wing_or_at_the_top():
    top = {m for m in MODULES if m.count(".") == 1 and m.startswith("acestep_engine.")} \
        - {f"acestep_engine.{wing}" for wing in WINGS}
    assert top == {m for m in SHARED | FRONT_DOOR if m.count(".") == 1}, "a loose module at the top of the engine"
    for module in MODULES:
        if module.startswith("acestep_engine"):
            _place(module)


def test_wings_import_only_the_wings_below_them():
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    assert _wing_breaches(graph) == []


def test_the_wing_rule_finds_a_breach():
    graph = {"acestep_engine.takes.store": {"acestep_engine.generation.pipeline", "acestep_engine.errors"},
             "acestep_engine.models.loader": {"acestep_engine.runtime.parking"},
             "acestep_engine.runtime.hardware": {"acestep_engine.engine"},
             "acestep_engine.generation.pipeline": {"workbench.app"}}
    assert _wing_breaches(graph) == [
        "acestep_engine.generation.pipeline (generation) imports workbench.app (workbench)",
        "acestep_engine.runtime.hardware (runtime) imports acestep_engine.engine (front door)",
        "acestep_engine.takes.store (takes) imports acestep_engine.generation.pipeline (generation)"]


def test_the_wing_order_has_no_cycle():
    assert _cycles({wing: MAY_IMPORT[wing] for wing in MAY_IMPORT}) == []


def test_the_engine_never_imports_widgets():
    for module, path in MODULES.items():
        if module.startswith("acestep_engine"):
            text = path.read_text()
            assert "ipywidgets" not in text and "anywidget" not in text, module


PUBLIC_API = ["AceStepError", "Blueprint", "BlueprintError", "CheckpointError", "Complete", "Cover", "Engine",
              "Extend", "Extract", "ExtractAll", "GenerationCancelled", "GenerationError", "GenerationSettings",
              "Lego", "LoRAError", "MissingCheckpointError", "Progress", "Regions", "Repaint", "Section", "Sections",
              "Take", "TakeStore", "TakeStoreError", "TaskError", "Text2Music", "__version__", "take_sections"]


def test_the_front_door_names_stay_and_each_wing_exports_its_own():
    import importlib

    import acestep_engine

    assert sorted(acestep_engine.__all__) == sorted(PUBLIC_API)
    assert all(getattr(acestep_engine, name, None) is not None for name in PUBLIC_API)
    for wing in WINGS:
        package = importlib.import_module(f"acestep_engine.{wing}")
        for name in package.__all__:
            value = getattr(package, name)
            owner = getattr(value, "__module__", None)
            assert owner is None or owner.startswith(f"acestep_engine.{wing}") or not callable(value), \
                f"acestep_engine.{wing} exports {name} from {owner}: export only the wing's own names"
    from acestep_engine.generation import GenerationSettings
    from acestep_engine.takes import TakeStore
    assert GenerationSettings is acestep_engine.GenerationSettings and TakeStore is acestep_engine.TakeStore
