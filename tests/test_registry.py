"""The pluggy solver registry: plugins registered directly, through the built-in entry point and through a
real entry point of an installed test distribution (tests/plugin_dist)."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from issm_emulator.errors import DuplicateSolverError, SolverError, UnknownSolverError
from issm_emulator.plugins import manager as mgr
from issm_emulator.plugins.hookspecs import hookimpl
from issm_emulator.solvers.base import Solver, SolverResult

PLUGIN_DIST = Path(__file__).parent / "plugin_dist"


class _Echo(Solver):
    name = "echo"
    version = "2.0"
    description = "returns the initial velocity"
    devices = ("cpu", "cuda")

    def solve(self, state, solution, *, device=None, **options):
        return SolverResult(solution, [{"step": 1, "time": 0.0, "Vx": state.vx}])


def _plugin(*specs):
    class Plugin:
        @hookimpl
        def issm_emulator_solvers(self):
            return list(specs)

    return Plugin()


def test_plugin_registered_on_fresh_manager():
    calls = []

    def factory():
        calls.append(1)
        return _Echo()

    pm = mgr.create_plugin_manager(load_entrypoints=False)
    pm.register(_plugin(("echo", factory)), name="mine")
    reg = mgr.SolverRegistry(pm)
    assert reg.names() == ["echo"]
    assert calls == []  # factories are lazy
    solver = reg.get("echo")
    assert isinstance(solver, _Echo) and reg.get("echo") is solver and calls == [1]
    [row] = mgr.available_solvers(reg)
    assert row == {"name": "echo", "version": "2.0", "description": "returns the initial velocity",
                   "devices": ("cpu", "cuda"), "solutions": ("TransientSolution", "StressbalanceSolution"),
                   "plugin": "mine", "distribution": ""}  # registered in-process: no distribution


def test_class_factory_is_described_without_being_called():
    class Counting(_Echo):
        made = 0

        def __init__(self):
            type(self).made += 1

    pm = mgr.create_plugin_manager(load_entrypoints=False)
    pm.register(_plugin(("echo", Counting)), name="p")
    reg = mgr.SolverRegistry(pm)
    assert reg.describe("echo")["version"] == "2.0" and Counting.made == 0
    reg.get("echo")
    assert Counting.made == 1


def test_duplicate_names_name_both_plugins():
    pm = mgr.create_plugin_manager(load_entrypoints=False)
    pm.register(_plugin(("echo", _Echo)), name="first-plugin")
    pm.register(_plugin(("echo", _Echo)), name="second-plugin")
    with pytest.raises(DuplicateSolverError, match="first-plugin.*second-plugin"):
        mgr.SolverRegistry(pm).names()


def test_unknown_name_lists_choices():
    pm = mgr.create_plugin_manager(load_entrypoints=False)
    pm.register(_plugin(("echo", _Echo), ("other", _Echo)), name="p")
    with pytest.raises(UnknownSolverError, match=r"'nope'.*'echo', 'other'") as exc:
        mgr.get_solver("nope", mgr.SolverRegistry(pm))
    assert isinstance(exc.value, KeyError)


def test_registry_follows_late_registration_and_default_preference():
    pm = mgr.create_plugin_manager(load_entrypoints=False)
    reg = mgr.SolverRegistry(pm)
    with pytest.raises(UnknownSolverError, match="none of the default solvers"):
        reg.default_name()
    pm.register(_plugin(("fem", _Echo)), name="a")
    assert reg.default_name() == "fem"
    pm.register(_plugin(("egcn", _Echo)), name="b")
    assert reg.names() == ["fem", "egcn"] and mgr.default_solver_name(reg) == "egcn"


@pytest.mark.parametrize("returned", [("x", _Echo), [("x",)], [("", _Echo)], [("x", 3)], "x"])
def test_malformed_hook_results_are_reported(returned):
    class Bad:
        @hookimpl
        def issm_emulator_solvers(self):
            return returned

    pm = mgr.create_plugin_manager(load_entrypoints=False)
    pm.register(Bad(), name="bad-plugin")
    with pytest.raises(SolverError, match="bad-plugin"):
        mgr.SolverRegistry(pm).names()


def test_broken_factory_fails_on_get_but_is_listed():
    def broken():
        raise ImportError("no such backend library")

    pm = mgr.create_plugin_manager(load_entrypoints=False)
    pm.register(_plugin(("broken", broken), ("echo", _Echo)), name="p")
    reg = mgr.SolverRegistry(pm)
    with pytest.raises(SolverError, match="no such backend library"):
        reg.get("broken")
    with pytest.warns(RuntimeWarning, match="no such backend library"):
        rows = reg.available()
    assert [r["name"] for r in rows] == ["broken", "echo"]
    assert rows[0]["description"].startswith("unavailable") and rows[1]["version"] == "2.0"
    pm2 = mgr.create_plugin_manager(load_entrypoints=False)
    pm2.register(_plugin(("notasolver", lambda: object())), name="p")
    with pytest.raises(SolverError, match="expected an issm_emulator.solvers.base.Solver"):
        mgr.SolverRegistry(pm2).get("notasolver")


def test_builtin_registers_through_its_entry_point(monkeypatch):
    monkeypatch.delenv(mgr.ENV_VAR, raising=False)
    pm = mgr.create_plugin_manager()
    assert pm.get_plugin("builtin") is importlib.import_module("issm_emulator.plugins.builtin")
    assert pm.plugin_distributions["builtin"].startswith("issm")  # loaded from the installed metadata
    reg = mgr.SolverRegistry(pm)
    assert reg.specs()["fem"].plugin == "builtin"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """tests/plugin_dist installed with pip into a temporary target folder."""
    work = tmp_path_factory.mktemp("plugin")
    src = work / "src"
    shutil.copytree(PLUGIN_DIST, src)  # build in a copy: setuptools writes build/ and egg-info in place
    target = work / "site"
    # Offline build with the environment's setuptools when it has one (Python < 3.12 venvs, or installed
    # with the project); otherwise pip builds in isolation and fetches setuptools from PyPI.
    isolation = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *isolation, "--quiet",
                           "--target", str(target), str(src)], check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(target.glob("issm_emulator_testplugin-0.0.1.dist-info"))
    yield target
    sys.modules.pop("issm_emulator_testplugin", None)


def test_real_entry_point_is_discovered(installed_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_plugin))
    monkeypatch.delenv(mgr.ENV_VAR, raising=False)
    pm = mgr.create_plugin_manager()
    assert pm.plugin_distributions["testplugin"] == "issm-emulator-testplugin 0.0.1"
    reg = mgr.SolverRegistry(pm)
    assert {"fem", "frozen-test"} <= set(reg.names())
    row = reg.describe("frozen-test")
    assert row["plugin"] == "testplugin" and row["version"] == "0.0.1" and row["devices"] == ("cpu",)
    assert type(reg.get("frozen-test")).__module__ == "issm_emulator_testplugin"


def test_env_var_allow_list(installed_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_plugin))
    monkeypatch.setenv(mgr.ENV_VAR, "")
    pm = mgr.create_plugin_manager()
    assert pm.get_plugin("testplugin") is None and pm.get_plugin("builtin") is not None
    assert "frozen-test" not in mgr.SolverRegistry(pm).names()

    monkeypatch.setenv(mgr.ENV_VAR, " testplugin , ")
    pm = mgr.create_plugin_manager()
    assert pm.get_plugin("testplugin") is not None and pm.get_plugin("builtin") is not None

    monkeypatch.setenv(mgr.ENV_VAR, "testplugin,not-installed")
    with pytest.warns(RuntimeWarning, match="not-installed"):
        mgr.create_plugin_manager()

    # the process-wide manager reads the variable when (re)built
    monkeypatch.setenv(mgr.ENV_VAR, "")
    mgr.reset_default_manager()
    try:
        assert "frozen-test" not in [s["name"] for s in mgr.available_solvers()]
        monkeypatch.setenv(mgr.ENV_VAR, "testplugin")
        mgr.reset_default_manager()
        assert "frozen-test" in [s["name"] for s in mgr.available_solvers()]
    finally:
        monkeypatch.delenv(mgr.ENV_VAR)
        mgr.reset_default_manager()


def test_solve_through_entry_point_plugin(installed_plugin, monkeypatch):
    from modelfactory import make_square_shelf_md

    import issm_emulator

    monkeypatch.syspath_prepend(str(installed_plugin))
    monkeypatch.delenv(mgr.ENV_VAR, raising=False)
    reg = mgr.SolverRegistry(mgr.create_plugin_manager())
    md = make_square_shelf_md()
    md.initialization.vx = md.mesh.x / 1e4  # m/yr
    md = issm_emulator.solve(md, "tr", solver="frozen-test", registry=reg)
    sol = md.results.TransientSolution
    assert len(sol.steps) == 3
    assert sol.Vx.shape == (3, md.mesh.numberofvertices)
    assert abs(sol.Vx[-1] - md.mesh.x / 1e4).max() < 1e-9 * (md.mesh.x.max() / 1e4)
    # thickness 1000 - 7e-4 y - 7e-5 x on the 1e6 m square: mean 615 m, volume 615e12 m^3 (P1 is exact)
    np.testing.assert_allclose(sol.IceVolume, 615e12, rtol=1e-12)
