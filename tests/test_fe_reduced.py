"""The reduced free-dof assembly of :mod:`issm_emulator.physics.fe` against plain global assembly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import Delaunay

from issm_emulator.physics.fe import P1Mesh, reduced_system, splu_natural


def _mesh(n=60, seed=0):
    rng = np.random.default_rng(seed)
    pts = np.vstack([rng.uniform(0, 1, (n, 2)), [[0, 0], [1, 0], [0, 1], [1, 1]]])
    tri = Delaunay(pts).simplices
    x, y = pts[:, 0], pts[:, 1]
    # counter-clockwise triangles
    det = (x[tri[:, 1]] - x[tri[:, 0]]) * (y[tri[:, 2]] - y[tri[:, 0]]) \
        - (x[tri[:, 2]] - x[tri[:, 0]]) * (y[tri[:, 1]] - y[tri[:, 0]])
    tri[det < 0] = tri[det < 0][:, [0, 2, 1]]
    return P1Mesh(x, y, tri.astype(np.int64))


def _element_matrices(mesh, ncomp, rng):
    """Random symmetric positive element matrices (ne, 3 ncomp, 3 ncomp) plus a stiffness part."""
    m = 3 * ncomp
    a = rng.normal(size=(mesh.ne, m, m))
    ke = np.einsum("eij,ekj->eik", a, a) * 1e-2
    stiff = np.einsum("ei,ej->eij", mesh.dphidx, mesh.dphidx) + np.einsum("ei,ej->eij", mesh.dphidy, mesh.dphidy)
    for c in range(ncomp):
        ke[:, 3 * c:3 * c + 3, 3 * c:3 * c + 3] += stiff * mesh.area[:, None, None]
    return ke


def _global(mesh, ke, ncomp):
    nv = mesh.nv
    gdof = np.concatenate([mesh.elements + c * nv for c in range(ncomp)], axis=1)
    m = gdof.shape[1]
    rows = np.repeat(gdof[:, :, None], m, axis=2).ravel()
    cols = np.repeat(gdof[:, None, :], m, axis=1).ravel()
    return sp.csr_matrix((ke.ravel(), (rows, cols)), shape=(ncomp * nv, ncomp * nv))


@pytest.mark.parametrize("ncomp", [1, 2])
def test_reduced_blocks_equal_sliced_global_matrix(ncomp):
    rng = np.random.default_rng(1)
    mesh = _mesh()
    ke = _element_matrices(mesh, ncomp, rng)
    free = np.ones(ncomp * mesh.nv, dtype=bool)
    free[rng.choice(free.size, size=free.size // 5, replace=False)] = False
    rs = reduced_system(mesh, free, ncomp)
    a_ff, a_fs = rs.assemble(ke)
    k = _global(mesh, ke, ncomp)
    np.testing.assert_allclose(a_ff.toarray(), k[rs.dofs][:, rs.dofs].toarray(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a_fs.toarray(), k[rs.dofs][:, rs.fixed].toarray(), rtol=0, atol=1e-12)
    assert np.array_equal(np.sort(np.concatenate([rs.dofs, rs.fixed])), np.arange(free.size))
    assert reduced_system(mesh, free, ncomp) is rs  # cached per mesh and mask


def test_reduced_solve_matches_global_direct_solve():
    rng = np.random.default_rng(2)
    mesh = _mesh(80, seed=3)
    ke = _element_matrices(mesh, 2, rng)
    free = np.ones(2 * mesh.nv, dtype=bool)
    free[:10] = False
    xs = rng.normal(size=(~free).sum())
    f = rng.normal(size=free.size)
    rs = reduced_system(mesh, free, 2)
    a_ff, a_fs = rs.assemble(ke)
    x_new = splu_natural(a_ff).solve(f[rs.dofs] - a_fs @ xs)
    k = _global(mesh, ke, 2).tocsc()
    fi, si = np.flatnonzero(free), np.flatnonzero(~free)
    x_ref = spla.spsolve(k[fi][:, fi], f[fi] - k[fi][:, si] @ xs)
    x = np.empty(free.size)
    x[rs.dofs] = x_new
    np.testing.assert_allclose(x[fi], x_ref, rtol=1e-10, atol=1e-12)


def test_singular_matrix_is_reported():
    mesh = _mesh(20)
    ke = np.zeros((mesh.ne, 3, 3))
    rs = reduced_system(mesh, np.ones(mesh.nv, dtype=bool), 1)
    a_ff, _ = rs.assemble(ke)
    with pytest.raises(RuntimeError):
        splu_natural(a_ff)


def test_bad_mask_shape():
    mesh = _mesh(10)
    with pytest.raises(ValueError, match="free mask"):
        reduced_system(mesh, np.ones(mesh.nv + 1, dtype=bool), 1)
