"""Where a run is: the progress the training loop keeps, and what of it a checkpoint saves.

``TrainState`` is to the loop what ``transformers.TrainerState`` is to ``Trainer``: the step,
the stage, the steps each task has had in the stage, the steps skipped as non-finite, the
batches with nothing to score since the last ``train`` record, and the tokens/time window of
the throughput in that record. ``state_dict()`` is what ``trainer_state.json`` holds besides
the streams' positions (keys ``step``, ``stage``, ``done``, ``nonfinite_steps``,
``empty_batches``); ``load_state_dict`` reads checkpoints written before the later keys
existed. The window is not saved: a resumed run measures its throughput from its own start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from schedules.stage import Stage


@dataclass
class TrainState:
    """The loop's progress. ``step``: optimizer steps taken (a skipped one counts); ``stage``: the
    index of the stage being trained; ``done``: optimizer steps each task has had in it."""

    step: int = 0
    stage: int = 0
    done: dict[str, int] = field(default_factory=dict)
    nonfinite_steps: int = 0
    empty_batches: dict[str, int] = field(default_factory=dict)  # since the last train record
    window_tokens: int = 0  # real tokens trained on since the last train record
    window_start: float = field(default_factory=time.perf_counter)  # when the window began

    def state_dict(self) -> dict[str, Any]:
        """The saved progress (JSON-serialisable), as ``trainer_state.json`` holds it."""
        return {"step": self.step, "stage": self.stage, "done": dict(self.done),
                "nonfinite_steps": self.nonfinite_steps, "empty_batches": dict(self.empty_batches)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (a ``state_dict()`` or a whole ``trainer_state.json``; other keys are
        ignored, and ``nonfinite_steps`` and ``empty_batches`` default to none)."""
        self.step, self.stage, self.done = int(state["step"]), int(state["stage"]), dict(state["done"])
        self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        self.empty_batches = dict(state.get("empty_batches", {}))

    def remaining(self, stage: Stage) -> dict[str, int]:
        """The optimizer steps each task of ``stage`` has left."""
        return {task: budget - self.done.get(task, 0) for task, budget in stage.steps.items()}

    def stage_over(self, stage: Stage) -> bool:
        """Whether every task of ``stage`` (the current one) has had all its steps."""
        return all(left <= 0 for left in self.remaining(stage).values())

    def advance(self, tasks: list[str]) -> None:
        """One optimizer step taken (or skipped) that trained ``tasks``."""
        self.step += 1
        for task in tasks:
            self.done[task] = self.done.get(task, 0) + 1

    def next_stage(self) -> None:
        self.stage, self.done = self.stage + 1, {}

    def count_empty(self, task: str) -> None:
        """A batch of ``task`` had nothing to score (no target token)."""
        self.empty_batches[task] = self.empty_batches.get(task, 0) + 1

    def start_window(self) -> None:
        """Measure the throughput from now."""
        self.window_tokens, self.window_start = 0, time.perf_counter()

    def close_window(self) -> tuple[float, dict[str, int]]:
        """Tokens per second and the empty batches since the window began, then a new window."""
        elapsed = time.perf_counter() - self.window_start
        rate = self.window_tokens / elapsed if elapsed > 0 else 0.0
        empty, self.empty_batches = self.empty_batches, {}
        self.start_window()
        return rate, empty
