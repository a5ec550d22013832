"""The console's score terms are explained in plain words the first time they are printed (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ernie_cpt import glosses
from ernie_cpt.commands.finetune import format_results
from ernie_cpt.commands.pretrain import continual_summary
from ernie_cpt.training.evaluate import evaluation_line


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    monkeypatch.setattr(glosses, "_said", set())


def test_the_continual_metrics_line_explains_its_terms_the_first_time_only():
    joint = {"mean_drop": 0.0055, "backward_transfer": None, "average_final": 0.1005}  # make demo's run
    first, second = (continual_summary(Path("runs/demo/metrics.json"), joint) for _ in range(2))

    assert first == ("Accuracy matrix, forgetting and BWT: runs/demo/metrics.json. Mean drop from best to final 0.0055 "
                     f"({glosses.GLOSSES['drop']}); BWT undefined ({glosses.GLOSSES['bwt_undefined']}); average final "
                     "score 0.1005")
    assert "every task trains in the last stage" in first and "best evaluation to its last" in first
    assert second == ("Accuracy matrix, forgetting and BWT: runs/demo/metrics.json (mean drop from best to final "
                      "0.0055, BWT undefined, average final score 0.1005)")
    sequential = continual_summary(Path("m.json"), {**joint, "backward_transfer": -0.02})
    assert "BWT -0.0200 (backward transfer, how much training the later stages changed" in sequential


def test_a_collapsed_fine_tuning_run_is_explained_under_the_table():
    seed = {"seed": 1, "accuracy": 0.5, "macro_f1": 0.33, "learning_rate": 1e-4, "best_epoch": 1}
    results = {"per_seed": [seed], "accuracy_mean": 0.5, "accuracy_std": None, "macro_f1_mean": 0.33,
               "macro_f1_std": None, "majority_accuracy": 0.5, "majority_macro_f1": 0.33, "num_labels": 2,
               "train_examples": 10, "validation_examples": 2, "test_examples": 4}

    assert "collapsed" not in format_results(results)
    text = format_results({**results, "per_seed": [{**seed, "collapsed": True}]})
    assert "| 0.5000 (collapsed) |" in text
    assert text.endswith("\n\ncollapsed: the model predicted one class for the whole test set, a constant guess.")


def test_majority_beside_the_held_out_scores_is_explained_the_first_time():
    scores = {"knowledge_masking": {"loss": 6.5051, "accuracy": 0.0804, "majority_accuracy": 0.0457, "scored": 547}}
    first, second = (evaluation_line(200, None, scores) for _ in range(2))

    assert second == ("Evaluation at step 200: knowledge_masking loss 6.5051, accuracy 0.0804 (majority 0.0457) over "
                      "547 targets")
    assert first == f"{second} (majority: {glosses.GLOSSES['majority']})"
    assert evaluation_line(1200, 1, scores).startswith("Evaluation at step 1200 (end of stage 1): knowledge_masking")
