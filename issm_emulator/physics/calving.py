"""Calving-rate laws of ISSM's moving-front core (``Calvingx``), vectorised over the mesh.

ISSM evaluates every "continuous" law **per element at its three vertices** (a P1DG field: the strain rate is
constant on a P1 element, the velocity, B, base... are taken at the vertex) and writes the nodal output
``CalvingCalvingrate`` as the arithmetic mean over the elements around a vertex. The functions below
therefore return ``(ne, 3)`` arrays (value of element ``e`` at its local vertex ``k``); :func:`nodal_mean`
turns them into ISSM's nodal outputs. All quantities in SI (m, s, Pa; rates in m/s).

Laws (``md.calving``):

* ``'default'`` (``calving``): prescribed ``calvingrate`` c (nodal Forcing).
* ``'levermann'`` (``calvinglevermann``, Levermann et al. 2012): c = K eps_par eps_perp where both are > 0
  and the base is <= 0 m (ISSM compares the base with 0, not with sea level), else 0, with
  eps_par  = (u^2 exx + v^2 eyy + 2 u v exy) / (u^2 + v^2 + 1e-14) and
  eps_perp = (u^2 eyy + v^2 exx - 2 u v exy) / (u^2 + v^2 + 1e-14).
* ``'vonmises'`` (``calvingvonmises``, Morlighem et al. 2016): l1, l2 = eigenvalues of the 2-D strain-rate
  tensor clipped at 0, eps_e^2 = (l1^2 + l2^2)/2, sigma_vm = sqrt(3) B eps_e^(1/n),
  c = |v| sigma_vm / sigma_max with sigma_max = ``stress_threshold_floatingice`` where ocean_levelset < 0,
  else ``stress_threshold_groundedice``; c = 0 where the ice base is above sea level. ISSM then also applies
  the minimum-thickness rule (:func:`minthickness_retreat`) with ``calving.min_thickness`` after the
  level-set solve.
* ``'minthickness'`` (``calvingminthickness``): a discrete law, c = 0 in the advection;
  :func:`minthickness_retreat` removes thin ice after the level-set solve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.physics.fe import P1Mesh

__all__ = [
    "CALVING_LAWS",
    "CalvingRates",
    "calving_rate",
    "levermann_rate",
    "minthickness_retreat",
    "nodal_mean",
    "prescribed_rate",
    "strain_rates_along_flow",
    "vonmises_rate",
    "vonmises_stress",
]

CALVING_LAWS = ("default", "vonmises", "levermann", "minthickness")
#: regularisations ISSM uses
_EPS_VEL2 = 1.0e-14


@dataclass
class CalvingRates:
    """Calving rate of one law.

    ``element`` is the ISSM P1DG field (ne, 3) (m/s) that drives the front; ``nodal`` its nodal mean
    (``CalvingCalvingrate``). ``extras`` holds per-law nodal diagnostics in SI (``StrainRateparallel``,
    ``StrainRateperpendicular`` for Levermann, ``SigmaVM`` for von Mises).
    """

    element: np.ndarray
    nodal: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def nodal_mean(mesh: P1Mesh, values: np.ndarray) -> np.ndarray:
    """(nv,) arithmetic mean, over the elements around each vertex, of a per-element-vertex field (ne, 3)."""
    vals = np.asarray(values, dtype=float)
    if vals.shape != (mesh.ne, 3):
        raise ValueError(f"expected an (ne, 3) = ({mesh.ne}, 3) element-vertex field, got {vals.shape}")
    idx = mesh.elements.ravel()
    s = np.bincount(idx, weights=vals.ravel(), minlength=mesh.nv)
    cnt = np.bincount(idx, minlength=mesh.nv).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / cnt


def _vertex_field(a: Any, nv: int, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0 or arr.size == 1:
        return np.full(nv, float(arr.ravel()[0]))
    if arr.shape != (nv,):
        raise ModelInputError(name, f"a scalar or {nv} values (one per vertex)", f"shape {arr.shape}")
    return arr


def _strain(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ue = np.asarray(vx, float)[mesh.elements]
    ve = np.asarray(vy, float)[mesh.elements]
    exx = np.einsum("ek,ek->e", mesh.dphidx, ue)
    eyy = np.einsum("ek,ek->e", mesh.dphidy, ve)
    exy = 0.5 * (np.einsum("ek,ek->e", mesh.dphidy, ue) + np.einsum("ek,ek->e", mesh.dphidx, ve))
    return exx, eyy, exy


def strain_rates_along_flow(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ISSM's ``StrainRateparallel`` and ``StrainRateperpendicular`` (1/s) per element vertex (ne, 3).

    eps_par = (u^2 exx + v^2 eyy + 2uv exy)/(u^2 + v^2 + 1e-14),
    eps_perp = (u^2 eyy + v^2 exx - 2uv exy)/(u^2 + v^2 + 1e-14), with (u, v) the vertex velocity and the
    strain rates of the element.
    """
    exx, eyy, exy = (a[:, None] for a in _strain(mesh, vx, vy))
    u = np.asarray(vx, float)[mesh.elements]
    v = np.asarray(vy, float)[mesh.elements]
    den = u * u + v * v + _EPS_VEL2
    par = (u * u * exx + v * v * eyy + 2.0 * u * v * exy) / den
    perp = (u * u * eyy + v * v * exx - 2.0 * u * v * exy) / den
    return par, perp


def levermann_rate(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray, base: np.ndarray,
                   coeff: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levermann calving rate c = K eps_par eps_perp (m/s) per element vertex, 0 unless eps_par > 0,
    eps_perp > 0 and base <= 0. Returns ``(c, eps_par, eps_perp)``, each (ne, 3)."""
    par, perp = strain_rates_along_flow(mesh, vx, vy)
    K = _vertex_field(coeff, mesh.nv, "md.calving.coeff")[mesh.elements]
    b = np.asarray(base, float)[mesh.elements]
    c = np.where((par > 0.0) & (perp > 0.0) & (b <= 0.0), K * par * perp, 0.0)
    return c, par, perp


def vonmises_stress(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray, B: np.ndarray,
                    n: np.ndarray | float) -> np.ndarray:
    """Tensile von Mises stress sigma_vm = sqrt(3) B eps_e^(1/n) (Pa) per element vertex (ne, 3).

    eps_e^2 = (max(l1, 0)^2 + max(l2, 0)^2)/2 with l1, l2 the eigenvalues of [[exx, exy], [exy, eyy]];
    B is the vertex value, n the element's exponent.
    """
    exx, eyy, exy = _strain(mesh, vx, vy)
    mean = 0.5 * (exx + eyy)
    rad = np.sqrt((0.5 * (exx - eyy)) ** 2 + exy * exy)
    l1 = np.maximum(mean + rad, 0.0)
    l2 = np.maximum(mean - rad, 0.0)
    epse2 = 0.5 * (l1 * l1 + l2 * l2)
    nn = np.asarray(n, dtype=float)
    nn = np.full(mesh.ne, float(nn.ravel()[0])) if nn.size == 1 else nn
    if nn.shape != (mesh.ne,):
        raise ModelInputError("md.materials.rheology_n", f"a scalar or {mesh.ne} values (one per element)",
                              f"shape {nn.shape}")
    Bv = _vertex_field(B, mesh.nv, "md.materials.rheology_B")[mesh.elements]
    return np.sqrt(3.0) * Bv * (epse2 ** (1.0 / (2.0 * nn)))[:, None]


def vonmises_rate(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray, *, B: np.ndarray, n: np.ndarray | float,
                  base: np.ndarray, ocean_levelset: np.ndarray, sigma_max_grounded: np.ndarray | float,
                  sigma_max_floating: np.ndarray | float, sealevel: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """von Mises calving rate c = |v| sigma_vm / sigma_max (m/s) per element vertex; 0 where base > sea
    level. Returns ``(c, sigma_vm)``, each (ne, 3)."""
    svm = vonmises_stress(mesh, vx, vy, B, n)
    e = mesh.elements
    smax_g = _vertex_field(sigma_max_grounded, mesh.nv, "md.calving.stress_threshold_groundedice")[e]
    smax_f = _vertex_field(sigma_max_floating, mesh.nv, "md.calving.stress_threshold_floatingice")[e]
    smax = np.where(np.asarray(ocean_levelset, float)[e] < 0.0, smax_f, smax_g)
    speed = np.hypot(np.asarray(vx, float)[e], np.asarray(vy, float)[e])
    c = np.where(np.asarray(base, float)[e] > sealevel, 0.0, speed * svm / smax)
    return c, svm


def prescribed_rate(mesh: P1Mesh, calvingrate: np.ndarray | float) -> np.ndarray:
    """The prescribed nodal ``calvingrate`` (m/s) as an (ne, 3) element-vertex field."""
    return _vertex_field(calvingrate, mesh.nv, "md.calving.calvingrate")[mesh.elements]


def calving_rate(state, mesh: P1Mesh, *, vx: np.ndarray, vy: np.ndarray, base: np.ndarray,
                 ocean_levelset: np.ndarray, time: float) -> CalvingRates:
    """Calving rate of ``state.calving.law`` from the current (extrapolated) velocity and geometry.

    ``time`` (s) is used to evaluate a transient ``calvingrate``. Discrete laws (``'minthickness'``) give 0.
    """
    law = state.calving.law
    p = state.calving.params
    if law not in CALVING_LAWS:
        raise ModelInputError("md.calving", f"one of the laws {', '.join(CALVING_LAWS)}", repr(law))
    extras: dict[str, np.ndarray] = {}
    if law == "default":
        forcing = p.get("calvingrate")
        if forcing is None:
            raise ModelInputError("md.calving.calvingrate", "a calving rate (m/yr) per vertex", "nothing")
        rate = forcing.at(time, bool(state.timestepping.interp_forcing)) if hasattr(forcing, "at") else forcing
        c = prescribed_rate(mesh, rate)
    elif law == "levermann":
        if "coeff" not in p:
            raise ModelInputError("md.calving.coeff", "the Levermann coefficient K (m s) per vertex", "nothing")
        c, par, perp = levermann_rate(mesh, vx, vy, base, p["coeff"])
        extras = {"StrainRateparallel": nodal_mean(mesh, par), "StrainRateperpendicular": nodal_mean(mesh, perp)}
    elif law == "vonmises":
        for k in ("stress_threshold_groundedice", "stress_threshold_floatingice"):
            if k not in p:
                raise ModelInputError(f"md.calving.{k}", "a stress threshold (Pa) per vertex", "nothing")
        c, svm = vonmises_rate(mesh, vx, vy, B=state.materials.rheology_B, n=state.materials.rheology_n,
                               base=base, ocean_levelset=ocean_levelset,
                               sigma_max_grounded=p["stress_threshold_groundedice"],
                               sigma_max_floating=p["stress_threshold_floatingice"], sealevel=state.sealevel)
        extras = {"SigmaVM": nodal_mean(mesh, svm)}
    else:  # minthickness: discrete law, no rate in the advection
        c = np.zeros((mesh.ne, 3))
    return CalvingRates(element=c, nodal=nodal_mean(mesh, c), extras=extras)


def minthickness_retreat(elements: np.ndarray, ice_levelset: np.ndarray, *, thickness: np.ndarray,
                         bed: np.ndarray, distance: np.ndarray, min_thickness: float, migration_max: float,
                         dt: float, sealevel: float = 0.0, value: float = 400.0) -> np.ndarray:
    """ISSM's post-solve minimum-thickness rule (``LevelsetAnalysis::PostProcess``).

    Every vertex of an ice-containing element (some vertex with ``ice_levelset < 0``) is switched to no ice
    (``ice_levelset = value``, +400 as ISSM) where ``thickness < min_thickness``, ``bed < sealevel``,
    ``ice_levelset < 0`` and ``|distance| < migration_max * dt`` (``distance``: distance to the current
    front, m). Returns the new level set.
    """
    ls = np.array(ice_levelset, dtype=float, copy=True)
    nv = ls.shape[0]
    ice_el = np.any(ls[elements] < 0.0, axis=1)
    in_ice_el = np.zeros(nv, dtype=bool)
    in_ice_el[elements[ice_el].ravel()] = True
    bed = np.asarray(bed, float)
    with np.errstate(invalid="ignore"):
        kill = (in_ice_el & (np.asarray(thickness, float) < min_thickness) & (bed < sealevel) & (ls < 0.0)
                & (np.abs(np.asarray(distance, float)) < migration_max * dt))
    ls[kill] = value
    return ls
