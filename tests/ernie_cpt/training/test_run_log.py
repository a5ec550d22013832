"""TensorBoard tags as transformers.Trainer names them, and --report-to none."""

from __future__ import annotations

from ernie_cpt.training.run_log import RunLog, read_records, tensorboard_scalars


def test_train_records_use_the_trainer_tags():
    record = {"step": 3, "stage": 0, "task": "a+b", "loss": 1.5, "lr": 0.1, "grad_norm": 2.0, "tokens_per_s": 5.0,
              "losses": {"a": 1.0, "b": 0.5}}
    assert tensorboard_scalars("train", record) == [
        ("train/loss", 1.5), ("train/learning_rate", 0.1), ("train/grad_norm", 2.0), ("train/tokens_per_s", 5.0),
        ("train/a/loss", 1.0), ("train/b/loss", 0.5)]


def test_eval_records_are_per_task():
    record = {"step": 3, "stage": 1, "task": "capitalization", "stage_end": True, "trained": True, "loss": 0.3,
              "accuracy": 0.9, "majority_accuracy": 0.8, "scored": 10}
    assert tensorboard_scalars("eval", record) == [
        ("eval/capitalization/loss", 0.3), ("eval/capitalization/accuracy", 0.9),
        ("eval/capitalization/majority_accuracy", 0.8), ("eval/capitalization/scored", 10)]
    assert tensorboard_scalars("weights", {"step": 3, "stage": 0, "weights": {"a": 0.7}}) == [("weights/a", 0.7)]


def test_report_to_none_writes_the_jsonl_logs_only(tmp_path):
    log = RunLog(tmp_path, tensorboard=False)
    log.write("train", {"step": 1, "loss": 2.0})
    log.close()
    assert read_records(tmp_path, "train") == [{"step": 1, "loss": 2.0}]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["train.jsonl"]


def test_routing_weights_are_tagged_per_task():
    """Every task's routing means have their own curves (they all landed on routing/<expert> before)."""
    for task in ("capitalization", "knowledge_masking"):
        record = {"step": 10, "stage": 0, "task": task, "weights": {"expert.0": 0.25, "expert.1": 0.75}}
        assert tensorboard_scalars("routing", record) == [(f"routing/{task}/expert.0", 0.25),
                                                          (f"routing/{task}/expert.1", 0.75)]
