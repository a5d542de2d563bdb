"""The ``fem`` solver backend: ISSM's transient loop, outputs, options and failures (no ISSM data needed)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError, SolverDivergedError, SolverError
from issm_emulator.issm.adapter import read_model
from issm_emulator.solvers.base import STRESSBALANCE, TRANSIENT
from issm_emulator.solvers.fem import FEMSolver, time_steps
from tests.modelfactory import make_square_shelf_md

YTS = 365.0 * 24 * 3600


def _state(md, solution="Transient"):
    return read_model(md, solution)


def test_time_steps_shorten_the_last_step():
    steps = time_steps(0.0, 2.5 * YTS, 1.0 * YTS, YTS)
    assert [round(t / YTS, 12) for t, _ in steps] == [1.0, 2.0, 2.5]
    assert [round(d / YTS, 12) for _, d in steps] == [1.0, 1.0, 0.5]
    tenth = time_steps(0.0, YTS, 0.1 * YTS, YTS)
    assert len(tenth) == 10 and tenth[-1][0] == pytest.approx(YTS, rel=1e-15)
    assert time_steps(0.0, 0.0, YTS, YTS) == []
    with pytest.raises(ModelInputError, match="md.timestepping.time_step"):
        time_steps(0.0, YTS, 0.0, YTS)


def test_transient_without_stressbalance_is_smb_minus_melt():
    md = make_square_shelf_md(5, 5, grounded_part=True)
    nv = md.mesh.numberofvertices
    md.transient.isstressbalance = 0
    md.smb.mass_balance = np.full(nv, 30.0)
    md.basalforcings.groundedice_melting_rate = np.full(nv, 4.0)
    md.basalforcings.floatingice_melting_rate = np.full(nv, 4.0)
    md.transient.requested_outputs = ["default", "IceVolume", "TotalSmb", "GroundedArea", "FloatingArea"]
    H0 = np.array(md.geometry.thickness, dtype=float)
    res = FEMSolver().solve(_state(md), TRANSIENT)
    assert res.solution == TRANSIENT
    assert [s["step"] for s in res.steps] == [1, 2, 3]
    np.testing.assert_allclose([s["time"] for s in res.steps], np.array([1, 2, 3]) * YTS)
    for k, s in enumerate(res.steps, start=1):
        assert "Vx" not in s and "MaskOceanLevelset" not in s
        np.testing.assert_allclose(s["Thickness"], H0 + 26.0 * k, rtol=1e-12)
        floating = np.asarray(md.mask.ocean_levelset) < 0
        np.testing.assert_allclose(s["Base"][floating], -917.0 / 1023.0 * s["Thickness"][floating])
        np.testing.assert_allclose(s["Surface"] - s["Base"], s["Thickness"])
        assert s["TotalSmb"] == pytest.approx(917.0 * 30.0 / YTS * 1e12, rel=1e-12)
        assert s["GroundedArea"] + s["FloatingArea"] == pytest.approx(1e12, rel=1e-12)
    assert res.steps[1]["IceVolume"] - res.steps[0]["IceVolume"] == pytest.approx(26.0 * 1e12, rel=1e-9)
    assert res.info["solver"] == "fem"


def test_transient_with_grounding_line_outputs_the_mask():
    md = make_square_shelf_md(5, 5, grounded_part=True)
    md.transient.isstressbalance = 0
    md.transient.isgroundingline = 1
    md.groundingline.migration = "AggressiveMigration"
    res = FEMSolver().solve(_state(md), TRANSIENT)
    s = res.steps[-1]
    expected = s["Thickness"] + np.asarray(md.geometry.bed) * 1023.0 / 917.0
    np.testing.assert_allclose(s["MaskOceanLevelset"], expected, rtol=1e-12, atol=1e-9)


def test_output_frequency_keeps_first_multiples_and_last():
    md = make_square_shelf_md(4, 4)
    md.transient.isstressbalance = 0
    md.timestepping.final_time = 5.0
    md.settings.output_frequency = 2
    res = FEMSolver().solve(_state(md), TRANSIENT)
    assert [s["step"] for s in res.steps] == [1, 2, 4, 5]
    assert res.info["nsteps"] == 5


def test_options_are_checked():
    solver = FEMSolver()
    assert solver.name == "fem" and solver.devices == ("cpu",)
    assert set(solver.solutions) == {TRANSIENT, STRESSBALANCE}
    with pytest.raises(TypeError, match="unknown option"):
        solver.check_options({"tolerance": 1})
    with pytest.raises(TypeError, match="bool"):
        solver.check_options({"strict": "yes"})
    solver.check_options({"strict": True, "progress": False})
    md = make_square_shelf_md(4, 4)
    md.transient.isstressbalance = 0
    with pytest.raises(SolverError, match="CPU"):
        solver.solve(_state(md), TRANSIENT, device="cuda")


def _fake_ssa(monkeypatch, vx_value):
    from issm_emulator.physics.ssa import SSAResult

    calls = []

    def solve_ssa(state, *, thickness, surface, base, ocean_levelset, ice_levelset, vx0, vy0, mesh=None,
                  isnewton=None, strict=False):
        calls.append((np.array(thickness), np.array(vx0)))
        n = len(thickness)
        return SSAResult(np.full(n, vx_value), np.zeros(n), 3, 0.01, True)

    fake = types.ModuleType("issm_emulator.physics.ssa")
    fake.solve_ssa = solve_ssa
    monkeypatch.setitem(sys.modules, "issm_emulator.physics.ssa", fake)
    return calls


def test_stressbalance_sees_start_of_step_geometry_and_warm_start(monkeypatch):
    calls = _fake_ssa(monkeypatch, 100.0 / YTS)
    md = make_square_shelf_md(4, 4)
    nv = md.mesh.numberofvertices
    md.smb.mass_balance = np.full(nv, 10.0)
    res = FEMSolver().solve(_state(md), TRANSIENT)
    H0 = np.asarray(md.geometry.thickness, float)
    np.testing.assert_allclose(calls[0][0], H0)
    np.testing.assert_allclose(calls[1][0], res.steps[0]["Thickness"])
    np.testing.assert_allclose(calls[1][1], 100.0 / YTS)  # warm start from the previous velocity
    np.testing.assert_allclose(res.steps[1]["Pressure"], 917.0 * 9.81 * res.steps[0]["Thickness"])
    assert res.steps[0]["StressbalanceConvergenceNumSteps"] == 3
    np.testing.assert_allclose(res.steps[0]["Vel"], 100.0 / YTS)


def test_nan_velocity_raises_diverged_with_step_and_time(monkeypatch):
    _fake_ssa(monkeypatch, np.nan)
    md = make_square_shelf_md(4, 4)
    with pytest.raises(SolverDivergedError) as info:
        FEMSolver().solve(_state(md), TRANSIENT)
    assert info.value.step == 1 and info.value.time == pytest.approx(1.0)
    assert "step 1" in str(info.value)


@pytest.mark.parametrize("stab", [1, 5])
def test_square_shelf_transient_with_ssa(stab):
    md = make_square_shelf_md(6, 6)
    nv = md.mesh.numberofvertices
    md.basalforcings.floatingice_melting_rate = np.full(nv, 1.0)
    md.masstransport.stabilization = stab
    md.transient.requested_outputs = ["default", "TotalFloatingBmb", "IceVolume", "DeviatoricStressxx"]
    res = FEMSolver().solve(_state(md), TRANSIENT)
    assert len(res.steps) == 3
    for s in res.steps:
        for name in ("Vx", "Vy", "Vel", "Pressure", "Thickness", "Surface", "Base", "DeviatoricStressxx"):
            assert np.all(np.isfinite(s[name])), name
        assert s["TotalFloatingBmb"] == pytest.approx(917.0 / YTS * 1e12, rel=1e-12)
    v = res.steps[0]["Vy"] * YTS
    assert v.max() > 100.0  # the shelf spreads towards the front (y = length)
    assert res.steps[-1]["IceVolume"] < res.steps[0]["IceVolume"]


def test_stressbalance_solution_returns_one_step():
    md = make_square_shelf_md(6, 6, transient=False)
    md.stressbalance.requested_outputs = ["default", "DeviatoricStressxx", "DeviatoricStressxy"]
    res = FEMSolver().solve(_state(md, "Stressbalance"), STRESSBALANCE)
    assert res.solution == STRESSBALANCE and len(res.steps) == 1
    s = res.steps[0]
    for name in ("Vx", "Vy", "Vel", "Pressure", "DeviatoricStressxx", "DeviatoricStressxy"):
        assert s[name].shape == (md.mesh.numberofvertices,)
    np.testing.assert_allclose(s["Vel"], np.hypot(s["Vx"], s["Vy"]))
    np.testing.assert_allclose(s["Pressure"], 917.0 * 9.81 * np.asarray(md.geometry.thickness))
