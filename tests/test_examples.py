"""The scripts in examples/ run at their ``--small`` size and produce what they promise.

Each example is loaded from its file and its ``main(argv)`` called in-process (same code path as
``python examples/<name>.py --small``); outputs go to a temporary folder.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"issm_emulator_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def _series(md, name):
    return np.array([float(np.ravel(getattr(s, name))[0]) for s in md.results.TransientSolution.steps])


def test_swap_solver_small(tmp_path, capsys):
    import xarray as xr

    ex = load_example("swap_solver")
    out = ex.main(["--small", "--out", str(tmp_path)])
    md = out["md"]
    sol = md.results.TransientSolution
    # ISSM's transient outputs, k = 1..N at k * dt, in ISSM's units
    assert [s.time for s in sol.steps] == [1.0, 2.0]
    nv = md.mesh.numberofvertices
    for name in ("Vx", "Vy", "Vel", "Thickness", "Surface", "Base", "MaskOceanLevelset"):
        assert np.shape(getattr(sol.steps[-1], name)) == (nv,)
    assert np.all(np.isfinite(sol.steps[-1].Vel)) and np.max(sol.steps[-1].Vel) > 100.0  # m/yr, not m/s
    floating = np.asarray(md.mask.ocean_levelset) < 0
    # the floating shelf flows faster than the grounded sheet
    assert np.mean(sol.steps[0].Vel[floating]) > np.mean(sol.steps[0].Vel[~floating])
    assert md.private.solution == "TransientSolution"
    assert (out["netcdf"]).is_file() and out["png"].is_file()
    with xr.open_dataset(out["netcdf"], decode_times=False) as ds:
        assert ds["Vel"].dims == ("time", "vertex") and ds["Vel"].attrs["units"] == "m yr^-1"
        np.testing.assert_allclose(ds["Vel"].values[-1], sol.steps[-1].Vel)
    text = capsys.readouterr().out
    assert f"solver {ex.default_solver()!r}" in text


def test_swap_solver_names_fem_while_solve_follows_bundled_weights():
    from issm_emulator import weights
    from issm_emulator.plugins.manager import get_registry

    ex = load_example("swap_solver")
    # the square test domain lies outside the bundled (Pine Island) weights: the example names fem
    assert ex.default_solver() == "fem" and ex.parse_args([]).solver == "fem"
    expected = "egcn" if weights.has_default("egcn", "step") else "fem"
    assert get_registry().default_name() == expected  # what issm_emulator.solve picks without solver=


def test_swap_solver_rejects_unknown_solver(tmp_path):
    from issm_emulator.errors import UnknownSolverError

    ex = load_example("swap_solver")
    with pytest.raises(UnknownSolverError, match="no-such-solver"):
        ex.main(["--small", "--no-plot", "--out", str(tmp_path), "--solver", "no-such-solver"])


def test_pig_melt_ensemble_small(issm_data_dir, tmp_path):
    ex = load_example("pig_melt_ensemble")
    out = ex.main(["--small", "--out", str(tmp_path)])
    mds, ds = out["mds"], out["dataset"]
    assert len(mds) == 3
    assert list(ds["melt_rate"].values) == [0.0, 25.0, 50.0]
    assert ds["Thickness"].dims == ("melt_rate", "time", "vertex")
    # more sub-shelf melt: more basal mass loss and less volume above floatation at the end
    bmb = [_series(md, "TotalFloatingBmb")[-1] for md in mds]
    assert bmb[0] == pytest.approx(0.0, abs=1e-9) and 0 < bmb[1] < bmb[2]
    vaf = [_series(md, "IceVolumeAboveFloatation")[-1] for md in mds]
    assert vaf[0] > vaf[1] > vaf[2]
    assert out["netcdf"].is_file() and out["png"].is_file()


def test_pig_melt_rates_parser():
    ex = load_example("pig_melt_ensemble")
    assert ex.melt_rates("0:70:10") == [0, 10, 20, 30, 40, 50, 60, 70]
    assert ex.melt_rates("5, 15") == [5.0, 15.0]


def test_mismip_plus_small(tmp_path):
    ex = load_example("mismip_plus")
    argv = ["--small", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-plot"]
    with warnings.catch_warnings():  # 100 years is a short spin-up: "not yet at steady state"
        warnings.filterwarnings("ignore", message="mismip_plus_spinup", category=RuntimeWarning)
        out = ex.main(argv)
    assert len(list((tmp_path / "cache").glob("*.nc"))) == 1  # the spin-up was cached
    mds, ds = out["mds"], out["dataset"]
    assert list(ds["experiment"].values) == ["Ice0", "Ice1r", "Ice2r"]
    # all three start from the same cached steady state
    h0 = [np.asarray(md.geometry.thickness) for md in mds]
    np.testing.assert_array_equal(h0[0], h0[1])
    np.testing.assert_array_equal(h0[0], h0[2])
    # Ice1r and Ice2r melt the shelf, Ice0 does not
    bmb = {e: _series(md, "TotalFloatingBmb")[-1] for e, md in zip(ds["experiment"].values, mds)}
    assert bmb["Ice0"] == pytest.approx(0.0, abs=1e-9)
    assert bmb["Ice1r"] > 0 and bmb["Ice2r"] > 0
    # a second run reuses the cache and gives the same result
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="mismip_plus_spinup", category=RuntimeWarning)
        again = ex.main(argv)
    np.testing.assert_allclose(again["dataset"]["Thickness"].values, ds["Thickness"].values)


def test_own_model_small(tmp_path, monkeypatch, capsys):
    """Issue 'emulate your own model', end to end: a glacier no built-in scenario matches, saved with pyISSM,
    swept over two parameters, a tiny EGCN trained and registered; the default solve then runs it inside its
    domain, warns outside the trained range and falls back to fem on another mesh."""
    import issm_emulator
    from issm_emulator.errors import ExtrapolationWarning, FallbackWarning
    from issm_emulator.plugins import manager
    from issm_emulator.solvers.emulator.catalog import CHECKPOINTS_ENV_VAR

    monkeypatch.setenv(CHECKPOINTS_ENV_VAR, str(tmp_path / "registered"))
    monkeypatch.delenv(manager.ENV_VAR, raising=False)
    manager.reset_default_manager()
    ex = load_example("own_model")
    out = ex.main(["--small", "--out", str(tmp_path / "out")])
    info = out["info"]
    assert info["solver"] == "egcn" and info["selection"] == "emulator"
    assert info["checkpoint"]["source"] == "registered" and info["checkpoint"]["name"] == "my_glacier_egcn"
    assert out["registered"].parent == tmp_path / "registered"
    assert "ran 'egcn' (emulator)" in capsys.readouterr().out
    # a melt rate beyond the trained range: the emulator runs and warns
    md = ex.build_model(50e3, 2.0)
    md.basalforcings.floatingice_melting_rate = np.full(md.mesh.numberofvertices, 90.0)
    with pytest.warns(ExtrapolationWarning, match="melt_rate"):
        issm_emulator.solve(md, "Transient")
    assert issm_emulator.solve_info(md)["checkpoint"]["name"] == "my_glacier_egcn"
    # the same glacier on another mesh: no emulator applies, fem with a warning
    md = ex.build_model(25e3, 2.0)
    with pytest.warns(FallbackWarning, match="my_glacier_egcn \\(registered\\): mesh resolution"):
        issm_emulator.solve(md, "Transient")
    assert issm_emulator.solve_info(md)["solver"] == "fem"
    manager.reset_default_manager()
