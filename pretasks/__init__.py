"""ERNIE 2.0 pre-training tasks, one module each, registered by name (see ``registry``).

The seven ERNIE 2.0 tasks are imported first, in the paper's order (their task ids are 0-6 in every
run: ``registry.ERNIE_TASKS``); every other module of this package is imported after them, so a new
task module registers itself just by existing.
"""

import importlib
import pkgutil

from pretasks.base import IGNORE_INDEX, PreTask, TaskUnavailable
from pretasks.registry import ERNIE_TASKS, TASKS, get_task, register

for _name in [*ERNIE_TASKS, *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ERNIE_TASKS)]:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["ERNIE_TASKS", "IGNORE_INDEX", "TASKS", "PreTask", "TaskUnavailable", "get_task", "register"]
