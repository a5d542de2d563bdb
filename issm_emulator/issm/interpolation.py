"""Mesh-to-mesh interpolation and profile intersection, as ISSM's compiled ``InterpFromMeshToMesh2d`` and
``MeshProfileIntersection`` (pyISSM reaches both only through ISSM's compiled wrappers, so they are ours).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["interp_from_mesh_to_mesh2d", "mesh_profile_intersection"]


# ours: pyISSM's InterpFromMeshToMesh2d (pyissm.tools.wrappers) is a compiled ISSM wrapper
def interp_from_mesh_to_mesh2d(index: Any, x: Any, y: Any, data: Any, xq: Any, yq: Any) -> np.ndarray:
    """Linear (barycentric) interpolation of nodal data, as ISSM's ``InterpFromMeshToMesh2d``.

    Parameters
    ----------
    index : (ne, 3) 1-based triangles of the source mesh (floats accepted, as stored in ``.arch`` files)
    x, y : (nv,) source vertex coordinates
    data : (nv,) or (nv, k) nodal values
    xq, yq : query point coordinates

    Returns
    -------
    (nq,) or (nq, k) values. Points outside the source mesh take the value at their orthogonal
    projection on the nearest boundary edge (ISSM's behaviour when no default value is given).
    """
    from matplotlib.tri import Triangulation

    tri0 = np.asarray(index, dtype=np.float64)
    if tri0.ndim != 2 or tri0.shape[1] != 3:
        raise ValueError(f"interp_from_mesh_to_mesh2d: index must be (ne, 3), got shape {tri0.shape}")
    tri0 = np.rint(tri0).astype(np.int64) - 1
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    d = np.asarray(data, dtype=np.float64)
    squeeze = d.ndim == 1
    d2 = d.reshape(d.shape[0], -1)
    if d2.shape[0] != x.size:
        raise ValueError(f"interp_from_mesh_to_mesh2d: data has {d2.shape[0]} rows, mesh has {x.size} vertices")
    if tri0.min() < 0 or tri0.max() >= x.size:
        raise ValueError("interp_from_mesh_to_mesh2d: index must hold 1-based vertex numbers")
    xq = np.asarray(xq, dtype=np.float64).ravel()
    yq = np.asarray(yq, dtype=np.float64).ravel()

    tr = Triangulation(x, y, tri0)
    found = np.asarray(tr.get_trifinder()(xq, yq), dtype=np.int64)
    out = np.empty((xq.size, d2.shape[1]))

    ins = found >= 0
    if ins.any():
        t = tri0[found[ins]]
        x1, x2, x3 = x[t[:, 0]], x[t[:, 1]], x[t[:, 2]]
        y1, y2, y3 = y[t[:, 0]], y[t[:, 1]], y[t[:, 2]]
        det = (x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1)
        l2 = ((xq[ins] - x1) * (y3 - y1) - (x3 - x1) * (yq[ins] - y1)) / det
        l3 = ((x2 - x1) * (yq[ins] - y1) - (xq[ins] - x1) * (y2 - y1)) / det
        l1 = 1.0 - l2 - l3
        out[ins] = l1[:, None] * d2[t[:, 0]] + l2[:, None] * d2[t[:, 1]] + l3[:, None] * d2[t[:, 2]]

    outside = np.flatnonzero(~ins)
    if outside.size:
        # boundary edges: edges used by exactly one triangle
        e = np.sort(np.vstack([tri0[:, [0, 1]], tri0[:, [1, 2]], tri0[:, [2, 0]]]), axis=1)
        uniq, counts = np.unique(e, axis=0, return_counts=True)
        be = uniq[counts == 1]
        ax, ay = x[be[:, 0]], y[be[:, 0]]
        ex, ey = x[be[:, 1]] - ax, y[be[:, 1]] - ay
        len2 = ex * ex + ey * ey
        chunk = max(1, 2_000_000 // max(1, be.shape[0]))
        for s in range(0, outside.size, chunk):
            q = outside[s:s + chunk]
            px = xq[q][:, None] - ax[None, :]
            py = yq[q][:, None] - ay[None, :]
            s_ = np.clip((px * ex + py * ey) / len2, 0.0, 1.0)
            dist2 = (px - s_ * ex) ** 2 + (py - s_ * ey) ** 2
            k = np.argmin(dist2, axis=1)
            w = s_[np.arange(q.size), k]
            out[q] = (1.0 - w)[:, None] * d2[be[k, 0]] + w[:, None] * d2[be[k, 1]]
    return out[:, 0] if squeeze else out


# ----------------------------------------------------------------------------------------------------
# flux gates
# ----------------------------------------------------------------------------------------------------
# ours: pyISSM's MeshProfileIntersection (pyissm.tools.wrappers) is a compiled ISSM wrapper
def mesh_profile_intersection(elements: np.ndarray, x: np.ndarray, y: np.ndarray, contour: Any,
                              eps: float = 1e-10) -> np.ndarray:
    """Cut a polyline at element edges (ISSM's ``MeshProfileIntersection``).

    Each polyline segment ``P(t) = p + t d`` (0 <= t <= 1) is clipped against every triangle whose bounding
    box it meets: inside edge ``i`` of a counter-clockwise triangle means ``cross(e_i, P(t) - a_i) >= 0``,
    a half-line in ``t``; the piece in the triangle is the intersection of the three.

    Parameters
    ----------
    elements : (ne, 3) 1-based counter-clockwise triangles (ISSM's ``md.mesh.elements``)
    x, y : (nv,) vertex coordinates
    contour : dict with ``x``, ``y`` (polyline points, in order; e.g. one contour of
        :func:`~issm_emulator.issm.formats.read_exp`)
    eps : relative length below which a piece is dropped

    Returns
    -------
    (npieces, 5) float array ``[x1, y1, x2, y2, element]`` (element 1-based, as ISSM), pieces in polyline
    order and, within a polyline segment, ordered along it. A piece lying on an edge shared by two elements
    is kept once (for the lower element number).
    """
    el0 = np.asarray(elements, dtype=np.int64) - 1
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ax, ay = x[el0], y[el0]                   # (ne, 3)
    bx, by = np.roll(ax, -1, axis=1), np.roll(ay, -1, axis=1)
    ex, ey = bx - ax, by - ay                 # edge vectors (counter-clockwise)
    elen = np.hypot(ex, ey)
    xmin, xmax, ymin, ymax = ax.min(axis=1), ax.max(axis=1), ay.min(axis=1), ay.max(axis=1)
    slack = eps * elen.max(axis=1)
    px = np.asarray(contour["x"], float).ravel()
    py = np.asarray(contour["y"], float).ravel()
    rows = []
    for k in range(px.size - 1):  # polyline segments (a gate has few); the elements are vectorised
        p = np.array([px[k], py[k]])
        d = np.array([px[k + 1] - px[k], py[k + 1] - py[k]])
        length = float(np.hypot(*d))
        if length == 0:
            continue
        near = np.flatnonzero((xmax + slack >= min(px[k], px[k + 1])) & (xmin - slack <= max(px[k], px[k + 1]))
                              & (ymax + slack >= min(py[k], py[k + 1])) & (ymin - slack <= max(py[k], py[k + 1])))
        if near.size == 0:
            continue
        # f0 + t f1 >= 0 inside edge i
        f0 = ex[near] * (p[1] - ay[near]) - ey[near] * (p[0] - ax[near])
        f1 = ex[near] * d[1] - ey[near] * d[0]
        tol = eps * elen[near] * length
        parallel = np.abs(f1) <= tol
        ok = ~(parallel & (f0 < -tol)).any(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -f0 / f1
        t_lo = np.max(np.where(~parallel & (f1 > 0), t, 0.0), axis=1, initial=0.0)
        t_hi = np.min(np.where(~parallel & (f1 < 0), t, 1.0), axis=1, initial=1.0)
        keep = ok & (t_hi - t_lo > eps)
        idx = near[keep]
        if idx.size == 0:
            continue
        t0, t1 = t_lo[keep], t_hi[keep]
        order = np.lexsort((idx, t0))  # along the segment, then by element number
        idx, t0, t1 = idx[order], t0[order], t1[order]
        # a piece on a shared edge appears for both neighbours: keep the first (lower) element
        key = np.round(np.column_stack([t0, t1]) / eps).astype(np.int64)
        _, first = np.unique(key, axis=0, return_index=True)
        sel = np.sort(first)
        idx, t0, t1 = idx[sel], t0[sel], t1[sel]
        rows.append(np.column_stack([p[0] + t0 * d[0], p[1] + t0 * d[1], p[0] + t1 * d[0], p[1] + t1 * d[1],
                                     idx + 1.0]))
    return np.vstack(rows) if rows else np.zeros((0, 5))
