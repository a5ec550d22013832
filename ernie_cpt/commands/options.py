"""The options of each command, and the option groups each command reads.

Every group is a dataclass of ``option(default, help)`` fields (``ernie_cpt.options``) and lives
in a module that loads neither torch, transformers, datasets nor spaCy, so that ``--help``,
``plan`` and option errors answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ernie_cpt.data.options import AnnotationOptions, CorpusOptions, TokenizerOptions
from ernie_cpt.modeling.options import ArchitectureOptions, ModelOptions
from ernie_cpt.options import option
from ernie_cpt.training.options import SCORE_METRICS, EvaluationOptions, TrainingOptions
from ernie_cpt.weighting.options import WeightingOptions
from pretasks import TASKS
from schedules import CURRICULA, ScheduleOptions

DEFAULT_SCHEDULES = ["continual", "joint", "sequential", "pairwise"]


@dataclass
class RunOptions:
    """Run: what to train and where"""

    output_dir: str | None = option(None, "Run directory for checkpoints, logs and the tokenizer (required)")
    tasks: list[str] = option(["knowledge_masking"], "Pre-training tasks, in curriculum order; a task the corpus "
                              "cannot give examples for is skipped with a warning")
    max_seq_length: int = option(128, "Maximum tokens per example, [CLS] and [SEP] included")
    resume: bool = option(False, "Continue the run in --output-dir from its latest checkpoint")
    resume_from_checkpoint: str | None = option(None, "Continue the run in --output-dir from this checkpoint of it "
                                                "(RUN/checkpoints/step-N, or step-N) instead of the latest; "
                                                "implies --resume")
    overwrite: bool = option(False, "Delete an existing run in --output-dir and start over")


@dataclass
class InspectOptions:
    """Inspection"""

    num_examples: int = option(5, "How many decoded examples to print")
    seed: int = option(42, "Seed of the examples' random choices (masks, shuffles, partners)")
    max_seq_length: int = option(128, "Maximum tokens per example, [CLS] and [SEP] included")


@dataclass
class FinetuneOptions:
    """Fine-tuning: labelled data, seeds, validation and optimisation"""

    train: str | None = option(None, "Labelled training file: .jsonl, .csv or .parquet (required); the validation "
                               "split is carved from it")
    test: str | None = option(None, "Labelled test file, same format and fields (required); only scored, never "
                              "used to choose anything")
    text_field: str = option("text", "Field holding the text")
    text_pair_field: str | None = option(None, "Field holding a second text, for sentence-pair tasks")
    label_field: str = option("label", "Field holding the label: strings or integers (class ids follow the "
                              "sorted training labels)")
    seeds: list[int] = option([42], "Fine-tune once per seed (classifier initialisation, dropout, data order) and "
                              "report mean ± sample std over them")
    epochs: int = option(3, "Passes over the training set, at least 1; validation at the end of each")
    max_steps: int = option(-1, "Optimizer steps in total, overriding --epochs as in TrainingArguments.max_steps "
                            "(-1 = use --epochs; otherwise at least 1); the last epoch may be partial")
    learning_rate: list[float] = option([1e-4, 3e-4, 1e-3], "Peak learning rate(s) of AdamW, each in (0, 1] "
                                        "(linear warm-up over the first tenth of the steps, then linear decay). "
                                        "With several, every seed trains with each and keeps the one with the best "
                                        "validation accuracy (ties: the first)")
    validation_fraction: float = option(0.1, "Fraction of the training file held out for validation, in [0, 0.5], "
                                        "stratified by label: chooses the epoch and learning rate by accuracy. "
                                        "0 = no validation (one learning rate, the last epoch)")
    validation_seed: int = option(0, "Seed of the validation split, the same for every --seeds value so that "
                                  "seeds are compared on the same data")
    batch_size: int = option(32, "Examples per batch, at least 1")
    max_seq_length: int = option(128, "Maximum tokens per example, [CLS] and [SEP] included, from 8 to the model's "
                                 "positions (longer ones are cut)")
    output_dir: str | None = option(None, "Save the fine-tuned model here (save_pretrained: "
                                    "AutoModelForSequenceClassification loads it, id2label from the labels), its "
                                    "tokenizer and metrics.json. With several seeds, the model of the seed with the "
                                    "best validation accuracy")
    overwrite: bool = option(False, "Replace a non-empty --output-dir")
    output_json: str | None = option(None, "Also write the results to this JSON file")
    device: str = option("auto", "cpu, cuda, cuda:N or auto (CUDA when available)")


@dataclass
class ExportOptions:
    """Export: which checkpoint, and the model card"""

    checkpoint: str | None = option(None, "Export this checkpoint of the run (step-N, or a folder of "
                                    "RUN/checkpoints) instead of the latest")
    stage: int | None = option(None, "Export the model as it was at the end of stage K (1 = the first): the "
                               "checkpoint written then, which --save-total-limit never removes")
    license: str = option("other", "License of the model card's metadata (a Hub license id, e.g. apache-2.0)")
    language: list[str] = option(["en"], "Language(s) of the corpus, for the model card's metadata")


_FINETUNE = FinetuneOptions()


@dataclass
class CompareOptions:
    """Compare: curricula, seeds and the downstream set"""

    output_dir: str | None = option(None, "Folder for the runs (DIR/runs/<schedule>-seed<k>) and the report "
                                    "(DIR/report) (required)")
    tasks: list[str] = option([], "Pre-training tasks, at least 2, in curriculum order (required)")
    max_seq_length: int = option(RunOptions().max_seq_length, "Maximum tokens per example, [CLS] and [SEP] included")
    schedules: list[str] = option(DEFAULT_SCHEDULES, f"Curricula to compare, comma- or space-separated: "
                                  f"{', '.join(c for c in CURRICULA if c != 'file')}")
    seeds: int = option(1, "Number of seeds: every curriculum runs with --seed, --seed + 1, ...; the report gives "
                        "mean ± std over them")
    metric: str = option("accuracy", "Score of the accuracy matrix, forgetting and BWT", choices=tuple(SCORE_METRICS))
    downstream_train: str | None = option(None, "Labelled training file (.jsonl/.csv/.parquet) to fine-tune each "
                                          "curriculum's encoder on; needs --downstream-test")
    downstream_test: str | None = option(None, "Labelled test file of the downstream task")
    downstream_text_field: str = option(_FINETUNE.text_field, "Field holding the downstream text")
    downstream_text_pair_field: str | None = option(None, "Field holding a second text, for a sentence-pair task")
    downstream_label_field: str = option(_FINETUNE.label_field, "Field holding the downstream label")
    downstream_epochs: int = option(_FINETUNE.epochs, "Fine-tuning passes over the downstream training set")
    downstream_learning_rate: list[float] = option(_FINETUNE.learning_rate, "Peak learning rate(s) of the "
                                                   "fine-tuning; several are chosen among on a validation split "
                                                   "of the training file (see finetune --learning-rate)")
    downstream_batch_size: int = option(_FINETUNE.batch_size, "Examples per fine-tuning batch")


def task_option_classes() -> list[type]:
    """The options group of every registered pre-task, in task-id order."""
    return [task.options_class for task in TASKS.values()]


def pretrain_option_classes() -> list[type]:
    """Every option group of ``pretrain``: the framework's and each registered task's."""
    return [RunOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, ModelOptions, ArchitectureOptions,
            TrainingOptions, ScheduleOptions, WeightingOptions, EvaluationOptions, *task_option_classes()]


def inspect_option_classes() -> list[type]:
    return [InspectOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, *task_option_classes()]


def compare_option_classes() -> list[type]:
    """CompareOptions and every option group of pretrain but RunOptions (whose output_dir, tasks
    and max_seq_length CompareOptions has; resume and overwrite compare decides per run)."""
    return [CompareOptions, *(cls for cls in pretrain_option_classes() if cls is not RunOptions)]
