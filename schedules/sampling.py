"""Task sampling: which task an optimizer step trains when a stage takes one task per step.

Samplers are registered by name, with a one-line summary for ``--help``. Each is called as
``sampler(remaining, sizes, temperature, rng)`` with the steps each task of the stage has left, each
task's number of training examples, the temperature of ``size``, and a random generator, and draws
among the tasks with steps left only. An exhausted task is never drawn, so drawing until nothing is
left meets every budget exactly, whatever the policy: the policy decides the order of a stage's
steps, never their number.

A sampler keeps no state: the same ``remaining`` and the same generator state give the same
task, so with a generator seeded per (seed, stage, step) a resumed run draws what it would have.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ernie_cpt.registry import Registry

Sampler = Callable[[dict[str, int], dict[str, int], float, np.random.Generator], str]
SAMPLERS: Registry[Sampler] = Registry("task sampling")
register = SAMPLERS.register
get_sampler = SAMPLERS.get


def _active(remaining: dict[str, int]) -> list[str]:
    tasks = [task for task, steps in remaining.items() if steps > 0]
    if not tasks:
        raise ValueError("no task of the stage has steps left to draw")
    return tasks


def _draw(tasks: list[str], weights: np.ndarray, rng: np.random.Generator) -> str:
    return tasks[rng.choice(len(tasks), p=weights / weights.sum())]


@register("uniform", summary="every task with steps left equally likely")
def uniform(remaining: dict[str, int], sizes: dict[str, int], temperature: float, rng: np.random.Generator) -> str:
    """Every task with steps left is equally likely. Tasks with small budgets run out first, and
    the end of the stage trains the largest budgets alone."""
    tasks = _active(remaining)
    return _draw(tasks, np.ones(len(tasks)), rng)


@register("remaining", summary="in proportion to the steps a task has left")
def by_remaining(remaining: dict[str, int], sizes: dict[str, int], temperature: float,
                 rng: np.random.Generator) -> str:
    """Probability proportional to the steps a task has left: drawing from an urn without
    replacement, so the stage's steps are a uniformly random ordering of its tasks' steps and
    every task stays mixed in until the stage ends."""
    tasks = _active(remaining)
    return _draw(tasks, np.array([remaining[t] for t in tasks], dtype=np.float64), rng)


@register("size", summary="in proportion to n_i^(1/T), n_i the task's training examples, T = "
          "--sampling-temperature (T5; MT-DNN at T = 1)")
def by_size(remaining: dict[str, int], sizes: dict[str, int], temperature: float, rng: np.random.Generator) -> str:
    """Probability proportional to n_i^(1/T), n_i the task's number of training examples: the
    temperature-scaled mixing of T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
    with a Unified Text-to-Text Transformer", JMLR). T = 1 samples in proportion to data size as
    MT-DNN does (Liu et al. 2019, "Multi-Task Deep Neural Networks for Natural Language
    Understanding", ACL); a larger T moves toward uniform. As the budgets are fixed, larger tasks
    are drawn more early in the stage and the smaller ones fill its end."""
    tasks = _active(remaining)
    log_sizes = np.log(np.array([sizes[t] for t in tasks], dtype=np.float64))
    return _draw(tasks, np.exp((log_sizes - log_sizes.max()) / temperature), rng)
