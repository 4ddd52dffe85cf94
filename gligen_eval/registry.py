"""Lazy registries: a name stands for a ``"package.module:Attr"`` string, imported only when used.

Detectors, grounding tokenizers, layout readers and scorers are found through one
:class:`Registry` each, so that naming one never imports the libraries behind the others, and a
user's own ``"package.module:Class"`` plugs into any of them without registering first.
Importing this module imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator, Mapping

from gligen_eval.errors import ConfigError


def import_target(target: str, what: str = "target") -> Any:
    """The object that ``"package.module:Attr"`` names (``Attr`` may be dotted); a one-line
    :class:`ConfigError` when the string is malformed or the import fails."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{what}: expected 'package.module:Attr', got {target!r}")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{what}: cannot load {target} ({e})") from None
    return obj


class Registry:
    """Names of one kind of thing (``what``, e.g. ``"detector kind"``) and the targets they build.

    ``builtins``: ``{name: "package.module:Attr"}``, or a function returning it (read on every use,
    for tables defined elsewhere that must not be imported early). :meth:`register` adds or
    replaces a name; :meth:`resolve` imports a name's target, or a ``"package.module:Attr"`` given
    directly when ``paths`` is true.
    """

    def __init__(self, what: str, builtins: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
                 *, paths: bool = True) -> None:  # fmt: skip
        self.what = what
        self.paths = paths
        self._builtins = builtins or {}
        self._added: dict[str, str] = {}

    def _table(self) -> dict[str, str]:
        builtins = self._builtins() if callable(self._builtins) else self._builtins
        return {**builtins, **self._added}

    def register(self, name: str, target: str) -> None:
        """Make ``name`` stand for ``target`` (``"package.module:Attr"``; imported on use)."""
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ConfigError(f"{self.what} target must look like 'package.module:Attr', got {target!r}")
        self._added[name] = target

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._table())

    def target(self, name: str) -> str:
        """The ``"package.module:Attr"`` that ``name`` stands for (``name`` itself for a path)."""
        table = self._table()
        if name in table:
            return table[name]
        if self.paths and ":" in name:
            return name
        extra = ", or 'package.module:Class'" if self.paths else ""
        raise ConfigError(f"unknown {self.what} {name!r} (known: {', '.join(sorted(table))}{extra})")

    def resolve(self, name: str) -> Any:
        """The object ``name`` stands for, imported now."""
        return import_target(self.target(name), f"{self.what} {name!r}" if name in self else self.what)

    def __contains__(self, name: object) -> bool:
        return name in self._table()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._table())
