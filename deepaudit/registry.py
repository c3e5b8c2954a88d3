"""One registry design for generators and detectors, as in timm: decorate, list, create.

Each layer keeps its own :class:`Registry` (``generators`` of factories, ``detectors`` of
classes); an entry module decorates its entries and the layer's package imports the entry
modules, so the registry itself imports nothing back. Both layers get the same things from
here: metadata per entry, "did you mean" for a wrong name, and ``device``/``precision``
passed only to the entries whose constructor takes them, so callers need not know which do.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Registry", "RegistryEntry"]


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    factory: Callable[..., Any]  # a class or a function returning the object
    kind: str  # "image" | "video"
    family: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)  # paper, source, licence, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "description": self.description,
            **({"metadata": dict(self.metadata)} if self.metadata else {}),
        }


class Registry:
    """Named entries of one layer (``what`` is the noun used in messages)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, RegistryEntry] = {}

    def register(
        self,
        name: str,
        *,
        kind: str = "image",
        family: str | None = None,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        **defaults: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``factory`` under ``name``; ``defaults`` are merged into its cfg."""

        def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            doc = (inspect.getdoc(factory) or "").strip().splitlines()
            self._entries[name] = RegistryEntry(
                name=name,
                factory=factory,
                kind=kind,
                family=family or name.split("-")[0],
                description=description or (doc[0] if doc else ""),
                defaults=MappingProxyType(dict(defaults)),
                metadata=MappingProxyType(dict(metadata or {})),
            )
            return factory

        return wrap

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entry(self, name: str) -> RegistryEntry:
        """The entry, or ValueError naming close matches and every valid name."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.6)
            close += [
                n for n in self._entries if n.split("-")[0] == name.split("-")[0] and n not in close
            ]
            hint = f" (did you mean {', '.join(close[:5])}?)" if close else ""
            valid = ", ".join(sorted(self._entries))
            raise ValueError(f"unknown {self.what} {name!r}{hint}; valid: {valid}")
        return self._entries[name]

    def create(
        self, name: str, *, device: str | None = None, precision: str | None = None, **cfg: Any
    ) -> Any:
        """Build an entry; ``device``/``precision`` reach it only where its constructor takes
        them. Wrong options raise ValueError naming the entry."""
        entry = self.entry(name)
        kwargs = {**entry.defaults, **cfg, **runtime_options(entry.factory, device, precision)}
        try:
            return entry.factory(**kwargs)
        except TypeError as exc:
            raise ValueError(f"{self.what} {name!r}: {exc}") from None


def runtime_options(
    factory: Callable[..., Any],
    device: str | None,
    precision: str | None,
    engine: str | None = None,
) -> dict[str, Any]:
    """The given ``device``/``precision``/``engine`` that ``factory`` accepts: a class when
    some ``__init__`` of its hierarchy names the option (a bare ``**kw`` only passes options
    up), a function when it names it or takes ``**kwargs``."""
    given = {"device": device, "precision": precision, "engine": engine}
    return {k: v for k, v in given.items() if v is not None and _accepts(factory, k)}


def _accepts(factory: Callable[..., Any], option: str) -> bool:
    try:
        if inspect.isclass(factory):
            return any(
                option in inspect.signature(c.__init__).parameters
                for c in factory.__mro__
                if "__init__" in c.__dict__ and c is not object
            )
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return option in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
