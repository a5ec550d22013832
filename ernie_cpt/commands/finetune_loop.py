"""One fine-tuning run of ``ernie-cpt finetune``: a fresh ``ErnieForSequenceClassification`` (or,
for an architecture that does not fold into one ErnieModel, an
``ArchitectureForSequenceClassification`` with a new routed task) trained with one seed and
learning rate, scored on the validation rows at the end of every epoch, keeping the best epoch's
weights (Trainer's ``load_best_model_at_end``).

AdamW without weight decay, gradients clipped at norm 1 (Trainer's defaults), BERT's schedule:
linear warm-up over the first 10 % of the steps, then linear decay to 0 (Devlin et al. 2019).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader
from transformers import (
    DataCollatorWithPadding,
    ErnieForSequenceClassification,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
    set_seed,
)

from ernie_cpt.commands.options import FinetuneOptions
from ernie_cpt.data.labelled_data import LabelledSplit
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.saved_model import MODEL_JSON
from ernie_cpt.modeling.sequence_classifier import ArchitectureForSequenceClassification
from ernie_cpt.progress import progress
from ernie_cpt.training.loading import load_model

log = logging.getLogger(__name__)

WARMUP_FRACTION = 0.1
MAX_GRAD_NORM = 1.0


@dataclass
class Encoded:
    """The tokenized rows (dicts of token ids and ``labels``) of each split, and how to batch them."""

    tokenizer: PreTrainedTokenizerBase
    collator: DataCollatorWithPadding
    num_labels: int
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]  # empty without a validation split
    test: list[dict[str, Any]]
    train_split: LabelledSplit  # the rows trained on, before tokenizing


@dataclass
class Trained:
    """One fine-tuning run: the model (with the best epoch's weights), its validation accuracy after
    each epoch, the optimizer steps taken and the best epoch's weights (None without validation)."""

    model: Classifier
    learning_rate: float
    history: list[float]
    steps: int
    epochs: int
    best_state: dict[str, torch.Tensor] | None


Classifier = ErnieForSequenceClassification | ArchitectureForSequenceClassification


def load_classifier(folder: Path, num_labels: int, device: torch.device) -> Classifier:
    """``folder``'s encoder with a new classifier of ``num_labels`` classes, on ``device``: an
    ``ErnieForSequenceClassification`` for a Hugging Face folder (hard sharing), the whole
    architecture with a new routed task otherwise (ernie-cpt's own folder, ``MODEL_JSON`` without
    ``config.json``). Raises UserError when the weights lack a part of the encoder."""
    if not (folder / "config.json").is_file() and (folder / MODEL_JSON).is_file():
        saved = load_model(folder)  # a model fine-tuned before: the new task starts as that one
        like = saved.description.get("finetuned_task")
        return ArchitectureForSequenceClassification.for_new_task(saved.model, num_labels, like).to(device)
    loaded = ErnieForSequenceClassification.from_pretrained(str(folder), num_labels=num_labels, dtype=torch.float32,
                                                            output_loading_info=True)
    # transformers types from_pretrained as returning the model alone, also with output_loading_info=True
    model, info = cast("tuple[ErnieForSequenceClassification, dict[str, list[str]]]", loaded)
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("classifier."))
    if missing:
        raise UserError(f"the weights in {folder} do not fit an ERNIE encoder (missing {', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}); export the model again with ernie-cpt export")
    # transformers wraps PreTrainedModel.to with functools.wraps(nn.Module.to), which mypy binds wrongly
    return model.to(device)  # type: ignore[arg-type]


def predict(model: Classifier, examples: list[dict[str, Any]],
             collator: DataCollatorWithPadding, batch_size: int, device: torch.device) -> torch.Tensor:
    """The predicted class id of every example, shape (examples,)."""
    model.eval()
    predictions = []
    with torch.no_grad():
        # torch types DataLoader's dataset as a Dataset; a list is a map-style one (len and indexing)
        for batch in DataLoader(examples, batch_size=batch_size, collate_fn=collator):  # type: ignore[arg-type]
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            predictions.append(model(**inputs).logits.argmax(-1).cpu())
    model.train()
    return torch.cat(predictions)


def accuracy(predictions: torch.Tensor, examples: list[dict[str, Any]]) -> float:
    """The fraction of ``examples`` whose label ``predictions`` (shape (examples,)) gives."""
    return (predictions == torch.tensor([e["labels"] for e in examples])).double().mean().item()


def train(folder: Path, seed: int, learning_rate: float, data: Encoded, options: FinetuneOptions,
           device: torch.device) -> Trained:
    """Fine-tune a fresh classifier with ``seed`` and ``learning_rate`` for ``--max-steps`` optimizer
    steps (or ``--epochs``), scoring the validation rows at the end of every epoch (the last may be
    partial) and keeping the weights of the best one (the first on ties), as Trainer's
    ``load_best_model_at_end``; without validation rows, the last epoch's."""
    set_seed(seed)
    model = load_classifier(folder, data.num_labels, device)
    loader: DataLoader[dict[str, Any]] = DataLoader(
        data.train,  # type: ignore[arg-type]  # a list, as in predict()
        batch_size=options.batch_size, shuffle=True, collate_fn=data.collator,
        generator=torch.Generator().manual_seed(seed))
    total_steps = options.max_steps if options.max_steps > 0 else options.epochs * len(loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(WARMUP_FRACTION * total_steps), total_steps)
    trained = Trained(model, learning_rate, [], 0, 0, None)
    model.train()
    with progress(total_steps, f"Fine-tuning (seed {seed}, learning rate {learning_rate:g})", "step") as bar:
        for epoch in range(1, math.ceil(total_steps / len(loader)) + 1):
            for batch in itertools.islice(loader, total_steps - trained.steps):
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                trained.steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            trained.epochs = epoch
            if data.validation:
                score = accuracy(predict(model, data.validation, data.collator, options.batch_size, device),
                                  data.validation)
                log.info("seed %d, learning rate %g, epoch %d: validation accuracy %.4f", seed, learning_rate,
                         epoch, score)
                if not trained.history or score > max(trained.history):
                    trained.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                trained.history.append(score)
    if trained.best_state is not None:
        model.load_state_dict(trained.best_state)
    return trained
