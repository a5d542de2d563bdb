"""Basal friction laws of ISSM, evaluated at quadrature points.

The basal shear stress is tau_b = -alpha2 u. At each quadrature point, with fields interpolated linearly
from the vertices (ISSM's P1 inputs) and ``|u|`` the interpolated speed:

* Budd (``'budd'``, ISSM ``friction``): alpha2 = C^2 N^(q/p) |u|^(1/p - 1)
* Weertman (``'weertman'``): alpha2 = C^2 |u|^(1/m - 1)
* Coulomb (``'coulomb'``, ISSM ``frictioncoulomb``): alpha2 = min(C^2 N^(q/p) |u|^(1/p-1), Cc^2 N / |u|),
  0 when |u| = 0

with the effective pressure (``coupling`` 0) N = rho_i g H - rho_w g (z_sl - b), ``coupling`` 1:
N = rho_i g H, ``coupling`` 2: N = rho_i g H - max(0, rho_w g (z_sl - b)), ``coupling`` 3/4: the field
``effective_pressure``; finally N is raised to ``effective_pressure_limit * rho_i g H`` (so N >= 0 with the
default limit 0). A zero speed with a negative speed exponent gives alpha2 = 0 (ISSM's guard).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.state import Friction

LAWS = ("budd", "weertman", "coulomb")


@dataclass
class Alpha2:
    """alpha2 at quadrature points and its logarithmic speed derivative.

    ``alpha2`` (ne_sel, ng) in Pa s m^-1; ``dlog`` (ne_sel, ng) = d ln(alpha2) / d ln|u| (0 where alpha2
    does not depend on the speed), used by Newton's method: d(alpha2 u)/du = alpha2 (I + dlog u u^T/|u|^2).
    """

    alpha2: np.ndarray
    dlog: np.ndarray


def _field(fr: Friction, name: str) -> np.ndarray:
    if name not in fr.fields or fr.fields[name] is None:
        raise ModelInputError(f"md.friction.{name}", f"an array for friction law {fr.law!r}", "nothing")
    return np.asarray(fr.fields[name], dtype=float)


def at_points(field: np.ndarray, elements: np.ndarray, bary: np.ndarray, name: str) -> np.ndarray:
    """Values of a per-vertex (nv,) or per-element (ne,) field at barycentric points.

    ``elements`` (ne_sel, 3) rows of the selected elements, ``bary`` (ng, 3) or (ne_sel, ng, 3);
    a per-element field must already be restricted to the selection (length ne_sel) or be full length
    (then ``elem_index`` must be used by the caller). Returns (ne_sel, ng).
    """
    field = np.asarray(field, dtype=float)
    if field.ndim == 0:
        shape = bary.shape[:-1] if bary.ndim == 3 else (elements.shape[0], bary.shape[0])
        return np.full(shape, float(field))
    ve = field[elements]  # (ne_sel, 3)
    if bary.ndim == 2:
        return ve @ bary.T
    return np.einsum("ek,egk->eg", ve, bary)


def _per_point(arr: np.ndarray, nv: int, ne: int, elem: np.ndarray, elements_sel: np.ndarray,
               bary: np.ndarray, name: str) -> np.ndarray:
    """A friction parameter given per vertex (nv), per element (ne) or as a scalar, at the points."""
    arr = np.asarray(arr, dtype=float)
    ng_shape = bary.shape[:-1] if bary.ndim == 3 else (elements_sel.shape[0], bary.shape[0])
    if arr.ndim == 0 or arr.size == 1:
        return np.full(ng_shape, float(arr.ravel()[0]))
    if arr.shape[0] == nv and arr.ndim == 1:
        return at_points(arr, elements_sel, bary, name)
    if arr.shape[0] == ne and arr.ndim == 1:
        return np.broadcast_to(arr[elem][:, None], ng_shape).copy()
    raise ModelInputError(f"md.friction.{name}", f"{nv} values (one per vertex) or {ne} (one per element)",
                          f"shape {arr.shape}")


def effective_pressure(fr: Friction, H: np.ndarray, b: np.ndarray, *, rho_ice: float, rho_water: float,
                       g: float, sealevel: float, Nfield: np.ndarray | None = None) -> np.ndarray:
    """Effective pressure N (Pa) from thickness and base values (any shape), ISSM's ``EffectivePressure``."""
    p_ice = rho_ice * g * H
    coupling = int(fr.coupling)
    if coupling == 0:
        N = p_ice - rho_water * g * (sealevel - b)
    elif coupling == 1:
        N = p_ice.copy()
    elif coupling == 2:
        N = p_ice - np.maximum(0.0, rho_water * g * (sealevel - b))
    elif coupling in (3, 4):
        if Nfield is None:
            raise ModelInputError("md.friction.effective_pressure",
                                  f"a per-vertex array when md.friction.coupling is {coupling}", "nothing")
        N = np.array(Nfield, dtype=float, copy=True)
    else:
        raise ModelInputError("md.friction.coupling", "0, 1, 2, 3 or 4", str(fr.coupling))
    floor = float(fr.effective_pressure_limit) * p_ice
    return np.where(N < floor, floor, N)


def alpha2_at_points(fr: Friction, *, nv: int, ne: int, elem: np.ndarray, elements: np.ndarray,
                     bary: np.ndarray, thickness: np.ndarray, base: np.ndarray, vx: np.ndarray,
                     vy: np.ndarray, rho_ice: float, rho_water: float, g: float,
                     sealevel: float) -> Alpha2:
    """alpha2 of friction law ``fr`` at barycentric points of the selected elements.

    Parameters
    ----------
    fr : state.friction
    nv, ne : mesh sizes (to tell per-vertex from per-element parameters)
    elem : (ne_sel,) indices of the selected elements; ``elements`` their (ne_sel, 3) vertex rows
    bary : (ng, 3) or (ne_sel, ng, 3) barycentric points
    thickness, base, vx, vy : (nv,) vertex fields (m, m, m/s, m/s)
    """
    law = fr.law
    if law not in LAWS:
        raise ModelInputError("md.friction", f"one of the friction laws {', '.join(LAWS)}", repr(law))
    vxg = at_points(vx, elements, bary, "vx")
    vyg = at_points(vy, elements, bary, "vy")
    speed = np.sqrt(vxg * vxg + vyg * vyg)

    def pt(name: str) -> np.ndarray:
        return _per_point(_field(fr, name), nv, ne, elem, elements, bary, name)

    def N_at() -> np.ndarray:
        Hg = at_points(thickness, elements, bary, "thickness")
        bg = at_points(base, elements, bary, "base")
        Nf = None
        if int(fr.coupling) in (3, 4) and "effective_pressure" in fr.fields:
            Nf = pt("effective_pressure")
        return effective_pressure(fr, Hg, bg, rho_ice=rho_ice, rho_water=rho_water, g=g,
                                  sealevel=sealevel, Nfield=Nf)

    with np.errstate(divide="ignore", invalid="ignore"):
        if law == "weertman":
            C = pt("C")
            m = pt("m")
            e = 1.0 / m - 1.0
            a2 = np.where((speed == 0.0) & (e < 0.0), 0.0, C * C * speed ** e)
            dlog = np.where(a2 > 0.0, e, 0.0)
            return Alpha2(a2, dlog)
        C = pt("coefficient")
        p = pt("p")
        q = pt("q")
        r = q / p
        s = 1.0 / p
        N = N_at()
        Nr = np.where(r == 1.0, N, N ** r)
        base_a2 = np.where(s == 1.0, C * C * Nr,
                           np.where((speed == 0.0) & (s - 1.0 < 0.0), 0.0, C * C * Nr * speed ** (s - 1.0)))
        dlog = np.where(s == 1.0, 0.0, s - 1.0)
        if law == "budd":
            return Alpha2(base_a2, np.where(base_a2 > 0.0, dlog, 0.0))
        Cc = pt("coefficientcoulomb")
        a2c = np.where(speed == 0.0, 0.0, Cc * Cc * N / speed)
        use_c = a2c < base_a2
        a2 = np.where(use_c, a2c, base_a2)
        dl = np.where(use_c, -1.0, dlog)
        return Alpha2(a2, np.where(a2 > 0.0, dl, 0.0))


def basal_stress(fr: Friction, *, vx: np.ndarray, vy: np.ndarray, thickness: np.ndarray,
                 base: np.ndarray, rho_ice: float, rho_water: float, g: float,
                 sealevel: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodal basal shear stress (tau_bx, tau_by) = -alpha2 (u, v) evaluated at the vertices (Pa).

    Per-element parameters (p, q, m) are averaged onto vertices; no floating-ice rule is applied here.
    """
    nv = np.asarray(vx).shape[0]
    elements = np.arange(nv)[:, None] * np.ones((1, 3), dtype=np.int64)
    bary = np.array([[1.0, 0.0, 0.0]])
    fields = {}
    for k, v in fr.fields.items():
        v = np.asarray(v, dtype=float)
        fields[k] = v if v.ndim == 0 or v.shape[0] == nv else np.full(nv, float(np.mean(v)))
    fr_v = Friction(fr.law, fields, fr.coupling, fr.effective_pressure_limit)
    a = alpha2_at_points(fr_v, nv=nv, ne=-1, elem=np.arange(nv), elements=elements, bary=bary,
                         thickness=thickness, base=base, vx=vx, vy=vy, rho_ice=rho_ice,
                         rho_water=rho_water, g=g, sealevel=sealevel).alpha2[:, 0]
    return -a * np.asarray(vx), -a * np.asarray(vy)
