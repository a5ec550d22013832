"""Third-party plugins: modules named by the entry-point group ``ernie_cpt.plugins``, as spaCy finds its
factories.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."ernie_cpt.plugins"]
    my_task = "my_package.my_task"

and ``my_package/my_task.py`` registers its tasks, architectures, weightings, curricula, stage
allocations, samplers or heads with the same decorators as the built-in ones (``pretasks.register``,
``ARCHITECTURES.register()``, ...). Every entry's module is imported the first time any registry is
read, once per process, so a plugin name works everywhere a built-in one does (``--tasks``,
``--architecture``, ``--loss-weighting``, configs, ``--help``). Registering writes a registry without
reading it, so the built-in modules never trigger the loading themselves.

A plugin that fails to import, registers a name that is taken, or declares an option that another
already has is one warning naming its distribution and the error; everything it registered is
removed, and every command goes on without it. ``plan`` and ``inspect-task`` import the plugins too:
keep a plugin module light (torch imported by an architecture or weighting is expected; transformers,
datasets and spaCy inside the functions that use them).
"""

from __future__ import annotations

import logging

GROUP = "ernie_cpt.plugins"
log = logging.getLogger(__name__)
_state: dict[str, bool] = {"loaded": False}
_loading: list[str] = []  # the distribution whose plugin module is being imported (innermost last)
_disabled: dict[str, str] = {}  # distribution -> why it was left out


def loading() -> str | None:
    """The distribution whose plugin module is being imported now, if any."""
    return _loading[-1] if _loading else None


def disabled() -> dict[str, str]:
    """The plugins left out in this process: distribution -> why."""
    return dict(_disabled)


def disable(distribution: str, why: str) -> None:
    """Leave out everything ``distribution`` registered, with one warning saying ``why``."""
    from ernie_cpt.registry import Registry

    for registry in Registry.instances:
        registry.forget(distribution)
    if distribution not in _disabled:
        _disabled[distribution] = why
        log.warning("plugin %s is not loaded: %s; fix or uninstall %s", distribution, why, distribution)


def load_plugins() -> None:
    """Import the module of every ``ernie_cpt.plugins`` entry point, once per process (later calls do
    nothing); a plugin that fails is left out with a warning (:func:`disable`)."""
    if _state["loaded"]:
        return
    _state["loaded"] = True  # first: a plugin that reads a registry while it loads does not load them again
    from importlib.metadata import entry_points

    for entry in entry_points(group=GROUP):
        distribution = entry.dist.name if entry.dist is not None else entry.value
        _loading.append(distribution)
        try:
            entry.load()
        except Exception as e:  # a broken plugin must not break every command
            disable(distribution, f"entry point {entry.name} = {entry.value} raised {type(e).__name__}: {e}")
        finally:
            _loading.pop()
