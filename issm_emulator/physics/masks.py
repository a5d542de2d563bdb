"""Element classification from ISSM's two level sets, vectorised over the mesh.

Conventions (ISSM): ``ice_levelset`` < 0 ice, > 0 no ice, 0 on the front; ``ocean_levelset`` > 0 grounded,
< 0 floating. The rules reproduce ISSM's ``Element::IsIceInElement``, ``IsIcefront``,
``GetIcefrontCoordinates``, ``IsAllFloating`` and ``Tria::GetGroundedPortion`` / ``GetGroundedPart``.
"""

from __future__ import annotations

import numpy as np

from issm_emulator.errors import ModelInputError

#: ISSM replaces a level-set value of exactly 0 by this before locating the grounding line
_LEVELSET_EPS = 1.0e-15

MIGRATION_STYLES = ("None", "AggressiveMigration", "SoftMigration", "SubelementMigration", "GroundingOnly",
                    "Contact")


def element_values(elements: np.ndarray, field: np.ndarray) -> np.ndarray:
    """(ne, 3) vertex values of ``field`` for each element."""
    return np.asarray(field, dtype=float)[elements]


def ice_elements(elements: np.ndarray, ice_levelset: np.ndarray) -> np.ndarray:
    """(ne,) bool: element holds ice, i.e. at least one vertex has ``ice_levelset < 0``."""
    return np.any(element_values(elements, ice_levelset) < 0.0, axis=1)


def ice_vertices(elements: np.ndarray, ice_levelset: np.ndarray, nv: int | None = None) -> np.ndarray:
    """(nv,) bool: vertex belongs to at least one element with ice (an active stress-balance node)."""
    nv = int(np.max(elements)) + 1 if nv is None else nv
    out = np.zeros(nv, dtype=bool)
    out[elements[ice_elements(elements, ice_levelset)].ravel()] = True
    return out


def front_elements(elements: np.ndarray, ice_levelset: np.ndarray) -> np.ndarray:
    """(ne,) bool: elements that carry an ice-front load (exactly one vertex with ``ice_levelset < 0``)."""
    return np.sum(element_values(elements, ice_levelset) < 0.0, axis=1) == 1


def front_edges(elements: np.ndarray, ice_levelset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front edge of every front element.

    Returns
    -------
    elem : (nf,) indices of front elements
    local : (nf, 2) local vertex indices (0..2) of the two non-ice vertices (``ice_levelset >= 0``), in
        counter-clockwise order of the element, so that the outward normal of the edge ``a -> b`` is
        ``(yb - ya, xa - xb) / length`` (for counter-clockwise triangles)
    ice_local : (nf,) local index of the single ice vertex
    """
    elem = np.flatnonzero(front_elements(elements, ice_levelset))
    ls = element_values(elements[elem], ice_levelset)
    ice_local = np.argmin(np.where(ls < 0.0, 0, 1), axis=1)  # the only vertex with ls < 0
    a = (ice_local + 1) % 3
    b = (ice_local + 2) % 3  # a -> b is counter-clockwise and opposite to the ice vertex
    return elem, np.stack([a, b], axis=1), ice_local


def check_migration(migration: str) -> str:
    if migration not in MIGRATION_STYLES:
        raise ModelInputError("md.groundingline.migration", f"one of {', '.join(MIGRATION_STYLES)}",
                              repr(migration))
    return migration


def floating_elements(elements: np.ndarray, ocean_levelset: np.ndarray, migration: str) -> np.ndarray:
    """(ne,) bool: ISSM's ``IsAllFloating`` (elements that get no basal friction).

    With ``'SubelementMigration'`` an element is floating only if all its vertices have
    ``ocean_levelset <= 0``; with ``'None'``, ``'AggressiveMigration'``, ``'SoftMigration'`` (and
    ``'GroundingOnly'``) as soon as any vertex has ``ocean_levelset <= 0``; with ``'Contact'`` if any vertex
    is < 0.
    """
    ol = element_values(elements, ocean_levelset)
    migration = check_migration(migration)
    # column-wise max/min (exact, as ol.max(axis=1) / ol.min(axis=1), and several times faster)
    if migration == "SubelementMigration":
        return np.maximum(np.maximum(ol[:, 0], ol[:, 1]), ol[:, 2]) <= 0.0
    lo = np.minimum(np.minimum(ol[:, 0], ol[:, 1]), ol[:, 2])
    if migration == "Contact":
        return lo < 0.0
    return ~(lo > 0.0)


def _nonzero(ol: np.ndarray) -> np.ndarray:
    return np.where(ol == 0.0, ol + _LEVELSET_EPS, ol)


def grounded_portion(elements: np.ndarray, ocean_levelset: np.ndarray) -> np.ndarray:
    """(ne,) fraction of each element's area where the linear interpolant of ``ocean_levelset`` is > 0.

    ISSM's ``Tria::GetGroundedPortion``: zero vertex values are nudged to +1e-15 (counted grounded); for a
    cut element with odd vertex ``k`` (the one whose sign differs) and edge fractions
    ``s1, s2 = phi_k / (phi_k - phi_j)``, the grounded fraction is ``1 - s1 s2`` when ``k`` is floating and
    ``s1 s2`` when ``k`` is grounded.
    """
    gl = _nonzero(element_values(elements, ocean_levelset))
    pos = gl > 0.0
    npos = pos[:, 0].astype(np.int64) + pos[:, 1] + pos[:, 2]  # = pos.sum(axis=1), faster
    phi = np.where(npos == 3, 1.0, 0.0)
    cut = (npos == 1) | (npos == 2)
    if np.any(cut):
        g = gl[cut]
        p = pos[cut]
        # odd vertex: the single positive one when npos == 1, the single negative one when npos == 2
        odd = np.where(p.sum(axis=1) == 1, np.argmax(p, axis=1), np.argmin(p, axis=1))
        rows = np.arange(g.shape[0])
        gk = g[rows, odd]
        g1 = g[rows, (odd + 1) % 3]
        g2 = g[rows, (odd + 2) % 3]
        s = (gk / (gk - g1)) * (gk / (gk - g2))
        phi[cut] = np.where(gk > 0.0, s, 1.0 - s)
    return phi


def grounded_part(elements: np.ndarray, ocean_levelset: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ISSM's ``Tria::GetGroundedPart``: how the grounding line cuts each element.

    Returns
    -------
    point : (ne,) int, local index of the odd vertex (0 for uncut elements)
    f1, f2 : (ne,) fractions along the edges ``point -> point+1`` and ``point -> point+2`` where the
        interpolated level set vanishes (1, 1 when all grounded; 0, 0 when all floating)
    mainly_floating : (ne,) bool, True when the odd vertex is the grounded one (or the element is not cut),
        i.e. the grounded part is the small triangle at ``point``
    """
    gl = _nonzero(element_values(elements, ocean_levelset))
    ne = gl.shape[0]
    pos = gl > 0.0
    npos = pos[:, 0].astype(np.int64) + pos[:, 1] + pos[:, 2]  # = pos.sum(axis=1), faster
    point = np.zeros(ne, dtype=np.int64)
    f1 = np.where(npos == 3, 1.0, 0.0)
    f2 = f1.copy()
    mainly_floating = np.ones(ne, dtype=bool)
    cut = (npos == 1) | (npos == 2)
    if np.any(cut):
        g = gl[cut]
        p = pos[cut]
        odd = np.where(p.sum(axis=1) == 1, np.argmax(p, axis=1), np.argmin(p, axis=1))
        rows = np.arange(g.shape[0])
        gk = g[rows, odd]
        point[cut] = odd
        f1[cut] = gk / (gk - g[rows, (odd + 1) % 3])
        f2[cut] = gk / (gk - g[rows, (odd + 2) % 3])
        mainly_floating[cut] = gk > 0.0
    return point, f1, f2, mainly_floating


def subelement_gauss(elements: np.ndarray, ocean_levelset: np.ndarray, points: np.ndarray,
                     weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature restricted to the grounded part of each element (ISSM's SubelementFriction2 rule).

    The base rule (``points`` (ng, 3) barycentric, ``weights`` summing to 1) is mapped onto the grounded
    sub-triangle (odd vertex grounded) or onto the two sub-triangles that tile the grounded quadrilateral
    (odd vertex floating), as ISSM's ``GaussTria(index, r1, r2, mainlyfloating, order)`` does.

    Returns
    -------
    bary : (ne, 2 ng, 3) barycentric coordinates; weights : (ne, 2 ng) fractions of the element area
        (unused slots have weight 0).
    """
    point, f1, f2, mf = grounded_part(elements, ocean_levelset)
    ne, ng = point.shape[0], points.shape[0]
    # reference frame: vertex `point` at (0,0), x towards point+1, y towards point+2
    c = points  # (ng, 3)
    # sub-triangle A (mainly floating): (0,0), (f1,0), (0,f2)
    xa = c[None, :, 1] * f1[:, None]
    ya = c[None, :, 2] * f2[:, None]
    wa = weights[None, :] * (f1 * f2)[:, None]
    # quadrilateral = T1 (f1,0),(0,1),(0,f2)  +  T2 (f1,0),(1,0),(0,1)
    x1 = c[None, :, 0] * f1[:, None]
    y1 = c[None, :, 1] * 1.0 + c[None, :, 2] * f2[:, None]
    w1 = weights[None, :] * (f1 * (1.0 - f2))[:, None]
    x2 = c[None, :, 0] * f1[:, None] + c[None, :, 1] * 1.0
    y2 = np.broadcast_to(c[None, :, 2], x2.shape)
    w2 = weights[None, :] * (1.0 - f1)[:, None]
    mfc = mf[:, None]
    x = np.concatenate([np.where(mfc, xa, x1), np.where(mfc, 0.0, x2)], axis=1)
    y = np.concatenate([np.where(mfc, ya, y1), np.where(mfc, 0.0, y2)], axis=1)
    w = np.concatenate([np.where(mfc, wa, w1), np.where(mfc, 0.0, w2)], axis=1)
    local = np.stack([1.0 - x - y, x, y], axis=2)  # coordinates w.r.t. (point, point+1, point+2)
    bary = np.empty_like(local)
    rows = np.arange(ne)[:, None]
    for k in range(3):  # three fixed slots, not a loop over elements
        bary[rows, np.arange(2 * ng)[None, :], ((point + k) % 3)[:, None]] = local[:, :, k]
    return bary, w
