"""The compare report from hand-made run results (no training): the summary table's mean ± std,
the sentence that answers the question, the matrices, the raw files and valid PNGs."""

from __future__ import annotations

import csv
import json

import pytest

from ernie_cpt.evaluation.report import mean_curves, mean_matrix, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASKS = ["a", "b"]


def result(schedule: str, seed: int, matrix: list[list[float | None]], forgetting: dict[str, float | None],
           bwt: float, downstream: tuple[float, float] | None = (0.5, 0.4), seconds: float = 10.0) -> dict:
    """A compare result.json; the numbers are given, not computed, so the report must copy them."""
    stages = [{"a": 10}, {"b": 10}] if len(matrix) == 2 else [{"a": 10, "b": 10}]
    final = [v for v in matrix[-1] if v is not None]
    values = [v for v in forgetting.values() if v is not None]
    return {
        "schedule": schedule, "seed": seed, "pretrain_seconds": seconds, "resumed": False,
        "metrics": {
            "schedule": schedule, "task_mixing": "sample", "seed": seed, "tasks": TASKS, "stages": stages,
            "metric": "accuracy", "accuracy_matrix": matrix, "forgetting": forgetting,
            "mean_forgetting": sum(values) / len(values) if values else 0.0, "backward_transfer": bwt,
            "average_final": sum(final) / len(final),
            "curves": {"a": [[5, 0.1], [10, matrix[0][0]], [20, matrix[-1][0]]], "b": [[20, matrix[-1][1]]]},
            "stage_boundaries": [10, 20] if len(matrix) == 2 else [20],
        },
        "downstream": None if downstream is None else {
            "accuracy_mean": downstream[0], "accuracy_std": 0.0, "macro_f1_mean": downstream[1],
            "macro_f1_std": 0.0, "majority_accuracy": 0.25, "per_seed": []},
    }


@pytest.fixture
def results() -> list[dict]:
    # continual: forgetting of a 0.2 and 0.1 -> 0.150 ± 0.071; average final 0.45, 0.6 -> 0.525 ± 0.106;
    # BWT -0.2, -0.1 -> -0.150 ± 0.071; downstream accuracy 0.8, 0.7 -> 0.750 ± 0.071, F1 0.5, 0.6 -> 0.550 ± 0.071.
    # joint: one stage, no forgetting -> 0.000 ± 0.000; average final 0.45, 0.65 -> 0.550 ± 0.141;
    # downstream accuracy 0.6, 0.65 -> 0.625 ± 0.035, F1 0.3, 0.3 -> 0.300 ± 0.000.
    return [
        result("continual", 42, [[0.5, None], [0.3, 0.6]], {"a": 0.2, "b": None}, -0.2, (0.8, 0.5), 30.0),
        result("continual", 43, [[0.6, None], [0.5, 0.7]], {"a": 0.1, "b": None}, -0.1, (0.7, 0.6), 50.0),
        result("joint", 42, [[0.4, 0.5]], {"a": None, "b": None}, 0.0, (0.6, 0.3), 200.0),
        result("joint", 43, [[0.6, 0.7]], {"a": None, "b": None}, 0.0, (0.65, 0.3), 220.0),
    ]


def table_rows(markdown: str, first_header: str) -> list[list[str]]:
    """The rows (cells stripped, header included, rule dropped) of the table whose first heading is given."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [rows[0], *rows[2:]]


def test_summary_table_holds_mean_and_std_over_seeds(results, tmp_path):
    markdown = write_report(results, {"tasks": TASKS}, tmp_path).read_text()

    assert table_rows(markdown, "curriculum") == [
        ["curriculum", "average final accuracy", "mean forgetting", "BWT", "downstream accuracy",
         "downstream macro-F1", "wall time"],
        ["continual", "0.525 ± 0.106", "0.150 ± 0.071", "-0.150 ± 0.071", "0.750 ± 0.071", "0.550 ± 0.071", "40 s"],
        ["joint", "0.550 ± 0.141", "0.000 ± 0.000", "0.000 ± 0.000", "0.625 ± 0.035", "0.300 ± 0.000", "3.5 min"],
    ]


def test_first_sentence_names_least_forgetting_and_best_downstream(results, tmp_path):
    lines = write_report(results, {}, tmp_path).read_text().splitlines()

    assert lines[0].startswith("# ")
    assert lines[2] == "**Least forgetting: joint** (mean forgetting 0.000); **best downstream accuracy: continual** " \
                       "(0.750)."


def test_without_downstream_the_best_average_final_score_is_named(results, tmp_path):
    for run in results:
        run["downstream"] = None

    markdown = write_report(results, {}, tmp_path).read_text()

    assert "**best average final accuracy: joint** (0.550)." in markdown
    assert table_rows(markdown, "curriculum")[0] == ["curriculum", "average final accuracy", "mean forgetting", "BWT",
                                                      "wall time"]


def test_ties_name_every_curriculum_and_one_seed_shows_the_value_alone(tmp_path):
    results = [result("sequential", 1, [[0.5, None], [0.5, 0.6]], {"a": 0.0, "b": None}, 0.0, None),
               result("joint", 1, [[0.5, 0.6]], {"a": None, "b": None}, 0.0, None)]

    markdown = write_report(results, {}, tmp_path).read_text()

    assert "**Least forgetting: sequential and joint** (mean forgetting 0.000)" in markdown
    assert table_rows(markdown, "curriculum")[1] == ["sequential", "0.550", "0.000", "0.000", "10 s"]


def test_accuracy_matrices_are_averaged_over_seeds_with_dashes_where_not_scored(results, tmp_path):
    markdown = write_report(results, {}, tmp_path).read_text()

    section = markdown[markdown.index("### continual"):]
    assert table_rows(section, "after stage") == [
        ["after stage", "trained (steps)", "a", "b"],
        ["1", "a 10", "0.550", "-"],
        ["2", "b 10", "0.400", "0.650"],
    ]
    assert "(heatmap-continual.png)" in section and "(curves-continual.png)" in markdown
    assert "Chaudhry et al. 2018" in markdown and "Lopez-Paz & Ranzato 2017" in markdown


def test_setup_is_listed(results, tmp_path):
    markdown = write_report(results, {"tasks": TASKS, "steps per task": 10}, tmp_path).read_text()

    assert "- **tasks**: a, b\n- **steps per task**: 10\n" in markdown


def test_every_figure_is_a_png(results, tmp_path):
    write_report(results, {}, tmp_path)

    for name in ["heatmap-continual", "heatmap-joint", "curves-continual", "curves-joint", "forgetting"]:
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name


def test_raw_data_has_one_row_per_curriculum_and_seed(results, tmp_path):
    write_report(results, {"tasks": TASKS}, tmp_path)

    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["schedule"], row["seed"]) for row in rows] == [("continual", "42"), ("continual", "43"),
                                                                 ("joint", "42"), ("joint", "43")]
    assert rows[1]["final_a"] == "0.5" and rows[1]["forgetting_a"] == "0.1" and rows[1]["forgetting_b"] == ""
    assert rows[2]["downstream_accuracy"] == "0.6" and rows[2]["pretrain_seconds"] == "200.0"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["setup"] == {"tasks": TASKS}
    assert summary["curricula"][0]["mean_forgetting"] == pytest.approx({"mean": 0.15, "std": 0.0707107})
    assert summary["curricula"][0]["forgetting"]["b"] == {"mean": None, "std": None}
    assert json.loads((tmp_path / "metrics" / "joint-seed43.json").read_text()) == results[3]["metrics"]


def test_mean_matrix_leaves_out_cells_a_seed_did_not_score():
    assert mean_matrix([[[0.5, None], [0.25, 0.5]], [[0.75, None], [None, 1.0]]]) == [[0.625, None], [0.25, 0.75]]


def test_mean_curves_average_step_by_step():
    curves = mean_curves([{"a": [[5, 0.25], [10, 0.5]]}, {"a": [[5, 0.5]]}])

    assert curves == {"a": [(5, 0.375), (10, 0.5)]}


def test_requested_tasks_that_were_not_trained_are_named_with_why(results, tmp_path):
    reason = "capitalization has nothing to learn on this corpus: 900 of the 900 labels (100.0%) ..."
    for run in results:
        run["metrics"]["skipped_tasks"] = {"capitalization": reason}
    results[2]["metrics"]["skipped_tasks"]["ir_relevance"] = "ir_relevance formed no query-passage pair"

    markdown = write_report(results, {"tasks": [*TASKS, "capitalization", "ir_relevance"]}, tmp_path).read_text()

    section = markdown.split("## Tasks not trained\n\n", 1)[1].split("\n## ", 1)[0]
    assert section.splitlines()[2:4] == [
        f"- **capitalization**, skipped by every run (4): {reason}",
        "- **ir_relevance**, skipped by joint-seed42: ir_relevance formed no query-passage pair",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["skipped_tasks"]["ir_relevance"] == {"runs": ["joint-seed42"],
                                                       "reason": "ir_relevance formed no query-passage pair"}


def test_no_section_when_every_task_was_trained(results, tmp_path):
    assert "Tasks not trained" not in write_report(results, {"tasks": TASKS}, tmp_path).read_text()
