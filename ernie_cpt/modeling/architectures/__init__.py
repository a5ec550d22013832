"""Multi-task sharing architectures, one module each, registered by name (see ``base``).

Every module of this package is imported here, so a new architecture module registers itself
just by existing. ``ArchitectureOptions`` lives in ``ernie_cpt.modeling.options`` (no torch, for
``--help``).
"""

import importlib
import pkgutil

from ernie_cpt.modeling.architectures.base import ARCHITECTURES, Architecture, TaskOutput, check_expert_layers
from ernie_cpt.modeling.options import ArchitectureOptions

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


__all__ = ["ARCHITECTURES", "Architecture", "ArchitectureOptions", "TaskOutput", "check_expert_layers"]
