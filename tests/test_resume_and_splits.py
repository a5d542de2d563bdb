"""Runs identified by their parameter values (resume by value) and splits for any grid (issue 14).

Every run is the 26-vertex square shelf of the 'square-melt' sweep for 2 one-year steps."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from issm_emulator.datasets import (
    EnsembleSpec,
    ensemble_spec,
    find_runs,
    generate_ensemble,
    parse_split,
    read_failures,
    run_file_name,
    split_labels,
    split_report,
    split_runs,
)
from issm_emulator.datasets import cli as dcli
from issm_emulator.datasets.guard import SpecMismatchError
from issm_emulator.datasets.layout import RUNS_DIR
from issm_emulator.datasets.splits import DEFAULT_RULE, SPLIT_RULES, InterleavedRule, coord_aliases
from issm_emulator.errors import SolverError
from issm_emulator.solvers.fem import FEMSolver


def _spec(values, solver="fem", **kw) -> EnsembleSpec:
    return EnsembleSpec(scenario="square_melt", parameter="melt_rate", values=values, units="m yr^-1",
                        scenario_kwargs={"resolution": 200e3}, solver=solver, years=kw.pop("years", 2.0),
                        time_step=1.0, name="square-melt", split_rule="square-melt", **kw)


class Counting(FEMSolver):
    """The FE solver recording the melt rate of every run it solves (registry name stays 'fem')."""

    def __init__(self, fail_at=()):
        self.calls: list[float] = []
        self.fail_at = set(fail_at)

    def solve(self, state, solution, *, device=None, **options):
        melt = float(np.asarray(state.basalforcings.floatingice_melting_rate.values)[0] * state.yts)
        self.calls.append(round(melt, 9))
        if melt in self.fail_at:
            raise SolverError(f"synthetic failure at {melt}")
        return super().solve(state, solution, device=device, **options)


def _gen(values, tmp_path, **kw):
    solver = Counting(kw.pop("fail_at", ()))
    path = generate_ensemble(_spec(values, solver=solver, **kw), tmp_path, workers=0, progress=False)
    return solver.calls, path


# ------------------------------------------------------------------------------------------ resume by value
def test_extended_grid_computes_only_new_values(tmp_path):
    calls, _ = _gen([0.0, 10.0, 20.0, 30.0], tmp_path)
    assert calls == [0.0, 10.0, 20.0, 30.0]
    calls, path = _gen("0:30:5", tmp_path)  # the example: 3 new values, not 6 of 7
    assert sorted(calls) == [5.0, 15.0, 25.0]
    with xr.open_dataset(path) as ds:
        assert ds.melt_rate.values.tolist() == [0, 5, 10, 15, 20, 25, 30] and ds.run.values.tolist() == list(range(7))
        assert ds.attrs["runs_finished"] == 7
    assert len(list((tmp_path / RUNS_DIR).glob("*.nc"))) == 7  # one file per value, none duplicated


def test_runs_outside_the_grid_are_reported_left_alone_and_not_combined(tmp_path, caplog):
    _gen([0.0, 10.0, 20.0], tmp_path)
    before = sorted(p.name for p in (tmp_path / RUNS_DIR).glob("*.nc"))
    with caplog.at_level(logging.WARNING, logger="issm_emulator.datasets.runner"):
        calls, path = _gen([10.0, 40.0], tmp_path)
    assert calls == [40.0]
    assert "2 run file(s)" in caplog.text and "left alone and not combined" in caplog.text
    with xr.open_dataset(path) as ds:
        assert ds.melt_rate.values.tolist() == [10.0, 40.0] and ds.attrs["runs_requested"] == 2
    assert set(before) <= {p.name for p in (tmp_path / RUNS_DIR).glob("*.nc")}  # nothing deleted
    # the training pipeline reads the current grid only
    assert split_runs(xr.open_dataset(path), "interleaved")["train"].size == 1

    # other settings are refused in the same folder (the folder guard); the runs stay
    with pytest.raises(SpecMismatchError, match="years: 2.0 -> 1.0"):
        _gen([10.0], tmp_path, years=1.0)
    found = find_runs(_spec([10.0, 40.0]), tmp_path)
    assert [v for _, v, _ in found["done"]] == [10.0, 40.0] and len(found["other"]) == 2


def test_cli_reports_done_todo_and_other_runs(tmp_path):
    runner = CliRunner()
    common = ["--years", "2", "--time-step", "1", "--out", str(tmp_path), "--workers", "0", "--no-progress"]
    res = runner.invoke(dcli.generate, ["square-melt", "--melt-rates", "0,10,20,30", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(dcli.generate, ["square-melt", "--melt-rates", "0:30:5", *common])
    assert res.exit_code == 0, res.output
    assert "4 of 7 runs already computed" in res.output and "3 to run" in res.output
    res = runner.invoke(dcli.generate, ["square-melt", "--melt-rates", "10,20", *common])
    assert "2 of 2 runs already computed" in res.output and "5 run file(s)" in res.output


def test_index_named_run_files_of_older_folders_are_found_by_value(tmp_path):
    _gen([0.0, 5.0], tmp_path)
    runs = tmp_path / RUNS_DIR
    for p in runs.glob("*.nc"):  # as an older version named them: by index
        with xr.open_dataset(p) as ds:
            value = float(ds.melt_rate)
        p.rename(runs / run_file_name(7, "melt_rate", value))
    calls, path = _gen([5.0, 0.0, 2.5], tmp_path)
    assert calls == [2.5]
    with xr.open_dataset(path) as ds:
        assert ds.melt_rate.values.tolist() == [5.0, 0.0, 2.5]


def test_failures_are_keyed_by_value(tmp_path):
    with pytest.warns(RuntimeWarning, match="1 of 2 runs failed"):
        _gen([0.0, 5.0], tmp_path, fail_at={5.0})
    assert [f["value"] for f in read_failures(tmp_path, _spec([5.0, 0.0]))] == [5.0]
    assert read_failures(tmp_path, _spec([0.0, 1.0])) == []  # a failure outside the grid is not reported
    calls, path = _gen([0.0, 1.0], tmp_path)
    assert calls == [1.0]
    with xr.open_dataset(path) as ds:
        assert json.loads(ds.attrs["failed_runs"]) == []


# ------------------------------------------------------------------------------------------ splits
@pytest.mark.parametrize("n", range(1, 41))
def test_interleaved_rule_for_any_number_of_runs(n):
    values = np.linspace(-3.0, 7.0, n)
    labels = split_labels(values, "interleaved")
    assert labels[0] == "train"
    if n >= 3:
        assert {"train", "validation", "test"} <= set(labels.tolist())
        assert (labels == "train").sum() >= n / 3
    perm = np.random.default_rng(n).permutation(n)  # by value, not by order of the runs
    assert (split_labels(values[perm], "interleaved") == labels[perm]).all()
    p = InterleavedRule.period(n)
    k = np.arange(n)
    assert (labels[k % p == 1] == "test").all() and (labels[k % p == p // 2 + 1] == "validation").all()


def test_interleaved_examples_and_several_parameters():
    assert split_labels([0, 10, 20, 30], "interleaved").tolist() == ["train", "test", "validation", "train"]
    labels = split_labels(np.arange(0, 72, 2.0), "interleaved")
    assert np.arange(0, 72, 2.0)[labels == "test"].tolist() == [2, 14, 26, 38, 50, 62]
    assert np.arange(0, 72, 2.0)[labels == "validation"].tolist() == [8, 20, 32, 44, 56, 68]
    a, b = np.meshgrid([0.0, 10.0, 20.0], [0.8, 1.0, 1.2], indexing="ij")
    table = {"melt": a.ravel()[::-1], "factor": b.ravel()[::-1]}  # 9 runs given in any order
    labels = split_labels(table, "interleaved")
    assert (labels == "train").sum() == 5 and (labels == "test").sum() == 2 and (labels == "validation").sum() == 2
    assert split_labels(np.array(["Ice0", "Ice1r", "Ice2r"]), None).tolist() == ["train", "test", "validation"]
    with pytest.raises(ValueError, match="one swept parameter"):
        split_labels(table, "pig-melt")
    # 7 x 3: P = 7, not 6, so the held-out runs spread over every value of the last parameter
    a, b = np.meshgrid(np.arange(0, 70, 10.0), [0.8, 1.0, 1.2], indexing="ij")
    labels = split_labels({"melt": a.ravel(), "factor": b.ravel()}, "interleaved")
    assert InterleavedRule.period(21, 3) == 7 and (labels == "train").sum() == 15
    for which in ("test", "validation"):
        assert sorted(b.ravel()[labels == which].tolist()) == [0.8, 1.0, 1.2]


def test_explicit_value_lists():
    assert split_labels({"m": np.array([0.0, 10, 20, 30])}, "test=10,30;validation=20").tolist() == \
        ["train", "test", "validation", "test"]
    assert split_labels({"m": np.arange(0, 40, 10.0)}, "test=0:30:30").tolist() == ["test", "train", "train", "test"]
    table = {"melt": np.array([0.0, 0.0, 10.0, 10.0]), "friction_coefficient_factor": np.array([0.8, 1.2] * 2)}
    rule = parse_split("test:melt=10;validation:friction_coefficient_factor=0.8")
    with pytest.raises(ValueError, match="listed in both test and validation"):
        split_labels(table, rule)
    assert split_labels(table, "test:melt=10").tolist() == ["train", "train", "test", "test"]
    aliased = parse_split("validation:friction.coefficient*=1.2").labels(
        table, {"friction.coefficient*": "friction_coefficient_factor"})
    assert aliased.tolist() == ["train", "validation", "train", "validation"]
    for bad, match in [("test=10", "sweeps 2 parameters"), ("test:melt=15", "matches no run"),
                       ("test:nope=1", "not a swept parameter")]:
        with pytest.raises(ValueError, match=match):
            split_labels(table, bad)
    attrs = {"melt": {"md_path": "md.basalforcings.floatingice_melting_rate", "operation": "set"},
             "friction_coefficient_factor": {"md_path": "md.friction.coefficient", "operation": "scale"}}
    rep = split_report(table, "test:friction.coefficient*=1.2", aliases=coord_aliases(attrs))
    assert rep["test"] == [1, 3] and rep["train"] == [0, 2] and rep["empty"] == ["validation"] and rep["fix"]
    rep = split_report(table, "validation:md.basalforcings.floatingice_melting_rate=10", aliases=coord_aliases(attrs))
    assert rep["validation"] == [2, 3]
    for bad, match in [("nonsense", "unknown rule"), ("train=1", "not 'test' or 'validation'"),
                       ("test=1 m/yr", "without a unit")]:
        with pytest.raises(ValueError, match=match):
            parse_split(bad)


def test_named_rules_and_defaults():
    assert ensemble_spec("pig-melt").split_rule == "pig-melt" and "pig-melt" in SPLIT_RULES
    assert DEFAULT_RULE == "interleaved"
    labels = split_labels(np.arange(0, 72, 2.0), "pig-melt")  # the seed's rule is unchanged
    assert np.arange(0, 72, 2.0)[labels == "test"].tolist() == [0, 20, 40, 60]
    rep = split_report({"melt_rate": np.array([0.0, 10, 20, 30])}, "pig-melt")
    assert rep["empty"] == ["train"] and "--split interleaved" in rep["fix"]
    rep = split_report({"m": np.array([1.0, 2.0])}, "interleaved")
    assert rep["empty"] == ["validation"] and "add values" in rep["fix"]
    assert split_report({"m": np.arange(5.0)}, "interleaved")["fix"] is None


def test_empty_split_reported_at_generate_time_and_overridden_in_train_evaluate(tmp_path):
    from issm_emulator.learning.cli import evaluate_command, train_command

    runner = CliRunner()
    out = tmp_path / "sq"
    res = runner.invoke(dcli.generate, ["square-melt", "--melt-rates", "0,10,20,30", "--years", "2", "--time-step",
                                        "1", "--out", str(out), "--workers", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "warning: the train split(s) would be empty" in res.output and "--split interleaved" in res.output
    res = runner.invoke(dcli.info, [str(out)])
    assert "train 0, validation 2, test 2 (square-melt" in res.output and "Fix:" in res.output

    ck = tmp_path / "c.pt"
    args = ["--data", str(out), "--out", str(ck), "--epochs", "1", "--hidden", "8", "--layers", "1", "--device",
            "cpu", "--no-progress"]
    res = runner.invoke(train_command, args)
    assert res.exit_code == 1 and "training split has no samples under the split rule 'square-melt'" in res.output
    assert "--split interleaved" in res.output
    res = runner.invoke(train_command, [*args, "--split", "interleaved"])
    assert res.exit_code == 0, res.output
    ev = ["--checkpoint", str(ck), "--data", str(out), "--out", str(tmp_path / "ev"), "--no-plots"]
    res = runner.invoke(evaluate_command, ev)  # the checkpoint's recorded rule, not the ensemble's square-melt
    assert res.exit_code == 0 and "split 'test': 1 run(s)" in res.output, res.output
    res = runner.invoke(evaluate_command, [*ev, "--split", "test=10,20"])
    assert res.exit_code == 0, res.output
    assert "split 'test': 2 run(s)" in res.output
    res = runner.invoke(evaluate_command, [*ev, "--split", "interleaved", "--runs", "validation"])
    assert res.exit_code == 0 and "split 'validation': 1 run(s)" in res.output
    res = runner.invoke(evaluate_command, [*ev, "--split", "test", "--runs", "train"])
    assert res.exit_code == 2 and "disagree" in res.output
    res = runner.invoke(evaluate_command, [*ev, "--split", "bogus"])
    assert res.exit_code == 2 and "unknown rule" in res.output
    help_text = runner.invoke(train_command, ["--help"]).output
    assert "interleaved" in help_text and "pig-melt" in help_text and "test=10,30" in help_text
