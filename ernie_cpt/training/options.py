"""The options of the training layer: optimisation, checkpoints and logging, and evaluation.

They live apart from the trainer (as ``TrainingArguments`` does from ``Trainer``) so that
``--help`` and ``plan`` can read them without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ernie_cpt.options import SEED_RANGE, Range, option
from pretasks.base import MAX_MAJORITY_SHARE

# The held-out scores the accuracy matrix, forgetting and BWT can be computed from ("higher is better").
SCORE_METRICS = ["accuracy", "f1"]

LR_SCHEDULES = ("whole", "per-stage")


@dataclass
class TrainingOptions:
    """Training: optimisation, checkpoints and logging"""

    max_steps: int = option(1000, "Task steps in total, shared evenly by the tasks unless --steps-per-task is set "
                            "(a task step trains one batch of a task; --task-mixing all trains several per "
                            "optimizer step)", valid=Range(1))
    batch_size: int = option(32, "Examples per micro-batch, over all processes when run with torchrun (each "
                             "process takes batch_size / processes of them)", valid=Range(1))
    grad_accum_steps: int = option(1, "Micro-batches accumulated per optimizer step", valid=Range(1))
    learning_rate: float = option(5e-4, "Peak learning rate of AdamW", valid=Range(0, 1, low_open=True))
    weight_decay: float = option(0.01, "AdamW weight decay (not applied to biases and LayerNorm)", valid=Range(0, 1))
    warmup_ratio: float = option(0.06, "Fraction of the steps with linear warm-up; then linear decay to 0",
                                 valid=Range(0, 1))
    lr_schedule: str = option("whole", "whole: one warm-up + linear decay over the whole curriculum; per-stage: "
                              "re-warm and re-decay in every stage, each over its own steps (Ibrahim et al. 2024)",
                              choices=LR_SCHEDULES)
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 = off)", valid=Range(0))
    seed: int = option(42, "Seed of the model init, data order, masks and dropout (the held-out split has "
                       "--split-seed)", valid=SEED_RANGE)
    save_steps: int = option(500, "Checkpoint every N steps (and at the end)", valid=Range(1))
    save_total_limit: int = option(2, "Keep the last K checkpoints. The checkpoint written at the end of every "
                                   "stage is kept besides them (not rotated away), for export --stage K",
                                   valid=Range(1))
    logging_steps: int = option(10, "Log loss, learning rate and tokens/s every N steps", valid=Range(1))
    report_to: str = option("tensorboard", "Where the logged numbers also go besides logs/*.jsonl: tensorboard "
                            "(RUN/logs/tensorboard, tags train/loss, train/learning_rate, eval/<task>/accuracy) or "
                            "none", choices=("tensorboard", "none"))
    device: str = option("auto", "cpu, cuda, cuda:N or auto (CUDA when available)")
    amp: bool = option(True, "bf16 autocast where the device supports it (CUDA); fp32 on CPU")
    dataloader_workers: int = option(0, "DataLoader worker processes per task (0 = main process)",
                                     valid=Range(0, 64))
    max_majority_share: float = option(MAX_MAJORITY_SHARE, "A task whose training labels are a single class, or "
                                       "one class above this share, has nothing to learn and is skipped",
                                       valid=Range(0.5, 1))
    max_nonfinite_steps: int = option(10, "Steps with a NaN/inf loss or gradient norm are skipped (no update); "
                                      "training stops when more than this many occur in a run", valid=Range(0))
    num_threads: int = option(0, "Torch threads for training and evaluation; 0 = the CPUs this process may use "
                              "(affinity and cgroup quota) minus --dataloader-workers, at least 1",
                              valid=Range(0, 1024))


@dataclass
class EvaluationOptions:
    """Evaluation: held-out documents"""

    eval_fraction: float = option(0.05, "Fraction of documents held out for evaluation (at least one; 0 = none)",
                                  valid=Range(0, 0.5))
    split_seed: int = option(42, "Seed of the held-out split and of its examples (their masks and pairs). Fixed "
                             "apart from --seed, so that runs with different seeds are scored on the same test set",
                             valid=SEED_RANGE)
    eval_steps: int = option(200, "Evaluate every N steps (and at the end of every stage); 0 = only then",
                             valid=Range(0))
    eval_max_examples: int = option(256, "At most this many held-out examples per task", valid=Range(1))
    eval_batch_size: int = option(32, "Batch size for evaluation. The default equals --batch-size's default, so "
                                  "that at the defaults an evaluation needs no more memory than a training step; "
                                  "it does not follow --batch-size", valid=Range(1))
    eval_untrained_tasks: bool = option(False, "Also score tasks no stage has trained yet. Their heads are still at "
                                        "their random initialisation, so such a score measures only what the "
                                        "encoder's features give an untrained linear head: about chance")
