"""Several models from one server: a :class:`ModelManager` per served model, found by name.

Each model follows its own alias and is verified, warmed up, hot-swapped and reported on its own
(serving/core/lifecycle.py); a request that names no model gets the first one served.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from serving.core.errors import UnknownModel
from serving.core.lifecycle import LoadedModel, ModelManager


class ModelSet:
    """The served models' managers in their configured order; the first is the default."""

    def __init__(self, managers: Sequence[ModelManager]) -> None:
        if not managers:
            raise ValueError("a server serves at least one model")
        self._by_name = {manager.registry.model: manager for manager in managers}
        if len(self._by_name) != len(managers):
            raise ValueError("each served model is named once")
        self.default = managers[0]

    def __iter__(self) -> Iterator[ModelManager]:
        return iter(self._by_name.values())

    def manager(self, name: str | None) -> ModelManager:
        """The named model's manager (None: the default); 404 for a model not served here."""
        if name is None:
            return self.default
        manager = self._by_name.get(name)
        if manager is None:
            served = ", ".join(repr(n) for n in self._by_name)
            raise UnknownModel(f"unknown model {name!r}: this server serves {served}")
        return manager

    def require(self, name: str | None) -> LoadedModel:
        """The named model's loaded version, or NotReady (503) while it has none."""
        return self.manager(name).require()
