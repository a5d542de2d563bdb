"""Step mode: ISSM's transient loop with the stress balance replaced by one network evaluation per step.

The loop is :mod:`issm_emulator.solvers.transient` (the same one the ``fem`` solver runs): the velocity
``u = N(H, b, s, r, phi_ocean, phi_ice, C, B, m_s, forcing)`` comes from the geometry, masks and forcing at
the start of the step, prescribed (``spcvx``/``spcvy``) values imposed where they are given. Everything else
(forcing, moving front, mass transport ``dH/dt + div(H u) = m_s - m_b``, grounding-line migration, outputs
with the ``fem`` solver's names, SI units and step rules) is the shared loop's.

Mass is conserved by the mass transport to the precision of the sparse solve: summing the Galerkin equations
over all test functions gives ``V' - V = dt (int (m_s - m_b) - oint H' u.n ds)``, whatever velocity the network
predicts. Members of an ensemble on one mesh advance together: one batched forward pass per step
(:func:`rollout_step_many`). ``StressbalanceSolution`` (:func:`stressbalance_many`) is one such pass.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from issm_emulator.errors import EmulatorDivergedError
from issm_emulator.physics import melt
from issm_emulator.solvers.base import STRESSBALANCE, SolverResult
from issm_emulator.solvers.emulator.checkpoint import Checkpoint
from issm_emulator.solvers.emulator.indicator import INDICATOR_OUTPUTS, Indicator
from issm_emulator.solvers.emulator.inputs import check_state, impose_dirichlet
from issm_emulator.solvers.emulator.network import (
    FORWARD_PASSES_PER_SOLVE,
    BoundNetwork,
    RuntimePolicy,
    check_finite,
    load,
    member_label,
)
from issm_emulator.solvers.transient import (
    StepGeometry,
    VelocityRequest,
    VelocityResult,
    run_transient_many,
    stressbalance_step,
)
from issm_emulator.state import ModelState

__all__ = ["SPEED_LIMIT_RMS", "limit_speed", "rollout_step", "rollout_step_many", "stressbalance_many"]


def _step_network(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], device: Any,
                  policy: RuntimePolicy, arch: str | None) -> BoundNetwork:
    """A step-mode checkpoint, checked against every state, bound to the first state's mesh."""
    ckpt = load(checkpoint, device)
    for st in states:
        check_state(ckpt, st, "step", arch=arch)
    return BoundNetwork(ckpt, states[0], device, policy=policy)


#: step mode's speed limiter, in units of the training data's RMS speed (the checkpoint's output scale)
SPEED_LIMIT_RMS = 10.0


def limit_speed(vx: np.ndarray, vy: np.ndarray, vmax: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Scale velocities faster than ``vmax`` down to ``vmax`` (direction kept); returns the number limited.

    A safeguard of the step-mode rollout, not part of the learned model: a network fed a geometry it has
    not seen can predict runaway speeds, which the mass transport turns into runaway thickness and the next
    prediction amplifies. Bounding the speed at :data:`SPEED_LIMIT_RMS` times the training data's RMS speed
    (several times the fastest ice of the training runs) keeps such a rollout finite; how many vertices
    were limited is reported in the solve's info (``speed_limited``), so a limited run is never silent.
    """
    speed = np.hypot(vx, vy)
    over = speed > vmax
    n = int(over.sum())
    if n:
        f = np.where(over, vmax / np.where(over, speed, 1.0), 1.0)
        vx, vy = vx * f, vy * f
    return vx, vy, n


class NetworkVelocity:
    """The step mode's velocity provider: one batched forward pass over the requests of a step; with an
    active :class:`~issm_emulator.solvers.emulator.indicator.Indicator`, each velocity's SSA residual is
    evaluated (and reported), and steps above the fallback tolerance are re-solved by ``fem``'s SSA."""

    def __init__(self, net: BoundNetwork, indicator: Indicator | None = None):
        self.net = net
        self.indicator = indicator
        scale = np.asarray(net.ckpt.output_normalizer.to_dict()["vector_scale"], float)
        self.vmax = SPEED_LIMIT_RMS * float(scale[0]) if scale.size and scale[0] > 0 else np.inf
        self.limited = 0

    def many(self, requests: Sequence[VelocityRequest]) -> list[VelocityResult]:
        net = self.net
        items = []
        for r in requests:
            g = r.geometry
            arrays = net.arrays(r.state, thickness=g.thickness, surface=g.surface, base=g.base, bed=g.bed,
                                ocean_levelset=g.ocean_levelset, ice_levelset=g.ice_levelset, vx=r.vx_prev,
                                vy=r.vy_prev, smb=g.forcing.smb, melt_rate=g.forcing.floatingice_melt)
            items.append(net.inputs(arrays))
        out = []
        for r, pred in zip(requests, net.predict(items)):
            check_finite(pred, r.step, r.time, r.state.yts, r.member)
            vx, vy, n = limit_speed(pred["vx"], pred["vy"], self.vmax)
            self.limited += n
            vx, vy = impose_dirichlet(r.state, vx, vy)
            info: dict[str, Any] = {"niter": FORWARD_PASSES_PER_SOLVE, "speed_limited": n}
            ind = self.indicator
            if ind is not None and ind.active:
                g = r.geometry
                geo = {"thickness": g.thickness, "surface": g.surface, "base": g.base,
                       "ocean_levelset": g.ocean_levelset, "ice_levelset": g.ice_levelset}
                ev = ind.evaluate(r.state, net.pmesh, geo, vx, vy)
                info["outputs"] = ind.outputs(ev, r.state.yts)
                if ind.exceeds(ev):
                    vx, vy, info["niter"], info["residual"] = ind.resolve(r.state, net.pmesh, geo, vx, vy)
            out.append((vx, vy, info))
        return out

    def __call__(self, state: ModelState, geometry: StepGeometry, vx_prev: np.ndarray, vy_prev: np.ndarray,
                 t: float, step: int) -> VelocityResult:
        return self.many([VelocityRequest(state, geometry, vx_prev, vy_prev, t, step, None)])[0]


def rollout_step_many(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], *,
                      device: Any = "cpu", batch_size: int | None = None, arch: str | None = None,
                      progress: bool = False, solver_name: str = "emulator", threads: int | None = None,
                      compile: bool | None = None, fallback: str | None = None,
                      fallback_tol: float = 0.0) -> list[SolverResult]:
    """Step-mode transients of several models on one mesh, advanced together (see the module docstring).

    Parameters
    ----------
    checkpoint : a loaded step-mode :class:`Checkpoint` or its file
    states : model states on the same mesh (the first one's mesh is used for the graph); they may differ
        in anything else, time stepping included
    device : torch device of the network (the FE parts run on the CPU)
    batch_size, threads, compile : the run-time policy (:class:`~.network.RuntimePolicy`): most graphs per
        forward pass, torch intra-op threads, torch.compile; None takes the measured default
    arch : when given, the checkpoint's architecture must be this one
    progress : show a progress bar over the steps
    solver_name : name used in warnings and in the result's ``info``
    fallback, fallback_tol : ``'fem'``: re-solve with ``fem``'s SSA (from the emulated velocity) every step
        whose error indicator exceeds ``fallback_tol`` (:mod:`~issm_emulator.solvers.emulator.indicator`)

    Returns
    -------
    list of SolverResult (``'TransientSolution'``), one per state, steps as the fem solver's (SI)

    Raises
    ------
    EmulatorDivergedError
        NaN/inf from the network or the mass transport; names the step (and the member).
    CheckpointMismatchError
        The checkpoint is not a step-mode network of ``arch``, or needs inputs the states lack.
    """
    if not states:
        return []
    policy = RuntimePolicy(batch_size=batch_size, threads=threads, compile=compile)
    net = _step_network(checkpoint, states, device, policy, arch)
    indicator = Indicator(states[0].requested_outputs, net.ckpt.indicator, fallback=fallback, tol=fallback_tol)
    provider = NetworkVelocity(net, indicator)
    runs = run_transient_many(states, provider, pmesh=net.pmesh, solver_name=solver_name,
                              error=EmulatorDivergedError, velocity_timing="network", progress=progress,
                              desc=f"{solver_name} step rollout", extra_outputs=INDICATOR_OUTPUTS)
    if provider.limited:
        warnings.warn(f"{solver_name}: the network's speed exceeded {SPEED_LIMIT_RMS:g} x the training RMS speed "
                      f"({provider.vmax * states[0].yts:.0f} m/yr) at {provider.limited} vertex-steps and was "
                      "limited there; the model may lie outside the checkpoint's training data", RuntimeWarning,
                      stacklevel=2)
    for r in runs:
        r.info = {"mode": "step", "nsteps": r.info["nsteps"], **net.runtime_info(),
                  "ensemble_size": len(states), "timings_s": r.info["timings_s"],
                  "speed_limited": provider.limited, "fallback_steps": indicator.fallback_steps}
    return runs


def rollout_step(checkpoint: Checkpoint | str | os.PathLike, state: ModelState, *, device: Any = "cpu",
                 arch: str | None = None, progress: bool = False, solver_name: str = "emulator",
                 threads: int | None = None, compile: bool | None = None) -> SolverResult:
    """Step-mode transient of one model: :func:`rollout_step_many` with one state."""
    return rollout_step_many(checkpoint, [state], device=device, arch=arch, progress=progress,
                             solver_name=solver_name, threads=threads, compile=compile)[0]


def stressbalance_many(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], *,
                       device: Any = "cpu", batch_size: int | None = None, arch: str | None = None,
                       solver_name: str = "emulator", threads: int | None = None,
                       compile: bool | None = None) -> list[SolverResult]:
    """``StressbalanceSolution`` of each state: one forward pass of a step-mode network (batched).

    Forcing is evaluated at ``md.timestepping.start_time``; the output step is ``step 1, time 0`` as the
    fem solver's, with ``Vx, Vy, Vel, Pressure`` and the requested stresses and flux gates.
    """
    if not states:
        return []
    policy = RuntimePolicy(batch_size=batch_size, threads=threads, compile=compile)
    net = _step_network(checkpoint, states, device, policy, arch)
    items = []
    for st in states:
        t = st.timestepping.start_time
        interp = bool(st.timestepping.interp_forcing)
        g = st.geometry
        smb = np.broadcast_to(np.asarray(st.smb.at(t, interp), float), (st.numberofvertices,))
        fmb = None
        if "melt_rate" in net.spec.scalars:
            fmb = melt.floating_melt_rate(st, t, base=np.asarray(g.base, float))
        arrays = net.arrays(st, thickness=g.thickness, surface=g.surface, base=g.base, bed=g.bed,
                            ocean_levelset=st.masks.ocean_levelset, ice_levelset=st.masks.ice_levelset, vx=st.vx,
                            vy=st.vy, smb=smb, melt_rate=fmb)
        items.append(net.inputs(arrays))
    preds = net.predict(items)
    results = []
    for m, (st, p) in enumerate(zip(states, preds)):
        check_finite(p, 1, 0.0, st.yts, member_label(len(states), m))
        vx, vy = impose_dirichlet(st, p["vx"], p["vy"])
        out = stressbalance_step(st, net.pmesh, vx, vy, FORWARD_PASSES_PER_SOLVE, solver_name)
        results.append(SolverResult(STRESSBALANCE, [out], {"mode": "step", **net.runtime_info(),
                                                           "ensemble_size": len(states)}))
    return results
