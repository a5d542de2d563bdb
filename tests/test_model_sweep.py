"""Sweeps of a user's own saved pyISSM model (issue 14): ``generate --model --vary``, ``sweep_model``, the
checks that run before any run, and train/evaluate on the resulting ensemble.

The model is the 25-vertex square shelf of tests/modelfactory.py, half grounded, with its own friction field
(it matches no built-in scenario); every run is 2 one-year steps."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from issm_emulator.datasets import ModelSweepSpec, find_runs, model_sweep_spec, sweep_model
from issm_emulator.datasets import cli as dcli
from issm_emulator.datasets.layout import RUNS_DIR
from issm_emulator.errors import ModelInputError
from tests.modelfactory import make_square_shelf_md

MELT = "basalforcings.floatingice_melting_rate"


def _model():
    md = make_square_shelf_md(5, 5, grounded_part=True)
    md.friction.coefficient = np.where(md.mask.ocean_levelset > 0, 15.0 + 1e-5 * md.mesh.x, 0.0)  # its own field
    md.timestepping.final_time = 2.0
    return md


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from pyissm.model.io import save_model

    path = tmp_path_factory.mktemp("model") / "my_model.nc"
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_model(_model(), str(path))
    return path


def _files(folder):
    return sorted(p.name for p in (folder / RUNS_DIR).glob("*.nc")) if (folder / RUNS_DIR).is_dir() else []


def test_cli_sweep_of_a_saved_model_then_train_and_evaluate(saved_model, tmp_path):
    from issm_emulator.learning.cli import evaluate_command, train_command

    runner = CliRunner()
    out = tmp_path / "ens"
    res = runner.invoke(dcli.generate, ["--model", str(saved_model), "--vary", f"{MELT}=0:20:10",
                                        "--vary", "friction.coefficient*=0.8,1.2", "--out", str(out),
                                        "--workers", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "6 runs of" in res.output and "0 of 6 runs already computed" in res.output
    assert "splits (interleaved): train 4, validation 1, test 1 of 6 run(s)" in res.output
    with xr.open_dataset(out / "ensemble.nc") as ds:
        ds.load()
    melt, fac = ds[MELT.replace(".", "_")], ds["friction_coefficient_factor"]
    assert melt.values.tolist() == [0, 0, 10, 10, 20, 20] and fac.values.tolist() == [0.8, 1.2] * 3
    assert melt.attrs["units"] == "m yr^-1" and melt.attrs["md_path"] == f"md.{MELT}"
    assert fac.attrs["operation"] == "scale" and ds.attrs["sweep_kind"] == "model"
    assert json.loads(ds.attrs["forcing_features"]) == ["melt_rate"]
    base = _model().friction.coefficient
    floating = ds.ocean_levelset0.values[0] < 0
    for r in range(6):  # the stored static fields are the base model with the run's values applied
        np.testing.assert_allclose(ds.friction_coefficient.values[r], base * fac.values[r])
        np.testing.assert_allclose(ds.floatingice_melting_rate.values[r][floating], melt.values[r])
    assert ds.sizes["time"] == 2  # years and step from the model (final_time 2, step 1)
    assert len(list(out.glob("model-*.nc"))) == 1

    res = runner.invoke(dcli.info, [str(out)])
    assert res.exit_code == 0, res.output
    assert "model       model-" in res.output and "(scale md.friction.coefficient)" in res.output
    assert "splits      train 4, validation 1, test 1 (interleaved" in res.output

    ck = tmp_path / "egcn.pt"
    res = runner.invoke(train_command, ["--data", str(out), "--out", str(ck), "--epochs", "1", "--hidden", "8",
                                        "--layers", "1", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(evaluate_command, ["--checkpoint", str(ck), "--data", str(out), "--out",
                                           str(tmp_path / "eval"), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "rollout" in res.output and "split 'test': 1 run(s)" in res.output


def test_python_api_zip_units_resume_and_rebuild(tmp_path):
    from issm_emulator.learning.dataset import StepDataset
    from issm_emulator.units import Q_

    md = _model()
    out = tmp_path / "zip"
    vary = {MELT: Q_(np.array([0.0, 36.5]), "m/day") / 365.0, "smb.mass_balance": ["0 m/yr", "1 m/yr"]}
    path = sweep_model(md, vary, out, zip=True, years=1.0, workers=0, progress=False)
    with xr.open_dataset(path) as ds:
        assert ds[MELT.replace(".", "_")].values.tolist() == [0.0, 36.5] and ds.sizes["run"] == 2
        assert ds.smb_mass_balance.values.tolist() == [0.0, 1.0] and ds.sizes["time"] == 1
    first = _files(out)
    # an in-memory model is digested by content: the same model resumes, one more pair runs alone
    spec = model_sweep_spec(md, {MELT: [0.0, 36.5, 50.0], "smb.mass_balance": [0.0, 1.0, 2.0]}, out, zip=True,
                            years=1.0)
    found = find_runs(spec, out)
    assert [v for _, v, _ in found["done"]] == [(0.0, 0.0), (36.5, 1.0)] and found["todo"] == [(2, (50.0, 2.0))]
    sweep_model(md, {MELT: [0.0, 36.5, 50.0], "smb.mass_balance": [0.0, 1.0, 2.0]}, out, zip=True, years=1.0,
                workers=0, progress=False)
    assert set(first) < set(_files(out)) and len(_files(out)) == 3

    ds = StepDataset(out, "all")  # the learning pipeline rebuilds each run's model from the stored one
    try:
        assert isinstance(ds.ensemble_spec(), ModelSweepSpec)
        st = ds.run_state(2)
        assert ds.run_arrays(2).value == (50.0, 2.0)
        np.testing.assert_allclose(st.smb.at(0.0, False) * st.yts, 2.0)
    finally:
        ds.close()


@pytest.mark.parametrize("vary, match", [
    ({"basalforcings.no_such_field": "0:10:5"}, r"md\.basalforcings\.no_such_field: .*no field 'no_such_field'"),
    ({"nosuchclass.rate": "1"}, r"md\.nosuchclass\.rate: .*no field 'nosuchclass'"),
    ({"friction": "1,2"}, r"md\.friction: expected a field path"),
    ({"basalforcings.friction": "1"}, r"md\.basalforcings\.friction: .*no field"),
    ({MELT: "0:10:5 Pa"}, r"md\.basalforcings\.floatingice_melting_rate.*m yr\^-1"),
    ({MELT: [np.zeros(25)]}, r"md\.basalforcings\.floatingice_melting_rate: expected scalar values.*shape \(25,\)"),
    ({MELT: np.zeros((2, 25))}, r"md\.basalforcings\.floatingice_melting_rate: expected a list of scalar values"),
    ({"materials.rheology_n": "3 m"}, r"md\.materials\.rheology_n"),
    ({"materials.rheology_B": "0,1e8"}, r"md\.materials\.rheology_B: expected values > 0.*in the model of run"),
    ({"geometry.thickness*": "1,-1"}, r"md\.geometry\.thickness: expected values >= 0"),
    ({"miscellaneous.name": "1"}, r"md\.miscellaneous\.name: expected a numeric field"),
])
def test_errors_before_any_run(saved_model, tmp_path, vary, match):
    with pytest.raises(ModelInputError, match=match):
        sweep_model(str(saved_model), vary, tmp_path / "bad", workers=0, progress=False)
    assert _files(tmp_path / "bad") == []


def test_model_file_and_cli_errors(saved_model, tmp_path):
    with pytest.raises(ModelInputError, match="model file.*does not exist"):
        model_sweep_spec(tmp_path / "missing.nc", {MELT: "1"}, tmp_path / "o")
    runner = CliRunner()
    res = runner.invoke(dcli.generate, ["--model", str(saved_model), "--vary", "basalforcings.nope=1", "--out",
                                        str(tmp_path / "o")])
    assert res.exit_code == 1 and "md.basalforcings.nope" in res.output
    res = runner.invoke(dcli.generate, ["--model", str(saved_model), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--vary" in res.output
    res = runner.invoke(dcli.generate, ["--model", str(saved_model), "--vary", f"{MELT}=0,1", "--vary",
                                        "friction.coefficient*=1,2,3", "--zip", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "same number of values" in res.output
    res = runner.invoke(dcli.generate, ["--model", str(saved_model), "--vary", f"{MELT}=1", "square-melt",
                                        "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "built-in sweep" in res.output


def test_scalar_fields_time_series_and_time_overrides(tmp_path):
    md = _model()
    nv = md.mesh.numberofvertices
    md.smb.mass_balance = np.vstack([np.ones((nv, 2)), [[0.0, 1.0]]])  # a forcing time series (nv+1, 2)
    md.basalforcings.groundedice_melting_rate = 0.0  # a scalar field stays scalar
    spec = model_sweep_spec(md, {"smb.mass_balance*": [2.0], "basalforcings.groundedice_melting_rate": [3.0]},
                            tmp_path, years="6 months", time_step=0.25, output_frequency=2)
    built = spec.build_model(spec.values[0])
    np.testing.assert_array_equal(built.smb.mass_balance[:-1], 2.0)
    np.testing.assert_array_equal(built.smb.mass_balance[-1], [0.0, 1.0])  # the time row is kept
    assert built.basalforcings.groundedice_melting_rate == 3.0
    assert (built.timestepping.final_time, built.timestepping.time_step, built.settings.output_frequency) == \
        (0.5, 0.25, 2)


def test_the_own_model_walkthrough_script_runs(tmp_path, monkeypatch):
    """docs/own-model.md's model script builds and saves a model that a sweep accepts and runs."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "own-model.md").read_text()
    script = re.search(r"```python\n(\"\"\"make_my_model.py.*?)```", doc, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(script, "make_my_model.py", "exec"), {"__name__": "__main__"})  # noqa: S102
    path = sweep_model("my_glacier.nc", {MELT: "0,30", "friction.coefficient*": [1.0]}, "ens", years=1.0,
                       workers=0, progress=False)
    with xr.open_dataset(path) as ds:
        assert ds.sizes["run"] == 2 and ds.sizes["vertex"] == 59
        assert np.isfinite(ds.thickness.values).all()


def test_workers_without_the_folder_get_the_model_bytes(tmp_path):
    """A dask worker without the ensemble folder builds the runs from the bytes the spec carries."""
    import pickle

    spec = model_sweep_spec(_model(), {MELT: [5.0]}, tmp_path / "ens")
    remote = pickle.loads(pickle.dumps(spec.for_workers()))
    moved = tmp_path / "elsewhere.nc"
    (tmp_path / "ens" / spec.model_file.rsplit("/", 1)[-1]).rename(moved)
    md = remote.build_model(5.0)
    np.testing.assert_array_equal(md.basalforcings.floatingice_melting_rate, 5.0)
    assert remote.fingerprint(5.0) == spec.fingerprint(5.0)  # the bytes are not part of the identity


def test_model_sweep_on_a_dask_cluster(saved_model, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        path = sweep_model(saved_model, {MELT: "0,40"}, tmp_path / "dask", years=1.0, scheduler=client,
                           progress=False)
    with xr.open_dataset(path) as ds:
        last = ds.thickness.isel(time=-1).where(ds.ocean_levelset0 < 0).mean("vertex").values
        assert ds.sizes["run"] == 2 and last[0] > last[1]  # more melt, thinner shelf
