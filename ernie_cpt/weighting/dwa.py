"""Dynamic Weight Average: weights from how fast each task's loss is falling (Liu, Johns & Davison 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ernie_cpt.options import Range, check_ranges, option
from ernie_cpt.weighting.base import LossWeighting, StepContext, register


@dataclass
class DWAOptions:
    """Loss weighting dwa"""

    dwa_temperature: float = option(2.0, "dwa: softmax temperature T (larger = weights closer to equal)",
                                    valid=Range(0, 100, low_open=True))
    dwa_window: int = option(20, "dwa: steps per window; loss ratios of the last two windows replace epochs",
                             valid=Range(1))

    def __post_init__(self) -> None:
        check_ranges(self)


@register
class DynamicWeightAverage(LossWeighting):
    """Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with Attention" (CVPR):

        w_k = K exp(r_k / T) / sum_i exp(r_i / T),    r_k = Lbar_k(t-1) / Lbar_k(t-2),

    over the K tasks present, with temperature T = ``dwa_temperature``. The paper's Lbar are epoch
    averages; here they are the averages of a task's (detached) losses over consecutive windows
    of ``dwa_window`` of the steps it took part in, t-1 and t-2 being its last two complete
    windows. A task with fewer than two complete windows has r_k = 1, so all weights are 1 until
    two windows are complete, as in the paper's first two epochs. A task whose loss falls more
    slowly (larger r_k) gets a larger weight.
    """

    name = "dwa"
    options_class = DWAOptions
    options: DWAOptions
    summary = "weights from how fast each task's loss falls (Liu et al. 2019)"

    def __init__(self, tasks: list[str], options: DWAOptions | None = None) -> None:
        super().__init__(tasks, options)
        # Per task: the sum and count of the losses of the window in progress, and the averages
        # of its complete windows, the latest two only.
        self.window_sums = dict.fromkeys(self.tasks, 0.0)
        self.window_steps = dict.fromkeys(self.tasks, 0)
        self.window_averages: dict[str, list[float]] = {task: [] for task in self.tasks}

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        rates = torch.tensor([self._rate(task) for task in losses], dtype=torch.float64, device="cpu")  # floats
        weights = len(losses) * torch.softmax(rates / self.options.dwa_temperature, dim=0)
        for task, loss in losses.items():
            self._record(task, loss.item())
        return dict(zip(losses, weights.tolist()))

    def _rate(self, task: str) -> float:
        averages = self.window_averages[task]
        if len(averages) < 2 or averages[0] == 0:
            return 1.0
        return averages[1] / averages[0]

    def _record(self, task: str, loss: float) -> None:
        self.window_sums[task] += loss
        self.window_steps[task] += 1
        if self.window_steps[task] == self.options.dwa_window:
            latest = self.window_sums[task] / self.options.dwa_window
            self.window_averages[task] = [*self.window_averages[task][-1:], latest]
            self.window_sums[task], self.window_steps[task] = 0.0, 0

    def get_extra_state(self) -> dict[str, Any]:
        return {"window_sums": dict(self.window_sums), "window_steps": dict(self.window_steps),
                "window_averages": {task: list(averages) for task, averages in self.window_averages.items()}}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.window_sums = dict(state["window_sums"])
        self.window_steps = dict(state["window_steps"])
        self.window_averages = {task: list(averages) for task, averages in state["window_averages"].items()}
