"""Ensemble datasets: spec and value parsing, per-run files, resume, failures, combined layout, splits,
local processes and a dask LocalCluster. Every run is the 26-vertex square shelf for 2 one-year steps."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from issm_emulator.datasets import (
    ENSEMBLE_FILE,
    EnsembleError,
    EnsembleSpec,
    atomic_write_netcdf,
    ensemble_spec,
    generate_ensemble,
    parse_values,
    run_file_for,
    select_split,
    split_labels,
    split_runs,
)
from issm_emulator.datasets.layout import RUNS_DIR
from issm_emulator.errors import SolverError, UnitError
from issm_emulator.solvers.fem import FEMSolver

RES = 200e3  # 26 vertices


def _spec(values, solver="fem", **kw) -> EnsembleSpec:
    return EnsembleSpec(scenario="square_melt", parameter="melt_rate", values=values, units="m yr^-1",
                        scenario_kwargs={"resolution": RES}, solver=solver, years=kw.pop("years", 2.0),
                        time_step=1.0, name="square-melt", split_rule="square-melt", **kw)


def _run_name(spec, value) -> str:
    """The run file of ``value`` (named by value and fingerprint)."""
    return run_file_for(spec.value_coords(value), spec.fingerprint(value))


def _melt_of(state) -> float:
    """The (uniform) floating melt rate of a state, m/yr."""
    return float(np.asarray(state.basalforcings.floatingice_melting_rate.values)[0] * state.yts)


class CountingSolver(FEMSolver):
    """The FE solver, recording the melt rate of every call (its registry name stays 'fem')."""

    def __init__(self, fail_at=(), interrupt_after=None):
        self.calls: list[float] = []
        self.fail_at = set(fail_at)
        self.interrupt_after = interrupt_after

    def solve(self, state, solution, *, device=None, **options):
        melt = _melt_of(state)
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt  # a Ctrl-C / crash in the middle of the ensemble
        self.calls.append(melt)
        if melt in self.fail_at:
            raise SolverError(f"synthetic failure at melt rate {melt}")
        return super().solve(state, solution, device=device, **options)


def _tmp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ values
def test_parse_values_ranges_and_lists():
    values, unit = parse_values("0:70:2")
    assert len(values) == 36 and values[0] == 0.0 and values[-1] == 70.0 and unit is None
    assert np.allclose(np.diff(values), 2.0)
    assert parse_values("0:5:2")[0] == [0.0, 2.0, 4.0]  # stop off the grid: not included
    assert parse_values("1:3")[0] == [1.0, 2.0, 3.0]
    assert parse_values("10:0:-5")[0] == [10.0, 5.0, 0.0]
    assert parse_values("0:20:10, 35,1e2")[0] == [0.0, 10.0, 20.0, 35.0, 100.0]
    mpa, unit = parse_values("0.65:1.2:0.05 MPa")
    assert unit == "MPa" and len(mpa) == 12 and mpa[1] == 0.7 and mpa[-1] == 1.2  # decimal, no 0.70000001
    assert parse_values("Ice0, Ice1r", allow_strings=True) == (["Ice0", "Ice1r"], None)
    for bad in ("", "0:10:0", "0:10:-1", "1,1", "a:b", "1,,2", "Ice0"):
        with pytest.raises(ValueError):
            parse_values(bad)


def test_spec_values_units_and_defaults():
    spec = _spec(["1 m/day", 3.0])
    assert spec.values == (365.0, 3.0)  # the package's year: 365 days
    assert _spec("0:4:2").values == (0.0, 2.0, 4.0)
    with pytest.raises(UnitError):
        _spec(["3 Pa"])
    with pytest.raises(EnsembleError, match="duplicates"):
        _spec([1.0, "1 m/yr"])
    pig = ensemble_spec("pig-melt")
    assert (pig.scenario, pig.parameter, len(pig.values), pig.years) == ("pine_island", "melt_rate", 36, 20.0)
    n79 = ensemble_spec("north79-calving", "0.65:1.2:0.05 MPa")
    assert n79.units == "Pa" and n79.values[0] == 650e3 and n79.values[-1] == 1.2e6
    with pytest.raises(EnsembleError, match="unknown sweep"):
        ensemble_spec("nope")
    # the fingerprint follows everything that determines a run
    assert _spec([1.0]).fingerprint(1.0) == _spec([1.0, 2.0]).fingerprint(1.0)
    assert _spec([1.0]).fingerprint(1.0) != _spec([1.0], years=3.0).fingerprint(1.0)
    assert _spec([1.0]).fingerprint(1.0) != _spec([1.0]).fingerprint(2.0)


# ------------------------------------------------------------------------------------------ splits
def _fake_ensemble(param: str, values, rule: str) -> xr.Dataset:
    return xr.Dataset(coords={"run": np.arange(len(values)), param: ("run", np.asarray(values, float))},
                      attrs={"parameter": param, "split_rule": rule})


def test_pig_split_on_0_70_2():
    values = parse_values("0:70:2")[0]
    ds = _fake_ensemble("melt_rate", values, "pig-melt")
    idx = split_runs(ds)
    rates = {k: ds.melt_rate.values[v].tolist() for k, v in idx.items()}
    assert rates["test"] == [0.0, 20.0, 40.0, 60.0]
    assert rates["validation"] == [10.0, 30.0, 50.0, 70.0]
    assert len(rates["train"]) == 28 and all(r % 10 != 0 for r in rates["train"])
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(36))
    assert select_split(ds, "validation").melt_rate.values.tolist() == rates["validation"]
    with pytest.raises(ValueError):
        select_split(ds, "holdout")


def test_north79_split_by_rank_is_order_independent():
    thresholds = np.array(parse_values("0.65:1.2:0.05")[0]) * 1e6
    labels = split_labels(thresholds, "north79-calving")
    assert thresholds[labels == "test"].tolist() == [0.70e6, 1.00e6]
    assert thresholds[labels == "validation"].tolist() == [0.85e6, 1.15e6]
    assert (labels == "train").sum() == 8 and labels[0] == "train"
    perm = np.random.default_rng(0).permutation(thresholds.size)
    assert (split_labels(thresholds[perm], "north79-calving") == labels[perm]).all()
    # an ensemble that names no rule gets the default 'interleaved' rule
    one = split_runs(xr.Dataset(coords={"run": [0], "p": ("run", [1.0])}, attrs={"parameter": "p"}))
    assert one["train"].tolist() == [0] and one["test"].size == 0


# ------------------------------------------------------------------------------------------ files
def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.nc"
    atomic_write_netcdf(xr.Dataset({"v": ("n", np.arange(3.0))}), path)

    def crash_midway(self, target, **kwargs):
        Path(target).write_bytes(b"CDF half a file")  # the writer got part of the way...
        raise OSError("No space left on device")  # ...and died

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash_midway)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_netcdf(xr.Dataset({"v": ("n", np.arange(5.0))}), path)
    with pytest.raises(OSError):
        atomic_write_netcdf(xr.Dataset({"v": ("n", np.arange(5.0))}), tmp_path / "new.nc")
    monkeypatch.undo()
    assert _tmp_files(tmp_path) == [] and not (tmp_path / "new.nc").exists()
    with xr.open_dataset(path, decode_times=False) as ds:
        assert ds.v.values.tolist() == [0.0, 1.0, 2.0]


def test_combined_dataset_layout_units_and_physics(tmp_path):
    import pint_xarray  # noqa: F401 - registers the .pint accessor

    from issm_emulator.units import CF_UNITS, ureg

    spec = _spec([0.0, 5.0, 10.0])
    path = generate_ensemble(spec, tmp_path, workers=0, progress=False)
    assert path == tmp_path / ENSEMBLE_FILE
    runs = sorted(p.name for p in (tmp_path / RUNS_DIR).glob("*.nc"))
    assert runs == sorted(_run_name(spec, v) for v in spec.values)
    assert _run_name(spec, 5.0) == f"run_melt_rate-5_{spec.fingerprint(5.0)[:8]}.nc"
    with xr.open_dataset(path, decode_times=False) as ds:
        ds.load()
    nv = ds.sizes["vertex"]
    assert dict(ds.sizes)["run"] == 3 and ds.sizes["time"] == 2 and nv == 26
    for name in ("vx", "vy", "thickness", "surface", "base", "ice_levelset", "ocean_levelset"):
        assert ds[name].dims == ("run", "time", "vertex"), name
        assert np.isfinite(ds[name].values).all(), name
    assert ds.vx.attrs["units"] == CF_UNITS["Vx"] == "m yr^-1" and ds.thickness.attrs["units"] == "m"
    assert ds.melt_rate.dims == ("run",) and ds.melt_rate.values.tolist() == [0.0, 5.0, 10.0]
    assert ds.melt_rate.attrs["units"] == "m yr^-1" and ds.time.values.tolist() == [1.0, 2.0]
    assert ds.elements.dims == ("element", "nodes") and ds.elements.min() == 1 and ds.elements.max() == nv
    assert ds.x.dims == ("vertex",) and ds.x.attrs["units"] == "m"
    for key in ("scenario", "solver", "solver_options", "source", "created", "parameter"):
        assert ds.attrs[key] != "", key
    assert ds.attrs["solver"] == "fem" and json.loads(ds.attrs["solver_options"]) == {}
    assert json.loads(ds.attrs["failed_runs"]) == []

    q = ds.pint.quantify(unit_registry=ureg)
    assert q.vx.pint.units == ureg.Unit("m/yr") and q.melt_rate.pint.units == ureg.Unit("m/yr")
    assert q.thickness.pint.units == ureg.meter
    # melting floating ice thins it by (melt rate) x (elapsed time): the runs differ by 5 m/yr x 2 yr
    thinning = (q.thickness.isel(run=0) - q.thickness.isel(run=[1, 2])).isel(time=-1).mean("vertex")
    expected = (q.melt_rate.isel(run=[1, 2]) - q.melt_rate.isel(run=0)) * (2.0 * ureg.year)
    np.testing.assert_allclose(thinning.data.to("m").magnitude, expected.data.to("m").magnitude, rtol=0.1)


def test_interrupt_leaves_complete_files_and_resume_skips_them(tmp_path):
    values = [0.0, 2.0, 4.0, 6.0]
    crashing = CountingSolver(interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        generate_ensemble(_spec(values, solver=crashing), tmp_path, workers=0, progress=False)
    runs_dir = tmp_path / RUNS_DIR
    done = sorted(p.name for p in runs_dir.glob("*.nc"))
    assert done == sorted([_run_name(_spec(values), 0.0), _run_name(_spec(values), 2.0)])
    assert _tmp_files(tmp_path) == [] and not (tmp_path / ENSEMBLE_FILE).exists()
    for name in done:
        with xr.open_dataset(runs_dir / name, decode_times=False) as ds:
            assert ds.attrs["run_complete"] == 1 and ds.thickness.shape == (2, 26)

    stale = runs_dir / f".{_run_name(_spec(values), 4.0)}.4194304.deadbeef.tmp"  # a writer that died
    stale.write_bytes(b"partial")
    counting = CountingSolver()
    path = generate_ensemble(_spec(values, solver=counting), tmp_path, workers=0, progress=False)
    assert not stale.exists()
    assert counting.calls == [4.0, 6.0]  # only the runs that had not finished
    with xr.open_dataset(path, decode_times=False) as ds:
        assert ds.melt_rate.values.tolist() == values and ds.attrs["runs_finished"] == 4

    again = CountingSolver()
    generate_ensemble(_spec(values, solver=again), tmp_path, workers=0, progress=False)
    assert again.calls == []
    # a corrupt run file is not taken as finished: it is named, set aside and recomputed
    (runs_dir / done[0]).write_bytes(b"not a netcdf file")
    other = CountingSolver()
    with pytest.warns(RuntimeWarning, match=f"{done[0]} is unreadable"):
        generate_ensemble(_spec(values, solver=other), tmp_path, workers=0, progress=False)
    assert other.calls == [0.0]
    # a spec with other options is refused in this folder (guard.check_spec); nothing is recomputed
    from issm_emulator.datasets.guard import SpecMismatchError

    longer = CountingSolver()
    with pytest.raises(SpecMismatchError, match=r"years: 2\.0 -> 3\.0"):
        generate_ensemble(_spec(values[:2], solver=longer, years=3.0), tmp_path, workers=0, progress=False)
    assert longer.calls == []


def test_failed_run_is_recorded_and_retried(tmp_path):
    values = [0.0, 5.0, 10.0]
    failing = CountingSolver(fail_at={5.0})
    with pytest.warns(RuntimeWarning, match="1 of 3 runs failed"):
        path = generate_ensemble(_spec(values, solver=failing), tmp_path, workers=0, progress=False)
    assert sorted(failing.calls) == values  # the failure did not stop the others
    with xr.open_dataset(path, decode_times=False) as ds:
        assert ds.run.values.tolist() == [0, 2] and ds.melt_rate.values.tolist() == [0.0, 10.0]
        failed = json.loads(ds.attrs["failed_runs"])
    assert [f["index"] for f in failed] == [1] and "synthetic failure" in failed[0]["message"]
    record_path = tmp_path / RUNS_DIR / _run_name(_spec(values), 5.0).replace(".nc", ".failed.json")
    record = json.loads(record_path.read_text())
    assert record["parameter"] == "melt_rate" and record["value"] == 5.0
    assert record["error_type"] == "issm_emulator.errors.SolverError"
    assert "synthetic failure at melt rate 5.0" in record["message"] and "Traceback" in record["traceback"]
    assert not (tmp_path / RUNS_DIR / _run_name(_spec(values), 5.0)).exists()

    fixed = CountingSolver()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        path = generate_ensemble(_spec(values, solver=fixed), tmp_path, workers=0, progress=False)
    assert fixed.calls == [5.0] and not record_path.exists()
    with xr.open_dataset(path, decode_times=False) as ds:
        assert ds.run.values.tolist() == [0, 1, 2] and json.loads(ds.attrs["failed_runs"]) == []


def test_no_finished_run_raises(tmp_path):
    failing = CountingSolver(fail_at={1.0, 2.0})
    with pytest.raises(EnsembleError, match="no run finished.*synthetic failure"):
        generate_ensemble(_spec([1.0, 2.0], solver=failing), tmp_path, workers=0, progress=False)
    assert len(list((tmp_path / RUNS_DIR).glob("*.failed.json"))) == 2


def test_progress_bar_counts_resumed_and_failed_runs(tmp_path, capsys):
    generate_ensemble(_spec([0.0, 5.0]), tmp_path, workers=0, progress=False)
    failing = CountingSolver(fail_at={10.0})
    with pytest.warns(RuntimeWarning, match="1 of 3 runs failed"):
        generate_ensemble(_spec([0.0, 5.0, 10.0], solver=failing), tmp_path, workers=0, progress=True)
    assert failing.calls == [10.0]
    err = capsys.readouterr().err  # tqdm, on stderr: the 2 finished runs count from the start
    assert "square-melt" in err and "2/3" in err and "3/3" in err and "1 failed" in err
    generate_ensemble(_spec([0.0, 5.0]), tmp_path, workers=0, progress=True)
    assert "square-melt" not in capsys.readouterr().err  # nothing to run: no bar


def test_scenario_paths_of_the_former_ensemble_module_resolve():
    from issm_emulator.datasets import resolve_scenario, square_melt

    old = "issm_emulator.datasets.ensemble:square_melt"  # recorded by ensembles made before the split
    assert resolve_scenario(old) is square_melt
    spec = EnsembleSpec(scenario=old, parameter="melt_rate", values=[1.0], units="m yr^-1")
    assert spec.provenance()["scenario"] == old and spec.build_model(1.0).mesh.numberofvertices > 0


# ------------------------------------------------------------------------------------------ parallel
def test_local_processes_match_in_process_run(tmp_path):
    spec = _spec([0.0, 8.0])
    # 'fork' keeps the test fast (no re-import in the workers); the default 'spawn' runs the same code path
    par = generate_ensemble(spec, tmp_path / "pool", workers=2, progress=False, mp_context="fork")
    ser = generate_ensemble(spec, tmp_path / "serial", workers=0, progress=False)
    with xr.open_dataset(par, decode_times=False) as a, xr.open_dataset(ser, decode_times=False) as b:
        for name in ("vx", "thickness", "ocean_levelset"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
        assert a.melt_rate.values.tolist() == [0.0, 8.0]


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = _spec([0.0, 4.0, 8.0])
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        path = generate_ensemble(spec, tmp_path / "dask", scheduler=client, progress=False)
        # resume through an address: nothing left to run
        generate_ensemble(spec, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    with xr.open_dataset(path, decode_times=False) as ds:
        assert ds.sizes["run"] == 3 and ds.melt_rate.values.tolist() == [0.0, 4.0, 8.0]
        last = ds.thickness.isel(time=-1).mean("vertex").values
        assert last[0] > last[1] > last[2]  # more melt, thinner shelf
    assert os.path.isfile(tmp_path / "dask" / RUNS_DIR / _run_name(spec, 8.0))
