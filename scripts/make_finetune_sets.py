"""Build small labelled sets of the four MT-DNN kinds from the developer corpora (../shared/corpora).

    python scripts/make_finetune_sets.py OUT [--corpora ../shared/corpora] [--train 1000] [--test 250] [--seed 13]

writes OUT/<set>/train.jsonl and OUT/<set>/test.jsonl (the fields of ``ernie_cpt.data.labelled_sets``):

* ``topic`` (classification): fortunes-topics as it is (its own 80/20 split), ``--train``/``--test``
  examples drawn at random from each file; 8 labels.
* ``quotation`` (pair_classification: is this quotation from this passage?): 12 consecutive
  words of an Austen passage (``text``) and a passage (``text_pair``) of the same chapter, the first
  20 words of a paragraph; label 1 when the quotation is taken from it, 0 when it is taken from
  another passage of that chapter; half of each.
* ``similarity`` (regression, STS-style graded similarity): the first 20 words of an Austen paragraph
  (``text``) and a copy (``text_pair``) in which each word is kept with probability s (s uniform in
  [0, 1] per example) and otherwise replaced by the word at the same place of another paragraph; the
  label is the share of words kept, in [0, 1].
* ``position`` (regression): an Austen paragraph (``text``) with its chapter's first paragraph
  (``text_pair``); the label is its position in the chapter, i / (n - 1) in [0, 1] for paragraph i of
  n. Written for completeness: the text barely tells it (a TF-IDF ridge regression on 1,000 of them
  reaches a test Pearson r of 0.08), so the tests and the docs use ``similarity``.
* ``jargon_source`` (ranking: which of 5 Jargon File entries is this quotation from?): 12
  consecutive words of an entry (``text``) and 5 passages (``candidates``: the first 20 words of
  that entry's first paragraph and of 4 other entries drawn at random), in random order; ``label``
  is 1 for the entry quoted.

Both quotation sets are answered by what the two texts share word for word: the lexical overlap
that MT-DNN's QNLI (question, answer sentence) and paraphrase sets also reward, which a tiny
encoder learns in a few hundred steps and carries over to held-out text. A passage is always 20
words (paragraphs and first paragraphs of at least 20 words), so its length tells nothing. Two
sets that need more than shared words, "are these two paragraphs from the same chapter" and
"which of 5 definitions does this Jargon title define", stayed at chance on held-out files with
the tiny encoders of the tests and of the docs' results table, and are not written.

Paragraphs are those of at least 8 words (headings, "CHAPTER" and "VOLUME" lines are left out);
chapters have at least 5 such paragraphs. Austen chapters and Jargon entries are split 80/20 into
training and test before any example is made, so no chapter or entry is in both files. Every draw
comes from ``random.Random(seed)``: the same corpora and seed give the same files.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

MIN_WORDS, MIN_PARAGRAPHS, CANDIDATES, SIMILARITY_WORDS = 8, 5, 5, 20
QUOTE_WORDS, PASSAGE_WORDS = 12, 20


def chapters(austen: Path) -> list[tuple[str, list[str]]]:
    """(novel, the chapter's paragraphs of at least MIN_WORDS words) of each chapter, in file order."""
    found = []
    for novel in sorted(austen.glob("*.txt")):
        current: list[str] = []
        for paragraph in novel.read_text(encoding="utf-8").split("\n\n"):
            paragraph = paragraph.strip()
            if paragraph.upper().startswith("CHAPTER"):
                found.append((novel.stem, current))
                current = []
            elif len(paragraph.split()) >= MIN_WORDS:
                current.append(paragraph)
        found.append((novel.stem, current))
    return [(novel, chapter) for novel, chapter in found if len(chapter) >= MIN_PARAGRAPHS]


def split(items: list, rng: random.Random) -> tuple[list, list]:
    items = list(items)
    rng.shuffle(items)
    cut = round(0.8 * len(items))
    return items[:cut], items[cut:]


def passage(text: str) -> list[str] | None:
    """The first PASSAGE_WORDS words of ``text``, or None when it is shorter."""
    words = text.split()[:PASSAGE_WORDS]
    return words if len(words) == PASSAGE_WORDS else None


def quote(words: list[str], rng: random.Random) -> str:
    """QUOTE_WORDS consecutive words of a passage, from a random place in it."""
    start = rng.randrange(len(words) - QUOTE_WORDS + 1)
    return " ".join(words[start:start + QUOTE_WORDS])


def quotation(parts: list[tuple[str, list[str]]], n: int, rng: random.Random) -> list[dict]:
    found = [[p for p in map(passage, chapter) if p] for _, chapter in parts]
    found = [passages for passages in found if len(passages) >= 2]
    rows = []
    for i in range(n):
        source, other = rng.sample(rng.choice(found), 2)
        label = 1 - i % 2
        rows.append({"text": quote(source, rng), "text_pair": " ".join(source if label else other), "label": label})
    rng.shuffle(rows)
    return rows


def similarity(parts: list[tuple[str, list[str]]], n: int, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(n):
        words = rng.choice(rng.choice(parts)[1]).split()[:SIMILARITY_WORDS]
        filler = rng.choice(rng.choice(parts)[1]).split()
        share = rng.random()
        kept = [rng.random() < share for _ in words]
        second = [word if keep else filler[i % len(filler)] for i, (word, keep) in enumerate(zip(words, kept))]
        rows.append({"text": " ".join(words), "text_pair": " ".join(second), "label": sum(kept) / len(words)})
    return rows


def position(parts: list[tuple[str, list[str]]], n: int, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(n):
        chapter = rng.choice(parts)[1]
        i = rng.randrange(1, len(chapter))
        rows.append({"text": chapter[i], "text_pair": chapter[0], "label": i / (len(chapter) - 1)})
    return rows


def jargon_source(entries: list[dict], n: int, rng: random.Random) -> list[dict]:
    found = [p for p in (passage(entry["text"].split("\n\n")[0]) for entry in entries) if p]
    rows = []
    for _ in range(n):
        chosen = rng.sample(found, CANDIDATES)
        candidates = [(" ".join(words), int(i == 0)) for i, words in enumerate(chosen)]
        rng.shuffle(candidates)
        rows.append({"text": quote(chosen[0], rng), "candidates": [c for c, _ in candidates],
                     "label": [relevant for _, relevant in candidates]})
    return rows


def write(folder: Path, train: list[dict], test: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (folder / f"{name}.jsonl").write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="Folder for the four sets")
    parser.add_argument("--corpora", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpora")
    parser.add_argument("--train", type=int, default=1000, help="Training examples per set")
    parser.add_argument("--test", type=int, default=250, help="Test examples per set")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    topics = {}
    for name in ("train", "test"):
        lines = (args.corpora / "fortunes-topics" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        topics[name] = [json.loads(line) for line in rng.sample(lines, min(getattr(args, name), len(lines)))]
    write(args.out / "topic", topics["train"], topics["test"])

    train_chapters, test_chapters = split(chapters(args.corpora / "austen"), rng)
    write(args.out / "quotation", quotation(train_chapters, args.train, rng),
          quotation(test_chapters, args.test, rng))
    write(args.out / "similarity", similarity(train_chapters, args.train, rng),
          similarity(test_chapters, args.test, rng))
    write(args.out / "position", position(train_chapters, args.train, rng), position(test_chapters, args.test, rng))

    entries = [json.loads(line) for line in (args.corpora / "jargon.jsonl").read_text(encoding="utf-8").splitlines()]
    train_entries, test_entries = split(entries, rng)
    write(args.out / "jargon_source", jargon_source(train_entries, args.train, rng),
          jargon_source(test_entries, args.test, rng))
    print(f"Wrote topic, quotation, similarity, position and jargon_source to {args.out}")


if __name__ == "__main__":
    main()
