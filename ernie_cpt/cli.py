"""The ``ernie-cpt`` command line: prepare, inspect-task, plan, pretrain, export, finetune, compare.

The parser is built with the options of the one command named (:func:`build_parser`): ``--help``,
``--version``, ``plan`` and the ``--help`` of prepare, inspect-task, plan and export load only option
dataclasses and the light plugins (tasks, curricula), never torch, transformers, datasets or spaCy.
The training commands' options include their architectures' and weightings' own, declared next to
their code, so their parser imports those modules (torch; about 1-2 s on a quiet machine), not
transformers, datasets or spaCy. Each command loads what else it uses when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ernie_cpt import __version__, interrupt, threads
from ernie_cpt.errors import UserError
from ernie_cpt.full_disk import quiet_threads, unnamed_disk_full
from ernie_cpt.interrupt import Interrupted

if TYPE_CHECKING:
    from ernie_cpt.commands.options import RunOptions

DESCRIPTION = """ERNIE 2.0-style continual pre-training on your own text.

  ernie-cpt prepare  --corpus PATH              annotate a corpus with spaCy (cached)
  ernie-cpt inspect-task TASK --corpus PATH     show what a pre-task makes of a corpus
  ernie-cpt plan     --schedule NAME --tasks A B C   print a curriculum's stages, tasks and steps
  ernie-cpt pretrain --corpus PATH --output-dir RUN   pre-train (resumable with --resume)
  ernie-cpt export   RUN OUT                    write a Hugging Face model folder
  ernie-cpt finetune MODEL_DIR --train F --test F   fine-tune and test a classifier, mean ± std over seeds
                    (or --task NAME:KIND:TRAIN:TEST ...: several sets at once, MT-DNN)
  ernie-cpt compare  --corpus PATH --tasks A B --output-dir DIR   run curricula (or --architectures), report
                    forgetting and transfer

Every pretrain option can also come from a YAML file (--config FILE); flags override it."""


def _prepare(args: argparse.Namespace) -> int:
    from ernie_cpt.commands.prepare import prepare
    from ernie_cpt.data.column_stats import total_length
    from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
    from ernie_cpt.data.read_only import saved_folder
    from ernie_cpt.messages import plural
    from ernie_cpt.options import resolve_options

    documents = prepare(resolve_options(args, [CorpusOptions, AnnotationOptions]))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: rank 0 reports
        return 0
    counts = {kind: total_length(documents, f"{kind}_starts")
              for kind in ("paragraph", "sentence", "entity", "noun_chunk")}
    print(f"{plural(len(documents), 'document')}: {plural(counts['paragraph'], 'paragraph')}, "
          f"{plural(counts['sentence'], 'sentence')}, {plural(counts['entity'], 'entity', 'entities')}, "
          f"{plural(counts['noun_chunk'], 'noun chunk')}")
    print(f"Annotations: {saved_folder(documents)}")
    return 0


def _continue_advice(stopped: Interrupted, run: RunOptions) -> str | None:
    """How to continue a pretrain run that was interrupted: with --resume where it has a checkpoint (naming it when
    the run stopped at once, a second signal, say, and not at a checkpoint of its own)."""
    from ernie_cpt.training.checkpoint import checkpoints, latest_name

    if not run.output_dir or not checkpoints(Path(run.output_dir)):
        if stopped.advice:
            return stopped.advice
        # a new run is removed when it stops before its first checkpoint (and so is one --resume started over)
        return f"nothing was saved: run the same command again{' without --resume' if run.resume else ''}"
    how = ("continue with the same command, --resume in place of --resume-from-checkpoint"  # it would go back there
           if run.resume_from_checkpoint else "continue with the same command and --resume")
    if stopped.step is None:
        last = latest_name(Path(run.output_dir)) or checkpoints(Path(run.output_dir))[-1].name
        return f"the last checkpoint, {last}, is intact: {how}"
    return how


def _pretrain(args: argparse.Namespace) -> int:
    from ernie_cpt import distributed
    from ernie_cpt.commands.options import pretrain_option_classes
    from ernie_cpt.commands.pretrain import pretrain
    from ernie_cpt.config import PretrainConfig
    from ernie_cpt.options import resolve_options

    config = PretrainConfig.from_groups(resolve_options(args, pretrain_option_classes()))  # each flag checked
    try:
        run_dir = pretrain(config)
    except Interrupted as e:
        e.advice = _continue_advice(e, config)
        raise
    if distributed.is_main():
        print(f"Run directory: {run_dir}  (export it with: ernie-cpt export {run_dir} OUT_DIR)")
    return 0


def _inspect_task(args: argparse.Namespace) -> int:
    from ernie_cpt.commands.inspect_task import inspect_task
    from ernie_cpt.commands.options import inspect_option_classes
    from ernie_cpt.options import resolve_options

    print(inspect_task(args.task, resolve_options(args, inspect_option_classes())).report())
    return 0


def _plan(args: argparse.Namespace) -> int:
    from ernie_cpt.commands.options import RunOptions, pretrain_option_classes, schedule_option_classes
    from ernie_cpt.commands.plan import plan
    from ernie_cpt.options import resolve_options
    from ernie_cpt.training.options import TrainingOptions

    # a pretrain --config gives the tasks, budget and schedule (its other keys are pretrain's); flags override it
    classes = pretrain_option_classes() if args.config else [RunOptions, TrainingOptions, *schedule_option_classes()]
    options = resolve_options(args, classes)
    print(plan(options, options[RunOptions].tasks, options[TrainingOptions].max_steps))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ernie_cpt.commands.export import export
    from ernie_cpt.commands.options import ExportOptions
    from ernie_cpt.options import resolve_options

    options = resolve_options(args, [ExportOptions])[ExportOptions]
    out = export(args.run_dir, args.out_dir, options)
    print(f"Exported model: {Path(out).resolve()}" + ("" if options.license else " (its model card names no license: "
                                                      "export with --license ID, e.g. apache-2.0, to give one)"))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from ernie_cpt.commands.finetune import finetune, format_results, saved_model_line
    from ernie_cpt.commands.options import (
        FinetuneOptions,
        MultiTaskFinetuneOptions,
        check_finetune_mode,
        finetune_option_classes,
    )
    from ernie_cpt.options import resolve_options

    resolved = resolve_options(args, finetune_option_classes())
    single, multi = resolved.pop(FinetuneOptions), resolved.pop(MultiTaskFinetuneOptions)
    check_finetune_mode(single, multi, resolved)  # what is left: the loss weighting's groups
    if multi.task:  # several labelled sets: MT-DNN multi-task fine-tuning
        from ernie_cpt.commands.finetune_multitask import finetune_multitask
        from ernie_cpt.evaluation.multitask_report import markdown

        print(markdown(finetune_multitask(args.model_dir, single, multi, resolved)))
        out = Path(multi.multitask_dir or "").resolve()
        print(f"Report: {out / 'report.md'} (and report.json); each run's model: {out / 'runs'}/<variant>-seed<k> "
              f"(export it with: ernie-cpt export RUN OUT_DIR)")
        return 0
    results = finetune(args.model_dir, single)
    print(format_results(results))
    print(saved_model_line(results, single.output_dir))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ernie_cpt.commands.compare import compare
    from ernie_cpt.commands.options import compare_option_classes
    from ernie_cpt.options import resolve_options

    print(f"Report: {compare(resolve_options(args, compare_option_classes()))}")
    return 0


PREPARE = ("Load and annotate a corpus (cached; reused by pretrain)",
           "Load a corpus and annotate it with spaCy: paragraphs, sentences, entities, noun chunks. The result is "
           "cached and reused by pretrain. Under torchrun (several machines: --nnodes) every process parses a share "
           "of the paragraphs into the shared --cache-dir.")
PRETRAIN = ("Pre-train an ERNIE encoder on a corpus",
            "Pre-train an ERNIE encoder (ErnieModel with the ERNIE 2.0 task embedding) on a corpus with the chosen "
            "pre-training tasks.")
INSPECT = ("Show what a pre-task generator makes of a corpus",
           "Print decoded examples of a pre-task (tokens with their labels, or segments with the class name) and "
           "statistics: examples per 1,000 words and the label distribution. See what a generator makes before "
           "training on it.")
PLAN = ("Print the stages of a curriculum, with each task's steps",
        "Print a curriculum as a table: one row per stage with the steps of each task and the stage's optimizer "
        "steps, then the totals. Nothing is loaded or trained, so a schedule can be checked before pretrain runs "
        "it with the same flags.")
EXPORT = ("Export a run as a Hugging Face model folder with a model card",
          "Write a checkpoint of a run (the latest, --checkpoint step-N, or the end of --stage K) with "
          "save_pretrained: an ErnieForMaskedLM with the trained knowledge-masking head (pipeline('fill-mask')), "
          "which AutoModel and ErnieForSequenceClassification load too, its tokenizer, the other task heads and "
          "ernie_cpt_model.json (for pretrain --init-from), and a model card (README.md).")
FINETUNE = ("Fine-tune an exported model or a run on a labelled set",
            "Fine-tune MODEL_DIR (any architecture) on a labelled training file (--train/--test), once per seed, "
            "and report accuracy and macro-F1 on the test file (mean ± std over the seeds) next to the majority "
            "class; or, with --task NAME:KIND:TRAIN:TEST repeated, on several labelled sets at once (MT-DNN "
            "multi-task fine-tuning) beside single-task fine-tuning of each.")
COMPARE = ("Run several curricula (or architectures) on one corpus and report which forgets least and transfers best",
           "Pre-train every curriculum of --schedules (or, with --architectures, every sharing architecture at one "
           "curriculum) with the same tasks, per-task budget, data, initialisation and seeds; score forgetting and "
           "transfer, fine-tune each on a downstream set if given, probe it with --probes, and write "
           "DIR/report/report.md with plots. Started again, it skips finished runs.")


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with options (flags override it)")


def _prepare_options(prepare: argparse.ArgumentParser) -> None:
    from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
    from ernie_cpt.options import add_options

    _config_option(prepare)
    prepare.add_argument("--output-dir", dest="cache_dir", default=argparse.SUPPRESS, metavar="DIR",
                         help="Same as --cache-dir: where the annotations are stored")
    add_options(prepare, [CorpusOptions, AnnotationOptions])


def _pretrain_options(pretrain: argparse.ArgumentParser) -> None:
    from ernie_cpt.commands.options import pretrain_option_classes
    from ernie_cpt.options import add_options

    _config_option(pretrain)
    add_options(pretrain, pretrain_option_classes())
    pretrain.add_argument("--weighting", dest="loss_weighting", default=argparse.SUPPRESS, metavar="NAME",
                          help="Same as --loss-weighting")


def _inspect_options(inspect: argparse.ArgumentParser) -> None:
    from ernie_cpt.commands.options import inspect_option_classes
    from ernie_cpt.options import add_options
    from pretasks import TASKS

    inspect.add_argument("task", metavar="TASK", help="A pre-task name: " + ", ".join(sorted(TASKS)))
    _config_option(inspect)
    inspect.add_argument("-n", dest="num_examples", type=int, default=argparse.SUPPRESS, metavar="N",
                         help="Same as --num-examples")
    add_options(inspect, inspect_option_classes())


def _plan_options(plan: argparse.ArgumentParser) -> None:
    from ernie_cpt.commands.options import RunOptions, schedule_option_classes
    from ernie_cpt.options import add_options
    from ernie_cpt.training.options import TrainingOptions
    from pretasks import TASKS

    plan.add_argument("--config", help="A pretrain YAML config: plan its tasks, budget and schedule (flags override "
                      "it; its other keys are checked as pretrain checks them)")
    budget = plan.add_argument_group("Tasks and budget (as for pretrain)")
    budget.add_argument("--tasks", nargs="+", default=argparse.SUPPRESS, metavar="TASK",
                        help=f"Pre-training tasks, in curriculum order: {', '.join(sorted(TASKS))} "
                        f"(default: {' '.join(RunOptions().tasks)})")
    budget.add_argument("--max-steps", default=argparse.SUPPRESS, metavar="MAX_STEPS",
                        help="Steps shared evenly by the tasks when --steps-per-task is not given "
                        f"(default: {TrainingOptions().max_steps})")
    add_options(plan, schedule_option_classes())


def _export_options(export: argparse.ArgumentParser) -> None:
    from ernie_cpt.commands.options import ExportOptions
    from ernie_cpt.options import add_options

    export.add_argument("run_dir", metavar="RUN_DIR", help="The --output-dir of a pretrain run")
    export.add_argument("out_dir", metavar="OUT_DIR", help="New folder for the exported model")
    _config_option(export)
    add_options(export, [ExportOptions])


def _finetune_options(finetune: argparse.ArgumentParser) -> None:
    from ernie_cpt.commands.options import finetune_option_classes
    from ernie_cpt.options import add_options

    finetune.add_argument("model_dir", metavar="MODEL_DIR",
                          help="A folder written by ernie-cpt export, or a pretrain run directory (its latest "
                          "checkpoint is used)")
    _config_option(finetune)
    add_options(finetune, finetune_option_classes())


def _compare_options(compare: argparse.ArgumentParser) -> None:
    from ernie_cpt.commands.options import compare_option_classes
    from ernie_cpt.options import add_options
    from schedules.curricula import own_step_options

    _config_option(compare)
    add_options(compare, compare_option_classes())
    compare.add_argument("--schedule", dest="schedules", nargs="+", default=argparse.SUPPRESS, metavar="SCHEDULES",
                         help="Same as --schedules")
    compare.add_argument("--weighting", dest="loss_weighting", default=argparse.SUPPRESS, metavar="NAME",
                         help="Same as --loss-weighting")
    # compare refuses the options of curricula that set their own steps (--schedule-file), and --help hides them
    hidden = {f.name for _, cls in own_step_options() for f in dataclasses.fields(cls)}
    for action in compare._actions:
        if action.dest in hidden:
            action.help = argparse.SUPPRESS


# command -> its usage line: the arguments a first run needs; --help lists the rest, grouped, below it
USAGE = {
    "prepare": "[--corpus PATH ...] [--cache-dir DIR] [options]",
    "inspect-task": "TASK [--corpus PATH ...] [-n N] [options]",
    "plan": "[--schedule NAME] [--tasks TASK ...] [--max-steps N | --steps-per-task N] [--config FILE] [options]",
    "pretrain": "--output-dir DIR [--corpus PATH ...] [--tasks TASK ...] [--schedule NAME] [--config FILE] [options]",
    "export": "RUN_DIR OUT_DIR [--checkpoint step-N | --stage K] [--license ID] [options]",
    "finetune": "MODEL_DIR (--train FILE --test FILE | --task NAME:KIND:TRAIN:TEST ...) [--output-dir DIR] [options]",
    "compare": "--output-dir DIR --tasks TASK TASK ... [--corpus PATH ...] [--schedules NAME ... | --architectures "
               "NAME ...] [options]",
}

# command -> (help, description, what adds its options, what runs it)
COMMANDS: dict[str, tuple[tuple[str, str], Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int]]] = {
    "prepare": (PREPARE, _prepare_options, _prepare),
    "inspect-task": (INSPECT, _inspect_options, _inspect_task),
    "plan": (PLAN, _plan_options, _plan),
    "pretrain": (PRETRAIN, _pretrain_options, _pretrain),
    "export": (EXPORT, _export_options, _export),
    "finetune": (FINETUNE, _finetune_options, _finetune),
    "compare": (COMPARE, _compare_options, _compare),
}


def _usage(command: str, width: int = 80) -> str:
    """The command's usage line (USAGE), wrapped between its bracketed groups to ``width`` columns."""
    prog, lines = f"ernie-cpt {command}", []
    line = prog
    for group in re.findall(r"\[[^\]]*\]|\([^)]*\)|\S+", USAGE[command]):
        if len("usage: ") + len(line) + 1 + len(group) > width and line.strip():
            lines.append(line)
            line = " " * len(prog)
        line += " " + group
    return "\n       ".join([*lines, line])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: with ``command``, only that command's options are added ("": none, the
    top-level parser), which is all that parsing its arguments needs; the others' option groups would import
    their plugins (the training commands' architectures and weightings load torch), so ``--help`` and
    ``plan`` stay light. None: every command's (for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="ernie-cpt", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks and debug logs")
    parser.add_argument("--verbose", action="store_true", help="Also show the progress bars of the libraries "
                        "(tokenizer training, datasets maps, transformers' Writing model shards), silent by default")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, ((summary, description), add, handler) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=description, usage=_usage(name),
                                  conflict_handler="resolve" if name == "compare" else "error")
        if command is None or command == name:
            add(sub)
        sub.set_defaults(handler=handler, uses_libraries=name != "plan")
    return parser


def _command(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command ``argv`` names (its first word that is no option; the top-level options take no value)
    and the top-level options before it."""
    index = next((i for i, word in enumerate(argv) if not word.startswith("-")), len(argv))
    return (argv[index] if index < len(argv) else None), argv[:index]


def _configure_logging(debug: bool) -> None:
    """Log to stderr; under torchrun, processes other than rank 0 log only warnings, marked with their rank."""
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if debug else logging.INFO if rank == 0 else logging.WARNING
    prefix = "ernie-cpt" if rank == 0 else f"ernie-cpt[{rank}]"
    logging.basicConfig(level=level, format=f"{prefix}: %(message)s", stream=sys.stderr)
    for noisy in ("datasets", "transformers", "torch", "urllib3", "filelock", "fsspec", "httpx"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


def _configure_libraries(debug: bool, verbose: bool) -> None:
    """The libraries log warnings only (transformers errors only) and show no progress bars unless ``verbose``:
    set through their environment variables, so that none of them is loaded here."""
    from ernie_cpt.progress import show_library_progress

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "debug" if debug else "error")  # read when transformers loads
    if "transformers" in sys.modules:
        import transformers

        transformers.utils.logging.set_verbosity(logging.DEBUG if debug else logging.ERROR)
    show_library_progress(verbose)


def main(argv: list[str] | None = None) -> int:
    threads.configure_process()  # before torch loads: OpenMP threads that yield under CPU contention
    argv = sys.argv[1:] if argv is None else list(argv)
    command, top_level = _command(argv)
    _configure_logging("--debug" in top_level)  # before the parser: building it loads the plugins, which may warn
    args = build_parser(command or "").parse_args(argv)
    if not args.debug:
        quiet_threads()
    try:
        if args.uses_libraries:
            _configure_libraries(args.debug, args.verbose)
        with interrupt.handled():  # SIGTERM (Slurm, Kubernetes, torchrun) ends a command as Ctrl-C does
            return args.handler(args)
    except BrokenPipeError:  # `ernie-cpt plan | head -1`: the reader left; say nothing more, as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 141
    except Exception as e:
        error = e if isinstance(e, UserError) else unnamed_disk_full(e)  # a full disk no command named
        if error is None:
            raise
        if args.debug:
            traceback.print_exc()
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process has the error; one prints it
            print(f"ernie-cpt: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"ernie-cpt: {e if isinstance(e, Interrupted) else 'interrupted'}", file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130
    finally:
        # only a command that trained can have joined a process group, through this module; never import it
        # here: a signal that stopped the command in the middle of importing torch leaves torch half-imported
        distributed = sys.modules.get("ernie_cpt.distributed")
        if distributed is not None:
            distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
