"""Discourse relation: which discourse relation links two adjacent sentences.

ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
Understanding", AAAI) trains a semantic-level task that predicts the rhetorical relation
between two sentences, using the Discovery data of Sileo et al. (2019, "Mining Discourse
Markers for Unsupervised Sentence Representation Learning", NAACL): adjacent sentence pairs
whose second sentence opened with a discourse marker, the marker removed and used as the label.

Pairs are mined here the same way. Adjacent pairs are consecutive spaCy sentences *in the same
paragraph* (a paragraph break, e.g. a change of speaker in dialogue, ends the relation). A pair
is kept when its second sentence opens with a marker of :data:`MARKER_CLASSES`: matched
case-insensitively at the very start of the sentence (after opening quotes and whitespace),
longest marker first ("even so" before "so"), on a word boundary. The markers of
:data:`COMMA_MARKERS` open many sentences in another role (degree adverb, preposition,
adjective: "So much the better", "Still waters", "However little known", "Instead of going",
"In addition to") and count only when a comma follows them. The marker is removed from the
second sentence with a comma or dash that follows it and the whitespace after that; a pair
whose rest has no letter or digit is dropped, and so is a pair whose first sentence does not end
with punctuation (. ! ? ; : a dash, then closing quotes or brackets): spaCy cut that sentence
in the middle ("No one | but you can tell me"). The rest is not re-capitalised.

Labels (``label_by``): ``class`` (default) is the relation class of the removed marker, one of
:data:`RELATION_CLASSES`; ``marker`` is the removed marker itself, one of :data:`MARKERS`.

A labelled pair file (``discourse_pairs``: TSV with a header, or JSON lines with the fields
``sentence1``, ``sentence2`` and ``marker`` or ``label``; Discovery's files have that shape)
adds its pairs to the mined ones. Its marker or label must be a marker of the table (Discovery
spellings such as ``as_a_result,`` are accepted) or, with ``label_by=class``, a class name;
anything else is an error naming the line. A ``sentence2`` that still opens with its marker
has it removed. Records are split by a stable hash of the sentence pair: 5% are held out.
Labels are fixed per pair, so ``make_example`` draws nothing at random, and no pair needs a
partner from another document (``background`` is not used).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ernie_cpt.compression import format_suffix, open_binary
from ernie_cpt.data.cells import describe, text_cell
from ernie_cpt.data.column_stats import label_counts
from ernie_cpt.data.delimiters import sniff_delimiter
from ernie_cpt.data.scratch import write_dataset
from ernie_cpt.errors import UserError
from ernie_cpt.options import Range, option
from ernie_cpt.text_encoding import read_bytes, text_encoding
from pretasks.base import PreTask, TaskUnavailable, features
from pretasks.registry import register
from pretasks.sequences import join_segments

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

# Relation class -> the markers that signal it (lower case; each marker in one class only).
MARKER_CLASSES: dict[str, tuple[str, ...]] = {
    "contrast": ("however", "but", "yet", "nevertheless", "on the other hand", "on the contrary", "instead",
                 "in contrast", "by contrast", "conversely"),
    "result": ("therefore", "thus", "consequently", "so", "as a result", "hence", "accordingly",
               "for this reason", "for that reason"),
    "elaboration": ("for example", "for instance", "in particular", "indeed", "in fact", "specifically",
                    "in short"),
    "addition": ("moreover", "furthermore", "also", "in addition", "additionally", "besides", "likewise",
                 "similarly"),
    "temporal": ("then", "afterwards", "meanwhile", "in the meantime", "finally", "later", "at last", "at length",
                 "eventually", "subsequently"),
    "concession": ("still", "nonetheless", "even so", "all the same"),
}
# Markers that count only when a comma follows them: without one they mostly play another role.
COMMA_MARKERS = frozenset({"however", "instead", "in contrast", "so", "as a result", "indeed", "also",
                           "in addition", "besides", "then", "still", "even so", "all the same"})
RELATION_CLASSES = tuple(MARKER_CLASSES)
MARKERS = tuple(marker for markers in MARKER_CLASSES.values() for marker in markers)
MARKER_CLASS_IDS = np.array([RELATION_CLASSES.index(name) for name, markers in MARKER_CLASSES.items()
                             for _ in markers])
HELD_OUT_PERCENT = 5
FILE_BATCH = 1000  # records of a --discourse-pairs file tokenized at a time
ROW_COLUMNS = {
    "source": "string",  # doc_id of a mined pair, "path:line" of a file record
    "sentence_index": "int64",  # index of the second sentence in its document; -1 for a file record
    "sentence1_ids": ["int32"],
    "sentence2_ids": ["int32"],  # the second sentence without its marker
    "marker": "int64",  # index in MARKERS; -1 when a file record gives only a class
    "label": "int64",
    "length": "int64",
}


def _marker_pattern() -> re.Pattern[str]:
    alternatives = []
    for marker in sorted(MARKERS, key=len, reverse=True):
        words = r"\s+".join(map(re.escape, marker.split()))
        alternatives.append(words + (r"(?=\s*,)" if marker in COMMA_MARKERS else r"(?![\w'\u2019]|-\w)"))
    return re.compile(r"[\s\"'\u201c\u2018]*(?P<marker>" + "|".join(alternatives) + r")(?:\s*(?:,|-+|—+))?\s*",
                      re.IGNORECASE)


MARKER_AT_START = _marker_pattern()
# A first sentence that ends on a word was cut mid-sentence by spaCy ("No one | but you can tell me").
SENTENCE_END = re.compile(r"[.!?;:\-—…][\"'\u201d\u2019_)\]]*$")


def strip_marker(sentence: str) -> tuple[int, str] | None:
    """(index in :data:`MARKERS`, the sentence without it) when ``sentence`` opens with a marker, else None."""
    match = MARKER_AT_START.match(sentence)
    if match is None:
        return None
    rest = sentence[:match.start("marker")] + sentence[match.end():]
    if not any(char.isalnum() for char in rest):
        return None
    return MARKERS.index(" ".join(match.group("marker").lower().split())), rest


def adjacent_pairs(sentence_starts: list[int], paragraph_starts: list[int]) -> np.ndarray:
    """Indices of the sentences that follow another sentence of the same paragraph."""
    paragraph_of = np.searchsorted(np.asarray(paragraph_starts), np.asarray(sentence_starts), side="right")
    return np.flatnonzero(paragraph_of[1:] == paragraph_of[:-1]) + 1


def mine_pairs(text: str, sentence_starts: list[int], sentence_ends: list[int],
               paragraph_starts: list[int]) -> Iterator[tuple[int, str, str, int]]:
    """(index of the second sentence, first sentence, second sentence without its marker, marker index)
    for each adjacent pair of a document whose second sentence opens with a marker and whose first
    sentence ends with punctuation."""
    for i in adjacent_pairs(sentence_starts, paragraph_starts).tolist():
        first = text[sentence_starts[i - 1]:sentence_ends[i - 1]]
        found = strip_marker(text[sentence_starts[i]:sentence_ends[i]])
        if found is not None and SENTENCE_END.search(first):
            yield i, first, found[1], found[0]


def _normalized(name: str) -> str:
    """A marker or label as Discovery or a person may spell it: ``As_a_result,`` -> ``as a result``."""
    return " ".join(name.replace("_", " ").lower().strip().rstrip(",").split())


def read_pair_file(path: str) -> Iterator[tuple[int, str, str, str]]:
    """(line number, sentence1, sentence2, marker or label) for each record of a TSV (with a header;
    ``;``, ``,`` or ``|`` between fields where the header splits on it) or JSON-lines (``.jsonl``/``.json``)
    pair file, or of one compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``), read as a stream."""
    try:
        encoding = text_encoding(path, "--discourse-pairs file")
        with io.TextIOWrapper(open_binary(path), encoding=encoding, newline="") as handle:
            if format_suffix(path) in (".jsonl", ".json"):
                for line_number, line in enumerate(handle, 1):
                    try:
                        record = json.loads(line) if line.strip() else None
                    except json.JSONDecodeError as e:
                        raise UserError(f"{path} line {line_number} is not valid JSON ({e.msg})") from e
                    if record is not None and not isinstance(record, dict):
                        raise UserError(f"{path} line {line_number} is {describe(record)}, not a JSON object with "
                                        "sentence1, sentence2 and marker (or label)")
                    if record is not None:
                        yield _fields(record, path, line_number)
            else:
                head = read_bytes(path, 65536).decode(encoding, errors="replace")
                reader = csv.DictReader(handle, delimiter=sniff_delimiter(head, "\t"), quoting=csv.QUOTE_NONE)
                for record in reader:
                    yield _fields(record, path, reader.line_num)
    except OSError as e:
        raise UserError(f"cannot read --discourse-pairs file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise UserError(f"--discourse-pairs file {path} is not UTF-8 text") from e


def _fields(record: dict[str, Any], path: str, line_number: int) -> tuple[int, str, str, str]:
    name = "marker" if record.get("marker") is not None else "label"
    where = f"{path} line {line_number}"
    first, second, value = (text_cell(record.get(field), where, field) for field in ("sentence1", "sentence2", name))
    if not (first and first.strip() and second and second.strip() and value and value.strip()):
        raise UserError(f"{where}: a pair record needs non-empty sentence1, sentence2 and "
                        "marker (or label) fields (TSV with that header, or JSON lines)")
    return line_number, first, second, value


@dataclass
class DiscourseRelationOptions:
    """discourse_relation: predict the discourse relation of adjacent sentences (marker removed)"""

    label_by: str = option("class", "Label a pair by the relation class of its discourse marker, or by the marker",
                           choices=("class", "marker"))
    discourse_pairs: str | None = option(None, "Labelled pair file added to the mined pairs: TSV with a header or "
                                         "JSON lines, fields sentence1, sentence2, marker or label (e.g. Discovery); "
                                         "one record in 20 is held out")
    discourse_min_pairs: int = option(20, "Warn when a label has fewer training pairs than this",
                                      valid=Range(0, 1_000_000))


@register
class DiscourseRelation(PreTask):
    name = "discourse_relation"
    options_class = DiscourseRelationOptions
    level = "pair"
    num_token_types = 2

    def __init__(self, tokenizer: Any, options: DiscourseRelationOptions, max_seq_length: int) -> None:
        super().__init__(tokenizer, options, max_seq_length)
        if options.label_by not in ("class", "marker"):
            raise UserError(f"--label-by must be class or marker, not {options.label_by!r}")
        by_class = options.label_by == "class"
        self.label_names = RELATION_CLASSES if by_class else MARKERS
        self.marker_labels = MARKER_CLASS_IDS if by_class else np.arange(len(MARKERS))

    def _rows(self, firsts: list[str], seconds: list[str], markers: list[int], labels: list[int],
              sources: list[str], sentence_indices: list[int]) -> dict[str, list[Any]]:
        first_ids, second_ids = ([] if not texts else self.tokenizer(texts, add_special_tokens=False)["input_ids"]
                                 for texts in (firsts, seconds))
        return {"source": sources, "sentence_index": sentence_indices, "sentence1_ids": first_ids,
                "sentence2_ids": second_ids, "marker": markers, "label": labels,
                "length": [min(len(a) + len(b) + 3, self.max_seq_length) for a, b in zip(first_ids, second_ids)]}

    def _mine(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        found = [(doc_id, *pair) for doc_id, text, starts, ends, paragraph_starts in
                 zip(batch["doc_id"], batch["text"], batch["sentence_starts"], batch["sentence_ends"],
                     batch["paragraph_starts"])
                 for pair in mine_pairs(text, starts, ends, paragraph_starts)]
        sources, indices, firsts, seconds, markers = (list(column) for column in zip(*found)) if found else [[]] * 5
        labels = self.marker_labels[markers].tolist() if markers else []
        return self._rows(firsts, seconds, markers, labels, sources, indices)

    def _resolve(self, value: str, where: str) -> tuple[int, int]:
        """(marker index or -1, label) of a file record's marker or label."""
        name = _normalized(value)
        if name in MARKERS:
            marker = MARKERS.index(name)
            return marker, int(self.marker_labels[marker])
        if name in RELATION_CLASSES and self.options.label_by == "class":
            return -1, RELATION_CLASSES.index(name)
        raise UserError(f"{where}: {value!r} is not a known discourse marker"
                        + (" or relation class" if self.options.label_by == "class" else
                           " (--label-by marker needs markers, not classes)")
                        + f"; known markers: {', '.join(MARKERS)}; leave out or relabel other records")

    def _file_rows(self, held_out: bool) -> Iterator[dict[str, list[Any]]]:
        """Batches of the rows of the ``--discourse-pairs`` records of the split, tokenized."""
        path = self.options.discourse_pairs
        columns: dict[str, list[Any]] = {k: [] for k in ("first", "second", "marker", "label", "source")}

        def rows() -> dict[str, list[Any]]:
            return self._rows(columns["first"], columns["second"], columns["marker"], columns["label"],
                              columns["source"], [-1] * len(columns["first"]))

        for line_number, first, second, value in read_pair_file(path):
            marker, label = self._resolve(value, f"{path} line {line_number}")  # every record, in either split
            if (zlib.crc32(f"{first}\t{second}".encode()) % 100 < HELD_OUT_PERCENT) != held_out:
                continue
            stripped = strip_marker(second)
            if stripped is not None and stripped[0] == marker:
                second = stripped[1]
            for key, item in zip(columns, (first, second, marker, label, f"{path}:{line_number}")):
                columns[key].append(item)
            if len(columns["first"]) == FILE_BATCH:
                yield rows()
                columns = {k: [] for k in columns}
        yield rows()

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        import datasets

        mined = documents.map(self._mine, batched=True, batch_size=64, remove_columns=documents.column_names,
                              features=features(ROW_COLUMNS), num_proc=num_proc, desc="discourse_relation pairs",
                              new_fingerprint=self.fingerprint(documents, "mined pairs"))
        rows = mined
        if self.options.discourse_pairs:
            from_file = write_dataset(self._file_rows(held_out), features(ROW_COLUMNS), documents, "discourse_pairs")
            rows = datasets.concatenate_datasets([mined, from_file])
        self._report(documents, mined, rows, held_out)
        return rows

    def _report(self, documents: datasets.Dataset, mined: datasets.Dataset, rows: datasets.Dataset,
                held_out: bool) -> None:
        """Log pairs per label; warn about rare labels; raise TaskUnavailable when there is no pair."""
        spans = documents.select_columns(["sentence_starts", "paragraph_starts"])
        n_adjacent = sum(len(adjacent_pairs(starts, paragraph_starts)) for batch in spans.iter(1000)
                         for starts, paragraph_starts in zip(batch["sentence_starts"], batch["paragraph_starts"]))
        if len(rows) == 0 and not held_out:
            raise TaskUnavailable(f"discourse_relation: 0 of {n_adjacent:,} adjacent sentence pairs (same paragraph) "
                                  "open with a known discourse marker (however, but, therefore, for example, ...); "
                                  "it needs prose with such markers, or a --discourse-pairs file")
        mined_counts, counts = (label_counts(part, "label", self.num_labels) for part in (mined, rows))
        by_count = np.argsort(-mined_counts, kind="stable")
        from_file = f"; plus {len(rows) - len(mined)} pairs from {self.options.discourse_pairs}"
        log.info("discourse_relation (%s): %d of %d adjacent sentence pairs open with a marker: %s%s",
                 "held-out" if held_out else "training", len(mined), n_adjacent,
                 ", ".join(f"{self.label_names[i]} {mined_counts[i]}" for i in by_count if mined_counts[i]) or "none",
                 from_file if len(rows) > len(mined) else "")
        rare = [f"{name} {count}" for name, count in zip(self.label_names, counts)
                if 0 < count < self.options.discourse_min_pairs]
        missing = [name for name, count in zip(self.label_names, counts) if count == 0]
        if missing:
            rare.append(f"none for {', '.join(missing) if len(missing) <= 8 else f'{len(missing)} labels'}")
        if rare and not held_out:
            log.warning("discourse_relation: fewer than %d training pairs (--discourse-min-pairs) for %s; "
                        "the head learns little about these labels; add text or a --discourse-pairs file",
                        self.options.discourse_min_pairs, ", ".join(rare))

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        example = join_segments(self.tokenizer, [row["sentence1_ids"], row["sentence2_ids"]], self.max_seq_length)
        example["labels"] = int(row["label"])
        return example
