"""79N Glacier (Nioghalvfjerdsbrae, NE Greenland) on ISSM's test data, set up for calving ensembles.

Follows ISSM's ``test/Par/79North.py`` (mesh ``79North.exp``, shelf mask ``79NorthShelf.exp``, archive
``79North.arch``) and adds what a calving experiment needs: a bed under the floating tongue, an ice-free ocean
beyond the front (so that the front moves inside the mesh), von Mises calving and a moving front.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.physics.levelset import extrapolate
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

__all__ = ["DEFAULT_OCEAN_BUFFER", "FRONT_POINTS", "NORTH79_REQUESTED_OUTPUTS", "TONGUE_BED_DEPTH", "extended_outline",
           "north79", "polyline_distance"]

EPSG = 3413  #: the projection of the 79North data (NSIDC Greenland polar stereographic), set as md.mesh.epsg

#: Depth (m) of the assumed sea floor below the ice base under the floating tongue.
TONGUE_BED_DEPTH = 500.0

#: First and last point (0-based, inclusive) of the calving-front path of ``79North.exp``: the eastern end
#: of the tongue (x 468-491 km, y -1041 to -1015 km), where the archived flow leaves the outline.
FRONT_POINTS = (11, 16)

#: Default width (m) of the ice-free ocean beyond the front.
DEFAULT_OCEAN_BUFFER = 10e3

NORTH79_REQUESTED_OUTPUTS = ("default", "IceVolume", "IceVolumeAboveFloatation", "GroundedArea", "FloatingArea",
                             "CalvingCalvingrate")


def north79(resolution: Any = 2e3, stress_threshold: Any = 1e6, *, floating_threshold: Any = None,
            grounded_threshold: Any = None, years: Any = 10.0, time_step: Any = 1.0 / 12.0,
            output_frequency: int = 1, smb: Any = 15.0, migration: str = "SubelementMigration",
            ocean_buffer: Any = DEFAULT_OCEAN_BUFFER) -> Any:
    """79N Glacier with von Mises calving and a moving front inside an ice-free ocean buffer.

    Built as ISSM's ``79North.py`` parameter file, on a domain extended seaward so that the calving front
    lies inside the mesh and can both advance and retreat:

    * **Domain.** ``79North.exp`` with its calving-front segment (outline points
      :data:`FRONT_POINTS` = 11 to 16, the eastern end of the tongue, where the archived ice leaves the
      outline at 100-260 m/yr) swept seaward by ``ocean_buffer`` (default 10 km) along the mean outward
      normal d of that segment: the outline becomes P0..P11, P11 + L d, ..., P16 + L d, P16, P17. Meshed
      with ISSM's Triangle call at ``resolution``.
    * **Ice.** ``ice_levelset`` is the signed distance to the front path: phi = -dist inside
      ``79North.exp`` (ice; -1 m on the front's two end points, which are mesh vertices, so that they count
      as ice), +dist in the buffer (ocean), the form ISSM's re-initialisation keeps.
    * **Masks and fields in the ice.** ``setmask(79NorthShelf.exp, '')``: ``ocean_levelset`` -1 on the
      floating tongue, +1 elsewhere; ``79North.arch`` interpolated linearly: ``vx``, ``vy`` (initial
      velocity), surface ``s``, thickness ``H`` (raised to ``masstransport.min_thickness`` = 1 m, keeping
      ``s``), ``base = s - H``. Buffer vertices of elements cut by the front take the thickness and surface
      of the nearest vertex inside the outline (so the front element carries the tongue's thickness, not a
      1 m slab) and the harmonic extension of the velocity from the vertices inside (Laplace's equation on
      the buffer, as ISSM's extrapolation), so that no ice element starts with a zero strain rate.
    * **Ice-free ocean.** Every other buffer vertex is a floating slab of ``min_thickness``:
      H = 1 m, base = -(rho_i/rho_w) H, s = base + H, ``ocean_levelset`` = -1, velocity 0.
    * **Bed** (the archive has none). Where grounded, ``bed = base``. Where floating (tongue and buffer)
      **the bed is set 500 m below the ice base** (``bed = base - 500 m``, :data:`TONGUE_BED_DEPTH`): an
      assumed deep fjord, so that neither the tongue nor ice advancing into the buffer can reground and
      the front stays marine; in the ice-free buffer this is 500 m below the flotation base of the 1 m
      slab (about -501 m).
    * **Boundary conditions.** ``SetMarineIceSheetBC`` without a front file on the extended mesh: the
      grounded/land outline (boundary segments not entirely on vertices of elements touching a floating
      vertex) has a Dirichlet velocity 0, as in ISSM's test, and a fixed thickness (``spcthickness = H``);
      the boundary of the ocean buffer is free (stress-free where ice reaches it). The tongue's fjord sides
      (the other boundary vertices of ``79North.exp``, front corners included) get **the archived velocity
      as Dirichlet condition** (ISSM's ``SetMarineIceSheetBC`` with ``inversion.vx_obs/vy_obs``) instead of
      ISSM's guess, which treats them as ice front: a laterally unconfined tongue flows at a median
      ~3.5 km/yr against ~0.46 km/yr observed (3 km mesh), with the walls at ~0.46 km/yr. Where the front
      retreats past them these vertices are ice free and the conditions are inactive.
      ``levelset.spclevelset`` = phi (> 0) on the boundary vertices of the buffer (outside
      ``79North.exp``), NaN elsewhere, so that a retreating front has inflow data.
    * **Physics.** Temperature 253 K, ``B = paterson(253 K)``, ``n = 3``; Budd friction ``C = 50`` on
      grounded vertices, 0 where floating, ``p = q = 1``; SMB ``smb`` (15 m/yr as ISSM); no basal or
      frontal melt; ``stressbalance.restol = 0.05``, ``reltol = 0.005``, ``abstol = NaN``;
      ``stabilization = 1``; SSA everywhere; grounding-line migration (``migration``); ``isthermal = 0``.
    * **Calving.** ``calving.vonmises`` (c = |v| sigma_vm / sigma_max, sigma_vm = sqrt(3) B eps_e^(1/n))
      with ``stress_threshold_groundedice = grounded_threshold`` and ``stress_threshold_floatingice =
      floating_threshold`` (both default to ``stress_threshold``), ``min_thickness = 0``;
      ``transient.ismovingfront = 1``; ``levelset``: stabilisation 1, re-initialisation every 10 steps,
      ``kill_icebergs = 1``, no migration limit.

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
    ocean_buffer : float, Quantity or str
        Width of the ice-free ocean beyond the front (plain numbers in m); at least ``resolution``.

    Returns
    -------
    pyissm.model.Model
    """
    from pyissm.model.classes import calving
    from scipy.spatial import cKDTree

    from issm_emulator.data import fetch
    from issm_emulator.issm.formats import read_arch, read_exp
    from issm_emulator.issm.interpolation import interp_from_mesh_to_mesh2d
    from issm_emulator.issm.setup import (
        contour_points_inside,
        paterson,
        set_marine_ice_sheet_bc,
        set_mask,
        triangle_mesh,
    )

    res = _length_m(resolution, "resolution")
    buffer = _length_m(ocean_buffer, "ocean_buffer")
    if buffer < res:
        raise ModelInputError("ocean_buffer", f"an ocean buffer at least one element wide (>= {res:g} m)",
                              f"{buffer:g} m")
    sigma = _stress(stress_threshold, "stress_threshold")
    sigma_fl = sigma if floating_threshold is None else _stress(floating_threshold,
                                                                "md.calving.stress_threshold_floatingice")
    sigma_gr = sigma if grounded_threshold is None else _stress(grounded_threshold,
                                                                "md.calving.stress_threshold_groundedice")
    smb_rate = _rate(smb, "md.smb.mass_balance")
    duration, dt = _time_span(years, time_step)
    freq = _positive_int(output_frequency, "md.settings.output_frequency")
    _check_migration(migration)

    outline = read_exp(fetch("exp/79North.exp"))[0]
    domain, front_xy, _ = extended_outline(outline, buffer)

    md = new_model("79NorthCalving")
    triangle_mesh(md, domain, res)
    md.mesh.epsg = EPSG  # x, y are NSIDC Greenland polar stereographic: the outputs carry this grid mapping
    set_mask(md, fetch("exp/79NorthShelf.exp"), "")
    nv = md.mesh.numberofvertices
    x, y = np.asarray(md.mesh.x, float), np.asarray(md.mesh.y, float)
    el0 = np.asarray(md.mesh.elements, np.int64) - 1
    rho_ratio = float(md.materials.rho_ice) / float(md.materials.rho_water)
    hmin = float(md.masstransport.min_thickness)

    # ice (inside 79North.exp, edges included) and the signed distance to the front
    ox, oy = _open_polygon(outline)
    ring = np.column_stack([np.append(ox, ox[0]), np.append(oy, oy[0])])
    # Triangle's points on the outline segments are off the lines by rounding errors: count them as inside
    inside = contour_points_inside(outline, x, y, edgevalue=1) | (polyline_distance(ring, x, y) <= 1e-3)
    dist = polyline_distance(front_xy, x, y)
    # outline points on the front (its two ends at the fjord walls) are ice: phi = -1 m there, not 0
    ice_levelset = np.where(inside, -np.maximum(dist, 1.0), dist)
    ice_el = np.any(ice_levelset[el0] < 0.0, axis=1)
    in_ice_el = np.zeros(nv, dtype=bool)
    in_ice_el[el0[ice_el].ravel()] = True
    cut = in_ice_el & ~inside  # buffer vertices of front elements
    ocean = ~in_ice_el  # ice-free vertices

    arch = read_arch(fetch("79North.arch"))
    src = np.column_stack([arch[k][:, 0] for k in ("vx", "vy", "surface", "thickness")])
    vals = np.zeros((nv, 4))
    vals[inside] = interp_from_mesh_to_mesh2d(arch["index"], arch["x"][:, 0], arch["y"][:, 0], src,
                                              x[inside], y[inside])
    if cut.any():
        _, nearest = cKDTree(np.column_stack([x[inside], y[inside]])).query(np.column_stack([x[cut], y[cut]]))
        vals[cut] = vals[inside][nearest]
        # velocity: harmonic extension from the vertices inside (not the nearest copy, which gave some front
        # elements the same velocity at all three vertices, a zero strain rate and so an arbitrary first
        # Picard viscosity; issue #16 item 1)
        pm = P1Mesh(x, y, el0)
        for k in (0, 1):
            vals[cut, k] = extrapolate(pm, vals[:, k], inside)[cut]
    vx, vy, surface, thickness = (vals[:, k].copy() for k in range(4))
    thickness = np.maximum(thickness, hmin)
    base = surface - thickness
    # ice-free ocean: floating slab of min_thickness at rest
    thickness[ocean] = hmin
    base[ocean] = -rho_ratio * hmin
    surface[ocean] = base[ocean] + hmin
    vx[ocean] = 0.0
    vy[ocean] = 0.0

    ocean_levelset = np.asarray(md.mask.ocean_levelset, float).copy()
    ocean_levelset[~inside] = -1.0
    md.mask.ocean_levelset = ocean_levelset
    floating = ocean_levelset < 0

    md.geometry.surface = surface
    md.geometry.thickness = thickness
    md.geometry.base = base
    md.geometry.bed = np.where(floating, base - TONGUE_BED_DEPTH, base)

    set_initial_velocity(md, vx, vy)
    set_paterson_rheology(md, paterson)
    set_budd_friction(md, _BUDD_C)
    set_ssa(md)
    set_marine_ice_sheet_bc(md)  # Dirichlet 0 on the grounded/land outline, free where floating or ocean
    dirichlet = np.isfinite(np.asarray(md.stressbalance.spcvx, float))
    md.mask.ice_levelset = ice_levelset
    md.masstransport.spcthickness = np.where(dirichlet, md.geometry.thickness, np.nan)
    # the tongue's fjord sides (floating part of 79North.exp off the front path): observed velocity
    boundary = np.asarray(md.mesh.vertexonboundary).astype(bool)
    sides = boundary & inside & ~dirichlet
    for name, v in (("spcvx", vx), ("spcvy", vy)):
        spc = np.asarray(getattr(md.stressbalance, name), float).copy()
        spc[sides] = v[sides]
        setattr(md.stressbalance, name, spc)
    spcvz = np.asarray(md.stressbalance.spcvz, float).copy()
    spcvz[sides] = 0.0
    md.stressbalance.spcvz = spcvz

    md.levelset.spclevelset = np.where(boundary & ~inside, ice_levelset, np.nan)
    md.levelset.kill_icebergs = 1
    md.levelset.stabilization = 1
    md.levelset.reinit_frequency = 10

    md.basalforcings.floatingice_melting_rate = np.zeros(nv)
    md.basalforcings.groundedice_melting_rate = np.zeros(nv)
    md.smb.mass_balance = np.full(nv, smb_rate)

    md.calving = calving.vonmises()
    md.calving.stress_threshold_groundedice = sigma_gr
    md.calving.stress_threshold_floatingice = sigma_fl
    md.calving.min_thickness = 0.0
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


def extended_outline(outline: dict, buffer: float, front_points: tuple[int, int] = FRONT_POINTS
                     ) -> tuple[dict, np.ndarray, np.ndarray]:
    """The 79N outline with its calving-front segment swept seaward by ``buffer`` (m).

    The front is the outline path ``P[i0] .. P[i1]`` (``front_points = (i0, i1)``, 0-based, inclusive) of
    the counter-clockwise outline P; d is the length-weighted mean of its outward unit normals. The new
    outline is ``P[:i0+1], P[i0:i1+1] + buffer d, P[i1:]``, a simple polygon as long as the front is
    monotone across d (checked).

    Returns
    -------
    domain : dict with ``x``, ``y`` (open polygon, counter-clockwise)
    front : (k, 2) the front path
    direction : (2,) unit vector d
    """
    px, py = _open_polygon(outline)
    if 0.5 * np.sum(px * np.roll(py, -1) - np.roll(px, -1) * py) < 0:
        raise ValueError("extended_outline: the outline must be counter-clockwise (79North.exp is)")
    i0, i1 = front_points
    if not 0 < i0 < i1 < px.size:
        raise ValueError(f"extended_outline: front_points {front_points} outside 1..{px.size - 1}")
    front = np.column_stack([px[i0:i1 + 1], py[i0:i1 + 1]])
    seg = np.diff(front, axis=0)
    normal = np.column_stack([seg[:, 1], -seg[:, 0]])  # outward (right-hand) normal, |n| = segment length
    d = normal.sum(axis=0)
    d /= np.hypot(*d)
    across = front @ np.array([-d[1], d[0]])
    if not (np.all(np.diff(across) > 0) or np.all(np.diff(across) < 0)):
        raise ValueError("extended_outline: the front path is not monotone across the sweep direction")
    moved = front + buffer * d
    xs = np.concatenate([px[:i0 + 1], moved[:, 0], px[i1:]])
    ys = np.concatenate([py[:i0 + 1], moved[:, 1], py[i1:]])
    return {"name": "79North_ocean", "x": xs, "y": ys}, front, d


def polyline_distance(path: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distance from the points (x, y) to the polyline ``path`` (k, 2)."""
    a, b = path[:-1], path[1:]
    ab = b - a
    px = np.asarray(x, float)[:, None]
    py = np.asarray(y, float)[:, None]
    t = ((px - a[:, 0]) * ab[:, 0] + (py - a[:, 1]) * ab[:, 1]) / np.einsum("ij,ij->i", ab, ab)
    t = np.clip(t, 0.0, 1.0)
    return np.min(np.hypot(px - (a[:, 0] + t * ab[:, 0]), py - (a[:, 1] + t * ab[:, 1])), axis=1)


def _open_polygon(c: dict) -> tuple[np.ndarray, np.ndarray]:
    """Contour points without the closing repeat of the first point."""
    x = np.asarray(c["x"], float).ravel()
    y = np.asarray(c["y"], float).ravel()
    if x.size > 1 and np.hypot(x[-1] - x[0], y[-1] - y[0]) <= 1e-6 * (1.0 + np.ptp(x) + np.ptp(y)):
        x, y = x[:-1], y[:-1]
    return x, y


def _stress(value: Any, field: str) -> float:
    """A positive stress in Pa from a number (Pa), a pint Quantity or a string such as ``'0.8 MPa'``."""
    out = to_issm(value, "Pa", field=field)
    if np.ndim(out) != 0 or not math.isfinite(float(out)) or float(out) <= 0.0:
        raise ModelInputError(field, "a positive finite stress (Pa, a pint pressure or e.g. '1 MPa')", repr(value))
    return float(out)
