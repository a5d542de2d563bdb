"""79N Glacier (Nioghalvfjerdsbrae, NE Greenland) on ISSM's test data, set up for calving ensembles.

Follows ISSM's ``test/Par/79North.py`` (mesh ``79North.exp``, shelf mask ``79NorthShelf.exp``, archive
``79North.arch``) and adds what a calving experiment needs: a bed under the floating tongue, von Mises
calving and a moving front.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.units import to_issm

from .pine_island import (
    _BUDD_C,
    _check_migration,
    _length_m,
    _positive_int,
    _rate,
    _time_span,
    new_model,
    set_budd_friction,
    set_initial_velocity,
    set_paterson_rheology,
    set_ssa,
    set_transient,
)

__all__ = ["NORTH79_REQUESTED_OUTPUTS", "TONGUE_BED_DEPTH", "north79"]

#: Depth (m) of the assumed sea floor below the ice base under the floating tongue.
TONGUE_BED_DEPTH = 500.0

NORTH79_REQUESTED_OUTPUTS = ("default", "IceVolume", "IceVolumeAboveFloatation", "GroundedArea", "FloatingArea",
                             "CalvingCalvingrate")


def north79(resolution: Any = 2e3, stress_threshold: Any = 1e6, *, floating_threshold: Any = None,
            grounded_threshold: Any = None, years: Any = 10.0, time_step: Any = 1.0 / 12.0,
            output_frequency: int = 1, smb: Any = 15.0, migration: str = "SubelementMigration") -> Any:
    """79N Glacier with von Mises calving and a moving front.

    Built as ISSM's ``79North.py`` parameter file:

    * mesh ``79North.exp`` at ``resolution`` (ISSM's Triangle call); ``setmask(79NorthShelf.exp, '')``:
      ``ocean_levelset`` -1 on the floating tongue, +1 elsewhere;
    * ``79North.arch`` interpolated linearly: ``vx``, ``vy`` (initial velocity), surface ``s``, thickness
      ``H`` (raised to ``masstransport.min_thickness`` = 1 m where the archive is thinner, keeping ``s``);
      ``base = s - H``;
    * temperature 253 K, ``B = paterson(253 K)``, ``n = 3``; Budd friction ``C = 50`` on grounded
      vertices, 0 where floating, ``p = q = 1``; SMB ``smb`` (15 m/yr as ISSM); no basal melt;
    * ``stressbalance.restol = 0.05``, ``reltol = 0.005``, ``abstol = NaN``; ``stabilization = 1``.

    **Bed.** The archive has no bed. Where grounded, ``bed = base``. **Under the floating tongue the bed
    is set 500 m below the ice base** (``bed = base - 500 m``, :data:`TONGUE_BED_DEPTH`): an assumed deep
    fjord, so that the tongue cannot reground and the calving front stays marine.

    **Boundary conditions.** ``SetMarineIceSheetBC`` without a front file, as ISSM's 79North test: the
    front is the boundary vertices of elements that touch a floating vertex (``ice_levelset = 0`` there,
    -1 on every other vertex); every other boundary vertex gets a Dirichlet velocity (0, as in ISSM's
    test, which sets no observed velocities). Thickness is fixed (``spcthickness = H``) on the non-front
    boundary vertices (ISSM's test fixes every boundary vertex; the front ones are left free here because
    the front moves).

    **Calving.** ``calving.vonmises`` with ``stress_threshold_groundedice = grounded_threshold`` and
    ``stress_threshold_floatingice = floating_threshold`` (both default to ``stress_threshold``),
    ``min_thickness = 0``; ``transient.ismovingfront = 1``; ``levelset`` at pyISSM's defaults
    (stabilization 1, reinit every 10 steps, kill_icebergs 1, no migration limit) with
    ``spclevelset = NaN``; ``frontalforcings.meltingrate = 0``. Grounding-line migration is on
    (``migration``); ``isthermal = 0``; SSA everywhere.

    Parameters
    ----------
    resolution : float, pint Quantity or str
        Element size (plain numbers in m).
    stress_threshold : float, Quantity or str
        Von Mises stress threshold sigma_max (Pa; e.g. ``'0.8 MPa'``) for both grounded and floating ice.
    floating_threshold, grounded_threshold : float, Quantity, str or None
        Override the threshold for floating / grounded ice.
    years, time_step : float, Quantity or str
        Run length and time step (years).
    output_frequency : int
        ``md.settings.output_frequency``.
    smb : float, Quantity or str
        Uniform surface mass balance (m/yr ice equivalent).
    migration : str
        ``md.groundingline.migration``.

    Returns
    -------
    pyissm.model.Model
    """
    from pyissm.model.classes import calving

    from issm_emulator.data import fetch
    from issm_emulator.issm.formats import read_arch
    from issm_emulator.issm.setup import (
        interp_from_mesh_to_mesh2d,
        paterson,
        set_marine_ice_sheet_bc,
        set_mask,
        triangle_mesh,
    )

    res = _length_m(resolution, "resolution")
    sigma = _stress(stress_threshold, "stress_threshold")
    sigma_fl = sigma if floating_threshold is None else _stress(floating_threshold,
                                                                "md.calving.stress_threshold_floatingice")
    sigma_gr = sigma if grounded_threshold is None else _stress(grounded_threshold,
                                                                "md.calving.stress_threshold_groundedice")
    smb_rate = _rate(smb, "md.smb.mass_balance")
    duration, dt = _time_span(years, time_step)
    freq = _positive_int(output_frequency, "md.settings.output_frequency")
    _check_migration(migration)

    md = new_model("79NorthCalving")
    triangle_mesh(md, fetch("exp/79North.exp"), res)
    set_mask(md, fetch("exp/79NorthShelf.exp"), "")
    nv = md.mesh.numberofvertices
    floating = md.mask.ocean_levelset < 0

    arch = read_arch(fetch("79North.arch"))
    src = np.column_stack([arch[k][:, 0] for k in ("vx", "vy", "surface", "thickness")])
    vals = interp_from_mesh_to_mesh2d(arch["index"], arch["x"][:, 0], arch["y"][:, 0], src, md.mesh.x, md.mesh.y)
    vx, vy, surface, thickness = (vals[:, k].copy() for k in range(4))
    thickness = np.maximum(thickness, md.masstransport.min_thickness)

    md.geometry.surface = surface
    md.geometry.thickness = thickness
    md.geometry.base = surface - thickness
    md.geometry.bed = np.where(floating, md.geometry.base - TONGUE_BED_DEPTH, md.geometry.base)

    set_initial_velocity(md, vx, vy)
    set_paterson_rheology(md, paterson)
    set_budd_friction(md, _BUDD_C)
    set_ssa(md)
    set_marine_ice_sheet_bc(md)

    front = md.mask.ice_levelset == 0
    boundary = np.asarray(md.mesh.vertexonboundary).astype(bool)
    md.masstransport.spcthickness = np.where(boundary & ~front, md.geometry.thickness, np.nan)

    md.basalforcings.floatingice_melting_rate = np.zeros(nv)
    md.basalforcings.groundedice_melting_rate = np.zeros(nv)
    md.smb.mass_balance = np.full(nv, smb_rate)

    md.calving = calving.vonmises()
    md.calving.stress_threshold_groundedice = sigma_gr
    md.calving.stress_threshold_floatingice = sigma_fl
    md.calving.min_thickness = 0.0
    md.levelset.spclevelset = np.full(nv, np.nan)
    md.frontalforcings.meltingrate = np.zeros(nv)

    md.masstransport.stabilization = 1
    md.thermal.stabilization = 1
    md.stressbalance.restol = 0.05
    md.stressbalance.reltol = 0.005
    md.stressbalance.abstol = np.nan
    md.steadystate.reltol = 0.005
    md.groundingline.migration = migration
    set_transient(md, duration=duration, time_step=dt, output_frequency=freq, isgroundingline=1,
                  ismovingfront=1, requested_outputs=NORTH79_REQUESTED_OUTPUTS)
    return md


def _stress(value: Any, field: str) -> float:
    """A positive stress in Pa from a number (Pa), a pint Quantity or a string such as ``'0.8 MPa'``."""
    out = to_issm(value, "Pa", field=field)
    if np.ndim(out) != 0 or not math.isfinite(float(out)) or float(out) <= 0.0:
        raise ModelInputError(field, "a positive finite stress (Pa, a pint pressure or e.g. '1 MPa')", repr(value))
    return float(out)
