"""issm-emulator's built-in solvers, registered through the entry point ``builtin`` like any plugin.

``fem``: the reference finite-element solver (:class:`issm_emulator.solvers.fem.FEMSolver`), imported
only when first used.
``egcn``, ``gcn``, ``cnn``: the neural emulators (:mod:`issm_emulator.solvers.emulator`).
"""

from __future__ import annotations

from collections.abc import Callable

from issm_emulator.plugins.hookspecs import hookimpl
from issm_emulator.solvers.base import Solver


def _fem_factory() -> Solver:
    from issm_emulator.solvers.fem import FEMSolver

    return FEMSolver()


def _emulator_factory(name: str) -> Callable[[], Solver]:
    def factory() -> Solver:
        from issm_emulator.solvers.emulator import EMULATORS

        return EMULATORS[name]()

    factory.__name__ = f"_{name}_factory"
    return factory


@hookimpl
def issm_emulator_solvers() -> list[tuple[str, Callable[[], Solver]]]:
    """The built-in solvers as ``(name, factory)`` pairs."""
    return [("fem", _fem_factory), *((name, _emulator_factory(name)) for name in ("egcn", "gcn", "cnn"))]
