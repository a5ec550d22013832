"""Knowledge masking: masked language modelling over word, phrase and entity units.

ERNIE 1.0 (Sun et al. 2019, "ERNIE: Enhanced Representation through Knowledge Integration")
masks whole *units* rather than single sub-tokens: basic words, phrases and named entities,
so the model must recover a whole concept from its context. ERNIE 2.0 (Sun et al. 2020) keeps
it as its word-aware task. Here phrases are spaCy noun chunks and entities spaCy NER spans.

Labels: the original vocabulary id at every target position, -100 elsewhere. Units are drawn
(kind by the configured proportions, then uniformly within the kind) until about
``mask_ratio`` of the tokens are targets; a unit that would overshoot or overlap a chosen one
is skipped. Every example masks at least one unit, as ERNIE does: when no unit fits the budget
(a 7-token text at 15% has a budget of 1 token, and its words may all be 2 tokens long), the
shortest unit drawn is masked (the first drawn among equals). Every token of a chosen unit is
a target, and the unit as a whole is replaced by [MASK] (80%), by random tokens (10%) or kept
(10%), as in BERT (Devlin et al. 2019). A segment with no unit of a kind of weight above 0 (no
entity or phrase while words have weight 0) gives no example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ernie_cpt.errors import UserError
from ernie_cpt.options import Range, option
from pretasks.alignment import document_segments
from pretasks.base import IGNORE_INDEX, PreTask, features
from pretasks.registry import register
from pretasks.sequences import join_segments

if TYPE_CHECKING:
    import datasets

WORD, PHRASE, ENTITY = 0, 1, 2
UNIT_KINDS = ("word", "phrase", "entity")
COLUMNS = {"doc_id": "string", "input_ids": ["int32"], "length": "int32", "unit_starts": ["int32"],
           "unit_ends": ["int32"], "unit_kinds": ["int8"]}


@dataclass
class KnowledgeMaskingOptions:
    """knowledge_masking: ERNIE 1.0 word, phrase and entity masking"""

    mask_ratio: float = option(0.15, "Fraction of tokens that become prediction targets (at least one unit per "
                               "example)", valid=Range(0, 1, low_open=True, high_open=True))
    word_unit_weight: float = option(0.4, "Relative share of basic word units among the units drawn",
                                     valid=Range(0, 1000))
    phrase_unit_weight: float = option(0.3, "Relative share of phrase units (spaCy noun chunks)",
                                       valid=Range(0, 1000))
    entity_unit_weight: float = option(0.3, "Relative share of entity units (spaCy named entities)",
                                       valid=Range(0, 1000))

    def __post_init__(self) -> None:
        if self.word_unit_weight == self.phrase_unit_weight == self.entity_unit_weight == 0:
            raise UserError("--word-unit-weight, --phrase-unit-weight and --entity-unit-weight are all 0, so no unit "
                            "could ever be masked; give at least one of them a weight above 0")


@register
class KnowledgeMasking(PreTask):
    name = "knowledge_masking"
    options_class = KnowledgeMaskingOptions
    level = "token"
    head_name = "masked_lm"

    def __init__(self, tokenizer: Any, options: KnowledgeMaskingOptions, max_seq_length: int) -> None:
        super().__init__(tokenizer, options, max_seq_length)
        self.unit_weights = np.array([options.word_unit_weight, options.phrase_unit_weight,
                                      options.entity_unit_weight])
        special = set(tokenizer.all_special_ids)
        self.random_token_ids = np.array([i for i in range(len(tokenizer)) if i not in special])

    def _segments(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in COLUMNS}
        for doc_index, tokens, segments in document_segments(self.tokenizer, batch, self.max_seq_length - 2):
            units = [tokens.word_ranges(),
                     tokens.token_ranges(batch["noun_chunk_starts"][doc_index], batch["noun_chunk_ends"][doc_index]),
                     tokens.token_ranges(batch["entity_starts"][doc_index], batch["entity_ends"][doc_index])]
            kinds = np.concatenate([np.full(len(u), kind) for kind, u in enumerate(units)])
            ranges = np.concatenate(units)
            for start, end in segments:
                inside = (ranges[:, 0] >= start) & (ranges[:, 1] <= end)
                if not (self.unit_weights[kinds[inside]] > 0).any():  # nothing this task may mask
                    continue
                out["doc_id"].append(batch["doc_id"][doc_index])
                out["input_ids"].append(tokens.ids[start:end].astype(np.int32))  # arrays: smaller than lists
                out["length"].append(end - start + 2)
                out["unit_starts"].append((ranges[inside, 0] - start).astype(np.int32))
                out["unit_ends"].append((ranges[inside, 1] - start).astype(np.int32))
                out["unit_kinds"].append(kinds[inside].astype(np.int8))
        return out

    @property
    def num_labels(self) -> int:
        return len(self.tokenizer)

    def label_name(self, label: int) -> str:
        return self.tokenizer.convert_ids_to_tokens([label])[0]

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        return documents.map(self._segments, batched=True, batch_size=32, remove_columns=documents.column_names,
                             features=features(COLUMNS), num_proc=num_proc, desc="knowledge_masking examples",
                             new_fingerprint=self.fingerprint(documents))

    def choose_units(self, row: dict[str, Any], rng: np.random.Generator) -> list[tuple[int, int]]:
        """Token ranges of the units to mask, about ``mask_ratio`` of the tokens, non-overlapping."""
        n_tokens = len(row["input_ids"])
        budget = max(1, round(self.options.mask_ratio * n_tokens))
        starts, ends, kinds = (np.asarray(row[k], dtype=np.int64) for k in ("unit_starts", "unit_ends", "unit_kinds"))
        pools = [list(rng.permutation(np.flatnonzero(kinds == kind))) for kind in range(len(UNIT_KINDS))]
        covered = np.zeros(n_tokens, dtype=bool)
        chosen: list[tuple[int, int]] = []
        drawn: list[tuple[int, int]] = []
        count = 0
        while count < budget:
            open_kinds = [k for k, pool in enumerate(pools) if pool and self.unit_weights[k] > 0]
            if not open_kinds:
                break
            weights = self.unit_weights[open_kinds]
            kind = open_kinds[rng.choice(len(open_kinds), p=weights / weights.sum())]
            unit = pools[kind].pop()
            start, end = int(starts[unit]), int(ends[unit])
            drawn.append((start, end))
            if count + end - start > budget or covered[start:end].any():
                continue
            covered[start:end] = True
            chosen.append((start, end))
            count += end - start
        if not chosen and drawn:  # no unit fits the budget: ERNIE still masks one, the shortest
            chosen.append(min(drawn, key=lambda span: span[1] - span[0]))
        return chosen

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        ids = np.asarray(row["input_ids"], dtype=np.int64)
        labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
        for start, end in self.choose_units(row, rng):
            labels[start:end] = ids[start:end]
            action = rng.random()
            if action < 0.8:
                ids[start:end] = self.tokenizer.mask_token_id
            elif action < 0.9:
                ids[start:end] = rng.choice(self.random_token_ids, size=end - start)
        return join_segments(self.tokenizer, [ids.tolist()], len(ids) + 2, labels=[labels.tolist()])
