"""issm_emulator.solve: pyISSM's signature, solution names, options, devices and md left untouched on error."""

from __future__ import annotations

import numpy as np
import pytest
from modelfactory import make_square_shelf_md

import issm_emulator
from issm_emulator.errors import (
    ModelInputError,
    SolverError,
    UnknownSolutionError,
    UnknownSolverError,
    UnsupportedOptionError,
)
from issm_emulator.plugins.hookspecs import hookimpl
from issm_emulator.plugins.manager import SolverRegistry, create_plugin_manager
from issm_emulator.solvers.base import STRESSBALANCE, Solver, SolverResult, vel


class FakeSolver(Solver):
    """Velocity = initial velocity + k m/yr in x at output step k; thickness thins by 1 m per step."""

    name = "fake"
    version = "9.9"
    description = "test double"
    devices = ("cpu",)
    fail_with: Exception | None = None
    bad_length = False

    def __init__(self):
        self.calls = []

    def check_options(self, options):
        unknown = set(options) - {"scale"}
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}")

    def solve(self, state, solution, *, device=None, **options):
        self.check_options(options)
        self.calls.append({"device": device, "options": options, "state": state})
        if self.fail_with is not None:
            raise self.fail_with
        ts, yts = state.timestepping, state.yts
        n = 1 if solution == STRESSBALANCE else round((ts.final_time - ts.start_time) / ts.time_step)
        steps = []
        for k in range(1, n + 1):
            vx = state.vx + options.get("scale", 1.0) * k / yts
            t = ts.start_time if solution == STRESSBALANCE else ts.start_time + k * ts.time_step
            step = {"step": k, "time": t,
                    "Vx": vx, "Vy": state.vy, "Vel": vel(vx, state.vy), "Thickness": state.geometry.thickness - k}
            if self.bad_length:
                step["Vx"] = vx[:-1]
            steps.append(step)
        return SolverResult(solution, steps, {"iterations": 1})


@pytest.fixture()
def fake():
    solver = FakeSolver()

    class Plugin:
        @hookimpl
        def issm_emulator_solvers(self):
            return [("fake", lambda: solver)]

    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(Plugin(), name="test-plugin")
    return solver, SolverRegistry(pm)


def _snapshot(md):
    return ({k: v for k, v in vars(md.results).items()}, dict(vars(md.private)),
            md.geometry.thickness.copy(), md.initialization.vx.copy())


def _assert_unchanged(md, snap):
    results, private, thickness, vx = snap
    assert vars(md.results).keys() == results.keys()
    assert all(getattr(md.results, k) is v for k, v in results.items())
    assert dict(vars(md.private)) == private
    np.testing.assert_array_equal(md.geometry.thickness, thickness)
    np.testing.assert_array_equal(md.initialization.vx, vx)


def test_transient_results_filled(fake):
    solver, reg = fake
    md = make_square_shelf_md()
    out = issm_emulator.solve(md, "Transient", solver="fake", registry=reg, scale=2.0)
    assert out is md
    assert md.private.solution == "TransientSolution"
    sol = md.results.TransientSolution
    assert len(sol.steps) == 3
    np.testing.assert_allclose(sol.time, [1.0, 2.0, 3.0])
    assert [s.step for s in sol.steps] == [1, 2, 3]
    np.testing.assert_allclose(sol.Vx[:, 0], [2.0, 4.0, 6.0], rtol=1e-12)  # m/yr
    np.testing.assert_allclose(sol.Thickness[2], md.geometry.thickness - 3)
    assert sol.steps[0].SolutionType == "TransientSolution"
    assert "solver: fake" in sol.steps[0].outlog and "iterations: 1" in sol.steps[0].outlog
    assert solver.calls[-1]["device"] == "cpu" and solver.calls[-1]["options"] == {"scale": 2.0}
    assert md.private.runtimename.startswith(f"{md.miscellaneous.name}-")


def test_stressbalance_is_a_single_step_and_options_accepted(fake):
    _, reg = fake
    md = make_square_shelf_md(transient=False)
    issm_emulator.solve(md, "sb", solver="fake", registry=reg, check_consistency=False, no_log=True,
                        runtime_name=False)
    sb = md.results.StressbalanceSolution
    assert type(sb).__name__ == "solutionstep" and sb.SolutionType == "StressbalanceSolution"
    np.testing.assert_allclose(sb.Vx, 1.0)
    assert sb.outlog == "" and md.private.runtimename == md.miscellaneous.name
    assert md.private.solution == "StressbalanceSolution"


@pytest.mark.parametrize("kwargs, option", [({"batch": True}, "batch"), ({"restart": "run-1"}, "restart"),
                                            ({"load_only": True}, "load_only")])
def test_unsupported_pyissm_options_raise(fake, kwargs, option):
    _, reg = fake
    md = make_square_shelf_md()
    snap = _snapshot(md)
    with pytest.raises(UnsupportedOptionError, match=option):
        issm_emulator.solve(md, "tr", solver="fake", registry=reg, **kwargs)
    _assert_unchanged(md, snap)


@pytest.mark.parametrize("name", ["mt", "Thermal", "SteadystateSolution", "bogus"])
def test_unknown_solution_lists_choices(fake, name):
    _, reg = fake
    md = make_square_shelf_md()
    with pytest.raises(UnknownSolutionError, match="TransientSolution.*StressbalanceSolution"):
        issm_emulator.solve(md, name, solver="fake", registry=reg)


def test_unknown_solver_lists_choices(fake):
    _, reg = fake
    with pytest.raises(UnknownSolverError, match="'fake'"):
        issm_emulator.solve(make_square_shelf_md(), "tr", solver="nope", registry=reg)


@pytest.mark.parametrize("failure", [RuntimeError("boom"), SolverError("diverged")])
def test_md_unchanged_when_solver_raises(fake, failure):
    solver, reg = fake
    md = make_square_shelf_md()
    issm_emulator.solve(md, "tr", solver="fake", registry=reg)  # earlier results must survive
    snap = _snapshot(md)
    solver.fail_with = failure
    with pytest.raises(type(failure)):
        issm_emulator.solve(md, "sb", solver="fake", registry=reg)
    _assert_unchanged(md, snap)


def test_md_unchanged_when_solver_output_is_malformed(fake):
    solver, reg = fake
    md = make_square_shelf_md()
    snap = _snapshot(md)
    solver.bad_length = True
    with pytest.raises(SolverError, match="'Vx'.*expected 36 values"):
        issm_emulator.solve(md, "tr", solver="fake", registry=reg)
    _assert_unchanged(md, snap)


def test_md_unchanged_on_bad_model_and_unknown_option(fake):
    _, reg = fake
    md = make_square_shelf_md()
    md.geometry.thickness = md.geometry.thickness[:-1]
    snap = _snapshot(md)
    with pytest.raises(ModelInputError, match="md.geometry.thickness"):
        issm_emulator.solve(md, "tr", solver="fake", registry=reg)
    _assert_unchanged(md, snap)
    md = make_square_shelf_md()
    snap = _snapshot(md)
    with pytest.raises(TypeError, match="bogus"):
        issm_emulator.solve(md, "tr", solver="fake", registry=reg, bogus=1)
    _assert_unchanged(md, snap)


def test_check_consistency_runs_pyissm_check(fake):
    _, reg = fake
    md = make_square_shelf_md()
    md.transient.isthermal = 1  # pyISSM then wants thermal fields; the fake solver does not
    snap = _snapshot(md)
    with pytest.raises(ModelInputError, match=r"^md\.thermal\.spctemperature"):
        issm_emulator.solve(md, "tr", solver="fake", registry=reg)
    _assert_unchanged(md, snap)  # pyISSM's check set md.private.solution/isconsistent: restored
    issm_emulator.solve(md, "tr", solver="fake", registry=reg, check_consistency=False)
    assert len(md.results.TransientSolution.steps) == 3


def test_devices(fake):
    solver, reg = fake
    md = make_square_shelf_md()
    with pytest.raises(UnsupportedOptionError, match="device='cuda'.*'cpu'"):
        issm_emulator.solve(md, "tr", solver="fake", registry=reg, device="cuda")
    issm_emulator.solve(md, "tr", solver="fake", registry=reg, device="CPU")
    assert solver.calls[-1]["device"] == "cpu"


def test_solver_instance_and_wrong_solution_support():
    class OnlySB(FakeSolver):
        solutions = (STRESSBALANCE,)

    md = make_square_shelf_md()
    with pytest.raises(UnknownSolutionError, match="does not implement TransientSolution"):
        issm_emulator.solve(md, "tr", solver=OnlySB())
    issm_emulator.solve(md, "sb", solver=OnlySB())
    assert hasattr(md.results, "StressbalanceSolution")


def test_default_solver_is_the_builtin_fem_without_bundled_weights(monkeypatch, tmp_path):
    from issm_emulator import weights
    from issm_emulator.plugins import manager

    monkeypatch.setattr(weights, "bundled_dir", lambda: tmp_path)  # no default EGCN weights
    monkeypatch.delenv(manager.ENV_VAR, raising=False)
    manager.reset_default_manager()
    md = make_square_shelf_md()
    issm_emulator.solve(md, "Transient")
    sol = md.results.TransientSolution
    assert "solver: fem" in sol.steps[0].outlog
    np.testing.assert_allclose(sol.time, [1.0, 2.0, 3.0])
    assert np.all(np.isfinite(sol.Vel)) and sol.Vel.max() > 0
