"""``--help`` a first-time user can read: a short usage block naming only real options, the options grouped
by what they configure, the choices of an option where the option is (issue 27)."""

from __future__ import annotations

import argparse
import re

import pytest

from ernie_cpt.cli import COMMANDS, USAGE, build_parser
from pretasks import TASKS


def _command_parser(name: str) -> argparse.ArgumentParser:
    parser = build_parser(name)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_usage_block_is_short_and_names_only_options_the_command_has(name):
    parser = _command_parser(name)
    usage = parser.format_usage()

    assert usage.startswith(f"usage: ernie-cpt {name} ") and usage.rstrip().endswith("[options]")
    assert len(usage.splitlines()) <= 4 and max(len(line) for line in usage.splitlines()) <= 90
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert set(re.findall(r"(?<![\w-])-{1,2}[a-z][\w-]*", USAGE[name])) <= flags
    positionals = [a.metavar for a in parser._actions if not a.option_strings]
    assert USAGE[name].split()[:len(positionals)] == positionals


def test_pretrain_help_groups_the_options_and_lists_the_task_names():
    text = _command_parser("pretrain").format_help()
    titles = re.findall(r"^(\S[^\n]*):$", text, re.MULTILINE)

    assert len(text.split("\n\n", 1)[0].splitlines()) <= 4  # was 82 lines of every flag
    assert titles[:4] == ["options", "Run: what to train and where", "Corpus: where the text comes from",
                          "Annotation: the spaCy pass, cached per corpus"]
    tasks_help = text[text.index("  --tasks "):text.index("  --max-seq-length")]
    assert all(name in " ".join(tasks_help.split()) for name in TASKS.names())


def test_compare_help_leaves_out_the_schedule_file_it_refuses():
    assert "--schedule-file" in _command_parser("pretrain").format_help()
    assert "--schedule-file" not in _command_parser("compare").format_help()
