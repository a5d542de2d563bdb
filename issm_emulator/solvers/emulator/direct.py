"""Direct mode (the seed paper's method): the network maps the initial state, the forcing parameters and
the elapsed time ``t - t_0`` to ``vx, vy, H`` (and the ice level set when the front moves) at time ``t``.

Only the requested output steps are evaluated, several graphs per forward pass (copies of the mesh graph
in one :class:`torch_geometric.data.Batch`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from issm_emulator.physics import masks, masstransport, melt
from issm_emulator.physics.levelset import ice_free_thickness
from issm_emulator.progress import progress_bar
from issm_emulator.solvers.base import TRANSIENT, SolverResult, vel
from issm_emulator.solvers.emulator.checkpoint import Checkpoint
from issm_emulator.solvers.emulator.indicator import INDICATOR_OUTPUTS, Indicator
from issm_emulator.solvers.emulator.inputs import check_state, impose_dirichlet
from issm_emulator.solvers.emulator.network import (
    FORWARD_PASSES_PER_SOLVE,
    BoundNetwork,
    RuntimePolicy,
    check_finite,
    diverged,
    load,
    member_label,
)
from issm_emulator.solvers.transient import (
    RequestedOutputs,
    StepForcing,
    TransientFields,
    assemble_outputs,
    has_floating_melt,
    migration_step,
    transient_schedule,
)
from issm_emulator.state import Geometry, Masks, ModelState

__all__ = ["direct_transient_many", "rollout_direct"]


@dataclass
class _DirectItem:
    member: int
    k: int
    t: float


def _direct_inputs(net: BoundNetwork, state: ModelState, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    interp = bool(state.timestepping.interp_forcing)
    g = state.geometry
    smb = np.broadcast_to(np.asarray(state.smb.at(t, interp), float), (state.numberofvertices,))
    fmb = melt.floating_melt_rate(state, t, base=np.asarray(g.base, float)) if has_floating_melt(state) else None
    arrays = net.arrays(state, thickness=g.thickness, surface=g.surface, base=g.base, bed=g.bed,
                        ocean_levelset=state.masks.ocean_levelset, ice_levelset=state.masks.ice_levelset,
                        vx=state.vx, vy=state.vy, smb=smb, melt_rate=fmb,
                        elapsed=t - state.timestepping.start_time)
    return net.inputs(arrays)


#: the initial-state field each scalar output of a time-decoded network is a change of
_INITIAL = {"thickness": lambda st: st.geometry.thickness, "ice_levelset": lambda st: st.masks.ice_levelset}


def _decoded_predict(net: BoundNetwork, states: Sequence[ModelState], items: list[_DirectItem],
                     on_done: Callable[[int], None] | None = None) -> list[dict[str, np.ndarray]]:
    """A time-decoded network (EGCN: one trunk pass per member, its times decoded; GCN/CNN: one pass per
    time); initial state + changes."""
    members = sorted({it.member for it in items})
    inputs = [_direct_inputs(net, states[m], states[m].timestepping.start_time) for m in members]
    times = [np.array([it.t - states[m].timestepping.start_time for it in items if it.member == m])
             for m in members]
    incs = dict(zip(members, net.predict_increments(inputs, times)))
    cursor = dict.fromkeys(members, 0)
    out = []
    for it in items:
        st = states[it.member]
        d = incs[it.member][cursor[it.member]]
        cursor[it.member] += 1
        p = {"vx": np.asarray(st.vx, float) + d["vx"], "vy": np.asarray(st.vy, float) + d["vy"]}
        for name in net.spec.scalar_outputs:
            p[name] = np.asarray(_INITIAL[name](st), float) + d[name]
        check_finite(p, it.k, it.t, st.yts, member_label(len(states), it.member))
        out.append(p)
    if on_done is not None:
        on_done(len(items))
    return out


def _direct_predict(net: BoundNetwork, states: Sequence[ModelState], items: list[_DirectItem],
                    on_done: Callable[[int], None] | None = None) -> list[dict[str, np.ndarray]]:
    """Predictions for (member, time) items, ``batch_size`` graphs per forward pass, inputs built lazily."""
    if net.decodes_time:
        return _decoded_predict(net, states, items, on_done)
    size = net.graphs_per_pass(len(items))
    out: list[dict[str, np.ndarray]] = []
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        tensors = [_direct_inputs(net, states[it.member], it.t) for it in chunk]
        preds = net.predict(tensors, size=len(chunk))
        for it, p in zip(chunk, preds):
            check_finite(p, it.k, it.t, states[it.member].yts, member_label(len(states), it.member))
        out.extend(preds)
        if on_done is not None:
            on_done(len(chunk))
    return out


def rollout_direct(checkpoint: Checkpoint | str | os.PathLike, state: ModelState, times: Sequence[float], *,
                   device: Any = "cpu", batch_size: int | None = None, arch: str | None = None,
                   threads: int | None = None, compile: bool | None = None) -> list[dict[str, Any]]:
    """Direct-mode predictions at ``times`` (s, model time) from the initial state.

    Returns one dict per time: ``'time'`` (s), ``'vx'``, ``'vy'`` (m/s), ``'thickness'`` (m) and, for
    networks that predict it, ``'ice_levelset'``; all ``(nv,)`` float64. ``batch_size`` times go through
    the network per forward pass (default: all). Raises :class:`EmulatorDivergedError` naming the index
    (1-based) of the first time whose prediction is not finite.
    """
    ckpt = load(checkpoint, device)
    times = [float(t) for t in np.atleast_1d(np.asarray(times, float))]
    check_state(ckpt, state, "direct", arch=arch, times=times)
    net = BoundNetwork(ckpt, state, device, policy=RuntimePolicy(batch_size, threads, compile))
    items = [_DirectItem(0, k, t) for k, t in enumerate(times, start=1)]
    preds = _direct_predict(net, [state], items)
    return [{"time": it.t, **p} for it, p in zip(items, preds)]


def _direct_step(state: ModelState, outputs: RequestedOutputs, k: int, t: float, pred: dict[str, np.ndarray],
                 label: int | None, indicator: Indicator | None = None) -> tuple[dict[str, Any], dict | None]:
    """One output step of the direct mode from the network's prediction at ``t``, and the step's error
    indicator (:meth:`Indicator.evaluate`; None when ``indicator`` is not active)."""
    flags = state.transient
    mat = state.materials
    mt = state.masstransport
    e = outputs.pmesh.elements
    interp = bool(state.timestepping.interp_forcing)
    f = TransientFields.initial(state, e)
    out: dict[str, Any] = {"step": k, "time": t}
    if flags.isstressbalance:
        f.vx, f.vy = impose_dirichlet(state, pred["vx"], pred["vy"])
    if flags.ismovingfront and "ice_levelset" in pred:
        f.ice_levelset = pred["ice_levelset"]
        f.ice_elements = masks.ice_elements(e, f.ice_levelset)
    if flags.ismasstransport:
        H = np.maximum(pred["thickness"], mt.min_thickness)
        spc = np.asarray(mt.spcthickness.at(t, interp), float)
        H = np.where(np.isnan(spc), H, spc)
        if flags.ismovingfront:
            H = ice_free_thickness(H, f.ice_levelset, e, mt.min_thickness)
        f.base, f.surface = masstransport.update_geometry(
            H, base=f.base, surface=f.surface, ocean_levelset=f.ocean_levelset, rho_ice=mat.rho_ice,
            rho_water=mat.rho_water, sealevel=state.sealevel, bed=f.bed,
            isgroundingline=bool(flags.isgroundingline), hydrostatic_adjustment=mt.hydrostatic_adjustment,
            old_thickness=f.thickness)
        f.thickness = H
    if flags.isstressbalance:
        out.update(Vx=f.vx.copy(), Vy=f.vy.copy(), Vel=vel(f.vx, f.vy),
                   Pressure=mat.rho_ice * state.g * f.thickness,
                   StressbalanceConvergenceNumSteps=FORWARD_PASSES_PER_SOLVE)
        out.update(outputs.stresses(f.vx, f.vy))
    if flags.ismasstransport:
        out.update(Thickness=f.thickness.copy(), Surface=f.surface.copy(), Base=f.base.copy())
    if flags.isgroundingline:
        f = migration_step(state, e, f)
        out.update(Surface=f.surface.copy(), Base=f.base.copy(), MaskOceanLevelset=f.ocean_levelset.copy())
    if flags.ismovingfront:
        out["MaskIceLevelset"] = np.array(f.ice_levelset, dtype=float)
    for name, arr in (("Thickness", f.thickness), ("Surface", f.surface), ("Base", f.base)):
        if not np.all(np.isfinite(arr)):
            raise diverged(name, k, t, state.yts, label)
    smb = np.broadcast_to(np.asarray(state.smb.at(t, interp), float), f.thickness.shape)
    fmb = melt.floating_melt_rate(state, t, base=f.base, bed=f.bed) if has_floating_melt(state) \
        else np.zeros_like(f.thickness)
    forcing = StepForcing(smb=smb, floatingice_melt=fmb, groundedice_melt=melt.grounded_melt_rate(state, t))
    ev = None
    if indicator is not None and indicator.active and flags.isstressbalance:
        geo = {"thickness": f.thickness, "surface": f.surface, "base": f.base,
               "ocean_levelset": f.ocean_levelset, "ice_levelset": f.ice_levelset}
        ev = indicator.evaluate(state, outputs.pmesh, geo, f.vx, f.vy)
        out.update(indicator.outputs(ev, state.yts))
    return assemble_outputs(outputs, out, f, forcing), ev


def _restart_state(state: ModelState, step: dict[str, Any] | None) -> ModelState:
    """``state`` restarted from an output step of the direct mode (its fields, its time; from the initial
    state for ``None``), without the indicator's requested outputs (``fem`` does not compute them)."""
    state = state.replace(requested_outputs=tuple(n for n in state.requested_outputs if n not in INDICATOR_OUTPUTS))
    if step is None:
        return state
    g = state.geometry
    get = lambda name, default: np.asarray(step.get(name, default), float)  # noqa: E731
    geometry = Geometry(thickness=get("Thickness", g.thickness), surface=get("Surface", g.surface),
                        base=get("Base", g.base), bed=np.asarray(g.bed, float))
    masks_ = Masks(ocean_levelset=get("MaskOceanLevelset", state.masks.ocean_levelset),
                   ice_levelset=get("MaskIceLevelset", state.masks.ice_levelset))
    ts = replace(state.timestepping, start_time=float(step["time"]))
    return state.replace(geometry=geometry, masks=masks_, vx=get("Vx", state.vx), vy=get("Vy", state.vy),
                         timestepping=ts)


def _fem_fallback(state: ModelState, steps: list[dict[str, Any]], residuals: list[dict | None],
                  indicator: Indicator) -> list[dict[str, Any]]:
    """Replace the output steps from the first one whose indicator exceeds the tolerance by a ``fem`` run
    restarted from the last accepted output whose step number is a multiple of the output frequency (or
    from the initial state). Returns the steps; ``indicator.fallback_steps`` counts the time steps ``fem``
    solved."""
    bad = next((i for i, r in enumerate(residuals) if indicator.exceeds(r)), None)
    if bad is None:
        return steps
    from issm_emulator.solvers.fem import FEMSolver

    freq = max(int(state.output_frequency), 1)
    keep = [i for i in range(bad) if int(steps[i]["step"]) % freq == 0]
    start = keep[-1] if keep else None
    k0 = int(steps[start]["step"]) if start is not None else 0
    wanted = {int(s["step"]) for s in steps}
    fem = FEMSolver().solve(_restart_state(state, steps[start] if start is not None else None), TRANSIENT)
    redone = []
    for s in fem.steps:
        k = k0 + int(s["step"])
        if k in wanted:
            redone.append({**s, "step": k})
    indicator.fallback_steps += int(fem.info.get("nsteps", len(fem.steps)))
    return steps[:(start + 1 if start is not None else 0)] + redone


def direct_transient_many(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], *,
                          device: Any = "cpu", batch_size: int | None = None, arch: str | None = None,
                          progress: bool = False, solver_name: str = "emulator", threads: int | None = None,
                          compile: bool | None = None, fallback: str | None = None,
                          fallback_tol: float = 0.0) -> list[SolverResult]:
    """Direct-mode transients: the fem solver's output steps, each predicted from the initial state.

    Only output steps are evaluated (every ``output_frequency`` steps, the first and the last, at the fem
    solver's step times). Thickness is floored at ``min_thickness`` and ``spcthickness`` imposed; base and
    surface follow from flotation (:func:`~issm_emulator.physics.masstransport.update_geometry` from the
    initial geometry) and grounding-line migration. Returns one :class:`SolverResult` per state.

    With ``fallback='fem'``, the output steps from the first one whose error indicator exceeds
    ``fallback_tol`` on are recomputed by ``fem``, restarted from the last accepted output on the output
    grid (``info['fallback_steps']`` counts the time steps ``fem`` solved).
    """
    if not states:
        return []
    ckpt = load(checkpoint, device)
    net = BoundNetwork(ckpt, states[0], device, policy=RuntimePolicy(batch_size, threads, compile))
    items: list[_DirectItem] = []
    outputs = []
    nsteps = []
    for m, st in enumerate(states):
        schedule = transient_schedule(st)
        nsteps.append(len(schedule))
        chosen = [(s.step, s.time) for s in schedule if s.output]
        check_state(ckpt, st, "direct", arch=arch, times=[t for _, t in chosen] or None)
        items.extend(_DirectItem(m, k, t) for k, t in chosen)
        outputs.append(RequestedOutputs(st, net.pmesh, solver_name, extra_outputs=INDICATOR_OUTPUTS))
    bar = progress_bar(len(items), progress, f"{solver_name} direct rollout")
    preds = _direct_predict(net, states, items, on_done=bar.update)
    bar.close()
    indicators = [Indicator(st.requested_outputs, ckpt.indicator, fallback=fallback, tol=fallback_tol)
                  for st in states]
    per_member: list[list[dict[str, Any]]] = [[] for _ in states]
    residuals: list[list[dict | None]] = [[] for _ in states]
    for it, p in zip(items, preds):
        st = states[it.member]
        step, res = _direct_step(st, outputs[it.member], it.k, it.t, p, member_label(len(states), it.member),
                                 indicators[it.member])
        per_member[it.member].append(step)
        residuals[it.member].append(res)
    results = []
    for m in range(len(states)):
        steps = per_member[m]
        if fallback is not None:
            steps = _fem_fallback(states[m], steps, residuals[m], indicators[m])
        info = {"mode": "direct", "nsteps": nsteps[m], "outputs": len(steps), **net.runtime_info(),
                "ensemble_size": len(states), "fallback_steps": indicators[m].fallback_steps}
        results.append(SolverResult(TRANSIENT, steps, info))
    return results
