"""ISSM's square test domains (``test/Par/SquareShelf*.par``, ``SquareSheet*.par``) as ready pyISSM models.

The domain is the 1000 km x 1000 km square ``Square.exp``; the ice front is the top edge ``y = 1e6``
(``SquareFront.exp``); in SquareSheetShelf the half ``y >= 5e5`` (``SquareShelf.exp``) floats. Thickness

    H = 1000 + (300 - 1000) (y - ymin)/(ymax - ymin) + 0.1 (300 - 1000) (x - xmin)/(xmax - xmin)   [m],

Paterson rigidity at 253 K, n = 3, Budd friction C = 20 (0 where floating), p = q = 1, SSA everywhere.
The outlines are built from their known corners (same point order as ISSM's files, hence the same
mesh), so the default models need no download; ``initial_velocity='issm'`` interpolates ISSM's
``Square*.arch`` velocities (fetched through :mod:`issm_emulator.data`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..issm.formats import read_arch
from ..issm.interpolation import interp_from_mesh_to_mesh2d
from ..issm.setup import (
    paterson,
    set_ice_sheet_bc,
    set_ice_shelf_bc,
    set_marine_ice_sheet_bc,
    set_mask,
    triangle_mesh,
)

__all__ = [
    "PAR_FILES",
    "new_model",
    "parameterize_square",
    "square_front",
    "square_outline",
    "square_sheet_shelf",
    "square_shelf",
    "square_shelf_region",
]

#: ISSM parameter files reproduced by :func:`parameterize_square`.
PAR_FILES = ("SquareShelfConstrained", "SquareShelf", "SquareSheetConstrained", "SquareSheetShelf")
_MIGRATIONS = ("None", "AggressiveMigration", "SoftMigration", "SubelementMigration")


def _closed(name: str, xs: list[float], ys: list[float]) -> dict:
    return {"name": name, "x": np.array(xs, dtype=float), "y": np.array(ys, dtype=float), "closed": True,
            "density": 1.0}


def square_outline() -> dict:
    """``Square.exp``: (0,0) -> (1e6,0) -> (1e6,1e6) -> (0,1e6) -> (0,0)."""
    return _closed("domainoutline", [0, 1e6, 1e6, 0, 0], [0, 0, 1e6, 1e6, 0])


def square_front() -> dict:
    """``SquareFront.exp``: the box x in (-1000, 1.1e6), y in (999999, 1.1e6) around the top edge."""
    return _closed("icefront", [-1000, -1000, 1.1e6, 1.1e6, -1000], [999999, 1.1e6, 1.1e6, 999999, 999999])


def square_shelf_region() -> dict:
    """``SquareShelf.exp``: the rectangle y in [5e5, 1e6] (floating part of SquareSheetShelf)."""
    return _closed("domainoutline", [0, 1e6, 1e6, 0, 0], [5e5, 5e5, 1e6, 1e6, 5e5])


def new_model() -> Any:
    """An empty pyISSM ``Model`` (quietly: pyISSM warns about ISSM_DIR and the generic cluster)."""
    os.environ.setdefault("USER", "issm-emulator")
    from pyissm.model import Model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Model()


def _velocity_archive(par: str) -> dict:
    from .. import data

    return read_arch(data.fetch(f"{par}.arch"))


def parameterize_square(md: Any, par: str, *, initial_velocity: str = "issm", front: Any = None) -> Any:
    """Apply one of ISSM's square Par files to a meshed and masked model.

    Parameters
    ----------
    md : pyissm Model with mesh (1-based) and masks (:func:`issm_emulator.issm.setup.set_mask`)
    par : one of :data:`PAR_FILES`
    initial_velocity : 'issm' (linear interpolation of ``<par>.arch``, as the Par file) or 'zero'
    front : ice-front outline for the BC helper (default :func:`square_front`); ignored by the
        Constrained Par files, whose BC helpers take none.

    Notes
    -----
    The table of ``issm-reference-cases.md`` §2.2: SquareShelfConstrained (bed = base - 10, SMB 10,
    melts 5, restol/reltol 0.05, SetIceShelfBC without front); SquareShelf (bed = base - 500,
    restol 0.10, reltol 0.02, migration 'None', SetIceShelfBC(front)); SquareSheetConstrained
    (base = -di H + 20, bed = base, calvingrate 0, SetIceSheetBC); SquareSheetShelf (base = -di*650 where
    y <= ymax/2, bed left unset (NaN) as in ISSM's Par file, SMB 10, melts 5, migration 'None',
    SetMarineIceSheetBC(front)). time_step 1, final_time 3, abstol NaN in all.
    """
    if par not in PAR_FILES:
        raise ValueError(f"parameterize_square: par must be one of {PAR_FILES}, got {par!r}")
    if initial_velocity not in ("issm", "zero"):
        raise ValueError(f"parameterize_square: initial_velocity must be 'issm' or 'zero', got {initial_velocity!r}")
    front = square_front() if front is None else front
    nv, ne = int(md.mesh.numberofvertices), int(md.mesh.numberofelements)
    x, y = np.asarray(md.mesh.x, float), np.asarray(md.mesh.y, float)
    rho_i, rho_w = float(md.materials.rho_ice), float(md.materials.rho_water)
    hmin, hmax = 300.0, 1000.0
    xmin, xmax, ymin, ymax = x.min(), x.max(), y.min(), y.max()
    H = hmax + (hmin - hmax) * (y - ymin) / (ymax - ymin) + 0.1 * (hmin - hmax) * (x - xmin) / (xmax - xmin)
    md.geometry.thickness = H
    base = -rho_i / rho_w * H
    if par == "SquareSheetConstrained":
        base = base + 20.0
    if par == "SquareSheetShelf":
        bed_sheet = -rho_i / rho_w * (hmax + (hmin - hmax) * (ymax / 2 - ymin) / (ymax - ymin))
        base = np.where(y <= ymax / 2.0, bed_sheet, base)
    md.geometry.base = base
    md.geometry.surface = base + H
    if par == "SquareShelfConstrained":
        md.geometry.bed = base - 10.0
    elif par == "SquareShelf":
        md.geometry.bed = base - 500.0
    elif par == "SquareSheetConstrained":
        md.geometry.bed = base.copy()
    else:
        md.geometry.bed = np.full(nv, np.nan)

    if initial_velocity == "issm":
        a = _velocity_archive(par)
        vel = interp_from_mesh_to_mesh2d(a["index"], a["x"], a["y"], np.column_stack([a["vx"], a["vy"]]), x, y)
        md.initialization.vx, md.initialization.vy = vel[:, 0].copy(), vel[:, 1].copy()
    else:
        md.initialization.vx, md.initialization.vy = np.zeros(nv), np.zeros(nv)
    md.initialization.vz = np.zeros(nv)
    md.initialization.pressure = np.zeros(nv)

    md.initialization.temperature = (273.0 - 20.0) * np.ones(nv)
    md.materials.rheology_B = paterson(md.initialization.temperature)
    md.materials.rheology_n = 3.0 * np.ones(ne)

    if par in ("SquareShelfConstrained", "SquareSheetShelf"):
        md.smb.mass_balance = 10.0 * np.ones(nv)
        md.basalforcings.groundedice_melting_rate = 5.0 * np.ones(nv)
        md.basalforcings.floatingice_melting_rate = 5.0 * np.ones(nv)

    ocean = np.asarray(md.mask.ocean_levelset, float)
    md.friction.coefficient = np.where(ocean < 0.0, 0.0, 20.0 * np.ones(nv))
    md.friction.p = np.ones(ne)
    md.friction.q = np.ones(ne)

    if par == "SquareSheetConstrained":
        md.calving.calvingrate = np.zeros(nv)
        md.levelset.spclevelset = np.full(nv, np.nan)

    md.masstransport.stabilization = 1
    md.thermal.stabilization = 1
    loose = par in ("SquareShelfConstrained", "SquareSheetConstrained", "SquareSheetShelf")
    md.stressbalance.restol = 0.05 if loose else 0.10
    md.stressbalance.reltol = 0.05 if loose else 0.02
    md.steadystate.reltol = 0.05 if loose else 0.02
    md.stressbalance.abstol = np.nan
    md.timestepping.time_step = 1.0
    md.timestepping.final_time = 3.0
    if par != "SquareShelfConstrained":  # that Par file keeps pyISSM's default migration
        md.groundingline.migration = "None"

    if par == "SquareShelfConstrained":
        set_ice_shelf_bc(md)
    elif par == "SquareShelf":
        set_ice_shelf_bc(md, front)
    elif par == "SquareSheetConstrained":
        set_ice_sheet_bc(md)
    else:
        set_marine_ice_sheet_bc(md, front)
    return md


def _ssa(md: Any) -> None:
    from pyissm.model.param import set_flow_equation

    set_flow_equation(md, SSA="all")


def _check_resolution(resolution: float) -> float:
    r = float(resolution)
    if not np.isfinite(r) or r <= 0 or r > 1e6:
        raise ValueError(f"resolution must be a length in m in (0, 1e6], got {resolution!r}")
    return r


def square_shelf(resolution: float = 50e3, *, initial_velocity: str = "zero",
                 migration: str = "None") -> Any:
    """A floating square ice shelf, as ISSM's SquareShelf tests (201, 208, 806, ...).

    Mesh ``triangle(Square.exp, resolution)``; every element floating; Par SquareShelf (bed 500 m below
    the base, no friction, restol 0.10, reltol 0.02, dt 1 yr, final 3 yr); ice front on the top edge
    (SetIceShelfBC with SquareFront.exp): Dirichlet 0 on the other three sides; SSA; isthermal 0.

    Parameters
    ----------
    resolution : float, m
    initial_velocity : 'zero' (no download) or 'issm' (ISSM's ``SquareShelf.arch`` velocities)
    migration : ``md.groundingline.migration`` ('None', 'AggressiveMigration', 'SoftMigration',
        'SubelementMigration'); any value other than 'None' also sets ``transient.isgroundingline = 1``.
    """
    return _square("SquareShelf", "all", "", resolution, initial_velocity, migration)


def square_sheet_shelf(resolution: float = 50e3, *, initial_velocity: str = "zero",
                       migration: str = "None") -> Any:
    """A marine ice sheet with a floating half, as ISSM's SquareSheetShelf tests (401, 424, 491, ...).

    Elements inside ``SquareShelf.exp`` (y >= 5e5) float; Par SquareSheetShelf (grounded base -582.65 m
    for y <= 5e5, SMB 10, melts 5 m/yr, C = 20 on grounded vertices, restol/reltol 0.05, dt 1 yr, final 3
    yr); SetMarineIceSheetBC with the top-edge front; SSA; isthermal 0.

    ISSM's Par file leaves ``md.geometry.bed`` unset; a ready model needs one, so the bed is set as ISSM's
    test 491 (and later versions of the Par file) do: ``bed = base``, and ``bed = base - 10`` where
    floating (``ocean_levelset < 0``).

    Parameters as :func:`square_shelf`.
    """
    md = _square("SquareSheetShelf", square_shelf_region(), "", resolution, initial_velocity, migration)
    base = np.asarray(md.geometry.base, float)
    md.geometry.bed = np.where(np.asarray(md.mask.ocean_levelset) < 0, base - 10.0, base)
    return md


def _square(par: str, floating: Any, grounded: Any, resolution: float, initial_velocity: str,
            migration: str) -> Any:
    if migration not in _MIGRATIONS:
        raise ValueError(f"migration must be one of {_MIGRATIONS}, got {migration!r}")
    md = new_model()
    triangle_mesh(md, square_outline(), _check_resolution(resolution))
    set_mask(md, floating, grounded)
    parameterize_square(md, par, initial_velocity=initial_velocity)
    _ssa(md)
    md.transient.isthermal = 0
    md.groundingline.migration = migration
    md.transient.isgroundingline = int(migration != "None")
    md.miscellaneous.name = par
    return md
