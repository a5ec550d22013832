"""Every numeric option of every command declares its valid range, and a value just outside it is a
one-line error naming the option, the range and the value, from a flag or a config file alike."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from ernie_cpt.cli import build_parser, main
from ernie_cpt.commands.options import (
    ExportOptions,
    FinetuneOptions,
    compare_option_classes,
    inspect_option_classes,
    pretrain_option_classes,
)
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
from ernie_cpt.errors import UserError
from ernie_cpt.options import Range, _base_type, resolve_options
from schedules import ScheduleOptions

COMMANDS = {
    "prepare": [CorpusOptions, AnnotationOptions],
    "pretrain": pretrain_option_classes(),
    "inspect-task": inspect_option_classes(),
    "plan": [ScheduleOptions],
    "finetune": [FinetuneOptions],
    "compare": compare_option_classes(),
    "export": [ExportOptions],
}
POSITIONAL = {"inspect-task": ["knowledge_masking"], "finetune": ["MODEL"], "export": ["RUN", "OUT"]}


def numeric_fields() -> list[tuple[str, type, dataclasses.Field]]:
    """(command, options class, field) of every int or float option, each field once."""
    found, seen = [], set()
    for command, classes in COMMANDS.items():
        for cls in classes:
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if _base_type(hints[f.name])[0] in (int, float) and (cls, f.name) not in seen:
                    seen.add((cls, f.name))
                    found.append((command, cls, f))
    return found


def outside(valid: Range, kind: type) -> list[float]:
    """The values just outside ``valid``: next to each bound, on the wrong side."""
    values = []
    if valid.low is not None:
        values.append(valid.low if valid.low_open else valid.low - 1 if kind is int else math.nextafter(valid.low,
                                                                                                        -math.inf))
    if valid.high is not None:
        values.append(valid.high if valid.high_open else valid.high + 1 if kind is int else math.nextafter(
            valid.high, math.inf))
    return [kind(v) for v in values if v not in valid.also]


FIELDS = numeric_fields()
CASES = [(command, f.name, value) for command, cls, f in FIELDS
         for value in outside(f.metadata["valid"], _base_type(typing.get_type_hints(cls)[f.name])[0])]


def test_there_are_numeric_options_of_every_command():
    assert {command for command, _, _ in FIELDS} >= {"prepare", "pretrain", "inspect-task", "finetune", "compare"}
    assert len(FIELDS) >= 60


@pytest.mark.parametrize(("command", "cls", "field"), FIELDS, ids=[f"{c}-{f.name}" for c, _, f in FIELDS])
def test_every_numeric_option_declares_its_range_and_its_default_is_inside(command, cls, field):
    valid = field.metadata.get("valid")
    assert isinstance(valid, Range), f"{cls.__name__}.{field.name} declares no valid=Range(...)"
    assert valid.low is not None, f"{cls.__name__}.{field.name}: a numeric option needs a lower bound"
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    for value in default if isinstance(default, list) else [default]:
        assert value is None or value in valid


def resolve(command: str, argv: list[str]):
    args = build_parser().parse_args([command, *POSITIONAL.get(command, []), *argv])
    return resolve_options(args, COMMANDS[command])


@pytest.mark.parametrize(("command", "name", "value"), CASES, ids=[f"{c}-{n}={v}" for c, n, v in CASES])
def test_a_value_just_outside_the_range_names_the_option_the_range_and_the_value(command, name, value):
    flag = "--" + name.replace("_", "-")
    valid = next(f.metadata["valid"] for c, _, f in FIELDS if f.name == name and c == command)

    with pytest.raises(UserError) as error:
        resolve(command, [f"{flag}={value}"])  # "=": argparse would read "-5e-324" as a flag

    assert str(error.value) == f"{flag} must be {valid}, got {value!r}"


def test_a_config_file_value_outside_the_range_is_the_same_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("mask_ratio: 1.5\n", encoding="utf-8")

    with pytest.raises(UserError) as error:
        resolve("pretrain", ["--config", str(config)])

    assert str(error.value) == ("config key 'mask_ratio' (--mask-ratio) must be above 0 and below 1, got 1.5")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_not_a_number_and_infinities_are_refused(value):
    with pytest.raises(UserError, match=f"--learning-rate must be above 0 and at most 1, got {value}"):
        resolve("pretrain", [f"--learning-rate={value}"])


def test_help_shows_the_ranges(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 20000; valid: between 1,000 and 1,000,000)" in help_text
    assert "(default: 0; valid: between 0 and 256)" in help_text


@pytest.mark.parametrize(("argv", "expected"), [
    (["prepare", "--max-chunk-chars", "0"], "--max-chunk-chars must be between 1,000 and 1,000,000, got 0"),
    (["prepare", "--max-chunk-chars", "-100"], "--max-chunk-chars must be between 1,000 and 1,000,000, got -100"),
    (["inspect-task", "knowledge_masking", "--max-seq-length", "2"],
     "--max-seq-length must be between 8 and 8,192, got 2"),
    (["pretrain", "--output-dir", "run", "--mask-ratio", "1.5"], "--mask-ratio must be above 0 and below 1, got 1.5"),
    (["pretrain", "--output-dir", "run", "--mask-ratio", "0"], "--mask-ratio must be above 0 and below 1, got 0.0"),
    (["pretrain", "--output-dir", "run", "--tasks", "sentence_distance", "--max-seq-length", "4"],
     "--max-seq-length must be between 8 and 8,192, got 4"),
    (["pretrain", "--output-dir", "run", "--tasks", "knowledge_masking,ir_relevance", "--max-seq-length", "12"],
     "--max-seq-length 12 is too short for ir_relevance, which needs at least 14 (a query of up to a quarter of "
     "the tokens and a passage of 8 words); raise --max-seq-length or leave out the task"),
    (["inspect-task", "sentence_distance", "--distance-segment-tokens", "64", "--max-seq-length", "128"],
     "--max-seq-length 128 is too short for sentence_distance, which needs at least 131 (two segments of "
     "--distance-segment-tokens 64 and [CLS], [SEP], [SEP], so that a pair is never cut)"),
    (["inspect-task", "token_document_relation", "--tdr-min-words", "20", "--max-seq-length", "16"],
     "--max-seq-length 16 is too short for token_document_relation, which needs at least 22"),
    (["inspect-task", "sentence_reordering", "--reorder-max-segments", "6", "--max-seq-length", "8"],
     "--max-seq-length 8 is too short for sentence_reordering, which needs at least 9"),
    (["pretrain", "--output-dir", "run", "--word-unit-weight", "0", "--phrase-unit-weight", "0",
      "--entity-unit-weight", "0"], "are all 0, so no unit could ever be masked"),
    (["inspect-task", "knowledge_masking", "-n", "5000"], "--num-examples must be between 0 and 2,000, got 5000"),
    (["plan", "--tasks", "knowledge_masking", "--max-steps", "0"], "--max-steps must be at least 1, got 0"),
    (["finetune", "MODEL", "--seeds", "1,-2"], "--seeds must be between 0 and 4,294,967,295, got -2"),
])
def test_the_reported_values_are_one_line_errors(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()

    code = main(argv)

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ernie-cpt: error: "), lines
    assert expected in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["--tasks", "a,b,c"], ["--tasks", "a", "b", "c"], ["--tasks", "a,b", "c"],
                                  ["--tasks", "a,", "b ,c"]])
def test_list_options_take_commas_spaces_or_both(argv):
    assert resolve("pretrain", argv)[pretrain_option_classes()[0]].tasks == ["a", "b", "c"]


def test_list_of_numbers_takes_commas():
    assert resolve("finetune", ["--seeds", "1,2", "3"])[FinetuneOptions].seeds == [1, 2, 3]
