"""One registry type for everything a config names: tasks, architectures, heads, loss weightings,
curricula, stage allocations and task samplers (as spaCy's ``registry`` serves its functions).

A plugin is one module that decorates its class or function with ``@REGISTRY.register(name)``
(or ``@REGISTRY.register()`` for a class with a ``name`` attribute). Looking up an unknown name
is a :class:`~ernie_cpt.errors.UserError` that suggests the closest registered one. Entries keep
their registration order, and each entry's index in it is its id (the task registry uses it as
the row of the task embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ernie_cpt.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugins of one kind (``kind`` names it in error messages, e.g. "task")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: make the decorated object available as ``name`` (default: its ``name``
        attribute). Raises ValueError when the name is taken."""

        def add(obj: T) -> T:
            key = name if name is not None else obj.name  # type: ignore[attr-defined]
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name raises a UserError with a suggestion."""
        if name not in self._entries:
            raise unknown_name(self.kind, name, list(self._entries))
        return self._entries[name]

    def id_of(self, name: str) -> int:
        """The 0-based registration index of ``name`` (stable while modules register in a fixed order)."""
        self.get(name)
        return list(self._entries).index(name)

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
