"""``ernie-cpt finetune``: the downstream score of a pre-trained encoder, mean ± std over seeds.

``ErnieForSequenceClassification`` (dropout and a linear classifier on the pooled [CLS]
state, as BERT's; Devlin et al. 2019) starts from an exported model folder, or from the
latest checkpoint of a pretrain run (exported to a temporary folder first); only the
classifier is new. Every seed fine-tunes from the same weights: the seed sets the
classifier's initialisation, dropout and the order of the training examples. Fine-tuning is
AdamW without weight decay and with gradients clipped at norm 1 (transformers' Trainer
defaults), under BERT's schedule: linear warm-up over the first 10 % of the steps, then linear
decay to 0. The task embedding of ERNIE 2.0 (``task_type_ids``) is left at its default: id 0
for every token, the id knowledge masking trains.

The test set is scored by accuracy and macro-F1 (the unweighted mean of the per-class F1 over
every class that occurs in the test labels or the predictions, as scikit-learn's
``average="macro"``), next to the score of always predicting the most frequent training
label. The std over seeds is the sample standard deviation (n - 1), 0 for one seed. On CPU the
same seed gives the same numbers; CUDA kernels may add small run-to-run differences.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import (
    DataCollatorWithPadding,
    ErnieForSequenceClassification,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
    set_seed,
)

from ernie_cpt.commands.export import export
from ernie_cpt.commands.options import FinetuneOptions
from ernie_cpt.data.labelled_data import LabelledSplit, load_labelled_data
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import UserError
from ernie_cpt.options import check_ranges
from ernie_cpt.progress import progress
from ernie_cpt.threads import torch_thread_count, torch_threads
from ernie_cpt.training.checkpoint import atomic_write_text
from ernie_cpt.training.trainer import pick_device

log = logging.getLogger(__name__)

WARMUP_FRACTION = 0.1
MAX_GRAD_NORM = 1.0


def macro_f1(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    """Mean F1 over the classes present in ``labels`` or ``predictions`` (1-D tensors of ids), as
    scikit-learn's ``f1_score(average="macro")``; ``num_labels`` is the size of the label space."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels.numpy(), predictions.numpy(), average="macro", zero_division=0))


def _validate(options: FinetuneOptions) -> None:
    if not options.train or not options.test:
        raise UserError("finetune needs --train FILE and --test FILE (labelled .jsonl, .csv or .parquet)")
    if not options.seeds:
        raise UserError("--seeds needs at least one seed")
    check_ranges(options)  # options made in code (compare) as well as on the command line


def _model_folder(model_dir: Path, stack: contextlib.ExitStack) -> Path:
    """``model_dir`` itself when it is an exported model; a run's latest checkpoint exported to a
    temporary folder (removed when ``stack`` closes) when it is a pretrain run directory."""
    has_weights = any((model_dir / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))
    if (model_dir / "config.json").is_file() and has_weights:
        try:
            model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (ValueError, AttributeError) as e:
            raise UserError(f"{model_dir / 'config.json'} is not a model config; export the model again") from e
        if model_type != "ernie":
            raise UserError(f"{model_dir} holds a '{model_type}' model; finetune fine-tunes ERNIE encoders "
                            f"(a folder written by ernie-cpt export, or a pretrain run directory)")
        return model_dir
    if (model_dir / "run_config.json").is_file() and (model_dir / "checkpoints").is_dir():
        return export(model_dir, Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ernie-cpt-"))) / "model")
    raise UserError(f"MODEL_DIR {model_dir} must be a folder written by ernie-cpt export (config.json, "
                    f"model.safetensors, tokenizer files) or a pretrain run directory (run_config.json, checkpoints/)")


def _load_classifier(folder: Path, num_labels: int, device: torch.device) -> ErnieForSequenceClassification:
    model, info = ErnieForSequenceClassification.from_pretrained(str(folder), num_labels=num_labels,
                                                                 dtype=torch.float32, output_loading_info=True)
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("classifier."))
    if missing:
        raise UserError(f"the weights in {folder} do not fit an ERNIE encoder (missing {', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}); export the model again with ernie-cpt export")
    return model.to(device)


def _encode(tokenizer: PreTrainedTokenizerBase, split: LabelledSplit, max_seq_length: int) -> list[dict[str, Any]]:
    """One dict of token ids per example (unpadded: batches are padded to their longest)."""
    encoded = tokenizer(split.texts, split.text_pairs, truncation=True, max_length=max_seq_length)
    return [{**{key: values[i] for key, values in encoded.items()}, "labels": label}
            for i, label in enumerate(split.labels)]


def _predict(model: ErnieForSequenceClassification, loader: DataLoader, device: torch.device) -> torch.Tensor:
    model.eval()
    predictions = []
    with torch.no_grad():
        for batch in loader:
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            predictions.append(model(**inputs).logits.argmax(-1).cpu())
    return torch.cat(predictions)


def _finetune_once(folder: Path, seed: int, train: list[dict[str, Any]], test: list[dict[str, Any]],
                   collator: DataCollatorWithPadding, num_labels: int, options: FinetuneOptions,
                   device: torch.device) -> dict[str, float]:
    """Fine-tune a fresh classifier with ``seed``; accuracy and macro-F1 on ``test``, and
    ``collapsed: True`` when it predicted one class for every test example."""
    set_seed(seed)
    model = _load_classifier(folder, num_labels, device)
    loader = DataLoader(train, batch_size=options.batch_size, shuffle=True, collate_fn=collator,
                        generator=torch.Generator().manual_seed(seed))
    total_steps = options.epochs * len(loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(WARMUP_FRACTION * total_steps), total_steps)
    model.train()
    with progress(total_steps, f"Fine-tuning (seed {seed})", "step") as bar:
        for _ in range(options.epochs):
            for batch in loader:
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    labels = torch.tensor([example["labels"] for example in test])
    predictions = _predict(model, DataLoader(test, batch_size=options.batch_size, collate_fn=collator), device)
    return {"seed": seed, "accuracy": (predictions == labels).double().mean().item(),
            "macro_f1": macro_f1(predictions, labels, num_labels),
            **({"collapsed": True} if len(labels) > 1 and predictions.unique().numel() == 1 else {})}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def finetune(model_dir: str | Path, options: FinetuneOptions) -> dict:
    """Fine-tune ``model_dir`` once per seed on ``options.train`` and score it on ``options.test``.

    Returns ``accuracy_mean``/``_std``, ``macro_f1_mean``/``_std`` (sample std), ``per_seed``
    (``seed``, ``accuracy``, ``macro_f1``, and ``collapsed: True`` for a run that predicted one class
    for the whole test set), the majority-class baseline (``majority_accuracy``,
    ``majority_macro_f1``), ``num_labels``, ``labels`` (the label of each class id),
    ``train_examples`` and ``test_examples``; written to ``options.output_json`` too if set.
    """
    _validate(options)
    device = pick_device(options.device)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(*torch_thread_count(options.num_threads)))
        folder = _model_folder(Path(model_dir), stack)
        data = load_labelled_data(options.train, options.test, options.text_field, options.text_pair_field,
                                  options.label_field)
        num_labels = len(data.label_names)
        tokenizer = load_tokenizer(folder)
        positions = json.loads((folder / "config.json").read_text(encoding="utf-8"))["max_position_embeddings"]
        if options.max_seq_length > positions:
            raise UserError(f"--max-seq-length {options.max_seq_length} exceeds the model's {positions} positions; "
                            f"lower it")
        train = _encode(tokenizer, data.train, options.max_seq_length)
        test = _encode(tokenizer, data.test, options.max_seq_length)
        collator = DataCollatorWithPadding(tokenizer)
        per_seed = []
        for seed in options.seeds:
            per_seed.append(_finetune_once(folder, seed, train, test, collator, num_labels, options, device))
            log.info("seed %d: accuracy %.4f, macro-F1 %.4f", seed, per_seed[-1]["accuracy"],
                     per_seed[-1]["macro_f1"])
    test_labels = torch.tensor(data.test.labels)
    majority = torch.full_like(test_labels, int(torch.bincount(torch.tensor(data.train.labels)).argmax()))
    accuracy_mean, accuracy_std = _mean_std([r["accuracy"] for r in per_seed])
    f1_mean, f1_std = _mean_std([r["macro_f1"] for r in per_seed])
    results = {
        "accuracy_mean": accuracy_mean, "accuracy_std": accuracy_std,
        "macro_f1_mean": f1_mean, "macro_f1_std": f1_std,
        "majority_accuracy": (majority == test_labels).double().mean().item(),
        "majority_macro_f1": macro_f1(majority, test_labels, num_labels),
        "num_labels": num_labels, "labels": data.label_names, "per_seed": per_seed,
        "train_examples": len(data.train.labels), "test_examples": len(data.test.labels),
    }
    if options.output_json:
        path = Path(options.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(results, indent=2) + "\n")
    return results


def format_results(results: dict) -> str:
    """The per-seed scores and their mean ± std as a Markdown table, with the majority baseline."""
    rows = [f"| {r['seed']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} |" for r in results["per_seed"]]
    n = len(results["per_seed"])
    return "\n".join([
        f"Fine-tuned on {results['train_examples']} examples ({results['num_labels']} labels), "
        f"tested on {results['test_examples']}:",
        "",
        "| seed | accuracy | macro-F1 |",
        "| ---: | -------: | -------: |",
        *rows,
        f"| mean ± std ({n} seed{'s' if n > 1 else ''}) | {results['accuracy_mean']:.4f} ± "
        f"{results['accuracy_std']:.4f} | {results['macro_f1_mean']:.4f} ± {results['macro_f1_std']:.4f} |",
        f"| majority class of train | {results['majority_accuracy']:.4f} | {results['majority_macro_f1']:.4f} |",
    ])
