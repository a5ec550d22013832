"""The Hugging Face baselines: the ``run_mlm`` recipe driven by ``transformers.Trainer``.

Both baselines train ``ErnieForMaskedLM`` of the same size, with the same tokenizer, on the
paragraphs of the same training documents, with ``DataCollatorForLanguageModeling`` (15 %
masking) and the same batch size and sequence length as ours:

* ``grouped`` (baseline a, run_mlm's default): every paragraph tokenized with [CLS]/[SEP],
  concatenated and cut into full blocks (``group_texts``), so no token is padding;
* ``line_by_line`` (baseline b, ``--line_by_line --pad_to_max_length``): one paragraph per
  example, truncated and padded to the sequence length.

The model gets our dropout (``Settings.dropout``, ``attention_dropout``); on CUDA the Trainer
trains with ``bf16=True`` (autocast), as ours does.

Run as a module it trains one baseline in this process, for peak-RSS measurements:
``python -m benchmarks.hf_mlm --corpus DIR --cache-dir DIR --style grouped --steps N``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import chain
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    DataCollatorForLanguageModeling,
    ErnieForMaskedLM,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from benchmarks.common import SEED, Recorded, Settings, Workload, synchronize
from ernie_cpt.modeling.encoder import encoder_config
from pretasks import ERNIE_TASKS

STYLES = ("grouped", "line_by_line")


def paragraphs(documents: datasets.Dataset) -> list[str]:
    """The non-blank paragraphs of the documents, as run_mlm would read them one per line."""
    return [text[s:e] for text, starts, ends in zip(documents["text"], documents["paragraph_starts"],
                                                   documents["paragraph_ends"])
            for s, e in zip(starts, ends) if text[s:e].strip()]


def mlm_dataset(workload: Workload, style: str) -> datasets.Dataset:
    """The tokenized training set of a baseline, as run_mlm builds it."""
    tokenizer, length = workload.tokenizer, workload.settings.seq_length
    texts = datasets.Dataset.from_dict({"text": paragraphs(workload.train_documents)})
    if style == "line_by_line":
        return texts.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=length,
                                             return_special_tokens_mask=True), batched=True, remove_columns=["text"])

    def group_texts(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        joined = {k: list(chain(*batch[k])) for k in batch}
        total = len(joined["input_ids"]) // length * length
        return {k: [v[i:i + length] for i in range(0, total, length)] for k, v in joined.items()}

    tokenized = texts.map(lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True,
                          remove_columns=["text"])
    return tokenized.map(group_texts, batched=True, batch_size=1000)


class _StepEnds(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize()
        self.times.append(time.perf_counter())


def train_baseline(workload: Workload, style: str, steps: int) -> list[Recorded]:
    """Train a baseline for ``steps`` optimizer steps; a step's batch counts as asked for when the
    previous step ended (the Trainer prefetches, so collation time is not a step boundary)."""
    settings = workload.settings
    torch.manual_seed(SEED)
    model = ErnieForMaskedLM(encoder_config(settings.model_options(), len(workload.tokenizer), settings.seq_length,
                                            len(ERNIE_TASKS)))  # our size and dropout
    collator = DataCollatorForLanguageModeling(workload.tokenizer, mlm_probability=0.15)
    lengths: list[list[int]] = []

    def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collator(examples)
        lengths.append(batch["attention_mask"].sum(1).tolist())
        return batch

    ends = _StepEnds()
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as output_dir:
        args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=settings.batch_size,
                                 max_steps=steps, learning_rate=5e-4, weight_decay=0.01, save_strategy="no",
                                 logging_strategy="no", report_to="none", use_cpu=settings.device == "cpu",
                                 bf16=settings.device != "cpu", seed=SEED, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=mlm_dataset(workload, style), data_collator=collate,
                          callbacks=[ends])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics to stdout, into the table
        trainer.train()
    return [Recorded(f"hf-{style}", ends.times[i], ends.times[i], lengths[i], 0) for i in range(steps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--style", choices=STYLES, default="grouped")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    workload = Workload.load("child", Path(args.corpus), args.cache_dir, Settings(quick=args.quick))
    train_baseline(workload, args.style, args.steps)


if __name__ == "__main__":
    main()
