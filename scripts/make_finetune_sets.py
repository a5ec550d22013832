"""Build small labelled sets of the four MT-DNN kinds from the developer corpora (../shared/corpora).

    python scripts/make_finetune_sets.py OUT [--corpora ../shared/corpora] [--train 1000] [--test 250] [--seed 13]

writes OUT/<set>/train.jsonl and OUT/<set>/test.jsonl (the fields of ``ernie_cpt.data.labelled_sets``):

* ``topic`` (classification): fortunes-topics as it is (its own 80/20 split), ``--train``/``--test``
  examples drawn at random from each file; 8 labels.
* ``same_chapter`` (pair_classification): two paragraphs of Austen, label 1 when they come from the
  same chapter, 0 when the second comes from another novel; half of each.
* ``similarity`` (regression, STS-style graded similarity): the first 30 words of an Austen paragraph
  (``text``) and a copy (``text_pair``) in which each word is kept with probability s (s uniform in
  [0, 1] per example) and otherwise replaced by the word at the same place of another paragraph; the
  label is the share of words kept, in [0, 1].
* ``position`` (regression): an Austen paragraph (``text``) with its chapter's first paragraph
  (``text_pair``); the label is its position in the chapter, i / (n - 1) in [0, 1] for paragraph i of
  n. Written for completeness: the text barely tells it (a TF-IDF ridge regression on 1,000 of them
  reaches a test Pearson r of 0.08), so the tests and the README use ``similarity``.
* ``jargon_title`` (ranking): a Jargon File title (``text``) and 5 definitions (``candidates``: the
  entry's own and 4 others drawn at random, the first paragraph each, cut to 60 words), in random
  order; ``label`` is 1 for the entry's own.

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

MIN_WORDS, MIN_PARAGRAPHS, CANDIDATES, DEFINITION_WORDS, SIMILARITY_WORDS = 8, 5, 5, 60, 30


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


def same_chapter(parts: list[tuple[str, list[str]]], n: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        novel, chapter = rng.choice(parts)
        first, second = rng.sample(chapter, 2)
        if i % 2:
            second = rng.choice(rng.choice([c for other, c in parts if other != novel]))
        rows.append({"text": first, "text_pair": second, "label": 1 - i % 2})
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


def jargon_title(entries: list[dict], n: int, rng: random.Random) -> list[dict]:
    def definition(entry: dict) -> str:
        return " ".join(entry["text"].split("\n\n")[0].split()[:DEFINITION_WORDS])

    rows = []
    for entry in rng.sample(entries, min(n, len(entries))):
        others = rng.sample([e for e in entries if e is not entry], CANDIDATES - 1)
        candidates = [(definition(entry), 1)] + [(definition(e), 0) for e in others]
        rng.shuffle(candidates)
        rows.append({"text": entry["title"], "candidates": [c for c, _ in candidates],
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
    write(args.out / "same_chapter", same_chapter(train_chapters, args.train, rng),
          same_chapter(test_chapters, args.test, rng))
    write(args.out / "similarity", similarity(train_chapters, args.train, rng),
          similarity(test_chapters, args.test, rng))
    write(args.out / "position", position(train_chapters, args.train, rng), position(test_chapters, args.test, rng))

    entries = [json.loads(line) for line in (args.corpora / "jargon.jsonl").read_text(encoding="utf-8").splitlines()]
    train_entries, test_entries = split(entries, rng)
    write(args.out / "jargon_title", jargon_title(train_entries, args.train, rng),
          jargon_title(test_entries, args.test, rng))
    print(f"Wrote topic, same_chapter, similarity, position and jargon_title to {args.out}")


if __name__ == "__main__":
    main()
