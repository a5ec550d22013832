"""``ernie-cpt finetune``: the downstream score of a pre-trained encoder, mean ± std over seeds.

``ErnieForSequenceClassification`` (dropout and a linear classifier on the pooled [CLS]
state, as BERT's; Devlin et al. 2019) starts from an exported model folder, or from the
latest checkpoint of a pretrain run (exported to a temporary folder first); only the
classifier is new. A model whose architecture does not fold into one ErnieModel (every one but
hard) is fine-tuned whole, with the downstream task added as a new routed task
(``ernie_cpt.modeling.sequence_classifier``): its gate, experts or column start as copies of
the model's first task's, and its classifier is the same one on the pooled [CLS] state.
Every seed fine-tunes from the same weights: the seed sets the
classifier's initialisation, dropout and the order of the training examples. Fine-tuning is
AdamW without weight decay and with gradients clipped at norm 1 (transformers' Trainer
defaults), under BERT's schedule: linear warm-up over the first 10 % of the steps, then linear
decay to 0, for ``--epochs`` or ``--max-steps`` optimizer steps. The task embedding of ERNIE 2.0
(``task_type_ids``) is left at its default: id 0 for every token, the id knowledge masking trains.

Model selection uses a validation split carved from the training file only (stratified,
``--validation-fraction``, the same rows for every seed): the validation accuracy after every
epoch picks the epoch whose weights are kept (Trainer's ``load_best_model_at_end``) and, with
several ``--learning-rate`` values, the learning rate (a small grid search, as Devlin et al. 2019
chose theirs on the dev set). BERT-base's 5e-5 leaves a tiny encoder predicting one class, so
the default grid is 1e-4, 3e-4, 1e-3 (docs/results/finetuning.md says what was measured).

The test set is scored by accuracy and macro-F1 (the unweighted mean of the per-class F1 over
every class that occurs in the test labels or the predictions, as scikit-learn's
``average="macro"``), next to the score of always predicting the most frequent training
label. The std over seeds is the sample standard deviation (n - 1), None for one seed. On CPU the
same seed gives the same numbers; CUDA kernels may add small run-to-run differences.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, ErnieConfig, PreTrainedTokenizerBase

from ernie_cpt.claims import claim
from ernie_cpt.commands.export import export
from ernie_cpt.commands.finetune_loop import Classifier, Encoded, predict, train
from ernie_cpt.commands.finetune_output import check_output_dir, save_output
from ernie_cpt.commands.options import FinetuneOptions
from ernie_cpt.data.labelled_data import LabelledData, LabelledSplit, load_labelled_data, validation_split
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import UserError
from ernie_cpt.files import check_output_path
from ernie_cpt.glosses import GLOSSES
from ernie_cpt.modeling.safe_loading import weight_files
from ernie_cpt.modeling.saved_model import MODEL_JSON, read_description
from ernie_cpt.options import check_ranges
from ernie_cpt.threads import torch_thread_count, torch_threads
from ernie_cpt.training.checkpoint import atomic_write_text
from ernie_cpt.training.device import pick_device

log = logging.getLogger(__name__)


def macro_f1(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    """Mean F1 over the classes present in ``labels`` or ``predictions`` (1-D tensors of ids), as
    scikit-learn's ``f1_score(average="macro")``; ``num_labels`` is the size of the label space."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels.numpy(), predictions.numpy(), average="macro", zero_division=0))


def _validate(options: FinetuneOptions) -> None:
    """One-line errors for option values outside their documented ranges."""
    if not options.train or not options.test:
        raise UserError("finetune needs --train FILE and --test FILE (labelled .jsonl, .csv or .parquet)")
    if not options.seeds:
        raise UserError("--seeds needs at least one seed")
    check_ranges(options)  # options made in code (compare) as well as on the command line
    if not options.learning_rate:
        raise UserError("--learning-rate needs one or more values")
    if len(set(options.seeds)) != len(options.seeds):
        raise UserError(f"--seeds {' '.join(map(str, options.seeds))} repeats a seed (the same run twice would report "
                        f"a std of 0); give each seed once")
    if options.output_json:
        check_output_path(options.output_json, "--output-json")
    if options.output_dir:
        check_output_path(options.output_dir, "--output-dir", folder=True)
    if options.validation_fraction == 0 and len(options.learning_rate) > 1:
        raise UserError("several --learning-rate values are chosen among on the validation split; give one value "
                        "or a --validation-fraction above 0")


def _check_export(model_dir: Path) -> None:
    """Before any work: a Hugging Face folder (``config.json``) must hold an ERNIE model whose weights are
    safetensors, never a pickle (:func:`~ernie_cpt.modeling.safe_loading.weight_files`)."""
    if not (model_dir / "config.json").is_file():
        return
    try:
        model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as e:
        raise UserError(f"{model_dir / 'config.json'} is not a model config; export the model again") from e
    if model_type != "ernie":
        raise UserError(f"{model_dir} holds a '{model_type}' model; finetune fine-tunes ERNIE encoders "
                        f"(a folder written by ernie-cpt export, or a pretrain run directory)")
    weight_files(model_dir, "MODEL_DIR")


def _model_folder(model_dir: Path, stack: contextlib.ExitStack) -> Path:
    """``model_dir`` itself when it is an exported model (a Hugging Face folder, checked by
    :func:`_check_export`, or ernie-cpt's own for an architecture that does not fold); a run's latest
    checkpoint exported to a temporary folder (removed when ``stack`` closes) when it is a pretrain run
    directory."""
    has_weights = any((model_dir / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))
    if (model_dir / "config.json").is_file() and has_weights:
        return model_dir
    if (model_dir / MODEL_JSON).is_file() and not (model_dir / "trainer_state.json").is_file():
        return model_dir  # an export of an architecture that does not fold into one ErnieModel
    if (model_dir / "run_config.json").is_file() and (model_dir / "checkpoints").is_dir():
        return export(model_dir, Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ernie-cpt-"))) / "model")
    raise UserError(f"MODEL_DIR {model_dir} must be a folder written by ernie-cpt export (config.json and "
                    f"model.safetensors, or {MODEL_JSON}, with tokenizer files) or a pretrain run directory "
                    f"(run_config.json, checkpoints/)")


def _positions(folder: Path) -> int:
    """The model's ``max_position_embeddings``, from its config.json or its ernie-cpt description."""
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))["max_position_embeddings"]
    return ErnieConfig.from_dict(read_description(folder)["encoder_config"]).max_position_embeddings


def _encode(tokenizer: PreTrainedTokenizerBase, split: LabelledSplit, max_seq_length: int) -> list[dict[str, Any]]:
    """One dict of token ids per example (unpadded: batches are padded to their longest)."""
    encoded = tokenizer(split.texts, split.text_pairs, truncation=True, max_length=max_seq_length)
    return [{**{key: values[i] for key, values in encoded.items()}, "labels": label}
            for i, label in enumerate(split.labels)]


def _finetune_once(folder: Path, seed: int, data: Encoded, options: FinetuneOptions,
                   device: torch.device) -> tuple[dict[str, Any], Classifier]:
    """Fine-tune with ``seed`` at every ``--learning-rate``; keep the run and epoch with the best
    validation accuracy (the first on ties) and score it on the test rows: accuracy and macro-F1,
    the chosen ``learning_rate`` and ``best_epoch``, its ``validation_accuracy`` (None without
    validation), ``validation_history`` (learning rate -> accuracy after each epoch), ``steps``
    (the optimizer steps it took), and ``collapsed: True`` when it predicted one class for
    every test example. Returns the result and the chosen model."""
    chosen = None
    history = {}
    for learning_rate in options.learning_rate:
        trained = train(folder, seed, learning_rate, data, options, device)
        history[f"{learning_rate:g}"] = trained.history
        if chosen is None or (trained.history and max(trained.history) > max(chosen.history)):
            chosen = trained
    assert chosen is not None, "--learning-rate has one value at least"
    best = max(chosen.history) if chosen.history else None
    predictions = predict(chosen.model, data.test, data.collator, options.batch_size, device)
    labels = torch.tensor([example["labels"] for example in data.test])
    result = {"seed": seed, "accuracy": (predictions == labels).double().mean().item(),
              "macro_f1": macro_f1(predictions, labels, data.num_labels),
              **({"collapsed": True} if len(labels) > 1 and predictions.unique().numel() == 1 else {}),
              "learning_rate": chosen.learning_rate,
              "best_epoch": chosen.history.index(best) + 1 if best is not None else chosen.epochs,
              "validation_accuracy": best, "validation_history": history, "steps": chosen.steps}
    return result, chosen.model


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (n - 1); None for one value."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def _encode_all(folder: Path, data: LabelledData, options: FinetuneOptions) -> Encoded:
    tokenizer = load_tokenizer(folder)
    train, validation = data.train, None
    if options.validation_fraction > 0:
        train, validation = validation_split(data.train, options.validation_fraction, options.validation_seed)
    return Encoded(tokenizer, DataCollatorWithPadding(tokenizer), len(data.label_names),
                    _encode(tokenizer, train, options.max_seq_length),
                    _encode(tokenizer, validation, options.max_seq_length) if validation else [],
                    _encode(tokenizer, data.test, options.max_seq_length), train)


def finetune(model_dir: str | Path, options: FinetuneOptions) -> dict:
    """Fine-tune ``model_dir`` once per seed on ``options.train`` and score it on ``options.test``.

    Each seed trains at every ``--learning-rate`` and keeps the learning rate and epoch with the
    best accuracy on the validation rows carved from the training file (the same rows for every
    seed); the test file only scores. Returns ``accuracy_mean``/``_std``, ``macro_f1_mean``/``_std``
    (sample std; None for one seed), ``per_seed`` (``seed``, ``accuracy``, ``macro_f1``, and
    ``collapsed: True`` for a run that predicted one class for the whole test set, and what
    ``_finetune_once`` adds: ``learning_rate``, ``best_epoch``, ``validation_accuracy``,
    ``validation_history``, ``steps``), the majority-class baseline (``majority_accuracy``,
    ``majority_macro_f1``, the most frequent label of the rows trained on), ``num_labels``,
    ``labels`` (the label of each class id), ``train_examples`` (rows trained on),
    ``validation_examples``, ``test_examples`` and ``saved_seed`` (the seed whose model
    ``options.output_dir`` holds: the best validation accuracy, the first seed on ties or without
    validation; None without ``output_dir``); written to ``options.output_json`` and
    ``options.output_dir``/metrics.json too if set (claimed from the start: :mod:`ernie_cpt.claims`).
    Raises UserError for bad options or data, an output folder another command is writing, or a full disk.
    """
    _check_export(Path(model_dir))
    _validate(options)
    with claim(options.output_dir, "--output-dir", "finetune") if options.output_dir else contextlib.nullcontext():
        return _finetune(model_dir, options)


def _finetune(model_dir: str | Path, options: FinetuneOptions) -> dict:
    device = pick_device(options.device)
    out_dir = Path(options.output_dir) if options.output_dir else None
    if out_dir is not None:
        check_output_dir(out_dir, Path(model_dir), options.overwrite)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(*torch_thread_count(options.num_threads)))
        folder = _model_folder(Path(model_dir), stack)
        assert options.train and options.test, "checked by _validate"
        data = load_labelled_data(options.train, options.test, options.text_field, options.text_pair_field,
                                  options.label_field)
        positions = _positions(folder)
        if options.max_seq_length > positions:
            raise UserError(f"--max-seq-length {options.max_seq_length} exceeds the model's {positions} positions; "
                            f"lower it")
        encoded = _encode_all(folder, data, options)
        per_seed, saved = [], None
        for seed in options.seeds:
            result, model = _finetune_once(folder, seed, encoded, options, device)
            per_seed.append(result)
            log.info("seed %d: learning rate %g, epoch %d, test accuracy %.4f, macro-F1 %.4f", seed,
                     result["learning_rate"], result["best_epoch"], result["accuracy"], result["macro_f1"])
            if saved is None or (result["validation_accuracy"] or 0) > (saved[0]["validation_accuracy"] or 0):
                saved = (result, model)
    assert saved is not None, "--seeds has one value at least"
    results = _results(per_seed, data, encoded)
    results["saved_seed"] = saved[0]["seed"] if out_dir is not None else None
    try:
        if options.output_json:
            path = Path(options.output_json)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(results, indent=2) + "\n")
        if out_dir is not None:
            save_output(out_dir, saved[1], encoded.tokenizer, data.label_names, positions, results)
    except UserError:  # a full disk: the scores of the whole run are not lost with the files
        log.warning("the results, which could not be saved:\n%s", format_results(results))
        raise
    return results


def saved_model_line(results: dict[str, Any], output_dir: str | None) -> str:
    """Where finetune put the model, and how to load it; or that it kept none, and how to keep one."""
    if output_dir is None:
        return "The fine-tuned model was not saved: add --output-dir DIR to keep it (with its tokenizer and labels)."
    routed = (Path(output_dir) / MODEL_JSON).is_file()  # ernie-cpt's own folder, not one ErnieModel
    loader = ("ernie_cpt.modeling.sequence_classifier.ArchitectureForSequenceClassification" if routed else
              "AutoModelForSequenceClassification")
    return (f"Fine-tuned model (seed {results['saved_seed']}, the best validation accuracy): "
            f"{Path(output_dir).resolve()}; load it with {loader}.from_pretrained(...)")


def _results(per_seed: list[dict[str, Any]], data: LabelledData, encoded: Encoded) -> dict[str, Any]:
    test_labels = torch.tensor(data.test.labels)
    majority = torch.full_like(test_labels, int(torch.bincount(torch.tensor(encoded.train_split.labels)).argmax()))
    accuracy_mean, accuracy_std = _mean_std([r["accuracy"] for r in per_seed])
    f1_mean, f1_std = _mean_std([r["macro_f1"] for r in per_seed])
    return {
        "accuracy_mean": accuracy_mean, "accuracy_std": accuracy_std,
        "macro_f1_mean": f1_mean, "macro_f1_std": f1_std,
        "majority_accuracy": (majority == test_labels).double().mean().item(),
        "majority_macro_f1": macro_f1(majority, test_labels, encoded.num_labels),
        "num_labels": encoded.num_labels, "labels": data.label_names, "per_seed": per_seed,
        "train_examples": len(encoded.train), "validation_examples": len(encoded.validation),
        "test_examples": len(encoded.test),
    }


def format_results(results: dict) -> str:
    """The per-seed scores (with the chosen learning rate and epoch) as a Markdown table, their
    mean ± std over several seeds, and the majority baseline. A run that predicted one class for
    the whole test set is marked "collapsed", which a line under the table explains."""
    rows = [f"| {r['seed']} | {r.get('learning_rate', '')} | {r.get('best_epoch', '')} | "
            f"{'' if r.get('validation_accuracy') is None else format(r['validation_accuracy'], '.4f')} | "
            f"{r['accuracy']:.4f}{' (collapsed)' if r.get('collapsed') else ''} | {r['macro_f1']:.4f} |"
            for r in results["per_seed"]]
    n = len(results["per_seed"])
    summary = ([f"| mean ± std ({n} seeds) | | | | {results['accuracy_mean']:.4f} ± {results['accuracy_std']:.4f} "
                f"| {results['macro_f1_mean']:.4f} ± {results['macro_f1_std']:.4f} |"] if n > 1 else [])
    return "\n".join([
        f"Fine-tuned on {results['train_examples']} examples ({results['num_labels']} labels), validated on "
        f"{results.get('validation_examples', 0)}, tested on {results['test_examples']}:",
        "",
        "| seed | learning rate | epoch | validation accuracy | accuracy | macro-F1 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows, *summary,
        f"| majority class of train | | | | {results['majority_accuracy']:.4f} | {results['majority_macro_f1']:.4f} |",
        *([f"\ncollapsed: {GLOSSES['collapsed']}."] if any(r.get("collapsed") for r in results["per_seed"]) else []),
    ])
