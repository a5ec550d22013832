"""The seam's option of the loss weightings: which one combines the tasks of a step.

It loads no torch (``plan`` and ``COMMAND --help`` read this module); the weighting name is checked
against the registry when the options are made. Its help lists the registered weightings when
``--help`` is built (which imports them), and each weighting declares its own options next to its
code (``--dwa-window``: ``dwa.DWAOptions``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ernie_cpt.options import option

DEFAULT = "equal"


def _weightings_help() -> str:
    from ernie_cpt.weighting import WEIGHTINGS

    names = sorted(WEIGHTINGS, key=lambda name: name != DEFAULT)  # the default first, then in registration order
    levels = {level: "; ".join(f"{name}: {WEIGHTINGS.summary(name)}" for name in names
                               if WEIGHTINGS.get(name).level == level) for level in ("loss", "gradient")}
    return ("How the tasks of a step are combined when --task-mixing all (finetune: --multitask-mixing all). "
            f"Loss level: {levels['loss']}. Gradient level (per-task gradients of the shared parameters): "
            f"{levels['gradient']}")


@dataclass
class WeightingOptions:
    """Loss weighting: how the losses of tasks trained in the same step are combined (each weighting's own
    options follow)"""

    loss_weighting: str = option(DEFAULT, _weightings_help)

    def __post_init__(self) -> None:
        from ernie_cpt.weighting import WEIGHTINGS

        WEIGHTINGS.get(self.loss_weighting)  # checked when the options are read, before anything trains
