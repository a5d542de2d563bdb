"""Real-geometry scenarios: Pine Island, 79N and MISMIP+ (issue 5)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError, UnitError
from issm_emulator.issm.adapter import read_model
from issm_emulator.scenarios.mismip_plus import (
    EXPERIMENTS,
    MISMIP_PLUS,
    mismip_plus,
    mismip_plus_bed,
    mismip_plus_spinup,
    spinup_cache_path,
    weertman_issm_parameters,
)
from issm_emulator.scenarios.north79 import (
    DEFAULT_OCEAN_BUFFER,
    TONGUE_BED_DEPTH,
    extended_outline,
    north79,
    polyline_distance,
)
from issm_emulator.scenarios.pine_island import pine_island
from issm_emulator.units import ureg

PATERSON_253 = 181573028.48017007  # ISSM's paterson(253 K), issm-reference-cases.md section 1.7
YTS = 365.0 * 24.0 * 3600.0


def _consistent(md) -> None:
    """pyISSM's own consistency check for a transient run (pure Python, no ISSM needed)."""
    import pyissm

    md.private.solution = "TransientSolution"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyissm.model.execute.is_model_self_consistent(md)
    assert md.private.isconsistent


def _fem_available() -> bool:
    import issm_emulator

    try:
        return any(s["name"] == "fem" for s in issm_emulator.available_solvers())
    except Exception:  # noqa: BLE001 - registry not importable: treat as absent
        return False


def _front_guess(md) -> np.ndarray:
    """SetMarineIceSheetBC's front without a front file, computed independently of the code under test."""
    el = md.mesh.elements - 1
    touches = np.zeros(md.mesh.numberofvertices, dtype=bool)
    for tri in el[(md.mask.ocean_levelset[el] < 0).any(axis=1)]:
        touches[tri] = True
    return touches & md.mesh.vertexonboundary.astype(bool)


# --------------------------------------------------------------------------------------------------
# Pine Island
# --------------------------------------------------------------------------------------------------
def test_pine_island_10km_is_issms_mesh_and_set_up(issm_data_dir):
    md = pine_island(10e3, 30.0)
    # mesh and masks of ISSM test 540 (pine-island-setup.md, sections 0 and 3.1)
    assert md.mesh.numberofvertices == 182 and md.mesh.numberofelements == 318
    floating = md.mask.ocean_levelset < 0
    assert floating.sum() == 15
    front = md.mask.ice_levelset == 0
    assert front.sum() == 8 and np.array_equal(front, _front_guess(md))
    assert np.all(md.mask.ice_levelset[~front] == -1)
    dirichlet = np.isfinite(md.stressbalance.spcvx)
    assert dirichlet.sum() == 38
    # Dirichlet values are the interpolated observed velocities
    np.testing.assert_array_equal(md.stressbalance.spcvx[dirichlet], md.inversion.vx_obs[dirichlet])
    np.testing.assert_array_equal(md.stressbalance.spcvy[dirichlet], md.inversion.vy_obs[dirichlet])
    # melt: melt_rate on every floating vertex (and wherever ice may unground later), none on grounded ice
    np.testing.assert_array_equal(md.basalforcings.floatingice_melting_rate[floating], 30.0)
    np.testing.assert_array_equal(md.basalforcings.groundedice_melting_rate, 0.0)
    # physics of Pig.par
    np.testing.assert_allclose(md.materials.rheology_B, PATERSON_253, rtol=1e-15)
    assert np.all(md.friction.coefficient[floating] == 0) and np.all(md.friction.coefficient[~floating] == 50)
    assert np.all(md.friction.p == 1) and np.all(md.friction.q == 1)
    assert (md.stressbalance.restol, md.stressbalance.reltol) == (0.05, 1.0)
    assert math.isnan(md.stressbalance.abstol)
    assert md.transient.isgroundingline == 1 and md.transient.ismovingfront == 0 and md.transient.isthermal == 0
    assert md.groundingline.migration == "SubelementMigration"
    assert md.timestepping.final_time == 20.0 and md.timestepping.time_step == pytest.approx(1 / 12)
    assert {"IceVolume", "IceVolumeAboveFloatation", "GroundedArea", "FloatingArea",
            "TotalFloatingBmb"} <= set(md.transient.requested_outputs)

    state = read_model(md, "TransientSolution")
    assert state.numberofvertices == 182
    np.testing.assert_allclose(state.basalforcings.floatingice_melting_rate.values[floating], 30.0 / YTS)
    assert state.groundingline.migration == "SubelementMigration"
    _consistent(md)


def test_pine_island_geometry_is_pig_par(issm_data_dir):
    from matplotlib.tri import LinearTriInterpolator, Triangulation

    from issm_emulator.issm.formats import read_arch

    md = pine_island(20e3)
    assert md.mesh.numberofvertices == 49  # ISSM tests 501/504
    arch = read_arch(issm_data_dir / "Pig.arch")
    tri = Triangulation(arch["x"][:, 0], arch["y"][:, 0], arch["index"].astype(int) - 1)

    def interp(name):
        return np.asarray(LinearTriInterpolator(tri, arch[name][:, 0])(md.mesh.x, md.mesh.y))

    np.testing.assert_allclose(md.geometry.thickness, interp("thickness"), rtol=1e-8)
    np.testing.assert_allclose(md.geometry.surface, interp("surface"), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(md.initialization.vx, interp("vx_obs"), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(md.geometry.base, md.geometry.surface - md.geometry.thickness)
    floating = md.mask.ocean_levelset < 0
    np.testing.assert_array_equal(md.geometry.bed[~floating], md.geometry.base[~floating])
    np.testing.assert_allclose(md.geometry.bed[floating],
                               np.minimum(interp("bed")[floating], md.geometry.base[floating]), rtol=1e-8)
    # section 3.2: the three floating vertices at 20 km have beds -677.55, -981.29, -860.32 m
    np.testing.assert_allclose(np.sort(md.geometry.bed[floating]), [-981.29, -860.32, -677.55], atol=0.01)


def test_pine_island_accepts_units_and_rejects_bad_input(issm_data_dir):
    a = pine_island(10e3, melt_rate=36.5)
    b = pine_island("10 km", melt_rate="0.1 m/day")
    c = pine_island(10 * ureg.km, melt_rate=36.5 * ureg("m/yr"), years="6 months", time_step="1 month")
    assert a.mesh.numberofvertices == b.mesh.numberofvertices == c.mesh.numberofvertices == 182
    np.testing.assert_allclose(b.basalforcings.floatingice_melting_rate, 36.5)
    assert c.timestepping.final_time == pytest.approx(0.5) and c.timestepping.time_step == pytest.approx(1 / 12)
    with pytest.raises(ModelInputError, match="resolution"):
        pine_island(-3e3)
    with pytest.raises(UnitError):
        pine_island("3 Pa")
    with pytest.raises(UnitError, match="floatingice_melting_rate"):
        pine_island(10e3, melt_rate="5 kg")
    with pytest.raises(ModelInputError, match="time_step"):
        pine_island(10e3, years=1.0, time_step=2.0)
    with pytest.raises(ModelInputError, match="migration"):
        pine_island(10e3, migration="Sometimes")


@pytest.mark.skipif(not _fem_available(), reason="the 'fem' solver is not registered")
def test_pine_island_runs_with_fem_and_melts(issm_data_dir):
    import issm_emulator

    md = pine_island(20e3, 50.0, years=0.5, time_step=0.25)
    md = issm_emulator.solve(md, "Transient", solver="fem")
    steps = md.results.TransientSolution.steps
    assert len(steps) == 2
    last = steps[-1]
    floating_area = float(np.ravel(last.FloatingArea)[0])
    assert floating_area > 0
    # TotalFloatingBmb = rho_i * melt * floating area (Gt/yr) when everything floating melts at 50 m/yr
    expected = 917.0 * 50.0 * floating_area / 1e12
    assert float(np.ravel(last.TotalFloatingBmb)[0]) == pytest.approx(expected, rel=0.2)


# --------------------------------------------------------------------------------------------------
# 79N
# --------------------------------------------------------------------------------------------------
def _north79_outline():
    from issm_emulator.data import fetch
    from issm_emulator.issm.formats import read_exp

    c = read_exp(fetch("exp/79North.exp"))[0]
    return np.asarray(c["x"], float), np.asarray(c["y"], float)


def _segment_distance(ax, ay, bx, by, px, py):
    """Distance from each point to the segment a-b (independent of the scenario's helper)."""
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(px - ax - t * dx, py - ay - t * dy)


def test_north79_tongue_bed_calving_and_front(issm_data_dir):
    from issm_emulator.issm.setup import contour_points_inside

    md = north79(10e3, "0.8 MPa", floating_threshold=200e3 * ureg.Pa)
    nv = md.mesh.numberofvertices
    x, y = md.mesh.x, md.mesh.y
    el = md.mesh.elements - 1
    boundary = md.mesh.vertexonboundary.astype(bool)
    ox, oy = _north79_outline()
    # inside the ISSM outline (edges included, up to Triangle's rounding)
    on_edge = np.min([_segment_distance(ox[k], oy[k], ox[k + 1], oy[k + 1], x, y) for k in range(ox.size - 1)],
                     axis=0) < 1e-3
    inside = contour_points_inside({"x": ox, "y": oy}, x, y) | on_edge
    assert 0 < (~inside).sum() < nv
    # the buffer lies beyond the front path (outline points 11..16) and reaches ~DEFAULT_OCEAN_BUFFER from it
    d_front = np.min([_segment_distance(ox[k], oy[k], ox[k + 1], oy[k + 1], x, y) for k in range(11, 16)], axis=0)
    assert d_front[~inside].max() == pytest.approx(DEFAULT_OCEAN_BUFFER, rel=0.05)

    # ice level set: signed distance to the front path, negative in ice, positive in the ocean
    ls = md.mask.ice_levelset
    assert np.all(ls[inside] < 0) and np.all(ls[~inside] > 0)
    np.testing.assert_allclose(np.abs(ls), np.maximum(d_front, np.where(inside, 1.0, 0.0)), atol=1e-6)

    # geometry: tongue bed 500 m below the base, ice-free ocean a floating slab of min_thickness
    floating = md.mask.ocean_levelset < 0
    assert np.all(floating[~inside])
    ice_v = np.zeros(nv, dtype=bool)
    ice_v[el[(ls[el] < 0).any(axis=1)].ravel()] = True
    ocean = ~ice_v
    assert ocean.sum() > 5
    hmin = md.masstransport.min_thickness
    np.testing.assert_array_equal(md.geometry.thickness[ocean], hmin)
    np.testing.assert_allclose(md.geometry.base[ocean], -md.materials.rho_ice / md.materials.rho_water * hmin)
    np.testing.assert_array_equal(md.initialization.vx[ocean], 0.0)
    np.testing.assert_allclose(md.geometry.bed[floating], md.geometry.base[floating] - TONGUE_BED_DEPTH)
    assert TONGUE_BED_DEPTH == 500.0
    np.testing.assert_array_equal(md.geometry.bed[~floating], md.geometry.base[~floating])
    np.testing.assert_allclose(md.geometry.thickness, md.geometry.surface - md.geometry.base)
    assert md.geometry.thickness.min() >= 1.0
    # front elements carry the tongue's thickness, not the slab
    front_el = (ls[el] < 0).any(axis=1) & (ls[el] > 0).any(axis=1)
    assert front_el.any() and md.geometry.thickness[el[front_el]].min() > 20.0

    # calving and level-set settings
    assert type(md.calving).__name__ == "vonmises"
    assert md.calving.stress_threshold_groundedice == 8e5 and md.calving.stress_threshold_floatingice == 2e5
    assert md.transient.ismovingfront == 1 and md.transient.isthermal == 0
    np.testing.assert_array_equal(md.frontalforcings.meltingrate, 0.0)
    assert md.levelset.kill_icebergs == 1
    spc = md.levelset.spclevelset
    np.testing.assert_array_equal(np.isfinite(spc), boundary & ~inside)
    np.testing.assert_allclose(spc[boundary & ~inside], ls[boundary & ~inside])
    assert np.all(spc[np.isfinite(spc)] > 0)

    # velocity: 0 on the grounded/land outline (SetMarineIceSheetBC's guess), the archived velocity on the
    # tongue's fjord sides, free on the ocean boundary
    guess = _front_guess(md)
    dirichlet = np.isfinite(md.stressbalance.spcvx)
    np.testing.assert_array_equal(dirichlet, np.isfinite(md.stressbalance.spcvy))
    np.testing.assert_array_equal(dirichlet, boundary & inside)
    land = boundary & ~guess
    assert land.sum() > 10 and np.all(md.stressbalance.spcvx[land] == 0) and np.all(md.stressbalance.spcvy[land] == 0)
    sides = boundary & inside & guess
    seg = md.mesh.segments[:, :2] - 1
    sides[seg[~np.all(guess[seg], axis=1)].ravel()] = False  # ends of land segments keep 0 (ISSM's rule)
    assert sides.sum() > 5
    np.testing.assert_array_equal(md.stressbalance.spcvx[sides], md.initialization.vx[sides])
    np.testing.assert_array_equal(md.stressbalance.spcvy[sides], md.initialization.vy[sides])
    assert np.hypot(md.stressbalance.spcvx[sides], md.stressbalance.spcvy[sides]).max() > 100.0
    fixed_h = np.isfinite(md.masstransport.spcthickness)
    assert fixed_h.any() and not np.any(fixed_h & ~inside) and not np.any(fixed_h & sides)
    np.testing.assert_array_equal(md.masstransport.spcthickness[fixed_h], md.geometry.thickness[fixed_h])

    np.testing.assert_array_equal(md.smb.mass_balance, 15.0)
    np.testing.assert_allclose(md.materials.rheology_B, PATERSON_253, rtol=1e-15)
    assert np.all(md.friction.coefficient[floating] == 0) and np.all(md.friction.coefficient[~floating] == 50)

    state = read_model(md, "TransientSolution")
    assert state.calving.law == "vonmises"
    np.testing.assert_allclose(state.calving.params["stress_threshold_floatingice"], 2e5)
    assert state.transient.ismovingfront == 1
    _consistent(md)


def test_north79_threshold_defaults_and_errors(issm_data_dir):
    md = north79(10e3, 1.2e6, ocean_buffer="15 km")
    assert md.calving.stress_threshold_groundedice == md.calving.stress_threshold_floatingice == 1.2e6
    assert md.mask.ice_levelset.max() == pytest.approx(15e3, rel=0.05)
    with pytest.raises(ModelInputError, match="stress_threshold"):
        north79(10e3, -1.0)
    with pytest.raises(UnitError):
        north79(10e3, "1 m/yr")
    with pytest.raises(ModelInputError, match="ocean_buffer"):
        north79(10e3, 1e6, ocean_buffer=5e3)


def test_north79_extended_outline_and_distance():
    square = {"x": np.array([0.0, 10.0, 10.0, 0.0]), "y": np.array([0.0, 0.0, 10.0, 10.0])}
    # front = the right side (points 1..2): swept by 4 along +x
    domain, front, d = extended_outline(square, 4.0, (1, 2))
    np.testing.assert_allclose(d, [1.0, 0.0])
    np.testing.assert_allclose(domain["x"], [0, 10, 14, 14, 10, 0])
    np.testing.assert_allclose(domain["y"], [0, 0, 0, 10, 10, 10])
    np.testing.assert_allclose(polyline_distance(front, np.array([10.0, 13.0, 5.0, 12.0]),
                                                 np.array([5.0, 5.0, 5.0, 13.0])), [0, 3, 5, np.hypot(2, 3)])
    with pytest.raises(ValueError, match="counter-clockwise"):
        extended_outline({"x": square["x"][::-1], "y": square["y"][::-1]}, 4.0, (1, 2))


# --------------------------------------------------------------------------------------------------
# MISMIP+
# --------------------------------------------------------------------------------------------------
def test_mismip_plus_bed_values():
    # centre line at x = 0: B0 plus the (tiny) channel-wall terms
    by_centre = 2 * 500.0 / (1 + math.exp(2 * 24e3 / 4e3))
    assert mismip_plus_bed(0.0, 40e3) == pytest.approx(-150.0 + by_centre, abs=1e-12)
    assert mismip_plus_bed(0.0, 40e3) == pytest.approx(-150.0, abs=0.01)
    # x' = 1: B0 + B2 + B4 + B6
    assert mismip_plus_bed(300e3, 40e3) == pytest.approx(-150 - 728.8 + 343.91 - 50.57 + by_centre, abs=1e-9)
    # the -720 m floor near the front and the 500 m channel walls
    assert mismip_plus_bed(640e3, 40e3) == -720.0
    assert mismip_plus_bed(0.0, 0.0) == pytest.approx(-150 + 500 / (1 + math.exp(-2 * (0 - 40e3 - 24e3) / 4e3)) + 500
                                                       / (1 + math.exp(2 * (-40e3 + 24e3) / 4e3)))
    assert mismip_plus_bed(0.0, 0.0) > 340.0
    y = np.linspace(0, 80e3, 17)
    np.testing.assert_allclose(mismip_plus_bed(200e3, y), mismip_plus_bed(200e3, 80e3 - y), rtol=1e-12)


def test_weertman_conversion_matches_mismip_law():
    C_issm, m_issm = weertman_issm_parameters()
    assert m_issm == pytest.approx(3.0) and C_issm == pytest.approx(math.sqrt(3.16e6))
    u = np.array([1e-9, 1e-7, 3e-6, 1e-4])  # m/s
    tau_mismip = MISMIP_PLUS["C"] * u ** MISMIP_PLUS["m"]  # tau = C |u|^(m-1) u
    tau_issm = C_issm ** 2 * u ** (1.0 / m_issm - 1.0) * u  # ISSM: alpha2 = C^2 |u|^(1/m-1)
    np.testing.assert_allclose(tau_issm, tau_mismip, rtol=1e-12)
    with pytest.raises(ValueError):
        weertman_issm_parameters(-1.0, 1 / 3)


def test_mismip_plus_set_up_and_boundary_conditions():
    md = mismip_plus("16 km", "Ice0")
    x, y = md.mesh.x, md.mesh.y
    c = MISMIP_PLUS
    assert x.min() == 0 and x.max() == 640e3 and y.min() == 0 and y.max() == 80e3
    np.testing.assert_allclose(md.geometry.bed, mismip_plus_bed(x, y))
    np.testing.assert_allclose(md.materials.rheology_B, 6.338e-25 ** (-1 / 3))
    assert (md.materials.rho_ice, md.materials.rho_water, md.constants.g) == (918.0, 1028.0, 9.81)
    assert type(md.friction).__name__ == "weertman"
    np.testing.assert_allclose(md.friction.C, math.sqrt(3.16e6))
    np.testing.assert_allclose(md.friction.m, 3.0)
    np.testing.assert_array_equal(md.smb.mass_balance, 0.3)
    # walls
    side = np.isclose(y, 0) | np.isclose(y, 80e3)
    inflow = np.isclose(x, 0)
    front = np.isclose(x, 640e3)
    assert np.all(md.stressbalance.spcvy[side | inflow] == 0) and np.all(md.stressbalance.spcvx[inflow] == 0)
    assert np.all(np.isnan(md.stressbalance.spcvx[~inflow]))
    assert np.all(np.isnan(md.stressbalance.spcvy[~(side | inflow)]))
    assert np.array_equal(md.mask.ice_levelset == 0, front) and np.all(md.mask.ice_levelset[~front] == -1)
    # 100 m slab, flotation mask, base on the bed where grounded, hydrostatic where floating
    np.testing.assert_allclose(md.geometry.thickness, 100.0)
    grounded = md.mask.ocean_levelset > 0
    np.testing.assert_allclose(md.mask.ocean_levelset, 100.0 + c["rho_water"] / c["rho_ice"] * md.geometry.bed)
    np.testing.assert_allclose(md.geometry.base[grounded], md.geometry.bed[grounded])
    np.testing.assert_allclose(md.geometry.base[~grounded], -c["rho_ice"] / c["rho_water"] * 100.0)
    assert np.all(md.geometry.base >= md.geometry.bed)
    assert md.transient.isgroundingline == 1 and md.transient.ismovingfront == 0
    state = read_model(md, "TransientSolution")
    assert state.friction.law == "weertman" and state.yts == c["yts"]
    _consistent(md)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_mismip_plus_experiments(experiment):
    md = mismip_plus(20e3, experiment)
    start, duration, forcing = EXPERIMENTS[experiment]
    assert (md.timestepping.start_time, md.timestepping.final_time) == (start, start + duration)
    kind = type(md.basalforcings).__name__
    if forcing == "mismip":
        assert kind == "mismip"
        assert (md.basalforcings.meltrate_factor, md.basalforcings.threshold_thickness,
                md.basalforcings.upperdepth_melt) == (0.2, 75.0, -100.0)
    else:
        assert kind == "default"
        melt = md.basalforcings.floatingice_melting_rate
        expected = np.where(md.mesh.x > 480e3, 100.0, 0.0) if forcing == "calving" else 0.0
        np.testing.assert_array_equal(melt, expected)
    state = read_model(md, "TransientSolution")
    assert state.basalforcings.kind == ("mismip" if forcing == "mismip" else "default")
    _consistent(md)


def test_mismip_plus_initial_state_and_errors():
    md0 = mismip_plus(20e3)
    nv = md0.mesh.numberofvertices
    h = np.full(nv, 500.0)
    init = {"thickness": h, "base": md0.geometry.bed, "vx": np.full(nv, 10.0), "vy": np.zeros(nv)}
    md = mismip_plus(20e3, "Ice1r", initial=init, years=10, time_step=0.5)
    np.testing.assert_allclose(md.geometry.thickness, 500.0)
    np.testing.assert_allclose(md.geometry.surface, md.geometry.bed + 500.0)
    np.testing.assert_allclose(md.initialization.vx, 10.0)
    assert md.timestepping.final_time == 10.0
    with pytest.raises(ModelInputError, match="experiment"):
        mismip_plus(20e3, "Ice3")
    with pytest.raises(ModelInputError, match="initial.thickness"):
        mismip_plus(20e3, initial={**init, "thickness": h[:-1]})
    with pytest.raises(ModelInputError, match="initial.vy"):
        mismip_plus(20e3, initial={k: v for k, v in init.items() if k != "vy"})


def _fake_transient(calls):
    """A stand-in for issm_emulator.solve: thickens the ice by 10 m per step (3 steps of 1 yr)."""
    from pyissm.model.classes import results

    def solve(md, solution, solver="fem", **kwargs):
        calls.append((solution, solver))
        steps = []
        for k in range(1, 4):
            s = results.solutionstep()
            s.step, s.time = k, float(k)
            s.Thickness = md.geometry.thickness + 10.0 * k
            s.Base = md.geometry.base.copy()
            s.Surface = s.Base + s.Thickness
            s.Vx = np.full(md.mesh.numberofvertices, 5.0 * k)
            s.Vy = np.zeros(md.mesh.numberofvertices)
            s.MaskOceanLevelset = md.mask.ocean_levelset + 10.0 * k
            s.GroundedArea = np.array([1e9 * k])
            steps.append(s)
        md.results.TransientSolution = results.solution(steps)
        return md

    return solve


def test_mismip_plus_spinup_caches_atomically(tmp_path, monkeypatch):
    import xarray as xr

    import issm_emulator.api

    calls: list = []
    monkeypatch.setattr(issm_emulator.api, "solve", _fake_transient(calls))
    with pytest.warns(RuntimeWarning, match="steady state"):  # grounded area grew 1e9 -> 3e9 m^2
        md = mismip_plus_spinup(20e3, years=3, time_step=1, cache_dir=tmp_path)
    assert calls == [("Transient", "fem")]
    path = spinup_cache_path(20e3, 3, 1, "fem", tmp_path)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]
    np.testing.assert_allclose(md.geometry.thickness, 130.0)
    np.testing.assert_allclose(md.initialization.vx, 15.0)
    with xr.open_dataset(path, decode_times=False) as ds:
        assert ds.attrs["resolution_m"] == 20e3 and ds.attrs["years"] == 3 and ds.attrs["solver"] == "fem"
        np.testing.assert_allclose(ds["grounded_area"].values, [1e9, 2e9, 3e9])
    # second call: read from the cache, no solve
    with pytest.warns(RuntimeWarning):
        md2 = mismip_plus_spinup("20 km", years=3, time_step=1, cache_dir=tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(md2.geometry.thickness, md.geometry.thickness)


def test_mismip_plus_spinup_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import xarray as xr

    import issm_emulator.api

    monkeypatch.setattr(issm_emulator.api, "solve", _fake_transient([]))

    def broken(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        mismip_plus_spinup(20e3, years=3, time_step=1, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not _fem_available(), reason="the 'fem' solver is not registered")
def test_mismip_plus_spinup_with_fem(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a 10-year spin-up is not a steady state
        md = mismip_plus_spinup(20e3, years=10, time_step=2, cache_dir=tmp_path)
    assert spinup_cache_path(20e3, 10, 2, "fem", tmp_path).is_file()
    assert md.timestepping.start_time == 0 and md.timestepping.final_time == 100
    # accumulation and flow changed the 100 m slab
    assert not np.allclose(md.geometry.thickness, 100.0)
    assert np.all(md.geometry.thickness > 0) and np.all(md.geometry.base >= md.geometry.bed)
    _consistent(md)
