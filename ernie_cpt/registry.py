"""One registry type for everything a config names: tasks, architectures, heads, loss weightings,
curricula, stage allocations and task samplers (as spaCy's ``registry`` serves its functions).

A plugin is one module that decorates its class or function with ``@REGISTRY.register(name)``
(or ``@REGISTRY.register()`` for a class with a ``name`` attribute). Next to its code it declares
``summary`` (one line for ``--help``) and, where it has options, ``options_class`` (a dataclass of
``option`` fields: flat flags and config keys, like every other option); a function gives them to
``register`` (``@register("file", summary=..., options_class=...)``). Looking up an unknown name is a
:class:`~ernie_cpt.errors.UserError` that suggests the closest registered one. Entries keep their
registration order.

Reading any registry first imports the third-party plugins (:mod:`ernie_cpt.plugins`, the entry-point
group ``ernie_cpt.plugins``), once per process. A built-in name outranks a plugin's: a plugin that
registers a name ernie-cpt has is left out with a warning, whichever registered first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from ernie_cpt import plugins
from ernie_cpt.errors import unknown_name

T = TypeVar("T")
BUILT_IN = ("ernie_cpt", "pretasks", "schedules")  # the packages whose registrations are ernie-cpt's own


def _origin(obj: object) -> str | None:
    """None for an ernie-cpt entry; else the distribution of the plugin being loaded, or the module."""
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] in BUILT_IN:
        return None
    return plugins.loading() or module


class Registry(Generic[T]):
    """Named plugins of one kind (``kind`` names it in error messages, e.g. "task")."""

    instances: ClassVar[list[Registry[Any]]] = []

    def __init__(self, kind: str, reserved: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.reserved = reserved  # names a command gives a meaning of its own (compare's --architectures all)
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str | None] = {}
        Registry.instances.append(self)

    def register(self, name: str | None = None, **attributes: Any) -> Callable[[T], T]:
        """Decorator: make the decorated object available as ``name`` (default: its ``name``
        attribute), with ``attributes`` (``summary``, ``options_class``, capabilities) set on it.
        Raises ValueError when another plugin of this kind has the name, or the name is reserved."""

        def add(obj: T) -> T:
            key = name if name is not None else obj.name  # type: ignore[attr-defined]
            if key in self.reserved:
                raise ValueError(f"{self.kind} name {key!r} is reserved: choose another name")
            for attribute, value in attributes.items():
                setattr(obj, attribute, value)
            origin = _origin(obj)
            if key in self._entries:
                taken_by = self._origins[key]
                if origin is not None or taken_by is None:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
                plugins.disable(taken_by, f"it registers {self.kind} {key!r}, which ernie-cpt has")
            self._entries[key] = obj
            self._origins[key] = origin
            return obj

        return add

    def forget(self, origin: str) -> None:
        """Remove every entry that ``origin`` (a plugin's distribution) registered."""
        for key in [key for key, owner in self._origins.items() if owner == origin]:
            del self._entries[key], self._origins[key]

    def origin(self, name: str) -> str | None:
        """Who registered ``name``: None for ernie-cpt, else the plugin's distribution (or module)."""
        self.get(name)
        return self._origins[name]

    @property
    def _loaded(self) -> dict[str, T]:
        """The entries, once the plugins have registered theirs."""
        plugins.load_plugins()
        return self._entries

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name raises a UserError with a suggestion."""
        if name not in self._loaded:
            raise unknown_name(self.kind, name, list(self._entries))
        return self._entries[name]

    def summary(self, name: str) -> str:
        """``name``'s one-line summary: its ``summary``, else the first line of its docstring."""
        entry = self.get(name)
        return getattr(entry, "summary", None) or (entry.__doc__ or "").strip().split("\n")[0]

    def options_class(self, name: str) -> type | None:
        """The dataclass of ``name``'s own options (None: it has none)."""
        return getattr(self.get(name), "options_class", None)

    def option_classes(self) -> list[type]:
        """The options dataclasses of every entry, each once, in registration order."""
        found = (self.options_class(name) for name in self.names())
        return list(dict.fromkeys(cls for cls in found if cls is not None))

    def options_for(self, name: str, groups: Mapping[type, Any]) -> Any:
        """``name``'s own options from option instances keyed by class (its defaults where absent);
        None when it has none."""
        cls = self.options_class(name)
        return None if cls is None else groups.get(cls) or cls()

    def listing(self, first: str | None = None) -> str:
        """Every name with its summary, ``first`` first: "hard: ...; mmoe: ..." (for ``--help``)."""
        names = self.names()
        ordered = ([first] if first in names else []) + [name for name in names if name != first]
        return "; ".join(f"{name}: {self.summary(name)}" for name in ordered)

    def names(self) -> list[str]:
        return list(self._loaded)

    def items(self) -> list[tuple[str, T]]:
        return list(self._loaded.items())

    def values(self) -> list[T]:
        return list(self._loaded.values())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded)

    def __len__(self) -> int:
        return len(self._loaded)
