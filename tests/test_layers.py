"""The package layers import downward only: a newcomer can read them bottom to top.

Every import in the code (module level and inside functions) is checked against this order;
a module may import its own layer and the layers below it, never one above. The package's
``__init__`` is the exception that proves it: it lists the public names of every layer (loaded
when first used), as the top layer does.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. A module belongs to the first (longest) prefix that matches its dotted name.
LAYERS = [
    ["ernie_cpt.errors", "ernie_cpt.registry", "ernie_cpt.options", "ernie_cpt.distributed", "ernie_cpt"],
    ["ernie_cpt.data"],
    ["pretasks", "schedules"],
    ["ernie_cpt.modeling"],
    ["ernie_cpt.weighting"],
    ["ernie_cpt.training"],
    ["ernie_cpt.evaluation"],
    ["ernie_cpt.commands", "ernie_cpt.config", "ernie_cpt.builders"],
    ["ernie_cpt.cli", "ernie_cpt.__main__", "ernie_cpt.api"],
]
FACADE = "ernie_cpt"  # the package's __init__: the public names, re-exported lazily from every layer


def layer_of(module: str) -> int | None:
    matches = [(len(prefix), i) for i, prefixes in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("ernie_cpt", "pretasks", "schedules"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_every_module_has_a_layer():
    assert [module for module in _modules() if layer_of(module) is None] == []


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, path in _modules().items():
        own = len(LAYERS) - 1 if module == FACADE else layer_of(module)
        for name in _imports(path):
            target = layer_of(name)
            if target is not None and target > own:
                upward.append(f"{module} (layer {own}) imports {name} (layer {target})")
    assert upward == []
