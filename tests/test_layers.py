"""Every module imports only from its own layer or the layers below it (DESIGN.md, "Shape of the code").

(base: leaf helpers such as extras.py) < models < jobs < store < learners < evals < hive < interfaces (the CLI, the package's front door,
the server, its browser pages and the benchmarks). Imports inside functions and under TYPE_CHECKING count too: a
lower layer that reaches up, even lazily, is the tangle this guards against.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "apiary"
LAYERS = ["base", "models", "jobs", "store", "learners", "evals", "hive", "interfaces"]
BASE = {"extras"}  # leaf helpers below every layer (which optional install a feature needs): they import no apiary module
INTERFACES = {"cli", "serve", "web", "bench", "__init__", "__main__"}


def layer_of(module: str) -> str:
    """`apiary.hive.mix` -> "hive"; `apiary.cli` / `apiary.serve.app` / `apiary` -> "interfaces"."""
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else "__init__"
    if part in INTERFACES:
        return "interfaces"
    if part in BASE:
        return "base"
    assert part in LAYERS, f"apiary.{part} is in no layer of DESIGN.md: add it to a layer"
    return part


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def apiary_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every `import apiary...` / `from apiary... import` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "apiary"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "apiary":
            if node.module == "apiary":  # `from apiary import hive` names a package, `from apiary import Hive` the front door
                found += [(node.lineno, f"apiary.{alias.name}" if alias.name in LAYERS + list(INTERFACES) else "apiary")
                          for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def violations(files: list[Path], layer_of_file) -> list[str]:
    found = []
    for path in files:
        own = layer_of_file(path)
        for line, module in apiary_imports(path):
            target = layer_of(module)
            if LAYERS.index(target) > LAYERS.index(own):
                found.append(f"{_shown(path)}:{line} ({own}) imports {module} ({target})")
    return found


def test_every_package_module_imports_only_its_own_or_lower_layers():
    files = sorted(PACKAGE.rglob("*.py"))
    assert files
    assert violations(files, lambda path: layer_of(module_name(path))) == []


def test_relative_imports_are_not_used_so_the_layer_check_sees_every_import():
    relative = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in sorted(PACKAGE.rglob("*.py"))
                for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert relative == []


def test_the_layer_check_catches_a_lower_layer_importing_a_higher_one(tmp_path):
    bad = tmp_path / "adapters.py"
    bad.write_text("import torch\n\ndef save():\n    from apiary.store.artifacts import replace_dir\n")
    assert violations([bad], lambda _path: "models") == [f"{bad}:4 (models) imports apiary.store.artifacts (store)"]
    assert violations([bad], lambda _path: "store") == []
