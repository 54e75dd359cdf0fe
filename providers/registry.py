"""A vendor in a capability's registry: where its implementation lives and which settings it needs.

Implementations are imported only when chosen, so a vendor's library is loaded only by the
installations that use it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Vendor:
    path: str  # "package.module:ClassName"
    requires: tuple[str, ...] = ()

    def load(self) -> type:
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)
