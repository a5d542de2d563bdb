"""md.results filled from a hand-made SolverResult: pyISSM's classes, ISSM's units, save/load, plotting."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from modelfactory import make_square_shelf_md

from issm_emulator.errors import SolverError
from issm_emulator.issm.results import build_solution, fill_results
from issm_emulator.solvers.base import SolverResult

YTS = 365.0 * 24 * 3600


def _result(md, n=3, solution="TransientSolution"):
    nv = md.mesh.numberofvertices
    x = np.asarray(md.mesh.x, float)
    steps = []
    for k in range(1, n + 1):
        vx = (x / 1e3 + k) / YTS  # m/s, i.e. x/1000 + k m/yr
        vy = np.full(nv, -2.0 / YTS)
        steps.append({
            "step": k, "time": 10 * YTS + k * 0.5 * YTS, "Vx": vx, "Vy": vy, "Vel": np.hypot(vx, vy),
            "Thickness": md.geometry.thickness - k, "Surface": md.geometry.surface - 0.1 * k,
            "Base": md.geometry.base + 0.9 * k, "MaskOceanLevelset": md.mask.ocean_levelset,
            "Pressure": np.full(nv, 1e5 * k),
            "IceVolume": 1e14 + k, "IceVolumeAboveFloatation": 0.0, "GroundedArea": 0.0,
            "FloatingArea": 1e12, "TotalSmb": k * 1e12 / YTS, "TotalFloatingBmb": -2e12 / YTS,
            "StressbalanceConvergenceNumSteps": 4 + k,
        })
    return SolverResult(solution, steps, {"note": "hand made"})


def test_pyissm_classes_and_units():
    from pyissm.model.classes import results as R

    md = make_square_shelf_md()
    fill_results(md, _result(md), YTS)
    sol = md.results.TransientSolution
    assert type(sol) is R.solution and all(type(s) is R.solutionstep for s in sol.steps)
    assert md.private.solution == "TransientSolution"
    assert [s.step for s in sol.steps] == [1, 2, 3]
    np.testing.assert_allclose(sol.time, [10.5, 11.0, 11.5])  # years
    x = md.mesh.x
    np.testing.assert_allclose(sol.Vx[1], x / 1e3 + 2, rtol=1e-12)  # m/yr
    np.testing.assert_allclose(sol.Vy, -2.0, rtol=1e-12)
    np.testing.assert_allclose(sol.Vel[2], np.hypot(x / 1e3 + 3, 2.0), rtol=1e-12)
    np.testing.assert_allclose(sol.Thickness[0], md.geometry.thickness - 1)
    np.testing.assert_allclose(sol.Pressure[2], 3e5)  # Pa, unscaled
    np.testing.assert_allclose(sol.TotalSmb, [1.0, 2.0, 3.0], rtol=1e-12)  # Gt/yr
    np.testing.assert_allclose(sol.TotalFloatingBmb, -2.0, rtol=1e-12)
    np.testing.assert_allclose(sol.IceVolume, [1e14 + 1, 1e14 + 2, 1e14 + 3], rtol=0)  # m^3
    assert sol.steps[0].IceVolume.shape == (1,)  # ISSM's scalar outputs load as 1-element arrays
    assert sol.StressbalanceConvergenceNumSteps.dtype.kind == "i"
    np.testing.assert_array_equal(sol.StressbalanceConvergenceNumSteps, [5, 6, 7])
    first = sol.steps[0]
    assert first.SolutionType == "TransientSolution" and first.errlog == "" and "hand made" in first.outlog
    assert not any(hasattr(s, "SolutionType") or hasattr(s, "outlog") for s in sol.steps[1:])
    assert all(s.Vx.ndim == 1 and s.Vx.dtype == np.float64 for s in sol.steps)


def test_other_yts_and_stressbalance_single_step():
    md = make_square_shelf_md(transient=False)
    yts = 365.2422 * 86400
    res = _result(md, n=1, solution="StressbalanceSolution")
    fill_results(md, res, yts)
    sb = md.results.StressbalanceSolution
    assert type(sb).__name__ == "solutionstep" and sb.SolutionType == "StressbalanceSolution"
    np.testing.assert_allclose(sb.Vx, (md.mesh.x / 1e3 + 1) * yts / YTS, rtol=1e-12)
    assert sb.time == pytest.approx(10.5 * YTS / yts)


def test_build_solution_rejects_bad_results():
    md = make_square_shelf_md()
    with pytest.raises(SolverError, match="no output steps"):
        build_solution(SolverResult("TransientSolution", []), YTS)
    with pytest.raises(SolverError, match="lacks time"):
        build_solution(SolverResult("TransientSolution", [{"step": 1, "Vx": np.zeros(3)}]), YTS)
    with pytest.raises(SolverError, match="ThermalSolution"):
        build_solution(SolverResult("ThermalSolution", [{"step": 1, "time": 0.0}]), YTS)
    with pytest.raises(SolverError, match="'Vx'.*expected numbers"):
        build_solution(SolverResult("TransientSolution", [{"step": 1, "time": 0.0, "Vx": [object()]}]), YTS)
    res = _result(md)
    res.steps[1]["Vy"] = res.steps[1]["Vy"][:5]
    before = md.results
    with pytest.raises(SolverError, match="'Vy' of step 2"):
        fill_results(md, res, YTS)
    assert md.results is before and not hasattr(md.results, "TransientSolution")
    assert md.private.solution == ""


def test_save_load_round_trip(tmp_path, capsys):
    from pyissm.model.io import load_model, save_model

    md = make_square_shelf_md()
    fill_results(md, _result(md), YTS)
    fill_results(md, _result(md, n=1, solution="StressbalanceSolution"), YTS)
    path = tmp_path / "md.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyISSM warns about ISSM_DIR and its toolkits when loading
        save_model(md, str(path))
        md2 = load_model(str(path))
    for name in ("TransientSolution", "StressbalanceSolution"):
        a, b = getattr(md.results, name), getattr(md2.results, name)
        steps_a = getattr(a, "steps", [a])
        steps_b = getattr(b, "steps", [b])
        assert len(steps_a) == len(steps_b)
        for sa, sb in zip(steps_a, steps_b):
            for field, value in vars(sa).items():
                got = getattr(sb, field)
                if isinstance(value, str):
                    assert got == value, field
                else:
                    assert np.asarray(got).dtype.kind == np.asarray(value).dtype.kind, field
                    np.testing.assert_array_equal(np.ravel(got), np.ravel(value), err_msg=field)
    np.testing.assert_array_equal(md2.results.TransientSolution.Vel, md.results.TransientSolution.Vel)
    np.testing.assert_array_equal(md2.results.TransientSolution.IceVolume, md.results.TransientSolution.IceVolume)


def test_plot_model_field_draws():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pyissm.plot import plot_model_field

    md = make_square_shelf_md()
    fill_results(md, _result(md), YTS)
    fig, _ax, trip = plot_model_field(md, md.results.TransientSolution.Vel[-1])
    try:
        fig.canvas.draw()
        np.testing.assert_allclose(trip.get_array().min(), md.results.TransientSolution.Vel[-1].min())
        assert trip.get_array().size == md.mesh.numberofvertices
    finally:
        plt.close(fig)
