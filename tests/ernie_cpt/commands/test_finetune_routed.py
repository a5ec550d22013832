"""finetune --train/--test on an architecture that does not fold into one ErnieModel: a tiny MMoE
pre-trained on the bundled sample, fine-tuned from its run directory and from its export (the
same numbers), beats the majority class of fortunes-topics, and saves a folder that load_model
reads back and that scores what finetune reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ernie_cpt.cli import main
from ernie_cpt.commands.finetune import FinetuneOptions, finetune
from ernie_cpt.data.labelled_data import load_labelled_data
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.modeling.sequence_classifier import DOWNSTREAM_TASK
from ernie_cpt.training.loading import load_model

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

FORTUNES = Path(__file__).resolve().parents[4] / "shared" / "corpora" / "fortunes-topics"
SETTINGS = {"epochs": 2, "learning_rate": [2e-3], "batch_size": 16, "max_seq_length": 32}


@pytest.fixture(scope="module")
def mmoe_run(sample_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, its export) of a tiny MMoE (2 experts over the top layer), 20 steps on the sample."""
    root = tmp_path_factory.mktemp("mmoe")
    run_dir, export_dir = root / "run", root / "export"
    assert main(["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]],
                 "--output-dir", str(run_dir), "--model-size", "tiny", "--max-steps", "20", "--batch-size", "8",
                 "--max-seq-length", "64", "--learning-rate", "1e-3", "--eval-steps", "0", "--vocab-size", "3000",
                 "--seed", "7", "--architecture", "mmoe", "--num-experts", "2", "--expert-layers", "1"]) == 0
    assert main(["export", str(run_dir), str(export_dir)]) == 0
    assert not (export_dir / "config.json").exists()  # ernie-cpt's own folder: MMoE does not fold
    return run_dir, export_dir


@pytest.fixture(scope="module")
def fortunes(tmp_path_factory) -> tuple[Path, Path]:
    if not FORTUNES.is_dir():
        pytest.skip(f"downstream set {FORTUNES} is absent (it sits beside the repo in development and CI)")
    folder = tmp_path_factory.mktemp("fortunes")
    for split, rows in (("train", 1000), ("test", 400)):
        lines = (FORTUNES / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "train.jsonl", folder / "test.jsonl"


def test_an_mmoe_export_fine_tunes_saves_and_reloads(mmoe_run, fortunes, tmp_path):
    train, test = fortunes
    out = tmp_path / "finetuned"
    results = finetune(mmoe_run[1], FinetuneOptions(train=str(train), test=str(test), seeds=[1],
                                                    output_dir=str(out), **SETTINGS))
    seed = results["per_seed"][0]
    assert seed["accuracy"] > results["majority_accuracy"] + 0.1
    saved = load_model(out)  # every task of the MMoE, the downstream one with its own gate and labels
    assert saved.description["finetuned_task"] == DOWNSTREAM_TASK
    assert set(saved.model.gates) == {"knowledge_masking", DOWNSTREAM_TASK}
    assert saved.model.config.id2label == dict(enumerate(results["labels"]))
    tokenizer = load_tokenizer(out)
    data = load_labelled_data(str(train), str(test))
    predictions = []
    with torch.no_grad():
        for start in range(0, len(data.test.texts), 16):
            inputs = tokenizer(data.test.texts[start:start + 16], padding=True, truncation=True, max_length=32,
                               return_tensors="pt")
            batch = {**inputs, "labels": torch.zeros(len(inputs["input_ids"]), dtype=torch.long)}
            predictions.append(saved.model(DOWNSTREAM_TASK, batch).logits.argmax(-1))
    accuracy = (torch.cat(predictions) == torch.tensor(data.test.labels)).double().mean().item()
    assert accuracy == seed["accuracy"]
    # the run directory (its latest checkpoint, exported on the fly) gives the same numbers
    again = finetune(mmoe_run[0], FinetuneOptions(train=str(train), test=str(test), seeds=[1], **SETTINGS))
    assert again["per_seed"] == results["per_seed"]
