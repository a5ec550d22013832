"""Text documents read as streams, and cut into parts when they are longer than ``--max-document-chars``.

A text file (or a table's text) is read line by line, never whole: a blank line ends a paragraph
(the corpus' paragraph break, ``\\n`` + spaces or tabs + ``\\n``). A document longer than
``max_chars`` is cut into parts between paragraphs, each part a document of its own
(``<doc_id>#part-<k>``, 1-based) whose text is the exact stretch of the source it covers: a part
ends before the paragraph that would take it past ``max_chars``, or before a generic heading
("CHAPTER XII", :mod:`ernie_cpt.data.sections`) once it holds half of ``max_chars``, so parts
follow sections where the text has them. A paragraph longer than ``MAX_PARAGRAPH_CHARS`` (spaCy's
``nlp.max_length``) is an error: such text is not prose in paragraphs. So memory holds at most one
part (``max_chars`` plus a paragraph), whatever the size of the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from ernie_cpt.compression import compression, decompression_errors, open_binary
from ernie_cpt.data.options import MAX_PARAGRAPH_CHARS
from ernie_cpt.data.sections import is_generic_heading
from ernie_cpt.errors import UserError
from ernie_cpt.text_encoding import PROBE_BYTES, bom_encoding, read_bytes, unmarked_utf16

CHUNK_CHARS = 1 << 20  # a line longer than this is read in pieces of this size
BATCH_CHARS = 16 << 20  # the text a batch of documents holds in memory, at most (about)
BLANK = " \t\r\f\v"


def _paragraph_error(source: str, length: int, line_breaks: bool) -> UserError:
    shape = "has no blank line for that long" if line_breaks else "has no line break at all"
    return UserError(f"{source} holds a paragraph of {length:,} characters ({shape}); paragraphs of more than "
                     f"{MAX_PARAGRAPH_CHARS:,} are refused: separate paragraphs with blank lines, or split the text "
                     f"into several documents")


def _blocks(chunks: Iterable[str], source: str) -> Iterator[str]:
    """The text of ``chunks`` (lines, or pieces of a long line) as blocks: a paragraph with the blank lines
    after it (blank lines before the first paragraph are a block of their own). Raises UserError for a
    paragraph over MAX_PARAGRAPH_CHARS, with its length."""
    block: list[str] = []
    length, in_blanks, line_start, line_breaks = 0, True, True, False
    for chunk in chunks:
        starts_line, line_start = line_start, chunk.endswith("\n")
        blank = starts_line and line_start and not chunk[:-1].strip(BLANK)
        if blank:
            if not in_blanks and length > MAX_PARAGRAPH_CHARS:
                raise _paragraph_error(source, length - 1, line_breaks)
            in_blanks = True
        elif in_blanks and block:  # a paragraph starts: the block before it is complete
            yield "".join(block)
            block, length, in_blanks, line_breaks = [], 0, False, False
        else:
            in_blanks = False
        if not blank:
            line_breaks = line_breaks or (length > 0 and starts_line)
            length += len(chunk)
        if length <= MAX_PARAGRAPH_CHARS or blank:
            block.append(chunk)
    if not in_blanks and length > MAX_PARAGRAPH_CHARS:
        raise _paragraph_error(source, length, line_breaks)
    if block:
        yield "".join(block)


def text_parts(chunks: Iterable[str], max_chars: int, source: str) -> Iterator[str]:
    """The text of ``chunks``, longer than ``max_chars``, cut into parts of at most ``max_chars`` between
    paragraphs (a paragraph longer than that is a part of its own), before a generic heading once a part
    holds half of ``max_chars``; the whole text as one part when ``max_chars`` is 0. The parts, joined, are
    the text. ``source`` names the text in the error for a paragraph over MAX_PARAGRAPH_CHARS. (A text of
    at most ``max_chars`` is one document: the caller knows its length and does not cut it.)"""
    part: list[str] = []
    length, words = 0, False  # words: the part holds a paragraph that is not blank
    for block in _blocks(chunks, source):
        heading = len(block) < 200 and is_generic_heading(block)
        full = length + len(block) > max_chars or (heading and length >= max_chars // 2)
        if words and max_chars and full and block.strip():
            yield "".join(part)
            part, length, words = [], 0, False
        part.append(block)
        length += len(block)
        words = words or bool(block.strip())
    if part:
        yield "".join(part)


def document_parts(text: str, max_chars: int, source: str) -> list[str]:
    """``text`` as one part when it has at most ``max_chars`` (or ``max_chars`` is 0), else cut into parts
    (:func:`text_parts`). Raises UserError for a paragraph over MAX_PARAGRAPH_CHARS."""
    if len(text) > MAX_PARAGRAPH_CHARS:
        for _ in _blocks(string_chunks(text), source):  # only checks the paragraphs
            pass
    if not max_chars or len(text) <= max_chars:
        return [text]
    return list(text_parts(string_chunks(text), max_chars, source))


def string_chunks(text: str) -> Iterator[str]:
    """The lines of ``text`` (ends kept), as :func:`text_parts` takes them."""
    return iter(io.StringIO(text, newline=""))


def file_chunks(path: str | Path, encoding: str) -> Iterator[str]:
    """The lines of a (possibly compressed) text file, decoded, a long line in pieces of CHUNK_CHARS."""
    with io.TextIOWrapper(open_binary(path), encoding=encoding, newline="") as handle:
        while chunk := handle.readline(CHUNK_CHARS):
            yield chunk


def file_encoding(path: str | Path) -> tuple[str | None, str | None]:
    """(the codec to read ``path`` with, None) or (None, why it cannot be read as text), from its first bytes:
    a byte-order mark's codec, else UTF-8; binary data or UTF-16 without a mark has no codec."""
    head = read_bytes(path, PROBE_BYTES)
    encoding = bom_encoding(head)
    if encoding:
        return encoding, None
    if b"\x00" in head:
        utf16 = unmarked_utf16(head)
        return None, f"{utf16} without a byte-order mark (re-encode it: iconv -f {utf16} -t UTF-8)" if utf16 \
            else "binary"
    return "utf-8", None


class Scan(NamedTuple):
    """What a streaming pass found in a text file: why it cannot be a document (or None), its characters, its
    parts at ``--max-document-chars``, and the longest part's characters."""

    problem: str | None
    chars: int = 0
    parts: int = 0
    longest: int = 0


def scan_text_file(path: str | Path, max_chars: int) -> Scan:
    """What ``path`` holds (:class:`Scan`), in one streaming pass. Raises UserError for a paragraph over
    MAX_PARAGRAPH_CHARS."""
    try:
        encoding, problem = file_encoding(path)
    except UserError as e:  # a compressed file whose first bytes cannot be decompressed
        return Scan(_damaged(path, e.__cause__))
    except OSError as e:
        return Scan(f"unreadable ({e.strerror or type(e).__name__})")
    if encoding is None:  # then ``problem`` says why
        return Scan(problem)
    chars, parts, longest, words = 0, 0, 0, False
    try:
        for block in _blocks(file_chunks(path, encoding), str(path)):  # a paragraph at a time
            if "\x00" in block:
                return Scan("binary")
            chars, words = chars + len(block), words or bool(block.strip())
        if max_chars and chars > max_chars:  # read again, to count its parts
            for part in text_parts(file_chunks(path, encoding), max_chars, str(path)):
                parts, longest = parts + 1, max(longest, len(part))
        else:
            parts, longest = 1, chars
    except UnicodeDecodeError:
        codec = encoding.upper().removesuffix("-SIG")
        return Scan(f"not {codec} although their byte-order mark says so" if encoding != "utf-8"
                    else "not UTF-8 (re-encode it, e.g. iconv -f latin1 -t utf-8)")
    except decompression_errors() as e:
        if compression(path) is None:
            return Scan(f"unreadable ({getattr(e, 'strerror', None) or type(e).__name__})")
        return Scan(_damaged(path, e))
    return Scan(None, chars, parts, longest) if words else Scan("empty")


def _damaged(path: str | Path, error: BaseException | None) -> str:
    return f"truncated or damaged {Path(path).suffix} data ({type(error).__name__})"


def rows_per_batch(longest: int) -> int:
    """Documents per batch of a `datasets` map or Arrow writer, so that a batch holds about BATCH_CHARS
    characters at most (1,000, `datasets`' default, for short documents)."""
    return max(1, min(1000, BATCH_CHARS // max(1, longest)))
