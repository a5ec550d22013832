"""PLE: Customized Gate Control stacked level by level, with a shared gate feeding each next level.

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys), section 4.
"""

from __future__ import annotations

from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.cgc import CGC


@ARCHITECTURES.register()
class PLE(CGC):
    """Progressive Layered Extraction (Tang et al. 2020) over the top K = ``--expert-layers`` layers,
    one extraction level per layer.

    Level l (l = 1..K) has S = ``--shared-experts`` shared experts and T_e = ``--task-experts``
    experts owned by each task, each a copy of encoder layer L - K + l. Every task t has a gate
    at every level, over the level's shared experts and t's own (its CGC, eq. 2-4 of the paper);
    every level but the top one also has a shared gate over all experts of the level (eq. 5).
    With x_t^l the input of task t's experts at level l and x_s^l that of the shared experts
    (both the trunk's output at level 1), per token:

        x_t^{l+1} = sum_e g_t^l(x_t^l)_e E_e(x^l)    over the shared experts and t's own
        x_s^{l+1} = sum_e g_s^l(x_s^l)_e E_e(x^l)    over every expert of the level (l < K)

    where each expert E_e reads its own input (x_s^l for shared experts, x_u^l for task u's). The
    task's states are x_t^{K+1}. A forward pass of one task runs, below the top level, every
    task's experts (the shared gate mixes them all), and at the top level the shared experts and
    its own.

    ``routing()`` gives per task its gates' mean weights, ``level<l>/shared.<i>`` and
    ``level<l>/<task>.<i>``, and those of the shared gates computed in its forward passes,
    ``level<l>/shared_gate/<owner>.<i>``.

    ``add_task(name, id, like)``: the new task gets copies of ``like``'s experts and gates
    (default ``like``: the model's first task). In each shared gate its experts get copies of
    ``like``'s experts' rows, and both copies' biases are lowered by log 2 (Net2Net's split,
    Chen, Goodfellow & Shlens 2016): their summed weight is ``like``'s before, so every task's
    output is unchanged and the new task's equals ``like``'s.
    """

    name = "ple"
    summary = "CGC stacked over the top --expert-layers layers, one level per layer, a shared gate feeding each " \
              "next level (Tang et al. 2020)"

    def level_depths(self) -> list[int]:
        return [1] * self.sharing.expert_layers
