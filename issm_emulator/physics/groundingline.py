"""Grounding-line migration by the flotation criterion, as ISSM's ``GroundinglineMigrationx``.

With ``di = rho_ice / rho_water``, sea level ``z_sl``, bed ``r`` and thickness ``H`` at each vertex, and
``phi`` the current ``ocean_levelset`` (> 0 grounded):

* ``phi <= 0`` (floating) and ``b <= r``: the ice re-grounds, ``b = r``, ``s = r + H``;
* ``phi > 0`` (grounded) and the hydrostatic base ``z_sl - di H`` lies above ``r``: the ice ungrounds,
  ``b = z_sl - di H``, ``s = z_sl + (1 - di) H`` -- at once for ``'AggressiveMigration'`` and
  ``'SubelementMigration'``; for ``'SoftMigration'`` only at vertices that a flood fill from the floating
  ice reaches through such "potentially ungrounding" vertices;
* then ``phi = H + (r - z_sl) / di`` (for ``'SoftMigration'`` only where the vertex was floating, is at or
  below flotation, or was reached by the flood fill; elsewhere ``phi`` keeps its value).

``'None'`` leaves everything unchanged. Everything here is vectorised; the flood fill is a connected-
components search (:func:`scipy.sparse.csgraph.connected_components`) on the mesh graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from issm_emulator.errors import ModelInputError

MIGRATIONS = ("None", "AggressiveMigration", "SoftMigration", "SubelementMigration")


@dataclass(frozen=True)
class MigrationResult:
    """Geometry and mask after grounding-line migration (m)."""

    base: np.ndarray
    surface: np.ndarray
    ocean_levelset: np.ndarray


def potential_ungrounding(thickness, bed, ocean_levelset, *, di: float, sealevel=0.0) -> np.ndarray:
    """(nv,) bool: grounded vertices (``phi > 0``) whose hydrostatic base ``z_sl - di H`` is above the bed."""
    h = np.asarray(thickness, float)
    return (np.asarray(ocean_levelset, float) > 0.0) & (sealevel - di * h > np.asarray(bed, float))


def soft_ungrounding_flags(elements: np.ndarray, ocean_levelset: np.ndarray,
                           potentially_ungrounding: np.ndarray) -> np.ndarray:
    """(nv,) bool: potentially-ungrounding vertices reached by ISSM's flood fill from the floating ice.

    ISSM repeatedly marks as floating every potentially-ungrounding vertex of an element that has a
    floating vertex (``phi < 0``), until nothing changes. That reaches exactly the potentially-ungrounding
    vertices connected to a floating vertex through mesh edges whose end points are all floating or
    potentially ungrounding, i.e. the connected components (of that sub-graph) that hold a floating vertex.
    """
    e = np.asarray(elements, dtype=np.int64)
    nv = int(np.asarray(ocean_levelset).shape[0])
    floating = np.asarray(ocean_levelset, float) < 0.0
    pu = np.asarray(potentially_ungrounding, bool)
    if not pu.any() or not floating.any():
        return np.zeros(nv, dtype=bool)
    active = floating | pu
    # all three edges of every triangle, kept when both ends are active
    a = np.concatenate([e[:, 0], e[:, 1], e[:, 2]])
    b = np.concatenate([e[:, 1], e[:, 2], e[:, 0]])
    keep = active[a] & active[b]
    graph = sp.coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(nv, nv)).tocsr()
    _, labels = connected_components(graph, directed=False)
    seeded = np.zeros(labels.max() + 1, dtype=bool)
    seeded[labels[floating]] = True
    return pu & seeded[labels]


def migrate(migration: str, *, elements: np.ndarray, thickness, base, surface, bed, ocean_levelset,
            rho_ice: float, rho_water: float, sealevel=0.0) -> MigrationResult:
    """Migrate the grounding line (ISSM's ``MigrateGroundingLine``) and recompute ``ocean_levelset``.

    Parameters
    ----------
    migration : one of :data:`MIGRATIONS`
    elements : (ne, 3) 0-based triangles (used by ``'SoftMigration'``)
    thickness, base, surface, bed, ocean_levelset : (nv,) current fields (m)
    rho_ice, rho_water : densities (kg m^-3)
    sealevel : sea level (m), scalar or (nv,)

    Returns
    -------
    MigrationResult with new copies of base, surface and ocean_levelset.
    """
    h = np.asarray(thickness, float)
    b = np.array(base, dtype=float)
    s = np.array(surface, dtype=float)
    phi = np.array(ocean_levelset, dtype=float)
    if migration == "None":
        return MigrationResult(b, s, phi)
    if migration not in MIGRATIONS:
        raise ModelInputError("md.groundingline.migration", f"one of {', '.join(map(repr, MIGRATIONS))}",
                              repr(migration))
    r = np.asarray(bed, float)
    if np.any(np.isnan(r)):
        raise ModelInputError("md.geometry.bed", "a finite bed elevation at every vertex when grounding-line "
                              "migration is on", "NaN values")
    sl = np.broadcast_to(np.asarray(sealevel, float), h.shape)
    di = rho_ice / rho_water
    bed_hydro = sl - di * h
    floating = phi <= 0.0
    reground = floating & (b <= r)
    b[reground] = r[reground]
    s[reground] = r[reground] + h[reground]

    unground = (~floating) & (bed_hydro > r)
    if migration == "SoftMigration":
        flags = soft_ungrounding_flags(elements, phi, unground)
        unground = flags
    b[unground] = bed_hydro[unground]
    s[unground] = (1.0 - di) * h[unground] + sl[unground]

    new_phi = h + (r - sl) / di
    if migration == "SoftMigration":
        update = (phi < 0.0) | (bed_hydro <= r) | flags
        phi = np.where(update, new_phi, phi)
    else:
        phi = new_phi
    return MigrationResult(b, s, phi)
