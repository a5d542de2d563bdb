"""ISSM parity with moving fronts (issue #16, items 7-8 of #15): hand-checked small cases of ISSM's rules.

Every expected value here is worked out by hand (in the comments) from the rule ISSM's C++ applies
(``Tria::IceVolume``, ``Tria::TotalFloatingBmb``, ``FemModel::DistanceToFieldValue``, ...), not taken
from this package's output.
"""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.physics import diagnostics
from issm_emulator.physics.fe import P1Mesh

RI, RW = 917.0, 1023.0


def _one_triangle() -> P1Mesh:
    # (0,0), (2,0), (0,2): area 2, counter-clockwise
    return P1Mesh(np.array([0.0, 2.0, 0.0]), np.array([0.0, 0.0, 2.0]), np.array([[0, 1, 2]]))


def _inputs(pm, **kw):
    nv, ne = pm.nv, pm.ne
    d = dict(thickness=np.full(nv, 100.0), surface=np.full(nv, 10.0), base=np.full(nv, -90.0),
             bed=np.full(nv, -200.0), grounded_fraction=np.ones(ne), floating_elements=np.zeros(ne, bool),
             ice_elements=np.ones(ne, bool), smb=np.zeros(nv), groundedice_melt=np.zeros(nv),
             floatingice_melt=np.zeros(nv), rho_ice=RI, rho_water=RW)
    d.update(kw)
    return diagnostics.DiagnosticInputs(**d)


# ------------------------------------------------------------------------ item 5: cut elements (#15.7)
def test_ice_volume_counts_only_the_ice_covered_part():
    pm = _one_triangle()
    H = np.array([3.0, 6.0, 9.0])
    # one ice vertex: ice part = triangle (0,0),(1,0),(0,1), area 0.5, corner values 3, 4.5, 6 -> 0.5 * 4.5
    d = _inputs(pm, surface=H, base=np.zeros(3), thickness=H, ice_levelset=np.array([-1.0, 1.0, 1.0]))
    assert diagnostics.compute("IceVolume", pm, d) == pytest.approx(2.25, rel=1e-14)
    # two ice vertices: whole (2 * 6 = 12) minus the ice-free triangle at vertex 2
    # ((0,2),(0,1),(1,1): area 0.5, corner values 9, 6, 7.5) -> 12 - 3.75
    d = _inputs(pm, surface=H, base=np.zeros(3), thickness=H, ice_levelset=np.array([-1.0, -1.0, 1.0]))
    assert diagnostics.compute("IceVolume", pm, d) == pytest.approx(8.25, rel=1e-14)
    # not cut: the whole element
    d = _inputs(pm, surface=H, base=np.zeros(3), thickness=H, ice_levelset=np.array([-1.0, -2.0, -3.0]))
    assert diagnostics.compute("IceVolume", pm, d) == pytest.approx(12.0, rel=1e-14)
    # scaled: area of the ice part times the scale factor's mean over it (corners 1, 1.5, 2 -> 1.5)
    d = _inputs(pm, surface=H, base=np.zeros(3), thickness=H, ice_levelset=np.array([-1.0, 1.0, 1.0]),
                scale_factor=np.array([1.0, 2.0, 3.0]))
    assert diagnostics.compute("IceVolumeScaled", pm, d) == pytest.approx(2.25 * 1.5, rel=1e-14)


def test_volume_above_floatation_and_smb_on_cut_elements():
    pm = _one_triangle()
    s, b, bed = np.array([110.0, 120.0, 130.0]), np.array([10.0, 0.0, -10.0]), np.array([10.0, 0.0, -10.0])
    haf = s - b + np.minimum(RW / RI * bed, 0.0)  # per vertex, ISSM's cut-element rule
    ls = np.array([-1.0, 1.0, 1.0])
    d = _inputs(pm, surface=s, base=b, bed=bed, ice_levelset=ls, smb=np.array([1.0, 2.0, 3.0]))
    corners = np.array([haf[0], (haf[0] + haf[1]) / 2, (haf[0] + haf[2]) / 2])
    assert diagnostics.compute("IceVolumeAboveFloatation", pm, d) == pytest.approx(0.5 * corners.mean(),
                                                                                   rel=1e-14)
    # SMB over the ice part: corners 1, 1.5, 2 -> 0.5 * 1.5
    assert diagnostics.compute("TotalSmb", pm, d) == pytest.approx(RI * 0.75, rel=1e-14)
    # areas stay whole-element in ISSM (GroundedArea = phi * area for every ice element)
    assert diagnostics.compute("GroundedArea", pm, d) == pytest.approx(2.0)


def test_total_bmb_is_the_exact_subelement_integral():
    pm = _one_triangle()
    ocean = np.array([1.0, -1.0, -1.0])  # grounded vertex 0; grounding line through (1,0) and (0,1)
    m = np.array([0.0, 10.0, 20.0])
    frac = np.array([0.25])
    d = _inputs(pm, floatingice_melt=m, groundedice_melt=m, grounded_fraction=frac, ocean_levelset=ocean)
    # floating part = whole (2 * 10 = 20) minus the grounded triangle at vertex 0 (area 0.5, corners
    # 0, 5, 10 -> 2.5): 17.5; the old rule (1 - f) A mean(m) gives 15
    assert diagnostics.compute("TotalFloatingBmb", pm, d) == pytest.approx(RI * 17.5, rel=1e-14)
    assert diagnostics.compute("TotalGroundedBmb", pm, d) == pytest.approx(RI * 2.5, rel=1e-14)
    # scaled: the product of the two P1 fields, integrated with the degree-2 Gauss rule on the triangle
    sf = np.array([1.0, 2.0, 4.0])
    d = _inputs(pm, floatingice_melt=m, groundedice_melt=m, grounded_fraction=frac, ocean_levelset=ocean,
                scale_factor=sf)
    corners_m, corners_s = np.array([0.0, 5.0, 10.0]), np.array([1.0, 1.5, 2.5])
    g = np.array([[2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
    tri = 0.5 * np.mean((g @ corners_m) * (g @ corners_s))
    whole = 2.0 * np.mean((g @ m) * (g @ sf))
    assert diagnostics.compute("TotalGroundedBmbScaled", pm, d) == pytest.approx(RI * tri, rel=1e-13)
    assert diagnostics.compute("TotalFloatingBmbScaled", pm, d) == pytest.approx(RI * (whole - tri), rel=1e-13)


# ------------------------------------------------------------------ item 8: standalone stress balance
def test_standalone_stressbalance_reads_groundingline_settings():
    import issm_emulator
    from issm_emulator.issm.adapter import read_model
    from tests.modelfactory import make_square_shelf_md

    vel = {}
    for mig in ("None", "SubelementMigration"):
        md = make_square_shelf_md(nx=6, ny=7, grounded_part=True, transient=False)
        md.groundingline.migration = mig
        assert read_model(md, "Stressbalance").groundingline.migration == mig
        md = issm_emulator.solve(md, "Stressbalance", solver="fem")
        vel[mig] = np.asarray(md.results.StressbalanceSolution.Vel, float).ravel()
    # 'None' takes friction off every element with a floating vertex, 'SubelementMigration' only off
    # all-floating ones (ISSM's IsAllFloating), so the two velocities differ
    assert np.max(np.abs(vel["None"] - vel["SubelementMigration"])) > 1e-3 * np.max(vel["None"])
