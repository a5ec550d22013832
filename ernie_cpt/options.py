"""Command-line options built from dataclasses, with YAML config files underneath.

Every option is a dataclass field with a ``help`` text, so ``--help``, the config file and
the code share one source of truth. Values are resolved as: field default < YAML config
file (``--config``) < flags given on the command line.

Every numeric option declares its valid values (``option(..., valid=Range(...))``), shown in
``--help`` and checked when the options are resolved, from flags and config files alike: a
value outside is a one-line :class:`~ernie_cpt.errors.ConfigError` naming the option, its range and the value.
A list option takes its items space-separated (``--tasks a b``), comma-separated
(``--tasks a,b``) or both; in a config file, as a YAML list or a comma-separated string.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from ernie_cpt.errors import ConfigError, UserError
from ernie_cpt.messages import describe
from ernie_cpt.yaml_files import read_yaml

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of a numeric option: from ``low`` to ``high`` (either may be None: no
    bound; ``low_open``/``high_open`` exclude the bound itself), or one of ``also`` (special values
    such as 0 = off). NaN and infinities are never valid."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    also: tuple[float, ...] = ()

    def __contains__(self, value: float) -> bool:
        if value in self.also:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        """In words, as errors and --help show it: "at least 1", "above 0 and below 1", "0 or at least 8"."""
        low = None if self.low is None else f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
        high = None if self.high is None else f"{'below' if self.high_open else 'at most'} {_number(self.high)}"
        if self.low is not None and self.high is not None and not self.low_open and not self.high_open:
            interval = f"between {_number(self.low)} and {_number(self.high)}"
        else:
            interval = " and ".join(part for part in (low, high) if part) or "a finite number"
        return " or ".join([*(_number(v) for v in self.also), interval])


def _number(value: float) -> str:
    """``1000000`` -> ``1,000,000``; ``0.5`` -> ``0.5``."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


MAX_SEED = 2**32 - 1  # numpy's SeedSequence takes non-negative seeds; torch's manual_seed up to 2**64 - 1
SEED_RANGE = Range(0, MAX_SEED)


def option(default: Any = None, help: str | Callable[[], str] = "", choices: tuple[str, ...] | None = None,
           valid: Range | None = None, repeatable: bool = False, absent: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field carrying its command-line help, and its choices (a string option) or its
    valid range (a numeric one). ``help`` may be a function that writes it when ``--help`` is built
    (a list of registered plugins: the registries are read only then, not when the module loads). A
    ``repeatable`` list option collects every use of its flag (``--task A --task B``) instead of keeping
    the last. ``absent`` is what a run recorded before the option existed ran with, when that differs
    from ``default`` (see :func:`absent_values`)."""
    metadata = {"help": help, "choices": choices, "valid": valid, "repeatable": repeatable, "absent": absent}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


def help_text(field: dataclasses.Field) -> str:
    """A field's help text (written now when its ``help`` is a function)."""
    text = field.metadata.get("help", "")
    return text() if callable(text) else text


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, is_list) of a field annotation such as ``int``, ``str | None`` or ``list[str]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, option_classes: list[type]) -> None:
    """Add one argument group per options dataclass. Defaults are suppressed so that only the
    flags a user typed reach :func:`resolve_options`."""
    for cls in option_classes:
        title = " ".join(cls.__doc__.strip().split("\n\n")[0].split()) if cls.__doc__ else cls.__name__
        group = parser.add_argument_group(title)  # the docstring's first paragraph
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, is_list = _base_type(hints[f.name])
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            valid = f"; valid: {f.metadata['valid']}" if f.metadata.get("valid") else ""
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                      "help": f"{help_text(f)} (default: {default}{valid})"}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:  # the text as typed: resolve_options checks and converts it as it does Python's and YAML's values
                choices = f.metadata.get("choices")
                kwargs["metavar"] = "{" + ",".join(choices) + "}" if choices and not is_list else f.name.upper()
                if is_list and f.metadata.get("repeatable"):
                    kwargs["action"] = "append"  # one value per flag: --task A --task B
                elif is_list:
                    kwargs["nargs"] = "+"
            group.add_argument(_flag(f.name), **kwargs)


def _config_key(key: Any) -> str:
    """A config file's key as the option's name: ``max-steps`` and ``max_steps`` are the same key."""
    return str(key).replace("-", "_")


def _read_config(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The options of a ``--config`` file by name, and the line of each."""
    data, lines = read_yaml(path, "config file", "--config", same_key=_config_key)
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of option names to values, not {type(data).__name__}")
    return {_config_key(k): v for k, v in data.items()}, lines


def split_items(items: list[Any]) -> list[Any]:
    """List items as given on the command line or in a config file, with comma-separated ones
    split: ``["a,b", "c"]`` -> ``["a", "b", "c"]``; blank pieces are dropped."""
    return [piece.strip() for item in items for piece in (item.split(",") if isinstance(item, str) else [item])
            if not isinstance(piece, str) or piece.strip()]


EXPECTED = {bool: "true or false (bool)", int: "a whole number (int)", float: "a number (float)", str: "a string (str)"}
EXPECTED_ITEMS = {bool: "true or false values", int: "whole numbers (int)", float: "numbers (float)",
                  str: "strings (str)"}


def check_type(value: Any, annotation: Any, choices: tuple[str, ...] | None = None, where: str = "value") -> Any:
    """``value`` checked against an option's type annotation (``int``, ``str | None``, ``list[str]``) and its
    ``choices``, and returned as that type; ``where`` names it in errors (``"config key 'x' (line 3 of F)"``,
    ``"--x"``). It converts only what stands for the value itself: a whole float to an int, an int to a
    float, the text of a number (a flag's, or YAML's ``1e-4``, which YAML 1.1 reads as a string) to the
    number, a path object to its string, and a comma-separated string to a list; never a list, a dict,
    a boolean or a number to a string. Used for flags, config files and Python callers alike.

    Raises:
        ConfigError: naming ``where``, the type given and the type expected; a YAML boolean or number where a
            string is expected gets the hint to quote it (``language: [en, no]`` reads ``no`` as false).
    """
    kind, is_list = _base_type(annotation)
    if value is None:
        if type(None) in typing.get_args(annotation):  # `X | None`: null means unset
            return None
        raise ConfigError(f"{where} has no value; give it one or delete the line")
    if not is_list:
        return _check_scalar(value, kind, choices, where)
    if isinstance(value, str):
        value = split_items([value])
    elif not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of {EXPECTED_ITEMS.get(kind, kind.__name__)}, got "
                        f"{_given(value)}")
    return [_check_scalar(item, kind, choices, f"{where} item {i + 1}") for i, item in enumerate(value)]


def _given(value: Any) -> str:
    """The value a user gave, in words and as written: ``a list of strings (['runs/x'])``."""
    if isinstance(value, str):
        return f"a string ({value!r})"
    return f"{describe(value)} ({value!r})" if isinstance(value, (list, dict, tuple)) else describe(value)


def _check_scalar(value: Any, kind: type, choices: tuple[str, ...] | None, where: str) -> Any:
    if value is None:
        raise ConfigError(f"{where} has no value; give it one or delete it")
    expected = f"one of {', '.join(choices)}" if choices else EXPECTED.get(kind, kind.__name__)
    wrong = f"{where} must be {expected}, got {_given(value)}"
    if isinstance(value, (list, tuple, dict)):
        raise ConfigError(f"{wrong}; give one value{', not a list' if not isinstance(value, dict) else ''}")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(wrong)
        return value
    if kind in (int, float):
        return _check_number(value, kind, wrong)
    if kind is str:
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if isinstance(value, bool):
            raise ConfigError(f"{wrong}; YAML reads an unquoted yes, no, on, off, true or false as a boolean: quote "
                            f"it, e.g. '{'yes' if value else 'no'}'")
        if isinstance(value, (int, float)):
            raise ConfigError(f"{wrong}; YAML reads an unquoted number as a number (007 as 7): quote it as you mean "
                            f"it, e.g. '{value}'")
    if not isinstance(value, kind):
        raise ConfigError(wrong)
    if choices and value not in choices:
        raise ConfigError(wrong)
    return value


def _check_number(value: Any, kind: type, wrong: str) -> int | float:
    """An int or float option's value: a number of that kind, or the text of one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(wrong)
    if isinstance(value, str):
        try:  # the text of a whole number in any notation (YAML 1.1 reads 1e3 as a string) is that int
            value = int(value) if kind is int and value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError as e:
            raise ConfigError(wrong) from e
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(wrong)
        return int(value)
    return kind(value)


def check_value(field: dataclasses.Field, value: Any, where: str | None = None) -> None:
    """Raise a ConfigError when ``value`` (a list's every item) is outside the field's declared range."""
    valid = field.metadata.get("valid")
    if valid is None or value is None:
        return
    for item in value if isinstance(value, list) else [value]:
        if item not in valid:
            raise ConfigError(f"{where or _flag(field.name)} must be {valid}, got {item!r}")


def check_ranges(instance: Any) -> None:
    """Check every field of an options instance against its declared range (see :class:`Range`)."""
    for f in dataclasses.fields(instance):
        check_value(f, getattr(instance, f.name))


def option_fields(option_classes: list[type]) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every field of ``option_classes`` by name, with its resolved type annotation."""
    fields_by_name = {}
    for cls in option_classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            fields_by_name[f.name] = (f, hints[f.name])
    return fields_by_name


def config_values(path: str, fields_by_name: dict[str, tuple[dataclasses.Field, Any]]) -> dict[str, Any]:
    """The options of the YAML config file ``path``, each checked against its field (type, choices,
    range); an unknown key, a duplicate key or a wrong value is a ConfigError naming its line."""
    values, lines = _read_config(path)
    for key in values:
        if key not in fields_by_name:
            close = difflib.get_close_matches(key, list(fields_by_name), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; see --help for the options"
            raise ConfigError(f"unknown key '{key}' in config file {path}{hint}")
    for key, value in values.items():
        f, annotation = fields_by_name[key]
        values[key] = check_type(value, annotation, f.metadata.get("choices"),
                                 f"config key '{key}' (line {lines.get(key, '?')} of {path})")
        check_value(f, values[key], f"config key '{key}' ({_flag(key)})")
    return values


def resolve_options(args: argparse.Namespace, option_classes: list[type]) -> dict[type, Any]:
    """Instances of ``option_classes`` from defaults, the ``--config`` file, then the CLI flags."""
    fields_by_name = option_fields(option_classes)
    config_path = getattr(args, "config", None)
    values = config_values(config_path, fields_by_name) if config_path else {}
    for key, value in vars(args).items():
        if key in fields_by_name:
            f, annotation = fields_by_name[key]
            values[key] = check_type(split_items(value) if isinstance(value, list) else value, annotation,
                                     f.metadata.get("choices"), _flag(key))
            check_value(f, values[key])
    resolved = {}
    for cls in option_classes:
        names = {f.name for f in dataclasses.fields(cls)}
        resolved[cls] = cls(**{k: v for k, v in values.items() if k in names})
    return resolved


def absent_values(*instances: Any) -> dict[str, Any]:
    """For every field of the given option instances, the value a run whose recorded options lack it
    ran with (it was recorded before the option existed): the field's ``absent``, else its default."""
    values: dict[str, Any] = {}
    for instance in instances:
        for f in dataclasses.fields(instance):
            absent = f.metadata.get("absent", dataclasses.MISSING)
            if absent is dataclasses.MISSING:
                factory = f.default_factory  # MISSING when the field has none
                absent = factory() if callable(factory) else f.default
            values[f.name] = absent
    return values


def to_dict(*instances: Any) -> dict[str, Any]:
    """All fields of the given option instances as one flat, JSON-friendly dict."""
    merged: dict[str, Any] = {}
    for instance in instances:
        merged.update(dataclasses.asdict(instance))
    return merged


def groups_from_values(option_classes: list[type], values: dict[str, Any]) -> dict[type, Any]:
    """Instances of ``option_classes`` from flat option names (``learning_rate=1e-3``), as a Python caller
    gives them: every value checked as a flag's would be (type, choices, range), each group's own checks
    run, and an unknown name refused with the closest one suggested. Raises ConfigError naming the option,
    the value and what is allowed."""
    fields_by_name = option_fields(option_classes)
    checked = {}
    for key, value in values.items():
        if key not in fields_by_name:
            close = difflib.get_close_matches(key, list(fields_by_name), n=1)
            raise ConfigError(f"unknown option '{key}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        f, annotation = fields_by_name[key]
        checked[key] = check_type(value, annotation, f.metadata.get("choices"), key)
        check_value(f, checked[key], key)
    try:
        return {cls: cls(**{f.name: checked[f.name] for f in dataclasses.fields(cls) if f.name in checked})
                for cls in option_classes}
    except ConfigError:
        raise
    except UserError as e:  # a group's check across its fields
        raise ConfigError(str(e)) from e
