"""The encoding of a user's text file: UTF-8, or UTF-8/16/32 announced by a byte-order mark.

Windows tools (Notepad, PowerShell's ``>``, Excel's "Unicode text") write UTF-16 with a
byte-order mark (BOM). Every text file ernie-cpt reads (corpus files and tables, labelled
files, pair files, click logs, config and schedule files) is opened with the encoding its BOM
names, the BOM itself dropped; a file without one is UTF-8. A compressed file (``.gz``, ``.bz2``,
``.xz``, ``.zst``) is decompressed first. UTF-16 without a BOM (every other
byte zero in ASCII text) cannot be told from binary data for sure, so it is refused with the
encoding and the fix named.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from ernie_cpt.compression import compression, damaged, decompression_errors, open_binary
from ernie_cpt.errors import UserError

# UTF-32 LE's mark starts with UTF-16 LE's: longest first. Python's utf-16/utf-32 codecs read
# the BOM to pick the byte order and drop it; utf-8-sig drops UTF-8's.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
PROBE_BYTES = 4096


def read_bytes(path: str | Path, size: int = -1) -> bytes:
    """The bytes of ``path`` (the first ``size`` when not -1), decompressed when its suffix names a
    compression (:mod:`ernie_cpt.compression`). Raises UserError for a damaged compressed file."""
    try:
        with open_binary(path) as handle:
            return handle.read(size)
    except decompression_errors() as e:
        if compression(path) is None or isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise damaged(path, e) from e


def _head(path: str | Path) -> bytes:
    return read_bytes(path, PROBE_BYTES)


def bom_encoding(data: bytes) -> str | None:
    """The codec a byte-order mark at the start of ``data`` names, or None when there is none."""
    return next((encoding for bom, encoding in BOMS if data.startswith(bom)), None)


def unmarked_utf16(data: bytes) -> str | None:
    """``"UTF-16LE"``/``"UTF-16BE"`` when ``data`` (no BOM) looks like UTF-16 text: nearly all of its odd
    (even) bytes are zero, as in ASCII text in UTF-16; else None."""
    if len(data) < 16 or bom_encoding(data):
        return None
    for name, zeros in (("UTF-16LE", data[1::2]), ("UTF-16BE", data[0::2])):
        if zeros.count(0) >= 0.9 * len(zeros):
            return name
    return None


def text_encoding(path: str | Path, what: str = "file") -> str:
    """The codec to open ``path`` with: the one its BOM names, else UTF-8. Raises UserError naming the
    encoding and the fix when it looks like UTF-16 without a BOM. ``what`` names the file in errors."""
    head = _head(path)
    encoding = bom_encoding(head)
    if encoding:
        return encoding
    utf16 = unmarked_utf16(head)
    if utf16:
        raise UserError(f"{what} {path} looks like {utf16} text without a byte-order mark; convert it to UTF-8: "
                        f"iconv -f {utf16} -t UTF-8 {path} > {Path(path).stem}-utf8{Path(path).suffix}")
    return "utf-8"


def not_utf8_hint(path: str | Path) -> str:
    """The fix for a file that is not UTF-8: the iconv command that re-encodes it (Latin-1 is the usual culprit)."""
    path = Path(path)
    return f"re-encode it, e.g. iconv -f latin1 -t utf-8 {path} > {path.stem}-utf8{path.suffix}"


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path`` decoded as :func:`text_encoding` says (``\\r\\n`` kept). Raises UserError naming
    ``what`` it is, the line and the byte when it is not in that encoding (a Latin-1 ``é`` in a UTF-8 file)."""
    encoding = text_encoding(path, what)
    data = read_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].decode(encoding, errors="replace").count("\n") + 1
        codec = encoding.upper().removesuffix("-SIG")
        raise UserError(f"{what} {path} line {line} is not {codec} (byte 0x{data[e.start]:02x}); "
                        f"{not_utf8_hint(path)}") from e
