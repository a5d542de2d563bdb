"""ISSM nightly test cases: set-ups checked against what ISSM archived."""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.validation import (
    CASES,
    archive_fields,
    build_case,
    mass_flux_gates,
    max_relative_error,
    mesh_profile_intersection,
    relative_l2,
    variants,
)

RHO_I, G = 917.0, 9.81


def _record(recs, output, step=None):
    return next(r for r in recs if r[3] == output and r[2] == step)


@pytest.mark.parametrize("n,step", [(101, None), (201, None), (301, None), (401, None), (808, 1)])
def test_archived_pressure_is_rho_g_h_on_our_mesh(issm_data_dir, n, step):
    md, _ = build_case(n)
    p = _record(archive_fields(n), "Pressure", step)[4]
    assert p.shape == (md.mesh.numberofvertices,)
    assert max_relative_error(p, RHO_I * G * md.geometry.thickness) <= 1e-12


@pytest.mark.parametrize("n,ndir", [(101, 64), (201, 15), (301, 18), (401, 15)])
def test_dirichlet_set_is_where_archived_vel_is_zero(issm_data_dir, n, ndir):
    md, sol = build_case(n)
    assert sol == "Stressbalance"
    vel = _record(archive_fields(n), "Vel")[4]
    d = ~np.isnan(md.stressbalance.spcvx)
    assert d.sum() == ndir and np.array_equal(vel == 0, d)


def test_101_setup(issm_data_dir):
    md, _ = build_case(101)
    assert md.stressbalance.requested_outputs[:4] == ["default", "DeviatoricStressxx", "DeviatoricStressyy",
                                                      "DeviatoricStressxy"]
    defs = md.outputdefinition.definitions
    assert [d.name for d in defs] == [f"MassFlux{k}" for k in range(1, 7)]
    assert (md.stressbalance.restol, md.stressbalance.reltol) == (0.05, 0.05)
    assert np.isnan(md.stressbalance.abstol) and np.all(md.friction.coefficient == 0)
    # the pieces of each gate tile the gate: a uniform flow (1, 0) through it gives the straight integral
    for d, g in zip(defs, mass_flux_gates()):
        seg = d.segments
        length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]).sum()
        assert length == pytest.approx(np.hypot(np.diff(g["x"]), np.diff(g["y"])).sum(), rel=1e-12)
        flux = (seg[:, 3] - seg[:, 1]).sum()  # (u.n) ds with n = (dy, -dx)/ds and u = (1, 0)
        assert flux == pytest.approx(g["y"][-1] - g["y"][0], abs=1e-6)
        assert np.all(seg[:, 4] >= 1) and np.all(seg[:, 4] <= md.mesh.numberofelements)


def test_mesh_profile_intersection_on_shared_edge():
    el = np.array([[1, 2, 3], [1, 3, 4]])
    x, y = np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0])
    seg = mesh_profile_intersection(el, x, y, {"x": [0.0, 1.0], "y": [0.0, 1.0]})  # the diagonal edge
    assert seg.shape == (1, 5)
    seg = mesh_profile_intersection(el, x, y, {"x": [0.0, 1.0], "y": [0.5, 0.5]})
    assert seg.shape == (2, 5) and np.allclose(seg[:, :4], [[0, 0.5, 0.5, 0.5], [0.5, 0.5, 1, 0.5]])
    assert seg[:, 4].tolist() == [2.0, 1.0]


def test_423_mask_and_phi(issm_data_dir):
    md, sol = build_case(423)
    assert sol == "Transient" and md.mesh.numberofvertices == 1063
    assert (md.mask.ocean_levelset > 0).sum() == 698 and (md.mask.ocean_levelset < 0).sum() == 365
    assert np.all(md.mask.ice_levelset[md.mesh.vertexonboundary == 1] == 0)
    assert (~np.isnan(md.stressbalance.spcvx)).sum() == 1
    phi = md.geometry.thickness + md.materials.rho_water / md.materials.rho_ice * md.geometry.bed
    for name, label, step, output, value, tol in archive_fields(423, "all"):
        if output == "MaskOceanLevelset" and label != "ElementOnIceShelfSoft":
            assert np.max(np.abs(value - phi)) < 1e-12
    md3, _ = build_case(423, "subelement2")
    assert md3.groundingline.friction_interpolation == "SubelementFriction2"
    assert np.allclose(md3.mask.ocean_levelset, phi)


def test_293_melt_rate_matches_archive(issm_data_dir):
    md, _ = build_case(293)
    assert md.constants.yts == 365.2422 * 24 * 3600
    b0, bed = md.geometry.base, md.geometry.bed
    bf = md.basalforcings
    melt = bf.meltrate_factor * np.tanh((b0 - bed) / bf.threshold_thickness) * (bf.upperdepth_melt - b0)
    ref = _record(archive_fields(293), "BasalforcingsFloatingiceMeltingRate", 1)[4]
    assert max_relative_error(ref, melt) < 1e-13


def test_424_first_step_thickness(issm_data_dir):
    md, _ = build_case(424)
    h1 = _record(archive_fields(424), "Thickness", 1)[4]
    dt = md.timestepping.time_step
    expected = md.geometry.thickness + dt * (md.smb.mass_balance - md.basalforcings.groundedice_melting_rate)
    assert max_relative_error(h1, expected) < 1e-13
    assert md.transient.isstressbalance == 0 and np.all(md.mesh.scale_factor == 1.1)


def test_2425_offset_variant(issm_data_dir):
    md1, _ = build_case(2425)
    md2, _ = build_case(2425, variant="offset")
    assert np.allclose(md2.geometry.bed - md1.geometry.bed, 1000.0)
    assert np.all(md2.initialization.sealevel == 1000.0)
    r1, r2 = archive_fields(2425), archive_fields(2425, "offset")
    assert [r[0] for r in r1] == ["Archive2425_field1"] and [r[0] for r in r2] == ["Archive2425_field2"]
    assert r1[0][2] == 10 == round(md1.timestepping.final_time / md1.timestepping.time_step)
    with pytest.raises(ValueError, match="variant"):
        build_case(2425, "bogus")


@pytest.mark.parametrize("n", sorted(CASES))
def test_every_case_builds_and_maps_its_archive(issm_data_dir, n):
    for v in variants(n):
        md, sol = build_case(n, v)
        assert sol in ("Stressbalance", "Transient")
        recs = archive_fields(n, v)
        assert recs
        nv = md.mesh.numberofvertices
        for name, label, step, output, value, tol in recs:
            assert name.startswith(f"Archive{n}_field") and 0 < tol <= 1e-8
            assert isinstance(value, float) or value.shape == (nv,)
            if sol == "Transient":
                dt, tf = md.timestepping.time_step, md.timestepping.final_time
                assert 1 <= step <= round(tf / dt)
            else:
                assert step is None
        assert np.all(md.materials.rheology_B == 181573028.48017007)
        assert md.flowequation.isSSA == 1
    assert len(archive_fields(n, "all")) == {423: 8, 2425: 2}.get(n, len(archive_fields(n)))


def test_moving_front_cases(issm_data_dir):
    md, _ = build_case(806)
    assert (md.mask.ice_levelset > 0).sum() == 119 and type(md.calving).__name__ == "levermann"
    assert (md.levelset.migration_max, md.timestepping.time_step, md.transient.ismovingfront) == (1e8, 10.0, 1)
    md, _ = build_case(808)
    assert md.mesh.numberofvertices == 933 and (md.mask.ice_levelset > 0).sum() == 110
    assert md.calving.min_thickness == 400.0 and md.levelset.reinit_frequency == 1


def test_unknown_case():
    with pytest.raises(KeyError, match="available"):
        build_case(999)


def test_metrics():
    ref = np.array([1.0, -2.0, 4.0])
    assert max_relative_error(ref, ref) == 0.0
    assert max_relative_error(ref, ref + [0, 0, 0.4]) == pytest.approx(0.1)
    assert np.isnan(max_relative_error(ref, [np.nan, 0, 0]))
    assert relative_l2(ref, 2 * ref) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        relative_l2(ref, ref[:2])


def test_square_scenarios_need_no_download(tmp_path, monkeypatch):
    from issm_emulator import data
    from issm_emulator.scenarios import square_sheet_shelf, square_shelf

    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setattr(data, "BASE_URL", "http://127.0.0.1:9/")
    md = square_shelf(150e3)
    assert md.mesh.numberofvertices == 44 and np.all(md.mask.ocean_levelset == -1)
    assert np.all(md.initialization.vx == 0) and md.transient.isthermal == 0
    assert (md.mask.ice_levelset == 0).sum() == 5 and (~np.isnan(md.stressbalance.spcvx)).sum() == 15
    assert (md.timestepping.time_step, md.timestepping.final_time) == (1.0, 3.0)
    assert md.groundingline.migration == "None" and md.transient.isgroundingline == 0
    md = square_sheet_shelf(150e3, migration="AggressiveMigration")
    assert md.transient.isgroundingline == 1 and not np.isnan(md.geometry.bed).any()
    fl = md.mask.ocean_levelset < 0
    assert fl.sum() == 17 and np.allclose(md.geometry.bed[fl], md.geometry.base[fl] - 10)
    with pytest.raises(ValueError, match="migration"):
        square_shelf(150e3, migration="Fast")
    with pytest.raises(ValueError, match="initial_velocity"):
        square_shelf(150e3, initial_velocity="random")


def test_square_shelf_issm_velocities(issm_data_dir):
    from issm_emulator.issm.formats import read_arch
    from issm_emulator.scenarios import square_shelf

    md = square_shelf(50e3, initial_velocity="issm")
    a = read_arch(issm_data_dir / "SquareShelf.arch")
    assert np.array_equal(md.initialization.vx, a["vx"][:, 0]) and np.array_equal(md.initialization.vy, a["vy"][:, 0])
