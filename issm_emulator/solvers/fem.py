"""``fem``: the reference finite-element solver (ISSM's SSA transient, re-implemented in numpy/scipy).

The transient is ISSM's ``transient_core`` as implemented once in :mod:`issm_emulator.solvers.transient`
(time schedule, forcing, moving front, mass transport, grounding-line migration, outputs); this solver
supplies its velocity: the SSA stress balance (:func:`issm_emulator.physics.ssa.solve_ssa`, Picard) on the
geometry at the start of each step, warm-started from the previous velocities.
"""

from __future__ import annotations

import time as _time
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from issm_emulator.errors import SolverDivergedError, SolverError
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers.base import STRESSBALANCE, TRANSIENT, Solver, SolverResult
from issm_emulator.solvers.transient import StepGeometry, run_transient, stressbalance_step, time_steps
from issm_emulator.state import ModelState

__all__ = ["FEMSolver", "time_steps"]


class FEMSolver(Solver):
    """ISSM's SSA stress balance and transient (mass transport, grounding line) on P1 triangles.

    Options
    -------
    strict : bool, default False
        Raise :class:`~issm_emulator.errors.SolverDivergedError` when the Picard iteration reaches
        ``md.stressbalance.maxiter`` without meeting the tolerances (ISSM only warns).
    progress : bool, default False
        Show a progress bar over the time steps.
    reinit_distance : {'issm', 'exact'}, default 'issm'
        Distance used to re-initialise the ice level set (and by the minimum-thickness calving rule):
        ISSM's ``DistanceToFieldValue`` rule, which can skip the nearest front segment (parity with ISSM),
        or the exact distance to the zero contour (docs/physics.md, "Re-initialisation distance").
    """

    name: ClassVar[str] = "fem"
    version: ClassVar[str] = "0.1"
    description: ClassVar[str] = "reference finite-element solver (SSA, P1, Picard; ISSM's transient loop)"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    solutions: ClassVar[tuple[str, ...]] = (TRANSIENT, STRESSBALANCE)
    _OPTIONS: ClassVar[tuple[str, ...]] = ("strict", "progress", "reinit_distance")
    _REINIT_DISTANCES: ClassVar[tuple[str, ...]] = ("issm", "exact")

    def check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(self._OPTIONS))
        if unknown:
            raise TypeError(f"solver 'fem' got unknown option(s): {', '.join(unknown)}; "
                            f"it accepts {', '.join(self._OPTIONS)}")
        if "reinit_distance" in options and options["reinit_distance"] not in self._REINIT_DISTANCES:
            raise TypeError(f"solver 'fem' option 'reinit_distance' must be one of {self._REINIT_DISTANCES}, "
                            f"got {options['reinit_distance']!r}")
        for k in ("strict", "progress"):
            if k in options and not isinstance(options[k], (bool, np.bool_)):
                raise TypeError(f"solver 'fem' option {k!r} must be a bool, got {type(options[k]).__name__}")

    def solve(self, state: ModelState, solution: str, *, device: str | None = None,
              **options: Any) -> SolverResult:
        self.check_options(options)
        if device not in (None, "cpu"):
            raise SolverError(f"solver 'fem' runs on the CPU only; device={device!r} is not available")
        strict = bool(options.get("strict", False))
        progress = bool(options.get("progress", False))
        if "reinit_distance" in options:
            state = replace(state, extras={**state.extras, "reinit_distance": options["reinit_distance"]})
        t0 = _time.perf_counter()
        if solution == STRESSBALANCE:
            result = self._stressbalance(state, strict)
        elif solution == TRANSIENT:
            result = self._transient(state, strict, progress)
        else:
            raise SolverError(f"solver 'fem' solves {', '.join(self.solutions)}, not {solution!r}")
        result.info.update(solver=self.name, version=self.version, wall_time_s=_time.perf_counter() - t0)
        return result

    # ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _ssa(state: ModelState, pmesh: P1Mesh, *, H, s, b, phi, ice, vx, vy, strict: bool, step: int,
             t: float):
        from issm_emulator.physics.ssa import solve_ssa

        try:
            res = solve_ssa(state, thickness=H, surface=s, base=b, ocean_levelset=phi, ice_levelset=ice,
                            vx0=vx, vy0=vy, mesh=pmesh, strict=strict)
        except SolverDivergedError as err:
            raise SolverDivergedError(
                f"stress balance failed at step {step} (t = {t / state.yts:g} yr): {err}",
                step=step, time=t / state.yts, residual=err.residual) from err
        if not (np.all(np.isfinite(res.vx)) and np.all(np.isfinite(res.vy))):
            raise SolverDivergedError(
                f"stress balance produced NaN/inf at step {step} (t = {t / state.yts:g} yr); last relative "
                f"residual {res.residual:.3g}", step=step, time=t / state.yts, residual=float(res.residual))
        return res

    def _stressbalance(self, state: ModelState, strict: bool) -> SolverResult:
        pmesh = P1Mesh.from_mesh(state.mesh)
        g = state.geometry
        res = self._ssa(state, pmesh, H=g.thickness, s=g.surface, b=g.base, phi=state.masks.ocean_levelset,
                        ice=state.masks.ice_levelset, vx=state.vx, vy=state.vy, strict=strict, step=1, t=0.0)
        out = stressbalance_step(state, pmesh, res.vx, res.vy, int(res.niter), self.name)
        return SolverResult(STRESSBALANCE, [out], {"stressbalance_iterations": [int(res.niter)],
                                                   "converged": [bool(res.converged)]})

    def _transient(self, state: ModelState, strict: bool, progress: bool) -> SolverResult:
        pmesh = P1Mesh.from_mesh(state.mesh)

        def velocity(st: ModelState, geo: StepGeometry, vx: np.ndarray, vy: np.ndarray, t: float, step: int):
            res = self._ssa(st, pmesh, H=geo.thickness, s=geo.surface, b=geo.base, phi=geo.ocean_levelset,
                            ice=geo.ice_levelset, vx=vx, vy=vy, strict=strict, step=step, t=t)
            return res.vx, res.vy, {"niter": int(res.niter), "residual": float(res.residual)}

        return run_transient(state, velocity, pmesh=pmesh, solver_name=self.name, progress=progress,
                             desc="fem transient")
