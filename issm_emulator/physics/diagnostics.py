"""Integrated diagnostics that ISSM computes as requested outputs, in SI units.

Element sums over the elements with ice (``ice_elements``), with ``A_e`` the element area,
``f_e`` its grounded fraction and ``mean`` the mean of the three vertex values:

* ``IceVolume`` = sum A_e mean(H)  [m^3]
* ``IceVolumeAboveFloatation`` = sum over elements that are not floating (ISSM's per-migration rule) of
  A_e (mean(s) - mean(b) + min(rho_w / rho_i mean(bed), 0))  [m^3] (ISSM does not subtract sea level here)
* ``GroundedArea`` = sum A_e f_e, ``FloatingArea`` = sum A_e (1 - f_e)  [m^2]
* ``TotalSmb`` = rho_i sum A_e mean(m_s)  [kg/s]
* ``TotalGroundedBmb`` = rho_i sum A_e f_e mean(m_g), ``TotalFloatingBmb`` = rho_i sum A_e (1 - f_e) mean(m_f)
  [kg/s]

The ``...Scaled`` variants multiply ``A_e`` by the element mean of ``md.mesh.scale_factor``.

:func:`mass_flux` is the flux through a gate (ISSM's ``massfluxatgate`` outputs, e.g. ``MassFlux1``) [kg/s].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from issm_emulator.physics.fe import P1Mesh

SCALAR_OUTPUTS = (
    "IceVolume", "IceVolumeAboveFloatation", "GroundedArea", "FloatingArea", "TotalSmb",
    "TotalFloatingBmb", "TotalGroundedBmb",
)
SCALED_OUTPUTS = tuple(n + "Scaled" for n in SCALAR_OUTPUTS)


@dataclass(frozen=True)
class DiagnosticInputs:
    """Everything the diagnostics need at one output step (SI units, per-vertex unless noted)."""

    thickness: np.ndarray
    surface: np.ndarray
    base: np.ndarray
    bed: np.ndarray
    grounded_fraction: np.ndarray  #: (ne,)
    floating_elements: np.ndarray  #: (ne,) bool, ISSM's IsFloating for the migration in use
    ice_elements: np.ndarray  #: (ne,) bool
    smb: np.ndarray
    groundedice_melt: np.ndarray
    floatingice_melt: np.ndarray
    rho_ice: float
    rho_water: float
    scale_factor: np.ndarray | None = None


def _areas(pmesh: P1Mesh, d: DiagnosticInputs, scaled: bool) -> np.ndarray:
    a = np.abs(pmesh.area) * np.asarray(d.ice_elements, bool)
    if scaled:
        if d.scale_factor is None:
            raise ValueError("a '...Scaled' output needs md.mesh.scale_factor")
        a = a * pmesh.element_mean(d.scale_factor)
    return a


def compute(name: str, pmesh: P1Mesh, d: DiagnosticInputs) -> float:
    """The scalar diagnostic ``name`` (one of :data:`SCALAR_OUTPUTS` or :data:`SCALED_OUTPUTS`)."""
    scaled = name.endswith("Scaled")
    base_name = name[: -len("Scaled")] if scaled else name
    a = _areas(pmesh, d, scaled)
    f = np.asarray(d.grounded_fraction, float)
    mean = pmesh.element_mean
    if base_name == "IceVolume":
        return float(np.sum(a * mean(d.thickness)))
    if base_name == "IceVolumeAboveFloatation":
        keep = ~np.asarray(d.floating_elements, bool)
        bed = mean(d.bed)
        haf = mean(d.surface) - mean(d.base) + np.minimum(d.rho_water / d.rho_ice * bed, 0.0)
        return float(np.sum(np.where(keep, a * haf, 0.0)))
    if base_name == "GroundedArea":
        return float(np.sum(a * f))
    if base_name == "FloatingArea":
        return float(np.sum(a * (1.0 - f)))
    if base_name == "TotalSmb":
        return float(d.rho_ice * np.sum(a * mean(d.smb)))
    if base_name == "TotalGroundedBmb":
        return float(d.rho_ice * np.sum(a * f * mean(d.groundedice_melt)))
    if base_name == "TotalFloatingBmb":
        return float(d.rho_ice * np.sum(a * (1.0 - f) * mean(d.floatingice_melt)))
    raise KeyError(f"unknown diagnostic {name!r}; known: {', '.join(SCALAR_OUTPUTS + SCALED_OUTPUTS)}")


def mass_flux(pmesh: P1Mesh, segments: np.ndarray, thickness: np.ndarray, vx: np.ndarray, vy: np.ndarray,
              rho_ice: float, *, issm_point_values: bool = True) -> float:
    """Mass flux through a gate (ISSM's ``massfluxatgate`` output, ``Tria::MassFlux``), kg/s.

    .. math::  Q = \\rho_i \\sum_{pieces} \\int_{piece} H\\, (\\mathbf{u} \\cdot \\mathbf{n})\\, ds,
               \\qquad \\mathbf{n} = (y_2 - y_1,\\ x_1 - x_2) / L

    On a piece from ``P1 = (x1, y1)`` to ``P2 = (x2, y2)`` inside one element, ``H`` and ``w = L u.n =
    vx (y2 - y1) - vy (x2 - x1)`` are linear, so the integral is exact:
    ``(2 H1 w1 + H1 w2 + H2 w1 + 2 H2 w2) / 6`` with the end values ``H1, w1`` at ``P1``, ``H2, w2`` at ``P2``.

    ISSM evaluates the end values with ``GaussTria::GaussFromCoords``, which divides the two determinants
    by the element area instead of twice the area: its area coordinates are ``(2 l1, 2 l2, 1 - 2 l1 - 2 l2)``
    for the true ones ``(l1, l2, l3)``, so a P1 field ``f`` reads ``2 f(P) - f(v3)`` (``v3`` the element's
    third vertex). ``issm_point_values=True`` (default) reproduces that, as ISSM's ``MassFlux`` outputs (and
    the archived results of test 101) hold it; ``False`` uses the exact P1 values ``f(P)``.

    Parameters
    ----------
    pmesh : the mesh
    segments : (nseg, 5) ``[x1, y1, x2, y2, element]``, element **0-based** (e.g.
        ``ModelState.extras['mass_flux_gates'][name]``)
    thickness, vx, vy : (nv,) per-vertex fields (m, m/s)
    rho_ice : kg m^-3
    issm_point_values : reproduce ISSM's point evaluation (see above)

    Returns
    -------
    float : kg/s (positive where ice crosses to the right of the gate's direction of travel)
    """
    seg = np.asarray(segments, float)
    if seg.ndim != 2 or seg.shape[1] != 5:
        raise ValueError(f"mass_flux: segments must have shape (nseg, 5), got {seg.shape}")
    if seg.shape[0] == 0:
        return 0.0
    el = seg[:, 4].astype(np.int64)
    if np.any(el != seg[:, 4]) or el.min() < 0 or el.max() >= pmesh.ne:
        raise ValueError(f"mass_flux: element column must hold 0-based element numbers below {pmesh.ne}")
    tri = pmesh.elements[el]
    xc, yc = pmesh.x[tri].mean(axis=1), pmesh.y[tri].mean(axis=1)
    gx, gy = pmesh.dphidx[el], pmesh.dphidy[el]
    fields = np.stack([np.asarray(f, float)[tri] for f in (thickness, vx, vy)])  # (3, nseg, 3)

    def at(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """(3, nseg) H, vx, vy at the points: P1 shape functions are 1/3 at the centroid and linear."""
        phi = 1.0 / 3.0 + gx * (px - xc)[:, None] + gy * (py - yc)[:, None]
        val = np.sum(phi[None] * fields, axis=2)
        return 2.0 * val - fields[:, :, 2] if issm_point_values else val

    x1, y1, x2, y2 = seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3]
    dx, dy = x2 - x1, y2 - y1
    (h1, u1, v1), (h2, u2, v2) = at(x1, y1), at(x2, y2)
    w1 = u1 * dy - v1 * dx
    w2 = u2 * dy - v2 * dx
    return float(rho_ice * np.sum((2.0 * h1 * w1 + h1 * w2 + h2 * w1 + 2.0 * h2 * w2) / 6.0))
