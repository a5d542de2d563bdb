"""Calving-rate laws against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError
from issm_emulator.physics import calving as C
from issm_emulator.physics.fe import P1Mesh
from tests.modelfactory import square_mesh

YTS = 365.0 * 24 * 3600


@pytest.fixture(scope="module")
def mesh() -> P1Mesh:
    x, y, t = square_mesh(11, 11, 1.0e5)
    return P1Mesh(x, y, t)


def test_vonmises_uniaxial_matches_hand_computation(mesh):
    a = 1.0e-10  # 1/s, uniaxial stretching exx = a
    vx, vy = a * mesh.x + 1.0 / YTS, np.zeros(mesh.nv)
    B, n = 1.8e8, 3.0
    base = np.where(mesh.x > 8e4, 10.0, -300.0)  # base above sea level on the right
    ocean = np.where(mesh.y > 5e4, -1.0, 1.0)
    c, svm = C.vonmises_rate(mesh, vx, vy, B=np.full(mesh.nv, B), n=np.full(mesh.ne, n), base=base,
                             ocean_levelset=ocean, sigma_max_grounded=1e6, sigma_max_floating=2e5)
    # eigenvalues a, 0 -> eps_e^2 = a^2/2, sigma_vm = sqrt(3) B (a^2/2)^(1/(2n))
    sig = np.sqrt(3.0) * B * (a * a / 2.0) ** (1.0 / (2.0 * n))
    np.testing.assert_allclose(svm, sig, rtol=1e-12)
    smax = np.where(ocean < 0, 2e5, 1e6)
    hand = np.where(base > 0.0, 0.0, np.abs(vx) * sig / smax)
    np.testing.assert_allclose(C.nodal_mean(mesh, c), hand, rtol=1e-12)
    # compression only -> no tensile stress
    _, svm2 = C.vonmises_rate(mesh, -a * mesh.x, vy, B=np.full(mesh.nv, B), n=3.0, base=base,
                              ocean_levelset=ocean, sigma_max_grounded=1e6, sigma_max_floating=2e5)
    assert np.all(svm2 == 0.0)


def test_levermann_matches_hand_computation(mesh):
    a, b = 2e-10, 1e-10
    vx, vy = a * (mesh.x + 1e4), b * (mesh.y + 1e4)  # exx = a, eyy = b, exy = 0
    base = np.where(mesh.y < 2e4, 5.0, -300.0)
    K = 4.89e13
    c, par, perp = C.levermann_rate(mesh, vx, vy, base, K)
    u2, v2 = vx ** 2, vy ** 2
    hpar = (u2 * a + v2 * b) / (u2 + v2 + 1e-14)
    hperp = (u2 * b + v2 * a) / (u2 + v2 + 1e-14)
    np.testing.assert_allclose(C.nodal_mean(mesh, par), hpar, rtol=1e-10)
    np.testing.assert_allclose(C.nodal_mean(mesh, perp), hperp, rtol=1e-10)
    np.testing.assert_allclose(C.nodal_mean(mesh, c), np.where(base <= 0, K * hpar * hperp, 0.0), rtol=1e-10)
    # uniaxial flow: eps_perp = 0 -> no calving
    c0, _, _ = C.levermann_rate(mesh, a * (mesh.x + 1e4), np.zeros(mesh.nv), np.full(mesh.nv, -300.0), K)
    assert np.all(c0 == 0.0)


def test_nodal_mean_is_the_element_average(mesh):
    vals = np.tile(np.arange(mesh.ne, dtype=float)[:, None], (1, 3))
    out = C.nodal_mean(mesh, vals)
    np.testing.assert_allclose(out, mesh.nodal_average(np.arange(mesh.ne, dtype=float)))
    with pytest.raises(ValueError):
        C.nodal_mean(mesh, np.zeros(mesh.ne))


def test_minthickness_retreat_rule(mesh):
    ls = np.where(mesh.x < 5e4, -1.0, 1.0)
    H = np.where(mesh.x < 3e4, 800.0, 200.0)
    bed = np.where(mesh.y > 8e4, 100.0, -500.0)
    dist = np.abs(mesh.x - 5e4)
    out = C.minthickness_retreat(mesh.elements, ls, thickness=H, bed=bed, distance=dist, min_thickness=400.0,
                                 migration_max=1.5e4 / YTS, dt=YTS)
    kill = (ls < 0) & (H < 400) & (bed < 0) & (dist < 1.5e4)
    assert kill.any()
    assert np.all(out[kill] == 400.0)
    np.testing.assert_array_equal(out[~kill], ls[~kill])


def test_bad_inputs_name_the_md_field(mesh):
    with pytest.raises(ModelInputError, match="md.calving.coeff"):
        C.levermann_rate(mesh, np.zeros(mesh.nv), np.zeros(mesh.nv), np.zeros(mesh.nv), np.ones(3))
    with pytest.raises(ModelInputError, match="md.calving.stress_threshold_floatingice"):
        C.vonmises_rate(mesh, np.zeros(mesh.nv), np.zeros(mesh.nv), B=1e8, n=3.0, base=np.zeros(mesh.nv),
                        ocean_levelset=np.ones(mesh.nv), sigma_max_grounded=1e6, sigma_max_floating=np.ones(2))
