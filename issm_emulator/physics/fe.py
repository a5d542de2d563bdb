"""Linear (P1) finite elements on a 2-D triangle mesh, fully vectorised.

:class:`P1Mesh` precomputes what every FE operator in :mod:`issm_emulator.physics` needs: element areas,
the constant shape-function gradients of each triangle, and the index arrays that scatter ``(ne, 3, 3)``
element matrices and ``(ne, 3)`` element vectors into global sparse matrices and vectors. Nothing here
loops over elements or vertices in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from weakref import WeakKeyDictionary

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

# Quadrature on the reference triangle: barycentric points and weights summing to 1 (times the area).
#: degree-2 rule (3 interior points), exact for quadratics
GAUSS2_POINTS = np.array([[2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
GAUSS2_WEIGHTS = np.array([1 / 3, 1 / 3, 1 / 3])
#: degree-3 rule (Strang-Fix, 6 points with positive weights), exact for cubics
_a, _b = 0.659027622374092, 0.231933368553031
_c = 1.0 - _a - _b
GAUSS3_POINTS = np.array([[_a, _b, _c], [_a, _c, _b], [_b, _a, _c], [_b, _c, _a], [_c, _a, _b], [_c, _b, _a]])
GAUSS3_WEIGHTS = np.full(6, 1 / 6)


@dataclass(frozen=True, eq=False)
class P1Mesh:
    """Geometry of a P1 triangle mesh.

    Attributes
    ----------
    x, y : (nv,) vertex coordinates (m)
    elements : (ne, 3) 0-based vertex indices, counter-clockwise
    """

    x: np.ndarray
    y: np.ndarray
    elements: np.ndarray

    @classmethod
    def from_mesh(cls, mesh) -> "P1Mesh":
        """Build from any object with ``x``, ``y`` and 0-based ``elements`` (e.g. :class:`state.Mesh`)."""
        return cls(np.asarray(mesh.x, float), np.asarray(mesh.y, float),
                   np.asarray(mesh.elements, dtype=np.int64))

    @property
    def nv(self) -> int:
        return int(self.x.shape[0])

    @property
    def ne(self) -> int:
        return int(self.elements.shape[0])

    @cached_property
    def _geom(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = self.elements
        x1, x2, x3 = self.x[e[:, 0]], self.x[e[:, 1]], self.x[e[:, 2]]
        y1, y2, y3 = self.y[e[:, 0]], self.y[e[:, 1]], self.y[e[:, 2]]
        det = (x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1)  # twice the signed area
        dphidx = np.stack([y2 - y3, y3 - y1, y1 - y2], axis=1) / det[:, None]
        dphidy = np.stack([x3 - x2, x1 - x3, x2 - x1], axis=1) / det[:, None]
        return 0.5 * det, dphidx, dphidy

    @property
    def area(self) -> np.ndarray:
        """(ne,) signed element areas (positive for counter-clockwise triangles), m^2."""
        return self._geom[0]

    @property
    def dphidx(self) -> np.ndarray:
        """(ne, 3) x-derivatives of the three P1 shape functions of each element."""
        return self._geom[1]

    @property
    def dphidy(self) -> np.ndarray:
        """(ne, 3) y-derivatives of the three P1 shape functions of each element."""
        return self._geom[2]

    @cached_property
    def h(self) -> np.ndarray:
        """(ne,) element size sqrt(2 * area), as ISSM's stabilisation uses."""
        return np.sqrt(2.0 * np.abs(self.area))

    @cached_property
    def _scatter(self) -> tuple[np.ndarray, np.ndarray]:
        e = self.elements
        rows = np.repeat(e, 3, axis=1).ravel()  # (ne*9,) row index i of K_e[i, j]
        cols = np.tile(e, (1, 3)).ravel()  # (ne*9,) column index j
        return rows, cols

    def assemble(self, ke: np.ndarray) -> sp.csr_matrix:
        """Sum element matrices ``ke`` (ne, 3, 3) into a (nv, nv) CSR matrix."""
        rows, cols = self._scatter
        return sp.csr_matrix((np.asarray(ke).ravel(), (rows, cols)), shape=(self.nv, self.nv))

    def assemble_vector(self, fe: np.ndarray) -> np.ndarray:
        """Sum element vectors ``fe`` (ne, 3) into a (nv,) vector."""
        return np.bincount(self.elements.ravel(), weights=np.asarray(fe).ravel(), minlength=self.nv)

    @cached_property
    def mass_element(self) -> np.ndarray:
        """(ne, 3, 3) consistent P1 mass matrices: area/12 * (1 + delta_ij)."""
        base = (np.ones((3, 3)) + np.eye(3)) / 12.0
        return np.abs(self.area)[:, None, None] * base[None]

    @cached_property
    def mass(self) -> sp.csr_matrix:
        """(nv, nv) consistent mass matrix."""
        return self.assemble(self.mass_element)

    @cached_property
    def lumped_mass(self) -> np.ndarray:
        """(nv,) row sums of the mass matrix: one third of the area of every element around a vertex."""
        return self.assemble_vector(np.repeat(np.abs(self.area)[:, None] / 3.0, 3, axis=1))

    @cached_property
    def _element_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = self.elements
        return np.ascontiguousarray(e[:, 0]), np.ascontiguousarray(e[:, 1]), np.ascontiguousarray(e[:, 2])

    def element_mean(self, f: np.ndarray) -> np.ndarray:
        """(ne,) mean of the nodal field ``f`` over each element's three vertices.

        ``(f[v0] + f[v1] + f[v2]) / 3`` with the vertex columns stored contiguously: the same sum in the
        same order as ``f[elements].mean(axis=1)``, bit for bit, about 5x faster (it runs several times per
        output step)."""
        c0, c1, c2 = self._element_columns
        f = np.asarray(f)
        return (f[c0] + f[c1] + f[c2]) / 3.0

    def gradient(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ne,), (ne,) constant gradient of the P1 interpolant of the nodal field ``f``."""
        fe = np.asarray(f)[self.elements]
        return (fe * self.dphidx).sum(axis=1), (fe * self.dphidy).sum(axis=1)

    @cached_property
    def nodal_gradient_operator(self) -> sp.csr_matrix:
        """``(2 nv, nv)`` sparse matrix ``G``: ``G @ f`` stacks the x then y components of the nodal gradient of
        the P1 field ``f``, the area-weighted mean of the constant gradients of the elements around each vertex
        (0 at a vertex in no element). Built once per mesh: the step-mode emulator needs two such gradients
        per time step."""
        a = self.abs_area
        nv = self.nv
        wsum = np.bincount(self.elements.ravel(), weights=np.repeat(a, 3), minlength=nv)
        inv = np.divide(1.0, wsum, out=np.zeros(nv), where=wsum > 0)
        rows = np.repeat(self.elements, 3, axis=1).ravel()              # vertex receiving, per (e, i, j)
        cols = np.tile(self.elements, (1, 3)).ravel()                    # vertex whose value is used
        scale = (a[:, None] * inv[self.elements]).repeat(3, axis=1)      # A_e / sum A around the vertex
        gx = (scale * np.tile(self.dphidx, (1, 3))).ravel()
        gy = (scale * np.tile(self.dphidy, (1, 3))).ravel()
        return sp.csr_matrix((np.concatenate([gx, gy]), (np.concatenate([rows, rows + nv]),
                                                          np.concatenate([cols, cols]))), shape=(2 * nv, nv))

    @cached_property
    def _elements_per_vertex(self) -> np.ndarray:
        return np.bincount(self.elements.ravel(), minlength=self.nv).astype(float)

    def nodal_average(self, fe: np.ndarray) -> np.ndarray:
        """Per-vertex arithmetic mean of the per-element values ``fe`` over the elements sharing the
        vertex (ISSM's rule for element outputs such as deviatoric stresses and calving rates)."""
        s = np.bincount(self.elements.ravel(), weights=np.repeat(np.asarray(fe, float), 3), minlength=self.nv)
        with np.errstate(invalid="ignore", divide="ignore"):
            return s / self._elements_per_vertex

    def at_points(self, f: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(ne, npts) values of the P1 interpolant of ``f`` at barycentric ``points`` (npts, 3)."""
        return np.asarray(f)[self.elements] @ np.asarray(points).T

    @cached_property
    def abs_area(self) -> np.ndarray:
        """(ne,) unsigned element areas, m^2 (``np.abs(area)``, computed once per mesh)."""
        return np.abs(self.area)

    @cached_property
    def _memo_store(self) -> dict:
        return {}

    def memo(self, key, arrays: tuple[np.ndarray, ...], compute, keep: int = 2):
        """``compute()``, memoised on this mesh under ``key`` for the exact values of ``arrays``.

        Per-step quantities of a transient that depend on a field which often does not change from one
        call to the next (the element masks and sub-element geometry of a level set: the ice level set
        without a moving front, the ocean level set between a step's outputs and the next step's mass
        transport) are computed once and reused while the field is bitwise the same. The last ``keep``
        results per key are kept, each with a copy of its ``arrays``; a hit costs one ``np.array_equal``
        per array, and the value returned is the one ``compute()`` gave for those exact inputs, so
        memoised and direct results are identical. Callers must not modify the returned value.
        """
        entries = self._memo_store.setdefault(key, [])
        for i, (saved, value) in enumerate(entries):
            if all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(saved, arrays)):
                if i:
                    entries.insert(0, entries.pop(i))
                return value
        value = compute()
        entries.insert(0, (tuple(np.array(a, copy=True) for a in arrays), value))
        del entries[keep:]
        return value

    @cached_property
    def vertex_order(self) -> np.ndarray:
        """(nv,) fill-reducing ordering of the vertices (position -> vertex), computed once per mesh.

        SuperLU's multiple minimum degree ordering of A^T + A for a diagonally dominant matrix whose pattern
        is the vertex adjacency of the mesh (only the pattern matters). Sparse LU factorisations of FE
        matrices numbered vertex by vertex in this order (the unknowns of a vertex adjacent) with SuperLU's
        ``permc_spec="NATURAL"`` get about the fill of a minimum-degree ordering of the full matrix
        without paying for that ordering at every factorisation.
        """
        rows, cols = self._scatter
        adj = sp.csc_matrix((np.ones(rows.size), (rows, cols)), shape=(self.nv, self.nv))
        adj = adj + sp.diags(np.asarray(adj.sum(axis=1)).ravel() + 1.0)
        lu = spla.splu(adj.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
        return np.argsort(lu.perm_c).astype(np.int64)


class ReducedSystem:
    """Scatter of element matrices into the free-dof blocks of a global FE matrix, in a fill-reducing order.

    A global matrix has ``ncomp`` unknowns per vertex, global dof ``c * nv + v`` for component ``c`` of
    vertex ``v``; element matrices are (ne, 3 ncomp, 3 ncomp) with local dofs ordered component-major
    ([c0 at the 3 vertices, c1 at the 3 vertices, ...]). Given the mask of free dofs, the free dofs are
    renumbered vertex by vertex in :attr:`P1Mesh.vertex_order` (the components of a vertex adjacent) and

        A_ff = P K[free, free] P^T   (CSC, for SuperLU with permc_spec="NATURAL")
        A_fs = P K[free, fixed]      (CSR)

    are filled directly from the element entries by sparse gather matrices built once (``A_ff.data =
    G_ff @ ke.ravel()``), so no global matrix is formed and sliced. Vectors over the free dofs are in the
    new order: ``x_new = x_global[dofs]`` and ``x_global[dofs] = x_new``.

    Attributes
    ----------
    dofs : (nf,) global index of each free dof in the new order
    fixed : (ns,) global indices of the fixed dofs (increasing)
    target_ff, target_fs : (ne (3 ncomp)^2,) index of each flattened element entry in the CSC data of A_ff
        (CSR data of A_fs), -1 where the entry belongs to neither block
    G_ff, G_fs : sparse gather matrices, ``A_ff.data = G_ff @ ke.ravel()``
    """

    def __init__(self, mesh: P1Mesh, free: np.ndarray, ncomp: int):
        nv = mesh.nv
        nd = ncomp * nv
        free = np.asarray(free, dtype=bool)
        if free.shape != (nd,):
            raise ValueError(f"ReducedSystem: free mask of shape {free.shape}, expected ({nd},)")
        self.ncomp = ncomp
        self.free_mask = free.copy()
        rank = np.empty(nv, dtype=np.int64)
        rank[mesh.vertex_order] = np.arange(nv)
        pos = (rank[None, :] * ncomp + np.arange(ncomp)[:, None]).ravel()  # position of global dof
        fidx = np.flatnonzero(free)
        self.dofs = fidx[np.argsort(pos[fidx], kind="stable")]
        self.fixed = np.flatnonzero(~free)
        nf, ns = self.dofs.size, self.fixed.size
        gmap = np.full(nd, -1, dtype=np.int64)
        gmap[self.dofs] = np.arange(nf)
        smap = np.full(nd, -1, dtype=np.int64)
        smap[self.fixed] = np.arange(ns)
        e = mesh.elements
        gdof = np.concatenate([e + c * nv for c in range(ncomp)], axis=1)  # (ne, 3 ncomp)
        m = gdof.shape[1]
        r = np.repeat(gdof[:, :, None], m, axis=2).ravel()
        c = np.repeat(gdof[:, None, :], m, axis=1).ravel()
        self.nentries = r.size
        rf, cf, cs = gmap[r], gmap[c], smap[c]
        # free-free block, CSC: sort by (column, row)
        sel = np.flatnonzero((rf >= 0) & (cf >= 0))
        ukey, inv = np.unique(cf[sel] * nf + rf[sel], return_inverse=True)
        self._ff_index = (ukey % nf).astype(np.int32)
        self._ff_indptr = np.concatenate([[0], np.cumsum(np.bincount(ukey // nf, minlength=nf))]).astype(np.int32)
        self.target_ff = np.full(r.size, -1, dtype=np.int64)
        self.target_ff[sel] = inv.ravel()
        self.nnz_ff = ukey.size
        # free-fixed block, CSR: sort by (row, column)
        sel = np.flatnonzero((rf >= 0) & (cs >= 0))
        ukey, inv = np.unique(rf[sel] * max(ns, 1) + cs[sel], return_inverse=True)
        self._fs_index = (ukey % max(ns, 1)).astype(np.int32)
        self._fs_indptr = np.concatenate([[0], np.cumsum(np.bincount(ukey // max(ns, 1), minlength=nf))]
                                         ).astype(np.int32)
        self.target_fs = np.full(r.size, -1, dtype=np.int64)
        self.target_fs[sel] = inv.ravel()
        self.nnz_fs = ukey.size
        self.shape_ff = (nf, nf)
        self.shape_fs = (nf, ns)
        #: per-system storage for callers' derived gather matrices (e.g. constant element operators)
        self.cache: dict = {}

    def gather(self, entries: np.ndarray, columns: np.ndarray, ncols: int,
               weights: np.ndarray | None = None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Gather matrices (G_ff, G_fs) of shape (nnz, ncols) that add ``weights[k] * z[columns[k]]`` to the
        data slot of flattened element entry ``entries[k]``: ``A_ff.data = G_ff @ z`` for any (ncols,) ``z``.
        Lets a caller fold a constant per-entry factor into the scatter (e.g. K_e = F_e Kgeom_e)."""
        entries = np.asarray(entries, dtype=np.int64)
        columns = np.asarray(columns, dtype=np.int64)
        w = np.ones(entries.size) if weights is None else np.asarray(weights, dtype=float)
        out = []
        for target, n in ((self.target_ff, self.nnz_ff), (self.target_fs, self.nnz_fs)):
            t = target[entries]
            ok = t >= 0
            out.append(sp.csr_matrix((w[ok], (t[ok], columns[ok])), shape=(n, ncols)))
        return out[0], out[1]

    @cached_property
    def _identity_gather(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        ent = np.arange(self.nentries)
        return self.gather(ent, ent, self.nentries)

    @property
    def G_ff(self) -> sp.csr_matrix:
        """(nnz_ff, nentries) gather matrix: ``A_ff.data = G_ff @ ke.ravel()`` (built on first use)."""
        return self._identity_gather[0]

    @property
    def G_fs(self) -> sp.csr_matrix:
        """(nnz_fs, nentries) gather matrix: ``A_fs.data = G_fs @ ke.ravel()``."""
        return self._identity_gather[1]

    def matrix_ff(self, data: np.ndarray) -> sp.csc_matrix:
        """A_ff from its CSC data (length ``nnz_ff``)."""
        return sp.csc_matrix((data, self._ff_index, self._ff_indptr), shape=self.shape_ff)

    def matrix_fs(self, data: np.ndarray) -> sp.csr_matrix:
        """A_fs from its CSR data (length ``nnz_fs``)."""
        return sp.csr_matrix((data, self._fs_index, self._fs_indptr), shape=self.shape_fs)

    def assemble(self, ke: np.ndarray) -> tuple[sp.csc_matrix, sp.csr_matrix]:
        """(A_ff, A_fs) from element matrices ``ke`` (ne, 3 ncomp, 3 ncomp)."""
        flat = np.ascontiguousarray(ke, dtype=float).ravel()
        return self.matrix_ff(self.G_ff @ flat), self.matrix_fs(self.G_fs @ flat)


_REDUCED: WeakKeyDictionary[P1Mesh, list[ReducedSystem]] = WeakKeyDictionary()
_REDUCED_KEEP = 4


def reduced_system(mesh: P1Mesh, free: np.ndarray, ncomp: int) -> ReducedSystem:
    """The :class:`ReducedSystem` of ``mesh`` for this free-dof mask, cached per mesh (the last few masks),
    so that a transient with an unchanged ice domain builds it once."""
    free = np.asarray(free, dtype=bool)
    cache = _REDUCED.setdefault(mesh, [])
    for i, rs in enumerate(cache):
        if rs.ncomp == ncomp and np.array_equal(rs.free_mask, free):
            if i:
                cache.insert(0, cache.pop(i))
            return rs
    rs = ReducedSystem(mesh, free, ncomp)
    cache.insert(0, rs)
    del cache[_REDUCED_KEEP:]
    return rs


def splu_natural(A: sp.csc_matrix, *, symmetric: bool = True):
    """SuperLU factorisation of ``A`` in its given (already fill-reducing) order: ``permc_spec="NATURAL"``;
    ``symmetric`` selects SuperLU's symmetric mode (diagonal pivots preferred), right for symmetric and
    structurally symmetric, diagonally strong FE matrices. Raises RuntimeError when ``A`` is singular."""
    return spla.splu(A, permc_spec="NATURAL", options={"SymmetricMode": bool(symmetric)})
