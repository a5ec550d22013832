"""Export, end to end: a 3-stage sequential run, exported whole and at the end of stage 1, loaded back as a
new user would (pipeline("fill-mask"), AutoModel, ErnieForSequenceClassification) and by ernie-cpt
(the loader, --init-from, --resume-from-checkpoint); its model card, tokenizer and file modes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ernie_cpt.builders import Corpus
from ernie_cpt.cli import build_parser, main
from ernie_cpt.commands.options import RunOptions, pretrain_option_classes
from ernie_cpt.commands.pretrain import _task_data
from ernie_cpt.data.annotate import annotate
from ernie_cpt.data.corpus import corpus_fingerprint, load_corpus, split_documents
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.files import current_umask
from ernie_cpt.options import resolve_options
from ernie_cpt.training.evaluate import evaluate
from ernie_cpt.training.loading import load_model
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.training.run_log import read_records
from pretasks import IGNORE_INDEX, get_task

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

TASKS = ["knowledge_masking", "capitalization", "sentence_reordering"]


def _args(sample_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]], "--output-dir",
            str(run_dir), "--tasks", *TASKS, "--schedule", "sequential", "--steps-per-task", "12",
            "--model-size", "tiny", "--batch-size", "16", "--learning-rate", "1e-3", "--eval-steps", "0",
            "--save-steps", "1000", "--save-total-limit", "1", "--eval-untrained-tasks", "--vocab-size", "3000",
            "--seed", "7", "--logging-steps", "1", *extra]


@pytest.fixture(scope="module")
def run(sample_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """The run (3 stages: 4, 10 and 22 steps) and its arguments."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    args = _args(sample_dir, run_dir)
    assert main(args) == 0
    return run_dir, args


@pytest.fixture(scope="module")
def exported(run) -> Path:
    out = run[0].parent / "run-export"
    assert main(["export", str(run[0]), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def held_out(run) -> dict:
    """The run's held-out batches of every task, rebuilt as pretrain built them."""
    run_dir, args = run
    options = resolve_options(build_parser().parse_args(args), pretrain_option_classes())
    documents = annotate(load_corpus(options[CorpusOptions]), options[AnnotationOptions])
    split = split_documents(documents, options[EvaluationOptions].eval_fraction, options[EvaluationOptions].split_seed)
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    tasks = {name: get_task(name)(tokenizer, options[get_task(name).options_class],
                                  options[RunOptions].max_seq_length) for name in TASKS}
    corpus = Corpus(documents, split["train"], split["test"])
    return _task_data(tasks, corpus, options[TrainingOptions], options[EvaluationOptions], None)[1]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_every_stage_end_is_kept_and_run_config_records_the_budget_trained(run, sample_dir):
    run_dir, _ = run
    assert [p.name for p in sorted((run_dir / "checkpoints").glob("step-*"))] == [
        "step-00000004", "step-00000014", "step-00000036"]  # --save-total-limit 1 keeps the stage ends
    config = json.loads((run_dir / "run_config.json").read_text())
    assert (config["max_steps"], config["requested_max_steps"]) == (36, 1000)
    corpus = load_corpus(CorpusOptions(corpus=[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]))
    assert config["corpus"]["documents"] == 4 and config["corpus"]["fingerprint"] == corpus_fingerprint(corpus)


def test_export_of_stage_1_scores_the_stage_1_row_of_the_accuracy_matrix(run, held_out):
    run_dir, _ = run
    out = run_dir.parent / "stage-1"
    assert main(["export", str(run_dir), str(out), "--stage", "1", "--license", "apache-2.0"]) == 0
    saved = load_model(out)
    assert (saved.description["step"], saved.description["stage_end"]) == (4, 1)
    scores = evaluate(saved.model, held_out, torch.device("cpu"))
    assert [scores[task]["accuracy"] for task in TASKS] == _metrics(run_dir)["accuracy_matrix"][0]
    card = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert card["license"] == "apache-2.0"
    assert "At step 4 (this checkpoint)" in (out / "README.md").read_text()


def test_the_loader_rebuilds_the_run_from_the_export_with_every_head(run, exported):
    from_export, from_run = load_model(exported), load_model(run[0])
    ours, theirs = from_export.model.state_dict(), from_run.model.state_dict()
    assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert sorted(from_export.model.heads) == sorted(TASKS)
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["ErnieForMaskedLM"] and config["use_task_id"] is True
    description = json.loads((exported / "ernie_cpt_model.json").read_text())
    assert description["task_ids"] == {"knowledge_masking": 0, "capitalization": 1, "sentence_reordering": 3}
    assert (description["step"], description["checkpoint"]) == (36, "step-00000036")


FILL_MASK = """
import json, sys, torch
from transformers import AutoModel, AutoModelForMaskedLM, ErnieForSequenceClassification, pipeline
export, inputs = sys.argv[1], json.load(open(sys.argv[2]))
fill = pipeline("fill-mask", model=export)
print("PIPELINE LOADED", file=sys.stderr, flush=True)
model, tokenizer = fill.model.eval(), fill.tokenizer
direct, piped = [], []
for ids, targets in zip(inputs["ids"], inputs["targets"]):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    direct.append([int(logits[t].argmax()) for t in targets])
    text = tokenizer.decode(ids[1:-1])
    if tokenizer(text)["input_ids"] != ids:  # a text that does not tokenize back to the same ids is left out
        piped.append(None)
        continue
    masks = [t for t in targets if ids[t] == tokenizer.mask_token_id]
    out = fill(text, top_k=1) if masks else []
    out = [out] if len(masks) == 1 else out
    piped.append({str(t): o[0]["token"] for t, o in zip(masks, out)})
loaded = {}
for cls in (AutoModelForMaskedLM, AutoModel, ErnieForSequenceClassification):
    loaded_model, info = cls.from_pretrained(export, output_loading_info=True)
    loaded[type(loaded_model).__name__] = {k: sorted(info[k]) for k in ("missing_keys", "unexpected_keys")}
print(json.dumps({"direct": direct, "piped": piped, "loaded": loaded}))
"""


def _fill_mask_inputs(run_dir: Path, batches) -> tuple[dict, list[list[int]]]:
    """The held-out knowledge-masking examples (ids without padding, target positions) and the run's own
    predictions at their targets (the final checkpoint, as the run scored it)."""
    model = load_model(run_dir).model
    inputs, ours = {"ids": [], "targets": []}, []
    with torch.no_grad():
        for batch in batches:
            predictions = model("knowledge_masking", batch).logits.argmax(-1).tolist()
            for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
                targets = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
                inputs["ids"].append(ids[mask.bool()].tolist())
                inputs["targets"].append(targets)
                ours.append(predictions[:len(targets)])
                predictions = predictions[len(targets):]
    return inputs, ours


def test_fill_mask_pipeline_predicts_what_the_run_predicts_without_a_missing_weight(run, exported, held_out,
                                                                                       tmp_path):
    """Acceptance: pipeline("fill-mask") loads the export with no missing weight and, on the held-out masked
    positions, its top-1 predictions are the run's knowledge-masking predictions, so its accuracy is the
    accuracy the run logged."""
    run_dir, _ = run
    inputs, ours = _fill_mask_inputs(run_dir, held_out["knowledge_masking"])
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_HUB_DISABLE"))}
    result = subprocess.run([sys.executable, "-c", FILL_MASK, str(exported), str(tmp_path / "inputs.json")],
                            capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    loading = result.stderr.split("PIPELINE LOADED")[0]
    assert "MISSING" not in loading and "newly initialized" not in loading
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert out["direct"] == ours
    labels = [int(label) for batch in held_out["knowledge_masking"] for label in batch["labels"].flatten()
              if label != IGNORE_INDEX]
    predicted = [p for row in out["direct"] for p in row]
    final = [r for r in read_records(run_dir, "eval") if r["task"] == "knowledge_masking"][-1]
    assert sum(p == label for p, label in zip(predicted, labels)) / len(labels) == final["accuracy"]
    compared = 0
    for piped, row, targets in zip(out["piped"], ours, inputs["targets"]):
        for position, token in (piped or {}).items():
            assert token == row[targets.index(int(position))]
            compared += 1
    assert compared >= 100  # most held-out texts tokenize back to their ids

    loaded = out["loaded"]
    assert loaded["ErnieForMaskedLM"] == {"missing_keys": [],
                                          "unexpected_keys": ["ernie.pooler.dense.bias", "ernie.pooler.dense.weight"]}
    assert loaded["ErnieModel"]["missing_keys"] == []
    assert loaded["ErnieForSequenceClassification"]["missing_keys"] == ["classifier.bias", "classifier.weight"]


def test_the_model_card_metadata_and_numbers_come_from_the_run(run, exported):
    run_dir, _ = run
    text = (exported / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    card = yaml.safe_load(front)
    assert (card["library_name"], card["pipeline_tag"], card["language"]) == ("transformers", "fill-mask", ["en"])
    assert "license" not in card  # none given: the card claims none (only the user knows what the corpus allows)
    assert card["tags"] == ["ernie", "continual-pretraining"]
    metrics = _metrics(run_dir)
    results = {r["task"]["name"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in card["model-index"][0]["results"]}
    assert [results[task]["accuracy"] for task in TASKS] == metrics["accuracy_matrix"][-1]
    for i, row in enumerate(metrics["accuracy_matrix"], start=1):
        assert f"| {i} | " + " | ".join(f"{v:.4f}" for v in row) + " |" in body
    final = {r["task"]: r for r in read_records(run_dir, "eval") if r["step"] == 36}
    for task in TASKS:
        assert f"| {task} | {final[task]['accuracy']:.4f} | {final[task]['majority_accuracy']:.4f} |" in body
    assert f"Mean forgetting {metrics['mean_forgetting']:.4f}" in body
    config = json.loads((run_dir / "run_config.json").read_text())
    assert config["corpus"]["fingerprint"] in body and "36 task steps" in body
    assert 'pipeline("fill-mask", model=' in body


def test_the_tokenizer_truncates_to_the_models_positions(exported):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported)
    model = AutoModel.from_pretrained(exported)
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 128
    inputs = tokenizer("Anne Elliot walked to Uppercross. " * 200, truncation=True, return_tensors="pt")
    assert inputs["input_ids"].shape == (1, 128)
    assert model(**inputs).last_hidden_state.shape == (1, 128, 128)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_exports_and_run_directories_get_the_umask_modes(run, tmp_path, mask):
    run_dir, _ = run
    out = tmp_path / "export"
    command = [sys.executable, "-m", "ernie_cpt", "export", str(run_dir), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(mask),
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "Writing model shards" not in result.stderr  # library bars only with --verbose
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.iterdir()]}
    assert modes == {"export": 0o777 & ~mask, **{p.name: 0o666 & ~mask for p in out.iterdir()}}
    checkpoint = run_dir / "checkpoints" / "step-00000036" / "model.safetensors"  # safetensors writes 0600 itself
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o666 & ~current_umask()


@pytest.mark.parametrize("source", ["run", "export"])
def test_init_from_a_run_or_an_export_restores_every_head_and_the_task_embedding(run, exported, source, sample_dir,
                                                                                   tmp_path, caplog):
    """A new run from an old one's state (how a finished run is extended): later flags win."""
    run_dir, _ = run
    new = tmp_path / "extended"
    extra = ["--tasks", "knowledge_masking", "capitalization", "--steps-per-task", "1", "--learning-rate", "1e-5",
             "--init-from", str(run_dir if source == "run" else exported)]
    with caplog.at_level(logging.INFO):
        assert main(_args(sample_dir, new, *extra)) == 0
    assert "heads of capitalization, knowledge_masking" in caplog.text
    evaluations = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Evaluation at step")]
    assert evaluations and all("knowledge_masking loss" in line and "capitalization loss" in line
                               for line in evaluations)  # one line per evaluation, every task on it
    assert (new / "tokenizer" / "tokenizer.json").read_text() == (run_dir / "tokenizer" / "tokenizer.json").read_text()
    before = load_model(run_dir).model.state_dict()
    after = load_model(new).model.state_dict()  # two AdamW steps at 1e-5 later
    assert sorted(after) == sorted(k for k in before if not k.startswith("heads.sentence_reordering."))
    assert max((after[k] - before[k]).abs().max().item() for k in after) < 1e-4


def test_resume_from_a_chosen_checkpoint_repeats_the_run(run, tmp_path):
    run_dir, args = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    resumed = [*args[:args.index("--output-dir") + 1], str(copy), *args[args.index("--output-dir") + 2:]]
    assert main([*resumed, "--resume-from-checkpoint", str(copy / "checkpoints" / "step-00000014")]) == 0
    def losses(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, "train")]

    assert losses(copy) == losses(run_dir) and len(losses(copy)) == 36
    assert read_records(copy, "eval") == read_records(run_dir, "eval")
    assert main([*resumed, "--resume-from-checkpoint", str(run_dir / "checkpoints" / "step-00000014")]) == 2


def test_a_run_without_knowledge_masking_exports_the_encoder_alone(sample_dir, tmp_path, capsys):
    run_dir, out = tmp_path / "run", tmp_path / "export"
    args = _args(sample_dir, run_dir, "--steps-per-task", "2")
    args[args.index("--tasks") + 1:args.index("--schedule")] = ["capitalization"]
    assert main(args) == 0
    assert main(["export", str(run_dir), str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["architectures"] == ["ErnieModel"]
    readme = (out / "README.md").read_text()
    assert yaml.safe_load(readme.split("---\n")[1])["pipeline_tag"] == "feature-extraction"
    assert "Fill-mask is unavailable" in readme
    assert sorted(load_model(out).model.heads) == ["capitalization"]


def test_an_architecture_that_does_not_fold_exports_its_own_folder(sample_dir, tmp_path, column_per_task):
    run_dir, out = tmp_path / "run", tmp_path / "export"
    assert main([*_args(sample_dir, run_dir, "--steps-per-task", "2"), "--architecture", column_per_task.name]) == 0
    assert main(["export", str(run_dir), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("tokenizer")) == [
        "README.md", "ernie_cpt_model.json", "ernie_cpt_model.safetensors"]
    assert yaml.safe_load((out / "README.md").read_text().split("---\n")[1])["library_name"] == "ernie-cpt"
    ours, theirs = load_model(out).model.state_dict(), load_model(run_dir).model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs) and sorted(ours) == sorted(theirs)
