"""Start-up: ``--help``, ``--version``, ``plan`` and the ``--help`` of the commands that train nothing
load none of the heavy libraries; the training commands' ``--help`` loads torch only.

The training commands' options include each architecture's and loss weighting's own, declared next to
its code (an ``nn.Module``), so listing them imports those modules and torch (README: Start-up and
plugins); never transformers, datasets, spaCy, scikit-learn or matplotlib. Each case runs in a fresh
interpreter (this test process has them all loaded) and reports which of them are in ``sys.modules``
when the command is done.
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
    *([command, "--help"] for command in ("prepare", "inspect-task", "plan", "export")),
    ["plan", "--schedule", "sequential", "--tasks", "knowledge_masking", "capitalization", "--steps-per-task", "9"],
], ids=lambda argv: " ".join(argv[:2]))
def test_loads_no_heavy_library(argv):
    assert _run(*argv) == {"code": 0, "loaded": []}


@pytest.mark.parametrize("command", ["pretrain", "finetune", "compare"])
def test_the_training_commands_help_loads_torch_for_the_plugins_options_and_nothing_else(command):
    assert _run(command, "--help") == {"code": 0, "loaded": ["torch"]}


def test_a_bad_option_of_plan_is_reported_without_loading_them():
    out = _run("plan", "--schedule", "sequentail", "--tasks", "knowledge_masking")
    assert out == {"code": 2, "loaded": []}


def test_version_is_the_package_version(capsys):
    from importlib.metadata import version

    from ernie_cpt.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"ernie-cpt {version('ernie-cpt')}"
