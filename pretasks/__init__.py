"""ERNIE 2.0 pre-training tasks, one module each, registered by name (see ``registry``)."""

from pretasks import knowledge_masking
from pretasks.base import PreTask
from pretasks.registry import NUM_TASK_IDS, TASKS, get_task, register

__all__ = ["NUM_TASK_IDS", "TASKS", "PreTask", "get_task", "knowledge_masking", "register"]
