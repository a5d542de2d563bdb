"""The transient loop's cached and reused quantities give the numbers of the uncached computation.

Memoised sub-element geometry and element masks (``P1Mesh.memo``), cut-element-only ``SubElementPart``,
column-wise reductions, and the mass transport's reuse of earlier LU factors
(``masstransport.TransportLinearSolver``); tiny meshes, no timings.
"""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.issm.adapter import read_model
from issm_emulator.physics import diagnostics, masks
from issm_emulator.physics import masstransport as mt
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers import transient
from issm_emulator.solvers.transient import TransientRun, run_transient
from tests.modelfactory import make_square_shelf_md, square_mesh

YTS = 365.0 * 24 * 3600


def _mesh(n=9, length=1e5):
    x, y, tri = square_mesh(n, n, length)
    return P1Mesh(x, y, tri)


def _levelset(pm, seed, zeros=True):
    rng = np.random.default_rng(seed)
    L = (pm.x - pm.x.mean()) * np.cos(seed) + (pm.y - pm.y.mean()) * np.sin(seed) + rng.normal(0, 5e3, pm.nv)
    if zeros:
        L[rng.choice(pm.nv, 4, replace=False)] = 0.0  # ISSM's nudge of zero values is exercised
    return L


class _WholeMeshPart:
    """The former whole-mesh SubElementPart (every element's sub-triangle computed): the reference."""

    def __init__(self, pmesh, levelset, positive):
        e = pmesh.elements
        L = np.asarray(levelset, float)[e]
        L = np.where(L == 0.0, L + 1.0e-15, L)
        side = L > 0.0 if positive else L < 0.0
        nin = side.sum(axis=1)
        self.area = np.abs(pmesh.area)
        self.whole = nin == 3
        cut = (nin == 1) | (nin == 2)
        ne = e.shape[0]
        rows = np.arange(ne)
        odd = np.where(nin == 1, np.argmax(side, axis=1), np.argmin(side, axis=1))
        gk = L[rows, odd]
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(cut, gk / (gk - L[rows, (odd + 1) % 3]), 0.0)
            f2 = np.where(cut, gk / (gk - L[rows, (odd + 2) % 3]), 0.0)
        self.cut = cut
        self.is_tri = cut & (nin == 1)
        self.tri_frac = f1 * f2
        T = np.zeros((ne, 3, 3))
        T[rows, 0, odd] = 1.0
        T[rows, 1, odd] = 1.0 - f1
        T[rows, 1, (odd + 1) % 3] = f1
        T[rows, 2, odd] = 1.0 - f2
        T[rows, 2, (odd + 2) % 3] = f2
        self.T = T
        self.elements = e
        self.fraction = np.where(self.whole, 1.0, np.where(cut, np.where(self.is_tri, self.tri_frac,
                                                                         1.0 - self.tri_frac), 0.0))

    def weights(self):
        wt = self.tri_frac[:, None] * self.T.mean(axis=1)
        full = np.full_like(wt, 1.0 / 3.0)
        return np.where(self.whole[:, None], full,
                        np.where(self.cut[:, None], np.where(self.is_tri[:, None], wt, full - wt), 0.0))

    def product_integral(self, f, g):
        fe, ge = np.asarray(f, float)[self.elements], np.asarray(g, float)[self.elements]

        def unit(a, b):
            return (np.sum(a * b, axis=1) + a.sum(axis=1) * b.sum(axis=1)) / 12.0

        whole = unit(fe, ge)
        tri = self.tri_frac * unit(np.einsum("ecv,ev->ec", self.T, fe), np.einsum("ecv,ev->ec", self.T, ge))
        part = np.where(self.whole, whole, np.where(self.cut, np.where(self.is_tri, tri, whole - tri), 0.0))
        return self.area * part


@pytest.mark.parametrize("positive", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cut_element_part_equals_whole_mesh_computation(positive, seed):
    pm = _mesh()
    L = _levelset(pm, seed)
    new, ref = diagnostics.SubElementPart(pm, L, positive), _WholeMeshPart(pm, L, positive)
    assert new.cut.any() and new.whole.any()
    np.testing.assert_array_equal(new.fraction, ref.fraction)
    np.testing.assert_array_equal(new.weights(), ref.weights())
    np.testing.assert_array_equal(new.tri_frac, ref.tri_frac)
    np.testing.assert_array_equal(new.is_tri, ref.is_tri)
    f, g = np.sin(pm.x / 2e4) + 2.0, np.cos(pm.y / 3e4) + 1.5
    np.testing.assert_array_equal(new.integral(f), ref.area * np.sum(ref.weights() * f[pm.elements], axis=1))
    np.testing.assert_allclose(new.product_integral(f, g), ref.product_integral(f, g), rtol=1e-15, atol=0)


def test_mesh_memo_hits_only_on_identical_values():
    pm = _mesh(5)
    calls = []
    a = np.linspace(0.0, 1.0, pm.nv)

    def compute():
        calls.append(1)
        return a.sum()

    assert pm.memo("k", (a,), compute) == pm.memo("k", (a.copy(),), compute)
    assert len(calls) == 1
    b = a.copy()
    b[3] = np.nextafter(b[3], 2.0)  # one ulp: a miss
    pm.memo("k", (b,), compute)
    assert len(calls) == 2
    a[0] = 5.0  # the memo keeps its own copy of the inputs: changing the caller's array is a miss
    pm.memo("k", (a,), compute)
    assert len(calls) == 3
    nan = np.full(pm.nv, np.nan)  # never equal: always recomputed, never wrong
    pm.memo("k", (nan,), compute)
    pm.memo("k", (nan,), compute)
    assert len(calls) == 5


def test_memoised_part_grounded_portion_and_floating_elements_equal_direct():
    pm = _mesh()
    for seed in range(4):
        L = _levelset(pm, seed)
        for positive in (False, True):
            part = diagnostics.sub_element_part(pm, L, positive)
            assert part is diagnostics.sub_element_part(pm, L.copy(), positive)
            np.testing.assert_array_equal(part.weights(), diagnostics.SubElementPart(pm, L, positive).weights())
        gp = transient.grounded_portion(pm, L)
        np.testing.assert_array_equal(gp, masks.grounded_portion(pm.elements, L))
        assert not gp.flags.writeable
        for mig in ("SubelementMigration", "Contact", "AggressiveMigration", "SoftMigration", "None"):
            fl = transient.floating_elements(pm, L, mig)
            ol = L[pm.elements]
            expected = {"SubelementMigration": ol.max(axis=1) <= 0.0, "Contact": ol.min(axis=1) < 0.0}.get(
                mig, ~(ol.min(axis=1) > 0.0))
            np.testing.assert_array_equal(fl, expected)
    # a level set of the memo's history again: still its own values
    L0 = _levelset(pm, 0)
    np.testing.assert_array_equal(transient.grounded_portion(pm, L0), masks.grounded_portion(pm.elements, L0))


def test_diagnostics_with_front_equal_whole_mesh_rules():
    """compute() with the memoised, cut-element-only part equals the whole-mesh formulas."""
    pm = _mesh()
    ice_ls, ocean_ls = _levelset(pm, 5), _levelset(pm, 6)
    s = 100.0 + pm.x / 1e3
    b = -50.0 + 0.0 * pm.x
    d = diagnostics.DiagnosticInputs(
        thickness=s - b, surface=s, base=b, bed=b - 10.0,
        grounded_fraction=masks.grounded_portion(pm.elements, ocean_ls),
        floating_elements=masks.floating_elements(pm.elements, ocean_ls, "SubelementMigration"),
        ice_elements=masks.ice_elements(pm.elements, ice_ls), smb=np.full(pm.nv, 1e-8),
        groundedice_melt=np.full(pm.nv, 2e-8), floatingice_melt=1e-8 * (1.0 + pm.y / 1e5), rho_ice=917.0,
        rho_water=1023.0, scale_factor=1.0 + pm.x / 1e6, ice_levelset=ice_ls, ocean_levelset=ocean_ls)
    ref = _WholeMeshPart(pm, ice_ls, False)
    e = pm.elements
    cut = d.ice_elements & diagnostics._front_cut(pm, ice_ls)
    assert cut.any()
    vert = s - b
    whole = np.abs(pm.area) * d.ice_elements * pm.element_mean(vert)
    sub = ref.area * np.sum(ref.weights() * vert[e], axis=1)
    expected = float(np.sum(np.where(d.ice_elements, np.where(cut, sub, whole), 0.0)))
    for _ in range(2):  # the second call uses the memoised part
        assert diagnostics.compute("IceVolume", pm, d) == expected
    oref = _WholeMeshPart(pm, ocean_ls, False)
    melt = oref.area * np.sum(oref.weights() * d.floatingice_melt[e], axis=1)
    assert diagnostics.compute("TotalFloatingBmb", pm, d) == float(917.0 * np.sum(np.where(d.ice_elements, melt,
                                                                                             0.0)))
    scaled = oref.product_integral(d.floatingice_melt, d.scale_factor)
    assert diagnostics.compute("TotalFloatingBmbScaled", pm, d) == pytest.approx(
        float(917.0 * np.sum(np.where(d.ice_elements, scaled, 0.0))), rel=1e-15)


def _solve(pm, H, vx, vy, dt, solver=None, ice=None, spc=None):
    nv = pm.nv
    return mt.solve_thickness(pm, thickness=H, vx=vx, vy=vy, dt=dt, smb=np.full(nv, 1e-8),
                              groundedice_melt=np.zeros(nv), floatingice_melt=np.full(nv, 3e-9),
                              grounded_fraction=np.ones(pm.ne), ice_elements=ice, spcthickness=spc,
                              stabilization=1, linear_solver=solver).thickness


def test_transport_solver_reusing_factors_equals_direct_solve():
    pm = _mesh(13)
    solver = mt.TransportLinearSolver()
    H = 500.0 + 200.0 * np.sin(pm.x / 3e4) * np.cos(pm.y / 4e4)
    spc = np.full(pm.nv, np.nan)
    spc[pm.x == 0.0] = 600.0
    dt = YTS / 12.0
    for k in range(30):
        # a velocity that changes from step to step, as the stress balance's
        vx = (300.0 + 5.0 * k) / YTS * (1.0 + pm.y / 1e5)
        vy = (50.0 - 2.0 * k) / YTS * np.sin(pm.x / 2e4)
        direct = _solve(pm, H, vx, vy, dt, spc=spc)
        reused = _solve(pm, H, vx, vy, dt, solver, spc=spc)
        np.testing.assert_allclose(reused, direct, rtol=1e-14, atol=0)
        H = direct
    st = solver.stats
    assert st["refined_solves"] > 0 and st["factorizations"] < 30
    assert st["factorizations"] + st["refined_solves"] == 30
    # a very different matrix (a hundred times longer step): refinement fails and it factorises, same result
    n = st["factorizations"]
    vx, vy = 3e4 / YTS * np.ones(pm.nv), -2e4 / YTS * np.ones(pm.nv)
    np.testing.assert_allclose(_solve(pm, H, vx, vy, 100 * dt, solver, spc=spc),
                               _solve(pm, H, vx, vy, 100 * dt, spc=spc), rtol=1e-14, atol=0)
    assert solver.stats["factorizations"] == n + 1
    # another free-dof set (ice domain): another reduced system, factorised afresh
    ice = pm.x[pm.elements].mean(axis=1) < 6e4
    n = solver.stats["factorizations"]
    np.testing.assert_allclose(_solve(pm, H, vx, vy, dt, solver, ice=ice, spc=spc),
                               _solve(pm, H, vx, vy, dt, ice=ice, spc=spc), rtol=1e-14, atol=0)
    assert solver.stats["factorizations"] == n + 1


def test_transient_run_equals_direct_solves(monkeypatch):
    """A transient with the run's mass-transport solver equals one with a direct solve at every step."""
    md = make_square_shelf_md(7, 7, grounded_part=True)
    md.timestepping.time_step = 0.25
    md.timestepping.final_time = 3.0
    md.transient.isgroundingline = 1
    md.groundingline.migration = "SubelementMigration"
    md.transient.requested_outputs = ["default", "IceVolume", "IceVolumeAboveFloatation", "GroundedArea",
                                      "FloatingArea", "TotalFloatingBmb", "TotalGroundedBmb"]
    state = read_model(md, "Transient")
    pm = P1Mesh.from_mesh(state.mesh)

    def velocity(st, geo, vx, vy, t, step):  # changes every step, costs nothing
        f = 1.0 + 0.02 * step
        return (100.0 * f / YTS) * (1.0 + pm.y / pm.y.max()), (20.0 * f / YTS) * np.sin(pm.x / 1e5), {}

    refined = []
    refine = mt._refine
    monkeypatch.setattr(mt, "_refine", lambda *a: refined.append(refine(*a)) or refined[-1])
    reused = run_transient(state, velocity, pmesh=pm, solver_name="test")
    assert sum(x is not None for x, _ in refined) > 6  # most steps reused earlier factors
    monkeypatch.setattr(mt.TransportLinearSolver, "solve",
                        lambda self, A, b, system=None: self._direct(A, b, system))
    direct = run_transient(state, velocity, pmesh=pm, solver_name="test")
    assert len(reused.steps) == len(direct.steps) == 12
    for a, b in zip(reused.steps, direct.steps):
        assert a["Thickness"].shape == (pm.nv,) and "MaskOceanLevelset" in a
        for name in ("Thickness", "Surface", "Base", "MaskOceanLevelset"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-13, atol=1e-10)
        for name in md.transient.requested_outputs[1:]:
            assert a[name] == pytest.approx(b[name], rel=1e-13, abs=1e-6)


def test_each_run_keeps_its_own_transport_solver():
    md = make_square_shelf_md(5, 5)
    state = read_model(md, "Transient")
    pm = P1Mesh.from_mesh(state.mesh)
    a, b = TransientRun(state, pm, solver_name="x"), TransientRun(state, pm, solver_name="x", member=1)
    assert a.masstransport_solver is not b.masstransport_solver
