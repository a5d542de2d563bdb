"""Pure-Python replacements of ISSM's compiled set-up helpers, acting on a pyISSM ``Model``.

pyISSM's own ``triangle``, ``round_mesh``, ``set_mask`` with ``.exp`` files, the boundary-condition
helpers with a front file and ``InterpFromMeshToMesh2d`` all need ISSM's compiled wrappers. The functions
here reproduce them exactly as ISSM defines them (meshes node for node, masks and boundary conditions
vertex for vertex). ``md.mesh.elements`` and ``md.mesh.segments`` are **1-based**, as in ISSM.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelInputError
from .formats import read_exp

__all__ = [
    "boundary_segments",
    "contour_points_inside",
    "flag_elements",
    "interp_from_mesh_to_mesh2d",
    "mesh_profile_intersection",
    "paterson",
    "round_mesh",
    "set_ice_sheet_bc",
    "set_ice_shelf_bc",
    "set_marine_ice_sheet_bc",
    "set_mask",
    "triangle_mesh",
]

Contours = Any  # path, contour dict, or list of contour dicts (see formats.read_exp)


# ----------------------------------------------------------------------------------------------------
# outlines
# ----------------------------------------------------------------------------------------------------
def _load_contours(outline: Contours, what: str) -> tuple[list[dict], bool]:
    """Contours as a list of dicts, and whether they came from a file (ISSM's drop-last rule)."""
    if isinstance(outline, (str, os.PathLike)):
        if not os.path.isfile(outline):
            raise FileNotFoundError(f"{what}: outline file {os.fspath(outline)!r} not found")
        return read_exp(outline), True
    if isinstance(outline, dict):
        return [outline], False
    if isinstance(outline, Sequence) and all(isinstance(c, dict) for c in outline):
        return list(outline), False
    raise TypeError(f"{what}: expected an .exp path, a contour dict with 'x' and 'y', or a list of them; "
                    f"got {type(outline).__name__}")


def _contour_xy(c: dict) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(c["x"], dtype=np.float64).ravel()
    y = np.asarray(c["y"], dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"contour {c.get('name', '')!r}: x and y differ in length")
    return x, y


def _polygon_points(c: dict, from_file: bool) -> np.ndarray:
    """Distinct polygon points passed to Triangle.

    ISSM always drops the last point of a contour read from an ``.exp`` file (the closing point, even when
    rounding made it differ slightly from the first). For contours given in memory, the last point is
    dropped only when it repeats the first one.
    """
    x, y = _contour_xy(c)
    if from_file or (x.size > 1 and x[0] == x[-1] and y[0] == y[-1]):
        x, y = x[:-1], y[:-1]
    if x.size < 3:
        raise ValueError(f"contour {c.get('name', '')!r}: a domain outline needs at least 3 distinct points")
    return np.column_stack([x, y])


def _point_inside_polygon(pts: np.ndarray) -> np.ndarray:
    """A point strictly inside a simple polygon (centroid of one triangle of its triangulation)."""
    import triangle

    n = len(pts)
    seg = np.column_stack([np.arange(n), (np.arange(n) + 1) % n])
    t = triangle.triangulate({"vertices": pts, "segments": seg}, "pQz")
    return t["vertices"][t["triangles"][0]].mean(axis=0)


# ----------------------------------------------------------------------------------------------------
# meshing
# ----------------------------------------------------------------------------------------------------
def boundary_segments(elements0: np.ndarray, segments0: np.ndarray) -> np.ndarray:
    """Attach the owning element to boundary segments and orient them outward.

    Parameters
    ----------
    elements0 : (ne, 3) int, 0-based counter-clockwise triangles
    segments0 : (ns, 2) int, 0-based boundary segments (any orientation)

    Returns
    -------
    (ns, 3) int, 0-based ``[v1, v2, element]`` with ``v1 -> v2`` following the element's
    counter-clockwise order, so that ``n = (y2 - y1, x1 - x2)`` points out of the domain.
    """
    ne = elements0.shape[0]
    a = elements0[:, [0, 1, 2]].ravel()
    b = elements0[:, [1, 2, 0]].ravel()
    owner = np.repeat(np.arange(ne), 3)
    nv = int(max(elements0.max(), segments0.max())) + 1
    key = np.minimum(a, b).astype(np.int64) * nv + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    s1, s2 = segments0[:, 0], segments0[:, 1]
    qkey = np.minimum(s1, s2).astype(np.int64) * nv + np.maximum(s1, s2)
    pos = np.searchsorted(skey, qkey)
    if np.any(pos >= skey.size) or np.any(skey[np.minimum(pos, skey.size - 1)] != qkey):
        raise ValueError("boundary_segments: a segment is not an edge of any element")
    hit = order[pos]
    return np.column_stack([a[hit], b[hit], owner[hit]]).astype(np.int64)


def _fill_mesh2d(md: Any, x: np.ndarray, y: np.ndarray, elements0: np.ndarray, segments0: np.ndarray,
                 segmentmarkers: np.ndarray) -> Any:
    from pyissm.model.classes.mesh import mesh2d

    # remove orphan vertices (ISSM's triangle.m does the same; never happens for the outlines used here)
    used = np.zeros(x.size, dtype=bool)
    used[elements0.ravel()] = True
    if not used.all():
        warnings.warn(f"triangle_mesh: removing {int((~used).sum())} orphan vertices", stacklevel=3)
        newid = np.cumsum(used) - 1
        x, y = x[used], y[used]
        elements0 = newid[elements0]
        segments0 = newid[segments0]
    segs = boundary_segments(elements0, segments0)
    mesh = mesh2d()
    mesh.x = np.asarray(x, dtype=np.float64).copy()
    mesh.y = np.asarray(y, dtype=np.float64).copy()
    mesh.elements = (elements0 + 1).astype(np.int64)
    mesh.numberofvertices = int(mesh.x.size)
    mesh.numberofelements = int(elements0.shape[0])
    mesh.segments = (segs + 1).astype(np.int64)
    mesh.segmentmarkers = np.asarray(segmentmarkers, dtype=np.int64).ravel()
    vob = np.zeros(mesh.numberofvertices, dtype=np.int64)
    vob[segs[:, :2].ravel()] = 1
    mesh.vertexonboundary = vob
    md.mesh = mesh
    return md


def _triangulate(points: np.ndarray, segments: np.ndarray, holes: np.ndarray | None, resolution: float):
    import triangle

    if not np.isfinite(resolution) or resolution <= 0:
        raise ValueError(f"triangle_mesh: resolution must be a positive length in m, got {resolution!r}")
    opts = "pQzDq30ia" + ("%f" % (float(resolution) ** 2))  # ISSM's exact option string
    tri_in: dict[str, Any] = {"vertices": points, "segments": segments,
                              "segment_markers": np.zeros((segments.shape[0], 1), dtype=np.int32)}
    if holes is not None and len(holes):
        tri_in["holes"] = holes
    return triangle.triangulate(tri_in, opts)


def triangle_mesh(md: Any, outline: Contours, resolution: float) -> Any:
    """Mesh a domain as ISSM's ``triangle(md, outline, resolution)`` does.

    The first contour is the domain, further contours are holes. Triangle is called on the contour
    points (closing point dropped) joined by closed segments, with ISSM's options
    ``'pQzDq30ia%f' % resolution**2``; this reproduces ISSM's mesh exactly, node order included.

    Parameters
    ----------
    md : pyissm Model
        ``md.mesh`` is replaced by a filled ``mesh2d``.
    outline : path, dict or list of dict
        ``.exp`` file or contours (dicts with ``x``, ``y``) in m.
    resolution : float
        Target edge length in m (maximum triangle area ``resolution**2``).

    Returns
    -------
    md, with ``mesh.x``, ``y``, ``elements`` (1-based), ``numberofvertices/elements``, ``segments``
    (1-based ``[v1, v2, element]``, outward oriented), ``segmentmarkers`` and ``vertexonboundary``.
    """
    contours, from_file = _load_contours(outline, "triangle_mesh")
    if not contours:
        raise ValueError("triangle_mesh: the outline holds no contour")
    pts_list, seg_list, holes = [], [], []
    offset = 0
    for k, c in enumerate(contours):
        p = _polygon_points(c, from_file)
        n = len(p)
        idx = np.arange(n)
        seg_list.append(np.column_stack([idx, (idx + 1) % n]) + offset)
        pts_list.append(p)
        offset += n
        if k > 0:
            holes.append(_point_inside_polygon(p))
    t = _triangulate(np.vstack(pts_list), np.vstack(seg_list),
                     np.array(holes) if holes else None, resolution)
    markers = t.get("segment_markers", np.ones((len(t["segments"]), 1)))
    return _fill_mesh2d(md, t["vertices"][:, 0], t["vertices"][:, 1], np.asarray(t["triangles"], np.int64),
                        np.asarray(t["segments"], np.int64), markers)


def _round_significant(v: np.ndarray, digits: int) -> np.ndarray:
    """ISSM's ``roundsigfig``: ``d = ceil(log10|v|)``, ``round(v / 10**d, digits) * 10**d``; 0 stays 0."""
    v = np.asarray(v, dtype=np.float64)
    out = np.zeros_like(v)
    nz = v != 0
    d = np.ceil(np.log10(np.abs(v[nz])))
    out[nz] = np.round(v[nz] / 10.0 ** d, digits) * 10.0 ** d
    return out


def round_mesh(md: Any, radius: float, resolution: float) -> Any:
    """Circular mesh as ISSM's ``roundmesh(md, radius, resolution)``.

    ``floor(2 pi R / res) + 1`` points on the circle (``linspace(0, 2 pi)``), rounded to 12 significant
    digits and passed through the ``%10.10f`` text of the temporary ``.exp`` file ISSM writes, meshed by
    :func:`triangle_mesh` (closing point dropped); then the vertex closest to the origin is moved to
    exactly (0, 0). For R = 1e6 and res = 5e4 this gives ISSM's 1063-vertex mesh of test 423.
    """
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"round_mesh: radius must be positive (m), got {radius!r}")
    npts = int(np.floor(2.0 * np.pi * radius / resolution) + 1)
    theta = np.linspace(0.0, 2.0 * np.pi, npts)
    x = _round_significant(radius * np.cos(theta), 12)
    y = _round_significant(radius * np.sin(theta), 12)
    # the .exp round trip through "%10.10f"
    x = np.array([float(f"{v:10.10f}") for v in x])
    y = np.array([float(f"{v:10.10f}") for v in y])
    pts = np.column_stack([x[:-1], y[:-1]])
    n = len(pts)
    seg = np.column_stack([np.arange(n), (np.arange(n) + 1) % n])
    t = _triangulate(pts, seg, None, resolution)
    markers = t.get("segment_markers", np.ones((len(t["segments"]), 1)))
    md = _fill_mesh2d(md, t["vertices"][:, 0], t["vertices"][:, 1], np.asarray(t["triangles"], np.int64),
                      np.asarray(t["segments"], np.int64), markers)
    k = int(np.argmin(np.sqrt(md.mesh.x ** 2 + md.mesh.y ** 2)))
    md.mesh.x[k] = 0.0
    md.mesh.y[k] = 0.0
    return md


# ----------------------------------------------------------------------------------------------------
# point in polygon, masks
# ----------------------------------------------------------------------------------------------------
def _pnpoly(xp: np.ndarray, yp: np.ndarray, x: np.ndarray, y: np.ndarray, edgevalue: int) -> np.ndarray:
    """ISSM's ``pnpoly`` for one contour, vectorised over the query points (loop over polygon edges).

    With ``edgevalue`` != 2 a point lying exactly on an edge (``dot == |Pi-Pj| |X-Pj|`` and
    ``|X-Pj| <= |Pi-Pj|``, in floating point as ISSM computes it) gets ``edgevalue``; the others get the
    crossing-number parity.
    """
    npol = xp.size
    result = np.zeros(x.shape, dtype=np.int8)
    decided = np.zeros(x.shape, dtype=bool)
    if edgevalue != 2:
        for i in range(npol):
            j = i - 1 if i > 0 else npol - 1
            n1 = (yp[i] - yp[j]) ** 2 + (xp[i] - xp[j]) ** 2
            n2 = (y - yp[j]) ** 2 + (x - xp[j]) ** 2
            normp = np.sqrt(n1 * n2)
            scalar = (yp[i] - yp[j]) * (y - yp[j]) + (xp[i] - xp[j]) * (x - xp[j])
            on = (scalar == normp) & (n2 <= n1) & ~decided
            result[on] = edgevalue
            decided |= on
    c = np.zeros(x.shape, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(npol):
            j = i - 1 if i > 0 else npol - 1
            if yp[i] == yp[j]:
                continue  # a horizontal edge never satisfies the straddle test
            straddle = ((yp[i] <= y) & (y < yp[j])) | ((yp[j] <= y) & (y < yp[i]))
            cross = x < (xp[j] - xp[i]) * (y - yp[i]) / (yp[j] - yp[i]) + xp[i]
            c ^= straddle & cross
    result[~decided] = c[~decided].astype(np.int8)
    return result


def contour_points_inside(contours: Contours, x: np.ndarray, y: np.ndarray, edgevalue: int = 1) -> np.ndarray:
    """Which points lie inside any contour (ISSM's ``ContourToNodes``).

    Parameters
    ----------
    contours : path, dict or list of dict
    x, y : arrays of point coordinates (m)
    edgevalue : {0, 1, 2}
        1: points exactly on an edge are inside (``setmask``); 0: they are outside; 2: no on-edge test,
        the crossing number alone decides (the ice-front test of the boundary-condition helpers).

    Returns
    -------
    bool array of the points' shape.
    """
    cs, _ = _load_contours(contours, "contour_points_inside")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    inside = np.zeros(x.shape, dtype=bool)
    for c in cs:
        xp, yp = _contour_xy(c)
        inside |= _pnpoly(xp, yp, x, y, edgevalue) > 0
    return inside


def _mesh_arrays(md: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mesh = md.mesh
    x = np.asarray(mesh.x, dtype=np.float64).ravel()
    y = np.asarray(mesh.y, dtype=np.float64).ravel()
    el = np.asarray(mesh.elements)
    if el.ndim != 2 or el.shape[1] != 3 or x.size == 0 or x.shape != y.shape:
        raise ModelInputError("md.mesh", "a filled 2-D triangle mesh (x, y and 1-based (ne, 3) elements); "
                              "call triangle_mesh first", f"elements of shape {getattr(el, 'shape', None)}")
    el0 = el.astype(np.int64) - 1
    if el0.min() < 0 or el0.max() >= x.size:
        raise ModelInputError("md.mesh.elements", f"1-based vertex numbers in 1..{x.size}",
                              f"values in {el0.min() + 1}..{el0.max() + 1}")
    return x, y, el0


def flag_elements(md: Any, region: Any) -> np.ndarray:
    """Elements in a region, as ISSM's ``FlagElements``.

    Parameters
    ----------
    region : 'all', '' / None, an ``.exp`` path or contours, or a numeric array of length
        ``numberofelements`` (used directly as flags).

    Returns
    -------
    (ne,) bool: for an outline, True where all three vertices are inside or on a contour (edge value 1).
    """
    x, y, el0 = _mesh_arrays(md)
    ne = el0.shape[0]
    if region is None or (isinstance(region, str) and region == ""):
        return np.zeros(ne, dtype=bool)
    if isinstance(region, str) and region == "all":
        return np.ones(ne, dtype=bool)
    if isinstance(region, (str, os.PathLike, dict)) or (
            isinstance(region, (list, tuple)) and region and isinstance(region[0], dict)):
        inside = contour_points_inside(region, x, y, edgevalue=1)
        return inside[el0].all(axis=1)
    arr = np.asarray(region)
    if arr.ndim >= 1 and arr.size == ne and np.issubdtype(arr.dtype, np.number) | (arr.dtype == bool):
        return arr.ravel().astype(bool)
    raise ModelInputError("region", f"'all', '', an .exp path/contours or an array of {ne} element flags",
                          f"{type(region).__name__} of size {getattr(arr, 'size', '?')}")


def set_mask(md: Any, floating: Any, grounded: Any) -> Any:
    """ISSM's ``setmask(md, floating, grounded)``.

    floating elements = in(floating) and not in(grounded); a vertex is grounded when it belongs to at
    least one grounded element. Sets ``md.mask.ocean_levelset`` to +1 (grounded) / -1 (floating) and
    ``md.mask.ice_levelset`` to -1 everywhere.
    """
    x, _, el0 = _mesh_arrays(md)
    fl = flag_elements(md, floating) & ~flag_elements(md, grounded)
    grounded_v = np.zeros(x.size, dtype=bool)
    grounded_v[el0[~fl].ravel()] = True
    md.mask.ocean_levelset = np.where(grounded_v, 1.0, -1.0)
    md.mask.ice_levelset = -np.ones(x.size)
    return md


# ----------------------------------------------------------------------------------------------------
# boundary conditions
# ----------------------------------------------------------------------------------------------------
def _nv_array(value: Any, nv: int) -> np.ndarray | None:
    if isinstance(value, np.ndarray) and value.size == nv and value.ndim <= 2:
        return value.astype(np.float64).ravel()
    return None


def _all_nan(value: Any) -> bool:
    arr = np.asarray(value, dtype=np.float64)
    return bool(np.all(np.isnan(arr)))


def _init_forcings(md: Any, nv: int) -> None:
    """Unset (NaN) SMB and basal melt rates become 0, as ISSM's smb/basalforcings ``initialize``."""
    if hasattr(md.smb, "mass_balance") and _all_nan(md.smb.mass_balance):
        md.smb.mass_balance = np.zeros(nv)
    for name in ("groundedice_melting_rate", "floatingice_melting_rate"):
        if hasattr(md.basalforcings, name) and _all_nan(getattr(md.basalforcings, name)):
            setattr(md.basalforcings, name, np.zeros(nv))


def _apply_dirichlet(md: Any, front: np.ndarray) -> None:
    """Mark the ice front and place ISSM's Dirichlet set.

    ``ice_levelset`` = 0 on ``front`` vertices; both end vertices of every boundary segment that is not
    entirely on the front get spcvx = spcvy = spcvz (= 0, or the observed velocities when
    ``md.inversion.vx_obs/vy_obs`` are set on the vertices).
    """
    x, _, _ = _mesh_arrays(md)
    nv = x.size
    ice = np.asarray(md.mask.ice_levelset, dtype=np.float64).ravel()
    if ice.size != nv or np.any(np.isnan(ice)):
        raise ModelInputError("md.mask.ice_levelset", f"{nv} values without NaN (call set_mask first)",
                              f"{ice.size} values")
    ice = ice.copy()
    ice[front] = 0.0
    md.mask.ice_levelset = ice
    seg = np.asarray(md.mesh.segments, dtype=np.int64)
    if seg.ndim != 2 or seg.shape[1] < 2:
        raise ModelInputError("md.mesh.segments", "(ns, 3) 1-based boundary segments", f"shape {seg.shape}")
    seg0 = seg[:, :2] - 1
    on_front = np.all(ice[seg0] == 0, axis=1)
    dirichlet = np.unique(seg0[~on_front].ravel())

    for name in ("spcvx", "spcvy", "spcvz"):
        setattr(md.stressbalance, name, np.full(nv, np.nan))
    md.stressbalance.referential = np.full((nv, 6), np.nan)
    md.stressbalance.loadingforce = np.zeros((nv, 3))
    vx_obs = _nv_array(getattr(md.inversion, "vx_obs", np.nan), nv)
    vy_obs = _nv_array(getattr(md.inversion, "vy_obs", np.nan), nv)
    if vx_obs is not None and vy_obs is not None:
        md.stressbalance.spcvx[dirichlet] = vx_obs[dirichlet]
        md.stressbalance.spcvy[dirichlet] = vy_obs[dirichlet]
    else:
        md.stressbalance.spcvx[dirichlet] = 0.0
        md.stressbalance.spcvy[dirichlet] = 0.0
    md.stressbalance.spcvz[dirichlet] = 0.0
    md.masstransport.spcthickness = np.full(nv, np.nan)
    _init_forcings(md, nv)
    temp = _nv_array(getattr(md.initialization, "temperature", np.nan), nv)
    if temp is not None:
        md.thermal.spctemperature = np.full(nv, np.nan)


def _front_from_file(md: Any, front: Contours) -> np.ndarray:
    x, y, _ = _mesh_arrays(md)
    onb = np.asarray(md.mesh.vertexonboundary).ravel().astype(bool)
    return onb & contour_points_inside(front, x, y, edgevalue=2)


def set_ice_shelf_bc(md: Any, front: Contours | None = None) -> Any:
    """ISSM's ``SetIceShelfBC(md[, front.exp])``.

    Ice-front vertices: boundary vertices inside ``front`` (crossing-number test only, edge value 2); none
    without a front file, so every boundary vertex is then Dirichlet. See :func:`_apply_dirichlet` for the
    Dirichlet rule; unset SMB and basal melt rates are set to 0 and ``spcthickness`` to NaN.
    """
    x, _, _ = _mesh_arrays(md)
    fr = np.zeros(x.size, dtype=bool) if front is None else _front_from_file(md, front)
    _apply_dirichlet(md, fr)
    if _all_nan(getattr(md.basalforcings, "geothermalflux", np.nan)) and \
            _nv_array(getattr(md.initialization, "temperature", np.nan), x.size) is not None:
        md.basalforcings.geothermalflux = np.zeros(x.size)
    return md


def set_marine_ice_sheet_bc(md: Any, front: Contours | None = None) -> Any:
    """ISSM's ``SetMarineIceSheetBC(md[, front.exp])``.

    With a front file, as :func:`set_ice_shelf_bc`. Without one, the front is guessed: boundary vertices
    of elements having at least one vertex with ``ocean_levelset < 0``. Also sets
    ``hydrology.spcwatercolumn`` (boundary vertices [1, 0]) and, when unset, the geothermal flux
    (50 mW/m^2 on grounded vertices, 0 elsewhere).
    """
    x, _, el0 = _mesh_arrays(md)
    nv = x.size
    onb = np.asarray(md.mesh.vertexonboundary).ravel().astype(bool)
    if front is None:
        ocean = np.asarray(md.mask.ocean_levelset, dtype=np.float64).ravel()
        if ocean.size != nv:
            raise ModelInputError("md.mask.ocean_levelset", f"{nv} values (call set_mask first)",
                                  f"{ocean.size} values")
        touches = (ocean[el0] < 0).any(axis=1)
        on_floating = np.zeros(nv, dtype=bool)
        on_floating[el0[touches].ravel()] = True
        fr = onb & on_floating
    else:
        fr = _front_from_file(md, front)
    if not np.any(onb & ~fr):
        warnings.warn("set_marine_ice_sheet_bc: ice front all around the domain, no Dirichlet condition; "
                      "add one to md.stressbalance.spcvx/spcvy", stacklevel=2)
    _apply_dirichlet(md, fr)
    wc = np.zeros((nv, 2))
    wc[onb, 0] = 1.0
    md.hydrology.spcwatercolumn = wc
    if _all_nan(getattr(md.basalforcings, "geothermalflux", np.nan)):
        ocean = np.asarray(md.mask.ocean_levelset, dtype=np.float64).ravel()
        md.basalforcings.geothermalflux = np.where(ocean > 0, 50e-3, 0.0)
    return md


def set_ice_sheet_bc(md: Any) -> Any:
    """ISSM's ``SetIceSheetBC(md)``: every boundary vertex Dirichlet (0, or the observed velocities)."""
    x, _, _ = _mesh_arrays(md)
    _apply_dirichlet(md, np.zeros(x.size, dtype=bool))
    if _all_nan(getattr(md.basalforcings, "geothermalflux", np.nan)) and \
            _nv_array(getattr(md.initialization, "temperature", np.nan), x.size) is not None:
        md.basalforcings.geothermalflux = np.full(x.size, 50e-3)
    return md


# ----------------------------------------------------------------------------------------------------
# rheology
# ----------------------------------------------------------------------------------------------------
# lower bound L of each interval and cubic coefficients (c3, c2, c1, c0) of ISSM's paterson.m
_PATERSON = np.array([
    (-50.0, -0.000292866376675, 0.011672640664130, -0.325004442485481, 6.524779401948101),
    (-45.0, -0.000292866376675, 0.007279645014004, -0.230243014094813, 5.154964909039554),
    (-40.0, 0.000072737147457, 0.002886649363879, -0.179411542205399, 4.149132666831214),
    (-35.0, -0.000086144770023, 0.003977706575736, -0.145089762507325, 3.333333333333331),
    (-30.0, -0.000043984685769, 0.002685535025386, -0.111773554501713, 2.696559088937191),
    (-25.0, -0.000029799523463, 0.002025764738854, -0.088217055680511, 2.199331606342181),
    (-20.0, 0.000136920904777, 0.001578771886910, -0.070194372551690, 1.805165505978111),
    (-15.0, -0.000899763781026, 0.003632585458564, -0.044137585824322, 1.510778053489523),
    (-10.0, 0.001676964325070, -0.009863871256831, -0.075294014815659, 1.268434288203714),
    (-5.0, -0.003748937622487, 0.015290593619213, -0.048160403003748, 0.854987973338348),
    (-2.0, -0.003748937622488, -0.018449844983174, -0.057638157095631, 0.746900791092860),
])


def paterson(temperature: Any) -> np.ndarray | float:
    """Ice rigidity B(T) [Pa s^(1/3)] from Paterson's table, as ISSM's ``paterson``.

    With T_C = T - 273.15 and L the lower bound of the interval holding T_C (-50 below -45, then
    -45, -40, ..., -5, -2), xi = T_C - L:

        B = 1e8 (c3 xi^3 + c2 xi^2 + c1 xi + c0),  replaced by 1e6 where negative.

    Parameters
    ----------
    temperature : float or array, K (must be >= 0)
    """
    t = np.asarray(temperature, dtype=np.float64)
    if np.any(t < 0) or np.any(np.isnan(t)):
        raise ValueError("paterson: temperature must be in Kelvin (non-negative, not NaN)")
    tc = t - 273.15
    edges = _PATERSON[1:, 0]  # -45, -40, ..., -2
    k = np.searchsorted(edges, tc, side="right")
    L, c3, c2, c1, c0 = (_PATERSON[k, i] for i in range(5))
    xi = tc - L
    b = 1e8 * (c3 * xi ** 3 + c2 * xi ** 2 + c1 * xi + c0)
    b = np.where(b < 0, 1e6, b)
    return float(b) if b.ndim == 0 else b


# ----------------------------------------------------------------------------------------------------
# interpolation
# ----------------------------------------------------------------------------------------------------
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
