"""``issm_emulator.solve_ensemble``: many models on one mesh, advanced together.

The members share the mesh (``md.mesh.x``, ``md.mesh.y``, ``md.mesh.elements``) and may differ in
everything else (forcing, geometry, friction, time stepping). With an emulator solver they go through the
network together, one batched forward pass per step (a :class:`torch_geometric.data.Batch` of copies of
the mesh graph); the finite-element mass transport runs per member. Other solvers (``fem``, plugins without
batched solves) are run member by member with the same all-or-nothing guarantee.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError, SolverError, UnknownSolutionError
from issm_emulator.solvers.base import Solver, SolverResult

__all__ = ["solve_ensemble"]


def _same_mesh(states: Sequence[Any]) -> None:
    ref = states[0].mesh
    for m, st in enumerate(states[1:], start=1):
        mesh = st.mesh
        for name in ("x", "y", "elements"):
            a, b = getattr(ref, name), getattr(mesh, name)
            if a.shape != b.shape or not np.array_equal(a, b):
                raise ModelInputError(
                    "md.mesh", f"the same mesh for every ensemble member (md.mesh.{name} of member {m} "
                    f"differs from member 0's); solve members on different meshes separately",
                    f"shape {b.shape} vs {a.shape}" if a.shape != b.shape else "different values")


def solve_ensemble(mds: Sequence[Any], solution: str = "Transient", *, solver: str | Solver = "egcn",
                   device: Any = None, check_consistency: bool = True, runtime_name: bool = True,
                   no_log: bool = False, registry: Any = None, **options: Any) -> list[Any]:
    """Solve several pyISSM models on the same mesh together, as :func:`issm_emulator.solve` would each.

    Parameters
    ----------
    mds : sequence of pyissm.model.Model
        The members; same ``md.mesh`` (x, y, elements), any forcing.
    solution : str
        ``'Transient'`` (default) or ``'Stressbalance'`` (any spelling :func:`issm_emulator.solve` accepts).
    solver : str or Solver
        Registered name (default ``'egcn'``) or a backend instance. Emulators (``'egcn'``, ``'gcn'``,
        ``'cnn'``) batch the members' forward passes; other backends solve the members one by one.
    device : str or torch.device, optional
        As :func:`issm_emulator.solve` (default CUDA when available).
    check_consistency, runtime_name, no_log, registry
        As :func:`issm_emulator.solve`.
    **options
        Passed to the backend (``mode``, ``checkpoint``, ``batch_size``...).

    Returns
    -------
    list of md
        The same objects, each with ``md.results.<Solution>`` filled exactly as :func:`issm_emulator.solve`
        fills it. All or nothing: if any member fails (bad input, divergence), no ``md`` is modified.

    Raises
    ------
    ModelInputError
        A member's mesh differs (names ``md.mesh``), or a member's fields are invalid.
    EmulatorDivergedError, SolverError, UnknownSolverError, UnsupportedOptionError
    """
    from issm_emulator.api import _pyissm_consistency, _runtime_name, resolve_device
    from issm_emulator.issm.adapter import read_model
    from issm_emulator.issm.results import _check_sizes, build_solution, fill_results
    from issm_emulator.issm.solutions import parse_solution
    from issm_emulator.plugins.manager import get_registry

    mds = list(mds)
    if not mds:
        return []
    sol = parse_solution(solution)
    if isinstance(solver, Solver):
        backend, name = solver, solver.name or type(solver).__name__
    elif isinstance(solver, str):
        backend, name = (registry if registry is not None else get_registry()).get(solver), solver
    else:
        raise TypeError(f"solver: expected a registered solver name or a Solver instance, got "
                        f"{type(solver).__name__}")
    if sol not in tuple(backend.solutions):
        raise UnknownSolutionError(f"solver {name!r} does not implement {sol}; it implements "
                                   f"{', '.join(backend.solutions) or 'nothing'}")
    dev = resolve_device(device, backend)

    states = []
    for m, md in enumerate(mds):
        try:
            states.append(read_model(md, sol))
            if check_consistency:
                _pyissm_consistency(md, sol)
        except ModelInputError as err:
            raise ModelInputError(err.field, f"{err.expected} (ensemble member {m})", err.got) from err
    _same_mesh(states)

    t0 = time.perf_counter()
    solve_many = getattr(backend, "solve_many", None)
    if callable(solve_many):
        results = solve_many(states, sol, device=dev, **options)
    else:
        results = [backend.solve(st, sol, device=dev, **options) for st in states]
    wall = time.perf_counter() - t0
    if len(results) != len(states):
        raise SolverError(f"solver {name!r} returned {len(results)} results for {len(states)} ensemble members")
    info = {"solver": name, "solver_version": str(backend.version), "device": dev,
            "wall_time_s": round(wall, 6), "ensemble_size": len(states)}
    final = []
    for m, (res, st, md) in enumerate(zip(results, states, mds)):
        if not isinstance(res, SolverResult) or res.solution != sol:
            raise SolverError(f"solver {name!r} returned {type(res).__name__} for ensemble member {m}, expected "
                              f"a {sol} SolverResult")
        res = SolverResult(res.solution, res.steps, {**info, "ensemble_member": m, **res.info})
        _check_sizes(build_solution(res, st.yts, log=not no_log), md)  # everything checked before any md
        final.append(res)
    for res, st, md in zip(final, states, mds):
        runtimename = _runtime_name(md, runtime_name)
        fill_results(md, res, st.yts, log=not no_log)
        private = getattr(md, "private", None)
        if private is not None and hasattr(private, "runtimename"):
            private.runtimename = runtimename
    return mds
