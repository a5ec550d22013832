import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from ernie_cpt.data.annotate import AnnotationOptions, annotate
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.tokenizer import train_tokenizer
from ernie_cpt.errors import UserError
from pretasks.base import TaskUnavailable
from pretasks.ir_relevance import (
    CLASSES,
    IrRelevance,
    IrRelevanceOptions,
    PassageIndex,
    choose_query,
    content_terms,
    is_heading,
    query_units,
    read_click_log,
)

JARGON = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "jargon.jsonl"


@pytest.fixture(scope="module")
def jargon_annotations(tmp_path_factory, cache_dir):
    """The first 300 entries of the Jargon File (title + definition), annotated."""
    if not JARGON.is_file():
        pytest.skip(f"real-text corpus {JARGON} is absent")
    path = tmp_path_factory.mktemp("jargon") / "jargon.jsonl"
    path.write_text("".join(JARGON.read_text(encoding="utf-8").splitlines(keepends=True)[:300]), encoding="utf-8")
    return annotate(load_corpus(CorpusOptions(corpus=[str(path)])), AnnotationOptions(cache_dir=cache_dir))


@pytest.fixture(scope="module")
def tokenizer(jargon_annotations):
    return train_tokenizer(jargon_annotations, 3000)


@pytest.fixture(scope="module")
def task(tokenizer):
    return IrRelevance(tokenizer, IrRelevanceOptions(), max_seq_length=128)


@pytest.fixture(scope="module")
def rows(task, jargon_annotations):
    return list(task.build_examples(jargon_annotations))


@pytest.fixture(scope="module")
def docs(jargon_annotations):
    return {doc["doc_id"]: doc for doc in jargon_annotations}


def paragraph(docs, doc_id, index):
    doc = docs[doc_id]
    return doc["text"][doc["paragraph_starts"][index]:doc["paragraph_ends"][index]]


def is_subsequence(part, whole):
    tokens = iter(whole)
    return all(token in tokens for token in part)


def contains(whole, part):
    """Whether ``part`` occurs in ``whole`` as a contiguous run."""
    return any(whole[i:i + len(part)] == part for i in range(len(whole) - len(part) + 1))


def contains_query(tokenizer, passage, query):
    """Whether the query's tokens occur in the passage's tokens as whole words."""
    q = tokenizer(query, add_special_tokens=False)["input_ids"]
    vocab = tokenizer.convert_ids_to_tokens(passage)
    return any(passage[i:i + len(q)] == q and not (i + len(q) < len(vocab) and vocab[i + len(q)].startswith("##"))
               for i in range(len(passage) - len(q) + 1))


def check_passages(rows, docs, tokenizer, name):
    """Every stored passage of class ``name`` is its paragraph's tokens, minus the query for strong
    passages and unchanged (up to the length cut) for the others; returns (row, doc id, paragraph
    text) of each."""
    found = []
    for row in rows:
        for ids, doc_id, index in zip(row[f"{name}_ids"], row[f"{name}_doc_ids"], row[f"{name}_paragraphs"]):
            text = paragraph(docs, doc_id, index)
            paragraph_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert len(ids) >= 8
            if name == "strong":
                assert is_subsequence(ids, paragraph_ids) and not contains_query(tokenizer, ids, row["query"])
            elif name == "weak":  # a window of the paragraph, around a query term
                assert contains(paragraph_ids, ids)
            else:
                assert ids == paragraph_ids[:len(ids)]
            found.append((row, doc_id, text))
    return found


def test_strong_passages_are_from_the_query_document_with_the_query_removed(rows, docs, tokenizer):
    strong = check_passages(rows, docs, tokenizer, "strong")
    assert len(strong) == len(rows) > 300  # queries no other entry shares a term with are dropped
    assert all(row["strong_doc_ids"] == [row["query_doc_id"]] and row["query"] == docs[doc_id]["title"]
               for row, doc_id, _ in strong)
    # The query really was in many of these paragraphs, and is gone from the passages.
    had_query = [row for row, _, text in strong if re.search(rf"(?<!\w){re.escape(row['query'])}(?!\w)", text, re.I)]
    assert len(had_query) > 100
    # One row per (query, paragraph); no document has more than ir_passages_per_query rows.
    keys = [(row["query_doc_id"], row["strong_paragraphs"][0]) for row in rows]
    assert len(set(keys)) == len(keys) and max(Counter(doc_id for doc_id, _ in keys).values()) <= 8


def test_weak_passages_are_from_other_documents_and_show_a_query_term(task, rows, docs, tokenizer):
    """Weak passages share a query term, in the input itself (a window around it): "weak" is told from
    "irrelevant" by the input. A query no other document shares a term with is dropped, and counted."""
    weak = check_passages(rows, docs, tokenizer, "weak")
    assert all(len(row["weak_ids"]) >= 1 for row in rows) and len(weak) > 3 * len(rows)
    index = PassageIndex([unit for d, doc in enumerate(docs.values()) for unit in query_units(doc, d)])
    doc_ids = list(docs)
    for row, doc_id, _ in weak:
        assert doc_id != row["query_doc_id"]
    for row in rows:
        needles = [tokenizer(term, add_special_tokens=False)["input_ids"] for term in content_terms(row["query"])]
        for ids in row["weak_ids"]:
            assert any(contains(ids, needle) for needle in needles), (row["query"], tokenizer.decode(ids))
    queries = {choose_query(doc)[0] for doc in docs.values() if choose_query(doc)}
    lonely = [query for query in queries  # no passage of another document shares a term
              if not any(len(index.ranked(index.bm25(content_terms(query)), d)) for d, doc in enumerate(docs.values())
                         if choose_query(doc) and choose_query(doc)[0] == query)]
    assert lonely and not {row["query"] for row in rows} & set(lonely)
    assert task.notes[0].startswith(f"ir_relevance dropped {len(lonely)} of {len(queries)} queries: no passage of "
                                    f"another document shares a term with them")
    # The best BM25 passage of another document is a weak candidate of one of the query's rows.
    for row in rows[:40]:
        d = doc_ids.index(row["query_doc_id"])
        best = index.ranked(index.bm25(content_terms(row["query"])), d)[:1]
        offered = {(w_doc, p) for r in rows if r["query_doc_id"] == row["query_doc_id"]
                   for w_doc, p in zip(r["weak_doc_ids"], r["weak_paragraphs"])}
        assert all((doc_ids[index.document_of[i]], index.paragraph_of[i]) in offered for i in best)


def test_irrelevant_passages_are_from_documents_sharing_no_query_term(rows, docs, tokenizer):
    irrelevant = check_passages(rows, docs, tokenizer, "irrelevant")
    assert all(len(row["irrelevant_ids"]) == 4 for row in rows)
    for row, doc_id, _ in irrelevant:
        other = docs[doc_id]
        words = set(content_terms(f"{other['title']} {other['text']}"))
        assert doc_id != row["query_doc_id"] and not words & set(content_terms(row["query"]))
    assert len({doc_id for _, doc_id, _ in irrelevant}) > 200


def test_query_is_the_title_else_a_heading_else_a_salient_phrase(tmp_path, cache_dir, sample_annotations,
                                                                 austen_annotations):
    assert is_heading("PRIDE AND PREJUDICE") and is_heading("The Voyage Out")
    assert not any(map(is_heading, ["Chapter 1", "VOLUME II", "CHAPTER IV.", "It was a dark night.",
                                    "one two three four five six seven eight nine"]))
    (tmp_path / "titled.jsonl").write_text(json.dumps({"title": "Quux Engine", "text": "The Voyage Out\n\nIt ran."}))
    folder = tmp_path / "texts"
    folder.mkdir()
    body = ("Captain Wentworth came to Bath in the winter. Anne saw Captain Wentworth at the concert. "
            "Later Captain Wentworth wrote to Anne.")
    (folder / "heading.txt").write_text(f"The Voyage Out\n\n{body}")
    (folder / "chapter.txt").write_text(f"CHAPTER IV\n\n{body}")
    (folder / "sentence.txt").write_text(f"It was a dark night.\n\n{body}")
    (folder / "chunks.txt").write_text("the old kettle was on the stove.\n\nthe old kettle boiled. my kettle sang.")
    annotations = annotate(load_corpus(CorpusOptions(corpus=[str(tmp_path / "titled.jsonl"), str(folder)])),
                           AnnotationOptions(cache_dir=cache_dir))
    queries = {doc["doc_id"].split(":")[0]: choose_query(doc) for doc in annotations}
    assert queries["titled.jsonl"] == ("Quux Engine", "title")
    assert queries["heading.txt"] == ("The Voyage Out", "heading")
    assert queries["chapter.txt"] in {("Captain Wentworth", "entity"), ("Wentworth", "entity")}
    assert queries["sentence.txt"] == queries["chapter.txt"]
    assert queries["chunks.txt"] == ("old kettle", "noun_chunk")
    # Real text: Persuasion's chapter files open with "Chapter N", so their queries are characters;
    # the Austen novels open with their titles.
    for doc in sample_annotations:
        query, kind = choose_query(doc)
        assert kind == "entity" and len(re.findall(rf"\b{query}\b", doc["text"])) >= 5, query
    assert sorted(choose_query(doc) for doc in austen_annotations) == [("EMMA", "heading"),
                                                                        ("PRIDE AND PREJUDICE", "heading")]


def test_examples_are_balanced_query_passage_pairs(task, rows, tokenizer):
    labels = []
    for i, row in enumerate(rows):
        example = task.make_example(row, np.random.default_rng(i))
        labels.append(example["labels"])
        ids = example["input_ids"]
        sep = ids.index(tokenizer.sep_token_id)
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and len(ids) <= 128
        assert ids[1:sep] == row["query_ids"]
        assert ids[sep + 1:-1] in [p[:len(ids) - sep - 2] for p in row[f"{CLASSES[example['labels']]}_ids"]]
        assert example["token_type_ids"] == [0] * (sep + 1) + [1] * (len(ids) - sep - 1)
    shares = np.bincount(labels, minlength=3) / len(labels)
    assert np.all(np.abs(shares - 1 / 3) < 0.05), shares


def test_background_supplies_partners_but_no_queries(task, jargon_annotations):
    background = jargon_annotations.select(range(12, 300))
    background_terms = {term for text in background["text"] for term in content_terms(text)}
    shared = next(i for i in range(12) if set(content_terms(jargon_annotations[i]["title"])) & background_terms)
    held_out = jargon_annotations.select([shared])  # an entry whose title a background entry mentions
    rows = task.build_examples(held_out, background=background, held_out=True)
    assert len(rows) >= 1 and set(rows["query_doc_id"]) == set(held_out["doc_id"])
    partners = {d for name in ("weak_doc_ids", "irrelevant_doc_ids") for ids in rows[name] for d in ids}
    assert partners and partners <= set(background["doc_id"])
    with pytest.raises(TaskUnavailable, match=r"from 1 document \(0 background\)"):
        task.build_examples(held_out)


def test_click_log_maps_clicks_to_strong_and_shown_to_weak(tmp_path, tokenizer, jargon_annotations):
    records = [{"query": f"query {q}", "title": f"title {q} {t}", "clicked": t == 0, "shown": t < 2}
               for q in range(100) for t in range(3)]
    jsonl, tsv = tmp_path / "clicks.jsonl", tmp_path / "clicks.tsv"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    tsv.write_text("query\ttitle\tclicked\tshown\n" + "".join(
        f"{r['query']}\t{r['title']}\t{int(r['clicked'])}\t{r['shown']}\n" for r in records))
    corpus = jargon_annotations.select(range(20))
    split = {}
    for path in (jsonl, tsv):
        click_task = IrRelevance(tokenizer, IrRelevanceOptions(ir_click_log=str(path)), 128)
        for held_out in (False, True):
            built = click_task.build_examples(corpus, held_out=held_out)
            assert len(built.filter(lambda row: row["query_kind"] != "click_log")) >= 1  # corpus rows are kept
            split[path, held_out] = [row for row in built if row["query_kind"] == "click_log"]
    decode = tokenizer.decode
    for path in (jsonl, tsv):
        train, held = split[path, False], split[path, True]
        assert [r["query"] for r in train] == [r["query"] for r in split[jsonl, False]]
        assert len(train) + len(held) == 100 and 1 <= len(held) <= 12
        for row in train + held:
            q = row["query"].split()[1]
            assert [decode(ids) for ids in row["strong_ids"]] == [f"title {q} 0"]
            assert [decode(ids) for ids in row["weak_ids"]] == [f"title {q} 1"]
            assert len(row["irrelevant_ids"]) == 4
            assert all(decode(ids).split()[1] != q for ids in row["irrelevant_ids"])
    tsv.write_text("query\ttitle\tclicked\nfoo\tbar\t1\nfoo\tbaz\tmaybe\n")
    with pytest.raises(UserError, match=r"clicks.tsv:3"):
        IrRelevance(tokenizer, IrRelevanceOptions(ir_click_log=str(tsv)), 128).build_examples(corpus)
    jsonl.write_text('{"query": "foo", "title": "bar", "clicked": 1}\n{"query": "foo", "title": \n')
    with pytest.raises(UserError, match=r"clicks.jsonl:2"):
        IrRelevance(tokenizer, IrRelevanceOptions(ir_click_log=str(jsonl)), 128).build_examples(corpus)


def test_untitled_documents_divided_by_chapter_headings_give_a_query_per_chapter(austen_annotations):
    tokenizer = train_tokenizer(austen_annotations, 2000)
    rows = list(IrRelevance(tokenizer, IrRelevanceOptions(), max_seq_length=128).build_examples(austen_annotations))
    chapters = {}  # (doc id, first paragraph) -> the chapter's paragraph range
    for d, doc in enumerate(austen_annotations):
        units = query_units(doc, d)
        texts = [" ".join(doc["text"][s:e].split()) for s, e in zip(doc["paragraph_starts"], doc["paragraph_ends"])]
        headings = [p for p, text in enumerate(texts) if re.fullmatch(r"(?i)(chapter|volume) [0-9ivxl]+", text)]
        assert len(headings) >= 3 and [u["first_paragraph"] for u in units] == [0, *headings]  # front matter first
        covered = [u["first_paragraph"] + p for u in units for p in range(len(u["paragraph_starts"]))]
        assert covered == list(range(len(texts)))
        for unit in units:
            low, high = unit["paragraph_starts"][0], unit["paragraph_ends"][-1]
            assert all(low <= s < high for s in unit["entity_starts"] + unit["noun_chunk_starts"])
            first = unit["first_paragraph"]
            chapters[doc["doc_id"], first] = range(first, first + len(unit["paragraph_starts"]))
    by_query = defaultdict(set)
    for row in rows:
        (strong,) = row["strong_paragraphs"]
        chapter = [key for key, span in chapters.items() if key[0] == row["query_doc_id"] and strong in span]
        by_query[row["query_doc_id"], row["query"]].add(chapter[0])
        assert all(doc_id != row["query_doc_id"] for c in ("weak", "irrelevant") for doc_id in row[f"{c}_doc_ids"])
    # Several chapters of each novel are query units, and their queries differ from chapter to chapter;
    # with two novels, few of them share a term with the other novel: the others are dropped.
    queries = {key: choose_query(unit) for d, doc in enumerate(austen_annotations) for unit in query_units(doc, d)
               for key in [(doc["doc_id"], unit["first_paragraph"])]}
    assert len(queries) >= 10 and len({query for query, _ in queries.values()}) >= 8
    assert by_query and {key[1] for key in by_query} < {query for query, _ in queries.values()}


@pytest.mark.parametrize(("line", "expected"), [
    ('{"query": ["persuasion", "austen"], "title": "t", "clicked": 1}',
     "clicks.jsonl:2: 'query' is a list of strings; it must be a string"),
    ('{"query": "q", "title": {"text": "t"}, "clicked": 1}', "clicks.jsonl:2: 'title' is an object (dict)"),
    ('{"query": 42, "title": "t", "clicked": 1}', "clicks.jsonl:2: 'query' is a number (42)"),
    ('{"query": "q", "title": "t", "clicked": [1]}', "clicks.jsonl:2: 'clicked' must be 0/1 or true/false, not [1]"),
    ('["q", "t", 1]', "clicks.jsonl:2: the line is a list holding a number, not a JSON object"),
])
def test_click_log_cells_of_another_type_name_the_line_and_the_type(tmp_path, line, expected):
    path = tmp_path / "clicks.jsonl"
    path.write_text('{"query": "q", "title": "t", "clicked": 1}\n' + line + "\n", encoding="utf-8")

    with pytest.raises(UserError) as error:
        read_click_log(str(path))

    assert expected in str(error.value)


def test_a_compressed_click_log_with_semicolons_is_read(tmp_path):
    import bz2

    path = tmp_path / "clicks.tsv.bz2"
    path.write_bytes(bz2.compress(b"query;title;clicked\npersuasion, austen;Persuasion;1\nemma;Emma;0\n"))

    records = read_click_log(str(path))

    assert [(r.query, r.title, r.clicked) for r in records] == [("persuasion, austen", "Persuasion", True),
                                                                 ("emma", "Emma", False)]


def test_the_plan_is_kept_in_the_cache_with_what_was_counted(task, rows, jargon_annotations, monkeypatch, caplog):
    """A build of documents from the cache reads the plan kept by an earlier one, with its counts (the same rows,
    log and notes as a build of the same documents held in memory, which keeps nothing), instead of searching
    the index again."""
    import logging

    import datasets

    in_memory = datasets.Dataset.from_dict(jargon_annotations.to_dict(), features=jargon_annotations.features)
    with caplog.at_level(logging.INFO):
        built = list(task.build_examples(in_memory))
    built_notes, built_log = list(task.notes), caplog.text
    caplog.clear()
    monkeypatch.setattr(IrRelevance, "_unit_rows", lambda *args: pytest.fail("the plan was made again"))
    with caplog.at_level(logging.INFO):
        again = list(task.build_examples(jargon_annotations))
    assert again == rows == built and task.notes == built_notes
    assert re.search(r"ir_relevance \(training\): 300 documents \(0 background\) in \d+ query units", caplog.text)
    assert [line for line in caplog.text.splitlines() if "ir_relevance:" in line] == [
        line for line in built_log.splitlines() if "ir_relevance:" in line]
