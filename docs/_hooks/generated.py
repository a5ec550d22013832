"""MkDocs hook: the reference pages that are generated from the code at build time, so they cannot drift.

A page asks for a generated part with a marker on a line of its own; ``on_page_markdown`` puts the
Markdown in its place when the site is built:

* ``<!-- generated: cli -->``: every option of every command, from the parser ``ernie-cpt`` builds
  (``ernie_cpt.cli.build_parser``), itself built from the option dataclasses: flag, type, default,
  valid values (range or choices) and help, exactly as ``--help`` gives them;
* ``<!-- generated: plugins KIND -->``: every plugin of a registry (tasks, architectures, weightings,
  curricula, samplers, allocations, heads) with its summary, its docstring and the options it reads;
* ``<!-- generated: benchmarks -->``: every ``python -m benchmarks.run --json`` result committed under
  ``docs/results/``, newest first, with its date, command and machine.

The functions are plain (no MkDocs types), so the tests call them directly too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generated: (\w+)(?: (\w+))? -->$", re.MULTILINE)
# The help text add_options (ernie_cpt/options.py) writes for a dataclass field: "HELP (default: X; valid: Y)"
DEFAULT_AND_VALID = re.compile(r"^(?P<help>.*) \(default: (?P<default>.*?)(?:; valid: (?P<valid>[^;]*))?\)$", re.DOTALL)
ROLE = re.compile(r":(?:class|func|mod|meth|attr|data|exc):`~?([^`]+)`")


def cell(text: str) -> str:
    """Text for one cell of a Markdown table: one line, with the characters Markdown would read escaped."""
    text = " ".join(str(text).split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def anchor(command: str, flag: str) -> str:
    """The id of an option's row: ``pretrain-max-steps`` for pretrain's ``--max-steps``."""
    return f"{command}-{flag.lstrip('-')}".replace("_", "-").lower()


# --- the command line -------------------------------------------------------------------------------------


def _help(action: argparse.Action, prog: str) -> tuple[str, str | None, str | None]:
    """(help, default, valid values) of an option: the default and range add_options appends, else
    argparse's own default."""
    text = action.help or ""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        text = text % {**vars(action), "prog": prog}  # argparse's own expansion: %% -> %
    if match := DEFAULT_AND_VALID.match(text):
        default = match["default"]
        return match["help"], None if default == "None" else _portable(default), match["valid"]
    default = None if action.default in (None, argparse.SUPPRESS) or action.default is False else str(action.default)
    return text, default, None


def _portable(default: str) -> str:
    """A default as any reader's machine has it: the cache folder by its rule, not the builder's path."""
    from ernie_cpt.data.options import default_cache_dir

    if default == default_cache_dir():
        return "$ERNIE_CPT_CACHE, else ~/.cache/ernie-cpt"
    return default.replace(str(Path.home()), "~")


def _kind(action: argparse.Action) -> str:
    """What the option takes: a flag, a number, a list, ..."""
    if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        return "flag"
    name = getattr(action.type, "__name__", "str") if action.type else "str"
    if action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction):
        return f"list of {name}" + (" (repeat the flag)" if isinstance(action, argparse._AppendAction) else "")
    return name


def _flags(action: argparse.Action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction):
        return " / ".join(f"`{flag}`" for flag in action.option_strings)
    return ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar or action.dest}`"


def _option_rows(command: str, actions: list[argparse.Action], prog: str) -> list[str]:
    rows = ["| option | takes | default | valid values | description |", "|---|---|---|---|---|"]
    for action in actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        text, default, valid = _help(action, prog)
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            valid = "one of " + ", ".join(f"`{choice}`" for choice in action.choices)
        flag = action.option_strings[0] if action.option_strings else action.dest
        ident = anchor(command, flag)
        shown_default = "required" if not action.option_strings else f"`{cell(default)}`" if default else "-"
        rows.append(f"| <span id=\"{ident}\"></span>{_flags(action)} | {_kind(action)} | {shown_default} | "
                    f"{cell(valid) if valid and not valid.startswith('one of') else valid or '-'} | {cell(text)} |")
    return rows


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The command-line reference: the global options, then per command its description, synopsis and
    one table per option group (the group titles of ``--help``)."""
    if parser is None:
        from ernie_cpt.cli import build_parser

        parser = build_parser()
    lines = ["## Global options", "", f"`{parser.prog} [GLOBAL OPTIONS] COMMAND [OPTIONS]`", ""]
    lines += [*_option_rows("global", [a for a in parser._actions if a.option_strings], parser.prog), ""]
    for name, sub in _subcommands(parser).items():
        positionals = [a for a in sub._actions if not a.option_strings]
        synopsis = " ".join([parser.prog, name, *(str(a.metavar or a.dest.upper()) for a in positionals), "[OPTIONS]"])
        lines += [f"## `{parser.prog} {name}`", "", cell(sub.description or ""), "", f"`{synopsis}`", ""]
        if positionals:
            lines += ["**Arguments**", "", *_option_rows(name, positionals, sub.prog), ""]
        for group in sub._action_groups:
            actions = [a for a in group._group_actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
            if actions:
                title = "Options" if group.title in (None, "options", "optional arguments") else group.title
                lines += [f"**{cell(title)}**", "", *_option_rows(name, actions, sub.prog), ""]
    return "\n".join(lines)


# --- the registries ---------------------------------------------------------------------------------------


def registries() -> dict[str, Any]:
    """Every plugin registry by the name a page asks for it with."""
    from ernie_cpt.modeling.architectures import ARCHITECTURES
    from ernie_cpt.modeling.heads import HEADS
    from ernie_cpt.weighting import WEIGHTINGS
    from pretasks import TASKS
    from schedules import ALLOCATIONS, CURRICULA, SAMPLERS

    return {"tasks": TASKS, "architectures": ARCHITECTURES, "weightings": WEIGHTINGS, "curricula": CURRICULA,
            "samplers": SAMPLERS, "allocations": ALLOCATIONS, "heads": HEADS}


def markdown_doc(doc: str | None) -> str:
    """A docstring as Markdown: dedented, reST roles as code. Indented formulas stay code blocks."""
    return ROLE.sub(r"`\1`", inspect.cleandoc(doc or ""))


def _description(obj: Any) -> str:
    """The plugin's own docstring; for a class without one (a task), its module's: one module per plugin."""
    own = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    return markdown_doc(own or sys.modules[obj.__module__].__doc__)


def _option_names(obj: Any) -> list[str]:
    """The options a plugin reads: its own options dataclass, else the names it declares."""
    options_class = getattr(obj, "options_class", None)
    if options_class is not None and dataclasses.is_dataclass(options_class):
        return [f.name for f in dataclasses.fields(options_class)]
    return list(getattr(obj, "options_used", ()))


def plugin_reference(kind: str) -> str:
    """One section per registered plugin of ``kind``: summary, facts, options (linked to the CLI
    reference's pretrain table) and the full docstring with its paper."""
    registry = registries()[kind]
    lines = []
    for name, obj in registry.items():
        summary = getattr(obj, "summary", None)
        lines += [f"### `{name}`", ""]
        if summary:
            lines += [f"*{cell(summary)}*", ""]
        facts = [f"{label}: `{getattr(obj, attr)}`" for attr, label in (("level", "level"), ("head_name", "head"))
                 if getattr(obj, attr, None)]
        options = [f"[`--{n.replace('_', '-')}`](cli.md#{anchor('pretrain', '--' + n)})" for n in _option_names(obj)]
        if options:
            facts.append("options: " + ", ".join(options))
        if facts:
            lines += ["; ".join(facts), ""]
        lines += [_description(obj), ""]
    return "\n".join(lines)


# --- benchmark results ------------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def benchmark_table(result: dict[str, Any]) -> str:
    """One ``benchmarks.run --json`` result as its header and the table ``benchmarks.run`` prints."""
    gpu = f", GPU {result['gpu']}" if result.get("gpu") else ""
    machine = (f"{result['cpu']}, {result['cores']} cores{gpu}, torch {result['torch']}, Python {result['python']}, "
               f"{result['torch_threads']} torch threads")
    load = result.get("load_average_1min")
    if load:
        machine += f"; load average {load[0]} at the start, {load[1]} at the end"
    lines = [f"### {result['date']}: {result['mode']} run", "",
             f"- **Command:** `{result['command']}`",
             f"- **Machine:** {machine}",
             f"- **Settings:** `{result['model_size']}` model, batch {result['batch']}, device `{result['device']}`; "
             f"{result['minutes']} minutes"]
    lines += [f"- **{key.capitalize()}:** {cell(result[key])}" for key in ("where", "remark", "source")
              if key in result]
    lines += ["", "| measure | ours | baseline | ratio | target | met? |", "|---|---:|---:|---:|---:|:---:|"]
    for row in result["rows"]:
        target = "-" if row["target"] is None else f"{'≥' if row['higher_is_better'] else '≤'} {row['target']:g}x"
        met = {None: "-", True: "yes", False: "**no**"}[row["met"]]
        lines.append(f"| {cell(row['measure'])} | {_number(row['ours'])} {row['unit']} | "
                     f"{_number(row['baseline'])} {row['unit']} | {row['ours'] / row['baseline']:.2f}x | {target} | "
                     f"{met} |")
    notes = [f"- {cell(row['measure'].split(' ', 1)[0])} {cell(row['note'])}" for row in result["rows"] if row["note"]]
    return "\n".join([*lines, "", *notes])


def benchmark_results(folder: Path = ROOT / "docs" / "results") -> str:
    results = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]
    if not results:
        return "No benchmark results are committed yet."
    results.sort(key=lambda result: result["date"], reverse=True)
    return "\n\n".join(benchmark_table(result) for result in results)


# --- the MkDocs hook --------------------------------------------------------------------------------------


def generate(name: str, argument: str | None) -> str:
    if name == "cli":
        return cli_reference()
    if name == "plugins" and argument:
        return plugin_reference(argument)
    if name == "benchmarks":
        return benchmark_results()
    raise ValueError(f"unknown generated part {name!r} {argument or ''}")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return MARKER.sub(lambda match: generate(match[1], match[2]), markdown)
