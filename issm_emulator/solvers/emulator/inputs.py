"""Network inputs assembled from a :class:`~issm_emulator.state.ModelState`: the emulator runtime's side of
the feature definitions in :mod:`issm_emulator.nn.features`.

Inputs (:func:`feature_arrays`), all SI: geometry and masks of the current step; ``friction_coefficient``
(Budd's ``coefficient``, Weertman's ``C``); ``rheology_B``; ``smb``; ``dirichlet_mask`` (1 where
``spcvx`` or ``spcvy`` is set) and ``velocity_dirichlet`` (prescribed values, 0 elsewhere); ``is_boundary``,
``is_front`` (from the current ice level set); forcing parameters ``melt_rate`` (the floating-ice melt
field of the model's parameterisation, m/s, per vertex), ``calving_threshold``
(``md.calving.stress_threshold_floatingice``, von Mises calving) and, in direct mode, ``time`` (s since
``md.timestepping.start_time``). :func:`check_state` checks a checkpoint's manifest against what a state
supplies before any forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.graph import front_vertices
from issm_emulator.nn.features import SCALAR_FEATURES, VECTOR_FEATURES
from issm_emulator.physics import melt
from issm_emulator.solvers.emulator.checkpoint import Checkpoint
from issm_emulator.solvers.transient import has_floating_melt
from issm_emulator.state import Forcing, ModelState

__all__ = ["available_features", "check_state", "dirichlet_velocity", "feature_arrays", "forcing_parameters",
           "friction_coefficient", "impose_dirichlet"]


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


def calving_threshold(state: ModelState) -> np.ndarray | None:
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
    if calving_threshold(state) is None:
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
    thr = calving_threshold(state)
    if thr is not None:
        out["calving_threshold"] = _finite("calving_threshold", thr)
    if times is not None:
        out["time"] = np.asarray(times, float) - state.timestepping.start_time
    return out


def check_state(ckpt: Checkpoint, state: ModelState, mode: str, *, arch: str | None = None,
                times: Sequence[float] | None = None) -> None:
    """Check a checkpoint against a state: mode, architecture, inputs available, forcing in range.

    Raises :class:`~issm_emulator.solvers.emulator.checkpoint.CheckpointMismatchError` on a mismatch and warns
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
    thr = calving_threshold(state)
    if thr is not None:
        out["calving_threshold"] = thr if thr.size != 1 else float(thr.ravel()[0])
    if elapsed is not None:
        out["time"] = float(elapsed)
    if is_boundary is not None:
        out["is_boundary"] = np.asarray(is_boundary, float)
    if edge_index is not None:
        out["is_front"] = front_vertices(edge_index, np.asarray(ice_levelset, float)).astype(float)
    return {k: v for k, v in out.items() if v is not None}


def impose_dirichlet(state: ModelState, vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spx = np.asarray(state.stressbalance.spcvx, float)
    spy = np.asarray(state.stressbalance.spcvy, float)
    return np.where(np.isnan(spx), vx, spx), np.where(np.isnan(spy), vy, spy)
