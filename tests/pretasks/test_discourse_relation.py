import json
import logging
import re

import datasets
import numpy as np
import pytest

from ernie_cpt.data.annotate import AnnotationOptions, annotate
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.errors import UserError
from pretasks.base import TaskUnavailable
from pretasks.discourse_relation import (
    COMMA_MARKERS,
    MARKER_CLASSES,
    MARKERS,
    RELATION_CLASSES,
    DiscourseRelation,
    DiscourseRelationOptions,
    mine_pairs,
    read_pair_file,
    strip_marker,
)

QUOTES = "\"'\u201c\u2018"
# A sentence inside a paragraph that opens with a marker other than "but" (the commonest by far).
OTHER_MARKER_INSIDE = re.compile(r"[.!?][\"”]? +[\"“]?(However,|Yet |At length|At last|Indeed,|In short,|Besides,|"
                                 r"On the contrary|Then,|So,|Still,|Thus |In fact,|Accordingly|Moreover)")


def _task(tokenizer, **options):
    return DiscourseRelation(tokenizer, DiscourseRelationOptions(**options), max_seq_length=128)


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _class_of(marker):
    return next(name for name, markers in MARKER_CLASSES.items() if marker in markers)


@pytest.mark.parametrize("sentence, marker, rest", [
    ("However, she came.", "however", "she came."),
    ("However little known the feelings of such a man may be.", None, None),  # degree adverb
    ("So much the better.", None, None),
    ("So, you are come at last!", "so", "you are come at last!"),
    ("Still waters run deep.", None, None),
    ("Still, she hoped.", "still", "she hoped."),
    ("Even so, he came.", "even so", "he came."),  # longest first: not "so"
    ("As a result, all was lost.", "as a result", "all was lost."),
    ("As a result of this, all was lost.", None, None),
    ("Instead of going, she stayed.", None, None),
    ("Then why does he stay here?", None, None),
    ("Then, opening the door, she went in.", "then", "opening the door, she went in."),
    ("Butter is good.", None, None),  # word boundary
    ("But's and if's.", None, None),
    ("But\u2019s and if\u2019s.", None, None),
    ("\u2018Yet, not so.\u2019", "yet", "\u2018not so.\u2019"),
    ("BUT, I will.", "but", "I will."),
    ('"But I must go," said she.', "but", '"I must go," said she.'),
    ("“On the other hand, no.”", "on the other hand", "“no.”"),
    ("But--how can I tell you?", "but", "how can I tell you?"),
    ("at  last she came.", "at last", "she came."),
    ("Yet she smiled.", "yet", "she smiled."),
    ("Indeed!", None, None),
    ("But!", None, None),  # nothing left after the marker
    ("In fact, nobody knew.", "in fact", "nobody knew."),
])
def test_tricky_markers(sentence, marker, rest):
    found = strip_marker(sentence)
    assert (found and (MARKERS[found[0]], found[1])) == (marker and (marker, rest))


def test_marker_table_is_consistent():
    assert len(set(MARKERS)) == len(MARKERS)  # one class per marker
    assert set(MARKERS) >= COMMA_MARKERS
    assert RELATION_CLASSES == ("contrast", "result", "elaboration", "addition", "temporal", "concession")


def test_pairs_stay_in_a_paragraph_and_need_a_whole_first_sentence():
    doc = _documents([["No one", "but you can tell me.", "But he left.", "Hello."],
                      ["But then, no.", "No one but you."]])[0]
    pairs = [(i, first, second, MARKERS[m]) for i, first, second, m in
             mine_pairs(doc["text"], doc["sentence_starts"], doc["sentence_ends"], doc["paragraph_starts"])]
    # Sentence 1 follows a sentence cut by spaCy, 4 opens a paragraph, 3 and 5 do not open with a marker.
    assert pairs == [(2, "but you can tell me.", "he left.", "but")]


@pytest.fixture(scope="module")
def austen_rows(austen_annotations, sample_tokenizer):
    return _task(sample_tokenizer).build_examples(austen_annotations)


@pytest.fixture(scope="module")
def marker_annotations(austen_dir, cache_dir, tmp_path_factory):
    """The first 15 paragraphs of each Austen novel with a sentence opening with a marker other than "but"."""
    folder = tmp_path_factory.mktemp("austen-markers")
    for path in sorted(austen_dir.glob("*.txt")):
        paragraphs = [p for p in path.read_text(encoding="utf-8").split("\n\n") if OTHER_MARKER_INSIDE.search(p)]
        (folder / path.name).write_text("\n\n".join(paragraphs[:15]), encoding="utf-8")
    return annotate(load_corpus(CorpusOptions(corpus=[str(folder)])), AnnotationOptions(cache_dir=cache_dir))


@pytest.mark.parametrize("source, n_classes", [("austen", 1), ("marker", 6)])
def test_mined_austen_pairs_have_their_marker_removed_and_its_class(source, n_classes, request, sample_tokenizer):
    annotations = request.getfixturevalue(f"{source}_annotations")
    rows = _task(sample_tokenizer).build_examples(annotations)
    documents = {doc["doc_id"]: doc for doc in annotations}
    assert len(rows) >= 25
    assert len(set(rows["label"])) == n_classes
    for row in rows:
        doc = documents[row["source"]]
        i, starts, ends = row["sentence_index"], doc["sentence_starts"], doc["sentence_ends"]
        first, original = doc["text"][starts[i - 1]:ends[i - 1]], doc["text"][starts[i]:ends[i]]
        assert not any(starts[i - 1] < p <= starts[i] for p in doc["paragraph_starts"])  # same paragraph
        marker = MARKERS[row["marker"]]
        lead = len(original) - len(original.lstrip(QUOTES))
        assert original[lead:lead + len(marker)].lower() == marker
        after = original[lead + len(marker):]
        assert re.match(r"\s*," if marker in COMMA_MARKERS else r"[^\w']", after)
        expected = original[:lead] + re.sub(r"^\s*(,|-+)?\s*", "", after)
        assert row["sentence2_ids"] == _ids(sample_tokenizer, expected)
        assert row["sentence1_ids"] == _ids(sample_tokenizer, first)
        assert RELATION_CLASSES[row["label"]] == _class_of(marker)


def test_every_but_opening_a_sentence_in_a_paragraph_is_mined(austen_rows, austen_annotations):
    expected = set()
    for doc in austen_annotations:
        paragraph_starts = set(doc["paragraph_starts"])
        for i in range(1, len(doc["sentence_starts"])):
            first = doc["text"][doc["sentence_starts"][i - 1]:doc["sentence_ends"][i - 1]]
            second = doc["text"][doc["sentence_starts"][i]:doc["sentence_ends"][i]]
            if (second.lstrip(QUOTES).startswith("But ") and doc["sentence_starts"][i] not in paragraph_starts
                    and first.rstrip(QUOTES)[-1] in ".!?"):
                expected.add((doc["doc_id"], i))
    assert len(expected) >= 10
    assert expected <= set(zip(austen_rows["source"], austen_rows["sentence_index"]))


def test_examples_join_the_pair_and_label_by_marker(austen_annotations, sample_tokenizer, austen_rows):
    task = _task(sample_tokenizer, label_by="marker")
    assert task.label_names == MARKERS
    rows = task.build_examples(austen_annotations)
    assert rows["label"] == rows["marker"] == austen_rows["marker"]
    row = rows[0]
    example = task.make_example(row, np.random.default_rng(0))
    cls, sep = sample_tokenizer.cls_token_id, sample_tokenizer.sep_token_id
    n1 = len(row["sentence1_ids"])
    assert example["input_ids"] == [cls, *row["sentence1_ids"], sep, *row["sentence2_ids"], sep]
    assert example["token_type_ids"] == [0] * (n1 + 2) + [1] * (len(row["sentence2_ids"]) + 1)
    assert example["labels"] == row["marker"] and task.label_name(example["labels"]) == MARKERS[row["marker"]]
    short = DiscourseRelation(sample_tokenizer, DiscourseRelationOptions(), max_seq_length=16)
    assert all(len(short.make_example(r, None)["input_ids"]) <= 16 for r in rows)


def test_rare_labels_are_reported(austen_annotations, sample_tokenizer, caplog):
    with caplog.at_level(logging.INFO, logger="pretasks.discourse_relation"):
        _task(sample_tokenizer, discourse_min_pairs=10**6).build_examples(austen_annotations)
    info, warning = (next(r.getMessage() for r in caplog.records
                          if r.name == "pretasks.discourse_relation" and r.levelno == level)
                     for level in (logging.INFO, logging.WARNING))
    assert re.search(r"\d+ of \d+ adjacent sentence pairs open with a marker: contrast \d+", info)
    assert all(name in warning for name in RELATION_CLASSES)
    with caplog.at_level(logging.INFO, logger="pretasks.discourse_relation"):
        _task(sample_tokenizer, label_by="marker").build_examples(austen_annotations)
    warning = [r.getMessage() for r in caplog.records if r.name == "pretasks.discourse_relation"][-1]
    assert re.search(r"for \w+ \d+.*, none for \d+ labels;", warning)  # markers: the missing ones counted


def _documents(paragraphs):
    """Hand-made annotations: one document, each paragraph a list of sentences."""
    text, sentence_starts, sentence_ends, paragraph_starts, paragraph_ends = "", [], [], [], []
    for paragraph in paragraphs:
        paragraph_starts.append(len(text))
        for sentence in paragraph:
            sentence_starts.append(len(text))
            text += sentence
            sentence_ends.append(len(text))
            text += " "
        paragraph_ends.append(len(text) - 1)
        text = text[:-1] + "\n\n"
    return datasets.Dataset.from_dict({"doc_id": ["d"], "title": [""], "text": [text],
                                       "sentence_starts": [sentence_starts], "sentence_ends": [sentence_ends],
                                       "paragraph_starts": [paragraph_starts], "paragraph_ends": [paragraph_ends]})


def test_no_marker_is_task_unavailable(sample_tokenizer):
    documents = _documents([["It rained.", "We stayed in.", "So much the better."], ["But it cleared."]])
    with pytest.raises(TaskUnavailable, match="0 of 2 adjacent sentence pairs"):
        _task(sample_tokenizer).build_examples(documents)
    assert len(_task(sample_tokenizer).build_examples(documents, held_out=True)) == 0


def test_pair_file_adds_labelled_pairs_split_by_hash(tmp_path, sample_tokenizer):
    documents = _documents([["It rained.", "However, we went out."]])
    records = [{"sentence1": f"Sentence number {i}.", "sentence2": f"Reply {i}.", "label": "as_a_result,"}
               for i in range(400)]
    records[1] = {"sentence1": "It was late.", "sentence2": "Nevertheless, she stayed.", "marker": "Nevertheless"}
    records[2] = {"sentence1": "It was late.", "sentence2": "He left.", "label": "temporal"}
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    task = _task(sample_tokenizer, discourse_pairs=str(path))
    train, held = task.build_examples(documents), task.build_examples(documents, held_out=True)
    mined = [r for r in train if r["source"] == "d"]
    assert len(mined) == 1 and mined[0]["sentence2_ids"] == _ids(sample_tokenizer, "we went out.")
    by_line = {int(r["source"].rsplit(":", 1)[1]): r for r in [*train, *held] if r["source"] != "d"}
    n_held = sum(r["source"] != "d" for r in held)
    assert len(by_line) == len(train) + len(held) - 2 == 400  # every record in exactly one split
    assert 0.02 < n_held / 400 < 0.09
    assert by_line[1]["label"] == RELATION_CLASSES.index("result") and MARKERS[by_line[1]["marker"]] == "as a result"
    assert by_line[2]["sentence2_ids"] == _ids(sample_tokenizer, "she stayed.")  # marker still there: removed
    assert by_line[2]["label"] == RELATION_CLASSES.index("contrast")
    assert by_line[3]["label"] == RELATION_CLASSES.index("temporal") and by_line[3]["marker"] == -1
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text('sentence1\tsentence2\tmarker\n"Oh," he said.\tIt "rained".\tin fact\n')
    rows = _task(sample_tokenizer, discourse_pairs=str(tsv)).build_examples(documents)
    assert rows[-1]["sentence1_ids"] == _ids(sample_tokenizer, '"Oh," he said.')
    assert rows[-1]["label"] == RELATION_CLASSES.index("elaboration")


@pytest.mark.parametrize("content, label_by, message", [
    ("sentence1\tsentence2\tmarker\nA.\tB.\tbut\nC.\tD.\tand\n", "class", "line 3: 'and' is not a known"),
    ("sentence1\tsentence2\tlabel\nA.\tB.\tcontrast\n", "marker", "line 2: 'contrast' .*--label-by marker"),
    ("sentence1\tsentence2\nA.\tB.\n", "class", "line 2: a pair record needs"),
])
def test_bad_pair_files_name_the_line(tmp_path, sample_tokenizer, content, label_by, message):
    path = tmp_path / "pairs.tsv"
    path.write_text(content)
    documents = _documents([["It rained.", "However, we went out."]])
    task = _task(sample_tokenizer, discourse_pairs=str(path), label_by=label_by)
    with pytest.raises(UserError, match=message):
        task.build_examples(documents)


@pytest.mark.parametrize("line, message", [
    ('{"sentence1": ["A.", "B."], "sentence2": "C.", "marker": "but"}',
     "pairs.jsonl line 2: 'sentence1' is a list of strings; it must be a string"),
    ('{"sentence1": "A.", "sentence2": "C.", "marker": 3}', "pairs.jsonl line 2: 'marker' is a number (3)"),
    ('{"sentence1": "A.", "sentence2": {"text": "C."}, "label": "contrast"}',
     "pairs.jsonl line 2: 'sentence2' is an object (dict)"),
    ('["A.", "C.", "but"]', "pairs.jsonl line 2 is a list of strings, not a JSON object"),
])
def test_pair_file_cells_of_another_type_name_the_line_and_the_type(tmp_path, sample_tokenizer, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"sentence1": "A.", "sentence2": "B.", "marker": "but"}\n' + line + "\n")
    task = _task(sample_tokenizer, discourse_pairs=str(path))
    with pytest.raises(UserError) as error:
        task.build_examples(_documents([["It rained.", "However, we went out."]]))
    assert message in str(error.value)


@pytest.mark.parametrize(("name", "separator", "pack"), [
    ("pairs.tsv", ";", None),  # a spreadsheet's export with ';' between fields
    ("pairs.tsv.gz", "\t", "gzip"),
    ("pairs.tsv.xz", "|", "lzma"),
])
def test_a_pair_file_with_another_delimiter_or_compressed_is_read(tmp_path, name, separator, pack):
    import gzip
    import lzma

    text = separator.join(["sentence1", "sentence2", "marker"]) + "\n" + separator.join(
        ["It rained, all day long.", "We stayed in, reading.", "so"]) + "\n"
    data = text.encode()
    (tmp_path / name).write_bytes({"gzip": gzip.compress, "lzma": lzma.compress}[pack](data) if pack else data)

    assert list(read_pair_file(str(tmp_path / name))) == [(2, "It rained, all day long.", "We stayed in, reading.",
                                                            "so")]
