"""Moving ice front: ISSM's ``movingfront_core`` re-implemented on P1 triangles, vectorised.

One job: advancing the ice level set by one step as ISSM's moving-front core does (the front velocity, the
level-set solve, icebergs, re-initialisation with ISSM's distance and its constraint reset all belong to
that job).

One call of :func:`advance_front` does, in ISSM's order (step k, time t, length dt):

1. smoothed level-set gradient g = M^-1 int grad(phi) psi dA (L2 projection with the consistent mass
   matrix M, ISSM's ``levelsetfunctionslope_core``); n_hat = g / |g| points to the ice-free side;
2. extrapolation of vx, vy and H from the vertices of ice elements into the ice-free area by solving
   Laplace's equation there (ISSM's ``ExtrapolationAnalysis``, diffusion variant), so that an advancing
   front finds velocity and thickness;
3. calving rate c (:mod:`issm_emulator.physics.calving`) and frontal melt m (``frontalforcings
   .meltingrate``); **as in the current ISSM code, m is set to 0 where the ice floats (ocean_levelset < 0)**;
4. front velocity per element vertex w = v - c n_hat - m n_hat (P1DG, ``MovingFrontalVelocity``);
5. level-set equation d(phi)/dt + w . grad(phi) = 0, implicit Euler, P1, 3-point quadrature::

       int psi_i psi_j phi^{k+1} + dt int psi_i (w . grad psi_j) phi^{k+1}
           + dt int kappa grad psi_i . grad psi_j phi^{k+1} = int psi_i psi_j phi^k

   where at each quadrature point |w| is capped at ``migration_max`` and, for ``levelset.stabilization``
   1 (artificial diffusion), kappa = h_w |w| / 2 with h_w = sqrt((hx w_x/|w|)^2 + (hy w_y/|w|)^2) and
   hx, hy the element's bounding-box sizes (2: streamline diffusion dt tau (w.grad psi_i)(w.grad psi_j),
   5: SUPG, tau = h/(2|w_mean|), h = sqrt(2 area)); ``spclevelset`` values are Dirichlet conditions;
   then the minimum-thickness rule of the discrete laws (``minthickness``, and ``vonmises`` with
   ``calving.min_thickness``);
6. iceberg removal (``kill_icebergs``): ice not connected through shared element edges to an all-grounded
   ice element (or, beyond ISSM, to a Dirichlet-velocity vertex, see :func:`kill_icebergs`);
7. re-initialisation to a signed distance when ``step % reinit_frequency == 0`` (and after killing
   icebergs): |phi| = distance to the zero contour of the P1 interpolant by ISSM's rule
   (``FemModel::DistanceToFieldValue``, :func:`distance_to_front_issm`) or exactly
   (:func:`distance_to_front`), sign kept; then, as ISSM's ``ResetBoundaryConditions``, the dynamic
   ``spclevelset`` constraints take the re-initialised values.

Everything is in SI (m, s; rates in m/s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from issm_emulator.errors import ModelInputError, SolverDivergedError
from issm_emulator.physics import calving as calving_laws
from issm_emulator.physics.fe import GAUSS2_POINTS, GAUSS2_WEIGHTS, P1Mesh

__all__ = [
    "FrontUpdate",
    "advance_front",
    "distance_to_front",
    "distance_to_front_issm",
    "extrapolate",
    "front_velocity",
    "ice_element_mask",
    "ice_free_thickness",
    "ice_vertex_mask",
    "issm_distance_to_segments",
    "issm_isovalue_segments",
    "kill_icebergs",
    "reinitialize",
    "smoothed_gradient",
    "solve_levelset",
    "zero_contour_segments",
]

_STABILIZATIONS = (0, 1, 2, 5)


@dataclass
class FrontUpdate:
    """Result of :func:`advance_front` (SI units).

    Attributes
    ----------
    ice_levelset : (nv,) new ``MaskIceLevelset``
    calving_rate : (nv,) nodal calving rate (``CalvingCalvingrate``), m/s
    frontal_melt_rate : (nv,) nodal frontal melt rate used (0 on floating vertices), m/s
    vx, vy, thickness : (nv,) the fields extrapolated into the ice-free area (ISSM overwrites its inputs
        with them; unchanged on vertices of ice elements)
    calving_rate_x, calving_rate_y : (nv,) nodal ``Calvingratex``/``Calvingratey`` (c n_hat), m/s
    extras : per-law nodal diagnostics (``StrainRateparallel``, ``StrainRateperpendicular``, ``SigmaVM``)
    icebergs_removed : number of elements whose ice was removed by ``kill_icebergs``
    reinitialized : whether the level set was reset to a signed distance
    spclevelset : (nv,) the dynamic level-set constraints after the step (a constant ``spclevelset``:
        ISSM resets them to the re-initialised level set, see :func:`advance_front`); None for a time series
    calving_element_x, calving_element_y : (ne, 3) ``Calvingratex/y`` per element vertex (ISSM's P1DG
        inputs, c n_hat), m/s
    """

    ice_levelset: np.ndarray
    calving_rate: np.ndarray
    frontal_melt_rate: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    thickness: np.ndarray
    calving_rate_x: np.ndarray
    calving_rate_y: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    icebergs_removed: int = 0
    reinitialized: bool = False
    spclevelset: np.ndarray | None = None
    calving_element_x: np.ndarray | None = None
    calving_element_y: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------------
# masks and small helpers
# --------------------------------------------------------------------------------------------------------
def ice_element_mask(ice_levelset: np.ndarray, elements: np.ndarray) -> np.ndarray:
    """(ne,) bool: the element holds ice (at least one vertex with ``ice_levelset < 0``, ISSM's rule)."""
    return np.any(np.asarray(ice_levelset, float)[elements] < 0.0, axis=1)


def ice_vertex_mask(ice_levelset: np.ndarray, elements: np.ndarray, nv: int | None = None) -> np.ndarray:
    """(nv,) bool: the vertex belongs to an ice element (ISSM's active nodes, ``IceMaskNodeActivation``)."""
    nv = len(ice_levelset) if nv is None else nv
    out = np.zeros(nv, dtype=bool)
    out[elements[ice_element_mask(ice_levelset, elements)].ravel()] = True
    return out


def ice_free_thickness(thickness: np.ndarray, ice_levelset: np.ndarray, elements: np.ndarray,
                       min_thickness: float) -> np.ndarray:
    """ISSM's rule for ice-free areas: vertices that belong to no ice element get ``min_thickness``."""
    H = np.array(thickness, dtype=float, copy=True)
    H[~ice_vertex_mask(ice_levelset, elements, H.shape[0])] = min_thickness
    return H


_CACHE: WeakKeyDictionary[P1Mesh, dict] = WeakKeyDictionary()


def _cache(mesh: P1Mesh) -> dict:
    c = _CACHE.get(mesh)
    if c is None:
        c = {}
        _CACHE[mesh] = c
    return c


def _mass_solver(mesh: P1Mesh):
    c = _cache(mesh)
    if "mass_lu" not in c:
        c["mass_lu"] = spla.factorized(sp.csc_matrix(mesh.mass))
    return c["mass_lu"]


def _vertex_graph(mesh: P1Mesh) -> sp.csr_matrix:
    c = _cache(mesh)
    if "vgraph" not in c:
        e = mesh.elements
        i = e[:, [0, 1, 2, 1, 2, 0]].ravel()
        j = e[:, [1, 2, 0, 0, 1, 2]].ravel()
        c["vgraph"] = sp.csr_matrix((np.ones(i.size), (i, j)), shape=(mesh.nv, mesh.nv))
    return c["vgraph"]


def _edge_neighbours(mesh: P1Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of elements sharing an edge."""
    c = _cache(mesh)
    if "eneigh" not in c:
        e = mesh.elements
        edges = np.sort(e[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        owner = np.repeat(np.arange(mesh.ne), 3)
        order = np.lexsort((edges[:, 1], edges[:, 0]))
        se, so = edges[order], owner[order]
        same = np.all(se[1:] == se[:-1], axis=1)
        c["eneigh"] = (so[:-1][same], so[1:][same])
    return c["eneigh"]


def _bbox_sizes(mesh: P1Mesh) -> tuple[np.ndarray, np.ndarray]:
    c = _cache(mesh)
    if "bbox" not in c:
        xe, ye = mesh.x[mesh.elements], mesh.y[mesh.elements]
        c["bbox"] = (xe.max(axis=1) - xe.min(axis=1), ye.max(axis=1) - ye.min(axis=1))
    return c["bbox"]


def _solve_dirichlet(A: sp.spmatrix, rhs: np.ndarray, fixed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Solve A x = rhs with x[fixed] = values[fixed]."""
    A = sp.csr_matrix(A)
    x = np.where(fixed, values, 0.0).astype(float)
    free = ~fixed
    if not free.any():
        return x
    Aff = A[free][:, free]
    b = rhs[free] - A[free][:, fixed] @ x[fixed]
    x[free] = spla.spsolve(sp.csc_matrix(Aff), b)
    return x


# --------------------------------------------------------------------------------------------------------
# gradient smoothing and extrapolation
# --------------------------------------------------------------------------------------------------------
def smoothed_gradient(mesh: P1Mesh, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodal level-set gradient by L2 projection: g = M^-1 int grad(phi) psi_i dA (consistent mass)."""
    gx, gy = mesh.gradient(phi)
    third = np.abs(mesh.area) / 3.0
    solve = _mass_solver(mesh)
    bx = mesh.assemble_vector(np.repeat((gx * third)[:, None], 3, axis=1))
    by = mesh.assemble_vector(np.repeat((gy * third)[:, None], 3, axis=1))
    return solve(bx), solve(by)


def extrapolate(mesh: P1Mesh, values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Harmonic extension of ``values`` from the ``known`` vertices (ISSM: vertices of ice elements).

    Solves int grad(f) . grad(psi) dA = 0 on the other vertices with f = values on ``known``. Parts of the
    mesh not connected to any known vertex keep their values.
    """
    vals = np.asarray(values, dtype=float)
    known = np.asarray(known, dtype=bool)
    if known.all() or not known.any():
        return vals.copy()
    c = _cache(mesh)
    if "laplace" not in c:
        dx, dy = mesh.dphidx, mesh.dphidy
        ke = np.abs(mesh.area)[:, None, None] * (dx[:, :, None] * dx[:, None, :] + dy[:, :, None] * dy[:, None, :])
        c["laplace"] = mesh.assemble(ke)
    ncomp, label = connected_components(_vertex_graph(mesh), directed=False)
    has_known = np.zeros(ncomp, dtype=bool)
    has_known[label[known]] = True
    fixed = known | ~has_known[label]
    return _solve_dirichlet(c["laplace"], np.zeros(mesh.nv), fixed, vals)


# --------------------------------------------------------------------------------------------------------
# front velocity and level-set solve
# --------------------------------------------------------------------------------------------------------
def front_velocity(mesh: P1Mesh, *, vx: np.ndarray, vy: np.ndarray, calving_element: np.ndarray,
                   frontal_melt: np.ndarray, ocean_levelset: np.ndarray, gradx: np.ndarray, grady: np.ndarray,
                   discrete: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Front velocity w = v - c n_hat - m n_hat per element vertex (ISSM's ``MovingFrontalVelocity``).

    n_hat = g/(|g| + 1e-14) for the calving term (``CalvingRateToVector``) and g/|g| for the melt term
    (0 where |g| <= 1e-10); m = 0 where ``ocean_levelset < 0`` (floating), as in the current ISSM code.
    With ``discrete`` (minthickness law) c = 0.

    Returns ``wx, wy, cx, cy``, each (ne, 3) (m/s).
    """
    e = mesh.elements
    gx, gy = np.asarray(gradx, float)[e], np.asarray(grady, float)[e]
    norm = np.hypot(gx, gy)
    c = np.zeros_like(gx) if discrete else np.asarray(calving_element, float)
    cx = c * gx / (norm + 1e-14)
    cy = c * gy / (norm + 1e-14)
    m = np.asarray(frontal_melt, float)[e]
    m = np.where(np.asarray(ocean_levelset, float)[e] < 0.0, 0.0, m)
    ok = norm > 1e-10
    safe = np.where(ok, norm, 1.0)
    mx = np.where(ok, m * gx / safe, 0.0)
    my = np.where(ok, m * gy / safe, 0.0)
    wx = np.asarray(vx, float)[e] - cx - mx
    wy = np.asarray(vy, float)[e] - cy - my
    return wx, wy, cx, cy


def solve_levelset(mesh: P1Mesh, phi: np.ndarray, wx: np.ndarray, wy: np.ndarray, dt: float, *,
                   migration_max: float = np.inf, stabilization: int = 1,
                   spclevelset: np.ndarray | None = None) -> np.ndarray:
    """One implicit-Euler step of d(phi)/dt + w . grad(phi) = 0 (see the module docstring).

    ``wx``, ``wy`` are the front velocity per element vertex (ne, 3) or per vertex (nv,); ``spclevelset``
    (nv,) holds Dirichlet values (NaN = free).
    """
    if stabilization not in _STABILIZATIONS:
        raise ModelInputError("md.levelset.stabilization", f"one of {_STABILIZATIONS}", repr(stabilization))
    if not dt > 0.0:
        raise ModelInputError("md.timestepping.time_step", "a positive time step", repr(dt))
    e = mesh.elements
    wx = np.asarray(wx, float)
    wy = np.asarray(wy, float)
    if wx.ndim == 1:
        wx, wy = wx[e], wy[e]
    area = np.abs(mesh.area)
    dx, dy = mesh.dphidx, mesh.dphidy
    P = GAUSS2_POINTS  # (ng, 3)
    W = GAUSS2_WEIGHTS  # (ng,)
    gwx = wx @ P.T  # (ne, ng)
    gwy = wy @ P.T
    vel = np.hypot(gwx, gwy) + 1e-14
    cap = vel > migration_max
    scale = np.where(cap, migration_max / vel, 1.0)
    gwx, gwy = gwx * scale, gwy * scale
    # advection: int psi_i (w . grad psi_j)
    wgrad = gwx[:, :, None] * dx[:, None, :] + gwy[:, :, None] * dy[:, None, :]  # (ne, ng, 3) index j
    adv = np.einsum("g,gi,egj->eij", W, P, wgrad) * area[:, None, None]
    lap = dx[:, :, None] * dx[:, None, :] + dy[:, :, None] * dy[:, None, :]  # (ne, 3, 3)
    ke = mesh.mass_element + dt * adv
    rhs = mesh.mass @ np.asarray(phi, float)
    if stabilization == 1:
        hx, hy = _bbox_sizes(mesh)
        vel = np.hypot(gwx, gwy) + 1e-14
        h = np.sqrt((hx[:, None] * gwx / vel) ** 2 + (hy[:, None] * gwy / vel) ** 2)
        kappa = h * vel / 2.0  # (ne, ng)
        ke = ke + dt * (kappa @ W)[:, None, None] * area[:, None, None] * lap
    elif stabilization in (2, 5):
        wmx, wmy = wx.mean(axis=1), wy.mean(axis=1)
        vm = np.hypot(wmx, wmy) + 1e-8
        tau = mesh.h / (2.0 * vm)
        sd = wmx[:, None] * dx + wmy[:, None] * dy  # (ne, 3): w_mean . grad psi
        ke = ke + dt * (tau * area)[:, None, None] * sd[:, :, None] * sd[:, None, :]
        if stabilization == 5:
            # mass part: int tau psi_j (w_mean . grad psi_i); load: int tau phi_old (w_mean . grad psi_i)
            supg_mass = ((tau * area) / 3.0)[:, None, None] * sd[:, :, None] * np.ones((1, 1, 3))
            ke = ke + supg_mass
            rhs = rhs + mesh.assemble_vector(np.einsum("eij,ej->ei", supg_mass, np.asarray(phi, float)[e]))
    K = mesh.assemble(ke)
    spc = np.full(mesh.nv, np.nan) if spclevelset is None else np.asarray(spclevelset, float)
    fixed = ~np.isnan(spc)
    out = _solve_dirichlet(K, rhs, fixed, np.where(fixed, spc, 0.0))
    if not np.all(np.isfinite(out)):
        raise SolverDivergedError("level-set solve produced NaN/inf")
    return out


# --------------------------------------------------------------------------------------------------------
# zero contour, distance, re-initialisation
# --------------------------------------------------------------------------------------------------------
def zero_contour_segments(mesh: P1Mesh, phi: np.ndarray) -> np.ndarray:
    """(ns, 4) segments [x0, y0, x1, y1] of the zero contour of the P1 interpolant of ``phi``.

    Per element, the candidate points are the crossings on edges whose end values have strictly opposite
    signs and the vertices where phi == 0; all lie on the element's (straight) zero line, so every pair of
    them gives a sub-segment of it, and a single point gives a zero-length segment.
    """
    e = mesh.elements
    f = np.asarray(phi, float)[e]
    xe, ye = mesh.x[e], mesh.y[e]
    a = np.array([0, 1, 2])
    b = np.array([1, 2, 0])
    fa, fb = f[:, a], f[:, b]
    cross = fa * fb < 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(cross, fa / (fa - fb), 0.0)
    px = np.concatenate([xe[:, a] + s * (xe[:, b] - xe[:, a]), xe], axis=1)  # (ne, 6)
    py = np.concatenate([ye[:, a] + s * (ye[:, b] - ye[:, a]), ye], axis=1)
    valid = np.concatenate([cross, f == 0.0], axis=1)
    nvalid = valid.sum(axis=1)
    pairs = np.array([(i, j) for i in range(6) for j in range(i + 1, 6)])  # 15 fixed slot pairs
    pv = valid[:, pairs[:, 0]] & valid[:, pairs[:, 1]]  # (ne, 15)
    ei, pi = np.nonzero(pv)
    segs = np.column_stack([px[ei, pairs[pi, 0]], py[ei, pairs[pi, 0]], px[ei, pairs[pi, 1]], py[ei, pairs[pi, 1]]])
    single = np.flatnonzero(nvalid == 1)
    if single.size:
        k = np.argmax(valid[single], axis=1)
        pts = np.column_stack([px[single, k], py[single, k]])
        segs = np.vstack([segs, np.hstack([pts, pts])])
    return segs


def _point_segment_distance(px, py, seg):
    x0, y0, x1, y1 = seg[..., 0], seg[..., 1], seg[..., 2], seg[..., 3]
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(L2 > 0.0, ((px - x0) * dx + (py - y0) * dy) / np.where(L2 > 0.0, L2, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


def distance_to_front(mesh: P1Mesh, phi: np.ndarray, points: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> np.ndarray:
    """Exact (unsigned) distance from every vertex (or from ``points``) to the zero contour of ``phi``.

    Nearest candidates come from a k-d tree on the segment midpoints: a segment of half-length <= r_max
    whose midpoint is farther than d_best + r_max cannot be closer than the best candidate. ``inf`` when
    ``phi`` has no zero contour.
    """
    px, py = (mesh.x, mesh.y) if points is None else (np.asarray(points[0], float), np.asarray(points[1], float))
    segs = zero_contour_segments(mesh, phi)
    if segs.shape[0] == 0:
        return np.full(px.shape[0], np.inf)
    _, dbest, rows, cols = _segment_candidates(px, py, segs, _point_segment_distance, lambda d: d)
    d = _point_segment_distance(px[rows], py[rows], segs[cols])
    out = dbest.copy()
    np.minimum.at(out, rows, d)
    return out


def _segment_candidates(px: np.ndarray, py: np.ndarray, segs: np.ndarray, dist, radius):
    """The segments that may be nearest to each point: ``(nearest, dbest, rows, cols)``.

    A k-d tree on the segment midpoints gives each point's nearest midpoint, ``nearest``, and ``dbest =
    dist(point, segs[nearest])``; a segment of half-length <= r_max whose midpoint is farther than
    ``radius(dbest) + r_max`` cannot be closer, so the candidate pairs are the points ``rows`` and segments
    ``cols`` within that ball (``radius`` turns ``dbest`` into a length, e.g. a square root).
    """
    half = 0.5 * np.hypot(segs[:, 2] - segs[:, 0], segs[:, 3] - segs[:, 1])
    rmax = float(half.max())
    tree = cKDTree(0.5 * (segs[:, :2] + segs[:, 2:]))
    q = np.column_stack([px, py])
    _, nearest = tree.query(q)
    dbest = dist(px, py, segs[nearest])
    r = radius(dbest)
    cand = tree.query_ball_point(q, r + rmax + 1e-9 * (1.0 + r))
    counts = np.fromiter((len(c) for c in cand), dtype=np.int64, count=len(cand))
    rows = np.repeat(np.arange(q.shape[0]), counts)
    cols = np.fromiter((j for c in cand for j in c), dtype=np.int64, count=int(counts.sum()))
    return nearest, dbest, rows, cols


def issm_isovalue_segments(mesh: P1Mesh, phi: np.ndarray) -> np.ndarray:
    """(ns, 4) zero-contour segments ``[x0, y0, x1, y1]`` exactly as ISSM's ``Tria::WriteFieldIsovalueSegment``
    writes them: one per element with ``min(phi) <= 0 <= max(phi)``, in element order.

    Vertices with ``phi <= 0`` count as ice (``GetLevelsetIntersection``), listed in local order before the
    others. One ice vertex ``i``: the points on the edges ``i -> n0`` and ``i -> n1``; two ice vertices
    ``i0, i1``: the points on ``i0 -> n`` and ``i1 -> n``; each at ``x_i + s (x_n - x_i)`` with
    ``s = -phi_i / (phi_n - phi_i)``. Three: the segment between the first two zero vertices (a point
    written twice when there is one).
    """
    e = mesh.elements
    f = np.asarray(phi, float)[e]
    xe, ye = mesh.x[e], mesh.y[e]
    keep = (f.min(axis=1) <= 0.0) & (f.max(axis=1) >= 0.0)
    f, xe, ye = f[keep], xe[keep], ye[keep]
    n = f.shape[0]
    if n == 0:
        return np.zeros((0, 4))
    ice = f <= 0.0
    nice = ice.sum(axis=1)
    # local indices sorted ice first, each group in increasing local order (a stable sort on ~ice)
    order = np.argsort(~ice, axis=1, kind="stable")
    rows = np.arange(n)[:, None]
    fo, xo, yo = f[rows, order], xe[rows, order], ye[rows, order]
    # start and end vertex of the two crossings
    a = np.where(nice[:, None] == 1, np.array([[0, 0]]), np.array([[0, 1]]))  # ice vertex of each point
    b = np.where(nice[:, None] == 1, np.array([[1, 2]]), np.array([[2, 2]]))  # no-ice vertex
    r2 = np.arange(n)[:, None]
    fa, fb = fo[r2, a], fo[r2, b]
    with np.errstate(divide="ignore", invalid="ignore"):
        sfrac = (0.0 - fa) / (fb - fa)
    px = xo[r2, a] + sfrac * (xo[r2, b] - xo[r2, a])
    py = yo[r2, a] + sfrac * (yo[r2, b] - yo[r2, a])
    # all three vertices <= 0: the first two zero vertices (in local order), or one zero vertex twice
    three = nice == 3
    if three.any():
        z = f[three] == 0.0
        zorder = np.argsort(~z, axis=1, kind="stable")
        nz = z.sum(axis=1)
        second = np.where(nz >= 2, zorder[:, 1], zorder[:, 0])
        r3 = np.arange(int(three.sum()))
        px[three] = np.column_stack([xe[three][r3, zorder[:, 0]], xe[three][r3, second]])
        py[three] = np.column_stack([ye[three][r3, zorder[:, 0]], ye[three][r3, second]])
    return np.column_stack([px[:, 0], py[:, 0], px[:, 1], py[:, 1]])


def _issm_d2(px: np.ndarray, py: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Squared point-segment distance with ISSM's arithmetic (``DistanceToFieldValue``)."""
    x0, y0, x1, y1 = seg[..., 0], seg[..., 1], seg[..., 2], seg[..., 3]
    l2 = (x1 - x0) * (x1 - x0) + (y1 - y0) * (y1 - y0)
    d0 = (px - x0) * (px - x0) + (py - y0) * (py - y0)
    d1 = (px - x1) * (px - x1) + (py - y1) * (py - y1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = ((px - x0) * (x1 - x0) + (py - y0) * (y1 - y0)) / l2
        xn = x0 + t * (x1 - x0)
        yn = y0 + t * (y1 - y0)
    dn = (px - xn) * (px - xn) + (py - yn) * (py - yn)
    return np.where(l2 == 0.0, d0, np.where(t < 0.0, d0, np.where(t > 1.0, d1, dn)))


def _issm_scan(d: np.ndarray, tdx2: np.ndarray, tdy2: np.ndarray, dmin0: float, last0: int
               ) -> tuple[float, int]:
    """ISSM's loop over the segments for one vertex, started from ``dmin0`` (and ``last0``): segment ``i``
    is skipped when its first end point is more than ``10 dmin`` away in x or in y (squared), ``dmin`` the
    running minimum; returns the final ``dmin`` and the last segment that improved it.

    Vectorised as a fixed point on the set of considered segments (any fixed point is the sequential
    answer, by induction over the segments); a plain loop finishes the rare case that does not settle.
    """
    inf = np.inf
    considered = np.ones(d.size, dtype=bool)
    for _ in range(30):
        run = np.minimum.accumulate(np.concatenate(([dmin0], np.where(considered, d, inf))))[:-1]
        new = (tdx2 <= 10.0 * run) & (tdy2 <= 10.0 * run)
        if np.array_equal(new, considered):
            improved = np.flatnonzero(considered & (d < run))
            last = int(improved[-1]) if improved.size else last0
            return float(min(dmin0, run[-1], d[-1] if considered[-1] else inf)), last
        considered = new
    dmin, last = dmin0, last0
    for i in range(d.size):  # pragma: no cover - fallback, the fixed point settles in practice
        if tdx2[i] > 10.0 * dmin or tdy2[i] > 10.0 * dmin:
            continue
        if d[i] < dmin:
            dmin, last = float(d[i]), i
    return float(dmin), last


def distance_to_front_issm(mesh: P1Mesh, phi: np.ndarray) -> np.ndarray:
    """(nv,) distance from every vertex to the zero contour of ``phi`` by ISSM's rule
    (``FemModel::DistanceToFieldValue``), which is not always the exact distance.

    ISSM visits the vertices in order; for each it starts from the squared distance to the first end point
    of the segment that gave the previous vertex its distance (``1e50`` for the first vertex, and while that
    segment is segment 0), then scans the segments of :func:`issm_isovalue_segments` in order, **skipping a
    segment whose first end point lies more than sqrt(10) times the current best distance away in x or in
    y**. That tip test can skip the nearest segment when the vertex is close to a segment's far end, so the
    result can exceed the exact distance (:func:`distance_to_front`).

    Implementation: the exact nearest segment of every vertex comes from a k-d tree; where its first end
    point passes the tip test even against the final distance, the scan cannot skip it and ISSM's answer is
    the exact one; the other vertices (near the front, a few per front element) get the full scan
    (:func:`_issm_scan`). ``inf`` when ``phi`` has no zero contour.
    """
    return issm_distance_to_segments(mesh.x, mesh.y, issm_isovalue_segments(mesh, phi))


def issm_distance_to_segments(px: np.ndarray, py: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """ISSM's ``DistanceToFieldValue`` scan (see :func:`distance_to_front_issm`) of the points ``(px, py)``,
    visited in order, over the segments ``segs`` ``(ns, 4)`` ``[x0, y0, x1, y1]`` (``(x0, y0)`` is the tip
    of the skip test)."""
    px = np.asarray(px, float)
    py = np.asarray(py, float)
    segs = np.asarray(segs, float).reshape(-1, 4)
    nv = px.size
    if segs.shape[0] == 0:
        return np.full(nv, np.inf)
    nearest, dbest, rows, cols = _segment_candidates(px, py, segs, _issm_d2, np.sqrt)  # dbest squared
    d = _issm_d2(px[rows], py[rows], segs[cols])
    dstar = dbest.copy()
    np.minimum.at(dstar, rows, d)
    # first (lowest-index) segment attaining the minimum
    first = np.full(nv, np.iinfo(np.int64).max)
    hit = d == dstar[rows]
    np.minimum.at(first, rows[hit], cols[hit])
    first = np.where(first == np.iinfo(np.int64).max, nearest, first)
    tdx2 = (segs[first, 0] - px) ** 2
    tdy2 = (segs[first, 1] - py) ** 2
    safe = (tdx2 <= 10.0 * dstar) & (tdy2 <= 10.0 * dstar)
    out = np.empty(nv)
    last = -1
    sx0, sy0 = segs[:, 0], segs[:, 1]
    dstar_l, first_l, safe_l = dstar.tolist(), first.tolist(), safe.tolist()
    xs, ys = px.tolist(), py.tolist()
    for v in range(nv):  # the chain through `last` is sequential; each step is O(1) except unsafe ones
        x, y = xs[v], ys[v]
        if last > 0:
            dmin0 = (float(sx0[last]) - x) ** 2 + (y - float(sy0[last])) ** 2
        else:
            dmin0 = 1.0e50
        if safe_l[v]:
            ds = dstar_l[v]
            if dmin0 <= ds:
                out[v] = dmin0
            else:
                out[v] = ds
                last = first_l[v]
        else:
            dv = _issm_d2(x, y, segs)
            out[v], last = _issm_scan(dv, (sx0 - x) ** 2, (sy0 - y) ** 2, dmin0, last)
    return np.sqrt(out)


def reinitialize(mesh: P1Mesh, phi: np.ndarray, distance: str = "issm") -> np.ndarray:
    """Reset ``phi`` to the signed distance to its zero contour (ISSM's ``ResetLevelset``): |phi| = distance,
    phi > 0 keeps a positive sign, phi <= 0 a negative one. Unchanged when there is no front.

    ``distance='issm'`` (default) reproduces ISSM's ``DistanceToFieldValue`` (:func:`distance_to_front_issm`,
    its segment-skipping "10 x dmin" tip test included); ``'exact'`` uses the exact distance to the zero
    contour (:func:`distance_to_front`). See docs/physics.md for why the two differ.
    """
    phi = np.asarray(phi, float)
    if distance == "issm":
        d = distance_to_front_issm(mesh, phi)
    elif distance == "exact":
        d = distance_to_front(mesh, phi)
    else:
        raise ModelInputError("reinit_distance", "'issm' or 'exact'", repr(distance))
    if not np.all(np.isfinite(d)):
        return phi.copy()
    return np.where(phi > 0.0, d, -d)


# --------------------------------------------------------------------------------------------------------
# icebergs
# --------------------------------------------------------------------------------------------------------
def kill_icebergs(mesh: P1Mesh, ice_levelset: np.ndarray, ocean_levelset: np.ndarray,
                  anchored_vertices: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Remove ice that is not attached to an anchor (ISSM's ``KillIcebergsx``).

    Seeds: the ice vertices (``ice_levelset < 0``) of ice elements whose three vertices are grounded
    (``ocean_levelset > 0``), plus the ice vertices in ``anchored_vertices`` (e.g. Dirichlet-velocity
    vertices; ISSM's current code uses the grounded seeds only, so an all-floating shelf would lose all its
    ice there). An ice element joins the attached set once two of its vertices are attached (it shares an
    edge with the set), and then all its vertices are attached. Every ice element with a vertex left
    unattached gets ``ice_levelset = +1`` on its three vertices.

    Returns the new level set and the number of ice elements removed.
    """
    ls = np.array(ice_levelset, dtype=float, copy=True)
    e = mesh.elements
    ice_v = ls < 0.0
    ice_el = np.any(ice_v[e], axis=1)
    grounded_el = np.all(np.asarray(ocean_levelset, float)[e] > 0.0, axis=1)
    mask = np.zeros(mesh.nv, dtype=bool)
    seed_el = ice_el & grounded_el
    mask[e[seed_el]] = ice_v[e[seed_el]]
    if anchored_vertices is not None:
        mask |= np.asarray(anchored_vertices, bool) & ice_v
    # components of ice elements linked through shared edges
    n1, n2 = _edge_neighbours(mesh)
    keep = ice_el[n1] & ice_el[n2]
    g = sp.csr_matrix((np.ones(int(keep.sum())), (n1[keep], n2[keep])), shape=(mesh.ne, mesh.ne))
    _, comp = connected_components(g, directed=False)
    joined = np.zeros(mesh.ne, dtype=bool)
    while True:
        new = ice_el & ~joined & (mask[e].sum(axis=1) >= 2)
        if not new.any():
            break
        reached = np.zeros(comp.max() + 1, dtype=bool)
        reached[comp[new]] = True
        joined |= ice_el & reached[comp]
        mask[e[joined].ravel()] = True
    kill = ice_el & ~np.all(mask[e], axis=1)
    ls[e[kill].ravel()] = 1.0
    return ls, int(kill.sum())


# --------------------------------------------------------------------------------------------------------
# the entry point called by the transient loop
# --------------------------------------------------------------------------------------------------------
def _nodal(f, nv: int, name: str) -> np.ndarray:
    a = np.asarray(f, dtype=float)
    if a.ndim == 0 or a.size == 1:
        return np.full(nv, float(a.ravel()[0]))
    if a.shape != (nv,):
        raise ModelInputError(name, f"{nv} values (one per vertex)", f"shape {a.shape}")
    return a


def advance_front(state, mesh: P1Mesh, *, ice_levelset, vx, vy, thickness, base, bed, ocean_levelset,
                  dt: float, step: int, time: float, spclevelset: np.ndarray | None = None) -> FrontUpdate:
    """ISSM's moving-front core for one transient step (see the module docstring for the order).

    Parameters
    ----------
    state : ModelState (``calving``, ``levelset``, ``frontal_meltingrate``, ``materials``, ``stressbalance``,
        ``timestepping``, ``sealevel`` are used)
    mesh : P1Mesh of ``state.mesh``
    ice_levelset, vx, vy, thickness, base, bed, ocean_levelset : (nv,) current fields (SI); vx, vy are the
        velocities of this step's stress balance, thickness/base the geometry at the start of the step
    dt, time : step length and time at the end of the step (s); step : 1-based step number
    spclevelset : (nv,) current dynamic level-set constraints (from the previous step's
        :attr:`FrontUpdate.spclevelset`); None: ``md.levelset.spclevelset`` as given

    Level-set constraints follow ISSM's ``LevelsetAnalysis::CreateConstraints``: a constant
    ``md.levelset.spclevelset`` becomes *dynamic* constraints, and after every re-initialisation
    (``ResetLevelset`` then ``ResetBoundaryConditions``) their values are reset to the re-initialised level
    set at the constrained vertices; a time series stays as given. After killing icebergs ISSM re-initialises
    (and resets the constraints), and at a ``reinit_frequency`` step it does both again, so a step with both
    re-initialises twice. The distance of the re-initialisation and of the minimum-thickness rule is ISSM's
    (``state.extras['reinit_distance'] = 'issm'``, default) or the exact one (``'exact'``), see
    :func:`reinitialize`.

    Returns
    -------
    FrontUpdate
    """
    nv = mesh.nv
    phi = _nodal(ice_levelset, nv, "md.mask.ice_levelset")
    ls_set = state.levelset
    law = state.calving.law
    interp = bool(state.timestepping.interp_forcing)
    e = mesh.elements
    # 1. smoothed gradient
    gx, gy = smoothed_gradient(mesh, phi)
    # 2. extrapolation from the vertices of ice elements
    known = ice_vertex_mask(phi, e, nv)
    vx_e = extrapolate(mesh, _nodal(vx, nv, "vx"), known)
    vy_e = extrapolate(mesh, _nodal(vy, nv, "vy"), known)
    H_e = extrapolate(mesh, _nodal(thickness, nv, "md.geometry.thickness"), known)
    base = _nodal(base, nv, "md.geometry.base")
    ocean = _nodal(ocean_levelset, nv, "md.mask.ocean_levelset")
    # 3. calving and frontal melt
    rates = calving_laws.calving_rate(state, mesh, vx=vx_e, vy=vy_e, base=base, ocean_levelset=ocean, time=time)
    melt = _nodal(state.frontal_meltingrate.at(time, interp), nv, "md.frontalforcings.meltingrate")
    # 4. front velocity
    wx, wy, cx, cy = front_velocity(mesh, vx=vx_e, vy=vy_e, calving_element=rates.element, frontal_melt=melt,
                                    ocean_levelset=ocean, gradx=gx, grady=gy, discrete=(law == "minthickness"))
    # 5. level-set solve, then the discrete-law post-processing
    dynamic = not ls_set.spclevelset.is_transient
    if dynamic and spclevelset is not None:
        spc = _nodal(spclevelset, nv, "md.levelset.spclevelset")
    else:
        spc = _nodal(ls_set.spclevelset.at(time, interp), nv, "md.levelset.spclevelset")
    distance = str(getattr(state, "extras", {}).get("reinit_distance", "issm"))
    new = solve_levelset(mesh, phi, wx, wy, dt, migration_max=ls_set.migration_max,
                         stabilization=int(ls_set.stabilization), spclevelset=spc)
    hmin = state.calving.params.get("min_thickness") if law in ("minthickness", "vonmises") else None
    bed_n = _nodal(bed, nv, "md.geometry.bed")
    with np.errstate(invalid="ignore"):
        candidates = hmin is not None and bool(np.any((H_e < float(hmin)) & (bed_n < state.sealevel)
                                                      & (new < 0.0)))
    if candidates:  # the distance only matters where the rule can switch a vertex to no ice
        dist = distance_to_front_issm(mesh, new) if distance == "issm" else distance_to_front(mesh, new)
        new = calving_laws.minthickness_retreat(e, new, thickness=H_e, bed=_nodal(bed, nv, "md.geometry.bed"),
                                                distance=dist, min_thickness=float(hmin),
                                                migration_max=ls_set.migration_max, dt=dt,
                                                sealevel=state.sealevel)
    # 6. icebergs
    killed = 0
    reinit = False
    if ls_set.kill_icebergs:
        spcvx = np.asarray(state.stressbalance.spcvx, float)
        spcvy = np.asarray(state.stressbalance.spcvy, float)
        anchored = ~np.isnan(spcvx) & ~np.isnan(spcvy)
        new, killed = kill_icebergs(mesh, new, ocean, anchored)
        if killed > 0:  # ISSM: ResetLevelset, ResetBoundaryConditions
            new = reinitialize(mesh, new, distance)
            reinit = True
            if dynamic:
                spc = np.where(np.isnan(spc), np.nan, new)
    # 7. re-initialisation (again, when icebergs were killed at a reinit step, as ISSM does)
    freq = int(ls_set.reinit_frequency)
    if freq and step % freq == 0:
        new = reinitialize(mesh, new, distance)
        reinit = True
        if dynamic:
            spc = np.where(np.isnan(spc), np.nan, new)
    melt_used = np.where(ocean < 0.0, 0.0, melt)
    return FrontUpdate(ice_levelset=new, calving_rate=rates.nodal, frontal_melt_rate=melt_used, vx=vx_e, vy=vy_e,
                       thickness=H_e, calving_rate_x=calving_laws.nodal_mean(mesh, cx),
                       calving_rate_y=calving_laws.nodal_mean(mesh, cy), extras=rates.extras,
                       icebergs_removed=killed, reinitialized=reinit,
                       spclevelset=np.array(spc, dtype=float) if dynamic else None,
                       calving_element_x=cx, calving_element_y=cy)
