"""``fem``: the reference finite-element solver (ISSM's SSA transient, re-implemented in numpy/scipy).

One transient step (ISSM's ``transient_core``), from time ``t`` to ``t + dt``:

1. SMB (prescribed ``md.smb.mass_balance``, evaluated at ``t + dt``);
2. stress balance (SSA, :func:`issm_emulator.physics.ssa.solve_ssa`) on the geometry at the start of the
   step, warm-started from the previous velocities; ``Pressure = rho_i g H`` from that geometry;
3. moving front (``md.transient.ismovingfront``, :func:`issm_emulator.physics.levelset.advance_front`) with
   the step's velocities and the start-of-step thickness and base: new ``MaskIceLevelset``; velocities and
   thickness extrapolated into the ice-free area (output ``Vx``/``Vy`` are the extrapolated ones, ``Vel``
   the stress balance's, as ISSM archives them); elements without ice then drop out of mass transport (and
   of the next stress balance), and vertices of no ice element get ``masstransport.min_thickness`` before
   the geometry update;
4. basal melt (:mod:`issm_emulator.physics.melt`) from the geometry at the start of the step, mass
   transport and the hydrostatic geometry update (:mod:`issm_emulator.physics.masstransport`);
5. grounding-line migration (:mod:`issm_emulator.physics.groundingline`);
6. outputs, every ``md.settings.output_frequency`` steps, at the first and at the last step; flux gates
   (``MassFlux<N>``, :func:`issm_emulator.physics.diagnostics.mass_flux`) use the thickness at the end of
   the step and the step's velocities, as ISSM's outputs do.

Time stepping: ``t <- t + dt`` while ``t < final_time - yts eps``; a last step that would pass
``final_time`` is shortened to end on it.
"""

from __future__ import annotations

import time as _time
import warnings
from typing import Any, ClassVar

import numpy as np

from issm_emulator.errors import ModelInputError, SolverDivergedError, SolverError
from issm_emulator.physics import diagnostics, groundingline, masks, masstransport, melt
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.physics.levelset import advance_front, ice_free_thickness
from issm_emulator.solvers.base import STRESSBALANCE, TRANSIENT, Solver, SolverResult, vel
from issm_emulator.state import ModelState

_EPS = float(np.finfo(float).eps)
_VECTOR_OUTPUTS = ("Vx", "Vy", "Vel", "Pressure", "Thickness", "Surface", "Base", "MaskOceanLevelset",
                   "MaskIceLevelset", "StressbalanceConvergenceNumSteps", "BasalforcingsFloatingiceMeltingRate",
                   "BasalforcingsGroundediceMeltingRate", "SmbMassBalance", "Bed")
_STRESS_OUTPUTS = ("DeviatoricStressxx", "DeviatoricStressyy", "DeviatoricStressxy")
#: outputs of the moving-front core (ISSM names; computed only when ``md.transient.ismovingfront``)
_FRONT_OUTPUTS = ("CalvingCalvingrate", "CalvingMeltingrate", "Calvingratex", "Calvingratey",
                  "StrainRateparallel", "StrainRateperpendicular", "SigmaVM")


def time_steps(start: float, final: float, dt: float, yts: float) -> list[tuple[float, float]]:
    """``(t, dt_k)`` of every step of ISSM's transient loop: end time and length of step k = 1..N."""
    if final > start and not dt > 0.0:
        raise ModelInputError("md.timestepping.time_step", "a positive time step", f"{dt / yts:g} yr")
    out = []
    t = start
    while t < final - yts * _EPS:
        dtk = dt if t + dt <= final else final - t
        t = t + dtk
        out.append((t, dtk))
    return out


class FEMSolver(Solver):
    """ISSM's SSA stress balance and transient (mass transport, grounding line) on P1 triangles.

    Options
    -------
    strict : bool, default False
        Raise :class:`~issm_emulator.errors.SolverDivergedError` when the Picard iteration reaches
        ``md.stressbalance.maxiter`` without meeting the tolerances (ISSM only warns).
    progress : bool, default False
        Show a progress bar over the time steps.
    """

    name: ClassVar[str] = "fem"
    version: ClassVar[str] = "0.1"
    description: ClassVar[str] = "reference finite-element solver (SSA, P1, Picard; ISSM's transient loop)"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    solutions: ClassVar[tuple[str, ...]] = (TRANSIENT, STRESSBALANCE)
    _OPTIONS: ClassVar[tuple[str, ...]] = ("strict", "progress")

    def check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(self._OPTIONS))
        if unknown:
            raise TypeError(f"solver 'fem' got unknown option(s): {', '.join(unknown)}; "
                            f"it accepts {', '.join(self._OPTIONS)}")
        for k in self._OPTIONS:
            if k in options and not isinstance(options[k], (bool, np.bool_)):
                raise TypeError(f"solver 'fem' option {k!r} must be a bool, got {type(options[k]).__name__}")

    def solve(self, state: ModelState, solution: str, *, device: str | None = None,
              **options: Any) -> SolverResult:
        self.check_options(options)
        if device not in (None, "cpu"):
            raise SolverError(f"solver 'fem' runs on the CPU only; device={device!r} is not available")
        strict = bool(options.get("strict", False))
        progress = bool(options.get("progress", False))
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

    @staticmethod
    def _deviatoric(state: ModelState, pmesh: P1Mesh, vx, vy) -> dict[str, np.ndarray]:
        from issm_emulator.physics.ssa import deviatoric_stress

        tau = deviatoric_stress(pmesh, vx, vy, state.materials.rheology_B, state.materials.rheology_n,
                                nodal=True)
        return {"DeviatoricStressxx": np.asarray(tau["xx"]), "DeviatoricStressyy": np.asarray(tau["yy"]),
                "DeviatoricStressxy": np.asarray(tau["xy"])}

    def _stressbalance(self, state: ModelState, strict: bool) -> SolverResult:
        pmesh = P1Mesh.from_mesh(state.mesh)
        g = state.geometry
        res = self._ssa(state, pmesh, H=g.thickness, s=g.surface, b=g.base, phi=state.masks.ocean_levelset,
                        ice=state.masks.ice_levelset, vx=state.vx, vy=state.vy, strict=strict, step=1, t=0.0)
        out: dict[str, Any] = {"step": 1, "time": 0.0, "Vx": res.vx, "Vy": res.vy, "Vel": vel(res.vx, res.vy),
                               "Pressure": state.materials.rho_ice * state.g * np.asarray(g.thickness),
                               "StressbalanceConvergenceNumSteps": int(res.niter)}
        requested = [n for n in state.requested_outputs if n != "default"]
        if any(n in _STRESS_OUTPUTS for n in requested):
            out.update(self._deviatoric(state, pmesh, res.vx, res.vy))
        out.update(_mass_fluxes(state, pmesh, requested, g.thickness, res.vx, res.vy))
        _warn_unsupported([n for n in requested if n not in _STRESS_OUTPUTS and n not in out])
        return SolverResult(STRESSBALANCE, [out], {"stressbalance_iterations": [int(res.niter)],
                                                   "converged": [bool(res.converged)]})

    # ------------------------------------------------------------------------------------------------------
    def _transient(self, state: ModelState, strict: bool, progress: bool) -> SolverResult:
        flags = state.transient
        moving = bool(flags.ismovingfront)
        ts = state.timestepping
        yts = state.yts
        steps = time_steps(ts.start_time, ts.final_time, ts.time_step, yts)
        pmesh = P1Mesh.from_mesh(state.mesh)
        elements = pmesh.elements
        mat = state.materials
        rho_i, rho_w, grav = mat.rho_ice, mat.rho_water, state.g
        interp = bool(ts.interp_forcing)
        migration = state.groundingline.migration
        mt = state.masstransport

        H = np.array(state.geometry.thickness, dtype=float)
        s = np.array(state.geometry.surface, dtype=float)
        b = np.array(state.geometry.base, dtype=float)
        bed = np.array(state.geometry.bed, dtype=float)
        phi = np.array(state.masks.ocean_levelset, dtype=float)
        ice = np.array(state.masks.ice_levelset, dtype=float)
        vx = np.array(state.vx, dtype=float)
        vy = np.array(state.vy, dtype=float)

        requested = [n for n in state.requested_outputs if n != "default"]
        scalars = [n for n in requested if n in diagnostics.SCALAR_OUTPUTS + diagnostics.SCALED_OUTPUTS]
        scale_factor = state.extras.get("scale_factor")
        if scale_factor is None:
            dropped = [n for n in scalars if n.endswith("Scaled")]
            if dropped:
                warnings.warn(f"solver 'fem': {', '.join(dropped)} need md.mesh.scale_factor, which the model "
                              "state does not carry; these outputs are skipped", stacklevel=3)
                scalars = [n for n in scalars if n not in dropped]
        gates = state.extras.get("mass_flux_gates", {})
        _warn_unsupported([n for n in requested if n not in scalars and n not in _VECTOR_OUTPUTS
                           and n not in _STRESS_OUTPUTS and not n.endswith("Scaled") and n not in gates
                           and not (moving and n in _FRONT_OUTPUTS)])
        want_fmb = "BasalforcingsFloatingiceMeltingRate" in requested

        out_steps: list[dict[str, Any]] = []
        niters: list[int] = []
        timings = {"stressbalance": 0.0, "masstransport": 0.0, "groundingline": 0.0, "outputs": 0.0}
        front_killed: list[int] = []
        if moving:
            timings["movingfront"] = 0.0
        bar = _progress(len(steps), progress)
        residual = float("nan")
        freq = max(int(state.output_frequency), 1)
        nsteps = len(steps)
        ice_el = masks.ice_elements(elements, ice)
        for k, (t, dt) in enumerate(steps, start=1):
            smb = np.broadcast_to(np.asarray(state.smb.at(t, interp), float), H.shape)
            out: dict[str, Any] = {"step": k, "time": t}
            # 2. stress balance on the geometry at the start of the step
            if flags.isstressbalance:
                c = _time.perf_counter()
                res = self._ssa(state, pmesh, H=H, s=s, b=b, phi=phi, ice=ice, vx=vx, vy=vy, strict=strict,
                                step=k, t=t)
                vx, vy = np.asarray(res.vx, float), np.asarray(res.vy, float)
                residual = float(res.residual)
                niters.append(int(res.niter))
                out.update(Vx=vx.copy(), Vy=vy.copy(), Vel=vel(vx, vy), Pressure=rho_i * grav * H,
                           StressbalanceConvergenceNumSteps=int(res.niter))
                if any(n in _STRESS_OUTPUTS for n in requested):
                    out.update(self._deviatoric(state, pmesh, vx, vy))
                timings["stressbalance"] += _time.perf_counter() - c
            # 3. moving front: new ice level set; vx, vy, H extrapolated into the ice-free area
            if moving:
                c = _time.perf_counter()
                try:
                    fu = advance_front(state, pmesh, ice_levelset=ice, vx=vx, vy=vy, thickness=H, base=b, bed=bed,
                                       ocean_levelset=phi, dt=dt, step=k, time=t)
                except SolverDivergedError as err:
                    raise SolverDivergedError(
                        f"moving front failed at step {k} (t = {t / yts:g} yr): {err}", step=k, time=t / yts,
                        residual=residual) from err
                ice, H, vx, vy = fu.ice_levelset, fu.thickness, fu.vx, fu.vy
                ice_el = masks.ice_elements(elements, ice)
                if not ice_el.any():
                    raise SolverError(f"solver 'fem': no ice left at step {k} (t = {t / yts:g} yr): the calving "
                                      "front has removed every ice element")
                front_killed.append(int(fu.icebergs_removed))
                if "Vx" in out:  # ISSM outputs the extrapolated velocities, but Vel from the stress balance
                    out.update(Vx=vx.copy(), Vy=vy.copy())
                out["MaskIceLevelset"] = ice.copy()
                front_out = {"CalvingCalvingrate": fu.calving_rate, "CalvingMeltingrate": fu.frontal_melt_rate,
                             "Calvingratex": fu.calving_rate_x, "Calvingratey": fu.calving_rate_y, **fu.extras}
                out.update({n: np.array(front_out[n], dtype=float) for n in requested if n in front_out})
                timings["movingfront"] += _time.perf_counter() - c
            # 4. basal melt + mass transport + geometry update
            fmb = melt.floating_melt_rate(state, t, base=b, bed=bed)
            gmb = melt.grounded_melt_rate(state, t)
            gfrac = masks.grounded_portion(elements, phi)
            if flags.ismasstransport:
                c = _time.perf_counter()
                spc = np.asarray(mt.spcthickness.at(t, interp), float)
                try:
                    mres = masstransport.solve_thickness(
                        pmesh, thickness=H, vx=vx, vy=vy, dt=dt, smb=smb, groundedice_melt=gmb,
                        floatingice_melt=fmb, grounded_fraction=gfrac, ice_elements=ice_el, spcthickness=spc,
                        min_thickness=mt.min_thickness, stabilization=mt.stabilization,
                        melt_interpolation=state.groundingline.melt_interpolation)
                except SolverDivergedError as err:
                    raise SolverDivergedError(
                        f"mass transport diverged at step {k} (t = {t / yts:g} yr); last stress-balance "
                        f"residual {residual:.3g}", step=k, time=t / yts, residual=residual) from err
                H_old = H
                H = mres.thickness
                if moving:  # vertices of no ice element: masstransport.min_thickness
                    H = ice_free_thickness(H, ice, elements, mt.min_thickness)
                b, s = masstransport.update_geometry(
                    H, base=b, surface=s, ocean_levelset=phi, rho_ice=rho_i, rho_water=rho_w,
                    sealevel=state.sealevel, bed=bed, isgroundingline=bool(flags.isgroundingline),
                    hydrostatic_adjustment=mt.hydrostatic_adjustment, old_thickness=H_old)
                out.update(Thickness=H.copy(), Surface=s.copy(), Base=b.copy())
                timings["masstransport"] += _time.perf_counter() - c
            # 5. grounding-line migration
            if flags.isgroundingline:
                c = _time.perf_counter()
                mig = groundingline.migrate(migration, elements=elements, thickness=H, base=b, surface=s,
                                            bed=bed, ocean_levelset=phi, rho_ice=rho_i, rho_water=rho_w,
                                            sealevel=state.sealevel)
                b, s, phi = mig.base, mig.surface, mig.ocean_levelset
                out.update(Surface=s.copy(), Base=b.copy(), MaskOceanLevelset=phi.copy())
                timings["groundingline"] += _time.perf_counter() - c
            for name, arr in (("Thickness", H), ("Surface", s), ("Base", b)):
                if not np.all(np.isfinite(arr)):
                    raise SolverDivergedError(f"NaN/inf in {name} at step {k} (t = {t / yts:g} yr); last "
                                              f"stress-balance residual {residual:.3g}", step=k, time=t / yts,
                                              residual=residual)
            # 6. outputs
            if k % freq == 0 or k == 1 or k == nsteps:
                c = _time.perf_counter()
                if want_fmb:
                    out["BasalforcingsFloatingiceMeltingRate"] = fmb.copy()
                for name in requested:
                    if name in out or name in scalars:
                        continue
                    extra = {"Thickness": H, "Surface": s, "Base": b, "MaskOceanLevelset": phi,
                             "Bed": bed, "SmbMassBalance": smb, "BasalforcingsGroundediceMeltingRate": gmb,
                             "Vx": vx, "Vy": vy, "MaskIceLevelset": ice}.get(name)
                    if extra is not None:
                        out[name] = np.array(extra, dtype=float)
                    elif name == "Vel":
                        out[name] = vel(vx, vy)
                if scalars:
                    gfrac_now = masks.grounded_portion(elements, phi)
                    d = diagnostics.DiagnosticInputs(
                        thickness=H, surface=s, base=b, bed=bed, grounded_fraction=gfrac_now,
                        floating_elements=masks.floating_elements(elements, phi, migration),
                        ice_elements=ice_el, smb=smb, groundedice_melt=gmb, floatingice_melt=fmb,
                        rho_ice=rho_i, rho_water=rho_w, scale_factor=scale_factor)
                    for name in scalars:
                        out[name] = diagnostics.compute(name, pmesh, d)
                out.update(_mass_fluxes(state, pmesh, requested, H, vx, vy))
                out_steps.append(out)
                timings["outputs"] += _time.perf_counter() - c
            bar.update(1)
        bar.close()
        info = {"nsteps": nsteps, "stressbalance_iterations": niters, "timings_s": timings}
        if moving:
            info["icebergs_removed"] = front_killed
        return SolverResult(TRANSIENT, out_steps, info)


def _mass_fluxes(state: ModelState, pmesh: P1Mesh, requested: list[str], thickness: np.ndarray,
                 vx: np.ndarray, vy: np.ndarray) -> dict[str, float]:
    """The requested flux-gate outputs (``massfluxatgate`` definitions read by the adapter), kg/s."""
    gates = state.extras.get("mass_flux_gates", {})
    return {name: diagnostics.mass_flux(pmesh, gates[name], thickness, vx, vy, state.materials.rho_ice)
            for name in requested if name in gates}


def _warn_unsupported(names: list[str]) -> None:
    if names:
        warnings.warn(f"solver 'fem' does not compute the requested output(s) {', '.join(names)}; they are "
                      "skipped", stacklevel=4)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fem transient", unit="step")
