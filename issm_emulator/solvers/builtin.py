"""issm-emulator's built-in solvers, registered through the entry point ``builtin`` like any plugin.

``fem``: the reference finite-element solver (:class:`issm_emulator.solvers.fem.FEMSolver`), imported
only when first used.
"""

from __future__ import annotations

from collections.abc import Callable

from issm_emulator.plugins.hookspecs import hookimpl
from issm_emulator.solvers.base import Solver


def _fem_factory() -> Solver:
    from issm_emulator.solvers.fem import FEMSolver

    return FEMSolver()


@hookimpl
def issm_emulator_solvers() -> list[tuple[str, Callable[[], Solver]]]:
    """The built-in solvers as ``(name, factory)`` pairs."""
    return [("fem", _fem_factory)]
