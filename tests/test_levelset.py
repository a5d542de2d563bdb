"""Moving-front level set: advection, re-initialisation, retreat, icebergs, migration cap."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError
from issm_emulator.physics import levelset as L
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.state import Calving, Forcing, LevelsetSettings, Timestepping
from tests.modelfactory import square_mesh

YTS = 365.0 * 24 * 3600


@pytest.fixture(scope="module")
def unit_mesh() -> P1Mesh:
    x, y, t = square_mesh(61, 61, 1.0)
    return P1Mesh(x, y, t)


def strip_mesh(n: int = 101, length: float = 1.0e5, width: float = 2.0e3) -> P1Mesh:
    """A 1-D-like strip [0, length] x [0, width] with n vertices along x and 3 across."""
    xs, ys = np.meshgrid(np.linspace(0, length, n), np.linspace(0, width, 3))
    x, y = xs.ravel(), ys.ravel()
    i, j = np.meshgrid(np.arange(n - 1), np.arange(2))
    v00 = (j * n + i).ravel()
    tri = np.stack([np.column_stack([v00, v00 + 1, v00 + n + 1]), np.column_stack([v00, v00 + n + 1, v00 + n])],
                   axis=1).reshape(-1, 3)
    return P1Mesh(x, y, tri)


def front_state(nv: int, *, calvingrate: float = 0.0, melt: float = 0.0, migration_max: float = 1e12 / YTS,
                reinit: int = 10, kill: int = 0, stabilization: int = 1, law: str = "default", params=None):
    """The parts of a ModelState that advance_front reads."""
    params = {"calvingrate": Forcing(np.full(nv, calvingrate))} if params is None else params
    return SimpleNamespace(
        calving=Calving(law, params),
        levelset=LevelsetSettings(stabilization=stabilization, reinit_frequency=reinit, kill_icebergs=kill,
                                  migration_max=migration_max, spclevelset=Forcing(np.full(nv, np.nan))),
        frontal_meltingrate=Forcing(np.full(nv, melt)),
        timestepping=Timestepping(0.0, 1.0, 1.0, 1),
        stressbalance=SimpleNamespace(spcvx=np.full(nv, np.nan), spcvy=np.full(nv, np.nan)),
        materials=SimpleNamespace(rheology_B=np.full(nv, 1.8e8), rheology_n=np.array([3.0])),
        sealevel=0.0)


def front_position(mesh: P1Mesh, phi: np.ndarray) -> float:
    """x where phi crosses 0 along the row y = 0 (linear interpolation)."""
    row = np.flatnonzero(mesh.y == 0.0)
    row = row[np.argsort(mesh.x[row])]
    f, x = phi[row], mesh.x[row]
    k = np.flatnonzero((f[:-1] < 0) & (f[1:] >= 0))
    assert k.size == 1, "the front must cross the row exactly once"
    k = int(k[0])
    return float(x[k] - f[k] * (x[k + 1] - x[k]) / (f[k + 1] - f[k]))


def test_circle_advected_by_uniform_velocity(unit_mesh):
    m = unit_mesh
    phi = np.hypot(m.x - 0.3, m.y - 0.5) - 0.2
    u, dt, nsteps = 0.3, 0.05, 20  # moves 0.3
    for _ in range(nsteps):
        phi = L.solve_levelset(m, phi, np.full(m.nv, u), np.zeros(m.nv), dt)
    exact = np.hypot(m.x - 0.6, m.y - 0.5) - 0.2
    agree = np.mean(np.sign(phi) == np.sign(exact))
    assert agree > 0.98
    ice = phi < 0
    assert abs(m.x[ice].mean() - 0.6) < 0.02 and abs(m.y[ice].mean() - 0.5) < 0.02


def test_reinitialize_gives_signed_distance_and_keeps_front(unit_mesh):
    m = unit_mesh
    r = np.hypot(m.x - 0.5, m.y - 0.5)
    phi = np.tanh(5 * (r - 0.25)) * (1 + m.x)  # same zero contour, far from a distance
    d = L.reinitialize(m, phi)
    assert np.array_equal(d > 0, phi > 0) and np.all(d[phi == 0] == 0)
    h = 1 / 60
    assert np.max(np.abs(d - (r - 0.25))) < 0.5 * h  # exact distance to the P1 contour ~ circle
    gx, gy = m.gradient(d)
    far = m.element_mean(r) > 0.05  # away from the centre kink
    assert np.median(np.abs(np.hypot(gx, gy)[far] - 1)) < 0.02
    # the zero contour of the P1 interpolant is kept: segments before and after lie within rounding
    s0, s1 = L.zero_contour_segments(m, phi), L.zero_contour_segments(m, d)
    assert s0.shape[0] > 50 and s1.shape[0] > 50
    d_mid = L.distance_to_front(m, d, points=(0.5 * (s0[:, 0] + s0[:, 2]), 0.5 * (s0[:, 1] + s0[:, 3])))
    assert np.max(d_mid) < 0.1 * h


def test_distance_matches_brute_force(unit_mesh):
    m = unit_mesh
    phi = np.sin(6 * m.x) + np.cos(5 * m.y) - 0.3
    segs = L.zero_contour_segments(m, phi)
    d = L.distance_to_front(m, phi)
    brute = np.min(L._point_segment_distance(m.x[:, None], m.y[:, None], segs[None, :, :]), axis=1)
    np.testing.assert_allclose(d, brute, rtol=0, atol=1e-12)


def test_steady_retreat_is_monotone():
    m = strip_mesh()
    v, c = 100.0 / YTS, 300.0 / YTS  # c > |v|: retreat at 200 m/yr
    st = front_state(m.nv, calvingrate=c, reinit=5)
    phi = m.x - 6.0e4
    H = np.full(m.nv, 500.0)
    dt = 10 * YTS
    positions = [front_position(m, phi)]
    for k in range(1, 11):
        up = L.advance_front(st, m, ice_levelset=phi, vx=np.full(m.nv, v), vy=np.zeros(m.nv), thickness=H,
                             base=np.full(m.nv, -400.0), bed=np.full(m.nv, -600.0),
                             ocean_levelset=np.full(m.nv, -1.0), dt=dt, step=k, time=k * dt)
        phi = up.ice_levelset
        positions.append(front_position(m, phi))
        row = np.flatnonzero(m.y == 0.0)
        row = row[np.argsort(m.x[row])]
        assert np.all(np.diff(phi[row]) > 0), "no node-to-node oscillation: phi increases along the flow"
    steps = -np.diff(positions)
    assert np.all(steps > 0)
    np.testing.assert_allclose(steps, 2000.0, rtol=0.1)
    np.testing.assert_allclose(up.calving_rate, c)
    near = np.abs(phi) < 5e3
    np.testing.assert_allclose(up.calving_rate_x[near], c, rtol=1e-3)  # n_hat = +x at the front


def test_frontal_melt_is_ignored_on_floating_ice_and_used_on_grounded():
    m = strip_mesh()
    st = front_state(m.nv, melt=500.0 / YTS)
    phi = m.x - 6.0e4
    dt = 10 * YTS
    kw = {"ice_levelset": phi, "vx": np.zeros(m.nv), "vy": np.zeros(m.nv), "thickness": np.full(m.nv, 500.0),
              "base": np.full(m.nv, -400.0), "bed": np.full(m.nv, -600.0), "dt": dt, "step": 1, "time": dt}
    floating = L.advance_front(st, m, ocean_levelset=np.full(m.nv, -1.0), **kw)
    grounded = L.advance_front(st, m, ocean_levelset=np.full(m.nv, 1.0), **kw)
    assert abs(front_position(m, floating.ice_levelset) - 6.0e4) < 1.0
    assert np.all(floating.frontal_melt_rate == 0.0)
    assert abs(front_position(m, grounded.ice_levelset) - (6.0e4 - 5000.0)) < 500.0


def test_migration_max_caps_front_speed():
    m = strip_mesh()
    phi = m.x - 4.0e4
    dt = 10 * YTS
    w = np.full(m.nv, 1000.0 / YTS)
    fast = L.solve_levelset(m, phi, w, np.zeros(m.nv), dt)
    capped = L.solve_levelset(m, phi, w, np.zeros(m.nv), dt, migration_max=100.0 / YTS)
    assert abs(front_position(m, fast) - 5.0e4) < 1.5e3
    assert abs(front_position(m, capped) - 4.1e4) < 300.0


def test_spclevelset_is_dirichlet():
    m = strip_mesh()
    phi = m.x - 4.0e4
    spc = np.full(m.nv, np.nan)
    spc[m.x == 0.0] = -123.0
    out = L.solve_levelset(m, phi, np.full(m.nv, 1e-6), np.zeros(m.nv), YTS, spclevelset=spc)
    assert np.all(out[m.x == 0.0] == -123.0)
    with pytest.raises(ModelInputError, match="md.levelset.stabilization"):
        L.solve_levelset(m, phi, np.zeros(m.nv), np.zeros(m.nv), YTS, stabilization=7)


def test_supg_and_streamline_options_move_the_front(unit_mesh):
    m = unit_mesh
    phi = m.x - 0.3
    for stab in (2, 5):
        out = phi.copy()
        for _ in range(10):
            out = L.solve_levelset(m, out, np.full(m.nv, 0.2), np.zeros(m.nv), 0.1, stabilization=stab)
        ice = out < 0
        assert abs(m.x[ice].max() - 0.5) < 0.04


def test_kill_icebergs_removes_detached_patch(unit_mesh):
    m = unit_mesh
    main = m.x < 0.4
    patch = (np.abs(m.x - 0.75) < 0.1) & (np.abs(m.y - 0.5) < 0.1)
    ls = np.where(main | patch, -1.0, 1.0)
    ocean = np.where(m.x < 0.2, 1.0, -1.0)  # grounded on the left
    out, nkilled = L.kill_icebergs(m, ls, ocean)
    assert nkilled > 0
    assert np.all(out[patch] > 0)
    assert np.all(out[m.x < 0.35] < 0)  # main body kept
    # a Dirichlet-velocity anchor keeps an all-floating shelf
    anchored = m.x == 0.0
    out2, _n2 = L.kill_icebergs(m, ls, np.full(m.nv, -1.0), anchored)
    assert np.all(out2[m.x < 0.35] < 0) and np.all(out2[patch] > 0)
    out3, _ = L.kill_icebergs(m, ls, np.full(m.nv, -1.0))  # ISSM's rule: no anchor, everything goes
    assert np.all(out3 > 0)


def test_extrapolation_and_ice_free_helpers(unit_mesh):
    m = unit_mesh
    ls = m.x - 0.5
    known = L.ice_vertex_mask(ls, m.elements)
    H = np.where(known, 300.0 + 100 * m.y, np.nan)
    He = L.extrapolate(m, np.nan_to_num(H), known)
    np.testing.assert_array_equal(He[known], H[known])
    assert np.all(np.isfinite(He)) and He.min() >= 300.0 - 1e-9 and He.max() <= 400.0 + 1e-9  # max principle
    assert np.ptp(He[~known]) > 10.0  # varies with y, smoothly
    Hc = L.extrapolate(m, np.where(known, 250.0, 0.0), known)
    np.testing.assert_allclose(Hc, 250.0, rtol=1e-10)  # a constant extends to itself
    Hf = L.ice_free_thickness(np.full(m.nv, 500.0), ls, m.elements, 1.0)
    assert np.all(Hf[~known] == 1.0) and np.all(Hf[known] == 500.0)
    assert L.ice_element_mask(ls, m.elements).sum() == np.any(ls[m.elements] < 0, axis=1).sum()
