"""Task ids are fixed per run: the ERNIE 2.0 tasks 0-6, any other task the next free ids in --tasks
order, an embedding as large as the ids need; read back from the run (old runs' flat tasks.json too)."""

from __future__ import annotations

import json

from ernie_cpt.training.task_ids import assign_task_ids, embedding_size, read_task_ids, write_task_ids
from pretasks import ERNIE_TASKS


def test_ernie_tasks_keep_0_to_6_and_others_follow_in_tasks_order():
    ids = assign_task_ids(["zeta", "ir_relevance", "alpha", "knowledge_masking"])
    assert ids == {"zeta": 7, "ir_relevance": 6, "alpha": 8, "knowledge_masking": 0}
    assert embedding_size(ids) == 9
    assert assign_task_ids(list(ERNIE_TASKS)) == {task: i for i, task in enumerate(ERNIE_TASKS)}
    assert embedding_size({"capitalization": 1}) == 7  # at least one row per ERNIE task


def test_ids_of_a_model_started_from_are_kept_and_new_ones_come_after_them():
    taken = {"knowledge_masking": 0, "mine": 7, "yours": 9}
    assert assign_task_ids(["yours", "new", "capitalization"], taken) == {"yours": 9, "new": 10, "capitalization": 1}
    # --shared-task-id put every task on row 0: those rows are not ids
    assert assign_task_ids(["mine", "knowledge_masking"], {"mine": 0, "knowledge_masking": 0}) == {
        "mine": 7, "knowledge_masking": 0}


def test_a_run_reads_back_what_it_recorded(tmp_path):
    write_task_ids(tmp_path, {"capitalization": 1, "mine": 7}, 8)
    assert json.loads((tmp_path / "tasks.json").read_text()) == {"task_ids": {"capitalization": 1, "mine": 7},
                                                                "task_embedding_size": 8}
    assert read_task_ids(tmp_path, ["mine", "capitalization"]) == {"mine": 7, "capitalization": 1}


def test_a_tasks_json_written_before_the_record_reads_as_the_ids_runs_had_then(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({"knowledge_masking": 0, "sentence_reordering": 3}))
    assert read_task_ids(tmp_path, ["knowledge_masking", "sentence_reordering"]) == {
        "knowledge_masking": 0, "sentence_reordering": 3}
    # --shared-task-id wrote every task's row, 0; the ids (random streams) were the registry's
    (tmp_path / "tasks.json").write_text(json.dumps({"knowledge_masking": 0, "sentence_reordering": 0}))
    assert read_task_ids(tmp_path, ["knowledge_masking", "sentence_reordering"]) == {
        "knowledge_masking": 0, "sentence_reordering": 3}
