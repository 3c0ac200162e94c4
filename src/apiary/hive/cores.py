"""The core versions of a hive, each loaded once and kept: the base core with the updates of
its lineage (core adapters, or weight deltas of versions trained in every weight) folded in."""

from __future__ import annotations

from apiary.models.core import Core, load_core, with_core_updates
from apiary.store.store import Store


class Cores:
    """Core version -> loaded Core, for one store and one base core source (None: the bundled core)."""

    def __init__(self, store: Store, source: str | None = None, template: str | None = None):
        self.store, self.source, self.template = store, source, template  # template: models.prompt_format
        self._loaded: dict[int, Core] = {}

    @property
    def current(self) -> Core:
        """The latest released core version (the base core until one is released); new workers start from it."""
        return self.at(self.store.current_core())

    def at(self, version: int) -> Core:
        """Core version `version` (0: the base core)."""
        if version not in self._loaded:
            chain, known = [], {c.version: c for c in self.store.core_versions()}
            v = version
            while v != 0:
                if v not in known:
                    raise ValueError(f"no core version {v} in hive {self.store.root}")
                chain.append(self.store.fetched(self.store.core_dir(v)))  # not the row's path: a moved or restored hive reads its own
                v = known[v].parent
            base = load_core(self.source, self.template)
            self._loaded[version] = with_core_updates(base, chain[::-1], version) if chain else base
        return self._loaded[version]
