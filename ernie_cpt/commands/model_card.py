"""The model card (``README.md``) of an export: YAML metadata as the Hugging Face Hub reads it, then
what was trained on what and how well it did.

Every number comes from the run's own records: ``run_config.json`` (options, stages, corpus
size and fingerprint), ``logs/eval.jsonl`` (the held-out scores of the exported step or the last
evaluation before it, beside the majority-class baseline) and ``metrics.json`` (accuracy
matrix, forgetting, BWT). The metadata is written by ``huggingface_hub.ModelCardData``, with the
held-out scores as ``model-index`` results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from ernie_cpt.commands.plan import plan_table
from ernie_cpt.messages import plural
from ernie_cpt.training.run_log import read_records
from schedules.stage import Stage

# The Hub task each head's scores are reported under.
HUB_TASKS = {"masked_lm": "fill-mask", "token_classification": "token-classification"}


def _scores_at(run_dir: Path, step: int) -> tuple[int | None, dict[str, dict[str, Any]]]:
    """The held-out scores of the last evaluation at or before ``step``: (its step, task -> record)."""
    records = [r for r in read_records(run_dir, "eval") if r["step"] <= step]
    if not records:
        return None, {}
    last = max(r["step"] for r in records)
    return last, {r["task"]: r for r in records if r["step"] == last}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metadata(description: dict[str, Any], scores: dict[str, dict[str, Any]], name: str, license_id: str | None,
              languages: list[str]) -> ModelCardData:
    fill_mask = description.get("masked_lm_task") is not None
    folds = description.get("layout") == "transformers"
    results = [EvalResult(task_type=HUB_TASKS.get(description["heads"][task]["head"], "text-classification"),
                          task_name=task, dataset_type="text", dataset_name="held-out documents of the corpus",
                          dataset_split="held-out", metric_type=metric, metric_value=record[metric],
                          metric_name=f"{task} {metric}")
               for task, record in scores.items() for metric in ("accuracy", "f1") if metric in record]
    return ModelCardData(language=languages, license=license_id, library_name="transformers" if folds else "ernie-cpt",
                         pipeline_tag="fill-mask" if fill_mask else "feature-extraction" if folds else None,
                         tags=["ernie", "continual-pretraining"], model_name=name, eval_results=results or None)


def _how_to_load(description: dict[str, Any], name: str) -> list[str]:
    if description.get("layout") != "transformers":
        return [f"The {description['architecture']['architecture']} architecture does not fold into one "
                "`ErnieModel`, so this folder is ernie-cpt's own (`ernie_cpt_model.safetensors`, the model's state "
                "dict, and `ernie_cpt_model.json`): load it with ernie-cpt.", "", "```python",
                "from ernie_cpt.training.loading import load_model", "",
                f'model = load_model("{name}").model  # every head and the task embedding', "```"]
    mlm_task = description.get("masked_lm_task")
    lines = ["```python", "from transformers import AutoModel, AutoTokenizer, ErnieForSequenceClassification" +
             (", pipeline" if mlm_task else "")]
    if mlm_task:
        lines += ["", f'fill = pipeline("fill-mask", model="{name}")  # the trained {mlm_task} head',
                  'print(fill("It is a truth universally [MASK] that a single man must be in want of a wife."))']
    lines += ["", f'encoder = AutoModel.from_pretrained("{name}")  # ErnieModel with the task embedding',
              f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
              f'classifier = ErnieForSequenceClassification.from_pretrained("{name}", num_labels=2)  # new classifier',
              "```", ""]
    if not mlm_task:
        lines += ["Fill-mask is unavailable: the run did not train knowledge masking, so there is no masked-LM head.",
                  ""]
    lines += [f"`ernie-cpt pretrain --init-from {name} ...` continues pre-training with every task head and the "
              "task embedding restored (`ernie_cpt_heads.safetensors`, `ernie_cpt_model.json`)."]
    return lines


def _scores_table(scores: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| task | accuracy | majority class | F1 | majority F1 | scored |", "|---|---:|---:|---:|---:|---:|"]
    for task, r in scores.items():
        lines.append(f"| {task} | {_number(r['accuracy'])} | {_number(r['majority_accuracy'])} | "
                     f"{_number(r.get('f1'))} | {_number(r.get('majority_f1'))} | {r['scored']:,} |")
    return lines


def _continual_section(run_dir: Path) -> list[str]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return ["The run has not finished (no `metrics.json`): no accuracy matrix yet."]
    metrics = json.loads(path.read_text(encoding="utf-8"))
    tasks = metrics["tasks"]
    lines = [f"Held-out {metrics['metric']} of each task (columns) at the end of each stage (rows); `-` where "
             "the task was not scored.", "", "| stage | " + " | ".join(tasks) + " |",
             "|---:|" + "---:|" * len(tasks)]
    lines += [f"| {i} | " + " | ".join(_number(v) for v in row) + " |"
              for i, row in enumerate(metrics["accuracy_matrix"], start=1)]
    drops = metrics.get("drop_from_best", {})  # absent from the metrics.json of older runs
    lines += ["", "| task | forgetting | drop from best |", "|---|---:|---:|"]
    lines += [f"| {task} | {_number(metrics['forgetting'][task])} | {_number(drops.get(task))} |" for task in tasks]
    lines += ["", f"Mean forgetting {_number(metrics['mean_forgetting'])} (Chaudhry et al. 2018), mean drop from "
              f"best to final {_number(metrics.get('mean_drop'))}, backward "
              f"transfer {_number(metrics['backward_transfer'])} (Lopez-Paz & Ranzato 2017), average final "
              f"{metrics['metric']} {_number(metrics['average_final'])}."]
    return lines


def _training_section(config: dict[str, Any], description: dict[str, Any]) -> list[str]:
    stages = [Stage(steps) for steps in config["stages"]]
    task_ids = description["task_ids"]
    lines = [f"Curriculum `{config['schedule']}` ({plural(len(stages), 'stage')}, task mixing "
             f"`{config['task_mixing']}`), {plural(config['max_steps'], 'task step')} in all; steps per task and "
             "stage:", "", plan_table(stages, config["tasks"], config["task_mixing"]), "",
             "Tasks (task id = row of the task embedding): " +
             ", ".join(f"{task} ({task_ids[task]})" for task in config["tasks"]) + ".",
             "", f"AdamW, peak learning rate {config['learning_rate']:g} ({config.get('lr_schedule', 'whole')} "
             f"schedule), batch {config['batch_size']}, warm-up ratio {config['warmup_ratio']:g}, seed "
             f"{config['seed']}, held-out split seed {config.get('split_seed', config['seed'])}."]
    if config.get("skipped_tasks"):
        lines += ["", "Asked for but skipped (the corpus gave them no example): " +
                  "; ".join(f"{task}: {why}" for task, why in config["skipped_tasks"].items())]
    return lines


def _model_section(config: dict[str, Any], description: dict[str, Any], tokenizer: Any,
                   parameters: int) -> list[str]:
    encoder = description["encoder_config"]
    source = (f"from `--init-from {config['init_from']}`" if config.get("init_from") else
              f"from `--tokenizer {config['tokenizer']}`" if config.get("tokenizer") else "trained on the corpus")
    return [f"Architecture `{description['architecture']['architecture']}`: {encoder['num_hidden_layers']} layers, "
            f"hidden size {encoder['hidden_size']}, {encoder['num_attention_heads']} attention heads, feed-forward "
            f"{encoder['intermediate_size']}, {encoder['max_position_embeddings']} positions, "
            f"{encoder['task_type_vocab_size']} task-embedding rows; {parameters / 1e6:.2f}M parameters with "
            f"the heads.", "",
            f"Tokenizer: {type(tokenizer).__name__}, vocabulary {len(tokenizer):,}, {source}; "
            f"`model_max_length` {tokenizer.model_max_length} (the model's positions)."]


def model_card(run_dir: Path, description: dict[str, Any], tokenizer: Any, parameters: int, out_dir: Path,
               license_id: str | None, languages: list[str]) -> str:
    """The README.md of the export ``out_dir`` of run ``run_dir``, whose ``ernie_cpt_model.json`` is
    ``description`` and whose model has ``parameters`` parameters (heads included); its metadata names
    ``license_id`` (none when None: only the user knows what their corpus allows)."""
    name = out_dir.name
    config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    step = description["step"]
    scored_at, scores = _scores_at(run_dir, step)
    corpus = config.get("corpus", {})
    stage = f", the end of stage {description['stage_end']}" if description.get("stage_end") else ""
    body = [f"# {name}", "",
            "An ERNIE encoder (`ErnieModel` with the ERNIE 2.0 task embedding; Sun et al. 2020) pre-trained with "
            f"ernie-cpt. This is step {step:,} of the run (checkpoint `{description['checkpoint']}`{stage}).", "",
            "## How to load", "", *_how_to_load(description, str(out_dir)), "",
            "## Training", "", *_training_section(config, description), "",
            "## Corpus", ""]
    if corpus:
        body += [f"{plural(corpus['documents'], 'document')} ({corpus['training_documents']:,} for training, "
                 f"{corpus['held_out_documents']:,} held out), {plural(corpus['words'], 'word')}, "
                 f"{plural(corpus['characters'], 'character')}; content fingerprint (SHA-256 of every document's "
                 f"id, title and text) `{corpus['fingerprint']}`."]
    body += ["", "## Model", "", *_model_section(config, description, tokenizer, parameters), "",
             "## Held-out scores", ""]
    if scored_at is None:
        body += ["No held-out evaluation at or before this step."]
    else:
        body += [f"At step {scored_at:,}{' (this checkpoint)' if scored_at == step else ''}, on the held-out "
                 "documents, beside always predicting the most frequent label:", "", *_scores_table(scores)]
    body += ["", "## Accuracy matrix and forgetting", "", *_continual_section(run_dir), ""]
    card = _metadata(description, scores, name, license_id, languages)
    return f"---\n{card.to_yaml()}\n---\n\n" + "\n".join(body)
