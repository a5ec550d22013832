"""The options of the loss weightings (one group for all; each method reads its own fields).

They live apart from the weightings so that ``--help`` can list them without loading torch; the
weighting name is checked against the registry when the options are read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ernie_cpt.options import Range, option


@dataclass
class WeightingOptions:
    """Loss weighting: how the losses of tasks trained in the same step are combined"""

    loss_weighting: str = option("equal", "How the tasks of a step are combined when --task-mixing all (finetune: "
                                 "--multitask-mixing all). Loss level: "
                                 "equal, manual, uncertainty, gradnorm, dwa, dtp, famo; gradient level (per-task "
                                 "gradients of the shared parameters): pcgrad, cagrad, mgda, nash_mtl")
    task_weights: list[str] = option([], "manual: TASK=WEIGHT for each task (pre-task or --task set) to weigh, e.g. "
                                         "capitalization=0.5; "
                                         "tasks not listed get 1.0")
    gradnorm_alpha: float = option(1.5, "gradnorm: asymmetry alpha, how strongly tasks that train slower are favoured",
                                   valid=Range(0, 10))
    gradnorm_lr: float = option(0.025, "gradnorm: learning rate of the Adam optimizer of the task weights",
                                valid=Range(0, 1, low_open=True))
    dwa_temperature: float = option(2.0, "dwa: softmax temperature T (larger = weights closer to equal)",
                                    valid=Range(0, 100, low_open=True))
    dwa_window: int = option(20, "dwa: steps per window; loss ratios of the last two windows replace epochs",
                             valid=Range(1))
    dtp_gamma: float = option(2.0, "dtp: focusing exponent gamma of the focal weights", valid=Range(0, 10))
    dtp_momentum: float = option(0.9, "dtp: momentum of the moving average of each task's KPI (accuracy)",
                                 valid=Range(0, 1, high_open=True))
    cagrad_c: float = option(0.4, "cagrad: c, how far the update may move from the average gradient to raise the "
                             "worst task's improvement (0 = the average gradient)", valid=Range(0, 10))
    mgda_normalization: str = option("none", "mgda: how each task's gradient is normalised before the min-norm "
                                     "weights are solved: none (the paper), l2, loss, loss+ (loss times l2 norm)",
                                     choices=("none", "l2", "loss", "loss+"))
    famo_lr: float = option(0.025, "famo: learning rate of the Adam optimizer of the task logits",
                            valid=Range(0, 1, low_open=True))
    famo_gamma: float = option(0.01, "famo: weight decay gamma of the task logits (regularises toward equal weights)",
                               valid=Range(0, 1))

    def __post_init__(self) -> None:
        from ernie_cpt.weighting import WEIGHTINGS

        WEIGHTINGS.get(self.loss_weighting)  # checked when the options are read, before anything trains
