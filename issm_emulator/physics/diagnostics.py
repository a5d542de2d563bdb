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
