"""Grounding-line migration (None, Aggressive, Soft, Subelement) and the integrated diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError
from issm_emulator.physics import diagnostics
from issm_emulator.physics import groundingline as gl
from issm_emulator.physics.fe import P1Mesh
from tests.modelfactory import square_mesh

RI, RW = 917.0, 1023.0
DI = RI / RW


def _flood_fill_reference(elements, phi, pu):
    """ISSM's PropagateFloatingiceToGroundedNeighbors, element by element until nothing flips."""
    flags = phi.copy()
    while True:
        touching = [e for e in elements if np.any(flags[e] < 0)]
        flipped = 0
        new = flags.copy()
        for e in touching:
            for v in e:
                if pu[v]:
                    if new[v] >= 0:
                        flipped += 1
                    new[v] = -1.0
        flags = new
        if not flipped:
            return pu & (flags < 0)


def test_none_changes_nothing():
    h = np.array([100.0, 200.0])
    r = gl.migrate("None", elements=np.zeros((0, 3), int), thickness=h, base=np.array([-1.0, -2.0]),
                   surface=np.array([1.0, 2.0]), bed=np.array([np.nan, np.nan]), ocean_levelset=np.array([1.0, -1.0]),
                   rho_ice=RI, rho_water=RW)
    np.testing.assert_array_equal(r.ocean_levelset, [1.0, -1.0])
    np.testing.assert_array_equal(r.base, [-1.0, -2.0])


@pytest.mark.parametrize("migration", ["AggressiveMigration", "SubelementMigration"])
def test_aggressive_unground_and_reground(migration):
    H = np.array([1000.0, 1000.0, 500.0, 500.0])
    bed = np.array([-950.0, -800.0, -400.0, -600.0])
    phi = np.array([1.0, 1.0, -1.0, -1.0])
    base = np.array([-950.0, -800.0, -DI * 500, -DI * 500])
    r = gl.migrate(migration, elements=np.array([[0, 1, 2], [1, 3, 2]]), thickness=H, base=base,
                   surface=base + H, bed=bed, ocean_levelset=phi, rho_ice=RI, rho_water=RW)
    # vertex 0: hydrostatic base -896 is above the bed -950 -> floats; vertex 1 stays grounded
    np.testing.assert_allclose(r.base, [-DI * 1000, -800.0, -400.0, -DI * 500])
    np.testing.assert_allclose(r.surface, [(1 - DI) * 1000, 200.0, 100.0, (1 - DI) * 500])
    np.testing.assert_allclose(r.ocean_levelset, H + bed / DI)
    assert list(np.sign(r.ocean_levelset)) == [-1, 1, 1, -1]


def test_sealevel_shifts_everything():
    H = np.array([1000.0, 1000.0, 500.0])
    bed = np.array([-950.0, -800.0, -600.0])
    phi = np.array([1.0, 1.0, -1.0])
    base = np.array([-950.0, -800.0, -DI * 500])
    kw = dict(elements=np.array([[0, 1, 2]]), rho_ice=RI, rho_water=RW)
    r0 = gl.migrate("AggressiveMigration", thickness=H, base=base, surface=base + H, bed=bed, ocean_levelset=phi, **kw)
    r1 = gl.migrate("AggressiveMigration", thickness=H, base=base + 1000, surface=base + H + 1000, bed=bed + 1000,
                    ocean_levelset=phi, sealevel=1000.0, **kw)
    np.testing.assert_allclose(r1.base, r0.base + 1000)
    np.testing.assert_allclose(r1.ocean_levelset, r0.ocean_levelset, atol=1e-9)


def test_soft_migration_floods_only_connected_vertices():
    # strip of 8 x 3 vertices; floating on the right (x index 6, 7); potentially ungrounding vertices at
    # x index 4, 5 (connected to the floating part) and x index 1 (isolated by grounded x index 2, 3)
    x, _, tri = square_mesh(8, 3, 7.0)
    nv = x.size
    col = np.rint(x).astype(int)
    H = np.full(nv, 1000.0)
    phi = np.where(col >= 6, -1.0, 1.0)
    bed = np.where(np.isin(col, [1, 4, 5]), -1000.0, -500.0)  # -1000 < -di*1000: would float
    base = np.where(phi > 0, bed, -DI * H)
    r = gl.migrate("SoftMigration", elements=tri, thickness=H, base=base, surface=base + H, bed=bed,
                   ocean_levelset=phi, rho_ice=RI, rho_water=RW)
    ungrounded = np.isin(col, [4, 5])
    np.testing.assert_allclose(r.base[ungrounded], -DI * 1000)
    np.testing.assert_allclose(r.base[col == 1], -1000.0)  # not reached: stays grounded
    np.testing.assert_allclose(r.ocean_levelset[col == 1], 1.0)  # and keeps its old level set
    np.testing.assert_allclose(r.ocean_levelset[col != 1], (H + bed / DI)[col != 1])
    agg = gl.migrate("AggressiveMigration", elements=tri, thickness=H, base=base, surface=base + H, bed=bed,
                     ocean_levelset=phi, rho_ice=RI, rho_water=RW)
    np.testing.assert_allclose(agg.base[col == 1], -DI * 1000)


@pytest.mark.parametrize("seed", range(5))
def test_flood_fill_matches_issm_iteration(seed):
    rng = np.random.default_rng(seed)
    x, _, tri = square_mesh(9, 9, 1.0)
    phi = np.where(rng.random(x.size) < 0.15, -1.0, 1.0)
    pu = (phi > 0) & (rng.random(x.size) < 0.5)
    got = gl.soft_ungrounding_flags(tri, phi, pu)
    np.testing.assert_array_equal(got, _flood_fill_reference(tri, phi, pu))


def test_migration_errors():
    kw = dict(elements=np.array([[0, 1, 2]]), thickness=np.ones(3), base=np.zeros(3), surface=np.ones(3),
              ocean_levelset=np.ones(3), rho_ice=RI, rho_water=RW)
    with pytest.raises(ModelInputError, match="md.groundingline.migration"):
        gl.migrate("Fast", bed=np.zeros(3), **kw)
    with pytest.raises(ModelInputError, match="md.geometry.bed"):
        gl.migrate("SoftMigration", bed=np.array([0.0, np.nan, 0.0]), **kw)


# ------------------------------------------------------------------------------------------ diagnostics
def _inputs(pm, **kw):
    nv, ne = pm.nv, pm.ne
    d = dict(thickness=np.full(nv, 100.0), surface=np.full(nv, 10.0), base=np.full(nv, -90.0),
             bed=np.full(nv, -200.0), grounded_fraction=np.ones(ne), floating_elements=np.zeros(ne, bool),
             ice_elements=np.ones(ne, bool), smb=np.full(nv, 1.0), groundedice_melt=np.full(nv, 2.0),
             floatingice_melt=np.full(nv, 3.0), rho_ice=RI, rho_water=RW)
    d.update(kw)
    return diagnostics.DiagnosticInputs(**d)


def test_diagnostics_values():
    x, y, tri = square_mesh(5, 5, 1000.0)
    pm = P1Mesh(x, y, tri)
    frac = np.where(pm.element_mean(pm.x) < 500, 1.0, 0.25)
    d = _inputs(pm, grounded_fraction=frac, floating_elements=frac < 1)
    area = np.abs(pm.area)
    assert diagnostics.compute("IceVolume", pm, d) == pytest.approx(100.0 * 1e6)
    assert diagnostics.compute("GroundedArea", pm, d) == pytest.approx(np.sum(area * frac))
    assert diagnostics.compute("FloatingArea", pm, d) == pytest.approx(np.sum(area * (1 - frac)))
    assert diagnostics.compute("GroundedArea", pm, d) + diagnostics.compute("FloatingArea", pm, d) == \
        pytest.approx(1e6)
    haf = 100.0 + min(RW / RI * -200.0, 0.0)
    assert diagnostics.compute("IceVolumeAboveFloatation", pm, d) == pytest.approx(haf * np.sum(area[frac == 1]))
    assert diagnostics.compute("TotalSmb", pm, d) == pytest.approx(RI * 1.0 * 1e6)
    assert diagnostics.compute("TotalGroundedBmb", pm, d) == pytest.approx(RI * 2.0 * np.sum(area * frac))
    assert diagnostics.compute("TotalFloatingBmb", pm, d) == pytest.approx(RI * 3.0 * np.sum(area * (1 - frac)))
    d2 = _inputs(pm, scale_factor=np.full(pm.nv, 1.1))
    assert diagnostics.compute("GroundedAreaScaled", pm, d2) == pytest.approx(1.1e6)
    half_ice = _inputs(pm, ice_elements=pm.element_mean(pm.y) < 500)
    assert diagnostics.compute("IceVolume", pm, half_ice) == pytest.approx(50e6)
    with pytest.raises(KeyError):
        diagnostics.compute("IceMass", pm, d)
    with pytest.raises(ValueError, match="scale_factor"):
        diagnostics.compute("IceVolumeScaled", pm, d)
