"""Mass transport (implicit Euler P1, ISSM's stabilisations), hydrostatic update and melt rates."""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError
from issm_emulator.physics import masstransport as mt
from issm_emulator.physics import melt
from issm_emulator.physics.fe import GAUSS2_POINTS, GAUSS2_WEIGHTS, P1Mesh
from issm_emulator.state import Forcing
from tests.modelfactory import square_mesh

YTS = 365.0 * 24 * 3600


def _mesh(nx=21, ny=21, length=1e5, lx=None):
    x, y, tri = square_mesh(nx, ny, length)
    if lx is not None:
        x = x * lx / length
    return P1Mesh(x, y, tri)


def _volume(pm, H):
    return float(np.sum(np.abs(pm.area) * pm.element_mean(H)))


def _solve(pm, H, vx, vy, dt, *, smb=0.0, gmb=0.0, fmb=0.0, frac=None, **kw):
    nv = pm.nv
    frac = np.ones(pm.ne) if frac is None else frac
    return mt.solve_thickness(pm, thickness=H, vx=vx, vy=vy, dt=dt, smb=np.full(nv, smb) if np.isscalar(smb) else smb,
                              groundedice_melt=np.full(nv, gmb), floatingice_melt=np.full(nv, fmb),
                              grounded_fraction=frac, **kw)


def _vortex(pm, umax=300.0 / YTS):
    """Divergence-free velocity that vanishes on the boundary of the square (no flux)."""
    L = pm.x.max()
    X, Y = np.pi * pm.x / L, np.pi * pm.y / L
    # stream function psi = sin^2 X sin^2 Y
    u = 2 * np.sin(X) ** 2 * np.sin(Y) * np.cos(Y)
    v = -2 * np.sin(X) * np.cos(X) * np.sin(Y) ** 2
    return umax * u, umax * v


@pytest.mark.parametrize("stab", [0, 1, 2])
def test_volume_conserved_without_sources(stab):
    pm = _mesh()
    vx, vy = _vortex(pm)
    H = 500.0 + 200.0 * np.exp(-((pm.x - 4e4) ** 2 + (pm.y - 5e4) ** 2) / (1.5e4) ** 2)
    V0 = _volume(pm, H)
    for _ in range(5):
        H = _solve(pm, H, vx, vy, 5 * YTS, stabilization=stab).thickness
    assert abs(_volume(pm, H) - V0) / V0 < 1e-12
    assert not np.allclose(H, 500.0 + 200.0 * np.exp(-((pm.x - 4e4) ** 2 + (pm.y - 5e4) ** 2) / (1.5e4) ** 2))


@pytest.mark.parametrize("stab", [0, 1, 2])
def test_smb_changes_volume_by_smb_area_dt(stab):
    pm = _mesh()
    vx, vy = _vortex(pm)
    H = 800.0 + 0.001 * pm.x
    smb, dt = 2.0 / YTS, 2 * YTS
    res = _solve(pm, H, vx, vy, dt, smb=smb, stabilization=stab)
    area = float(np.abs(pm.area).sum())
    dv = _volume(pm, res.thickness) - _volume(pm, H)
    assert dv == pytest.approx(smb * area * dt, rel=1e-10)


@pytest.mark.parametrize("stab", [0, 1, 2, 5])
def test_uniform_state_in_uniform_flow_stays_uniform(stab):
    # a constant thickness in a uniform flow only changes by the SMB, whatever the stabilisation
    pm = _mesh(9, 9)
    vx, vy = np.full(pm.nv, 300.0 / YTS), np.full(pm.nv, -100.0 / YTS)
    res = _solve(pm, np.full(pm.nv, 700.0), vx, vy, 3 * YTS, smb=5.0 / YTS, stabilization=stab)
    np.testing.assert_allclose(res.thickness, 715.0, rtol=1e-12)


def test_uniform_thickness_without_flow_grows_by_smb_minus_melt():
    pm = _mesh(6, 6)
    H = np.full(pm.nv, 300.0)
    z = np.zeros(pm.nv)
    res = _solve(pm, H, z, z, YTS, smb=10.0 / YTS, gmb=4.0 / YTS, fmb=50.0 / YTS)
    np.testing.assert_allclose(res.thickness, 306.0, rtol=1e-13)
    res = _solve(pm, H, z, z, YTS, smb=10.0 / YTS, gmb=4.0 / YTS, fmb=50.0 / YTS, frac=np.zeros(pm.ne))
    np.testing.assert_allclose(res.thickness, 260.0, rtol=1e-13)


@pytest.mark.parametrize("stab", [1, 5])
def test_one_dimensional_advection_moves_the_bump(stab):
    # channel 400 km x 20 km, uniform flow in x; inflow thickness fixed at the upstream edge
    x, y, tri = square_mesh(161, 5, 1.0)
    pm = P1Mesh(x * 4e5, y * 2e4, tri)
    U = 1000.0 / YTS
    vx, vy = np.full(pm.nv, U), np.zeros(pm.nv)
    bump = lambda xc: 100.0 + 400.0 * np.exp(-((pm.x - xc) / 2e4) ** 2)
    H = bump(1e5)
    spc = np.where(pm.x == 0.0, 100.0, np.nan)
    dt, n = 2.5 * YTS, 40  # 100 km in 100 yr; Courant number 0.5
    for _ in range(n):
        H = _solve(pm, H, vx, vy, dt, spcthickness=spc, stabilization=stab).thickness
    mass = H - 100.0
    centre = np.sum(mass * pm.lumped_mass * pm.x) / np.sum(mass * pm.lumped_mass)
    assert centre == pytest.approx(2e5, abs=2e3)
    assert 150.0 < H.max() < 500.0  # diffused but not destroyed
    assert H.min() > 95.0
    np.testing.assert_array_equal(H[pm.x == 0.0], 100.0)


def test_min_thickness_floor_and_residual():
    pm = _mesh(6, 6)
    z = np.zeros(pm.nv)
    H = np.full(pm.nv, 20.0)
    res = _solve(pm, H, z, z, YTS, gmb=50.0 / YTS, min_thickness=1.0)
    np.testing.assert_allclose(res.thickness, 1.0)
    np.testing.assert_allclose(res.thickness_residual, 31.0, rtol=1e-12)


def test_spcthickness_is_dirichlet():
    pm = _mesh(8, 8)
    vx, vy = _vortex(pm)
    H = np.full(pm.nv, 500.0)
    spc = np.full(pm.nv, np.nan)
    spc[:8] = np.linspace(200, 900, 8)
    res = _solve(pm, H, vx, vy, YTS, smb=1.0 / YTS, spcthickness=spc)
    np.testing.assert_array_equal(res.thickness[:8], spc[:8])
    assert np.all(res.thickness[8:] != 500.0)


def test_ice_free_elements_are_skipped():
    pm = _mesh(6, 6)
    z = np.zeros(pm.nv)
    H = np.full(pm.nv, 100.0)
    ice = pm.element_mean(pm.x) < 5e4
    res = _solve(pm, H, z, z, YTS, smb=10.0 / YTS, ice_elements=ice)
    in_ice = np.zeros(pm.nv, bool)
    in_ice[pm.elements[ice].ravel()] = True
    np.testing.assert_allclose(res.thickness[in_ice], 110.0)
    np.testing.assert_allclose(res.thickness[~in_ice], 100.0)


def _reference_element_matrix(pm, e, vx, vy, dt, stab):
    """Gauss-point by Gauss-point assembly of one element, following ISSM's CreateKMatrixCG."""
    idx = pm.elements[e]
    area = abs(pm.area[e])
    dx, dy = pm.dphidx[e], pm.dphidy[e]
    ve, we = vx[idx], vy[idx]
    div = ve @ dx + we @ dy
    h = np.sqrt(2 * area)
    K = np.zeros((3, 3))
    for p, w in zip(GAUSS2_POINTS, GAUSS2_WEIGHTS):
        basis = p
        jw = w * area
        K += jw * np.outer(basis, basis)
        u, v = basis @ ve, basis @ we
        K += dt * jw * (np.outer(basis, basis) * div + np.outer(basis, u * dx + v * dy))
        ub, vb = ve.mean(), we.mean()
        if stab == 1:
            K += dt * jw * h / 2 * (abs(ub) * np.outer(dx, dx) + abs(vb) * np.outer(dy, dy))
        if stab == 5:
            tau = h / (2 * (np.hypot(ub, vb) + 1e-8))
            adv = ub * dx + vb * dy
            K += jw * tau * np.outer(adv, basis)
            K += jw * tau * div * np.outer(basis, basis)
            K += dt * jw * tau * (np.outer(adv, adv) + div * np.outer(basis, adv) + div * np.outer(adv, basis)
                                  + div ** 2 * np.outer(basis, basis))
    return K


@pytest.mark.parametrize("stab", [1, 5])
def test_element_matrices_match_gauss_point_assembly(stab):
    pm = _mesh(5, 5)
    rng = np.random.default_rng(3)
    vx, vy = rng.normal(size=pm.nv) * 1e-5, rng.normal(size=pm.nv) * 1e-5
    K, _ = mt._element_matrices(pm, vx, vy, 3e7, stab)
    for e in (0, 7, 19):
        np.testing.assert_allclose(K[e], _reference_element_matrix(pm, e, vx, vy, 3e7, stab), rtol=1e-12,
                                   atol=1e-12 * np.abs(K[e]).max())


def test_melt_interpolation_rules():
    pm = _mesh(3, 3)
    frac = np.array([0.0, 1e-9, 0.5, 1.0, 0.999999995, 0.3, 0.0, 1.0])[: pm.ne]
    g, f = np.full(pm.nv, 2.0), np.full(pm.nv, 7.0)
    nm = mt.element_basal_melt(pm, frac, g, f, "NoMeltOnPartiallyFloating")[:, 0]
    np.testing.assert_array_equal(nm, np.where(frac < 1e-8, 7.0, 2.0))
    full = mt.element_basal_melt(pm, frac, g, f, "FullMeltOnPartiallyFloating")[:, 0]
    np.testing.assert_array_equal(full, np.where(frac < 0.99999999, 7.0, 2.0))
    sub = mt.element_basal_melt(pm, frac, g, f, "SubelementMelt1")[:, 0]
    np.testing.assert_allclose(sub, np.where(frac > 0.999999999, 2.0, (1 - frac) * 7 + frac * 2))
    with pytest.raises(ModelInputError, match="melt_interpolation"):
        mt.element_basal_melt(pm, frac, g, f, "SubelementMelt9")
    with pytest.raises(ModelInputError, match="stabilization"):
        mt._element_matrices(pm, g, g, 1.0, 3)


def test_update_geometry_floating_and_grounded():
    di = 917.0 / 1023.0
    H = np.array([100.0, 200.0, 300.0])
    phi = np.array([-1.0, 1.0, 1.0])
    b0, s0, bed = np.array([-50.0, -100.0, -30.0]), np.array([50.0, 100.0, 270.0]), np.array([-80.0, -120.0, -40.0])
    b, s = mt.update_geometry(H, base=b0, surface=s0, ocean_levelset=phi, rho_ice=917.0, rho_water=1023.0)
    np.testing.assert_allclose(b, [-di * 100.0, -100.0, -30.0])
    np.testing.assert_allclose(s, [(1 - di) * 100.0, 100.0, 270.0])
    b, s = mt.update_geometry(H, base=b0, surface=s0, ocean_levelset=phi, rho_ice=917.0, rho_water=1023.0,
                              bed=bed, isgroundingline=True, sealevel=10.0)
    np.testing.assert_allclose(b, [10.0 - di * 100.0, -120.0, -40.0])
    np.testing.assert_allclose(s, [10.0 + (1 - di) * 100.0, 80.0, 260.0])


# ------------------------------------------------------------------------------------------ melt rates
def test_linear_melt_piecewise():
    b = np.array([-100.0, -400.0, -600.0, -800.0, -1000.0])
    m = melt.linear_melt(b, deepwater_melting_rate=50.0, upperwater_melting_rate=2.0, deepwater_elevation=-800.0,
                         upperwater_elevation=-400.0, perturbation=np.array([0, 0, 0, 0, 1.0]))
    np.testing.assert_allclose(m, [2.0, 2.0, 26.0, 50.0, 51.0])


def test_mismip_melt():
    b = np.array([-50.0, -300.0, -500.0])
    r = np.array([-600.0, -375.0, -500.0])
    m = melt.mismip_melt(b, r, meltrate_factor=0.2, threshold_thickness=75.0, upperdepth_melt=-100.0)
    np.testing.assert_allclose(m, [0.0, 0.2 * np.tanh(1.0) * 200.0, 0.0])


class _St:
    """The few ModelState attributes floating_melt_rate reads."""

    def __init__(self, kind, params, interp=1, floating=None):
        from types import SimpleNamespace

        self.basalforcings = SimpleNamespace(kind=kind, params=params, floatingice_melting_rate=floating,
                                             groundedice_melting_rate=Forcing(np.zeros(3)))
        self.timestepping = SimpleNamespace(interp_forcing=interp)
        self.numberofvertices = 3
        self.yts = YTS
        self.geometry = SimpleNamespace(bed=np.full(3, -2000.0))


@pytest.mark.parametrize("interp, expected", [(1, 60.0), (0, 50.0)])
def test_linear_melt_time_series_interp_or_hold(interp, expected):
    deep = Forcing(np.array([[50.0, 100.0]]) / YTS, np.array([0.0, 5.0]) * YTS)
    st = _St("linear", {"deepwater_melting_rate": deep, "upperwater_melting_rate": 0.0,
                        "deepwater_elevation": -800.0, "upperwater_elevation": -400.0,
                        "perturbation_melting_rate": Forcing(np.full(3, np.nan))}, interp=interp)
    m = melt.floating_melt_rate(st, 1.0 * YTS, base=np.array([-900.0, -600.0, -100.0]))
    np.testing.assert_allclose(m * YTS, [expected, expected / 2, 0.0])


def test_default_and_mismip_floating_melt_rate():
    st = _St("default", {}, floating=Forcing(np.array([1.0, 2.0, 3.0])))
    np.testing.assert_array_equal(melt.floating_melt_rate(st, 0.0, base=np.zeros(3)), [1.0, 2.0, 3.0])
    st = _St("mismip", {"meltrate_factor": 0.2 / YTS, "threshold_thickness": 75.0, "upperdepth_melt": -100.0})
    m = melt.floating_melt_rate(st, 0.0, base=np.array([-1000.0, -50.0, -2000.0]))
    np.testing.assert_allclose(m * YTS, [0.2 * np.tanh(1000 / 75) * 900, 0.0, 0.0])
    with pytest.raises(ModelInputError, match="md.basalforcings"):
        melt.floating_melt_rate(_St("pico", {}), 0.0, base=np.zeros(3))
