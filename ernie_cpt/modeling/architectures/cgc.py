"""CGC: shared experts and experts owned by each task; a task's gate mixes its own and the shared.

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys), section 4.2 (Customized Gate Control).
"""

from __future__ import annotations

from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.ple import PLE


@ARCHITECTURES.register()
class CGC(PLE):
    """Customized Gate Control (Tang et al. 2020, eq. 2-4): the single-level form of PLE.

    The top K = ``--expert-layers`` layers become S = ``--shared-experts`` shared experts and
    T_e = ``--task-experts`` experts owned by each task, each a copy of those K layers. Task t's
    gate weighs only the shared experts and t's own, per token state x of the trunk's output:

        y_t(x) = sum_e g_t(x)_e E_e(x)    over e in shared + t's,    g_t(x) = softmax(W_t x + b_t)

    Another task's experts never reach t: a forward pass runs S + T_e expert stacks. ``routing()``
    gives per task the mean gate weight of ``shared.<i>`` and ``<task>.<i>``.

    ``add_task(name, id, like)``: the new task gets copies of ``like``'s experts and gate (default
    ``like``: the model's first task), so its output starts equal to ``like``'s.
    """

    name = "cgc"
    summary = "--shared-experts experts shared by all tasks and --task-experts owned by each, each a copy of the " \
              "top --expert-layers layers; a task's gate mixes its own and the shared (Tang et al. 2020)"

    def level_depths(self) -> list[int]:
        return [self.options.expert_layers]
