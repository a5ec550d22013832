"""Fine-tuning: macro-F1 by hand, what MODEL_DIR may be, and a tiny pre-trained ERNIE fine-tuned on
fortunes-topics that beats the majority class, with mean ± std over seeds and same seed, same numbers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from ernie_cpt.cli import main
from ernie_cpt.commands.finetune import FinetuneOptions, finetune, format_results, macro_f1
from ernie_cpt.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FORTUNES = Path(__file__).resolve().parents[4] / "shared" / "corpora" / "fortunes-topics"
TRAIN_SUBSET = 1000
# A tiny, barely pre-trained encoder learns quickly only with a large learning rate.
SETTINGS = {"epochs": 2, "learning_rate": 2e-3, "batch_size": 16, "max_seq_length": 32}


def test_macro_f1_by_hand():
    # class 0: 2*1/(2+2) = 1/2; class 1: 2*2/(3+2) = 4/5; class 2: 2*1/(1+2) = 2/3; class 3 never occurs
    labels, predictions = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 1, 1, 2, 0])
    assert macro_f1(predictions, labels, 4) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # Two classes: the mean of both classes' F1 (class 1: 2/3, class 0: 2*4/(5+5) = 4/5), not class 1 alone
    labels, predictions = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0]), torch.tensor([1, 1, 0, 1, 0, 0, 0, 0])
    assert macro_f1(predictions, labels, 2) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # A predicted class absent from the labels counts with F1 0: (2*1/(1+2) + 2*2/(2+2) + 0) / 3
    assert macro_f1(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 0, 1, 1]), 3) == pytest.approx((2 / 3 + 1) / 3)


def test_model_dir_must_be_an_export_or_a_run(tmp_path):
    options = FinetuneOptions(train="train.jsonl", test="test.jsonl")
    with pytest.raises(UserError, match=r"must be a folder written by ernie-cpt export .* or a pretrain run"):
        finetune(tmp_path, options)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="holds a 'bert' model; finetune fine-tunes ERNIE encoders"):
        finetune(tmp_path, options)


@pytest.mark.parametrize(("change", "flag"), [({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"),
                                              ({"seeds": []}, "--seeds"), ({"train": None}, "--train"),
                                              ({"learning_rate": 0.0}, "--learning-rate")])
def test_bad_settings_name_the_flag(change, flag, tmp_path):
    with pytest.raises(UserError, match=flag):
        finetune(tmp_path, FinetuneOptions(**{"train": "a.jsonl", "test": "b.jsonl", **change}))


def test_format_results_shows_every_seed_and_the_mean():
    results = {"per_seed": [{"seed": 1, "accuracy": 0.5, "macro_f1": 0.25}, {"seed": 2, "accuracy": 0.7,
                                                                             "macro_f1": 0.35}],
               "accuracy_mean": 0.6, "accuracy_std": 0.1414, "macro_f1_mean": 0.3, "macro_f1_std": 0.0707,
               "majority_accuracy": 0.4, "majority_macro_f1": 0.1, "num_labels": 3, "train_examples": 10,
               "test_examples": 5}
    text = format_results(results)
    assert "| 2 | 0.7000 | 0.3500 |" in text
    assert "| mean ± std (2 seeds) | 0.6000 ± 0.1414 | 0.3000 ± 0.0707 |" in text
    assert "| majority class of train | 0.4000 | 0.1000 |" in text


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for flag in ("--train", "--test", "--text-pair-field", "--label-field", "--seeds", "--output-json", "--device"):
        assert flag in out


def test_cli_bad_model_dir_exits_2_with_one_line(tmp_path, capsys):
    code = main(["finetune", str(tmp_path / "nothing"), "--train", "a.jsonl", "--test", "b.jsonl"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("ernie-cpt: error: MODEL_DIR ") and "pretrain run directory" in lines[0]


# --- a tiny model, really fine-tuned -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(sample_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, its export) of a tiny ERNIE pre-trained briefly on the bundled sample."""
    root = tmp_path_factory.mktemp("tiny")
    run_dir, export_dir = root / "run", root / "export"
    assert main(["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]],
                 "--output-dir", str(run_dir), "--model-size", "tiny", "--max-steps", "20", "--batch-size", "8",
                 "--max-seq-length", "64", "--learning-rate", "1e-3", "--eval-steps", "0",
                 "--vocab-size", "3000", "--seed", "7"]) == 0
    assert main(["export", str(run_dir), str(export_dir)]) == 0
    return run_dir, export_dir


@pytest.fixture(scope="module")
def fortunes(tmp_path_factory) -> tuple[Path, Path]:
    """(the first examples of the fortunes-topics training set, its whole test set)."""
    if not FORTUNES.is_dir():
        pytest.skip(f"downstream set {FORTUNES} is absent (it sits beside the repo in development and CI)")
    train = tmp_path_factory.mktemp("fortunes") / "train.jsonl"
    lines = (FORTUNES / "train.jsonl").read_text(encoding="utf-8").splitlines()[:TRAIN_SUBSET]
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return train, FORTUNES / "test.jsonl"


@pytest.fixture(scope="module")
def two_seeds(tiny_run, fortunes) -> dict:
    train, test = fortunes
    return finetune(tiny_run[1], FinetuneOptions(train=str(train), test=str(test), seeds=[1, 2], **SETTINGS))


@pytest.mark.slow
def test_fine_tuning_beats_the_majority_class(two_seeds):
    # "definitions" (id 1 of the 8 sorted labels) is the most frequent of the first 1,000 training labels
    # (237 of them; "people" is the most frequent over the whole training set); 236 of the 1,126 test labels
    assert two_seeds["majority_accuracy"] == pytest.approx(236 / 1126)
    assert (two_seeds["num_labels"], two_seeds["train_examples"], two_seeds["test_examples"]) == (8, 1000, 1126)
    assert two_seeds["labels"][1] == "definitions"
    for result in two_seeds["per_seed"]:
        assert result["accuracy"] > two_seeds["majority_accuracy"] + 0.1
        assert result["macro_f1"] > two_seeds["majority_macro_f1"]


@pytest.mark.slow
def test_mean_and_sample_std_over_seeds(two_seeds):
    assert [r["seed"] for r in two_seeds["per_seed"]] == [1, 2]
    for metric in ("accuracy", "macro_f1"):
        first, second = (r[metric] for r in two_seeds["per_seed"])
        assert two_seeds[f"{metric}_mean"] == pytest.approx((first + second) / 2)
        assert two_seeds[f"{metric}_std"] == pytest.approx(abs(first - second) / math.sqrt(2))
        assert two_seeds[f"{metric}_std"] == pytest.approx(statistics.stdev([first, second]))


@pytest.mark.slow
def test_cli_on_the_run_directory_repeats_the_seed_exactly(tiny_run, fortunes, two_seeds, tmp_path, capsys):
    train, test = fortunes
    output = tmp_path / "results" / "finetune.json"
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in SETTINGS.items()]
    assert main(["finetune", str(tiny_run[0]), "--train", str(train), "--test", str(test), "--seeds", "1",
                 *flags, "--output-json", str(output)]) == 0
    written = json.loads(output.read_text())
    # The run directory's latest checkpoint is the exported model, and seed 1 is seed 1.
    assert written["per_seed"] == two_seeds["per_seed"][:1]
    assert written["accuracy_std"] == 0.0 and written["accuracy_mean"] == written["per_seed"][0]["accuracy"]
    assert f"| 1 | {written['per_seed'][0]['accuracy']:.4f} |" in capsys.readouterr().out
