"""ERNIE 2.0 pre-training tasks, one module each, registered by name (see ``registry``).

Every module of this package is imported here, so a new task module registers itself just
by existing.
"""

import importlib
import pkgutil

from pretasks.base import PreTask, TaskUnavailable
from pretasks.registry import NUM_TASK_IDS, TASKS, get_task, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["NUM_TASK_IDS", "TASKS", "PreTask", "TaskUnavailable", "get_task", "register"]
