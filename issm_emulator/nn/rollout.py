"""Rollouts of a trained emulator on a model state: ``direct`` and ``step`` modes.

**Direct** (:func:`rollout_direct`, the seed paper's method): the network maps the initial state, the
forcing parameters and the elapsed time ``t - t_0`` to ``vx, vy, H`` (and the ice level set when the front
moves) at time ``t``. All requested times go through the network together, as one
:class:`torch_geometric.data.Batch` of copies of the mesh graph.

**Step** (:func:`rollout_step`): ISSM's transient loop (the ``fem`` solver's, :mod:`issm_emulator.solvers.fem`)
with the stress balance replaced by one network evaluation. From ``t`` to ``t + dt``:

1. SMB and basal melt at ``t + dt`` (melt from the geometry at the start of the step);
2. velocity ``u = N(H, b, s, r, phi_ocean, phi_ice, C, B, m_s, forcing; u_prev)`` from the geometry and
   masks at the start of the step, prescribed (``spcvx``/``spcvy``) values imposed where they are given;
3. moving front (``md.transient.ismovingfront``):
   :func:`issm_emulator.physics.levelset.advance_front`, then vertices outside the ice get
   ``min_thickness``;
4. mass transport ``dH/dt + div(H u) = m_s - m_b`` (implicit Euler, P1,
   :func:`issm_emulator.physics.masstransport.solve_thickness`) and the hydrostatic geometry update;
5. grounding-line migration (:func:`issm_emulator.physics.groundingline.migrate`);
6. outputs with the ``fem`` solver's names, SI units and step rules (every ``output_frequency`` steps, the
   first and the last).

Mass is conserved by step 4 to the precision of the sparse solve: summing the Galerkin equations over all
test functions gives ``V' - V = dt (int (m_s - m_b) - oint H' u.n ds)``, whatever velocity the network
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
import time as _time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from issm_emulator.errors import (
    EmulatorDivergedError,
    ModelInputError,
    SolverDivergedError,
    UnsupportedOptionError,
)
from issm_emulator.graph import front_vertices, mesh_graph
from issm_emulator.nn.checkpoint import Checkpoint, load_checkpoint
from issm_emulator.nn.features import SCALAR_FEATURES, VECTOR_FEATURES, build_inputs
from issm_emulator.physics import diagnostics, groundingline, masks, masstransport, melt
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers.base import STRESSBALANCE, TRANSIENT, SolverResult, vel
from issm_emulator.solvers.fem import time_steps
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

#: vertex outputs of the transient (as the fem solver's)
VECTOR_OUTPUTS = ("Vx", "Vy", "Vel", "Pressure", "Thickness", "Surface", "Base", "MaskOceanLevelset",
                  "MaskIceLevelset", "StressbalanceConvergenceNumSteps", "BasalforcingsFloatingiceMeltingRate",
                  "BasalforcingsGroundediceMeltingRate", "SmbMassBalance", "Bed", "CalvingCalvingrate")
STRESS_OUTPUTS = ("DeviatoricStressxx", "DeviatoricStressyy", "DeviatoricStressxy")
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


def _has_floating_melt(state: ModelState) -> bool:
    bf = state.basalforcings
    return bf.kind in ("linear", "mismip") or bf.floatingice_melting_rate is not None


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
    if not _has_floating_melt(state):
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
                                 f"(t = {t / yts:g} yr){who}", step=k, time=t / yts)


def _check_finite(pred: dict[str, np.ndarray], k: int, t: float, yts: float, member: int | None) -> None:
    bad = [name for name, arr in pred.items() if not np.all(np.isfinite(arr))]
    if bad:
        raise _diverged("the network's " + ", ".join(bad), k, t, yts, member)


def _member_label(n: int, m: int) -> int | None:
    return m if n > 1 else None


# ----------------------------------------------------------------------------------------------------------
# outputs shared by the modes
# ----------------------------------------------------------------------------------------------------------
class _Outputs:
    """Which outputs a state requests and how to compute them (the fem solver's rules)."""

    def __init__(self, state: ModelState, pmesh: P1Mesh, solver_name: str):
        self.state = state
        self.pmesh = pmesh
        self.requested = [n for n in state.requested_outputs if n != "default"]
        scalars = [n for n in self.requested if n in diagnostics.SCALAR_OUTPUTS + diagnostics.SCALED_OUTPUTS]
        self.scale_factor = state.extras.get("scale_factor")
        if self.scale_factor is None:
            dropped = [n for n in scalars if n.endswith("Scaled")]
            if dropped:
                warnings.warn(f"solver {solver_name!r}: {', '.join(dropped)} need md.mesh.scale_factor, which the "
                              "model state does not carry; these outputs are skipped", stacklevel=4)
                scalars = [n for n in scalars if n not in dropped]
        self.scalars = scalars
        self.gates = state.extras.get("mass_flux_gates", {})
        unsupported = [n for n in self.requested if n not in scalars and n not in VECTOR_OUTPUTS
                       and n not in STRESS_OUTPUTS and not n.endswith("Scaled") and n not in self.gates]
        if unsupported:
            warnings.warn(f"solver {solver_name!r} does not compute the requested output(s) "
                          f"{', '.join(unsupported)}; they are skipped", stacklevel=4)
        self.want_stress = any(n in STRESS_OUTPUTS for n in self.requested)

    def stresses(self, vx: np.ndarray, vy: np.ndarray) -> dict[str, np.ndarray]:
        if not self.want_stress:
            return {}
        from issm_emulator.physics.ssa import deviatoric_stress

        mat = self.state.materials
        tau = deviatoric_stress(self.pmesh, vx, vy, mat.rheology_B, mat.rheology_n, nodal=True)
        return {"DeviatoricStressxx": np.asarray(tau["xx"]), "DeviatoricStressyy": np.asarray(tau["yy"]),
                "DeviatoricStressxy": np.asarray(tau["xy"])}

    def fluxes(self, H: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> dict[str, float]:
        rho = self.state.materials.rho_ice
        return {n: diagnostics.mass_flux(self.pmesh, self.gates[n], H, vx, vy, rho)
                for n in self.requested if n in self.gates}

    def finish(self, out: dict[str, Any], *, H, s, b, bed, phi, ice, ice_el, vx, vy, smb, gmb, fmb,
               extra: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Add the requested vertex fields, scalar diagnostics and flux gates to an output step."""
        st = self.state
        if "BasalforcingsFloatingiceMeltingRate" in self.requested:
            out["BasalforcingsFloatingiceMeltingRate"] = np.array(fmb, dtype=float)
        table = {"Thickness": H, "Surface": s, "Base": b, "MaskOceanLevelset": phi, "MaskIceLevelset": ice,
                 "Bed": bed, "SmbMassBalance": smb, "BasalforcingsGroundediceMeltingRate": gmb, "Vx": vx,
                 "Vy": vy, **(extra or {})}
        for name in self.requested:
            if name in out or name in self.scalars:
                continue
            if name in table:
                out[name] = np.array(table[name], dtype=float)
            elif name == "Vel":
                out[name] = vel(vx, vy)
        if self.scalars:
            e = self.pmesh.elements
            mig = st.groundingline.migration
            d = diagnostics.DiagnosticInputs(
                thickness=H, surface=s, base=b, bed=bed, grounded_fraction=masks.grounded_portion(e, phi),
                floating_elements=masks.floating_elements(e, phi, mig), ice_elements=ice_el, smb=smb,
                groundedice_melt=gmb, floatingice_melt=fmb, rho_ice=st.materials.rho_ice,
                rho_water=st.materials.rho_water, scale_factor=self.scale_factor)
            for name in self.scalars:
                out[name] = diagnostics.compute(name, self.pmesh, d)
        out.update(self.fluxes(H, vx, vy))
        return out


def _impose_dirichlet(state: ModelState, vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spx = np.asarray(state.stressbalance.spcvx, float)
    spy = np.asarray(state.stressbalance.spcvy, float)
    return np.where(np.isnan(spx), vx, spx), np.where(np.isnan(spy), vy, spy)


def _progress(total: int, show: bool, desc: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step")


# ----------------------------------------------------------------------------------------------------------
# step mode
# ----------------------------------------------------------------------------------------------------------
class _StepMember:
    """One model advanced by the step-mode rollout (the fem transient loop with a network velocity)."""

    def __init__(self, state: ModelState, net: _Network, solver_name: str, label: int | None):
        self.state = state
        self.net = net
        self.label = label
        ts = state.timestepping
        self.steps = time_steps(ts.start_time, ts.final_time, ts.time_step, state.yts)
        self.nsteps = len(self.steps)
        self.freq = max(int(state.output_frequency), 1)
        self.interp = bool(ts.interp_forcing)
        self.outputs = _Outputs(state, net.pmesh, solver_name)
        g = state.geometry
        self.H = np.array(g.thickness, dtype=float)
        self.s = np.array(g.surface, dtype=float)
        self.b = np.array(g.base, dtype=float)
        self.bed = np.array(g.bed, dtype=float)
        self.phi = np.array(state.masks.ocean_levelset, dtype=float)
        self.ice = np.array(state.masks.ice_levelset, dtype=float)
        self.vx = np.array(state.vx, dtype=float)
        self.vy = np.array(state.vy, dtype=float)
        self.ice_el = masks.ice_elements(net.pmesh.elements, self.ice)
        self.out_steps: list[dict[str, Any]] = []
        self.timings = {"network": 0.0, "movingfront": 0.0, "masstransport": 0.0, "groundingline": 0.0,
                        "outputs": 0.0}
        self._k = 0
        self._forcing: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def running(self, k: int) -> bool:
        return k <= self.nsteps

    def begin(self, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Forcing of step ``k``; the network inputs when the step needs a velocity (else None)."""
        st = self.state
        t, _ = self.steps[k - 1]
        smb = np.broadcast_to(np.asarray(st.smb.at(t, self.interp), float), self.H.shape)
        # as the fem solver: the melt field is required when the thickness evolves (a clear error names
        # the md field otherwise); without mass transport an absent field means no melt
        need_melt = bool(st.transient.ismasstransport) or "melt_rate" in self.net.spec.scalars
        fmb = melt.floating_melt_rate(st, t, base=self.b, bed=self.bed) \
            if need_melt or _has_floating_melt(st) else np.zeros_like(self.H)
        gmb = melt.grounded_melt_rate(st, t)
        self._forcing = (smb, fmb, gmb)
        if not st.transient.isstressbalance:
            return None
        arrays = self.net.arrays(st, thickness=self.H, surface=self.s, base=self.b, bed=self.bed,
                                 ocean_levelset=self.phi, ice_levelset=self.ice, vx=self.vx, vy=self.vy, smb=smb,
                                 melt_rate=fmb)
        return self.net.inputs(arrays)

    def advance(self, k: int, pred: dict[str, np.ndarray] | None) -> None:
        """Finish step ``k`` with the network's velocity ``pred`` (None: no stress balance)."""
        st = self.state
        flags = st.transient
        pm = self.net.pmesh
        e = pm.elements
        yts = st.yts
        mat = st.materials
        mt = st.masstransport
        t, dt = self.steps[k - 1]
        assert self._forcing is not None
        smb, fmb, gmb = self._forcing
        out: dict[str, Any] = {"step": k, "time": t}
        if pred is not None:
            _check_finite(pred, k, t, yts, self.label)
            self.vx, self.vy = _impose_dirichlet(st, pred["vx"], pred["vy"])
        calving = None
        if flags.ismovingfront:
            from issm_emulator.physics.levelset import advance_front, ice_free_thickness

            c = _time.perf_counter()
            try:
                fu = advance_front(st, pm, ice_levelset=self.ice, vx=self.vx, vy=self.vy, thickness=self.H,
                                   base=self.b, bed=self.bed, ocean_levelset=self.phi, dt=dt, step=k, time=t)
            except SolverDivergedError as err:
                raise EmulatorDivergedError(f"moving front failed at step {k} (t = {t / yts:g} yr): {err}",
                                            step=k, time=t / yts) from err
            self.ice, self.vx, self.vy, self.H = fu.ice_levelset, fu.vx, fu.vy, fu.thickness
            self.H = ice_free_thickness(self.H, self.ice, e, mt.min_thickness)
            self.ice_el = masks.ice_elements(e, self.ice)
            calving = fu.calving_rate
            self.timings["movingfront"] += _time.perf_counter() - c
        if pred is not None:
            out.update(Vx=self.vx.copy(), Vy=self.vy.copy(), Vel=vel(self.vx, self.vy),
                       Pressure=mat.rho_ice * st.g * self.H, StressbalanceConvergenceNumSteps=FORWARD_PASSES_PER_SOLVE)
            out.update(self.outputs.stresses(self.vx, self.vy))
        if flags.ismasstransport:
            c = _time.perf_counter()
            spc = np.asarray(mt.spcthickness.at(t, self.interp), float)
            try:
                mres = masstransport.solve_thickness(
                    pm, thickness=self.H, vx=self.vx, vy=self.vy, dt=dt, smb=smb, groundedice_melt=gmb,
                    floatingice_melt=fmb, grounded_fraction=masks.grounded_portion(e, self.phi),
                    ice_elements=self.ice_el, spcthickness=spc, min_thickness=mt.min_thickness,
                    stabilization=mt.stabilization, melt_interpolation=st.groundingline.melt_interpolation)
            except SolverDivergedError as err:
                raise _diverged("the mass transport", k, t, yts, self.label) from err
            H_old, self.H = self.H, mres.thickness
            self.b, self.s = masstransport.update_geometry(
                self.H, base=self.b, surface=self.s, ocean_levelset=self.phi, rho_ice=mat.rho_ice,
                rho_water=mat.rho_water, sealevel=st.sealevel, bed=self.bed,
                isgroundingline=bool(flags.isgroundingline), hydrostatic_adjustment=mt.hydrostatic_adjustment,
                old_thickness=H_old)
            out.update(Thickness=self.H.copy(), Surface=self.s.copy(), Base=self.b.copy())
            self.timings["masstransport"] += _time.perf_counter() - c
        if flags.isgroundingline:
            c = _time.perf_counter()
            mig = groundingline.migrate(st.groundingline.migration, elements=e, thickness=self.H, base=self.b,
                                        surface=self.s, bed=self.bed, ocean_levelset=self.phi, rho_ice=mat.rho_ice,
                                        rho_water=mat.rho_water, sealevel=st.sealevel)
            self.b, self.s, self.phi = mig.base, mig.surface, mig.ocean_levelset
            out.update(Surface=self.s.copy(), Base=self.b.copy(), MaskOceanLevelset=self.phi.copy())
            self.timings["groundingline"] += _time.perf_counter() - c
        if flags.ismovingfront:
            out["MaskIceLevelset"] = self.ice.copy()
        for name, arr in (("Thickness", self.H), ("Surface", self.s), ("Base", self.b), ("Vx", self.vx),
                          ("Vy", self.vy), ("MaskIceLevelset", self.ice)):
            if not np.all(np.isfinite(arr)):
                raise _diverged(name, k, t, yts, self.label)
        if k % self.freq == 0 or k == 1 or k == self.nsteps:
            c = _time.perf_counter()
            extra = {"CalvingCalvingrate": calving} if calving is not None else None
            self.outputs.finish(out, H=self.H, s=self.s, b=self.b, bed=self.bed, phi=self.phi, ice=self.ice,
                                ice_el=self.ice_el, vx=self.vx, vy=self.vy, smb=smb, gmb=gmb, fmb=fmb, extra=extra)
            self.out_steps.append(out)
            self.timings["outputs"] += _time.perf_counter() - c


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
    ckpt = load(checkpoint, device)
    for st in states:
        check_state(ckpt, st, "step", arch=arch)
    net = _Network(ckpt, states[0], device, batch_size)
    members = [_StepMember(st, net, solver_name, _member_label(len(states), m)) for m, st in enumerate(states)]
    total = max(m.nsteps for m in members)
    bar = _progress(total, progress, f"{solver_name} step rollout")
    t_net = 0.0
    for k in range(1, total + 1):
        active = [m for m in members if m.running(k)]
        items = [(m, m.begin(k)) for m in active]
        with_net = [(m, x) for m, x in items if x is not None]
        c = _time.perf_counter()
        preds = net.predict([x for _, x in with_net]) if with_net else []
        t_net += _time.perf_counter() - c
        by_member = {id(m): p for (m, _), p in zip(with_net, preds)}
        for m in active:
            m.advance(k, by_member.get(id(m)))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    results = []
    for m in members:
        m.timings["network"] = t_net / len(members)
        info = {"mode": "step", "nsteps": m.nsteps, "forward_passes": net.forward_passes,
                "ensemble_size": len(members), "timings_s": m.timings}
        results.append(SolverResult(TRANSIENT, m.out_steps, info))
    return results


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
    fmb = melt.floating_melt_rate(state, t, base=np.asarray(g.base, float)) if _has_floating_melt(state) else None
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


def _direct_step(state: ModelState, outputs: _Outputs, k: int, t: float, pred: dict[str, np.ndarray],
                 label: int | None) -> dict[str, Any]:
    """One output step of the direct mode from the network's prediction at ``t``."""
    flags = state.transient
    mat = state.materials
    mt = state.masstransport
    pm = outputs.pmesh
    e = pm.elements
    interp = bool(state.timestepping.interp_forcing)
    g = state.geometry
    H0 = np.asarray(g.thickness, float)
    b0 = np.array(g.base, dtype=float)
    s0 = np.array(g.surface, dtype=float)
    bed = np.array(g.bed, dtype=float)
    phi = np.array(state.masks.ocean_levelset, dtype=float)
    ice = np.array(state.masks.ice_levelset, dtype=float)
    out: dict[str, Any] = {"step": k, "time": t}
    if flags.isstressbalance:
        vx, vy = _impose_dirichlet(state, pred["vx"], pred["vy"])
    else:
        vx, vy = np.array(state.vx, float), np.array(state.vy, float)
    if flags.ismovingfront and "ice_levelset" in pred:
        ice = pred["ice_levelset"]
    ice_el = masks.ice_elements(e, ice)
    if flags.ismasstransport:
        H = np.maximum(pred["thickness"], mt.min_thickness)
        spc = np.asarray(mt.spcthickness.at(t, interp), float)
        H = np.where(np.isnan(spc), H, spc)
        if flags.ismovingfront:
            from issm_emulator.physics.levelset import ice_free_thickness

            H = ice_free_thickness(H, ice, e, mt.min_thickness)
        b, s = masstransport.update_geometry(H, base=b0, surface=s0, ocean_levelset=phi, rho_ice=mat.rho_ice,
                                             rho_water=mat.rho_water, sealevel=state.sealevel, bed=bed,
                                             isgroundingline=bool(flags.isgroundingline),
                                             hydrostatic_adjustment=mt.hydrostatic_adjustment, old_thickness=H0)
    else:
        H, b, s = H0.copy(), b0, s0
    if flags.isstressbalance:
        out.update(Vx=vx.copy(), Vy=vy.copy(), Vel=vel(vx, vy), Pressure=mat.rho_ice * state.g * H,
                   StressbalanceConvergenceNumSteps=FORWARD_PASSES_PER_SOLVE)
        out.update(outputs.stresses(vx, vy))
    if flags.ismasstransport:
        out.update(Thickness=H.copy(), Surface=s.copy(), Base=b.copy())
    if flags.isgroundingline:
        mig = groundingline.migrate(state.groundingline.migration, elements=e, thickness=H, base=b, surface=s,
                                    bed=bed, ocean_levelset=phi, rho_ice=mat.rho_ice, rho_water=mat.rho_water,
                                    sealevel=state.sealevel)
        b, s, phi = mig.base, mig.surface, mig.ocean_levelset
        out.update(Surface=s.copy(), Base=b.copy(), MaskOceanLevelset=phi.copy())
    if flags.ismovingfront:
        out["MaskIceLevelset"] = np.array(ice, dtype=float)
    for name, arr in (("Thickness", H), ("Surface", s), ("Base", b)):
        if not np.all(np.isfinite(arr)):
            raise _diverged(name, k, t, state.yts, label)
    smb = np.broadcast_to(np.asarray(state.smb.at(t, interp), float), H.shape)
    fmb = melt.floating_melt_rate(state, t, base=b, bed=bed) if _has_floating_melt(state) else np.zeros_like(H)
    gmb = melt.grounded_melt_rate(state, t)
    return outputs.finish(out, H=H, s=s, b=b, bed=bed, phi=phi, ice=ice, ice_el=ice_el, vx=vx, vy=vy, smb=smb,
                          gmb=gmb, fmb=fmb)


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
    for m, st in enumerate(states):
        ts = st.timestepping
        steps = time_steps(ts.start_time, ts.final_time, ts.time_step, st.yts)
        freq = max(int(st.output_frequency), 1)
        n = len(steps)
        chosen = [(k, t) for k, (t, _) in enumerate(steps, start=1) if k % freq == 0 or k == 1 or k == n]
        check_state(ckpt, st, "direct", arch=arch, times=[t for _, t in chosen] or None)
        items.extend(_DirectItem(m, k, t) for k, t in chosen)
        outputs.append(_Outputs(st, net.pmesh, solver_name))
    bar = _progress(len(items), progress, f"{solver_name} direct rollout")
    preds = _direct_predict(net, states, items, on_done=(bar.update if bar is not None else None))
    if bar is not None:
        bar.close()
    per_member: list[list[dict[str, Any]]] = [[] for _ in states]
    for it, p in zip(items, preds):
        st = states[it.member]
        per_member[it.member].append(_direct_step(st, outputs[it.member], it.k, it.t, p,
                                                  _member_label(len(states), it.member)))
    results = []
    for m, st in enumerate(states):
        ts = st.timestepping
        info = {"mode": "direct", "nsteps": len(time_steps(ts.start_time, ts.final_time, ts.time_step, st.yts)),
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
    ckpt = load(checkpoint, device)
    for st in states:
        check_state(ckpt, st, "step", arch=arch)
    net = _Network(ckpt, states[0], device, batch_size)
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
        outputs = _Outputs(st, net.pmesh, solver_name)
        H = np.asarray(st.geometry.thickness, float)
        out: dict[str, Any] = {"step": 1, "time": 0.0, "Vx": vx, "Vy": vy, "Vel": vel(vx, vy),
                               "Pressure": st.materials.rho_ice * st.g * H,
                               "StressbalanceConvergenceNumSteps": FORWARD_PASSES_PER_SOLVE}
        out.update(outputs.stresses(vx, vy))
        out.update(outputs.fluxes(H, vx, vy))
        results.append(SolverResult(STRESSBALANCE, [out], {"mode": "step", "forward_passes": net.forward_passes,
                                                           "ensemble_size": len(states)}))
    return results
