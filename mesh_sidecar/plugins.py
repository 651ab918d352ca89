"""Finds plugin classes by name: built-ins plus an entry-point group, imported lazily.

Used by both plugin families (pullers keyed by storage type, runtimes keyed by
name) so a sidecar that reads only S3 never imports the Azure SDK.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from mesh_sidecar.errors import FailedPrecondition, InvalidRequest

T = TypeVar("T")


@dataclass(frozen=True)
class PluginSpec:
    """Where a plugin lives: a dotted 'module:Class' path and where it came from."""

    name: str
    target: str
    origin: str  # "built-in" or the distribution that registered the entry point
    extra: str | None = None  # the pip extra that provides its dependencies


class Registry(Generic[T]):
    """Name -> plugin class, imported on first use."""

    def __init__(self, kind: str, group: str, builtins: dict[str, tuple[str, str | None]]):
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._cache: dict[str, type[T]] = {}

    def specs(self) -> dict[str, PluginSpec]:
        """Every known plugin; entry points may override built-ins of the same name."""
        found = {
            name: PluginSpec(name, target, "built-in", extra)
            for name, (target, extra) in self._builtins.items()
        }
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            found[ep.name] = PluginSpec(ep.name, ep.value, dist)
        return found

    def get(self, name: str) -> type[T]:
        """The plugin class for `name`; a clear error when unknown or not installed."""
        if name in self._cache:
            return self._cache[name]
        specs = self.specs()
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise InvalidRequest(f"unknown {self.kind} {name!r} (known: {known})")
        module_name, _, attr = spec.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = (
                f"pip install 'mesh-sidecar[{spec.extra}]'"
                if spec.extra
                else f"install the package that provides {module_name}"
            )
            raise FailedPrecondition(
                f"{self.kind} {name!r} needs a missing dependency ({exc.name}): {hint}"
            ) from exc
        cls: type[T] = getattr(module, attr)
        self._cache[name] = cls
        return cls
