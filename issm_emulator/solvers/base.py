"""The contract between :func:`issm_emulator.solve` and a solver backend.

A backend receives a validated :class:`~issm_emulator.state.ModelState` (SI units, read-only) and returns a
:class:`SolverResult`: the output steps ISSM would write, each a mapping from ISSM's output names
(``'Vx'``, ``'Thickness'``, ``'IceVolume'``, ...) to values **in SI units** (m/s, m, m^3, kg/s, ...), plus
``'step'`` (int) and ``'time'`` (s). :mod:`issm_emulator.issm.results` converts them to ISSM's user units
and fills ``md.results``. Backends never see or touch ``md``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from issm_emulator.state import ModelState

TRANSIENT = "TransientSolution"
STRESSBALANCE = "StressbalanceSolution"


@dataclass
class SolverResult:
    """What a backend returns: ISSM output steps in SI units."""

    solution: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  #: timings, iteration counts, solver name...


class Solver(abc.ABC):
    """Base class of solver backends.

    Subclasses set the class attributes and implement :meth:`solve`. A plugin makes a backend known by
    returning ``(name, factory)`` pairs from the ``issm_emulator_solvers`` hook
    (:mod:`issm_emulator.plugins.hookspecs`), where ``factory()`` builds the backend.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    solutions: ClassVar[tuple[str, ...]] = (TRANSIENT, STRESSBALANCE)

    @abc.abstractmethod
    def solve(self, state: ModelState, solution: str, *, device: str | None = None,
              **options: Any) -> SolverResult:
        """Run ``solution`` (``'TransientSolution'`` or ``'StressbalanceSolution'``) on ``state``."""

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise :class:`TypeError` for options this backend does not know (override to accept some)."""
        if options:
            raise TypeError(f"solver {self.name!r} got unknown option(s): {', '.join(sorted(options))}")


def vel(vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Speed from the two velocity components."""
    return np.hypot(vx, vy)
