"""Solver-level tests of the SSA stress balance (:mod:`issm_emulator.physics.ssa`), its friction laws and the
element classification helpers, on hand-made model states (no data files needed)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError, SolverDivergedError
from issm_emulator.physics import masks
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.physics.friction import alpha2_at_points, basal_stress, effective_pressure
from issm_emulator.physics.ssa import deviatoric_stress, solve_ssa, strain_rates
from issm_emulator.state import (
    BasalForcings,
    Calving,
    Forcing,
    Friction,
    Geometry,
    GroundinglineSettings,
    LevelsetSettings,
    Masks,
    MasstransportSettings,
    Materials,
    Mesh,
    ModelState,
    StressbalanceSettings,
    Timestepping,
    TransientFlags,
)

RHO_I, RHO_W, G = 917.0, 1023.0, 9.81
DI = RHO_I / RHO_W
B = 1.8157e8
YTS = 365.0 * 24 * 3600


def rect_mesh(nx: int, ny: int, lx: float, ly: float, mirror: bool = False):
    """Structured triangles on [0, lx] x [0, ly]; with ``mirror`` the lower half is reflected onto the upper
    half so that the mesh is symmetric about y = ly / 2."""
    if mirror:
        x, y, t = rect_mesh(nx, ny, lx, ly / 2)
        top = np.isclose(y, ly / 2)
        idx = np.arange(x.size)
        new = np.flatnonzero(~top)
        mapping = idx.copy()
        mapping[new] = x.size + np.arange(new.size)
        x2 = np.concatenate([x, x[new]])
        y2 = np.concatenate([y, ly - y[new]])
        t2 = mapping[t][:, ::-1]  # reflection reverses orientation
        return x2, y2, np.concatenate([t, t2])
    xs, ys = np.meshgrid(np.linspace(0, lx, nx), np.linspace(0, ly, ny))
    x, y = xs.ravel(), ys.ravel()
    i, j = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1))
    v0 = (j * nx + i).ravel()
    v1, v2, v3 = v0 + 1, v0 + nx + 1, v0 + nx
    t = np.concatenate([np.stack([v0, v1, v2], 1), np.stack([v0, v2, v3], 1)])
    return x, y, t.astype(np.int64)


def make_state(x, y, t, *, H, base, ocean, ice, spcvx, spcvy, friction=None, restol=1e-8, reltol=np.nan,
               maxiter=100, migration="None", interp="SubelementFriction1", sealevel=0.0, vx=None, vy=None):
    nv, ne = x.size, t.shape[0]
    z = np.zeros(nv)
    f0 = Forcing(z)
    if friction is None:
        friction = Friction("budd", {"coefficient": z, "p": np.ones(ne), "q": np.ones(ne)})
    return ModelState(
        mesh=Mesh(x, y, t, np.zeros(nv, bool), None),
        geometry=Geometry(H, base + H, base, np.full(nv, np.nan)),
        masks=Masks(ocean, ice),
        vx=z if vx is None else vx, vy=z if vy is None else vy,
        materials=Materials(RHO_I, RHO_W, 1000.0, np.full(nv, B), np.full(ne, 3.0)),
        friction=friction, smb=f0, basalforcings=BasalForcings("default", f0, f0),
        calving=Calving("default", {}), frontal_meltingrate=f0,
        stressbalance=StressbalanceSettings(spcvx, spcvy, restol, reltol, np.nan, maxiter, 0),
        masstransport=MasstransportSettings(Forcing(np.full(nv, np.nan)), 1.0, 1, "Absolute"),
        levelset=LevelsetSettings(1, 10, 1, 1e12 / YTS, Forcing(np.full(nv, np.nan))),
        groundingline=GroundinglineSettings(migration, interp, "NoMeltOnPartiallyFloating"),
        timestepping=Timestepping(0.0, YTS, YTS, 1), transient=TransientFlags(1, 1, 1, 0, 0),
        g=G, yts=YTS, sealevel=sealevel)


def solve(state, **kw):
    g = state.geometry
    args = {"thickness": g.thickness, "surface": g.surface, "base": g.base,
            "ocean_levelset": state.masks.ocean_levelset, "ice_levelset": state.masks.ice_levelset,
            "vx0": state.vx, "vy0": state.vy}
    args.update(kw)
    return solve_ssa(state, **args)


def shelf_ramp(nx=41, ny=3, L=2.0e5, W=2.0e4, H0=600.0, slope=1.5e-3, u0=100.0 / YTS):
    """Unconfined floating ramp: inflow u0 at x=0, free-slip sides, calving front at x=L."""
    x, y, t = rect_mesh(nx, ny, L, W)
    H = H0 - slope * x
    base = -DI * H
    nv = x.size
    ice = -np.ones(nv)
    ice[np.isclose(x, L)] = 0.0
    spcvx = np.full(nv, np.nan)
    spcvy = np.full(nv, np.nan)
    spcvx[np.isclose(x, 0)] = u0
    spcvy[np.isclose(x, 0) | np.isclose(y, 0) | np.isclose(y, W)] = 0.0
    return make_state(x, y, t, H=H, base=base, ocean=-np.ones(nv), ice=ice, spcvx=spcvx, spcvy=spcvy)


def ramp_exact(x, H0, slope, u0):
    """u(x) = u0 + int_0^x (rho_i g (1-di) H / (4B))^3 dx for H = H0 - slope x (n = 3)."""
    c = RHO_I * G * (1 - DI) / (4 * B)
    Hx = H0 - slope * x
    return u0 + c ** 3 * (H0 ** 4 - Hx ** 4) / (4 * slope)


def test_unconfined_ramp_matches_1d_analytic_solution():
    st = shelf_ramp()
    r = solve(st)
    assert r.converged and r.residual < 1e-8
    x = st.mesh.x
    exact = ramp_exact(x, 600.0, 1.5e-3, 100.0 / YTS)
    err = np.max(np.abs(r.vx - exact)) / np.max(np.abs(exact))
    assert err < 2e-3, err
    assert np.max(np.abs(r.vy)) < 1e-4 * np.max(np.abs(r.vx))
    # second order convergence of the P1 discretisation: a finer mesh is clearly better
    st2 = shelf_ramp(nx=81)
    r2 = solve(st2)
    err2 = np.max(np.abs(r2.vx - ramp_exact(st2.mesh.x, 600.0, 1.5e-3, 100.0 / YTS))) / np.max(np.abs(exact))
    assert err2 < 0.7 * err


def test_constant_thickness_shelf_has_exact_uniform_strain_rate():
    st = shelf_ramp(slope=0.0 + 1e-12, H0=500.0)  # (almost) uniform thickness: linear velocity, exact in P1
    r = solve(st)
    exx = strain_rates(P1Mesh.from_mesh(st.mesh), r.vx, r.vy)["exx"]
    expected = (RHO_I * G * (1 - DI) * 500.0 / (4 * B)) ** 3
    np.testing.assert_allclose(exx, expected, rtol=1e-6)


def test_dirichlet_values_are_honoured_exactly():
    st = shelf_ramp(u0=321.0 / YTS)
    r = solve(st)
    fx = ~np.isnan(st.stressbalance.spcvx)
    fy = ~np.isnan(st.stressbalance.spcvy)
    assert np.array_equal(r.vx[fx], st.stressbalance.spcvx[fx])
    assert np.array_equal(r.vy[fy], st.stressbalance.spcvy[fy])


def confined_shelf(mirror=True, grounded=False, friction=None, **kw):
    L = W = 3.0e5
    x, y, t = rect_mesh(9, 9, L, W, mirror=mirror)
    nv = x.size
    H = 800.0 - 1.5e-3 * x
    base = -DI * H + (50.0 if grounded else 0.0)
    ice = -np.ones(nv)
    ice[np.isclose(x, L)] = 0.0
    spc = np.full(nv, np.nan)
    walls = np.isclose(x, 0) | np.isclose(y, 0) | np.isclose(y, W)
    spc[walls] = 0.0
    ocean = np.ones(nv) if grounded else -np.ones(nv)
    return make_state(x, y, t, H=H, base=base, ocean=ocean, ice=ice, spcvx=spc, spcvy=spc.copy(),
                      friction=friction, **kw)


def _mirror_index(st):
    x, y = st.mesh.x, st.mesh.y
    key = {(round(a, 3), round(b, 3)): i for i, (a, b) in enumerate(zip(x, y))}
    return np.array([key[(round(a, 3), round(3.0e5 - b, 3))] for a, b in zip(x, y)])


def test_symmetric_setup_gives_symmetric_flow():
    st = confined_shelf()
    r = solve(st)
    m = _mirror_index(st)
    scale = np.max(np.abs(r.vx))
    assert scale > 0
    np.testing.assert_allclose(r.vx[m], r.vx, atol=1e-9 * scale)
    np.testing.assert_allclose(r.vy[m], -r.vy, atol=1e-9 * scale)
    assert np.max(r.vx) > 0  # flows towards the front


def test_friction_slows_the_flow_and_all_laws_run():
    nv = confined_shelf(grounded=True).numberofvertices
    ne = confined_shelf(grounded=True).numberofelements
    free = solve(confined_shelf(grounded=True)).vx.max()
    budd = Friction("budd", {"coefficient": np.full(nv, 20.0), "p": np.ones(ne), "q": np.ones(ne)})
    weert = Friction("weertman", {"C": np.full(nv, 2e4), "m": np.full(ne, 3.0)})
    coul = Friction("coulomb", {"coefficient": np.full(nv, 20.0), "coefficientcoulomb": np.full(nv, 0.02),
                                "p": np.ones(ne), "q": np.ones(ne)})
    speeds = {}
    for name, fr in (("budd", budd), ("weertman", weert), ("coulomb", coul)):
        r = solve(confined_shelf(grounded=True, friction=fr, restol=1e-6), vx0=np.full(nv, 1e-6))
        assert r.converged, name
        speeds[name] = r.vx.max()
        assert 0 < speeds[name] < free, name
    # Coulomb caps the Budd drag, so it is faster than Budd with the same coefficient
    assert speeds["coulomb"] >= speeds["budd"]


def test_no_friction_under_floating_ice():
    nv = confined_shelf().numberofvertices
    ne = confined_shelf().numberofelements
    budd = Friction("budd", {"coefficient": np.full(nv, 50.0), "p": np.ones(ne), "q": np.ones(ne)})
    a = solve(confined_shelf())
    b = solve(confined_shelf(friction=budd))
    np.testing.assert_allclose(b.vx, a.vx, rtol=1e-12, atol=1e-18)


def test_partly_grounded_friction_interpolations_and_migration_rules():
    st = confined_shelf(grounded=True)
    nv, ne = st.numberofvertices, st.numberofelements
    x = st.mesh.x
    ocean = np.where(x < 1.3e5, 1.0, -1.0) * np.abs(x - 1.3e5) / 1e4  # continuous level set
    fr = Friction("budd", {"coefficient": np.full(nv, 30.0), "p": np.ones(ne), "q": np.ones(ne)})
    out = {}
    for mig, interp in (("None", "SubelementFriction1"), ("SubelementMigration", "SubelementFriction1"),
                        ("SubelementMigration", "SubelementFriction2"),
                        ("SubelementMigration", "NoFrictionOnPartiallyFloating")):
        s = replace(confined_shelf(grounded=True, friction=fr), masks=Masks(ocean, st.masks.ice_levelset),
                    groundingline=GroundinglineSettings(mig, interp, "NoMeltOnPartiallyFloating"))
        out[(mig, interp)] = solve(s).vx.max()
    # more grounded friction area -> slower: 'None' drops every cut element, SF1/SF2 keep their grounded part
    assert out[("None", "SubelementFriction1")] > out[("SubelementMigration", "SubelementFriction1")]
    assert out[("SubelementMigration", "NoFrictionOnPartiallyFloating")] > out[("SubelementMigration",
                                                                                "SubelementFriction1")]
    sf1, sf2 = out[("SubelementMigration", "SubelementFriction1")], out[("SubelementMigration", "SubelementFriction2")]
    assert abs(sf1 - sf2) < 0.05 * sf1


def test_vertices_without_ice_are_held_at_zero():
    st = confined_shelf(mirror=False)
    x = st.mesh.x
    L = 3.0e5
    ice = np.where(x > 0.76 * L, 1.0, -1.0)  # last columns ice free
    ice[np.isclose(x, 0.75 * L)] = 0.0
    s = replace(st, masks=Masks(st.masks.ocean_levelset, ice))
    r = solve(s)
    el = st.mesh.elements
    has_ice = masks.ice_elements(el, ice)
    active = np.zeros(x.size, bool)
    active[el[has_ice].ravel()] = True
    assert np.all(r.vx[~active] == 0) and np.all(r.vy[~active] == 0)
    assert np.max(np.abs(r.vx[active])) > 0


def test_strict_mode_raises_when_maxiter_is_reached():
    st = confined_shelf(restol=1e-12, maxiter=2)
    r = solve(st)
    assert not r.converged and r.niter == 2
    with pytest.raises(SolverDivergedError) as info:
        solve(st, strict=True)
    assert info.value.residual is not None and info.value.residual > 1e-12


def test_nan_input_raises_diverged_error():
    st = confined_shelf()
    H = st.geometry.thickness.copy()
    H[5] = np.nan
    with pytest.raises(SolverDivergedError):
        solve(st, thickness=H)


def test_newton_converges_faster_to_the_same_solution():
    st = shelf_ramp(nx=21, ny=5)
    st = replace(st, stressbalance=replace(st.stressbalance, restol=1e-10))
    nv = st.numberofvertices
    p = solve(st, isnewton=0, vx0=np.full(nv, 1e-6))
    n1 = solve(st, isnewton=1, vx0=np.full(nv, 1e-6))
    n2 = solve(st, isnewton=2, vx0=np.full(nv, 1e-6))
    assert p.converged and n1.converged and n2.converged
    assert n1.niter < p.niter and n2.niter < p.niter
    np.testing.assert_allclose(n1.vx, p.vx, rtol=1e-6)
    np.testing.assert_allclose(n2.vx, p.vx, rtol=1e-6)


def test_stopping_rule_is_issms():
    """The first iteration's residual is measured at the initial guess; a loose restol stops early."""
    st = shelf_ramp(nx=21)
    exact = ramp_exact(st.mesh.x, 600.0, 1.5e-3, 100.0 / YTS)
    loose = replace(st, stressbalance=replace(st.stressbalance, restol=0.5, reltol=np.nan))
    r = solve(loose, vx0=exact * 1.05, vy0=np.zeros_like(exact))
    assert r.niter == 1 and r.converged and 0 < r.residual < 0.5
    tight = replace(st, stressbalance=replace(st.stressbalance, restol=1e-3, reltol=1e-9))
    r2 = solve(tight, vx0=exact * 1.05, vy0=np.zeros_like(exact))
    assert r2.niter > 1


def test_bad_inputs_name_the_md_field():
    st = confined_shelf()
    with pytest.raises(ModelInputError, match="md.geometry.thickness"):
        solve(st, thickness=np.ones(3))
    bad = replace(st, groundingline=GroundinglineSettings("Sideways", "SubelementFriction1", "x"))
    with pytest.raises(ModelInputError, match="md.groundingline.migration"):
        solve(bad)
    with pytest.raises(ModelInputError, match="md.stressbalance.isnewton"):
        solve(st, isnewton=7)


def test_deviatoric_stress_is_twice_viscosity_times_strain_rate():
    st = shelf_ramp()
    r = solve(st)
    mesh = P1Mesh.from_mesh(st.mesh)
    e = strain_rates(mesh, r.vx, r.vy)
    d = deviatoric_stress(mesh, r.vx, r.vy, st.materials.rheology_B, 3.0)
    mu = B / (2 * e["eeff"] ** (2 / 3))
    np.testing.assert_allclose(d["xx"], 2 * mu * e["exx"], rtol=1e-12)
    # unconfined shelf: 2 tau_xx + tau_yy... with eyy = 0, tau_xx = 2 mu exx and H tau_xx balances the front
    dn = deviatoric_stress(mesh, r.vx, r.vy, st.materials.rheology_B, 3.0, nodal=True)
    assert dn["xx"].shape == (mesh.nv,)
    np.testing.assert_allclose(dn["xx"], mesh.nodal_average(d["xx"]), rtol=1e-12)


# ---------------------------------------------------------------------------------------- masks / friction
def test_grounded_portion_matches_area_of_positive_part():
    el = np.array([[0, 1, 2]] * 5)
    cases = np.array([[1.0, -1.0, -1.0], [1.0, 1.0, -1.0], [1.0, 1.0, 1.0], [-1.0, -1.0, -1.0],
                      [0.0, -1.0, -1.0]])
    phi = np.array([masks.grounded_portion(el[:1], c)[0] for c in cases])
    np.testing.assert_allclose(phi[:4], [0.25, 0.75, 1.0, 0.0])
    assert 0 <= phi[4] < 1e-20  # zero counts as (barely) grounded
    # SubelementFriction2 quadrature integrates 1 over the grounded part exactly
    pts = np.array([[2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
    for c, expect in zip(cases[:4], [0.25, 0.75, 1.0, 0.0]):
        bary, w = masks.subelement_gauss(el[:1], c, pts, np.full(3, 1 / 3))
        assert w.sum() == pytest.approx(expect)
        np.testing.assert_allclose(bary.sum(axis=2), 1.0)


def test_floating_rule_depends_on_migration():
    el = np.array([[0, 1, 2]])
    ol = np.array([1.0, 1.0, -1.0])
    assert masks.floating_elements(el, ol, "None")[0]
    assert masks.floating_elements(el, ol, "AggressiveMigration")[0]
    assert not masks.floating_elements(el, ol, "SubelementMigration")[0]
    assert masks.floating_elements(el, -np.ones(3), "SubelementMigration")[0]


def test_front_edges_and_outward_normal():
    el = np.array([[0, 1, 2], [1, 3, 2], [0, 2, 4]])
    ls = np.array([-1.0, 0.0, 0.0, 1.0, -2.0])
    # ISSM: a front element has exactly one vertex with ice_levelset < 0
    assert list(masks.front_elements(el, ls)) == [True, False, False]
    elem, loc, ice_loc = masks.front_edges(el, ls)
    assert list(elem) == [0] and ice_loc[0] == 0 and list(loc[0]) == [1, 2]
    assert list(masks.ice_elements(el, ls)) == [True, False, True]


def test_friction_laws_formulae():
    fr = Friction("budd", {"coefficient": np.array([10.0, 10.0, 10.0]), "p": np.array([1.0]), "q": np.array([1.0])})
    el = np.array([[0, 1, 2]])
    bary = np.array([[1.0, 0, 0]])
    H = np.full(3, 1000.0)
    b = np.array([-500.0, -950.0, -500.0])
    kw = {"nv": 3, "ne": 1, "elem": np.array([0]), "elements": el, "bary": bary, "thickness": H, "base": b,
          "vx": np.full(3, 1e-5), "vy": np.zeros(3), "rho_ice": RHO_I, "rho_water": RHO_W, "g": G,
          "sealevel": 0.0}
    N = RHO_I * G * 1000 - RHO_W * G * 500
    assert alpha2_at_points(fr, **kw).alpha2[0, 0] == pytest.approx(100 * N)
    kw2 = {**kw, "bary": np.array([[0, 1.0, 0]])}
    assert alpha2_at_points(fr, **kw2).alpha2[0, 0] == 0.0  # N < 0 clipped
    w = Friction("weertman", {"C": np.full(3, 3.0), "m": np.array([3.0])})
    a = alpha2_at_points(w, **kw)
    assert a.alpha2[0, 0] == pytest.approx(9 * 1e-5 ** (1 / 3 - 1)) and a.dlog[0, 0] == pytest.approx(-2 / 3)
    c = Friction("coulomb", {"coefficient": np.full(3, 10.0), "coefficientcoulomb": np.full(3, 0.02),
                             "p": np.array([1.0]), "q": np.array([1.0])})
    assert alpha2_at_points(c, **kw).alpha2[0, 0] == pytest.approx(min(100 * N, 4e-4 * N / 1e-5))
    limited = Friction("budd", fr.fields, coupling=0, effective_pressure_limit=0.1)
    Nl = effective_pressure(limited, np.array([1000.0]), np.array([-950.0]), rho_ice=RHO_I, rho_water=RHO_W,
                            g=G, sealevel=0.0)
    assert Nl[0] == pytest.approx(0.1 * RHO_I * G * 1000)
    tx, ty = basal_stress(fr, vx=np.full(3, 1e-5), vy=np.zeros(3), thickness=H, base=b, rho_ice=RHO_I,
                          rho_water=RHO_W, g=G, sealevel=0.0)
    assert tx[0] == pytest.approx(-100 * N * 1e-5) and np.all(ty == 0)
    with pytest.raises(ModelInputError, match="md.friction"):
        alpha2_at_points(Friction("magic", {}), **kw)
