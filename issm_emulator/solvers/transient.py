"""ISSM's transient loop (``transient_core``), shared by every backend that steps in time.

One job: advancing a model through ISSM's time steps around a velocity that the backend supplies (the
schedule, forcing, front, mass transport, migration and outputs of each step all belong to that job).

A backend supplies only the velocity of each step (a *velocity provider*); everything else, the time
schedule, the forcing, the moving front, mass transport, grounding-line migration and the outputs, is
here, so the ``fem`` solver (velocity from :func:`issm_emulator.physics.ssa.solve_ssa`) and the emulator's
step mode (velocity from a network, batched over ensemble members) run the same loop. One step from ``t``
to ``t + dt`` (:class:`TransientRun`):

1. forcing at ``t + dt``: SMB (``md.smb.mass_balance``), floating-ice melt from the geometry at the start
   of the step (:mod:`issm_emulator.physics.melt`), grounded-ice melt;
2. velocity from the provider, on the geometry and masks at the start of the step, warm-started from the
   previous velocity; ``Pressure = rho_i g H`` from the start-of-step thickness;
3. moving front (``md.transient.ismovingfront``, :func:`front_step`): new ``MaskIceLevelset``; velocity
   and thickness extrapolated into the ice-free area (output ``Vx``/``Vy`` are the extrapolated ones,
   ``Vel`` the provider's, as ISSM archives them);
4. mass transport ``dH/dt + div(H u) = m_s - m_b`` and the hydrostatic geometry update
   (:func:`mass_transport_step`); vertices of no ice element get ``md.masstransport.min_thickness``
   before the update (ISSM's inactive nodes);
5. grounding-line migration (:func:`migration_step`);
6. outputs (:func:`assemble_outputs`) every ``md.settings.output_frequency`` steps, at the first and at
   the last step (:func:`transient_schedule`); flux gates (``MassFlux<N>``) use the thickness at the end of
   the step and the step's velocities, as ISSM's outputs do.

Time stepping (:func:`time_steps`): ``t <- t + dt`` while ``t < final_time - yts eps``; a last step that
would pass ``final_time`` is shortened to end on it.

This module lives in :mod:`issm_emulator.solvers` rather than :mod:`issm_emulator.physics` because it is
solver orchestration, not a physical process: it knows ISSM's output names and step rules and returns
:class:`~issm_emulator.solvers.base.SolverResult`; the processes it calls stay in ``physics``.
"""

from __future__ import annotations

import time as _time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from issm_emulator.errors import ModelInputError, SolverDivergedError, SolverError
from issm_emulator.physics import diagnostics, groundingline, masks, masstransport, melt
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.physics.levelset import FrontUpdate, advance_front, ice_free_thickness
from issm_emulator.progress import progress_bar
from issm_emulator.solvers.base import STRESSBALANCE, TRANSIENT, SolverResult, vel
from issm_emulator.state import ModelState

__all__ = [
    "FRONT_OUTPUTS",
    "STRESS_OUTPUTS",
    "VECTOR_OUTPUTS",
    "RequestedOutputs",
    "StepForcing",
    "StepGeometry",
    "TransientFields",
    "TransientRun",
    "TransientStep",
    "VelocityRequest",
    "assemble_outputs",
    "deviatoric_stresses",
    "floating_elements",
    "front_step",
    "grounded_portion",
    "has_floating_melt",
    "mass_fluxes",
    "mass_transport_step",
    "migration_step",
    "progress_bar",
    "run_transient",
    "run_transient_many",
    "step_forcing",
    "stressbalance_step",
    "time_steps",
    "transient_schedule",
]

_EPS = float(np.finfo(float).eps)

#: vertex (and per-step) outputs of the transient, ISSM names
VECTOR_OUTPUTS = ("Vx", "Vy", "Vel", "Pressure", "Thickness", "Surface", "Base", "MaskOceanLevelset",
                  "MaskIceLevelset", "StressbalanceConvergenceNumSteps",
                  "BasalforcingsFloatingiceMeltingRate", "BasalforcingsGroundediceMeltingRate",
                  "SmbMassBalance", "Bed")
#: nodal deviatoric stresses (computed from the step's velocity when one of them is requested)
STRESS_OUTPUTS = ("DeviatoricStressxx", "DeviatoricStressyy", "DeviatoricStressxy")
#: outputs of the moving-front core (computed only when ``md.transient.ismovingfront``)
FRONT_OUTPUTS = ("CalvingCalvingrate", "CalvingMeltingrate", "Calvingratex", "Calvingratey",
                 "StrainRateparallel", "StrainRateperpendicular", "SigmaVM")


# ----------------------------------------------------------------------------------------------------------
# time schedule
# ----------------------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class TransientStep:
    """One step of the schedule: 1-based ``step``, end ``time`` and length ``dt`` (s), and whether ISSM
    writes an output step for it."""

    step: int
    time: float
    dt: float
    output: bool


def transient_schedule(state: ModelState) -> list[TransientStep]:
    """The steps of ``state``'s transient (:func:`time_steps`); ``output`` every ``output_frequency``
    steps, at the first and at the last."""
    ts = state.timestepping
    steps = time_steps(ts.start_time, ts.final_time, ts.time_step, state.yts)
    freq = max(int(state.output_frequency), 1)
    n = len(steps)
    return [TransientStep(k, t, dt, k % freq == 0 or k == 1 or k == n)
            for k, (t, dt) in enumerate(steps, start=1)]


# ----------------------------------------------------------------------------------------------------------
# fields and forcing
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TransientFields:
    """The fields a transient evolves (SI, ``(nv,)`` float64), and the mask of elements holding ice."""

    thickness: np.ndarray
    surface: np.ndarray
    base: np.ndarray
    bed: np.ndarray
    ocean_levelset: np.ndarray
    ice_levelset: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    ice_elements: np.ndarray  #: (ne,) bool
    spclevelset: np.ndarray | None = None  #: dynamic level-set constraints (None: as the state gives them)

    @classmethod
    def initial(cls, state: ModelState, elements: np.ndarray) -> TransientFields:
        """Writable copies of the state's initial fields."""
        g = state.geometry
        ice = np.array(state.masks.ice_levelset, dtype=float)
        return cls(thickness=np.array(g.thickness, dtype=float), surface=np.array(g.surface, dtype=float),
                   base=np.array(g.base, dtype=float), bed=np.array(g.bed, dtype=float),
                   ocean_levelset=np.array(state.masks.ocean_levelset, dtype=float), ice_levelset=ice,
                   vx=np.array(state.vx, dtype=float), vy=np.array(state.vy, dtype=float),
                   ice_elements=masks.ice_elements(elements, ice))


@dataclass(frozen=True)
class StepForcing:
    """Forcing of one step (m/s ice equivalent, ``(nv,)``)."""

    smb: np.ndarray
    floatingice_melt: np.ndarray
    groundedice_melt: np.ndarray


@dataclass(frozen=True)
class StepGeometry:
    """What a velocity provider sees: geometry and masks at the start of the step, and the step's forcing."""

    thickness: np.ndarray
    surface: np.ndarray
    base: np.ndarray
    bed: np.ndarray
    ocean_levelset: np.ndarray
    ice_levelset: np.ndarray
    forcing: StepForcing


def has_floating_melt(state: ModelState) -> bool:
    """Whether the model defines a floating-ice melt (a parameterisation or a prescribed field)."""
    bf = state.basalforcings
    return bf.kind in ("linear", "mismip") or bf.floatingice_melting_rate is not None


def step_forcing(state: ModelState, t: float, fields: TransientFields) -> StepForcing:
    """SMB, floating-ice melt (from the current base) and grounded-ice melt at time ``t``.

    The floating-ice melt is required (a clear error names the md field otherwise) when the thickness
    evolves; without mass transport a model that defines none gets zero.
    """
    interp = bool(state.timestepping.interp_forcing)
    smb = np.broadcast_to(np.asarray(state.smb.at(t, interp), float), fields.thickness.shape)
    if state.transient.ismasstransport or has_floating_melt(state):
        fmb = melt.floating_melt_rate(state, t, base=fields.base, bed=fields.bed)
    else:
        fmb = np.zeros_like(fields.thickness)
    return StepForcing(smb=smb, floatingice_melt=fmb, groundedice_melt=melt.grounded_melt_rate(state, t))


# ----------------------------------------------------------------------------------------------------------
# the processes of one step
# ----------------------------------------------------------------------------------------------------------
def front_step(state: ModelState, pmesh: P1Mesh, fields: TransientFields, *, time: float, dt: float,
               step: int) -> tuple[TransientFields, FrontUpdate]:
    """Moving front (:func:`~issm_emulator.physics.levelset.advance_front`) with the step's velocity and the
    start-of-step thickness and base: new ice level set and ice elements; velocity and thickness
    extrapolated into the ice-free area. Raises :class:`SolverDivergedError` from the level-set solve."""
    f = fields
    fu = advance_front(state, pmesh, ice_levelset=f.ice_levelset, vx=f.vx, vy=f.vy, thickness=f.thickness,
                       base=f.base, bed=f.bed, ocean_levelset=f.ocean_levelset, dt=dt, step=step, time=time,
                       spclevelset=f.spclevelset)
    new = replace(f, ice_levelset=fu.ice_levelset, thickness=fu.thickness, vx=fu.vx, vy=fu.vy,
                  ice_elements=masks.ice_elements(pmesh.elements, fu.ice_levelset), spclevelset=fu.spclevelset)
    return new, fu


def grounded_portion(pmesh: P1Mesh, ocean_levelset: np.ndarray) -> np.ndarray:
    """(ne,) :func:`~issm_emulator.physics.masks.grounded_portion`, memoised on the mesh
    (:meth:`P1Mesh.memo`): a step's outputs and the next step's mass transport see the same ocean level
    set. Read-only."""
    L = np.asarray(ocean_levelset, float)

    def compute() -> np.ndarray:
        out = masks.grounded_portion(pmesh.elements, L)
        out.setflags(write=False)
        return out

    return pmesh.memo("grounded_portion", (L,), compute, keep=2)


def floating_elements(pmesh: P1Mesh, ocean_levelset: np.ndarray, migration: str) -> np.ndarray:
    """(ne,) :func:`~issm_emulator.physics.masks.floating_elements`, memoised on the mesh. Read-only."""
    L = np.asarray(ocean_levelset, float)

    def compute() -> np.ndarray:
        out = masks.floating_elements(pmesh.elements, L, migration)
        out.setflags(write=False)
        return out

    return pmesh.memo(("floating_elements", migration), (L,), compute, keep=1)


def mass_transport_step(state: ModelState, pmesh: P1Mesh, fields: TransientFields, forcing: StepForcing, *,
                        time: float, dt: float,
                        linear_solver: masstransport.TransportLinearSolver | None = None) -> TransientFields:
    """Mass transport over ``dt`` with the fields' velocity, then the hydrostatic geometry update.

    Implicit Euler, P1 (:func:`~issm_emulator.physics.masstransport.solve_thickness`) on the ice elements,
    ``md.masstransport.spcthickness`` at ``time`` imposed; vertices of no ice element get
    ``min_thickness`` (with or without a moving front, as ISSM); base and surface from
    :func:`~issm_emulator.physics.masstransport.update_geometry`. Raises :class:`SolverDivergedError`
    when the sparse solve fails. ``linear_solver``: the transient's
    :class:`~issm_emulator.physics.masstransport.TransportLinearSolver` (None: direct solve).
    """
    mt = state.masstransport
    mat = state.materials
    f = fields
    e = pmesh.elements
    spc = np.asarray(mt.spcthickness.at(time, bool(state.timestepping.interp_forcing)), float)
    mres = masstransport.solve_thickness(
        pmesh, thickness=f.thickness, vx=f.vx, vy=f.vy, dt=dt, smb=forcing.smb,
        groundedice_melt=forcing.groundedice_melt, floatingice_melt=forcing.floatingice_melt,
        grounded_fraction=grounded_portion(pmesh, f.ocean_levelset), ice_elements=f.ice_elements,
        spcthickness=spc, min_thickness=mt.min_thickness, stabilization=mt.stabilization,
        melt_interpolation=state.groundingline.melt_interpolation, linear_solver=linear_solver)
    # vertices of no ice element (inactive nodes: ISSM's solution is 0 there, then floored) get
    # masstransport.min_thickness, with or without a moving front (#15 item 8)
    H = ice_free_thickness(mres.thickness, f.ice_levelset, e, mt.min_thickness)
    b, s = masstransport.update_geometry(
        H, base=f.base, surface=f.surface, ocean_levelset=f.ocean_levelset, rho_ice=mat.rho_ice,
        rho_water=mat.rho_water, sealevel=state.sealevel, bed=f.bed,
        isgroundingline=bool(state.transient.isgroundingline),
        hydrostatic_adjustment=mt.hydrostatic_adjustment, old_thickness=f.thickness)
    return replace(f, thickness=H, base=b, surface=s)


def migration_step(state: ModelState, elements: np.ndarray, fields: TransientFields) -> TransientFields:
    """Grounding-line migration (``md.groundingline.migration``): new base, surface and ocean level set."""
    mat = state.materials
    f = fields
    mig = groundingline.migrate(state.groundingline.migration, elements=elements, thickness=f.thickness,
                                base=f.base, surface=f.surface, bed=f.bed, ocean_levelset=f.ocean_levelset,
                                rho_ice=mat.rho_ice, rho_water=mat.rho_water, sealevel=state.sealevel)
    return replace(f, base=mig.base, surface=mig.surface, ocean_levelset=mig.ocean_levelset)


# ----------------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------------
def mass_fluxes(state: ModelState, pmesh: P1Mesh, requested: Sequence[str], thickness: np.ndarray,
                vx: np.ndarray, vy: np.ndarray) -> dict[str, float]:
    """The requested flux-gate outputs (``massfluxatgate`` definitions read by the adapter), kg/s."""
    gates = state.extras.get("mass_flux_gates", {})
    return {name: diagnostics.mass_flux(pmesh, gates[name], thickness, vx, vy, state.materials.rho_ice)
            for name in requested if name in gates}


def deviatoric_stresses(state: ModelState, pmesh: P1Mesh, vx: np.ndarray,
                        vy: np.ndarray) -> dict[str, np.ndarray]:
    """Nodal ``DeviatoricStressxx/yy/xy`` (Pa) of the velocity
    (:func:`~issm_emulator.physics.ssa.deviatoric_stress`)."""
    from issm_emulator.physics.ssa import deviatoric_stress

    mat = state.materials
    tau = deviatoric_stress(pmesh, vx, vy, mat.rheology_B, mat.rheology_n, nodal=True)
    return {"DeviatoricStressxx": np.asarray(tau["xx"]), "DeviatoricStressyy": np.asarray(tau["yy"]),
            "DeviatoricStressxy": np.asarray(tau["xy"])}


def _warn_skipped(solver_name: str, names: list[str]) -> None:
    if names:
        warnings.warn(f"solver {solver_name!r} does not compute the requested output(s) {', '.join(names)}; "
                      "they are skipped", stacklevel=5)


class RequestedOutputs:
    """The outputs a state requests (``requested_outputs`` without ``'default'``), sorted by how they are
    computed; warns once about those no solver here computes and about ``*Scaled`` outputs without
    ``md.mesh.scale_factor``.

    Attributes
    ----------
    requested : list of requested names
    scalars : the scalar diagnostics (:mod:`issm_emulator.physics.diagnostics`) to compute
    want_stress : whether a deviatoric stress is requested
    scale_factor : ``md.mesh.scale_factor`` or None
    """

    def __init__(self, state: ModelState, pmesh: P1Mesh, solver_name: str, solution: str = TRANSIENT,
                 extra_outputs: Sequence[str] = ()):
        self.state = state
        self.pmesh = pmesh
        self.solver_name = solver_name
        self.requested = [n for n in state.requested_outputs if n != "default"]
        self.want_stress = any(n in STRESS_OUTPUTS for n in self.requested)
        self.scale_factor = state.extras.get("scale_factor")
        self.front_fluxes: list[str] = []
        if solution == STRESSBALANCE:
            self.scalars: list[str] = []
            return  # the stress balance warns once its output step is known
        scalars = [n for n in self.requested if n in diagnostics.SCALAR_OUTPUTS + diagnostics.SCALED_OUTPUTS]
        if self.scale_factor is None:
            dropped = [n for n in scalars if n.endswith("Scaled")]
            if dropped:
                warnings.warn(f"solver {solver_name!r}: {', '.join(dropped)} need md.mesh.scale_factor, "
                              "which the model state does not carry; these outputs are skipped", stacklevel=5)
                scalars = [n for n in scalars if n not in dropped]
        self.scalars = scalars
        gates = state.extras.get("mass_flux_gates", {})
        moving = bool(state.transient.ismovingfront)
        known = set(scalars) | set(VECTOR_OUTPUTS) | set(STRESS_OUTPUTS) | set(gates) | set(extra_outputs)
        self.front_fluxes = [n for n in self.requested if n in diagnostics.FRONT_FLUX_OUTPUTS] if moving else []
        if moving:
            known |= set(FRONT_OUTPUTS) | set(diagnostics.FRONT_FLUX_OUTPUTS)
        _warn_skipped(solver_name, [n for n in self.requested if n not in known and not n.endswith("Scaled")])

    def stresses(self, vx: np.ndarray, vy: np.ndarray) -> dict[str, np.ndarray]:
        """The deviatoric stresses when one is requested, else nothing."""
        return deviatoric_stresses(self.state, self.pmesh, vx, vy) if self.want_stress else {}

    def fluxes(self, thickness: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> dict[str, float]:
        return mass_fluxes(self.state, self.pmesh, self.requested, thickness, vx, vy)


def assemble_outputs(outputs: RequestedOutputs, out: dict[str, Any], fields: TransientFields,
                     forcing: StepForcing) -> dict[str, Any]:
    """Complete an output step ``out`` (which already holds what the step computed) with the requested
    vertex fields of ``fields``/``forcing``, the scalar diagnostics and the flux gates; returns ``out``."""
    st = outputs.state
    f = fields
    if "BasalforcingsFloatingiceMeltingRate" in outputs.requested:
        out["BasalforcingsFloatingiceMeltingRate"] = np.array(forcing.floatingice_melt, dtype=float)
    table = {"Thickness": f.thickness, "Surface": f.surface, "Base": f.base,
             "MaskOceanLevelset": f.ocean_levelset, "Bed": f.bed, "SmbMassBalance": forcing.smb,
             "BasalforcingsGroundediceMeltingRate": forcing.groundedice_melt, "Vx": f.vx, "Vy": f.vy,
             "MaskIceLevelset": f.ice_levelset}
    for name in outputs.requested:
        if name in out or name in outputs.scalars:
            continue
        if name in table:
            out[name] = np.array(table[name], dtype=float)
        elif name == "Vel":
            out[name] = vel(f.vx, f.vy)
    if outputs.scalars:
        d = diagnostics.DiagnosticInputs(
            thickness=f.thickness, surface=f.surface, base=f.base, bed=f.bed,
            grounded_fraction=grounded_portion(outputs.pmesh, f.ocean_levelset),
            floating_elements=floating_elements(outputs.pmesh, f.ocean_levelset, st.groundingline.migration),
            ice_elements=f.ice_elements, smb=forcing.smb, groundedice_melt=forcing.groundedice_melt,
            floatingice_melt=forcing.floatingice_melt, rho_ice=st.materials.rho_ice,
            rho_water=st.materials.rho_water, scale_factor=outputs.scale_factor,
            ice_levelset=f.ice_levelset, ocean_levelset=f.ocean_levelset)
        for name in outputs.scalars:
            out[name] = diagnostics.compute(name, outputs.pmesh, d)
    out.update(outputs.fluxes(f.thickness, f.vx, f.vy))
    return out


def stressbalance_step(state: ModelState, pmesh: P1Mesh, vx: np.ndarray, vy: np.ndarray, niter: int,
                       solver_name: str) -> dict[str, Any]:
    """The one output step of a ``StressbalanceSolution``: ``Vx, Vy, Vel, Pressure``, the iteration count,
    and the requested stresses and flux gates (warns about other requested outputs)."""
    outputs = RequestedOutputs(state, pmesh, solver_name, STRESSBALANCE)
    H = np.asarray(state.geometry.thickness, float)
    out: dict[str, Any] = {"step": 1, "time": 0.0, "Vx": vx, "Vy": vy, "Vel": vel(vx, vy),
                           "Pressure": state.materials.rho_ice * state.g * H,
                           "StressbalanceConvergenceNumSteps": int(niter)}
    out.update(outputs.stresses(vx, vy))
    out.update(outputs.fluxes(H, vx, vy))
    _warn_skipped(solver_name, [n for n in outputs.requested if n not in STRESS_OUTPUTS and n not in out])
    return out


# ----------------------------------------------------------------------------------------------------------
# velocity providers
# ----------------------------------------------------------------------------------------------------------
#: ``velocity(state, geometry, vx_prev, vy_prev, t, step) -> (vx, vy, info)``; ``info`` may hold ``'niter'``
#: (iterations of the solve, ISSM's ``StressbalanceConvergenceNumSteps``; default 1) and ``'residual'``
VelocityResult = tuple[np.ndarray, np.ndarray, dict[str, Any]]
VelocityFunction = Callable[[ModelState, StepGeometry, np.ndarray, np.ndarray, float, int], VelocityResult]


@dataclass(frozen=True)
class VelocityRequest:
    """One velocity solve of a batch: the arguments of a :data:`VelocityFunction` and the ensemble
    ``member`` (0-based index, None for a single run)."""

    state: ModelState
    geometry: StepGeometry
    vx_prev: np.ndarray
    vy_prev: np.ndarray
    time: float
    step: int
    member: int | None


@runtime_checkable
class BatchedVelocity(Protocol):
    """A provider that solves several members' velocities at once (one batched network pass)."""

    def many(self, requests: Sequence[VelocityRequest]) -> list[VelocityResult]:
        ...


def _solve_requests(velocity: Any, requests: list[VelocityRequest]) -> list[VelocityResult]:
    if isinstance(velocity, BatchedVelocity):
        out = list(velocity.many(requests))
        if len(out) != len(requests):
            raise SolverError(f"velocity provider {type(velocity).__name__}.many returned {len(out)} results "
                              f"for {len(requests)} requests")
        return out
    return [velocity(r.state, r.geometry, r.vx_prev, r.vy_prev, r.time, r.step) for r in requests]


# ----------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------
class TransientRun:
    """One model advanced through ISSM's transient loop, step by step (see the module docstring).

    ``begin(k)`` evaluates step k's forcing and returns the :class:`VelocityRequest` (None without stress
    balance); ``finish(k, velocity)`` completes the step with ``(vx, vy, info)`` from the provider. Divergence
    raises ``error`` (a :class:`SolverDivergedError` subclass) naming the step, the time and ``member``.
    """

    def __init__(self, state: ModelState, pmesh: P1Mesh, *, solver_name: str, member: int | None = None,
                 error: type[SolverDivergedError] = SolverDivergedError,
                 velocity_timing: str = "stressbalance", extra_outputs: Sequence[str] = ()):
        self.state = state
        self.pmesh = pmesh
        self.solver_name = solver_name
        self.member = member
        self.error = error
        self.schedule = transient_schedule(state)
        self.outputs = RequestedOutputs(state, pmesh, solver_name, extra_outputs=extra_outputs)
        self.fields = TransientFields.initial(state, pmesh.elements)
        self.steps: list[dict[str, Any]] = []
        self.iterations: list[int] = []
        self.icebergs_removed: list[int] = []
        self.residual: float | None = None
        self.velocity_timing = velocity_timing
        self.timings = {velocity_timing: 0.0, "masstransport": 0.0, "groundingline": 0.0, "outputs": 0.0}
        if state.transient.ismovingfront:
            self.timings["movingfront"] = 0.0
        self._forcing: StepForcing | None = None
        #: this run's mass-transport solver: LU factors of an earlier step reused (one per run, so that
        #: members of an ensemble on one mesh do not share factors)
        self.masstransport_solver = masstransport.TransportLinearSolver()

    @property
    def nsteps(self) -> int:
        return len(self.schedule)

    def _where(self, k: int, t: float) -> str:
        who = "" if self.member is None else f" (ensemble member {self.member})"
        return f"step {k} (t = {t / self.state.yts:g} yr){who}"

    def _diverged(self, what: str, k: int, t: float) -> SolverDivergedError:
        res = "" if self.residual is None else f"; last stress-balance residual {self.residual:.3g}"
        return self.error(f"solver {self.solver_name!r}: {what} at {self._where(k, t)}{res}", step=k,
                          time=t / self.state.yts, residual=self.residual)

    def begin(self, k: int) -> VelocityRequest | None:
        """Forcing of step ``k``; the velocity request when the step solves for the velocity."""
        st = self.state
        s = self.schedule[k - 1]
        f = self.fields
        self._forcing = step_forcing(st, s.time, f)
        if not st.transient.isstressbalance:
            return None
        geo = StepGeometry(thickness=f.thickness, surface=f.surface, base=f.base, bed=f.bed,
                           ocean_levelset=f.ocean_levelset, ice_levelset=f.ice_levelset,
                           forcing=self._forcing)
        return VelocityRequest(st, geo, f.vx, f.vy, s.time, k, self.member)

    def finish(self, k: int, velocity: VelocityResult | None, velocity_seconds: float = 0.0) -> None:
        """Complete step ``k`` with the provider's ``(vx, vy, info)`` (None: no stress balance)."""
        st = self.state
        flags = st.transient
        pm = self.pmesh
        step = self.schedule[k - 1]
        t, dt = step.time, step.dt
        forcing = self._forcing
        if forcing is None:
            raise RuntimeError(f"TransientRun.finish({k}) without begin({k})")
        self._forcing = None
        f = self.fields
        out: dict[str, Any] = {"step": k, "time": t}
        # 2. velocity on the geometry at the start of the step
        if velocity is not None:
            c = _time.perf_counter()
            vx, vy, info = velocity
            vx, vy = np.asarray(vx, float), np.asarray(vy, float)
            niter = int(info.get("niter", 1))
            if "residual" in info:
                self.residual = float(info["residual"])
            self.iterations.append(niter)
            f = replace(f, vx=vx, vy=vy)
            out.update(Vx=vx.copy(), Vy=vy.copy(), Vel=vel(vx, vy),
                       Pressure=st.materials.rho_ice * st.g * f.thickness,
                       StressbalanceConvergenceNumSteps=niter)
            out.update(self.outputs.stresses(vx, vy))
            out.update(info.get("outputs", {}))  # outputs the provider computed (e.g. an error indicator)
            self.timings[self.velocity_timing] += velocity_seconds + _time.perf_counter() - c
        # 3. moving front: new ice level set; velocity and thickness extrapolated into the ice-free area
        if flags.ismovingfront:
            c = _time.perf_counter()
            try:
                f, fu = front_step(st, pm, f, time=t, dt=dt, step=k)
            except SolverDivergedError as err:
                raise self.error(f"moving front failed at {self._where(k, t)}: {err}", step=k,
                                 time=t / st.yts, residual=self.residual) from err
            if not f.ice_elements.any():
                raise SolverError(f"solver {self.solver_name!r}: no ice left at {self._where(k, t)}: the "
                                  "calving front has removed every ice element")
            self.icebergs_removed.append(int(fu.icebergs_removed))
            if "Vx" in out:  # ISSM outputs the extrapolated velocities, but Vel from the stress balance
                out.update(Vx=f.vx.copy(), Vy=f.vy.copy())
            out["MaskIceLevelset"] = f.ice_levelset.copy()
            front_out = {"CalvingCalvingrate": fu.calving_rate, "CalvingMeltingrate": fu.frontal_melt_rate,
                         "Calvingratex": fu.calving_rate_x, "Calvingratey": fu.calving_rate_y, **fu.extras}
            out.update({n: np.array(front_out[n], dtype=float)
                        for n in self.outputs.requested if n in front_out})
            self.timings["movingfront"] += _time.perf_counter() - c
        # 4. mass transport and geometry update
        if flags.ismasstransport:
            c = _time.perf_counter()
            try:
                f = mass_transport_step(st, pm, f, forcing, time=t, dt=dt,
                                        linear_solver=self.masstransport_solver)
            except SolverDivergedError as err:
                raise self._diverged("mass transport diverged", k, t) from err
            out.update(Thickness=f.thickness.copy(), Surface=f.surface.copy(), Base=f.base.copy())
            self.timings["masstransport"] += _time.perf_counter() - c
        # 5. grounding-line migration
        if flags.isgroundingline:
            c = _time.perf_counter()
            f = migration_step(st, pm.elements, f)
            out.update(Surface=f.surface.copy(), Base=f.base.copy(),
                       MaskOceanLevelset=f.ocean_levelset.copy())
            self.timings["groundingline"] += _time.perf_counter() - c
        for name, arr in (("Thickness", f.thickness), ("Surface", f.surface), ("Base", f.base), ("Vx", f.vx),
                          ("Vy", f.vy), ("MaskIceLevelset", f.ice_levelset)):
            if not np.all(np.isfinite(arr)):
                raise self._diverged(f"NaN/inf in {name}", k, t)
        self.fields = f
        # 6. outputs
        if step.output:
            c = _time.perf_counter()
            if flags.ismovingfront and self.outputs.front_fluxes:
                # end-of-step thickness, extrapolated velocities, the step's calving-rate vectors (kg/s)
                fl = diagnostics.front_fluxes(pm, f.ice_levelset, f.thickness, f.vx, f.vy, fu.calving_element_x,
                                              fu.calving_element_y, st.materials.rho_ice)
                out.update({n: fl[n] for n in self.outputs.front_fluxes})
            self.steps.append(assemble_outputs(self.outputs, out, f, forcing))
            self.timings["outputs"] += _time.perf_counter() - c

    def result(self) -> SolverResult:
        """The run's output steps; ``info``: ``nsteps``, ``stressbalance_iterations``, ``timings_s`` and,
        with a moving front, ``icebergs_removed`` per step."""
        info: dict[str, Any] = {"nsteps": self.nsteps, "stressbalance_iterations": self.iterations,
                                "timings_s": self.timings}
        if self.state.transient.ismovingfront:
            info["icebergs_removed"] = self.icebergs_removed
        return SolverResult(TRANSIENT, self.steps, info)


def run_transient_many(states: Sequence[ModelState], velocity: VelocityFunction | BatchedVelocity, *,
                       pmesh: P1Mesh | None = None, solver_name: str,
                       error: type[SolverDivergedError] = SolverDivergedError,
                       velocity_timing: str = "stressbalance", progress: bool = False,
                       desc: str | None = None, extra_outputs: Sequence[str] = ()) -> list[SolverResult]:
    """Transients of several models on one mesh, advanced in lockstep (see the module docstring).

    Parameters
    ----------
    states : model states on the same mesh (``pmesh``, default the first one's); they may differ in anything
        else, time stepping included (a member stops after its last step)
    velocity : a :data:`VelocityFunction`, or a :class:`BatchedVelocity` whose ``many`` gets the requests
        of every member still running, once per step
    solver_name : name used in warnings and errors
    error : exception class raised when a step diverges (a :class:`SolverDivergedError`)
    velocity_timing : key of the velocity's time in ``info['timings_s']``
    progress, desc : show a progress bar over the steps, with this description
    extra_outputs : requested-output names the provider computes (passed in its info's ``'outputs'``)

    Returns
    -------
    list of SolverResult (``'TransientSolution'``), one per state (:meth:`TransientRun.result`)
    """
    if not states:
        return []
    pmesh = P1Mesh.from_mesh(states[0].mesh) if pmesh is None else pmesh
    label = len(states) > 1
    runs = [TransientRun(st, pmesh, solver_name=solver_name, member=m if label else None, error=error,
                         velocity_timing=velocity_timing, extra_outputs=extra_outputs)
            for m, st in enumerate(states)]
    total = max(r.nsteps for r in runs)
    bar = progress_bar(total, progress, desc or f"{solver_name} transient")
    for k in range(1, total + 1):
        active = [r for r in runs if k <= r.nsteps]
        asked = [(r, r.begin(k)) for r in active]
        requests = [q for _, q in asked if q is not None]
        c = _time.perf_counter()
        solved = iter(_solve_requests(velocity, requests) if requests else [])
        share = (_time.perf_counter() - c) / max(len(requests), 1)
        for r, q in asked:
            r.finish(k, next(solved) if q is not None else None, share if q is not None else 0.0)
        bar.update(1)
    bar.close()
    return [r.result() for r in runs]


def run_transient(state: ModelState, velocity: VelocityFunction | BatchedVelocity, *,
                  pmesh: P1Mesh | None = None, solver_name: str,
                  error: type[SolverDivergedError] = SolverDivergedError,
                  velocity_timing: str = "stressbalance", progress: bool = False,
                  desc: str | None = None) -> SolverResult:
    """The transient of one model: :func:`run_transient_many` with one state."""
    return run_transient_many([state], velocity, pmesh=pmesh, solver_name=solver_name, error=error,
                              velocity_timing=velocity_timing, progress=progress, desc=desc)[0]
