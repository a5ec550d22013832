"""The options of each command, and the option groups each command reads.

Every group is a dataclass of ``option(default, help)`` fields (``ernie_cpt.options``). The
framework's groups live in modules that load neither torch, transformers, datasets nor spaCy; each
plugin's own group (a task's, an architecture's, a weighting's, a curriculum's) is declared next to
its code, and the groups of the registered plugins are gathered from the registries here: the
training commands' groups therefore import the architectures and weightings (torch), ``plan``'s and
``inspect-task``'s only the light curricula and tasks. Flags and config keys stay flat (one
namespace): a third-party plugin whose option repeats another's flag is left out with a warning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ernie_cpt import plugins
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions, TokenizerOptions
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.options import ArchitectureOptions, ModelOptions
from ernie_cpt.options import SEED_RANGE, Range, option
from ernie_cpt.registry import Registry
from ernie_cpt.training.options import SCORE_METRICS, EvaluationOptions, TrainingOptions
from ernie_cpt.weighting.options import WeightingOptions
from pretasks import TASKS
from pretasks.base import LABEL_SAMPLE, SEQ_LENGTH_HELP, SEQ_LENGTH_RANGE
from schedules import CURRICULA, ScheduleOptions, uses_budget
from schedules.sampling import SAMPLERS
from schedules.stage import ALLOCATIONS

# compare's curricula when --schedules is not given
DEFAULT_SCHEDULES = ["continual", "joint", "sequential", "pairwise"]


def _tasks_help() -> str:
    return (f"Pre-training tasks, in curriculum order: {TASKS.listing()}. A task the corpus cannot give examples "
            f"for is skipped with a warning")


def _compared_schedules_help() -> str:
    names = ", ".join(name for name in CURRICULA if uses_budget(name))
    return (f"Curricula to compare, comma- or space-separated: {names}; a name followed by +replay (e.g. "
            f"continual+replay) runs that curriculum with --replay. Unset: {', '.join(DEFAULT_SCHEDULES)}; with "
            f"--architectures, the one curriculum to compare them at, {ScheduleOptions().schedule} if unset")


def _compared_architectures_help() -> str:
    from ernie_cpt.modeling.architectures import ARCHITECTURES

    return (f"Sharing architectures to compare at one curriculum, comma- or space-separated "
            f"({', '.join(ARCHITECTURES)}; see --architecture), or all: every registered one, a plugin's included "
            f"(all in a config file, architectures='all' in Python); the report adds each one's parameters and "
            f"tokens/s. Unset: compare curricula, each with --architecture")


@dataclass
class RunOptions:
    """Run: what to train and where"""

    output_dir: str | None = option(None, "Run directory for checkpoints, logs and the tokenizer (required)")
    tasks: list[str] = option(["knowledge_masking"], _tasks_help)
    max_seq_length: int = option(128, SEQ_LENGTH_HELP, valid=SEQ_LENGTH_RANGE)
    resume: bool = option(False, "Continue the run in --output-dir from its latest checkpoint")
    resume_from_checkpoint: str | None = option(None, "Continue the run in --output-dir from this checkpoint of it "
                                                "(RUN/checkpoints/step-N, or step-N) instead of the latest; "
                                                "implies --resume")
    overwrite: bool = option(False, "Delete an existing run in --output-dir and start over")
    allow_changed_world_size: bool = option(False, "With --resume: continue a run with another number of "
                                            "processes (torchrun) than it was trained by. Its losses then differ "
                                            "from an uninterrupted run (dropout masks are drawn per process); "
                                            "without it such a resume is refused")


@dataclass
class InspectOptions:
    """Inspection"""

    num_examples: int = option(5, "How many decoded examples to print", valid=Range(0, LABEL_SAMPLE))
    seed: int = option(42, "Seed of the examples' random choices (masks, shuffles, partners)", valid=SEED_RANGE)
    max_seq_length: int = option(128, SEQ_LENGTH_HELP, valid=SEQ_LENGTH_RANGE)


@dataclass
class FinetuneOptions:
    """Fine-tuning: labelled data, seeds, validation and optimisation"""

    train: str | None = option(None, "Labelled training file: .jsonl, .csv or .parquet (required without --task); "
                               "the validation split is carved from it")
    test: str | None = option(None, "Labelled test file, same format and fields (required without --task); only "
                              "scored, never used to choose anything")
    text_field: str = option("text", "Field holding the text")
    text_pair_field: str | None = option(None, "Field holding a second text, for sentence-pair tasks")
    label_field: str = option("label", "Field holding the label: strings or integers (class ids follow the "
                              "sorted training labels)")
    seeds: list[int] = option([42], "Fine-tune once per seed (classifier initialisation, dropout, data order) and "
                              "report mean ± sample std over them", valid=SEED_RANGE)
    epochs: int = option(3, "Passes over the training set; validation at the end of each", valid=Range(1, 1000))
    max_steps: int = option(-1, "Optimizer steps in total, overriding --epochs as in TrainingArguments.max_steps "
                            "(-1 = use --epochs); the last epoch may be partial", valid=Range(1, also=(-1,)))
    learning_rate: list[float] = option([1e-4, 3e-4, 1e-3], "Peak learning rate(s) of AdamW (linear warm-up over "
                                        "the first tenth of the steps, then linear decay). With several, every seed "
                                        "trains with each and keeps the one with the best validation accuracy "
                                        "(ties: the first). --task takes exactly one", valid=Range(0, 1, low_open=True))
    validation_fraction: float = option(0.1, "Fraction of the training file held out for validation, stratified by "
                                        "label: chooses the epoch and learning rate by accuracy. 0 = no validation "
                                        "(one learning rate, the last epoch)", valid=Range(0, 0.5))
    validation_seed: int = option(0, "Seed of the validation split, the same for every --seeds value so that "
                                  "seeds are compared on the same data", valid=SEED_RANGE)
    batch_size: int = option(32, "Examples per batch", valid=Range(1))
    max_seq_length: int = option(128, SEQ_LENGTH_HELP + " (longer ones are cut)", valid=SEQ_LENGTH_RANGE)
    output_dir: str | None = option(None, "Save the fine-tuned model here (save_pretrained: for hard sharing "
                                    "AutoModelForSequenceClassification loads it, for a routed architecture "
                                    "ArchitectureForSequenceClassification.from_pretrained; id2label from the "
                                    "labels), its tokenizer and metrics.json. With several seeds, the model of the "
                                    "seed with the best validation accuracy")
    overwrite: bool = option(False, "Replace a non-empty --output-dir (with --task: --multitask-dir)")
    output_json: str | None = option(None, "Also write the results (with --task: the report) to this JSON file")
    device: str = option("auto", "cpu, cuda, cuda:N or auto (CUDA when available)")
    num_threads: int = option(0, "Torch threads; 0 = the CPUs this process may use (affinity and cgroup quota)",
                              valid=Range(0, 1024))


@dataclass
class ExportOptions:
    """Export: which checkpoint, and the model card"""

    checkpoint: str | None = option(None, "Export this checkpoint of the run (step-N, or a folder of "
                                    "RUN/checkpoints) instead of the latest")
    stage: int | None = option(None, "Export the model as it was at the end of stage K (1 = the first): the "
                               "checkpoint written then, which --save-total-limit never removes", valid=Range(1))
    license: str | None = option(None, "License of the model, for the model card's metadata: a Hub license id "
                                 "(e.g. apache-2.0, mit, cc-by-4.0), the one your corpus and any model you started "
                                 "from allow. Unset: the card names no license")
    language: list[str] = option(["en"], "Language(s) of the corpus, for the model card's metadata")


_FINETUNE = FinetuneOptions()
_FINETUNE_RANGES = {f.name: f.metadata["valid"] for f in dataclasses.fields(FinetuneOptions)}


@dataclass
class CompareOptions:
    """Compare: curricula or architectures, seeds and the downstream set"""

    output_dir: str | None = option(None, "Folder for the runs (DIR/runs/<variant>-seed<k>, or "
                                    "<architecture>-<schedule>-seed<k>) and the report (DIR/report) (required)")
    tasks: list[str] = option([], "Pre-training tasks, at least 2, in curriculum order (required)")
    max_seq_length: int = option(RunOptions().max_seq_length, SEQ_LENGTH_HELP, valid=SEQ_LENGTH_RANGE)
    schedules: list[str] | None = option(None, _compared_schedules_help)
    architectures: list[str] | None = option(None, _compared_architectures_help)
    seeds: int = option(1, "Number of seeds: every curriculum and baseline runs with --seed, --seed + 1, ...; the "
                        "report gives means with 95%% intervals over them and compares curricula paired by seed",
                        valid=Range(1, 1000))
    metric: str = option("accuracy", "Score of the accuracy matrix, forgetting and BWT", choices=tuple(SCORE_METRICS))
    forward_transfer: bool = option(True, "Train each task alone from the same start (single-<task>-seed<k>), the "
                                    "reference of forward transfer (FWT); --no-forward-transfer leaves those runs "
                                    "out (a quarter of the pre-training of joint and sequential) and FWT unmeasured")
    probes: bool = option(False, "Also score the linear probes on the held-out documents when a downstream set is "
                          "given (without one they always run: they are then the transfer score)")
    downstream_train: str | None = option(None, "Labelled training file (.jsonl/.csv/.parquet) to fine-tune each "
                                          "curriculum's encoder on; needs --downstream-test")
    downstream_test: str | None = option(None, "Labelled test file of the downstream task")
    downstream_text_field: str = option(_FINETUNE.text_field, "Field holding the downstream text")
    downstream_text_pair_field: str | None = option(None, "Field holding a second text, for a sentence-pair task")
    downstream_label_field: str = option(_FINETUNE.label_field, "Field holding the downstream label")
    downstream_epochs: int = option(_FINETUNE.epochs, "Fine-tuning passes over the downstream training set",
                                    valid=_FINETUNE_RANGES["epochs"])
    downstream_learning_rate: list[float] = option(_FINETUNE.learning_rate, "Peak learning rate(s) of the "
                                                   "fine-tuning; several are chosen among on a validation split "
                                                   "of the training file (see finetune --learning-rate)",
                                                   valid=_FINETUNE_RANGES["learning_rate"])
    downstream_batch_size: int = option(_FINETUNE.batch_size, "Examples per fine-tuning batch",
                                        valid=_FINETUNE_RANGES["batch_size"])
    allow_changed_world_size: bool = option(False, "Continue the unfinished runs of an earlier call with another "
                                            "number of processes (torchrun) than they were trained by; their "
                                            "losses then differ from uninterrupted runs. Without it such a "
                                            "resume is refused")


def plugin_option_classes(registry: Registry[Any], taken: list[type]) -> list[type]:
    """The option groups of ``registry``'s plugins, each once, in registration order. A third-party
    plugin whose option has the name of one of ``taken`` (or of an earlier plugin's) is left out with a
    warning (:func:`ernie_cpt.plugins.disable`); a built-in one raises ValueError (a bug of ours)."""
    owners: dict[str, type] = {}
    for group in taken:
        owners.update({f.name: group for f in dataclasses.fields(group) if f.name not in owners})
    found: list[type] = []
    for name in registry.names():
        own = registry.options_class(name) if name in registry else None  # gone: its plugin was left out
        if own is None or own in found or own in taken:
            continue
        clash = next((f.name for f in dataclasses.fields(own) if f.name in owners), None)
        origin = registry.origin(name)
        if clash is not None and origin is not None:
            flag = "--" + clash.replace("_", "-")
            plugins.disable(origin, f"its {registry.kind} {name} declares {flag}, an option {owners[clash].__name__} "
                                    f"has; rename it")
            continue
        if clash is not None:
            raise ValueError(f"{own.__name__} and {owners[clash].__name__} both declare {clash}")
        owners.update({f.name: own for f in dataclasses.fields(own)})
        found.append(own)
    return found


def task_option_classes() -> list[type]:
    """The options group of every registered pre-task, in registration order."""
    return plugin_option_classes(TASKS, framework_option_classes())


def architecture_option_classes() -> list[type]:
    """ArchitectureOptions and every registered architecture's own group (imports the architectures: torch)."""
    from ernie_cpt.modeling.architectures import ARCHITECTURES

    return [ArchitectureOptions, *plugin_option_classes(ARCHITECTURES, framework_option_classes())]


def weighting_option_classes() -> list[type]:
    """WeightingOptions and every registered loss weighting's own group (imports the weightings: torch)."""
    from ernie_cpt.weighting import WEIGHTINGS

    return [WeightingOptions, *plugin_option_classes(WEIGHTINGS, framework_option_classes())]


def schedule_option_classes() -> list[type]:
    """ScheduleOptions and every registered curriculum's, stage allocation's and task sampler's own group."""
    return [ScheduleOptions, *(cls for registry in (CURRICULA, ALLOCATIONS, SAMPLERS)
                               for cls in plugin_option_classes(registry, framework_option_classes()))]


def _own_groups(registries: list[Registry[Any]]) -> list[list[type]]:
    """Each registry's plugin groups (:func:`plugin_option_classes`), none repeating a name of the framework's
    or of an earlier one's."""
    taken, groups = framework_option_classes(), []
    for registry in registries:
        groups.append(plugin_option_classes(registry, taken))
        taken += groups[-1]
    return groups


def pretrain_option_classes() -> list[type]:
    """Every option group of ``pretrain``: the framework's, each followed by its registered plugins' own, and
    each registered task's (imports the architectures and weightings: torch)."""
    from ernie_cpt.modeling.architectures import ARCHITECTURES
    from ernie_cpt.weighting import WEIGHTINGS

    while True:  # again when a plugin is left out: it may have brought groups of other kinds
        left_out = len(plugins.disabled())
        architectures, curricula, allocations, samplers, weightings, tasks = _own_groups(
            [ARCHITECTURES, CURRICULA, ALLOCATIONS, SAMPLERS, WEIGHTINGS, TASKS])
        if len(plugins.disabled()) == left_out:
            return [RunOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, ModelOptions, ArchitectureOptions,
                    *architectures, TrainingOptions, ScheduleOptions, *curricula, *allocations, *samplers,
                    WeightingOptions, *weightings, EvaluationOptions, *tasks]


def inspect_option_classes() -> list[type]:
    return [InspectOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, *task_option_classes()]


def compare_option_classes() -> list[type]:
    """CompareOptions and every option group of pretrain but RunOptions (whose output_dir, tasks
    and max_seq_length CompareOptions has; resume and overwrite compare decides per run)."""
    return [CompareOptions, *(cls for cls in pretrain_option_classes() if cls is not RunOptions)]


MULTITASK_KINDS = ("classification", "pair_classification", "regression", "ranking")


@dataclass
class MultiTaskFinetuneOptions:
    """Multi-task fine-tuning (MT-DNN) with --task; of the options above, --seeds, --epochs, --learning-rate
    (one), --batch-size, --max-seq-length, --overwrite, --output-json, --device and --num-threads apply too"""

    task: list[str] = option([], f"A labelled set as NAME:KIND:TRAIN:TEST, KIND one of {', '.join(MULTITASK_KINDS)}; "
                             f"repeat --task (or list them under 'task:' in --config) to fine-tune them together, "
                             f"MT-DNN style, instead of --train/--test", repeatable=True)
    multitask_dir: str | None = option(None, "Folder for the runs (DIR/runs/<variant>-seed<k>) and the report "
                                       "(DIR/report.json, DIR/report.md) of --task (required with --task)")
    then_single_task: bool = option(False, "MT-DNN's second stage: after multi-task fine-tuning, fine-tune each set "
                                    "alone for --single-task-epochs, starting from the multi-task model")
    single_task_epochs: int = option(1, "Passes over a set's training file in the --then-single-task stage",
                                     valid=Range(1, 1000))
    multitask_mixing: str = option("sample", "sample: one set per mini-batch, drawn in proportion to the sets' sizes "
                                   "(MT-DNN); all: a batch of every set with steps left in each step, the losses "
                                   "combined by --loss-weighting", choices=("sample", "all"))
    save_steps: int = option(500, "Checkpoint every N steps of each run (and at its end), for --resume",
                             valid=Range(1))
    resume: bool = option(False, "Continue the runs in --multitask-dir: unfinished ones from their latest "
                          "checkpoint, finished ones are scored again from their last")
    allow_changed_world_size: bool = option(False, "With --resume: continue runs with another number of processes "
                                            "(torchrun) than they were trained by; their losses then differ from "
                                            "uninterrupted runs. Without it such a resume is refused")


# The options of one mode only: a value other than the default in the other mode is an error.
SINGLE_SET_ONLY = ("train", "test", "text_field", "text_pair_field", "label_field", "max_steps",
                   "validation_fraction", "validation_seed", "output_dir")


def _changed(instance: Any) -> list[str]:
    """The fields of an options instance that differ from their defaults."""
    default = type(instance)()
    return [f.name for f in dataclasses.fields(instance) if getattr(instance, f.name) != getattr(default, f.name)]


def check_finetune_mode(single: FinetuneOptions, multi: MultiTaskFinetuneOptions,
                        weighting: Mapping[type, Any]) -> None:
    """Refuse an option that the chosen mode (``--task``: several sets; otherwise ``--train``/``--test``)
    would ignore; raises UserError naming it and the mode it belongs to. ``weighting``: the loss
    weighting's option groups by class (``WeightingOptions`` and the weightings' own)."""
    seam = weighting.get(WeightingOptions) or WeightingOptions()
    if multi.task:
        given = [name for name in SINGLE_SET_ONLY if getattr(single, name) != getattr(_FINETUNE, name)]
        where = "a single set (--train/--test)"
    else:
        given = [name for group in (multi, *weighting.values()) for name in _changed(group)]
        where = "multi-task fine-tuning (--task)"
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise UserError(f"{flags} {'applies' if len(given) == 1 else 'apply'} only to {where}; remove "
                        f"{'it' if len(given) == 1 else 'them'}, or use {where.split('(')[1].rstrip(')')}")
    if multi.task and multi.multitask_mixing != "all" and seam.loss_weighting != WeightingOptions().loss_weighting:
        raise UserError(f"--loss-weighting {seam.loss_weighting} combines the sets' losses only with "
                        f"--multitask-mixing all (with sample, each batch holds one set); add it, or remove "
                        f"--loss-weighting")


def finetune_option_classes() -> list[type]:
    """finetune's option groups: one set (FinetuneOptions), several (MultiTaskFinetuneOptions, with a loss
    weighting and its own options for --multitask-mixing all)."""
    return [FinetuneOptions, MultiTaskFinetuneOptions, *weighting_option_classes()]



def framework_option_classes() -> list[type]:
    """Every framework group of every command: a plugin's option may have none of their names."""
    return [RunOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, ModelOptions, ArchitectureOptions,
            TrainingOptions, ScheduleOptions, WeightingOptions, EvaluationOptions, InspectOptions, FinetuneOptions,
            ExportOptions, CompareOptions, MultiTaskFinetuneOptions]
