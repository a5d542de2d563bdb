"""A network's processing mesh: every model of a glacier mapped onto one mesh, and the outputs mapped back.

A graph network trained on the runs of one mesh learns that mesh as much as the ice flow: the runs of an
ensemble share their bed, outline and mesh. A Pine Island step EGCN trained on the 3 km mesh predicts one
step's velocity to 2.4 % of the RMS speed on that mesh, but to 26 % on the 2 km mesh and 14 % on the 5 km
one, coarser as well as finer (``benchmarks/processing_mesh.py``, docs/results.md), and its fine-tunings on
the 2, 3 and 5 km ensembles together diverged on the 2 km mesh (docs/training.md). The CNN escapes this by
convolving on one grid for every mesh; a checkpoint with a **processing mesh** does the same: the network
runs on that mesh (the first training ensemble's) whatever the model's mesh, the fields moved as ISSM's
``InterpFromMeshToMesh2d`` moves them:

* **Transfer** (:func:`p1_interpolation`): the P1 (barycentric) interpolation matrix from one mesh to
  points; points outside the source mesh (where two meshes' boundaries, each a polygon through its own
  vertices, cut the outline differently) take the value at the nearest point of its boundary.
* **Inputs** (:meth:`ProcessingMesh.features`): per-vertex fields are interpolated; ``dirichlet_mask`` is
  1 at processing-mesh boundary vertices where the interpolated mask is at least 1/2 (Dirichlet conditions
  live on the boundary), and ``velocity_dirichlet`` is kept there only; ``is_boundary`` and ``is_front``
  are the processing mesh's own (the front from the interpolated ice level set). The gradients are then
  taken on the processing mesh. Outputs are interpolated back (:meth:`ProcessingMesh.back`), and the
  runtime imposes the model's own Dirichlet values afterwards.
* **Back** (the record's ``back``, :data:`BACK_RULES`): ``"p1"`` interpolates the processing mesh's P1 field;
  ``"taylor"`` (:func:`taylor_interpolation`) blends, with the same barycentric weights, each vertex's
  first-order Taylor expansion with its recovered gradient, so that a model on a finer mesh gets more of
  the velocity's curvature than the processing mesh's P1 field holds. Moving the 2 km Pine Island
  ensemble's own velocities through the 3 km mesh and back costs 14.1 m of thickness RMSE over 20 years
  with ``"p1"`` and 9.1 m with ``"taylor"`` (8.3 and 5.9 m with fitted values; ``benchmarks/
  processing_mesh.py``, docs/results.md). A record without ``back`` is ``"p1"``, as checkpoints from
  before the option were trained.

A model on the processing mesh itself (same vertices and triangles) is evaluated as it is
(:func:`processing_for`), so the network is unchanged there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from issm_emulator.graph import boundary_edges, front_vertices, mesh_graph
from issm_emulator.physics.fe import P1Mesh

__all__ = ["BACK_RULES", "ProcessingMesh", "mesh_record", "p1_interpolation", "processing_for",
           "taylor_interpolation"]

#: the rules for moving values from the processing mesh back to a model's mesh
BACK_RULES = ("p1", "taylor")


def p1_interpolation(x: np.ndarray, y: np.ndarray, elements: np.ndarray, px: np.ndarray,
                     py: np.ndarray) -> sp.csr_matrix:
    """(npoints, nv) P1 interpolation from the mesh ``(x, y, elements)`` (0-based) to the points ``(px, py)``.

    Points outside the mesh take the value at the nearest point of its boundary (linear along that side)."""
    from matplotlib.tri import Triangulation

    e = np.asarray(elements, np.int64)
    tri = Triangulation(x, y, e).get_trifinder()(px, py)
    inside = tri >= 0
    t = e[np.where(inside, tri, 0)]
    x1, x2, x3 = x[t[:, 0]], x[t[:, 1]], x[t[:, 2]]
    y1, y2, y3 = y[t[:, 0]], y[t[:, 1]], y[t[:, 2]]
    det = (x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1)
    l2 = ((px - x1) * (y3 - y1) - (x3 - x1) * (py - y1)) / det
    l3 = ((x2 - x1) * (py - y1) - (px - x1) * (y2 - y1)) / det
    w = np.clip(np.stack([1.0 - l2 - l3, l2, l3], 1), 0.0, 1.0)
    w /= w.sum(1, keepdims=True)
    out = np.flatnonzero(~inside)
    if out.size:
        be = boundary_edges(e, x.size)
        ax, ay = x[be[:, 0]], y[be[:, 0]]
        dx, dy = x[be[:, 1]] - ax, y[be[:, 1]] - ay
        q = ((px[out, None] - ax) * dx + (py[out, None] - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-30)
        q = np.clip(q, 0.0, 1.0)
        d2 = (ax + q * dx - px[out, None]) ** 2 + (ay + q * dy - py[out, None]) ** 2
        j = np.argmin(d2, axis=1)
        qj = q[np.arange(out.size), j]
        t[out] = np.stack([be[j, 0], be[j, 1], be[j, 1]], 1)
        w[out] = np.stack([1.0 - qj, qj, np.zeros_like(qj)], 1)
    m = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(px.size), 3), t.ravel())), shape=(px.size, x.size))
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


def taylor_interpolation(x: np.ndarray, y: np.ndarray, elements: np.ndarray, px: np.ndarray,
                         py: np.ndarray) -> sp.csr_matrix:
    """(npoints, nv) matrix of the blended Taylor interpolation from the mesh ``(x, y, elements)`` (0-based) to
    the points ``(px, py)``: with the P1 weights ``w_k`` of :func:`p1_interpolation` (vertices ``k`` of the
    containing triangle, or of the nearest boundary side),

        u(p) = sum_k w_k (u_k + g_k . (p - x_k)),

    ``g_k`` the area-weighted mean of the gradients of the elements around vertex ``k``
    (:attr:`~issm_emulator.physics.fe.P1Mesh.nodal_gradient_operator`). It is exact at the vertices and for
    linear fields, as P1 is. For a smooth field its error is of P1's order (the curvature term with the
    other sign); a field that varies over a few cells, it follows more closely than P1's chords do."""
    b = p1_interpolation(x, y, elements, px, py).tocoo()
    px, py, x, y = (np.asarray(a, float) for a in (px, py, x, y))
    g = P1Mesh(x, y, np.asarray(elements, np.int64)).nodal_gradient_operator
    nv = x.size
    wx = sp.csr_matrix((b.data * (px[b.row] - x[b.col]), (b.row, b.col)), shape=b.shape)
    wy = sp.csr_matrix((b.data * (py[b.row] - y[b.col]), (b.row, b.col)), shape=b.shape)
    m = (b.tocsr() + wx @ g[:nv] + wy @ g[nv:]).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


def mesh_record(x: Any, y: Any, elements: Any, back: str = "p1") -> dict[str, Any]:
    """A processing mesh as a checkpoint's manifest stores it: ``x``, ``y`` (m) and 0-based ``elements`` as
    lists, and its ``back`` rule (:data:`BACK_RULES`)."""
    if back not in BACK_RULES:
        raise ValueError(f"back: expected one of {', '.join(BACK_RULES)}, got {back!r}")
    return {"x": np.asarray(x, float).tolist(), "y": np.asarray(y, float).tolist(),
            "elements": np.asarray(elements, np.int64).tolist(), "back": back}


@dataclass
class ProcessingMesh:
    """A processing mesh ``(x, y, elements)`` and the transfers from and back to one source mesh (``back_rule``:
    the rule of ``to_source``, :data:`BACK_RULES`)."""

    x: np.ndarray
    y: np.ndarray
    elements: np.ndarray
    to_proc: sp.csr_matrix
    to_source: sp.csr_matrix
    dtype: torch.dtype = torch.float32
    back_rule: str = "p1"
    mesh: P1Mesh = field(init=False)
    graph: Any = field(init=False)
    _fit: Any = field(default=None, init=False, repr=False)  # (tie, eps, factorised normal matrix)

    def __post_init__(self) -> None:
        self.mesh = P1Mesh(self.x, self.y, self.elements)
        self.graph = mesh_graph((self.x, self.y, self.elements), dtype=self.dtype)
        self.edge_index = self.graph.edge_index.numpy()
        self.is_boundary = self.graph.is_boundary.numpy().astype(float)
        self.n_source = self.to_proc.shape[1]

    @classmethod
    def onto(cls, x: Any, y: Any, elements: Any, px: Any, py: Any, pelements: Any, *,
             dtype: torch.dtype = torch.float32, back: str = "p1") -> ProcessingMesh:
        """The transfers between the source mesh ``(x, y, elements)`` and the processing mesh ``(px, py,
        pelements)`` (both 0-based): P1 onto it, and ``back`` (:data:`BACK_RULES`) from it."""
        if back not in BACK_RULES:
            raise ValueError(f"back: expected one of {', '.join(BACK_RULES)}, got {back!r}")
        x, y, px, py = (np.asarray(a, float) for a in (x, y, px, py))
        e, pe = np.asarray(elements, np.int64), np.asarray(pelements, np.int64)
        to_source = (taylor_interpolation if back == "taylor" else p1_interpolation)(px, py, pe, x, y)
        return cls(px, py, pe, p1_interpolation(x, y, e, px, py), to_source, dtype, back)

    @property
    def nv(self) -> int:
        return int(self.x.size)

    def features(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Feature arrays of the source mesh (by feature name, SI) on the processing mesh."""
        out: dict[str, Any] = {}
        for name, value in arrays.items():
            a = value if isinstance(value, np.ndarray) else None
            out[name] = self.to_proc @ a.astype(float) if a is not None and a.ndim >= 1 \
                and a.shape[0] == self.n_source else value
        if "dirichlet_mask" in arrays:
            mask = (out["dirichlet_mask"] >= 0.5) & (self.is_boundary > 0.5)
            out["dirichlet_mask"] = mask.astype(float)
            if "velocity_dirichlet" in out:
                out["velocity_dirichlet"] = np.where(mask[:, None], out["velocity_dirichlet"], 0.0)
        if "is_boundary" in arrays:
            out["is_boundary"] = self.is_boundary
        if "is_front" in arrays and "ice_levelset" in out:
            out["is_front"] = front_vertices(self.edge_index, np.asarray(out["ice_levelset"], float)).astype(float)
        return out

    def forward(self, values: Any) -> np.ndarray:
        """Values at the source mesh's vertices (first axis; any trailing axes) at the processing mesh's."""
        v = np.asarray(values, float)
        return (self.to_proc @ v.reshape(v.shape[0], -1)).reshape((self.nv,) + v.shape[1:])

    def fit(self, values: Any, tie: float = 1e-3) -> np.ndarray:
        """Values at the processing mesh's vertices whose interpolation back (:meth:`back`) fits ``values``
        (source mesh, first axis) best: least squares, tied to the interpolated values (:meth:`forward`) with
        a weight of ``tie`` times the mean diagonal of the normal matrix, so that processing vertices the
        source mesh does not constrain stay defined. Training targets made this way teach a network the
        values that the runtime's interpolation back turns into the source velocity."""
        v = np.asarray(values, float)
        flat = v.reshape(v.shape[0], -1)
        key = float(tie)
        if self._fit is None or self._fit[0] != key:
            from scipy.sparse.linalg import factorized

            btb = (self.to_source.T @ self.to_source).tocsc()
            eps = key * float(np.mean(btb.diagonal()))
            self._fit = (key, eps, factorized(btb + eps * sp.identity(self.nv, format="csc")))
        _, eps, solve = self._fit
        rhs = self.to_source.T @ flat + eps * (self.to_proc @ flat)
        out = np.stack([solve(rhs[:, j]) for j in range(rhs.shape[1])], 1) if rhs.shape[1] else rhs
        return out.reshape((self.nv,) + v.shape[1:])

    def back(self, values: Any) -> np.ndarray:
        """Values at the processing mesh's vertices (first axis; any trailing axes) at the source mesh's."""
        v = np.asarray(values, float)
        return (self.to_source @ v.reshape(v.shape[0], -1)).reshape((self.n_source,) + v.shape[1:])


_CACHE: dict[tuple[str, str, str], ProcessingMesh] = {}
_CACHE_SIZE = 8


def _digest(*arrays: np.ndarray) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


def processing_for(x: Any, y: Any, elements: Any, processing: Any, *,
                   dtype: torch.dtype = torch.float32) -> ProcessingMesh | None:
    """The transfers of the mesh ``(x, y, elements)`` (0-based) to ``processing`` (an object with ``x``,
    ``y``, ``elements`` and optionally ``back``, or a :func:`mesh_record`; no ``back`` is ``"p1"``), or None
    where there is none or the mesh is that mesh. The last few are kept, keyed by content."""
    if processing is None:
        return None
    get = (lambda k, d=None: processing.get(k, d)) if isinstance(processing, dict) \
        else (lambda k, d=None: getattr(processing, k, d))
    px, py = np.asarray(get("x"), float), np.asarray(get("y"), float)
    pe = np.asarray(get("elements"), np.int64)
    back = str(get("back", None) or "p1")
    x, y, e = np.asarray(x, float), np.asarray(y, float), np.asarray(elements, np.int64)
    if x.shape == px.shape and e.shape == pe.shape and np.array_equal(e, pe) and np.allclose(x, px, rtol=0,
                                                                                            atol=1e-6) \
            and np.allclose(y, py, rtol=0, atol=1e-6):
        return None
    key = (_digest(x, y, e), _digest(px, py, pe), str(dtype), back)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        hit = _CACHE[key] = ProcessingMesh.onto(x, y, e, px, py, pe, dtype=dtype, back=back)
    return hit
