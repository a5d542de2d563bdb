"""Linear (P1) finite elements on a 2-D triangle mesh, fully vectorised.

:class:`P1Mesh` precomputes what every FE operator in :mod:`issm_emulator.physics` needs: element areas,
the constant shape-function gradients of each triangle, and the index arrays that scatter ``(ne, 3, 3)``
element matrices and ``(ne, 3)`` element vectors into global sparse matrices and vectors. Nothing here
loops over elements or vertices in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

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

    def element_mean(self, f: np.ndarray) -> np.ndarray:
        """(ne,) mean of the nodal field ``f`` over each element's three vertices."""
        return np.asarray(f)[self.elements].mean(axis=1)

    def gradient(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ne,), (ne,) constant gradient of the P1 interpolant of the nodal field ``f``."""
        fe = np.asarray(f)[self.elements]
        return (fe * self.dphidx).sum(axis=1), (fe * self.dphidy).sum(axis=1)

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
