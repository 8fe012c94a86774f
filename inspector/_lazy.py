"""Lazy public names for the packages: ``from inspector.labels import LabelEngine`` imports ``labels.engine`` only
when the name is first asked for, so importing a package stays cheap (the CLI starts in ~0.1 s; plotly, pyarrow and
torch load only where a command needs them).

Example: ``lazy_exports("inspector.labels", {"engine": ["LabelEngine"]})`` returns ``(__all__, __getattr__,
__dir__)`` for the package; ``inspector.labels.LabelEngine`` then imports ``inspector.labels.engine`` and returns
its ``LabelEngine``. Submodules stay reachable as usual (``from inspector.labels import weights``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, names: Mapping[str, Sequence[str]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """Build ``__all__``, ``__getattr__`` and ``__dir__`` for ``package`` from ``{submodule: [public names]}``."""
    where = {name: module for module, exported in names.items() for name in exported}
    public = sorted(where)

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(set(public) | set(names))

    return public, __getattr__, __dir__
