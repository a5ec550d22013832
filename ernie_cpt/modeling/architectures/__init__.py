"""Multi-task sharing architectures, one module each, registered by name (see ``base``).

Every module of this package is imported here, so a new architecture module registers itself
just by existing (a third-party one through the ``ernie_cpt.plugins`` entry points). The seam's
``ArchitectureOptions`` live in ``ernie_cpt.modeling.options`` (no torch); each architecture's own
next to its code. The modules load torch, not transformers (a model being built loads it).
"""

import importlib
import pkgutil

from ernie_cpt.modeling.architectures.base import ARCHITECTURES, Architecture, TaskOutput, check_expert_layers
from ernie_cpt.modeling.options import ArchitectureOptions

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


__all__ = ["ARCHITECTURES", "Architecture", "ArchitectureOptions", "TaskOutput", "check_expert_layers"]
