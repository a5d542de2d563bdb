"""Small, valid pyISSM models built in pure Python for the tests.

``make_square_shelf_md`` reproduces ISSM's "SquareShelf" set-up (``test/Par/SquareShelf.py`` with
``SetIceShelfBC(md, 'SquareFront.exp')``) on a structured triangulation instead of Triangle's mesh, so it
needs neither ISSM's wrappers nor data files. Other tests import it (``from tests.modelfactory import
make_square_shelf_md``); its signature and defaults are kept stable.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

RHO_ICE = 917.0
RHO_WATER = 1023.0
B_ICE = 1.8157e8  #: Pa s^(1/3), rheology_B used by the factory (about Paterson at 253 K)


def square_mesh(nx: int, ny: int, length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Structured triangulation of ``[0, length]^2`` with ``nx * ny`` vertices.

    Returns ``x``, ``y`` (vertex ``j * nx + i`` at ``(i * dx, j * dy)``) and 0-based counter-clockwise
    triangles, two per cell, split along the cell's lower-left to upper-right diagonal.
    """
    if nx < 2 or ny < 2:
        raise ValueError(f"nx and ny must be >= 2, got {nx}, {ny}")
    xs, ys = np.meshgrid(np.linspace(0.0, length, nx), np.linspace(0.0, length, ny))
    x, y = xs.ravel(), ys.ravel()
    i, j = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1))
    v00 = (j * nx + i).ravel()
    v10, v01, v11 = v00 + 1, v00 + nx, v00 + nx + 1
    lower = np.column_stack([v00, v10, v11])
    upper = np.column_stack([v00, v11, v01])
    tri = np.stack([lower, upper], axis=1).reshape(-1, 3)
    return x, y, tri


def boundary_segments(tri: np.ndarray) -> np.ndarray:
    """0-based ``[v1, v2, element]`` rows for the edges that belong to one triangle (in the triangle's
    counter-clockwise order, so the outward normal is on the right)."""
    edges = tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    owner = np.repeat(np.arange(tri.shape[0]), 3)
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    once = counts[inverse.ravel()] == 1
    return np.column_stack([edges[once], owner[once]])


def make_square_shelf_md(nx: int = 6, ny: int = 6, length: float = 1e6, floating: bool = True,
                         grounded_part: bool = False, transient: bool = True):
    """A small valid pyISSM model of ISSM's square ice shelf.

    Parameters
    ----------
    nx, ny
        Vertices along x and y (>= 2); ``(nx-1)(ny-1)*2`` triangles.
    length
        Side of the square (m). The thickness formula needs ``length <= 1.3e6`` to stay positive.
    floating
        True: all floating (SquareShelf: ``ocean_levelset = -1``, ``base = -di H``, ``bed = base - 500``,
        friction C = 0). False: all grounded (SquareSheetConstrained-like: ``base = -di H + 20``,
        ``bed = base``, ``ocean_levelset = +1``, C = 20).
    grounded_part
        True overrides ``floating``: vertices with ``y <= length / 2`` are grounded (``ocean_levelset = +1``,
        ``base = bed = -di H + 50``, C = 20), the rest floats as in SquareShelf.
    transient
        True fills what a TransientSolution needs (SMB 0, melt rates 0, ``time_step`` 1 yr, ``final_time``
        3 yr, ``isthermal`` 0, grounding line 'None'). False leaves those sections at pyISSM's defaults
        (NaN forcings), i.e. a model valid for StressbalanceSolution only.

    Notes
    -----
    ``H = 1000 - 7e-4 y - 7e-5 x`` (scaled to ``length`` as ISSM's ``H(x, y)`` for a 1e6 m square would be),
    ``di = rho_ice / rho_water``, ``surface = base + H``. Boundary conditions follow ``SetIceShelfBC`` with
    the front on the top edge: ``ice_levelset = 0`` on the vertices with ``y = length`` (-1 elsewhere),
    ``spcvx = spcvy = 0`` on the vertices of every boundary segment that is not a front segment (so the
    two top corners are both front and Dirichlet, as in ISSM), NaN elsewhere. ``rheology_B = 1.8157e8``
    per vertex, ``rheology_n = 3`` per element, Budd friction with ``p = q = 1`` per element, zero
    initial velocity, ``restol 0.1``, ``reltol 0.02``, ``abstol NaN``, ``maxiter 100``, SSA flow equation.
    The transient model passes pyISSM's ``is_model_self_consistent`` for 'TransientSolution'.
    """
    os.environ.setdefault("USER", "issm-emulator-tests")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyissm

        md = pyissm.model.Model()
    x, y, tri = square_mesh(nx, ny, length)
    nv, ne = x.size, tri.shape[0]
    seg = boundary_segments(tri)

    mesh = pyissm.model.classes.mesh.mesh2d()
    mesh.x, mesh.y = x.copy(), y.copy()
    mesh.elements = tri + 1
    mesh.numberofvertices, mesh.numberofelements = nv, ne
    mesh.segments = seg + 1
    mesh.segmentmarkers = np.ones(seg.shape[0], dtype=int)
    vob = np.zeros(nv, dtype=int)
    vob[seg[:, :2].ravel()] = 1
    mesh.vertexonboundary = vob
    md.mesh = mesh

    # geometry (SquareShelf Par, thickness of ISSM's "square" tests)
    di = RHO_ICE / RHO_WATER
    scale = 1e6 / length
    H = 1000.0 - 7e-4 * y * scale - 7e-5 * x * scale
    if grounded_part:
        grounded = y <= length / 2.0
    else:
        grounded = np.full(nv, not floating)
    base = np.where(grounded, -di * H + (50.0 if grounded_part else 20.0), -di * H)
    bed = np.where(grounded, base, base - 500.0)
    md.geometry.thickness = H
    md.geometry.base = base
    md.geometry.surface = base + H
    md.geometry.bed = bed

    md.mask.ocean_levelset = np.where(grounded, 1.0, -1.0)
    front = y >= length
    md.mask.ice_levelset = np.where(front, 0.0, -1.0)

    md.materials.rho_ice, md.materials.rho_water = RHO_ICE, RHO_WATER
    md.materials.rheology_B = np.full(nv, B_ICE)
    md.materials.rheology_n = np.full(ne, 3.0)

    md.friction.coefficient = np.where(grounded, 20.0, 0.0)
    md.friction.p = np.ones(ne)
    md.friction.q = np.ones(ne)

    md.initialization.vx = np.zeros(nv)
    md.initialization.vy = np.zeros(nv)
    md.initialization.vz = np.zeros(nv)
    md.initialization.pressure = np.zeros(nv)

    # SetIceShelfBC(md, front): Dirichlet on the vertices of non-front boundary segments
    spc = np.full(nv, np.nan)
    nonfront = ~(front[seg[:, 0]] & front[seg[:, 1]])
    spc[seg[nonfront, :2].ravel()] = 0.0
    md.stressbalance.spcvx = spc.copy()
    md.stressbalance.spcvy = spc.copy()
    md.stressbalance.spcvz = spc.copy()
    md.stressbalance.referential = np.full((nv, 6), np.nan)
    md.stressbalance.loadingforce = np.zeros((nv, 3))
    md.stressbalance.restol = 0.10
    md.stressbalance.reltol = 0.02
    md.stressbalance.abstol = np.nan
    md.stressbalance.maxiter = 100
    md.masstransport.spcthickness = np.full(nv, np.nan)

    md = pyissm.model.param.set_flow_equation(md, SSA="all") or md

    if transient:
        md.smb.mass_balance = np.zeros(nv)
        md.basalforcings.groundedice_melting_rate = np.zeros(nv)
        md.basalforcings.floatingice_melting_rate = np.zeros(nv)
        md.timestepping.start_time = 0.0
        md.timestepping.time_step = 1.0
        md.timestepping.final_time = 3.0
        md.transient.isthermal = 0
        md.groundingline.migration = "None"
        md.masstransport.stabilization = 1
        md.calving.calvingrate = np.zeros(nv)
        md.frontalforcings.meltingrate = np.zeros(nv)
        md.levelset.spclevelset = np.full(nv, np.nan)
    return md
