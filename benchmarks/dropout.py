"""Measure 11: what dropout costs, the real-token throughput of the real trainer on knowledge
masking with ``--dropout 0 --attention-dropout 0`` against the default 0.1 for both (BERT's and
ERNIE's), in the same run.

Modern encoder recipes pre-train with dropout 0 (Cramming, Geiping & Goldstein 2023; ModernBERT,
Warner et al. 2024). Both sides train the same model, tokenizer, text, batch size and sequence
length; they alternate (0.1, 0, ... ``Settings.rounds`` times) and each keeps its best run. What
dropout 0 does to held-out accuracy is not measured here (the README gives an equal-step
comparison on Austen).
"""

from __future__ import annotations

import dataclasses

from benchmarks.common import Row, Workload, tokens_per_second

TASK = "knowledge_masking"


def measure(workload: Workload) -> Row:
    """The dropout row: dropout 0 (hidden and attention) against the workload's dropout."""
    settings = workload.settings
    without = dataclasses.replace(workload, settings=dataclasses.replace(settings, dropout=0.0,
                                                                         attention_dropout=0.0))
    steps = settings.warmup_steps + settings.train_steps
    best: dict[str, float] = {}
    for _ in range(settings.rounds):
        for side, load in (("with", workload), ("without", without)):
            rate = tokens_per_second(load.train({TASK: steps})[1], settings.warmup_steps)
            best[side] = max(best.get(side, 0.0), rate)
    note = (f"{workload.name}, {settings.model_size}, batch {settings.batch_size} x {settings.seq_length}, "
            f"best of {settings.rounds} run(s) of {settings.train_steps} timed steps")
    return Row(f"11. training tokens/s: dropout 0 vs {settings.dropout:g} (hidden and attention)", best["without"],
               best["with"], "tokens/s", note=note)
