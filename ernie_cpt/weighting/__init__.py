"""Multi-task loss weightings, one module each, registered by name (see ``base``).

Every module of this package is imported on first use of the registry or its interface (PEP 562
``__getattr__``), so a new weighting module registers itself just by existing (a third-party one
through the ``ernie_cpt.plugins`` entry points), and ``ernie_cpt.weighting.options`` loads without
torch (for ``plan``); each weighting's own options are declared in its module.
"""

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ returns, for type checkers
    from ernie_cpt.weighting.base import (
        WEIGHTINGS,
        GradientWeighting,
        LossWeighting,
        StepContext,
        build_weighting,
        weighting_from,
    )
    from ernie_cpt.weighting.options import WeightingOptions

__all__ = ["WEIGHTINGS", "GradientWeighting", "LossWeighting", "StepContext", "WeightingOptions", "build_weighting",
           "weighting_from"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    from ernie_cpt.weighting import base, options

    globals().update({key: getattr(options if key == "WeightingOptions" else base, key) for key in __all__})
    return globals()[name]
