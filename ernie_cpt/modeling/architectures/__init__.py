"""Multi-task sharing architectures, one module each, registered by name (see ``base``).

Every module of this package is imported here, so a new architecture module registers itself
just by existing. ``ArchitectureOptions`` is defined after that, so that its help texts list the
architectures that are registered, and which of them reads each option (``options_used``).
"""

import importlib
import pkgutil
from dataclasses import dataclass

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.base import ARCHITECTURES, Architecture, TaskOutput, check_expert_layers
from ernie_cpt.options import option

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

DEFAULT = "hard"


def architecture_names() -> list[str]:
    """The registered architectures, the default first, then by name (for help texts)."""
    return [DEFAULT, *sorted(name for name in ARCHITECTURES if name != DEFAULT)]


def _architectures_help() -> str:
    return "How the tasks share the encoder: " + "; ".join(f"{name}: {ARCHITECTURES[name].summary}"
                                                          for name in architecture_names())


def _used_by(field: str) -> str:
    return "/".join(sorted(name for name, cls in ARCHITECTURES.items() if field in cls.options_used)) or "none"


@dataclass
class ArchitectureOptions:
    """Architecture: how the tasks share the encoder"""

    architecture: str = option(DEFAULT, _architectures_help())
    expert_layers: int = option(2, f"{_used_by('expert_layers')}: how many of the top encoder layers become "
                                f"experts or task columns (K); the layers below stay shared")
    num_experts: int = option(4, f"{_used_by('num_experts')}: experts, each a copy of the top --expert-layers "
                              f"layers")
    shared_experts: int = option(2, f"{_used_by('shared_experts')}: experts shared by all tasks (per level)")
    task_experts: int = option(1, f"{_used_by('task_experts')}: experts owned by each task (per level)")

    def __post_init__(self) -> None:
        ARCHITECTURES.get(self.architecture)  # checked when the options are read, before anything loads
        for name in ("expert_layers", "num_experts"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("shared_experts", "task_experts"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")
        if self.shared_experts + self.task_experts < 1:
            raise UserError("--shared-experts and --task-experts are both 0: a gate needs at least one expert; "
                            "raise either")


__all__ = ["ARCHITECTURES", "Architecture", "ArchitectureOptions", "TaskOutput", "architecture_names",
           "check_expert_layers"]
