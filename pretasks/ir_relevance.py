"""IR relevance: is a passage strongly, weakly or not relevant to a query?

ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
Understanding", AAAI) learns this 3-way task from Baidu search logs: a query paired with the
title of a result the user clicked (strong), one shown but not clicked (weak), or a random
title (irrelevant). Without a log, a corpus stands in for the search engine:

* query unit: a document, or, when it has no title and generic headings ("CHAPTER I") divide
  it, each of its sections: a novel is a few documents but hundreds of chapters, and a handful
  of queries teaches no relevance. Below, "the query's document" is its unit; weak and
  irrelevant passages always come from other documents.
* query: the document's title; else its heading, a first paragraph of at most 8 words without
  sentence-final punctuation that is not a generic label ("Chapter 3", "VOLUME II"); else its
  most frequent named entity (numbers, dates and quantities excluded); else its most frequent
  noun chunk (leading determiners and other stop words dropped from both).
* passages: paragraphs of at least 8 words, cut to what an input can hold. Terms are
  case-folded words minus spaCy's stop words, numbers and single letters.
* 0 strong: a passage of the query's document.
* 1 weak: a passage of *another* document among those ranked highest for the query terms by
  BM25 (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and Beyond";
  k1=1.2, b=0.75, over an inverted index of all passages), so it shares a query term, and the
  input shows it: the passage is cut to a window that holds its first query term in its first
  quarter, and a candidate whose tokens, once cut to fit, hold no query term's tokens is
  dropped. A query that no passage of another document shares a term with is dropped (counted
  in ``inspect-task``): its "weak" passages could not be told from irrelevant ones.
* 2 irrelevant: a random passage of a document sharing no query term (document BM25 score 0);
  when every other document shares one, a random passage of another document sharing none.

The query text is removed from strong passages (case-insensitive, at word boundaries, with an
attached -s/-ed/-ing/'s), so that "the passage repeats its document's title" is no shortcut to
class 0. Weak passages keep it: like the results a search engine shows for a query, they match
its terms, and that match is what separates them from irrelevant ones. Strong passages are
told from weak ones by what they are about, not by the words they share with the query.

Static rows: one per (query unit, strong passage), at most ``ir_passages_per_query`` per unit
(drawn with a seed from the document id and the unit's first paragraph), each with
``ir_candidates`` weak candidates (the query's ranking dealt round-robin over its rows) and as
many irrelevant ones; rows with a single class are dropped. ``make_example`` draws the class
uniformly among those the row has, then a candidate: [CLS] query [SEP] passage [SEP].
``background`` documents only supply weak and irrelevant candidates.

A click log (``ir_click_log``: TSV with a header, or JSONL; fields query, title, clicked and
optional shown, default true) adds rows to the corpus rows, as in ERNIE 2.0: per query and
clicked title a row whose strong passage is that title, weak candidates the titles shown but
never clicked, irrelevant ones titles of records with another query; titles are kept whole.
A query is held out when crc32(query) % 100 < 5.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import zlib
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ernie_cpt.compression import format_suffix
from ernie_cpt.data.cells import describe, text_cell
from ernie_cpt.data.delimiters import sniff_delimiter
from ernie_cpt.data.scratch import cached_dataset, write_dataset
from ernie_cpt.data.sections import is_generic_heading, paragraph_sections
from ernie_cpt.data.spacy_pipeline import english_stop_words
from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural
from ernie_cpt.options import Range, option
from ernie_cpt.text_encoding import read_text
from pretasks.base import PreTask, TaskUnavailable, features, split_name
from pretasks.passage_index import (
    INDEX_PASSAGES,
    MIN_PASSAGE_WORDS,
    PassageIndex,
    content_terms,
    sample_units,
    unit_passages,
)
from pretasks.registry import register
from pretasks.sequences import join_segments

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

MAX_HEADING_WORDS = 8
HELD_OUT_PERCENT = 5
DOCUMENT_BATCH = 16  # annotated documents read at a time
CLASSES = ("strong", "weak", "irrelevant")
NUMERIC_ENTITIES = {"CARDINAL", "ORDINAL", "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY"}
TRUE, FALSE = {"1", "true", "yes"}, {"0", "false", "no"}
TEXT_COLUMNS = [f"{c}_texts" for c in CLASSES]
PLAN_COLUMNS = {
    "query_doc_id": "string", "query": "string", "query_kind": "string",
    **{f"{c}_{field}": [kind] for c in CLASSES
       for field, kind in (("texts", "string"), ("doc_ids", "string"), ("paragraphs", "int64"))}}
ROW_COLUMNS = {
    **{k: v for k, v in PLAN_COLUMNS.items() if k not in TEXT_COLUMNS}, "length": "int64",
    "query_ids": ["int32"],
    **{f"{c}_ids": [["int32"]] for c in CLASSES}}
PLAN_BATCH_ROWS = 500  # planned rows written, and tokenized, at a time


@dataclass
class IrRelevanceOptions:
    """ir_relevance: query-passage relevance (strong / weak / irrelevant)"""

    ir_passages_per_query: int = option(8, "Strong passages (static rows) per query unit (a document, or a chapter "
                                        "of an untitled one), at most", valid=Range(1, 10_000))
    ir_candidates: int = option(4, "Weak and irrelevant candidate passages stored per row (K)", valid=Range(1, 64))
    ir_click_log: str | None = option(None, "Click log (TSV with header or JSONL: query, title, clicked[, shown]) "
                                      "whose rows are added to the corpus rows")


def is_heading(paragraph: str) -> bool:
    """A short paragraph with no sentence-final punctuation that is not a generic "Chapter 3" label."""
    words = paragraph.split()
    return (0 < len(words) <= MAX_HEADING_WORDS and not re.search(r"[.!?,;:][\"'\u201d\u2019)]*$", paragraph)
            and not is_generic_heading(paragraph))


def salient_phrase(text: str, starts: list[int], ends: list[int]) -> str | None:
    """The most frequent span text (case-folded; first seen wins ties), without leading stop words."""
    counts: Counter[str] = Counter()
    surface: dict[str, str] = {}
    for start, end in zip(starts, ends):
        words = re.sub(r"['\u2019]s$", "", text[start:end]).split()
        while words and words[0].lower() in english_stop_words():
            words.pop(0)
        phrase = " ".join(words)
        if content_terms(phrase):
            counts[phrase.lower()] += 1
            surface.setdefault(phrase.lower(), phrase)
    return surface[counts.most_common(1)[0][0]] if counts else None


def choose_query(doc: dict[str, Any]) -> tuple[str, str] | None:
    """(query, kind) of an annotated document, kind being title, heading, entity or noun_chunk."""
    if (doc["title"] or "").strip():
        return " ".join(doc["title"].split()), "title"
    text = doc["text"]
    if doc["paragraph_starts"]:
        first = " ".join(text[doc["paragraph_starts"][0]:doc["paragraph_ends"][0]].split())
        if is_heading(first):
            return first, "heading"
    entities = [(s, e) for s, e, label in zip(doc["entity_starts"], doc["entity_ends"], doc["entity_labels"])
                if label not in NUMERIC_ENTITIES]
    for kind, spans in (("entity", entities), ("noun_chunk", list(zip(doc["noun_chunk_starts"],
                                                                       doc["noun_chunk_ends"])))):
        phrase = salient_phrase(text, [s for s, _ in spans], [e for _, e in spans])
        if phrase:
            return phrase, kind
    return None


def query_remover(query: str) -> re.Pattern[str]:
    """A pattern matching the query in a text: case-insensitive, any whitespace between its words,
    at word boundaries (an underscore is one, as for the tokenizer), with an inflection (-s, -es, -ed,
    -d, -ing, 's) attached to it."""
    body = r"\s+".join(re.escape(word) for word in query.split())
    left = r"(?<![^\W_])" if re.match(r"[^\W_]", query) else ""
    right = r"(?:s|es|ed|d|ing|['\u2019]s)?(?![^\W_])" if re.search(r"[^\W_]$", query) else ""
    return re.compile(left + body + right, re.IGNORECASE)


def clean_passage(remover: re.Pattern[str] | None, text: str, max_words: int,
                  keep: set[str] | None = None) -> str | None:
    """``text`` (without what ``remover`` matches, if given) cut to ``max_words`` words (no fewer tokens than
    a model input can hold, as every word is at least one token), or None when fewer than
    ``MIN_PASSAGE_WORDS`` words remain. With ``keep`` (terms), the window starts up to a quarter of
    ``max_words`` before the first word holding one of them (None when no word does)."""
    words = (remover.sub(" ", text) if remover else text).split()
    if len(words) < MIN_PASSAGE_WORDS:
        return None
    start = 0
    if keep is not None:
        first = next((i for i, word in enumerate(words) if keep.intersection(content_terms(word))), None)
        if first is None:
            return None
        start = max(0, min(first - max_words // 4, len(words) - MIN_PASSAGE_WORDS))
    return " ".join(words[start:start + max_words])


def query_units(doc: dict[str, Any], document: int) -> list[dict[str, Any]]:
    """The parts of a document that get a query each: the document itself, or, when it has no title
    and generic headings ("CHAPTER I") divide it into several sections, each section (from a
    heading to the next). A unit is the document's annotation restricted to its paragraphs and
    spans (offsets into the whole text), with ``document`` (its index) and ``first_paragraph``."""
    starts, ends = doc["paragraph_starts"], doc["paragraph_ends"]
    sections = paragraph_sections(doc["text"], starts, ends)
    if (doc["title"] or "").strip() or not any(sections):
        return [{**doc, "document": document, "first_paragraph": 0}]
    firsts = [p for p, section in enumerate(sections) if p == 0 or section != sections[p - 1]]
    units = []
    for first, last in zip(firsts, [*firsts[1:], len(starts)]):
        low, high = starts[first], ends[last - 1]
        unit = {**doc, "document": document, "first_paragraph": first, "paragraph_starts": starts[first:last],
                "paragraph_ends": ends[first:last]}
        for kind, fields in (("entity", ("entity_starts", "entity_ends", "entity_labels")),
                             ("noun_chunk", ("noun_chunk_starts", "noun_chunk_ends"))):
            inside = [i for i, start in enumerate(doc[f"{kind}_starts"]) if low <= start < high]
            unit.update({field: [doc[field][i] for i in inside] for field in fields})
        units.append(unit)
    return units


def _annotated(parts: list[datasets.Dataset]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, annotated document) of every document of ``parts`` in turn, read a few at a time."""
    d = 0
    for part in parts:
        for batch in part.iter(batch_size=DOCUMENT_BATCH):
            for values in zip(*batch.values()):
                yield d, dict(zip(batch, values))
                d += 1


def _units(parts: list[datasets.Dataset]) -> Iterator[dict[str, Any]]:
    """The query units of every document of ``parts``, each with its number among them (``unit``)."""
    u = 0
    for d, doc in _annotated(parts):
        for unit in query_units(doc, d):
            yield {**unit, "unit": u}
            u += 1


def _flag(value: Any, where: str, field: str) -> bool:
    text = str(value).strip().lower() if isinstance(value, (str, bool, int)) else repr(value)
    if text not in TRUE | FALSE:
        raise UserError(f"{where}: '{field}' must be 0/1 or true/false, not {value!r}; fix that line of the click log")
    return text in TRUE


class ClickRecord(NamedTuple):
    where: str  # file:line
    query: str
    title: str
    clicked: bool
    shown: bool


def read_click_log(path: str) -> list[ClickRecord]:
    """The records of a TSV (with header; ``;``, ``,`` or ``|`` between fields where the header splits on it)
    or JSONL click log, compressed or not; a malformed line is a UserError naming it."""
    try:
        lines = read_text(path, "click log").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read click log {path} ({e}); pass a UTF-8 TSV or JSONL file to --ir-click-log") from e
    jsonl = format_suffix(path) in (".jsonl", ".json")
    delimiter = "\t" if jsonl else sniff_delimiter("\n".join(lines[:50]), "\t")
    header = [] if jsonl or not lines else lines[0].strip().split(delimiter)
    if not jsonl and not {"query", "title", "clicked"} <= set(header):
        raise UserError(f"{path}:1: a TSV click log needs a header with query, title and clicked columns "
                        f"(and optionally shown); found {header}")
    records = []
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        if not line.strip() or (not jsonl and number == 1):
            continue
        try:
            record = json.loads(line) if jsonl else dict(zip(header, line.split(delimiter), strict=True))
        except (json.JSONDecodeError, ValueError) as e:
            raise UserError(f"{where}: malformed line ({e}); expected "
                            f"{'a JSON object' if jsonl else f'{len(header)} tab-separated fields'}") from e
        if not isinstance(record, dict):
            raise UserError(f"{where}: the line is {describe(record)}, not a JSON object with query, title and clicked")
        query, title = (" ".join((text_cell(record.get(k), where, k) or "").split()) for k in ("query", "title"))
        if not query or not title or "clicked" not in record:
            raise UserError(f"{where}: malformed line; every record needs a non-empty query and title, and clicked")
        records.append(ClickRecord(where, query, title, _flag(record["clicked"], where, "clicked"),
                                   _flag(record.get("shown", 1), where, "shown")))
    return records


def _contains(ids: list[int], needle: list[int]) -> bool:
    """Whether ``needle`` occurs in ``ids`` as a contiguous run."""
    n = len(needle)
    return n > 0 and any(ids[i:i + n] == needle for i in range(len(ids) - n + 1))


@register
class IrRelevance(PreTask):
    name = "ir_relevance"
    options_class = IrRelevanceOptions
    level = "pair"
    num_token_types = 2
    label_names = CLASSES

    @classmethod
    def min_seq_length(cls, options: IrRelevanceOptions) -> tuple[int, str]:
        """[CLS] query [SEP] passage [SEP] with a query of up to a quarter of the tokens and a
        passage of ``MIN_PASSAGE_WORDS`` tokens (a word is at least one token)."""
        minimum = next(n for n in itertools.count(8) if n - 3 - n // 4 >= MIN_PASSAGE_WORDS)
        return minimum, f"a query of up to a quarter of the tokens and a passage of {MIN_PASSAGE_WORDS} words"

    def _unit_rows(self, index: PassageIndex, unit: dict[str, Any], query: str,
                   kind: str) -> list[dict[str, Any]] | None:
        """The rows of one query unit: its strong passages, each with weak and irrelevant candidates;
        None when no passage of another document shares a query term (the query is dropped)."""
        k, remover, terms = self.options.ir_candidates, query_remover(query), content_terms(query)
        rng = np.random.default_rng(zlib.crc32(f"{unit['doc_id']}\x1f{unit['first_paragraph']}".encode()))
        d = unit["document"]

        def passages(found: Any, limit: int | None = None, remove: bool = False,
                     keep: set[str] | None = None) -> list[tuple[str, int, str]]:
            """(doc id, paragraph, text) of the first ``limit`` of ``found`` (passages of the index, or (paragraph,
            text) pairs) that keep enough words, without the query if asked, around a term of ``keep`` if given."""
            chosen: list[tuple[str, int, str]] = []
            for item in found:
                if len(chosen) == limit:
                    break
                doc_id, paragraph, text = ((unit["doc_id"], *item) if isinstance(item, tuple) else
                                           (index.doc_ids[index.document_of[item]], index.paragraph_of[item],
                                            index.texts[item]))
                if (text := clean_passage(remover if remove else None, text, self.max_seq_length, keep)) is not None:
                    chosen.append((doc_id, int(paragraph), text))
            return chosen

        query_scores = index.bm25(terms)
        ranking = index.ranked(query_scores, d)
        if not len(ranking):  # no passage of another document shares a query term: no weak passage
            return None
        own = passages(unit_passages(unit), remove=True)
        n_rows = min(len(own), self.options.ir_passages_per_query)
        strong = sorted(rng.choice(len(own), size=n_rows, replace=False).tolist())
        weak = passages(ranking, k * n_rows, keep=set(terms))
        pool = np.flatnonzero(~np.isin(index.unit_of, index.units_with(terms)) & (index.document_of != d))
        if not len(pool):  # every other document shares a query term: passages that share none
            pool = np.flatnonzero((query_scores == 0) & (index.document_of != d))
        rows = []
        for j, passage in enumerate(strong):
            drawn = rng.choice(pool, size=min(len(pool), 2 * k), replace=False) if len(pool) else []
            row = {"query_doc_id": unit["doc_id"], "query": query, "query_kind": kind}
            dealt = list(dict.fromkeys(weak[j::n_rows] + weak))[:k]  # its share of the ranking, then the best
            for name, chosen in (("strong", [own[passage]]), ("weak", dealt), ("irrelevant", passages(drawn, k))):
                row[f"{name}_doc_ids"], row[f"{name}_paragraphs"], row[f"{name}_texts"] = \
                    ([list(column) for column in zip(*chosen)] if chosen else ([], [], []))
            rows.append(row)
        return rows

    def _corpus_plan(self, documents: datasets.Dataset, background: datasets.Dataset | None,
                     stats: Counter[str]) -> Iterator[dict[str, list[Any]]]:
        """Batches of planned rows (texts, not yet tokenized) of the query units of ``documents``, with
        partners from them and ``background``; counts what it does in ``stats``. Three passes over the
        documents, a batch at a time: count each unit's passages, index a bounded sample of the units
        (:func:`pretasks.passage_index.sample_units`), plan the rows of each query."""
        parts = [documents] + ([background] if background is not None else [])
        if sum(len(part) for part in parts) < 2:
            return
        counts, seed = array("q"), 0
        for _, doc in _annotated(parts):
            counts.extend(len(unit_passages(unit)) for unit in query_units(doc, 0))
            seed = zlib.crc32(doc["doc_id"].encode(), seed)
        stats.update(documents=sum(len(part) for part in parts), units=len(counts), passages=sum(counts))
        chosen = sample_units(np.array(counts, dtype=np.int64), seed)
        index = PassageIndex(unit for unit in _units(parts) if chosen is None or chosen[unit["unit"]])
        stats.update(indexed_units=len(counts) if chosen is None else int(chosen.sum()),
                     indexed_passages=len(index.texts))
        batch: dict[str, list[Any]] = {name: [] for name in PLAN_COLUMNS}
        for unit in _units([documents]):
            if (query := choose_query(unit)) is None:
                continue
            stats["query:" + query[1]] += 1
            rows = self._unit_rows(index, unit, *query)
            stats["dropped"] += rows is None
            for row in rows or []:
                if sum(bool(row[c]) for c in TEXT_COLUMNS) >= 2:
                    stats["rows"] += 1
                    stats["without_weak"] += not row["weak_texts"]
                    for name in PLAN_COLUMNS:
                        batch[name].append(row[name])
            if len(batch["query"]) >= PLAN_BATCH_ROWS:
                yield batch
                batch = {name: [] for name in PLAN_COLUMNS}
        yield batch

    def _report_plan(self, documents: datasets.Dataset, stats: Counter[str], held_out: bool) -> None:
        kinds = {key.split(":", 1)[1]: n for key, n in stats.items() if key.startswith("query:")}
        if stats["dropped"]:
            self.notes.append(f"ir_relevance dropped {stats['dropped']} of {sum(kinds.values())} queries: no "
                              f"passage of another document shares a term with them, so a 'weak' passage could not be "
                              f"told from an irrelevant one")
        if stats["indexed_passages"] < stats["passages"]:
            self.notes.append(f"ir_relevance drew weak and irrelevant passages from a sample of "
                              f"{stats['indexed_units']:,} of {stats['units']:,} query units "
                              f"({stats['indexed_passages']:,} of {stats['passages']:,} passages; the index holds "
                              f"about {INDEX_PASSAGES:,})")
        log.info("ir_relevance (%s): %d documents (%d background) in %d query units, %d passages (%d indexed), "
                 "queries by kind %s -> %d rows, %d without a weak candidate; %d queries dropped (no other document "
                 "shares a term)", split_name(held_out), stats["documents"], stats["documents"] - len(documents),
                 stats["units"], stats["passages"], stats["indexed_passages"], kinds, stats["rows"],
                 stats["without_weak"], stats["dropped"])

    def _click_log_plan(self, held_out: bool) -> list[dict[str, Any]]:
        records = read_click_log(self.options.ir_click_log)
        by_query: dict[str, list[int]] = defaultdict(list)
        for r, record in enumerate(records):
            by_query[record.query.lower()].append(r)
        rows = []
        for key, members in by_query.items():
            if (zlib.crc32(key.encode()) % 100 < HELD_OUT_PERCENT) != held_out:
                continue
            rng = np.random.default_rng(zlib.crc32(key.encode()))
            strong = {records[r].title.lower(): r for r in members if records[r].clicked}
            weak = {records[r].title.lower(): r for r in members
                    if records[r].shown and records[r].title.lower() not in strong}
            drawn = [int(r) for r in rng.integers(len(records), size=20 * self.options.ir_candidates)]
            irrelevant = {records[r].title.lower(): r for r in drawn if records[r].query.lower() != key
                          and records[r].title.lower() not in strong.keys() | weak.keys()}
            for clicked in list[int | None](strong.values()) or [None]:
                row: dict[str, Any] = {"query_doc_id": records[members[0]].where,
                                       "query": records[members[0]].query, "query_kind": "click_log"}
                weak_chosen = sorted(rng.permutation(list(weak.values()))[:self.options.ir_candidates].tolist())
                for name, chosen in (("strong", [] if clicked is None else [clicked]), ("weak", weak_chosen),
                                     ("irrelevant", list(irrelevant.values())[:self.options.ir_candidates])):
                    row[f"{name}_texts"] = [records[r].title for r in chosen]
                    row[f"{name}_doc_ids"] = [records[r].where for r in chosen]
                    row[f"{name}_paragraphs"] = [-1] * len(chosen)
                rows.append(row)
        log.info("ir_relevance (%s): %d click-log records, %d queries -> %d rows", split_name(held_out), len(records),
                 len(by_query), len(rows))
        return rows

    def _tokenize(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Token ids of the queries and passages of a batch of planned rows (each distinct text tokenized once)."""
        texts = list(dict.fromkeys(batch["query"] + [t for name in TEXT_COLUMNS for ts in batch[name] for t in ts]))
        encoded = dict(zip(texts, self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                                                 return_token_type_ids=False)["input_ids"]))
        out: dict[str, list[Any]] = {"query_ids": [encoded[q][:self.max_seq_length // 4] for q in batch["query"]]}
        budgets = [self.max_seq_length - 3 - len(query) for query in out["query_ids"]]
        for name in CLASSES:
            out[f"{name}_ids"] = [[encoded[text][:budget] for text in texts]
                                  for texts, budget in zip(batch[f"{name}_texts"], budgets)]
        self._keep_weak_showing_a_term(batch, out)
        out["length"] = [self.max_seq_length - budget + max(len(p) for c in CLASSES for p in out[f"{c}_ids"][i])
                         for i, budget in enumerate(budgets)]
        return out

    def _keep_weak_showing_a_term(self, batch: dict[str, list[Any]], out: dict[str, list[Any]]) -> None:
        """Drop from ``out`` the weak candidates of corpus rows whose tokens, as cut to fit, hold no query
        term's tokens (a click log's weak titles are what its users saw, and stay)."""
        terms = {query: content_terms(query) for query in batch["query"]}
        distinct = sorted({term for found in terms.values() for term in found})
        term_ids = dict(zip(distinct, self.tokenizer(distinct, add_special_tokens=False)["input_ids"])) if distinct \
            else {}
        columns: dict[str, list[Any]] = {name: [] for name in ("weak_ids", "weak_doc_ids", "weak_paragraphs")}
        for row, (query, kind) in enumerate(zip(batch["query"], batch["query_kind"])):
            needles = [term_ids[term] for term in terms[query]]
            keep = [kind == "click_log" or any(_contains(ids, needle) for needle in needles)
                    for ids in out["weak_ids"][row]]
            columns["weak_ids"].append([ids for ids, kept in zip(out["weak_ids"][row], keep) if kept])
            for name in ("weak_doc_ids", "weak_paragraphs"):
                columns[name].append([value for value, kept in zip(batch[name][row], keep) if kept])
        out.update(columns)

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        self.notes = []
        stats: Counter[str] = Counter()
        batches = self._corpus_plan(documents, background, stats)
        if self.options.ir_click_log:
            click_rows = [row for row in self._click_log_plan(held_out) if sum(bool(row[c]) for c in TEXT_COLUMNS) >= 2]
            batches = itertools.chain(batches, [{name: [row[name] for row in click_rows] for name in PLAN_COLUMNS}])
        if self.options.ir_click_log:  # the file's content is not in the key: built anew
            plan, key = write_dataset(batches, features(PLAN_COLUMNS), documents, "ir_relevance_plan"), None
        else:
            key = self.fingerprint(documents, background, "plan")
            plan = cached_dataset(batches, features(PLAN_COLUMNS), documents, "ir_relevance_plan", key, stats)
        self._report_plan(documents, stats, held_out)
        if not len(plan):
            n_background = len(background) if background is not None else 0
            raise TaskUnavailable(
                f"ir_relevance formed no query-passage pair from {plural(len(documents), 'document')} ({n_background} "
                f"background); it needs >= 2 documents and a query (title, heading, entity or noun chunk) whose "
                f"document has a passage of >= {MIN_PASSAGE_WORDS} words besides the query, or a click log")
        # Batches of some hundred rows: a passage paired with several queries is tokenized once per batch.
        rows = plan.map(self._tokenize, batched=True, batch_size=PLAN_BATCH_ROWS, writer_batch_size=PLAN_BATCH_ROWS,
                        remove_columns=TEXT_COLUMNS, features=features(ROW_COLUMNS),
                        num_proc=num_proc if num_proc and len(plan) > 4 * PLAN_BATCH_ROWS else None,
                        desc="ir_relevance examples", new_fingerprint=key and self.fingerprint(key, "rows"))
        kept = rows.filter(lambda batch: [sum(bool(batch[f"{c}_ids"][i]) for c in CLASSES) >= 2
                                          for i in range(len(batch["query"]))], batched=True)
        if len(kept) < len(rows):
            self.notes.append(f"ir_relevance dropped {len(rows) - len(kept)} of {len(rows)} rows left with one "
                              f"class once their weak passages were cut to fit")
        return kept

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        classes = [label for label, name in enumerate(CLASSES) if row[f"{name}_ids"]]
        label = classes[int(rng.integers(len(classes)))]
        candidates = row[f"{CLASSES[label]}_ids"]
        passage = candidates[int(rng.integers(len(candidates)))]
        example = join_segments(self.tokenizer, [row["query_ids"], passage], self.max_seq_length)
        example["labels"] = label
        return example
