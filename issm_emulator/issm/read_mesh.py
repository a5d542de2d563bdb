"""Read ``md.mesh`` (a 2-D triangle mesh) into a :class:`~issm_emulator.state.Mesh`.

ISSM's 1-based ``elements`` and ``segments`` become 0-based; triangles must be counter-clockwise, of
non-zero area, and use every vertex. ``vertexonboundary`` is computed from the triangles when unset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.state import Mesh, frozen_array

from .fields import Ctx, err, get, integer, is_unset, numeric, sized

__all__ = ["read_mesh", "read_scale_factor", "signed_area"]


def _count(md: Any, path: str, fallback: int) -> int:
    """``numberofvertices`` / ``numberofelements`` if set (> 0), else the length of the arrays."""
    value = get(md, path, None)
    if is_unset(value) or (np.ndim(value) == 0 and numeric(path, value) == 0):
        return fallback
    n = integer(path, value, ge=1)
    return n


def read_mesh(md: Any, yts: float) -> tuple[Mesh, Ctx]:
    mesh = get(md, "mesh")
    if "3d" in type(mesh).__name__.lower():
        raise err("mesh", "a 2-D triangle mesh (mesh2d)", type(mesh).__name__)
    x_raw = numeric("mesh.x", get(md, "mesh.x"))
    if x_raw.ndim == 0 or is_unset(x_raw):
        raise err("mesh.x", "vertex x coordinates (m)", "an unset field (missing, None or NaN)")
    nv = _count(md, "mesh.numberofvertices", x_raw.size)
    el = numeric("mesh.elements", get(md, "mesh.elements"))
    if el.ndim != 2 or el.shape[1] != 3:
        raise err("mesh.elements", "an array of shape (numberofelements, 3) of vertex numbers",
                  f"an array of shape {el.shape}")
    ne = _count(md, "mesh.numberofelements", el.shape[0])
    ctx = Ctx(nv=nv, ne=ne, yts=yts)
    x = sized("mesh.x", x_raw, ctx, "vertex")
    y = sized("mesh.y", get(md, "mesh.y"), ctx, "vertex")
    if el.shape[0] != ne:
        raise err("mesh.elements", f"{ne} rows (one per element, numberofelements = {ne})",
                  f"{el.shape[0]}")
    elements = _element_indices("mesh.elements", el, nv)
    _check_orientation(x, y, elements)
    used = np.zeros(nv, dtype=bool)
    used[elements.ravel()] = True
    if not used.all():
        raise err("mesh.elements", "every vertex to belong to at least one element",
                  f"{int((~used).sum())} orphan vertex/vertices, first is vertex {int(np.argmin(used)) + 1}")
    segments = _read_segments(md, nv, ne)
    vob = get(md, "mesh.vertexonboundary", None)
    if is_unset(vob):
        vertexonboundary = _boundary_vertices(elements, nv)
    else:
        vertexonboundary = sized("mesh.vertexonboundary", vob, ctx, "vertex", ge=0, le=1) != 0
    return Mesh(x=x, y=y, elements=frozen_array(elements, np.int64),
                vertexonboundary=frozen_array(vertexonboundary, bool),
                segments=None if segments is None else frozen_array(segments, np.int64)), ctx


def _element_indices(path: str, arr: np.ndarray, nv: int) -> np.ndarray:
    """1-based ISSM vertex numbers -> 0-based int64, with every check a user needs."""
    if not np.isfinite(arr).all():
        raise err(path, "finite vertex numbers", "NaN/inf")
    if (arr != np.round(arr)).any():
        raise err(path, "integer vertex numbers", f"{arr[arr != np.round(arr)][0]:g}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 1:
        raise err(path, "1-based vertex numbers (ISSM convention) between 1 and numberofvertices "
                  f"= {nv}", f"a minimum of {lo} (0-based indices?)")
    if hi > nv:
        raise err(path, f"vertex numbers between 1 and numberofvertices = {nv}", f"a maximum of {hi}")
    return arr.astype(np.int64) - 1


def signed_area(x: np.ndarray, y: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """0.5 * ((x2-x1)(y3-y1) - (x3-x1)(y2-y1)): positive for counter-clockwise triangles."""
    x1, x2, x3 = x[tri[:, 0]], x[tri[:, 1]], x[tri[:, 2]]
    y1, y2, y3 = y[tri[:, 0]], y[tri[:, 1]], y[tri[:, 2]]
    return 0.5 * ((x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1))


def _check_orientation(x: np.ndarray, y: np.ndarray, tri: np.ndarray) -> None:
    area = signed_area(x, y, tri)
    scale = max(float(np.ptp(x)), float(np.ptp(y)), 1.0) ** 2
    tiny = np.abs(area) <= 1e-12 * scale
    if tiny.any():
        k = int(np.argmax(tiny))
        raise err("mesh.elements", "triangles of non-zero area",
                  f"zero area for element {k + 1} (vertices {', '.join(str(v + 1) for v in tri[k])})")
    if (area < 0).any():
        k = int(np.argmax(area < 0))
        raise err("mesh.elements", "counter-clockwise triangles (positive signed area)",
                  f"{int((area < 0).sum())} clockwise (inverted) element(s), first is element {k + 1}")


def _read_segments(md: Any, nv: int, ne: int) -> np.ndarray | None:
    seg = get(md, "mesh.segments", None)
    if is_unset(seg):
        return None
    arr = numeric("mesh.segments", seg)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise err("mesh.segments", "an array of shape (numberofsegments, 3): [vertex, vertex, element]",
                  f"an array of shape {arr.shape}")
    verts = _element_indices("mesh.segments", arr[:, :2], nv)
    owner = arr[:, 2]
    bad = ~np.isfinite(owner) | (owner != np.round(owner)) | (owner < 1) | (owner > ne)
    if bad.any():
        raise err("mesh.segments", f"1-based element numbers between 1 and {ne} in the third column",
                  f"values from {np.nanmin(owner):g} to {np.nanmax(owner):g}")
    return np.column_stack([verts, owner.astype(np.int64) - 1])


def _boundary_vertices(tri: np.ndarray, nv: int) -> np.ndarray:
    """Vertices on edges that belong to a single triangle."""
    edges = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    flag = np.zeros(nv, dtype=bool)
    flag[uniq[counts == 1].ravel()] = True
    return flag


def read_scale_factor(md: Any, ctx: Ctx) -> np.ndarray | None:
    """``md.mesh.scale_factor`` (per vertex, used by ISSM's ``*Scaled`` outputs), or None when unset."""
    value = get(md, "mesh.scale_factor", None)
    if value is None:
        return None
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size == 0 or (arr.size == 1 and np.isnan(arr[0])):
        return None
    if arr.size == 1:
        arr = np.full(ctx.nv, arr[0])
    if arr.size != ctx.nv:
        raise ModelInputError("md.mesh.scale_factor", f"{ctx.nv} values (one per vertex)", f"{arr.size}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ModelInputError("md.mesh.scale_factor", "finite positive values", "NaN, inf or <= 0")
    return frozen_array(arr)
