"""The record beside cached annotations that lets a machine without spaCy train on them.

``<cache-dir>/annotations/<fingerprint>/annotation.json`` holds what the entry's fingerprint was
made of (the corpus's content hash, the pipeline's name and version, spaCy's version, the piece
size) and spaCy's English stop words, which ``token_document_relation`` and ``ir_relevance`` read.
:func:`ernie_cpt.data.annotate.annotate` writes it whenever it finds or makes an entry with spaCy
installed. Where spaCy or the pipeline is not installed, it looks the corpus up in these records
instead of failing: annotate where spaCy is (``ernie-cpt prepare --corpus C --output-dir CACHE``),
copy CACHE, and train elsewhere with ``--cache-dir CACHE`` and only ``datasets`` installed (as
``scripts/gpu_check.sh`` does on a GPU machine whose image has no spaCy).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ernie_cpt.data.spacy_pipeline import english_stop_words, use_recorded_stop_words

log = logging.getLogger(__name__)

RECORD = "annotation.json"
STOP_WORDS = "english_stop_words"


def write_record(target: Path, key: dict[str, Any]) -> None:
    """Write ``target/annotation.json`` (``key`` and spaCy's English stop words) unless it is there
    or ``target`` is not a finished entry; readers see the whole file or none."""
    path = target / RECORD
    if path.exists() or not (target / "dataset_info.json").exists():
        return
    tmp = path.with_name(f".{RECORD}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps({**key, STOP_WORDS: sorted(english_stop_words())}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def find_recorded(folder: Path, wanted: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The newest finished entry under ``folder`` (``<cache-dir>/annotations``) whose record has every
    item of ``wanted``, and its record; None when there is none. Its stop words are used from then on
    in this process (and the processes it forks) where spaCy is not installed."""
    found = []
    for path in folder.glob(f"*/{RECORD}"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: not a match
        if all(record.get(k) == v for k, v in wanted.items()) and (path.parent / "dataset_info.json").exists():
            found.append((path.stat().st_mtime, str(path.parent), record))
    if not found:
        return None
    _, target, record = max(found, key=lambda item: item[:2])
    use_recorded_stop_words(record[STOP_WORDS])
    log.info("spaCy pipeline not installed: using the annotations %s made of this corpus (spaCy %s), cached in %s",
             f"{record['pipeline']} {record['pipeline_version']}", record["spacy"], target)
    return Path(target), record
