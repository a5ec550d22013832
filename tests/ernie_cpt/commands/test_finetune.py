"""Fine-tuning: macro-F1 by hand, what MODEL_DIR may be, option ranges, the validation split, and a
tiny pre-trained ERNIE fine-tuned on fortunes-topics that beats the majority class, keeps its best
epoch and learning rate by validation accuracy, saves a model that scores what was reported, with
mean ± std over seeds (no ± for one seed), --max-steps optimizer steps, and same seed, same numbers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import ernie_cpt.commands.finetune as finetune_module
from ernie_cpt.cli import main
from ernie_cpt.commands.finetune import FinetuneOptions, finetune, format_results, macro_f1
from ernie_cpt.data.labelled_data import LabelledSplit, load_labelled_data, validation_split
from ernie_cpt.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FORTUNES = Path(__file__).resolve().parents[4] / "shared" / "corpora" / "fortunes-topics"
TRAIN_SUBSET = 1000
# A tiny, barely pre-trained encoder learns quickly only with a large learning rate.
SETTINGS = {"epochs": 3, "learning_rate": [1e-3, 2e-3], "batch_size": 16, "max_seq_length": 32}


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


@pytest.mark.parametrize(("change", "flag"), [
    ({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"), ({"seeds": []}, "--seeds"),
    ({"train": None}, "--train"), ({"learning_rate": [0.0]}, "--learning-rate"),
    ({"learning_rate": []}, "--learning-rate"), ({"learning_rate": [1e-4, 2.0]}, "--learning-rate"),
    ({"max_steps": 0}, "--max-steps"), ({"max_steps": -2}, "--max-steps"),
    ({"validation_fraction": -0.1}, "--validation-fraction"), ({"validation_fraction": 0.6}, "--validation-fraction"),
    ({"validation_fraction": 0.0, "learning_rate": [1e-4, 1e-3]}, "--validation-fraction"),
    ({"max_seq_length": 4}, "--max-seq-length")])
def test_bad_settings_name_the_flag(change, flag, tmp_path):
    with pytest.raises(UserError, match=flag):
        finetune(tmp_path, FinetuneOptions(**{"train": "a.jsonl", "test": "b.jsonl", **change}))


def test_output_dir_that_is_not_empty_or_holds_the_model_is_refused_before_training(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    options = FinetuneOptions(train="a.jsonl", test="b.jsonl", output_dir=str(out))
    with pytest.raises(UserError, match=r"--output-dir .*out is not empty; pass --overwrite"):
        finetune(tmp_path / "model", options)
    assert (out / "old.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="holds MODEL_DIR"):
        finetune(out / "model", FinetuneOptions(train="a.jsonl", test="b.jsonl", output_dir=str(out), overwrite=True))


def test_validation_split_is_stratified_seeded_and_disjoint():
    # 14 rows of class 0, 6 of class 1; 0.25 of 20 rows = 5 validation rows, both classes on both sides
    split = LabelledSplit([f"t{i}" for i in range(20)], None, [0] * 14 + [1] * 6)
    trained, validation = validation_split(split, 0.25, seed=0)
    assert (len(trained.texts), len(validation.texts)) == (15, 5)
    assert set(trained.texts).isdisjoint(validation.texts)
    assert sorted(trained.texts + validation.texts) == sorted(split.texts)
    assert sorted(validation.labels) in ([0, 0, 0, 0, 1], [0, 0, 0, 1, 1])  # 3.5 and 1.5 rounded by scikit-learn
    assert all(split.labels[int(t[1:])] == label for t, label in zip(validation.texts, validation.labels, strict=True))
    assert validation_split(split, 0.25, seed=0)[1] == validation  # the same rows for every fine-tuning seed
    assert any(validation_split(split, 0.25, seed=s)[1].texts != validation.texts for s in range(1, 5))


def test_training_file_too_small_for_a_split_is_one_clear_error():
    rare = LabelledSplit([f"t{i}" for i in range(10)], None, [0] * 5 + [1] * 4 + [2])  # label 2 occurs once
    with pytest.raises(UserError, match=r"--train has 10 examples \(3 labels, the rarest 1 times\): too few"):
        validation_split(rare, 0.3, seed=0)
    few = LabelledSplit([f"t{i}" for i in range(10)], None, [0, 1, 2] * 3 + [0])  # 1 validation row < 3 labels
    with pytest.raises(UserError, match="--validation-fraction 0"):
        validation_split(few, 0.1, seed=0)


def test_format_results_shows_every_seed_and_the_mean():
    results = {"per_seed": [{"seed": 1, "accuracy": 0.5, "macro_f1": 0.25, "learning_rate": 1e-4, "best_epoch": 2,
                             "validation_accuracy": 0.55},
                            {"seed": 2, "accuracy": 0.7, "macro_f1": 0.35, "learning_rate": 1e-3, "best_epoch": 3,
                             "validation_accuracy": 0.65, "collapsed": True}],
               "accuracy_mean": 0.6, "accuracy_std": 0.1414, "macro_f1_mean": 0.3, "macro_f1_std": 0.0707,
               "majority_accuracy": 0.4, "majority_macro_f1": 0.1, "num_labels": 3, "train_examples": 10,
               "validation_examples": 2, "test_examples": 5}
    text = format_results(results)
    assert "| 1 | 0.0001 | 2 | 0.5500 | 0.5000 | 0.2500 |" in text
    assert "| 2 | 0.001 | 3 | 0.6500 | 0.7000 (collapsed) | 0.3500 |" in text
    assert "| mean ± std (2 seeds) | | | | 0.6000 ± 0.1414 | 0.3000 ± 0.0707 |" in text
    assert "| majority class of train | | | | 0.4000 | 0.1000 |" in text
    one = {**results, "per_seed": results["per_seed"][:1], "accuracy_mean": 0.5, "accuracy_std": None,
           "macro_f1_mean": 0.25, "macro_f1_std": None}
    assert "±" not in format_results(one) and "| 1 | 0.0001 | 2 | 0.5500 | 0.5000 | 0.2500 |" in format_results(one)


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for flag in ("--train", "--test", "--text-pair-field", "--label-field", "--seeds", "--output-json", "--device",
                 "--output-dir", "--overwrite", "--max-steps", "--validation-fraction", "--validation-seed"):
        assert flag in out


def test_cli_bad_model_dir_exits_2_with_one_line(tmp_path, capsys):
    code = main(["finetune", str(tmp_path / "nothing"), "--train", "a.jsonl", "--test", "b.jsonl"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("ernie-cpt: error: MODEL_DIR ") and "pretrain run directory" in lines[0]
    code = main(["finetune", str(tmp_path), "--train", "a.jsonl", "--test", "b.jsonl", "--max-steps", "0"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and lines == ["ernie-cpt: error: --max-steps must be -1 or at least 1, got 0"]


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
def split_calls() -> list[tuple[LabelledSplit, tuple[LabelledSplit, LabelledSplit]]]:
    """Every (input, output) of the validation split that the module's fine-tuning runs made."""
    calls = []

    def spy(split, fraction, seed, flag="--train"):
        result = validation_split(split, fraction, seed, flag)
        calls.append((split, result))
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finetune_module, "validation_split", spy)
        yield calls


@pytest.fixture(scope="module")
def two_seeds(tiny_run, fortunes, split_calls, tmp_path_factory) -> dict:
    """Two seeds, two learning rates, three epochs each; the best model saved to an output folder."""
    train, test = fortunes
    out = tmp_path_factory.mktemp("finetuned") / "model"
    results = finetune(tiny_run[1], FinetuneOptions(train=str(train), test=str(test), seeds=[1, 2],
                                                    output_dir=str(out), **SETTINGS))
    return {**results, "out": out}


@pytest.mark.slow
def test_fine_tuning_beats_the_majority_class(two_seeds):
    # "definitions" (id 1 of the 8 sorted labels) is the most frequent of the 900 training rows left by the
    # validation split of the first 1,000 (237 of the 1,000; "people" is the most frequent over the whole
    # training set); 236 of the 1,126 test labels
    assert two_seeds["majority_accuracy"] == pytest.approx(236 / 1126)
    assert (two_seeds["num_labels"], two_seeds["train_examples"], two_seeds["validation_examples"],
            two_seeds["test_examples"]) == (8, 900, 100, 1126)
    assert two_seeds["labels"][1] == "definitions"
    for result in two_seeds["per_seed"]:
        assert result["accuracy"] > two_seeds["majority_accuracy"] + 0.1
        assert result["macro_f1"] > two_seeds["majority_macro_f1"]
        assert "collapsed" not in result


@pytest.mark.slow
def test_mean_and_sample_std_over_seeds(two_seeds):
    assert [r["seed"] for r in two_seeds["per_seed"]] == [1, 2]
    for metric in ("accuracy", "macro_f1"):
        first, second = (r[metric] for r in two_seeds["per_seed"])
        assert two_seeds[f"{metric}_mean"] == pytest.approx((first + second) / 2)
        assert two_seeds[f"{metric}_std"] == pytest.approx(abs(first - second) / math.sqrt(2))
        assert two_seeds[f"{metric}_std"] == pytest.approx(statistics.stdev([first, second]))


@pytest.mark.slow
def test_best_learning_rate_epoch_and_seed_by_validation_accuracy(two_seeds):
    for result in two_seeds["per_seed"]:
        history = result["validation_history"]
        assert list(history) == ["0.001", "0.002"] and all(len(scores) == 3 for scores in history.values())
        # the first learning rate whose best epoch is best, and in it the first best epoch
        best_rate = max(history, key=lambda rate: max(history[rate]))
        assert result["learning_rate"] == float(best_rate)
        scores = history[best_rate]
        assert result["best_epoch"] == scores.index(max(scores)) + 1
        assert result["validation_accuracy"] == max(scores)
    best = max(two_seeds["per_seed"], key=lambda r: r["validation_accuracy"])
    assert two_seeds["saved_seed"] == best["seed"]


@pytest.mark.slow
def test_validation_rows_come_from_the_training_file_only(two_seeds, split_calls, fortunes):
    train_file, test_file = fortunes
    data = load_labelled_data(train_file, test_file)
    for split, (trained, validation) in split_calls:
        assert split.texts == data.train.texts  # carved from the training file
        assert set(validation.texts).isdisjoint(data.test.texts)
        assert set(validation.texts).isdisjoint(trained.texts)
        assert len(validation.texts) == 100 and len(trained.texts) == 900
    assert len({tuple(v.texts) for _, (_, v) in split_calls}) == 1  # the same rows for every seed


def _accuracy(model_dir: Path, texts: list[str], labels: list[int]) -> float:
    """What a user of transformers scores with the saved folder, batch by batch as finetune does."""
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    predictions = []
    batch = SETTINGS["batch_size"]
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            inputs = tokenizer(texts[start:start + batch], padding=True, truncation=True,
                               max_length=SETTINGS["max_seq_length"], return_tensors="pt")
            predictions.append(model(**inputs).logits.argmax(-1))
    return (torch.cat(predictions) == torch.tensor(labels)).double().mean().item()


@pytest.mark.slow
def test_saved_model_scores_what_finetune_reported(two_seeds, split_calls, fortunes, tiny_run):
    out = two_seeds["out"]
    saved = next(r for r in two_seeds["per_seed"] if r["seed"] == two_seeds["saved_seed"])
    data = load_labelled_data(*fortunes)
    assert _accuracy(out, data.test.texts, data.test.labels) == saved["accuracy"]
    validation = split_calls[0][1][1]  # the best epoch's weights: they score its validation accuracy
    assert _accuracy(out, validation.texts, validation.labels) == saved["validation_accuracy"]
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.id2label == dict(enumerate(two_seeds["labels"]))
    assert model.config.label2id["definitions"] == 1
    positions = json.loads((tiny_run[1] / "config.json").read_text())["max_position_embeddings"]
    assert AutoTokenizer.from_pretrained(str(out)).model_max_length == positions
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_seed"] == two_seeds["per_seed"] and metrics["saved_seed"] == saved["seed"]
    assert not list(out.parent.glob(".*tmp*"))


@pytest.mark.slow
def test_max_steps_counts_optimizer_steps(tiny_run, fortunes, tmp_path):
    # 200 rows: 180 trained on in batches of 16 = 12 steps an epoch; 30 steps = 12 + 12 + 6 (3 evaluations)
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(fortunes[0].read_text().splitlines()[:200]) + "\n")
    steps = []
    handle = register_optimizer_step_post_hook(lambda *_: steps.append(1))
    try:
        result = finetune(tiny_run[1], FinetuneOptions(train=str(train), test=str(fortunes[1]), **{
            **SETTINGS, "learning_rate": [1e-3], "max_steps": 30, "epochs": 1}))
    finally:
        handle.remove()
    assert len(steps) == 30 and result["per_seed"][0]["steps"] == 30
    assert len(result["per_seed"][0]["validation_history"]["0.001"]) == 3


@pytest.mark.slow
def test_cli_on_the_run_directory_repeats_the_seed_exactly(tiny_run, fortunes, two_seeds, tmp_path, capsys):
    train, test = fortunes
    output = tmp_path / "results" / "finetune.json"
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in SETTINGS.items() if name != "learning_rate"]
    assert main(["finetune", str(tiny_run[0]), "--train", str(train), "--test", str(test), "--seeds", "1",
                 "--learning-rate", *[str(rate) for rate in SETTINGS["learning_rate"]], *flags,
                 "--output-json", str(output)]) == 0
    written = json.loads(output.read_text())
    # The run directory's latest checkpoint is the exported model, and seed 1 is seed 1.
    assert written["per_seed"] == two_seeds["per_seed"][:1]
    assert written["accuracy_std"] is None and written["accuracy_mean"] == written["per_seed"][0]["accuracy"]
    assert written["saved_seed"] is None
    out = capsys.readouterr().out
    assert f"| {written['per_seed'][0]['accuracy']:.4f} |" in out and "±" not in out
    assert out.rstrip().endswith("The fine-tuned model was not saved: add --output-dir DIR to keep it (with its "
                                 "tokenizer and labels).")
