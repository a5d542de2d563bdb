"""Pine Island Glacier (West Antarctica) on ISSM's own test data, set up for sub-shelf melt ensembles.

The set-up follows ISSM's ``test/Par/Pig.par`` (nightly tests 501/504/540) with the changes a
transient melt experiment needs: grounding-line migration on, a prescribed floating-ice melt rate, and
time stepping / requested outputs suited to ensembles. The helpers at the bottom of this module are
shared by the other real-geometry scenarios.
"""

from __future__ import annotations

import getpass
import math
import os
import warnings
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.units import to_issm

__all__ = ["PIG_REQUESTED_OUTPUTS", "pine_island"]

#: Scalar outputs requested from every transient run of the scenario (ISSM names, see ``units.CF_UNITS``).
PIG_REQUESTED_OUTPUTS = ("default", "IceVolume", "IceVolumeAboveFloatation", "GroundedArea", "FloatingArea",
                         "TotalFloatingBmb")

_TEMPERATURE = 273.0 - 20.0  # K, as every ISSM Par file (paterson(253) = 1.8157e8 Pa s^(1/3))
_BUDD_C = 50.0  # (s/m)^(1/2), Budd coefficient on grounded ice (Pig.par, 79North.par)
EPSG = 3031  #: the projection of the Pig data (Antarctic polar stereographic), set as md.mesh.epsg


def pine_island(resolution: Any = 3e3, melt_rate: Any = 0.0, *, years: Any = 20.0, time_step: Any = 1.0 / 12.0,
                output_frequency: int = 1, smb: Any = 0.0,
                migration: str = "SubelementMigration") -> Any:
    """Pine Island Glacier: ISSM's Pig test geometry with a uniform sub-shelf melt rate.

    Built as ISSM's ``Pig.par`` builds tests 501/504/540:

    * mesh: ``Pig.exp`` meshed with ISSM's Triangle call at ``resolution`` (10 km gives ISSM's 182
      vertices); masks ``setmask(PigShelves.exp, PigIslands.exp)`` (ocean_levelset +1 grounded, -1 floating);
    * ``Pig.arch`` (7477-vertex source mesh) interpolated linearly onto the vertices: surface ``s``,
      thickness ``H``, observed velocities; ``base = s - H`` (floating vertices are therefore not exactly
      at flotation at t = 0, as in ISSM); ``bed = base`` on grounded vertices and the archive's bed under
      floating vertices, clipped at the ice base where it lies above it (ISSM's grounding-line migration
      requires ``bed <= base``; those few vertices touch the bed and reground at the first step);
    * initial velocity = observed velocity; temperature 253 K, ``B = paterson(253 K)``, ``n = 3``;
    * Budd friction ``tau_b = C^2 N |u|^0 u`` (``p = q = 1``), ``C = 50`` on grounded vertices, 0 where
      floating; ``N = rho_i g H + rho_w g min(base, 0)``;
    * ``SetMarineIceSheetBC`` without a front file: the ice front is the boundary of the floating region
      (``ice_levelset = 0`` there), every other boundary vertex is Dirichlet at the observed velocity;
    * ``stressbalance.restol = 0.05``, ``reltol = 1``, ``abstol = NaN`` and artificial-diffusion mass
      transport (``stabilization = 1``), as ``Pig.par``.

    Changed from ``Pig.par`` for melt experiments: ``transient.isgroundingline = 1`` with ``migration``
    (default ``'SubelementMigration'``: sub-element grounding-line position, friction on the grounded part
    of partly grounded elements, the ISSM default and the least mesh-dependent choice); fixed front
    (``ismovingfront = 0``); ``isthermal = 0``; SSA on every element;
    ``basalforcings.floatingice_melting_rate = melt_rate`` on **every** vertex (ISSM applies it only where
    the ice floats, so ice that ungrounds during the run melts at the same rate);
    ``groundedice_melting_rate = 0``; ``smb.mass_balance = smb``.

    Parameters
    ----------
    resolution : float, pint Quantity or str
        Target element size; plain numbers are metres (``3e3``, ``'3 km'`` and ``3 * ureg.km`` agree).
    melt_rate : float, pint Quantity or str
        Floating-ice melt rate, m/yr (ice equivalent, positive = melting).
    years : float, Quantity or str
        Run length (``md.timestepping.final_time``, start 0), years.
    time_step : float, Quantity or str
        Time step, years (default one month).
    output_frequency : int
        ``md.settings.output_frequency`` (results every that many steps).
    smb : float, Quantity or str
        Surface mass balance, m/yr ice equivalent (uniform).
    migration : str
        ``md.groundingline.migration``.

    Returns
    -------
    pyissm.model.Model
        Ready for ``issm_emulator.solve(md, 'Transient')``.
    """
    from issm_emulator.data import fetch
    from issm_emulator.issm.formats import read_arch
    from issm_emulator.issm.interpolation import interp_from_mesh_to_mesh2d
    from issm_emulator.issm.setup import (
        paterson,
        set_marine_ice_sheet_bc,
        set_mask,
        triangle_mesh,
    )

    res = _length_m(resolution, "resolution")
    melt = _rate(melt_rate, "md.basalforcings.floatingice_melting_rate")
    smb_rate = _rate(smb, "md.smb.mass_balance")
    final_time, dt = _time_span(years, time_step)
    freq = _positive_int(output_frequency, "md.settings.output_frequency")
    _check_migration(migration)

    md = new_model("PigMelt")
    triangle_mesh(md, fetch("exp/Pig.exp"), res)
    md.mesh.epsg = EPSG  # x, y are Antarctic polar stereographic: the outputs carry this grid mapping
    set_mask(md, fetch("exp/PigShelves.exp"), fetch("exp/PigIslands.exp"))
    nv = md.mesh.numberofvertices
    floating = md.mask.ocean_levelset < 0

    arch = read_arch(fetch("Pig.arch"))
    src = np.column_stack([arch[k][:, 0] for k in ("vx_obs", "vy_obs", "surface", "thickness", "bed")])
    vals = interp_from_mesh_to_mesh2d(arch["index"], arch["x"][:, 0], arch["y"][:, 0], src, md.mesh.x, md.mesh.y)
    vx, vy, surface, thickness, bed_data = (vals[:, k].copy() for k in range(5))

    md.inversion.vx_obs = vx.copy()
    md.inversion.vy_obs = vy.copy()
    md.geometry.surface = surface
    md.geometry.thickness = thickness
    md.geometry.base = surface - thickness
    md.geometry.bed = md.geometry.base.copy()
    # Under the shelf the archive's bathymetry sometimes lies above the (not yet hydrostatic) ice base;
    # grounding-line migration needs bed <= base, so the bed is clipped at the base there (those vertices
    # are in contact with the bed and the first migration step regrounds them).
    md.geometry.bed[floating] = np.minimum(bed_data[floating], md.geometry.base[floating])

    set_initial_velocity(md, vx, vy)
    set_paterson_rheology(md, paterson)
    set_budd_friction(md, _BUDD_C)

    set_ssa(md)
    set_marine_ice_sheet_bc(md)

    md.basalforcings.floatingice_melting_rate = np.full(nv, melt)
    md.basalforcings.groundedice_melting_rate = np.zeros(nv)
    md.smb.mass_balance = np.full(nv, smb_rate)

    md.masstransport.stabilization = 1
    md.thermal.stabilization = 1
    md.stressbalance.restol = 0.05
    md.stressbalance.reltol = 1.0
    md.stressbalance.abstol = np.nan
    md.steadystate.reltol = 1.0
    md.groundingline.migration = migration
    set_transient(md, duration=final_time, time_step=dt, output_frequency=freq, isgroundingline=1,
                  ismovingfront=0, requested_outputs=PIG_REQUESTED_OUTPUTS)
    return md


# ------------------------------------------------------------------------------------------------------
# helpers shared by the real-geometry scenarios
# ------------------------------------------------------------------------------------------------------
def new_model(name: str) -> Any:
    """An empty pyISSM ``Model`` (``$USER`` defaulted, pyISSM's no-ISSM warnings silenced)."""
    if not os.environ.get("USER"):
        try:
            os.environ["USER"] = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name (containers): any non-empty name will do
            os.environ["USER"] = "issm-emulator"
    import pyissm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        md = pyissm.model.Model()
    md.miscellaneous.name = name
    return md


def _length_m(value: Any, field: str) -> float:
    """A positive length in metres from a number (m), a pint Quantity or a string such as ``'3 km'``."""
    out = to_issm(value, "m", field=field)
    if np.ndim(out) != 0 or not math.isfinite(float(out)) or float(out) <= 0.0:
        raise ModelInputError(field, "a positive finite length (m, a pint length or e.g. '3 km')", repr(value))
    return float(out)


def _rate(value: Any, field: str) -> float:
    """A finite scalar rate in m/yr from a number, a pint Quantity or a string."""
    out = to_issm(value, "m/yr", field=field)
    if np.ndim(out) != 0 or not math.isfinite(float(out)):
        raise ModelInputError(field, "a finite scalar rate (m/yr)", repr(value))
    return float(out)


def _years(value: Any, field: str) -> float:
    out = to_issm(value, "yr", field=field)
    if np.ndim(out) != 0 or not math.isfinite(float(out)) or float(out) <= 0.0:
        raise ModelInputError(field, "a positive finite duration (years)", repr(value))
    return float(out)


def _time_span(years: Any, time_step: Any) -> tuple[float, float]:
    final = _years(years, "md.timestepping.final_time")
    dt = _years(time_step, "md.timestepping.time_step")
    if dt > final:
        raise ModelInputError("md.timestepping.time_step", f"at most the run length ({final} yr)", f"{dt} yr")
    return final, dt


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ModelInputError(field, "a positive integer", repr(value))
    return int(value)


def _check_migration(migration: str) -> None:
    allowed = ("None", "AggressiveMigration", "SoftMigration", "SubelementMigration")
    if migration not in allowed:
        raise ModelInputError("md.groundingline.migration", f"one of {allowed}", repr(migration))


def set_initial_velocity(md: Any, vx: np.ndarray, vy: np.ndarray) -> None:
    """``md.initialization`` velocities (m/yr); vz and pressure 0, as ISSM's Par files."""
    nv = md.mesh.numberofvertices
    md.initialization.vx = np.asarray(vx, dtype=np.float64).copy()
    md.initialization.vy = np.asarray(vy, dtype=np.float64).copy()
    md.initialization.vz = np.zeros(nv)
    md.initialization.vel = np.hypot(md.initialization.vx, md.initialization.vy)
    md.initialization.pressure = np.zeros(nv)


def set_paterson_rheology(md: Any, paterson: Any) -> None:
    """Temperature 253 K, ``rheology_B = paterson(253 K)`` per vertex, ``n = 3`` per element."""
    md.initialization.temperature = np.full(md.mesh.numberofvertices, _TEMPERATURE)
    md.materials.rheology_B = np.asarray(paterson(md.initialization.temperature), dtype=np.float64)
    md.materials.rheology_n = np.full(md.mesh.numberofelements, 3.0)


def set_budd_friction(md: Any, coefficient: float) -> None:
    """Budd friction (``friction.default``): ``C`` on grounded vertices, 0 where floating; p = q = 1."""
    from pyissm.model.classes import friction

    md.friction = friction.default()
    c = np.full(md.mesh.numberofvertices, float(coefficient))
    c[np.asarray(md.mask.ocean_levelset) < 0] = 0.0
    md.friction.coefficient = c
    md.friction.p = np.ones(md.mesh.numberofelements)
    md.friction.q = np.ones(md.mesh.numberofelements)


def set_ssa(md: Any) -> None:
    """SSA (P1) on every element, through pyISSM's ``set_flow_equation``."""
    from pyissm.model import param

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        param.set_flow_equation(md, SSA="all")


def set_transient(md: Any, *, duration: float, time_step: float, output_frequency: int, isgroundingline: int,
                  ismovingfront: int, requested_outputs: tuple[str, ...], start_time: float = 0.0) -> None:
    """Transient flags (no thermal), time stepping (years, ``final_time = start_time + duration``) and
    requested outputs."""
    md.transient.isthermal = 0
    md.transient.issmb = 1
    md.transient.ismasstransport = 1
    md.transient.isstressbalance = 1
    md.transient.isgroundingline = int(isgroundingline)
    md.transient.ismovingfront = int(ismovingfront)
    md.transient.requested_outputs = list(requested_outputs)
    md.timestepping.start_time = float(start_time)
    md.timestepping.final_time = float(start_time + duration)
    md.timestepping.time_step = float(time_step)
    md.settings.output_frequency = int(output_frequency)
