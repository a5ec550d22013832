"""Start-up: ``--help``, ``--version``, ``COMMAND --help`` and ``plan`` load none of the heavy libraries.

Each case runs in a fresh interpreter (this test process has them all loaded) and reports which
of torch, transformers, datasets and spaCy are in ``sys.modules`` when the command is done.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "transformers", "datasets", "spacy", "sklearn", "matplotlib"]
SCRIPT = """
import json, sys
from ernie_cpt.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def _run(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"],
    *([command, "--help"] for command in ("prepare", "inspect-task", "plan", "pretrain", "export", "finetune",
                                          "compare")),
    ["plan", "--schedule", "sequential", "--tasks", "knowledge_masking", "capitalization", "--steps-per-task", "9"],
], ids=lambda argv: " ".join(argv[:2]))
def test_loads_no_heavy_library(argv):
    assert _run(*argv) == {"code": 0, "loaded": []}


def test_a_bad_option_of_plan_is_reported_without_loading_them():
    out = _run("plan", "--schedule", "sequentail", "--tasks", "knowledge_masking")
    assert out == {"code": 2, "loaded": []}


def test_version_is_the_package_version(capsys):
    from importlib.metadata import version

    from ernie_cpt.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"ernie-cpt {version('ernie-cpt')}"
