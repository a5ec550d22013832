"""The training loop stays readable top to bottom: measured on the source with ``ast``.

The loop function (``trainer.train``) is at most 60 lines, ``trainer.py`` at most 300, and no function
of ``ernie_cpt/training`` has a McCabe complexity above 15. Complexity is counted as ``mccabe`` and
ruff's C901 count it (``ruff check --select C901 --config 'lint.mccabe.max-complexity=15'`` agrees):
1, plus 1 for each ``if``/``elif``, loop, ``except`` clause, ``case`` but a final ``case _``, the
``else`` of a ``try``, and each function defined inside (whose body counts in the outer function's).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "ernie_cpt" / "training"
MAX_COMPLEXITY, MAX_LOOP_LINES, MAX_TRAINER_LINES = 15, 60, 300

BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _is_branch(node: ast.AST) -> bool:
    if isinstance(node, ast.match_case):  # a catch-all case is where the others fall through
        return not (isinstance(node.pattern, ast.MatchAs) and node.pattern.pattern is None and node.guard is None)
    return isinstance(node, BRANCHES) or (isinstance(node, ast.Try) and bool(node.orelse))


def complexity(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """McCabe's cyclomatic complexity of ``function``, as ``mccabe`` and ruff's C901 count it."""
    return 1 + sum(_is_branch(node) or (node is not function and isinstance(node, FUNCTIONS))
                   for node in ast.walk(function))


def functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, FUNCTIONS)]


def test_the_complexity_is_counted_as_mccabe_counts_it():
    source = '''
def f(items):
    for item in items:        # +1
        if item:              # +1
            continue
        elif item is None:    # +1
            break
    else:                     # a loop's else: no branch of its own
        pass
    try:
        pass
    except ValueError:        # +1
        pass
    except OSError:           # +1
        pass
    else:                     # +1
        pass
    match items:
        case []:              # +1
            pass
        case _:               # the catch-all: none
            pass
    def inner(x):             # +1, and its body (nothing)
        return x if x else 0  # conditional expressions, boolean operators and comprehensions: none
    return all(i and inner(i) for i in items if i)
'''
    (f, inner) = [node for node in ast.walk(ast.parse(source)) if isinstance(node, FUNCTIONS)]
    assert (complexity(f), complexity(inner)) == (9, 1)  # what ruff's C901 says


def test_no_function_of_the_training_package_is_too_complex():
    too_complex = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({complexity(node)})"
                   for path in sorted(TRAINING.glob("*.py")) for node in functions(path)
                   if complexity(node) > MAX_COMPLEXITY]
    assert too_complex == []


def test_the_training_loop_fits_on_a_screen():
    path = TRAINING / "trainer.py"
    (loop,) = [node for node in functions(path) if node.name == "train"]
    assert loop.end_lineno - loop.lineno + 1 <= MAX_LOOP_LINES
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_TRAINER_LINES
