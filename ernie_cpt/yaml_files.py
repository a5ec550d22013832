"""The YAML files a user writes (``--config`` files, ``--schedule-file``), read strictly.

PyYAML keeps the last of two equal keys without a word (``max_steps: 2`` then ``max_steps: 30``
trains 30 steps), so a key given twice in any mapping of the file is an error naming it and both
lines. ``same_key`` says which keys are the same: a config file's ``max-steps`` and ``max_steps``
set one option. The file is decoded as every user text file is (:mod:`ernie_cpt.text_encoding`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ernie_cpt.errors import UserError
from ernie_cpt.text_encoding import read_text

MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    where = "file"
    same_key: Callable[[Any], Any] = staticmethod(lambda key: key)



def _where(error: yaml.YAMLError) -> str:
    """`` at line L, column C (what is wrong)`` for a YAML error: where the parser found it (PyYAML counts from 0)
    and its problem; the first line of the message when it has no position."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None:
        return f" ({str(error).splitlines()[0]})"
    return f" at line {mark.line + 1}, column {mark.column + 1} ({problem or str(error).splitlines()[0]})"

def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:  # `<<: *defaults` may be overridden by the keys beside it
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            same = loader.same_key(key)
            if same in seen:
                at = f"lines {seen[same]} and {line}" if seen[same] != line else f"line {line}"
                raise UserError(f"{loader.where} gives the key '{same}' twice, on {at} (YAML would keep the last "
                                f"without a word); keep one")
            seen[same] = line
        except TypeError:  # an unhashable key: PyYAML's own error says so
            continue
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path, what: str, flag: str,
              same_key: Callable[[Any], Any] | None = None) -> tuple[Any, dict[Any, int]]:
    """The data of the YAML file ``path``, and the line of each key of its top-level mapping (keyed by
    ``same_key(key)``; empty when the file is not a mapping). ``what`` (``"config file"``) and ``flag``
    (``--config``) name the file in errors. Raises UserError when the file cannot be read, is not valid
    YAML, or gives a key twice in one mapping."""
    try:
        text = read_text(path, what)
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}; check the path given to {flag}") from e
    loader = _StrictLoader(text)
    loader.where = f"{what} {path}"
    if same_key is not None:
        loader.same_key = same_key
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise UserError(f"{what} {path} is not valid YAML{_where(e)}; fix the syntax there") from e
    finally:
        loader.dispose()
    lines: dict[Any, int] = {}
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for key_node, _ in node.value:
            if key_node.tag != MERGE_TAG:
                key = (same_key or (lambda k: k))(loader.construct_object(key_node, deep=True))
                lines.setdefault(key, key_node.start_mark.line + 1)
    return data, lines
