"""Evaluation: metrics against a hand computation, direct predictions against a manual forward pass, step
rollout and teacher-forced methods, markdown/CSV/plots, and the train/evaluate CLI (CliRunner)."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from click.testing import CliRunner

from issm_emulator.learning.cli import evaluate_command, train_command
from issm_emulator.learning.dataset import DirectDataset
from issm_emulator.learning.evaluate import RunPrediction, evaluate, regression_metrics, run_metrics
from issm_emulator.learning.train import train
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

YTS = 365.0 * 24 * 3600
TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}



@pytest.fixture(scope="module")
def direct_ckpt(ens, tmp_path_factory):
    """The seed's direct mode (time as an input, absolute outputs): one forward pass per output time."""
    return train(ens, model="gcn", mode="direct", out=tmp_path_factory.mktemp("ck") / "d.pt", epochs=3,
                 decoder=None, **TINY)


@pytest.fixture(scope="module")
def step_ckpt(ens, tmp_path_factory):
    return train(ens, model="egcn", mode="step", out=tmp_path_factory.mktemp("ck") / "s.pt", epochs=2, **TINY)


def test_regression_metrics_by_hand():
    p = np.array([1.0, 2.0, 4.0, np.nan, 7.0])
    t = np.array([1.5, 2.0, 3.0, 5.0, np.inf])
    m = regression_metrics(p, t)
    pp, tt = p[:3], t[:3]
    assert m["n"] == 3
    assert m["rmse"] == pytest.approx(np.sqrt(((0.5 ** 2) + 0 + 1) / 3))
    assert m["r"] == pytest.approx(np.corrcoef(pp, tt)[0, 1])
    assert np.isnan(regression_metrics([1.0, 1.0], [2.0, 3.0])["r"])  # constant prediction
    assert regression_metrics([], [])["n"] == 0


def test_run_metrics_fast_region_by_hand():
    true = {"vx": np.array([[0.0, 2000.0, 500.0]]), "vy": np.array([[0.0, 0.0, 1200.0]]),
            "thickness": np.array([[100.0, 200.0, 300.0]])}
    pred = {"vx": np.array([[10.0, 1900.0, 400.0]]), "vy": np.array([[0.0, 50.0, 1000.0]]),
            "thickness": np.array([[110.0, 190.0, 330.0]])}
    rows = {(r["variable"], r["region"]): r for r in run_metrics(RunPrediction(0, 1.0, np.array([1.0]), true, pred))}
    fast = [1, 2]  # speeds 2000 and 1300 m/yr
    assert rows["vx", "fast"]["n"] == 2
    assert rows["vx", "fast"]["rmse"] == pytest.approx(np.sqrt(np.mean((pred["vx"][0, fast] - true["vx"][0, fast]) ** 2)))
    sp_p, sp_t = np.hypot(pred["vx"], pred["vy"])[0], np.hypot(true["vx"], true["vy"])[0]
    assert rows["speed", "all"]["rmse"] == pytest.approx(np.sqrt(np.mean((sp_p - sp_t) ** 2)))
    assert rows["thickness", "all"]["r"] == pytest.approx(np.corrcoef(pred["thickness"][0], true["thickness"][0])[0, 1])


def test_direct_evaluation_files_and_values(ens, direct_ckpt, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # test runs (0, 20 m/yr) lie outside the training range
        res = evaluate(direct_ckpt, ens, "test", out_dir=tmp_path, plot_times=[2.0])
    assert res.method == "direct"
    for name in ("metrics.csv", "metrics.md", "timeseries.csv", "timeseries.png", "error_map_run-0000.png",
                 "error_map_run-0004.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == (2 + 1) * 4 * 2  # (2 runs + overall) x 4 variables x 2 regions
    # truth: the FE fields of the file; prediction: a manual forward pass of the checkpoint
    ck = load_checkpoint(direct_ckpt)
    d = DirectDataset(ens, "test", spec=ck.spec)
    i = d.samples.index((4, 2))
    s = d[i]
    sc, vec = ck.input_normalizer.encode(s.scalars, s.vectors)
    with torch.no_grad():
        raw = ck.model(s, sc, vec)
    vel = raw["velocity"].double() * ck.output_normalizer.vector_scale[0]
    h = raw["thickness"].double() * ck.output_normalizer.scalar_std[0] + ck.output_normalizer.scalar_mean[0]
    rp = next(r for r in res.runs if r.run == 4)
    free = ~np.isfinite(d.run_arrays(4).static["spcvx"])
    np.testing.assert_allclose(rp.pred["vx"][1][free], vel[:, 0].numpy()[free] * YTS, rtol=1e-5, atol=1e-6)
    assert np.all(rp.pred["vx"][1][~free] == d.run_arrays(4).static["spcvx"][~free] * YTS)
    np.testing.assert_allclose(rp.pred["thickness"][1], h.numpy(), rtol=1e-5)
    with xr.open_dataset(ens, decode_times=False) as ds:
        np.testing.assert_allclose(rp.true["vx"], ds["vx"].values[4], rtol=1e-12)
        truth_all = np.concatenate([ds["thickness"].values[0].ravel(), ds["thickness"].values[4].ravel()])
    pred_all = np.concatenate([r.pred["thickness"].ravel() for r in res.runs])
    overall = next(r for r in rows if r["run"] == "overall" and r["variable"] == "thickness" and r["region"] == "all")
    assert float(overall["rmse"]) == pytest.approx(np.sqrt(np.mean((pred_all - truth_all) ** 2)), rel=1e-6)
    assert float(overall["r"]) == pytest.approx(np.corrcoef(pred_all, truth_all)[0, 1], rel=1e-6)
    assert res.overall()[("thickness", "all")]["rmse"] == pytest.approx(float(overall["rmse"]), rel=1e-9)
    assert all(r["run"] == "overall" for r in res.overall().values()) and ("vx", "all") in res.overall()
    with open(tmp_path / "timeseries.csv") as fh:
        ts = list(csv.DictReader(fh))
    assert len(ts) == 2 * 4 and float(ts[0]["ice_volume_true_m3"]) == float(ts[0]["ice_volume_pred_m3"])
    assert "## Overall" in res.markdown and "| thickness | all |" in res.markdown


def test_step_rollout_and_teacher_forced(ens, step_ckpt, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf = evaluate(step_ckpt, ens, "validation", out_dir=tmp_path / "tf", step_method="teacher-forced",
                      plots=False)
        ro = evaluate(step_ckpt, ens, "validation", out_dir=tmp_path / "ro", plots=False)
    assert tf.method == "teacher-forced" and ro.method == "rollout"
    th = {r["region"]: r for r in tf.rows if r["run"] == "overall" and r["variable"] == "thickness"}
    assert th["all"]["n"] == 0  # one-step velocities only
    th = {r["region"]: r for r in ro.rows if r["run"] == "overall" and r["variable"] == "thickness"}
    assert th["all"]["n"] == 3 * tf.runs[0].true["vx"].shape[1]
    # the first rollout step is one-step: same geometry (the initial state) -> same velocity
    np.testing.assert_allclose(ro.runs[0].pred["vx"][0], tf.runs[0].pred["vx"][0], rtol=1e-4, atol=1e-3)
    assert not (tmp_path / "ro" / "timeseries.png").exists()


def test_cli_train_and_evaluate(ens, tmp_path):
    runner = CliRunner()
    ck = tmp_path / "m.pt"
    r = runner.invoke(train_command, ["--data", str(ens.parent), "--model", "cnn", "--mode", "direct", "--out",
                                      str(ck), "--epochs", "2", "--lr", "0.003", "--batch-size", "3", "--device",
                                      "cpu", "--seed", "1", "--hidden", "8", "--layers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert ck.is_file() and "checkpoint:" in r.output
    r = runner.invoke(evaluate_command, ["--checkpoint", str(ck), "--data", str(ens.parent), "--split", "test",
                                         "--out", str(tmp_path / "ev"), "--times", "1,3", "--no-plots"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ev" / "metrics.md").is_file() and "## Per run" in r.output
    r = runner.invoke(train_command, ["--data", str(ens.parent), "--out", str(tmp_path / "x.pt"), "--model", "mlp"])
    assert r.exit_code != 0 and "mlp" in r.output
