"""The compare report from hand-made run results (no training): the answer against its own intervals, the
summary table with 95 % intervals and the baselines, collapsed runs flagged, probes without a downstream
set, the per-task tables, the raw files, and a standalone report.html whose every image is a PNG."""

from __future__ import annotations

import base64
import csv
import html.parser
import io
import json
import logging
import shutil
import subprocess

import pytest
from matplotlib.image import imread

from ernie_cpt.evaluation.report import DASH, _skipped_section, mean_curves, mean_matrix, write_report
from ernie_cpt.evaluation.summary import MINUS, Measure, answer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASKS = ["a", "b"]
T_975_2 = 4.302653  # Student's t, 97.5th percentile, 2 degrees of freedom
DROP = Measure("mean_drop", "drop from best to final accuracy", lower_is_better=True)
DOWNSTREAM = Measure("downstream_accuracy", "downstream accuracy")


def metrics(schedule: str, seed: int, matrix: list[list[float | None]], drops: dict[str, float],
            forgetting: dict[str, float | None], bwt: float | None) -> dict:
    """A run's metrics.json; the numbers are given, not computed, so the report must copy them."""
    stages = [{"a": 10}, {"b": 10}] if len(matrix) == 2 else [{"a": 10, "b": 10}]
    final = [v for v in matrix[-1] if v is not None]
    defined = [v for v in forgetting.values() if v is not None]
    return {"schedule": schedule, "task_mixing": "sample", "seed": seed, "tasks": TASKS, "stages": stages,
            "metric": "accuracy", "accuracy_matrix": matrix, "forgetting": forgetting,
            "mean_forgetting": sum(defined) / len(defined) if defined else None, "drop_from_best": drops,
            "mean_drop": sum(drops.values()) / len(drops), "backward_transfer": bwt, "first_trained": {},
            "average_final": sum(final) / len(final),
            "curves": {"a": [[5, 0.1], [10, matrix[0][0]], [20, matrix[-1][0]]], "b": [[20, matrix[-1][1]]]},
            "stage_boundaries": [10, 20] if len(matrix) == 2 else [20]}


def downstream(accuracy: float, collapsed: bool = False) -> dict:
    return {"accuracy_mean": accuracy, "accuracy_std": 0.0, "macro_f1_mean": accuracy / 2, "macro_f1_std": 0.0,
            "majority_accuracy": 0.25, "per_seed": [{"seed": 0, "accuracy": accuracy, "macro_f1": accuracy / 2,
                                                      **({"collapsed": True} if collapsed else {})}]}


def run(variant: str, seed: int | None, kind: str = "variant", run_metrics: dict | None = None,
        scores: dict | None = None, fwt: dict | None = None, probes: dict | None = None) -> dict:
    return {"variant": variant, "kind": kind, "seed": seed, "pretrain_seconds": 30.0 if run_metrics else None,
            "resumed": False, "metrics": run_metrics, "downstream": scores, "forward_transfer": fwt, "probes": probes}


@pytest.fixture
def results() -> list[dict]:
    """continual (two stages) and joint (one), 3 seeds each, then the none, mlm and tfidf baselines.
    continual: average final (0.4+0.6)/2, (0.5+0.7)/2, (0.6+0.8)/2 = 0.5, 0.6, 0.7 -> 0.600, half-width
    t * 0.1 / sqrt(3); drop 0.1 each seed (0.1 and 0.1 per task); downstream 0.60, 0.62, 0.64.
    joint: average final 0.5 each seed; drop (0.2 + 0) / 2 = 0.1, 0.15, 0.2; downstream 0.60, collapsed, 0.70."""
    rows = []
    for k, seed in enumerate((1, 2, 3)):
        x = 0.4 + 0.1 * k
        rows.append(run("continual", seed, run_metrics=metrics("continual", seed, [[x + 0.1, None], [x, x + 0.2]],
                                                              {"a": 0.1, "b": 0.1}, {"a": 0.1, "b": None}, -0.1),
                        scores=downstream(0.60 + 0.02 * k), fwt={"a": 0.0, "b": 0.01 * (k + 1)}))
    for k, seed in enumerate((1, 2, 3)):
        rows.append(run("joint", seed, run_metrics=metrics("joint", seed, [[0.4, 0.6]], {"a": 0.2 + 0.1 * k, "b": 0.0},
                                                          {"a": None, "b": None}, None),
                        scores=downstream([0.60, 0.10, 0.70][k], collapsed=k == 1), fwt={"a": 0.0, "b": 0.0}))
    for seed in (1, 2, 3):
        rows.append(run("mlm", seed, "baseline", scores=downstream(0.55 + 0.01 * seed)))
        rows.append(run("none", seed, "baseline", scores=downstream(0.40 + 0.02 * seed)))
    rows.append(run("tfidf", None, "baseline", scores=downstream(0.66)))
    return rows


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


# --- the answer -------------------------------------------------------------------------------------------


def _rows(values: dict[str, dict[int, float]], key: str) -> list[dict]:
    return [{"variant": name, "kind": "variant", "seed": seed, key: value}
            for name, by_seed in values.items() for seed, value in by_seed.items()]


def test_answer_names_no_winner_when_the_curricula_are_alike():
    # The same curriculum run twice in effect: differences 0.01, -0.02, 0.02 around 0 (mean 0.00333, sample std
    # 0.0208): the paired interval contains 0, so no winner; the seeds needed come from that spread.
    alike = _rows({"continual": {1: 0.51, 2: 0.48, 3: 0.52}, "joint": {1: 0.50, 2: 0.50, 3: 0.50}},
                  "downstream_accuracy")

    sentence = answer(alike, DROP, DOWNSTREAM)

    half = T_975_2 * 0.0208167 / 3**0.5
    assert ("**On downstream accuracy, no curriculum is distinguishable at 3 seeds**: the largest difference, "
            f"continual {MINUS} joint = 0.003, has a 95 % CI of [{0.003333 - half:.3f}, {0.003333 + half:.3f}] "
            "(paired by seed); resolving a difference of that size would take about") in sentence
    assert "seeds (80 % power, paired t-test)." in sentence
    assert "**Downstream accuracy:" not in sentence


def test_answer_names_the_winner_when_the_paired_interval_excludes_zero():
    # joint beats continual by 0.2, 0.21, 0.19 on the three seeds: mean 0.2, std 0.01, interval 0.2 +- 0.0248.
    better = _rows({"continual": {1: 0.50, 2: 0.60, 3: 0.55}, "joint": {1: 0.70, 2: 0.81, 3: 0.74}},
                   "downstream_accuracy")

    sentence = answer(better, DROP, DOWNSTREAM)

    half = T_975_2 * 0.01 / 3**0.5
    assert (f"**Downstream accuracy: joint** is highest (0.750; 0.200 above continual, the closest, 95 % CI of the "
            f"paired difference [{0.2 - half:.3f}, {0.2 + half:.3f}] over 3 seeds).") in sentence


def test_answer_on_forgetting_prefers_the_lower_drop_and_ranks_no_collapsed_run(results, tmp_path):
    first_line = write_report(results, {}, tmp_path).read_text().splitlines()[2]

    # drop: continual 0.1 on every seed; joint 0.1, 0.15, 0.2: differences 0, -0.05, -0.1 -> interval contains 0.
    assert first_line.startswith("**On drop from best to final accuracy, no curriculum is distinguishable at 3 "
                                 f"seeds**: the largest difference, joint {MINUS} continual = 0.050")
    # downstream: joint's seed 2 collapsed, so only seeds 1 and 3 pair: differences 0, 0.06 -> no winner at 2 seeds.
    assert "**On downstream accuracy, no curriculum is distinguishable at 3 seeds**: the largest difference, " \
           f"joint {MINUS} continual = 0.030" in first_line
    # against the baselines: joint leads on its two scored seeds (0.60, 0.70; none 0.42, 0.46 -> +0.18, +0.24)
    assert f"Against the baselines on downstream accuracy: joint {MINUS} none = +0.210" in first_line


# --- the summary table -------------------------------------------------------------------------------------


def test_summary_table_has_intervals_baselines_and_undefined_cells(results, tmp_path):
    markdown = write_report(results, {"tasks": TASKS}, tmp_path).read_text()

    rows = table_rows(markdown, "curriculum")
    assert rows[0] == ["curriculum", "average final accuracy", "drop from best to final accuracy",
                       "forgetting at stage ends¹", "BWT²", "FWT", "downstream accuracy", "downstream macro-F1",
                       "wall time"]
    half = T_975_2 * 0.1 / 3**0.5
    assert rows[1][:3] == ["continual", f"0.600 [{0.6 - half:.3f}, {0.6 + half:.3f}]", "0.100 [0.100, 0.100]"]
    # joint: one stage, so neither stage-end forgetting nor BWT is defined; its collapsed seed is flagged
    assert rows[2][4:5] == [DASH] and rows[2][3] == DASH
    assert rows[2][6] == "0.650 [0.015, 1.285] (1/3 collapsed)"
    assert [row[0] for row in rows[3:]] == ["mlm (baseline)", "none (baseline)", "tfidf (baseline)"]
    assert rows[5][6] == "0.660" and rows[5][1] == DASH  # deterministic: one run, no interval
    # FWT: continual b 0.01, 0.02, 0.03 and a 0 -> means 0.005, 0.01, 0.015
    assert rows[1][5].startswith("0.010 [")


@pytest.mark.parametrize("axis", [("curriculum", "curricula"), ("architecture", "architectures")])
def test_the_definitions_name_the_compared_axis_in_good_english(results, tmp_path, axis):
    markdown = write_report(results, {"tasks": TASKS}, tmp_path, axis).read_text()

    assert "`mlm`, the masked-LM task alone (the run setup's \"mlm baseline\"" in markdown
    assert f"for as many steps as each {axis[0]} takes in all;" in markdown
    assert f"Defined for every {axis[0]}," in markdown and f"compares {axis[1]} paired by seed" in markdown


def test_without_downstream_the_probes_are_the_transfer_score(results, tmp_path):
    for k, row in enumerate(results):
        row["downstream"] = None
        row["probes"] = None if row["variant"] == "tfidf" else {
            "entity_type": {"accuracy": 0.5 + 0.01 * (k % 3)}, "sentence_adjacency": {"accuracy": 0.6}}
    results = [row for row in results if row["variant"] != "tfidf"]

    markdown = write_report(results, {}, tmp_path).read_text()

    header = table_rows(markdown, "curriculum")[0]
    assert header[-2:] == ["probe accuracy", "wall time"] and "downstream accuracy" not in header
    assert "On probe accuracy" in markdown.splitlines()[2]
    assert [row[0] for row in table_rows(markdown, "curriculum")][3:] == ["mlm (baseline)", "none (baseline)"]
    probes = table_rows(markdown[markdown.index("Linear probes"):], " ")
    assert probes[0] == ["", "entity_type", "sentence_adjacency"] and [row[0] for row in probes[1:]] == [
        "continual", "joint", "mlm", "none"]


def test_per_task_tables_and_matrices(results, tmp_path):
    markdown = write_report(results, {"tasks": TASKS, "steps per task": 10}, tmp_path).read_text()

    assert "- **tasks**: a, b\n- **steps per task**: 10\n" in markdown
    section = markdown[markdown.index("### continual"):]
    assert table_rows(section, "after stage") == [
        ["after stage", "trained (steps)", "a", "b"], ["1", "a 10", "0.600", DASH], ["2", "b 10", "0.500", "0.700"]]
    assert "Chaudhry et al. 2018" in markdown and "Lopez-Paz & Ranzato 2017" in markdown


def test_raw_data_has_one_row_per_run(results, tmp_path):
    write_report(results, {"tasks": TASKS}, tmp_path)

    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["variant"], row["seed"]) for row in rows][:4] == [("continual", "1"), ("continual", "2"),
                                                                   ("continual", "3"), ("joint", "1")]
    assert rows[4]["downstream_collapsed"] == "True" and rows[-1]["variant"] == "tfidf" and rows[-1]["seed"] == ""
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["variants"] == ["continual", "joint"]
    assert summary["summary"]["continual"]["average_final"]["mean"] == pytest.approx(0.6)
    assert json.loads((tmp_path / "metrics" / "joint-seed3.json").read_text()) == results[5]["metrics"]


def test_a_second_report_with_fewer_seeds_or_curricula_removes_the_files_of_the_first_and_says_so(
        results, tmp_path, caplog):
    """compare --seeds 1 after --seeds 3: the folder then holds the runs of this comparison only."""
    write_report(results, {"tasks": TASKS}, tmp_path)
    assert (tmp_path / "metrics" / "continual-seed3.json").exists() and (tmp_path / "heatmap-joint.png").exists()
    one_seed = [r for r in results if r["seed"] in (1, None) and r["variant"] != "joint"]
    with caplog.at_level(logging.INFO):
        markdown = write_report(one_seed, {"tasks": TASKS}, tmp_path).read_text()
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == ["continual-seed1.json"]
    assert not (tmp_path / "heatmap-joint.png").exists() and (tmp_path / "heatmap-continual.png").exists()
    assert "### joint" not in markdown and "### continual" in markdown
    assert (f"removed 6 files of an earlier report from {tmp_path}, whose runs this comparison does not have: "
            f"heatmap-joint.png, metrics/continual-seed2.json, metrics/continual-seed3.json, metrics/joint-seed1.json, "
            f"metrics/joint-seed2.json, metrics/joint-seed3.json") in caplog.messages


def test_mean_matrix_and_curves():
    assert mean_matrix([[[0.5, None], [0.25, 0.5]], [[0.75, None], [None, 1.0]]]) == [[0.625, None], [0.25, 0.75]]
    assert mean_curves([{"a": [[5, 0.25], [10, 0.5]]}, {"a": [[5, 0.5]]}]) == {"a": [(5, 0.375), (10, 0.5)]}


# --- figures and report.html -------------------------------------------------------------------------------



def test_requested_tasks_that_were_not_trained_are_named_with_why(results, tmp_path):
    reason = "capitalization has nothing to learn on this corpus: 900 of the 900 labels (100.0%) ..."
    trained = [run for run in results if run["metrics"]]
    for run in trained:
        run["metrics"]["skipped_tasks"] = {"capitalization": reason}
    trained[3]["metrics"]["skipped_tasks"]["ir_relevance"] = "ir_relevance formed no query-passage pair"

    markdown = write_report(results, {"tasks": [*TASKS, "capitalization", "ir_relevance"]}, tmp_path).read_text()

    section = markdown.split("## Tasks not trained\n\n", 1)[1].split("\n## ", 1)[0]
    assert section.splitlines()[2:4] == [
        f"- **capitalization**, skipped by every run (6): {reason}",
        "- **ir_relevance**, skipped by every run (1): ir_relevance formed no query-passage pair",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["skipped_tasks"]["ir_relevance"] == {"runs": ["joint-seed1"],
                                                       "reason": "ir_relevance formed no query-passage pair"}


def test_a_task_some_runs_trained_names_the_runs_that_skipped_it():
    results = [{"variant": "joint", "seed": 1, "metrics": {"tasks": ["a"], "skipped_tasks": {"x": "why"}}},
               {"variant": "joint", "seed": 2, "metrics": {"tasks": ["a", "x"], "skipped_tasks": {}}}]

    assert _skipped_section(results)[4] == "- **x**, skipped by joint-seed1: why"


def test_no_section_when_every_task_was_trained(results, tmp_path):
    assert "Tasks not trained" not in write_report(results, {"tasks": TASKS}, tmp_path).read_text()


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_report_html_is_standalone_and_every_image_decodes_as_png(results, tmp_path):
    markdown = write_report(results, {}, tmp_path).read_text()
    page = (tmp_path / "report.html").read_text()

    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) == markdown.count("![")  # evidence, curves, drop, one heatmap per curriculum
    for source in parser.sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        data = base64.b64decode(source[len(prefix):], validate=True)
        assert data.startswith(PNG_SIGNATURE) and imread(io.BytesIO(data), format="png").shape[0] > 100
    assert "<table>" in page and "no curriculum is distinguishable" in page
    for name in ["evidence", "curves", "drop", "heatmap-continual", "heatmap-joint"]:
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE), name


@pytest.mark.skipif(not shutil.which("chromium"), reason="no headless browser (Debian's chromium) installed")
def test_report_html_renders_in_a_headless_browser(results, tmp_path):
    write_report(results, {}, tmp_path / "report")
    shot = tmp_path / "shot.png"

    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1280,2400", (tmp_path / "report" / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)

    image = imread(str(shot))
    assert image.shape[:2] == (2400, 1280) and image[..., :3].std() > 0.05  # drawn, not blank
