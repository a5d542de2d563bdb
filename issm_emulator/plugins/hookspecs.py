"""Hook specifications of issm-emulator's pluggy plugin system.

A plugin is a module (or any object) with a function named ``issm_emulator_solvers`` decorated with
:data:`hookimpl`. Distributions make their plugins known through the entry-point group ``issm_emulator``::

    [project.entry-points.issm_emulator]
    myplugin = "my_package.my_module"

The built-in solvers register the same way (entry point ``builtin`` -> :mod:`issm_emulator.plugins.builtin`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    from issm_emulator.solvers.base import Solver

PROJECT_NAME = "issm_emulator"  #: pluggy project name; also the entry-point group
ENTRY_POINT_GROUP = PROJECT_NAME

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def issm_emulator_solvers() -> list[tuple[str, Callable[[], Solver]]]:
    """Solver backends provided by this plugin.

    Returns
    -------
    list of (name, factory)
        ``name`` is the registry name users pass as ``solve(md, ..., solver=name)``; ``factory()`` (called
        lazily, on first use, with no arguments) returns a :class:`issm_emulator.solvers.base.Solver`.
        A class deriving from ``Solver`` is a valid factory. Keep imports of heavy dependencies inside the
        factory so that listing solvers stays cheap.
    """
