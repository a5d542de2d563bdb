"""Basal melt rates under floating and grounded ice, as ISSM's basal-forcing classes compute them.

All rates are in m/s of ice equivalent (positive = melting), depths in m. ISSM evaluates the floating-ice
melt at every vertex from the geometry at the start of the mass-transport solve; whether a vertex's rate is
actually applied (floating or grounded ice) is decided per element by the mass-transport core
(:mod:`issm_emulator.physics.masstransport`, ``'NoMeltOnPartiallyFloating'``).

Parameterisations (``state.basalforcings.kind``):

``'default'``
    the prescribed ``floatingice_melting_rate`` field (constant or time series).
``'linear'`` (``linearbasalforcings``)
    with base ``b``, ``z_up = upperwater_elevation``, ``z_deep = deepwater_elevation``::

        m = m_up                                   if b >= z_up
        m = m_deep                                 if b <  z_deep
        m = a m_deep + (1 - a) m_up,  a = (b - z_up) / (z_deep - z_up)   otherwise

    plus ``perturbation_melting_rate``.
``'mismip'`` (``mismipbasalforcings``, MISMIP+)::

        m = Omega tanh((b - r) / H_c0) (z_0 - b)   if b <= z_0,   0 otherwise

    with ``Omega = meltrate_factor`` (1/s), ``H_c0 = threshold_thickness``, ``z_0 = upperdepth_melt`` and
    ``r`` the bed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.state import Forcing, ModelState


def _value(params: dict[str, Any], name: str, t: float, interp: bool, nv: int,
           default: float | None = None) -> np.ndarray:
    """A parameter at time ``t`` broadcast to ``(nv,)``: a number, a per-vertex array or a Forcing."""
    if name not in params or params[name] is None:
        if default is None:
            raise ModelInputError(f"md.basalforcings.{name}", "a number, a per-vertex field or a time series")
        return np.full(nv, float(default))
    p = params[name]
    if isinstance(p, Forcing):
        v = np.asarray(p.at(t, interp), dtype=float)
    else:
        v = np.asarray(p, dtype=float)
    v = np.ravel(v)
    if v.size == 1:
        out = np.full(nv, float(v[0]))
    elif v.size == nv:
        out = np.array(v, dtype=float)
    else:
        raise ModelInputError(f"md.basalforcings.{name}", f"a scalar or {nv} values (one per vertex)",
                              f"{v.size} values")
    if name == "perturbation_melting_rate":  # ISSM treats an unset (NaN) perturbation as 0
        out[np.isnan(out)] = 0.0
    return out


def linear_melt(base: np.ndarray, *, deepwater_melting_rate, upperwater_melting_rate,
                deepwater_elevation, upperwater_elevation, perturbation=0.0) -> np.ndarray:
    """ISSM's ``linearbasalforcings`` melt rate at each vertex from its base elevation ``base`` (m).

    All arguments broadcast against ``base``; rates in m/s, elevations in m.
    """
    b = np.asarray(base, dtype=float)
    m_deep = np.broadcast_to(np.asarray(deepwater_melting_rate, float), b.shape)
    m_up = np.broadcast_to(np.asarray(upperwater_melting_rate, float), b.shape)
    z_deep = np.broadcast_to(np.asarray(deepwater_elevation, float), b.shape)
    z_up = np.broadcast_to(np.asarray(upperwater_elevation, float), b.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = (b - z_up) / (z_deep - z_up)
    mid = alpha * m_deep + (1.0 - alpha) * m_up
    m = np.where(b >= z_up, m_up, np.where(b < z_deep, m_deep, mid))
    pert = np.nan_to_num(np.broadcast_to(np.asarray(perturbation, float), b.shape), nan=0.0)
    return m + pert


def mismip_melt(base: np.ndarray, bed: np.ndarray, *, meltrate_factor, threshold_thickness,
                upperdepth_melt) -> np.ndarray:
    """MISMIP+ melt rate (ISSM's ``mismipbasalforcings``) at each vertex, m/s.

    ``meltrate_factor`` in 1/s, ``threshold_thickness`` and ``upperdepth_melt`` in m.
    """
    b = np.asarray(base, dtype=float)
    r = np.asarray(bed, dtype=float)
    omega = np.broadcast_to(np.asarray(meltrate_factor, float), b.shape)
    z0 = np.broadcast_to(np.asarray(upperdepth_melt, float), b.shape)
    hc0 = np.asarray(threshold_thickness, float)
    m = omega * np.tanh((b - r) / hc0) * (z0 - b)
    return np.where(b > z0, 0.0, m)


def floating_melt_rate(state: ModelState, t: float, *, base: np.ndarray,
                       bed: np.ndarray | None = None) -> np.ndarray:
    """Floating-ice melt rate (m/s) at every vertex at time ``t`` (s) for the model's parameterisation.

    ``base`` is the current ice base (m); ``bed`` the bed (needed by ``'mismip'``; defaults to
    ``state.geometry.bed``).
    """
    bf = state.basalforcings
    nv = state.numberofvertices
    interp = bool(state.timestepping.interp_forcing)
    params = dict(bf.params or {})
    kind = bf.kind
    if kind == "default":
        if bf.floatingice_melting_rate is None:
            raise ModelInputError("md.basalforcings.floatingice_melting_rate",
                                  "a per-vertex field or time series (m/yr)", "nothing")
        return np.broadcast_to(np.asarray(bf.floatingice_melting_rate.at(t, interp), float), (nv,)).copy()
    if kind == "linear":
        return linear_melt(
            base,
            deepwater_melting_rate=_value(params, "deepwater_melting_rate", t, interp, nv, 50.0 / state.yts),
            upperwater_melting_rate=_value(params, "upperwater_melting_rate", t, interp, nv, 0.0),
            deepwater_elevation=_value(params, "deepwater_elevation", t, interp, nv, -800.0),
            upperwater_elevation=_value(params, "upperwater_elevation", t, interp, nv, -400.0),
            perturbation=_value(params, "perturbation_melting_rate", t, interp, nv, 0.0),
        )
    if kind == "mismip":
        r = state.geometry.bed if bed is None else bed
        r = np.asarray(r, float)
        if np.any(np.isnan(r)):
            raise ModelInputError("md.geometry.bed", "a finite bed elevation at every vertex "
                                  "(mismipbasalforcings needs it)", "NaN values")
        return mismip_melt(
            base, r,
            meltrate_factor=_value(params, "meltrate_factor", t, interp, nv, 0.2 / state.yts),
            threshold_thickness=_value(params, "threshold_thickness", t, interp, nv, 75.0),
            upperdepth_melt=_value(params, "upperdepth_melt", t, interp, nv, -100.0),
        )
    raise ModelInputError("md.basalforcings", "one of the classes basalforcings, linearbasalforcings, "
                          "mismipbasalforcings", repr(kind))


def grounded_melt_rate(state: ModelState, t: float) -> np.ndarray:
    """Grounded-ice melt rate (m/s) at every vertex at time ``t`` (s)."""
    interp = bool(state.timestepping.interp_forcing)
    g = state.basalforcings.groundedice_melting_rate
    return np.broadcast_to(np.asarray(g.at(t, interp), float), (state.numberofvertices,)).copy()
