"""Rollouts of a trained emulator on a model state: ``direct`` and ``step`` modes.

**Direct** (:func:`rollout_direct`, the seed paper's method): the network maps the initial state, the
forcing parameters and the elapsed time ``t - t_0`` to ``vx, vy, H`` (and the ice level set when the front
moves) at time ``t``. All requested times go through the network together, as one
:class:`torch_geometric.data.Batch` of copies of the mesh graph.

**Step** (:func:`rollout_step`): ISSM's transient loop, :mod:`issm_emulator.solvers.transient` (the same
one the ``fem`` solver runs), with the stress balance replaced by one network evaluation per step: the
velocity ``u = N(H, b, s, r, phi_ocean, phi_ice, C, B, m_s, forcing; u_prev)`` from the geometry, masks and
forcing at the start of the step, prescribed (``spcvx``/``spcvy``) values imposed where they are given.
Everything else (forcing, moving front, mass transport ``dH/dt + div(H u) = m_s - m_b``, grounding-line
migration, outputs with the ``fem`` solver's names, SI units and step rules) is the shared loop's.

Mass is conserved by the mass transport to the precision of the sparse solve: summing the Galerkin equations
over all test functions gives ``V' - V = dt (int (m_s - m_b) - oint H' u.n ds)``, whatever velocity the network
predicts. Members of an ensemble on one mesh advance together: one batched forward pass per step
(:func:`rollout_step_many`, :func:`direct_transient_many`).

Network inputs (:func:`feature_arrays`), all SI: geometry and masks of the current step; ``friction_coefficient``
(Budd's ``coefficient``, Weertman's ``C``); ``rheology_B``; ``smb``; ``dirichlet_mask`` (1 where
``spcvx`` or ``spcvy`` is set) and ``velocity_dirichlet`` (prescribed values, 0 elsewhere); ``is_boundary``,
``is_front`` (from the current ice level set); forcing parameters ``melt_rate`` (the floating-ice melt
field of the model's parameterisation, m/s, per vertex), ``calving_threshold``
(``md.calving.stress_threshold_floatingice``, von Mises calving) and, in direct mode, ``time`` (s since
``md.timestepping.start_time``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from issm_emulator.errors import (
    EmulatorDivergedError,
    ModelInputError,
    UnsupportedOptionError,
)
from issm_emulator.graph import front_vertices, mesh_graph
from issm_emulator.nn.checkpoint import Checkpoint, load_checkpoint
from issm_emulator.nn.features import SCALAR_FEATURES, VECTOR_FEATURES, build_inputs
from issm_emulator.physics import masks, masstransport, melt
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.physics.levelset import ice_free_thickness
from issm_emulator.solvers.base import STRESSBALANCE, TRANSIENT, SolverResult, vel
from issm_emulator.solvers.transient import (
    RequestedOutputs,
    StepForcing,
    StepGeometry,
    TransientFields,
    VelocityRequest,
    VelocityResult,
    assemble_outputs,
    has_floating_melt,
    migration_step,
    progress_bar,
    run_transient_many,
    stressbalance_step,
    transient_schedule,
)
from issm_emulator.state import Forcing, ModelState

__all__ = [
    "available_features",
    "check_state",
    "direct_transient_many",
    "feature_arrays",
    "forcing_parameters",
    "load",
    "rollout_direct",
    "rollout_step",
    "rollout_step_many",
    "stressbalance_many",
    "torch_device",
]

#: one network evaluation per velocity solve: reported as ISSM's count of stress-balance iterations
FORWARD_PASSES_PER_SOLVE = 1


# ----------------------------------------------------------------------------------------------------------
# devices, checkpoints
# ----------------------------------------------------------------------------------------------------------
def torch_device(device: Any) -> torch.device:
    """``device`` (None, ``'cpu'``, ``'cuda'``, ``'cuda:1'``, torch.device) as a usable torch device.

    None picks CUDA when available. Raises :class:`UnsupportedOptionError` for CUDA without CUDA.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UnsupportedOptionError(f"device={device!r} is not a torch device ('cpu' or 'cuda'): {err}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedOptionError(f"device={device!r}: CUDA is not available here (torch.cuda.is_available() "
                                     "is False); use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise UnsupportedOptionError(f"device={device!r}: the emulators run on 'cpu' or 'cuda'")
    return dev


def load(checkpoint: Checkpoint | str | os.PathLike, device: Any = "cpu") -> Checkpoint:
    """A :class:`Checkpoint` on ``device``: loaded from a file path, or an already loaded one moved there."""
    dev = torch_device(device)
    if isinstance(checkpoint, Checkpoint):
        checkpoint.model.to(dev).eval()
        return checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        return load_checkpoint(checkpoint, map_location=dev)
    raise TypeError(f"checkpoint: expected a Checkpoint or a file path, got {type(checkpoint).__name__}")


# ----------------------------------------------------------------------------------------------------------
# features from a model state
# ----------------------------------------------------------------------------------------------------------
def _values(v: Any) -> np.ndarray:
    return np.asarray(v.values if isinstance(v, Forcing) else v, dtype=float)


def friction_coefficient(state: ModelState) -> np.ndarray | None:
    """The friction coefficient the networks see: Budd/Coulomb ``coefficient``, Weertman ``C``."""
    f = state.friction
    key = "C" if f.law == "weertman" else "coefficient"
    value = f.fields.get(key)
    return None if value is None else np.asarray(value, float)


def dirichlet_velocity(state: ModelState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mask, vx_spc, vy_spc)``: 1.0 where ``spcvx`` or ``spcvy`` is set, and the values (0 where free)."""
    spx = np.asarray(state.stressbalance.spcvx, float)
    spy = np.asarray(state.stressbalance.spcvy, float)
    mask = (~np.isnan(spx)) | (~np.isnan(spy))
    return mask.astype(float), np.nan_to_num(spx, nan=0.0), np.nan_to_num(spy, nan=0.0)


def _calving_threshold(state: ModelState) -> np.ndarray | None:
    if state.calving.law != "vonmises":
        return None
    value = state.calving.params.get("stress_threshold_floatingice")
    return None if value is None else _values(value)


def available_features(state: ModelState, mode: str) -> set[str]:
    """Names of the features this state can supply to a network of ``mode`` (``'step'``/``'direct'``)."""
    names = set(SCALAR_FEATURES) | set(VECTOR_FEATURES)
    if mode != "direct":
        names.discard("time")
    if friction_coefficient(state) is None:
        names.discard("friction_coefficient")
    if not has_floating_melt(state):
        names.discard("melt_rate")
    if _calving_threshold(state) is None:
        names.discard("calving_threshold")
    return names


def _finite(name: str, values: np.ndarray) -> np.ndarray:
    if values.size == 0 or not np.all(np.isfinite(values)):
        feat = SCALAR_FEATURES[name]
        raise ModelInputError(feat.md_field, f"finite values for the emulator's forcing parameter {name!r} "
                              f"({feat.unit})", "NaN, inf or nothing")
    return values


def forcing_parameters(state: ModelState, times: Sequence[float] | None = None) -> dict[str, Any]:
    """Values of the forcing parameters over a run, for the training-range check (SI).

    ``melt_rate``: the floating-ice melt field at the floating vertices (all vertices when none floats),
    every time stamp of a prescribed field, or the parameterisation evaluated on the initial geometry;
    ``calving_threshold``: ``stress_threshold_floatingice`` (von Mises calving); ``time``: ``times`` minus
    ``start_time`` (direct mode). Parameters the state does not define are left out.
    """
    out: dict[str, Any] = {}
    floating = np.asarray(state.masks.ocean_levelset, float) < 0.0
    pick = floating if floating.any() else np.ones_like(floating)
    bf = state.basalforcings
    if bf.kind == "default" and bf.floatingice_melting_rate is not None:
        vals = _values(bf.floatingice_melting_rate)  # (nv,) or (nv, nt): every time stamp counts
        if vals.ndim == 0:
            vals = np.full(state.numberofvertices, float(vals))
        out["melt_rate"] = _finite("melt_rate", vals[pick])
    elif bf.kind in ("linear", "mismip"):
        t0 = state.timestepping.start_time
        field = melt.floating_melt_rate(state, t0, base=np.asarray(state.geometry.base, float))
        out["melt_rate"] = _finite("melt_rate", field[pick])
    thr = _calving_threshold(state)
    if thr is not None:
        out["calving_threshold"] = _finite("calving_threshold", thr)
    if times is not None:
        out["time"] = np.asarray(times, float) - state.timestepping.start_time
    return out


def check_state(ckpt: Checkpoint, state: ModelState, mode: str, *, arch: str | None = None,
                times: Sequence[float] | None = None) -> None:
    """Check a checkpoint against a state: mode, architecture, inputs available, forcing in range.

    Raises :class:`~issm_emulator.nn.checkpoint.CheckpointMismatchError` on a mismatch and warns
    :class:`~issm_emulator.errors.ExtrapolationWarning` for forcing outside the training range.
    """
    ckpt.check(available_features(state, mode), forcing_parameters(state, times), mode=mode, arch=arch)


def feature_arrays(state: ModelState, *, thickness, surface, base, bed, ocean_levelset, ice_levelset, vx, vy,
                   smb, melt_rate=None, elapsed: float | None = None, edge_index: np.ndarray | None = None,
                   is_boundary: np.ndarray | None = None) -> dict[str, Any]:
    """Every network input this state defines, by feature name (SI), for :func:`build_inputs`.

    The current fields are passed in (they change along a rollout); materials, friction, Dirichlet
    conditions and forcing parameters come from ``state``. ``edge_index`` (the mesh graph's) gives
    ``is_front`` from the current ``ice_levelset``; ``elapsed`` (s since the start) is the ``time`` input.
    """
    mask, spx, spy = dirichlet_velocity(state)
    out: dict[str, Any] = {
        "thickness": thickness, "bed": bed, "surface": surface, "base": base,
        "ocean_levelset": ocean_levelset, "ice_levelset": ice_levelset,
        "friction_coefficient": friction_coefficient(state),
        "rheology_B": np.asarray(state.materials.rheology_B, float), "smb": smb,
        "dirichlet_mask": mask, "melt_rate": melt_rate,
        "velocity": np.stack([np.asarray(vx, float), np.asarray(vy, float)], 1),
        "velocity_dirichlet": np.stack([spx, spy], 1),
    }
    thr = _calving_threshold(state)
    if thr is not None:
        out["calving_threshold"] = thr if thr.size != 1 else float(thr.ravel()[0])
    if elapsed is not None:
        out["time"] = float(elapsed)
    if is_boundary is not None:
        out["is_boundary"] = np.asarray(is_boundary, float)
    if edge_index is not None:
        out["is_front"] = front_vertices(edge_index, np.asarray(ice_levelset, float)).astype(float)
    return {k: v for k, v in out.items() if v is not None}


# ----------------------------------------------------------------------------------------------------------
# the network bound to one mesh and device
# ----------------------------------------------------------------------------------------------------------
class _Network:
    """A checkpoint's network bound to one mesh and device: builds inputs, runs batched forward passes."""

    def __init__(self, ckpt: Checkpoint, state: ModelState, device: Any, batch_size: int | None = None):
        self.ckpt = ckpt
        self.spec = ckpt.spec
        self.device = torch_device(device)
        self.model = ckpt.model.to(self.device).eval()
        p = next(self.model.parameters(), None)
        self.dtype = p.dtype if p is not None else torch.float32
        self.pmesh = P1Mesh.from_mesh(state.mesh)
        graph = mesh_graph(state.mesh, dtype=self.dtype)
        self.edge_index = graph.edge_index.numpy()
        self.is_boundary = graph.is_boundary.numpy()
        self.graph = graph
        self.nv = state.numberofvertices
        self.batch_size = batch_size
        self._batches: dict[int, Any] = {}
        self.forward_passes = 0

    def arrays(self, state: ModelState, **fields: Any) -> dict[str, Any]:
        return feature_arrays(state, edge_index=self.edge_index, is_boundary=self.is_boundary, **fields)

    def inputs(self, arrays: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return build_inputs(self.spec, self.pmesh, dtype=self.dtype, device=self.device, **arrays)

    def _batch(self, n: int) -> Any:
        b = self._batches.get(n)
        if b is None:
            from torch_geometric.data import Batch

            b = Batch.from_data_list([self.graph] * n).to(self.device)
            self._batches[n] = b
        return b

    @torch.no_grad()
    def predict(self, items: list[tuple[torch.Tensor, torch.Tensor]],
                size: int | None = None) -> list[dict[str, np.ndarray]]:
        """Forward passes over ``items`` (``(scalars, vectors)`` of one graph each), ``size`` (default
        ``batch_size``) graphs at a time; returns per item ``{'vx', 'vy', <scalar outputs>}`` as float64
        numpy arrays (SI)."""
        out: list[dict[str, np.ndarray]] = []
        size = size or self.batch_size or len(items) or 1
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            n = len(chunk)
            s = torch.cat([c[0] for c in chunk])
            v = torch.cat([c[1] for c in chunk])
            s, v = self.ckpt.input_normalizer.encode(s, v)
            res = self.model(self._batch(n), s, v)
            self.forward_passes += 1
            vo = res["velocity"].reshape(-1, 1, 2)
            names = self.spec.scalar_outputs
            so = torch.stack([res[k] for k in names], 1) if names else vo.new_zeros((vo.shape[0], 0))
            so, vo = self.ckpt.output_normalizer.decode(so, vo)
            so = so.detach().to("cpu", torch.float64).numpy().reshape(n, self.nv, len(names))
            vo = vo.detach().to("cpu", torch.float64).numpy().reshape(n, self.nv, 2)
            for k in range(n):
                d = {"vx": vo[k, :, 0].copy(), "vy": vo[k, :, 1].copy()}
                for j, name in enumerate(names):
                    d[name] = so[k, :, j].copy()
                out.append(d)
        return out


def _diverged(what: str, k: int, t: float, yts: float, member: int | None) -> EmulatorDivergedError:
    who = "" if member is None else f" (ensemble member {member})"
    return EmulatorDivergedError(f"emulator rollout produced NaN/inf in {what} at step {k} "
                                 f"(t = {t / yts:g} yr){who}; the model probably lies outside what the "
                                 "checkpoint was trained on (another glacier, mesh resolution or forcing): "
                                 "solve it with solver='fem', or train a checkpoint on an ensemble of such "
                                 "models (docs/ensembles-and-training.md)", step=k, time=t / yts)


def _check_finite(pred: dict[str, np.ndarray], k: int, t: float, yts: float, member: int | None) -> None:
    bad = [name for name, arr in pred.items() if not np.all(np.isfinite(arr))]
    if bad:
        raise _diverged("the network's " + ", ".join(bad), k, t, yts, member)


def _member_label(n: int, m: int) -> int | None:
    return m if n > 1 else None


def _impose_dirichlet(state: ModelState, vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spx = np.asarray(state.stressbalance.spcvx, float)
    spy = np.asarray(state.stressbalance.spcvy, float)
    return np.where(np.isnan(spx), vx, spx), np.where(np.isnan(spy), vy, spy)


# ----------------------------------------------------------------------------------------------------------
# step mode
# ----------------------------------------------------------------------------------------------------------
def _step_network(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], device: Any,
                  batch_size: int | None, arch: str | None) -> _Network:
    """A step-mode checkpoint, checked against every state, bound to the first state's mesh."""
    ckpt = load(checkpoint, device)
    for st in states:
        check_state(ckpt, st, "step", arch=arch)
    return _Network(ckpt, states[0], device, batch_size)


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


class _NetworkVelocity:
    """The step mode's velocity provider: one batched forward pass over the requests of a step."""

    def __init__(self, net: _Network):
        self.net = net
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
            _check_finite(pred, r.step, r.time, r.state.yts, r.member)
            vx, vy, n = limit_speed(pred["vx"], pred["vy"], self.vmax)
            self.limited += n
            vx, vy = _impose_dirichlet(r.state, vx, vy)
            out.append((vx, vy, {"niter": FORWARD_PASSES_PER_SOLVE, "speed_limited": n}))
        return out

    def __call__(self, state: ModelState, geometry: StepGeometry, vx_prev: np.ndarray, vy_prev: np.ndarray,
                 t: float, step: int) -> VelocityResult:
        return self.many([VelocityRequest(state, geometry, vx_prev, vy_prev, t, step, None)])[0]


def rollout_step_many(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], *,
                      device: Any = "cpu", batch_size: int | None = None, arch: str | None = None,
                      progress: bool = False, solver_name: str = "emulator") -> list[SolverResult]:
    """Step-mode transients of several models on one mesh, advanced together (see the module docstring).

    Parameters
    ----------
    checkpoint : a loaded step-mode :class:`Checkpoint` or its file
    states : model states on the same mesh (the first one's mesh is used for the graph); they may differ
        in anything else, time stepping included
    device : torch device of the network (the FE parts run on the CPU)
    batch_size : most graphs per forward pass (default: all members at once)
    arch : when given, the checkpoint's architecture must be this one
    progress : show a progress bar over the steps
    solver_name : name used in warnings and in the result's ``info``

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
    net = _step_network(checkpoint, states, device, batch_size, arch)
    provider = _NetworkVelocity(net)
    runs = run_transient_many(states, provider, pmesh=net.pmesh, solver_name=solver_name,
                              error=EmulatorDivergedError, velocity_timing="network", progress=progress,
                              desc=f"{solver_name} step rollout")
    if provider.limited:
        warnings.warn(f"{solver_name}: the network's speed exceeded {SPEED_LIMIT_RMS:g} x the training RMS speed "
                      f"({provider.vmax * states[0].yts:.0f} m/yr) at {provider.limited} vertex-steps and was "
                      "limited there; the model may lie outside the checkpoint's training data", RuntimeWarning,
                      stacklevel=2)
    for r in runs:
        r.info = {"mode": "step", "nsteps": r.info["nsteps"], "forward_passes": net.forward_passes,
                  "ensemble_size": len(states), "timings_s": r.info["timings_s"],
                  "speed_limited": provider.limited}
    return runs


def rollout_step(checkpoint: Checkpoint | str | os.PathLike, state: ModelState, *, device: Any = "cpu",
                 arch: str | None = None, progress: bool = False, solver_name: str = "emulator") -> SolverResult:
    """Step-mode transient of one model: :func:`rollout_step_many` with one state."""
    return rollout_step_many(checkpoint, [state], device=device, arch=arch, progress=progress,
                             solver_name=solver_name)[0]


# ----------------------------------------------------------------------------------------------------------
# direct mode
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _DirectItem:
    member: int
    k: int
    t: float


def _direct_inputs(net: _Network, state: ModelState, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    interp = bool(state.timestepping.interp_forcing)
    g = state.geometry
    smb = np.broadcast_to(np.asarray(state.smb.at(t, interp), float), (state.numberofvertices,))
    fmb = melt.floating_melt_rate(state, t, base=np.asarray(g.base, float)) if has_floating_melt(state) else None
    arrays = net.arrays(state, thickness=g.thickness, surface=g.surface, base=g.base, bed=g.bed,
                        ocean_levelset=state.masks.ocean_levelset, ice_levelset=state.masks.ice_levelset,
                        vx=state.vx, vy=state.vy, smb=smb, melt_rate=fmb,
                        elapsed=t - state.timestepping.start_time)
    return net.inputs(arrays)


def _direct_predict(net: _Network, states: Sequence[ModelState], items: list[_DirectItem],
                    on_done: Callable[[int], None] | None = None) -> list[dict[str, np.ndarray]]:
    """Predictions for (member, time) items, ``batch_size`` graphs per forward pass, inputs built lazily."""
    size = net.batch_size or len(items) or 1
    out: list[dict[str, np.ndarray]] = []
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        tensors = [_direct_inputs(net, states[it.member], it.t) for it in chunk]
        preds = net.predict(tensors, size=len(chunk))
        for it, p in zip(chunk, preds):
            _check_finite(p, it.k, it.t, states[it.member].yts, _member_label(len(states), it.member))
        out.extend(preds)
        if on_done is not None:
            on_done(len(chunk))
    return out


def rollout_direct(checkpoint: Checkpoint | str | os.PathLike, state: ModelState, times: Sequence[float], *,
                   device: Any = "cpu", batch_size: int | None = None,
                   arch: str | None = None) -> list[dict[str, Any]]:
    """Direct-mode predictions at ``times`` (s, model time) from the initial state.

    Returns one dict per time: ``'time'`` (s), ``'vx'``, ``'vy'`` (m/s), ``'thickness'`` (m) and, for
    networks that predict it, ``'ice_levelset'``; all ``(nv,)`` float64. ``batch_size`` times go through
    the network per forward pass (default: all). Raises :class:`EmulatorDivergedError` naming the index
    (1-based) of the first time whose prediction is not finite.
    """
    ckpt = load(checkpoint, device)
    times = [float(t) for t in np.atleast_1d(np.asarray(times, float))]
    check_state(ckpt, state, "direct", arch=arch, times=times)
    net = _Network(ckpt, state, device, batch_size)
    items = [_DirectItem(0, k, t) for k, t in enumerate(times, start=1)]
    preds = _direct_predict(net, [state], items)
    return [{"time": it.t, **p} for it, p in zip(items, preds)]


def _direct_step(state: ModelState, outputs: RequestedOutputs, k: int, t: float, pred: dict[str, np.ndarray],
                 label: int | None) -> dict[str, Any]:
    """One output step of the direct mode from the network's prediction at ``t``."""
    flags = state.transient
    mat = state.materials
    mt = state.masstransport
    e = outputs.pmesh.elements
    interp = bool(state.timestepping.interp_forcing)
    f = TransientFields.initial(state, e)
    out: dict[str, Any] = {"step": k, "time": t}
    if flags.isstressbalance:
        f.vx, f.vy = _impose_dirichlet(state, pred["vx"], pred["vy"])
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
            raise _diverged(name, k, t, state.yts, label)
    smb = np.broadcast_to(np.asarray(state.smb.at(t, interp), float), f.thickness.shape)
    fmb = melt.floating_melt_rate(state, t, base=f.base, bed=f.bed) if has_floating_melt(state) \
        else np.zeros_like(f.thickness)
    forcing = StepForcing(smb=smb, floatingice_melt=fmb, groundedice_melt=melt.grounded_melt_rate(state, t))
    return assemble_outputs(outputs, out, f, forcing)


def direct_transient_many(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], *,
                          device: Any = "cpu", batch_size: int | None = None, arch: str | None = None,
                          progress: bool = False, solver_name: str = "emulator") -> list[SolverResult]:
    """Direct-mode transients: the fem solver's output steps, each predicted from the initial state.

    Only output steps are evaluated (every ``output_frequency`` steps, the first and the last, at the fem
    solver's step times). Thickness is floored at ``min_thickness`` and ``spcthickness`` imposed; base and
    surface follow from flotation (:func:`~issm_emulator.physics.masstransport.update_geometry` from the
    initial geometry) and grounding-line migration. Returns one :class:`SolverResult` per state.
    """
    if not states:
        return []
    ckpt = load(checkpoint, device)
    net = _Network(ckpt, states[0], device, batch_size)
    items: list[_DirectItem] = []
    outputs = []
    nsteps = []
    for m, st in enumerate(states):
        schedule = transient_schedule(st)
        nsteps.append(len(schedule))
        chosen = [(s.step, s.time) for s in schedule if s.output]
        check_state(ckpt, st, "direct", arch=arch, times=[t for _, t in chosen] or None)
        items.extend(_DirectItem(m, k, t) for k, t in chosen)
        outputs.append(RequestedOutputs(st, net.pmesh, solver_name))
    bar = progress_bar(len(items), progress, f"{solver_name} direct rollout")
    preds = _direct_predict(net, states, items, on_done=bar.update)
    bar.close()
    per_member: list[list[dict[str, Any]]] = [[] for _ in states]
    for it, p in zip(items, preds):
        st = states[it.member]
        per_member[it.member].append(_direct_step(st, outputs[it.member], it.k, it.t, p,
                                                  _member_label(len(states), it.member)))
    results = []
    for m in range(len(states)):
        info = {"mode": "direct", "nsteps": nsteps[m],
                "forward_passes": net.forward_passes, "ensemble_size": len(states)}
        results.append(SolverResult(TRANSIENT, per_member[m], info))
    return results


# ----------------------------------------------------------------------------------------------------------
# stress balance
# ----------------------------------------------------------------------------------------------------------
def stressbalance_many(checkpoint: Checkpoint | str | os.PathLike, states: Sequence[ModelState], *,
                       device: Any = "cpu", batch_size: int | None = None, arch: str | None = None,
                       solver_name: str = "emulator") -> list[SolverResult]:
    """``StressbalanceSolution`` of each state: one forward pass of a step-mode network (batched).

    Forcing is evaluated at ``md.timestepping.start_time``; the output step is ``step 1, time 0`` as the
    fem solver's, with ``Vx, Vy, Vel, Pressure`` and the requested stresses and flux gates.
    """
    if not states:
        return []
    net = _step_network(checkpoint, states, device, batch_size, arch)
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
        _check_finite(p, 1, 0.0, st.yts, _member_label(len(states), m))
        vx, vy = _impose_dirichlet(st, p["vx"], p["vy"])
        out = stressbalance_step(st, net.pmesh, vx, vy, FORWARD_PASSES_PER_SOLVE, solver_name)
        results.append(SolverResult(STRESSBALANCE, [out], {"mode": "step", "forward_passes": net.forward_passes,
                                                           "ensemble_size": len(states)}))
    return results
