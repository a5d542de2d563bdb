"""issm-emulator: a graph-neural-network surrogate and a reference finite-element solver for ISSM.

Drop-in use in a pyISSM script::

    import issm_emulator
    md = issm_emulator.solve(md, 'Transient')            # instead of pyissm.model.execute.solve

Where things live: ISSM glue (reading ``md``, filling ``md.results``, ISSM file formats, ISSM's set-up
helpers) in :mod:`issm_emulator.issm`; the physics (finite elements, SSA, mass transport, grounding line)
in :mod:`issm_emulator.physics`; solver backends in :mod:`issm_emulator.solvers`; the plugin registry in
:mod:`issm_emulator.plugins`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from issm_emulator.errors import (
    DataUnavailableError,
    DuplicateSolverError,
    EmulatorDivergedError,
    ExtrapolationWarning,
    FallbackWarning,
    IssmEmulatorError,
    ModelInputError,
    OutOfDomainError,
    SolverDivergedError,
    UnitError,
    UnknownSolutionError,
    UnknownSolverError,
    UnsupportedOptionError,
)

from issm_emulator._version import __version__

# Public functions are imported lazily so that ``import issm_emulator`` stays cheap (no torch import).
_LAZY = {
    "solve": "issm_emulator.api",
    "solve_info": "issm_emulator.api",
    "solve_ensemble": "issm_emulator.ensemble_api",
    "available_solvers": "issm_emulator.plugins.manager",
    "get_solver": "issm_emulator.plugins.manager",
    "read_model": "issm_emulator.issm.adapter",
    "to_xarray": "issm_emulator.issm.xarray_export",
    "mesh_graph": "issm_emulator.graph",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'issm_emulator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "__version__", "solve", "solve_info", "solve_ensemble", "available_solvers", "get_solver", "read_model", "to_xarray",
    "mesh_graph",
    "DataUnavailableError", "DuplicateSolverError", "EmulatorDivergedError", "ExtrapolationWarning",
    "FallbackWarning", "IssmEmulatorError", "ModelInputError", "OutOfDomainError", "SolverDivergedError", "UnitError", "UnknownSolutionError",
    "UnknownSolverError", "UnsupportedOptionError",
]
