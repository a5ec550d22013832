"""``ernie-cpt plan``: the stage table of each curriculum for the seven tasks, and its one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ernie_cpt.cli import main
from ernie_cpt.commands.plan import plan_table
from schedules.stage import Stage

SEVEN = ["knowledge_masking", "capitalization", "token_document_relation", "sentence_reordering",
         "sentence_distance", "discourse_relation", "ir_relevance"]


def run(capsys, *argv: str) -> tuple[str, list[list[str]]]:
    """The header line and the table's rows (cells stripped, the alignment row dropped) of ``plan``."""
    capsys.readouterr()
    assert main(["plan", *argv]) == 0
    out = capsys.readouterr().out
    header, blank, *table = out.splitlines()
    assert blank == ""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
    assert set(rows[1][0]) == {"-", ":"}
    return header, [rows[0], *rows[2:]]


def numbers(row: list[str]) -> list[int | None]:
    return [None if cell == "-" else int(cell) for cell in row[1:]]


def test_plan_table_layout():
    table = plan_table([Stage({"a": 500}), Stage({"a": 500, "bb": 1000})], ["a", "bb"], "sample")
    assert table == (
        "| stage |    a |   bb | optimizer steps |\n"
        "| ----: | ---: | ---: | --------------: |\n"
        "|     1 |  500 |    - |             500 |\n"
        "|     2 |  500 | 1000 |            1500 |\n"
        "| total | 1000 | 1000 |            2000 |")


def test_plan_table_counts_the_longest_task_when_all_tasks_share_a_step():
    table = plan_table([Stage({"a": 500}), Stage({"a": 300, "b": 700})], ["a", "b"], "all")
    assert [line.split("|")[-2].strip() for line in table.splitlines()[2:]] == ["500", "700", "1200"]


def test_continual(capsys):
    header, rows = run(capsys, "--schedule", "continual", "--tasks", *SEVEN, "--steps-per-task", "1000")

    assert header.startswith("Curriculum continual: 7 tasks, 1000 steps per task; 7 stages, 7000 optimizer steps")
    assert rows[0] == ["stage", *SEVEN, "optimizer steps"]
    for i, row in enumerate(rows[1:8]):
        assert row[0] == str(i + 1)
        assert numbers(row) == [1000 if j == i else None for j in range(7)] + [1000]
    assert rows[8] == ["total", *["1000"] * 7, "7000"]
    assert len(rows) == 9


def test_joint(capsys):
    _, rows = run(capsys, "--schedule", "joint", "--tasks", *SEVEN, "--steps-per-task", "1000")
    assert rows[1:] == [["1", *["1000"] * 7, "7000"], ["total", *["1000"] * 7, "7000"]]

    header, rows = run(capsys, "--schedule", "joint", "--tasks", *SEVEN, "--steps-per-task", "1000",
                       "--task-mixing", "all")
    assert "1 stage, 1000 optimizer steps (all active tasks in every step)" in header
    assert rows[1:] == [["1", *["1000"] * 7, "1000"], ["total", *["1000"] * 7, "1000"]]


def test_sequential(capsys):
    header, rows = run(capsys, "--schedule", "sequential", "--tasks", *SEVEN, "--steps-per-task", "1000")

    assert header.startswith("Curriculum sequential: 7 tasks, 1000 steps per task; 7 stages, 7000 optimizer steps")
    # 1000 over 7 stages: 142 r 6; over 6: 166 r 4; over 5: 200; over 4: 250; over 3: 333 r 1; over 2: 500.
    x = None  # the task is not in the stage
    assert [numbers(row) for row in rows[1:]] == [
        [143, x, x, x, x, x, x, 143],
        [143, 167, x, x, x, x, x, 310],
        [143, 167, 200, x, x, x, x, 510],
        [143, 167, 200, 250, x, x, x, 760],
        [143, 167, 200, 250, 334, x, x, 1094],
        [143, 166, 200, 250, 333, 500, x, 1592],
        [142, 166, 200, 250, 333, 500, 1000, 2591],
        [1000, 1000, 1000, 1000, 1000, 1000, 1000, 7000],
    ]


def test_pairwise(capsys):
    header, rows = run(capsys, "--schedule", "pairwise", "--tasks", *SEVEN, "--steps-per-task", "1000",
                       "--task-mixing", "all")

    # 7 alone + 21 pairs + all 7 = 29 stages; every task is in 8 of them: 125 steps each.
    # Optimizer steps with all tasks in every step: 125 per stage.
    assert header.startswith("Curriculum pairwise: 7 tasks, 1000 steps per task; 29 stages, 3625 optimizer steps")
    index = {task: i for i, task in enumerate("ABCDEFG")}
    groups = ["A", "B", "C", "D", "E", "F", "G", "AB", "BC", "CD", "DE", "EF", "FG", "AC", "BD", "CE", "DF", "EG",
              "AD", "BE", "CF", "DG", "AE", "BF", "CG", "AF", "BG", "AG", "ABCDEFG"]
    assert len(rows) == 1 + 29 + 1
    for number, (group, row) in enumerate(zip(groups, rows[1:30]), start=1):
        members = {index[letter] for letter in group}
        assert row[0] == str(number)
        assert numbers(row) == [125 if j in members else None for j in range(7)] + [125]
    assert rows[30] == ["total", *["1000"] * 7, "3625"]


def test_budget_from_max_steps(capsys):
    header, rows = run(capsys, "--schedule", "continual", "--tasks", "knowledge_masking", "capitalization",
                       "sentence_distance", "--max-steps", "1000")

    assert header.startswith("Curriculum continual: 3 tasks, 333-334 steps per task (--max-steps 1000 shared evenly)")
    assert rows[-1] == ["total", "334", "333", "333", "1000"]


def test_schedule_file(capsys, tmp_path):
    path = tmp_path / "stages.yaml"
    path.write_text("stages: [{knowledge_masking: 500}, {knowledge_masking: 200, capitalization: 300}]\n",
                    encoding="utf-8")

    header, rows = run(capsys, "--schedule", "file", "--schedule-file", str(path),
                       "--tasks", "knowledge_masking", "capitalization")

    assert header.startswith(f"Curriculum file: 2 tasks, 300-700 steps per task from {path}; 2 stages")
    assert rows[1:] == [["1", "500", "-", "500"], ["2", "200", "300", "500"], ["total", "700", "300", "1000"]]


def test_a_pretrain_config_gives_the_tasks_budget_and_schedule_and_flags_override_it(capsys, tmp_path):
    config = tmp_path / "run.yaml"  # pretrain's keys besides (output_dir, model_size) are checked, not refused
    config.write_text("output_dir: runs/x\nmodel_size: tiny\nschedule: sequential\nmax_steps: 1e3\n"
                      "tasks: [knowledge_masking, capitalization, sentence_reordering]\n", encoding="utf-8")

    header, rows = run(capsys, "--config", str(config))
    assert header.startswith("Curriculum sequential: 3 tasks, 333-334 steps per task (--max-steps 1000 shared")
    assert rows[-1] == ["total", "334", "333", "333", "1000"]
    header, rows = run(capsys, "--config", str(config), "--tasks", "knowledge_masking", "capitalization",
                       "--max-steps", "30")
    assert header.startswith("Curriculum sequential: 2 tasks, 15 steps per task (--max-steps 30 shared evenly)")
    config.write_text("max_stepz: 3\n", encoding="utf-8")
    assert fails(capsys, "--config", str(config)) == (f"ernie-cpt: error: unknown key 'max_stepz' in config file "
                                                      f"{config}; did you mean 'max_steps'?")


def test_a_reader_that_leaves_early_ends_the_command_without_a_traceback():
    child = subprocess.Popen([sys.executable, "-m", "ernie_cpt", "plan", "--schedule", "pairwise", "--tasks",
                              "knowledge_masking", "capitalization", "sentence_reordering"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # `| head -0`: every write to the pipe fails
    assert child.stderr.read() == b"" and child.wait() == 141


def fails(capsys, *argv: str) -> str:
    capsys.readouterr()
    code = main(["plan", *argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("ernie-cpt: error: ")
    assert captured.out == ""
    return lines[0]


def test_unknown_schedule(capsys):
    line = fails(capsys, "--schedule", "sequentail", "--tasks", *SEVEN)
    assert "unknown schedule 'sequentail'; did you mean 'sequential'?" in line
    assert "available: continual, file, joint, pairwise, sequential" in line


def test_unknown_task(capsys):
    assert "unknown task 'capitalisation'; did you mean 'capitalization'?" in fails(
        capsys, "--tasks", "knowledge_masking", "capitalisation")


@pytest.mark.parametrize(("text", "expected"), [
    ("stages: [{knowledge_masking: 500}\n", "is not valid YAML"),
    ("stages: [{knowledge_masking: 0}]\n", "stage 1 of schedule file"),
    ("stages: [{knowledge_masking: 5, capitalization: 5}]\n", "names task 'capitalization', which is not in --tasks"),
])
def test_bad_schedule_file(capsys, tmp_path, text, expected):
    path = tmp_path / "stages.yaml"
    path.write_text(text, encoding="utf-8")
    assert expected in fails(capsys, "--schedule", "file", "--schedule-file", str(path), "--tasks", "knowledge_masking")


def test_missing_schedule_file(capsys, tmp_path):
    assert "cannot read schedule file" in fails(capsys, "--schedule", "file", "--schedule-file",
                                                str(tmp_path / "none.yaml"))


def test_a_budget_that_leaves_stages_without_a_step_is_refused(capsys):
    capsys.readouterr()
    assert main(["plan", "--schedule", "pairwise", "--tasks", *SEVEN[:3], "--max-steps", "4"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("ernie-cpt: error: --schedule pairwise with 3 tasks has 7 stages and needs at least 12 "
                            "steps (--max-steps 12 or --steps-per-task 4); --max-steps 4 leaves stages 5-7 without a "
                            "step\n")
    header, _ = run(capsys, "--schedule", "pairwise", "--tasks", *SEVEN[:3], "--max-steps", "12")  # the advice works
    assert "7 stages, 12 optimizer steps" in header
