"""Multi-task loss weightings, one module each, registered by name (see ``base``).

Every module of this package is imported here, so a new weighting module registers itself just
by existing.
"""

import importlib
import pkgutil

from ernie_cpt.weighting.base import WEIGHTINGS, GradientWeighting, LossWeighting, WeightingOptions, build_weighting

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["WEIGHTINGS", "GradientWeighting", "LossWeighting", "WeightingOptions", "build_weighting"]
