"""Third-party plugins: packages found only through the entry-point group ``ernie_cpt.plugins``.

Each test "installs" plugin packages as pip would for the subprocess it runs: a ``*.dist-info`` folder
with an ``entry_points.txt`` on its PYTHONPATH, beside the packages in tests/data/plugins (a task, an
architecture with an option of its own, a loss weighting, and one that fails to import) or packages it
writes itself. No file of ernie_cpt/ knows them, and this process never imports them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.checkpoint import LATEST, checkpoints
from ernie_cpt.training.run_log import read_records

PLUGINS = Path(__file__).resolve().parents[1] / "data" / "plugins"
ALL = {"ernie-cpt-truecasing": "truecasing_task", "ernie-cpt-tied-towers": "tied_towers",
       "ernie-cpt-gls": "gls_weighting", "ernie-cpt-broken": "broken_plugin"}


def install(site: Path, plugins: dict[str, str], *paths: Path) -> dict[str, str]:
    """The environment of a subprocess that has ``plugins`` (distribution -> module) installed in ``site``,
    their modules found in tests/data/plugins or ``paths``."""
    for distribution, module in plugins.items():
        info = site / f"{distribution.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[ernie_cpt.plugins]\n{module} = {module}\n")
    path = [str(site), *map(str, paths), str(PLUGINS), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ernie_cpt", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def warnings_of(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if "is not loaded" in line]


def pretrain_args(sample_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:2]], "--output-dir",
            str(run_dir), "--model-size", "tiny", "--batch-size", "8", "--learning-rate", "1e-3", "--logging-steps",
            "1", "--eval-steps", "0", "--eval-fraction", "0", "--vocab-size", "2000", "--seed", "5",
            "--num-threads", "1", "--max-seq-length", "64", *extra]


def test_plugins_are_listed_with_their_options_and_a_broken_one_is_one_warning(tmp_path):
    env = install(tmp_path / "site", ALL)
    done = cli("plan", "--tasks", "knowledge_masking", "truecasing", "--max-steps", "10", env=env)
    assert "| truecasing |" in done.stdout.splitlines()[2]
    assert len(warnings_of(done)) == 1, done.stderr
    assert warnings_of(done)[0].startswith("ernie-cpt: plugin ernie-cpt-broken is not loaded: entry point "
                                           "broken_plugin = broken_plugin raised ImportError: this plugin needs "
                                           "the package 'missing-dependency'; fix or uninstall ernie-cpt-broken")
    help_text = " ".join(cli("pretrain", "--help", env={**env, "COLUMNS": "10000"}).stdout.split())  # unwrapped
    assert "truecasing: each word's case: lower, Title or UPPER (Lita et al. 2003)" in help_text  # --tasks
    assert "tied_towers: a tower of the top --expert-layers layers per task" in help_text  # --architecture
    assert "gls: the geometric mean of the task losses (Chennupati et al. 2019)" in help_text  # --loss-weighting
    assert "Architecture tied_towers: --tied-towers-weight TIED_TOWERS_WEIGHT" in help_text  # its own group
    assert "--truecasing-min-upper TRUECASING_MIN_UPPER" in help_text
    assert ("asymmetric/cgc/cross_stitch/customized/ml_mmoe/mmoe/ple/sluice/soft_sharing/tied_towers: how many of "
            "the top encoder layers") in help_text


PLUGIN = """
from dataclasses import dataclass

from ernie_cpt.options import option
from schedules.curricula.base import register, spread

{body}
"""
BAD = {
    # registers a name ernie-cpt has: left out whole, its other curriculum too
    "taken_name": """
@register("reverse", summary="the tasks alone, last first")
def reverse(tasks, budgets, options, settings=None):
    return spread([[task] for task in reversed(tasks)], budgets, options.stage_allocation)


@register("joint", summary="a second joint")
def joint(tasks, budgets, options, settings=None):
    return spread([tasks], budgets, options.stage_allocation)
""",
    # names an architecture "all", which compare --architectures reads as every architecture
    "reserved_name": """
from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.hard import HardSharing


@ARCHITECTURES.register("all", summary="hard sharing under a name compare reserves")
class All(HardSharing):
    pass
""",
    # declares an option with the name of a framework option: left out when the options are gathered
    "clashing_option": """
@dataclass
class Budget:
    max_steps: int = option(3, "steps")


@register("clashing", summary="one that declares --max-steps", options_class=Budget)
def clashing(tasks, budgets, options, settings=None):
    return spread([tasks], budgets, options.stage_allocation)
""",
}


def test_a_plugin_that_takes_a_name_or_an_option_is_left_out_with_one_warning(tmp_path):
    for module, body in BAD.items():
        (tmp_path / "code" / module).mkdir(parents=True)
        (tmp_path / "code" / module / "__init__.py").write_text(PLUGIN.format(body=body))
    env = install(tmp_path / "site", {f"ernie-cpt-{module}": module for module in BAD}, tmp_path / "code")
    done = cli("plan", "--help", env={**env, "COLUMNS": "10000"})
    text = " ".join(done.stdout.split())
    assert "reverse:" not in text and "clashing:" not in text and "joint: (A,B,C)" in text
    assert sorted(warnings_of(done)) == [
        "ernie-cpt: plugin ernie-cpt-clashing_option is not loaded: its schedule clashing declares --max-steps, an "
        "option TrainingOptions has; rename it; fix or uninstall ernie-cpt-clashing_option",
        "ernie-cpt: plugin ernie-cpt-reserved_name is not loaded: entry point reserved_name = reserved_name raised "
        "ValueError: architecture name 'all' is reserved: choose another name; fix or uninstall "
        "ernie-cpt-reserved_name",
        "ernie-cpt: plugin ernie-cpt-taken_name is not loaded: entry point taken_name = taken_name raised "
        "ValueError: schedule 'joint' is registered twice; fix or uninstall ernie-cpt-taken_name"]


@pytest.mark.slow
def test_a_plugin_task_architecture_and_weighting_train_end_to_end(sample_dir, tmp_path):
    env, run_dir = install(tmp_path / "site", ALL), tmp_path / "run"
    cli(*pretrain_args(sample_dir, run_dir, "--tasks", "knowledge_masking", "truecasing", "--architecture",
                       "tied_towers", "--expert-layers", "1", "--tied-towers-weight", "0.5", "--task-mixing", "all",
                       "--loss-weighting", "gls", "--max-steps", "4", "--truecasing-min-upper", "3"), env=env)
    assert json.loads((run_dir / "tasks.json").read_text()) == {
        "task_ids": {"knowledge_masking": 0, "truecasing": 7}, "task_embedding_size": 8}
    config = json.loads((run_dir / "run_config.json").read_text())
    assert (config["architecture"], config["tied_towers_weight"], config["truecasing_min_upper"]) == (
        "tied_towers", 0.5, 3)
    assert json.loads((run_dir / "architecture.json").read_text())["tied_towers_weight"] == 0.5  # the model's own
    losses = {r["step"]: r["losses"] for r in read_records(run_dir, "train")}
    assert len(losses) == 2 and all(set(step) == {"knowledge_masking", "truecasing"} for step in losses.values())
    # GLS: w_i = G / (n L_i), so every task adds G / n, half the geometric mean of the two losses
    for record in read_records(run_dir, "weights"):
        step = losses[record["step"]]
        half_mean = (step["knowledge_masking"] * step["truecasing"]) ** 0.5 / 2
        assert [record["weights"][task] * step[task] for task in step] == pytest.approx([half_mean] * 2, rel=1e-5)
    cli("export", str(run_dir), str(tmp_path / "export"), env=env)
    described = json.loads((tmp_path / "export" / "ernie_cpt_model.json").read_text())
    assert described["architecture"]["architecture"] == "tied_towers"
    assert described["task_ids"] == {"knowledge_masking": 0, "truecasing": 7}


@pytest.mark.slow
def test_installing_plugins_changes_nothing_about_an_existing_run(sample_dir, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    args = ["--tasks", "knowledge_masking", "capitalization", "--max-steps", "4", "--save-steps", "2"]
    assert main(pretrain_args(sample_dir, reference, *args)) == 0  # in this process: no plugin installed
    shutil.copytree(reference, resumed)
    for path in checkpoints(resumed):  # as if killed just after its checkpoint at step 2
        if int(path.name.split("-")[1]) > 2:
            shutil.rmtree(path)
    (resumed / "checkpoints" / LATEST).write_text("step-00000002\n")
    env = install(tmp_path / "site", ALL)
    cli(*pretrain_args(sample_dir, resumed, *args, "--resume"), env=env)
    records = [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(reference, "train")]
    assert [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(resumed, "train")] == records
    assert (resumed / "tasks.json").read_text() == (reference / "tasks.json").read_text()
    assert main(["export", str(reference), str(tmp_path / "without")]) == 0
    cli("export", str(reference), str(tmp_path / "with"), env=env)
    for name in ("config.json", "model.safetensors", "ernie_cpt_model.json"):
        assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "without" / name).read_bytes(), name
