"""One generic registry for every named table of medseg (networks, losses, heads, layouts, phantoms, ...).

In the style of timm's ``_registry.py``: entries register themselves with a decorator in the module that
defines them, so adding one means adding one file. A registry knows which packages hold its entries and
imports them only when it is first asked (``medseg --help`` imports nothing), or a single module when the
entry's module is named in its lazy ``modules`` map. An unknown name is a one-line
:class:`~medseg.errors.MedsegConfigError` with a did-you-mean, never a bare ``KeyError``.

Example:
    >>> shapes: Registry[type] = Registry("shape")
    >>> @shapes.register("square", sides=4)
    ... class Square: ...
    >>> shapes.get("square").__name__, shapes.metadata("square")["sides"]
    ('Square', 4)
    >>> shapes.names(sides=4)
    ['square']
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from medseg.errors import MedsegConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its metadata (``register(name, **metadata)``)."""

    name: str
    value: T
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: what makes two registrations the same (the value itself, or e.g. a network's factory)
    owner: Any = None


class Registry(Generic[T]):
    """A name -> object table with lazy loading, metadata, filtered listing and friendly errors.

    Args:
        kind: what an entry is, for messages (``"network"`` gives ``unknown network 'x'``).
        packages: packages whose modules register entries; all are imported on the first full lookup.
        modules: ``{name: module}`` for entries whose module is known up front (imported alone on lookup).
        option: the configuration key that names an entry, for messages (``"network.name"``).
    """

    def __init__(self, kind: str, packages: Sequence[str] = (), modules: Mapping[str, str] | None = None, option: str = "") -> None:
        self.kind = kind
        self.option = option
        self._packages = tuple(packages)
        self._modules = dict(modules or {})
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = not self._packages

    def register(self, name: str, **metadata: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` with ``metadata``."""

        def decorator(value: T) -> T:
            self.add(name, value, **metadata)
            return value

        return decorator

    def add(self, name: str, value: T, *, owner: Any = None, **metadata: Any) -> None:
        """Register ``value`` under ``name``.

        Registering a name again is allowed only for the same ``owner`` (default: the value itself), e.g. a
        module imported twice; another object under a taken name is a ``ValueError`` (a programming error).
        """
        owner = value if owner is None else owner
        old = self._entries.get(name)
        if old is not None and old.owner is not owner and _qualname(old.owner) != _qualname(owner):
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, value, dict(metadata), owner)

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register temporary entries clean up with this)."""
        self._entries.pop(name, None)

    def _load_all(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for package in self._packages:
            pkg = importlib.import_module(package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package}.{info.name}")

    def entry(self, name: str) -> Entry[T]:
        """The entry ``name``; imports its module first when needed.

        Raises:
            MedsegConfigError: unknown name, with the closest known names.
        """
        if name not in self._entries and name in self._modules:
            importlib.import_module(self._modules[name])
        if name not in self._entries:
            self._load_all()
        if name not in self._entries:
            raise MedsegConfigError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str, option: str | None = None) -> str:
        """``network.name: unknown network 'unte' (did you mean 'unet'?); known: ...`` (``option`` replaces the key)."""
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        option = self.option if option is None else option
        prefix = f"{option}: " if option else ""
        return f"{prefix}unknown {self.kind} '{name}'{hint}; known: {', '.join(known)}"

    def get(self, name: str) -> T:
        """The object registered as ``name`` (see :meth:`entry`)."""
        return self.entry(name).value

    def metadata(self, name: str) -> Mapping[str, Any]:
        return self.entry(name).metadata

    def names(self, **filters: Any) -> list[str]:
        """Sorted names, optionally only those whose metadata equals every ``key=value`` given."""
        self._load_all()
        for name, module in self._modules.items():
            if name not in self._entries:
                importlib.import_module(module)
        return sorted(n for n, e in self._entries.items() if all(e.metadata.get(k) == v for k, v in filters.items()))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.entry(name)
        except MedsegConfigError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _qualname(obj: Any) -> str | None:
    name = getattr(obj, "__qualname__", None)
    return f"{getattr(obj, '__module__', '')}.{name}" if name else None


__all__ = ["Entry", "Registry"]
