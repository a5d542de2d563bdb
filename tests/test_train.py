"""Training: normalisers fitted on the training split only, loss decreases, determinism, early stopping keeps
the best epoch, checkpoint round trip with manifest ranges, resume, DDP with gloo on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from issm_emulator.errors import ExtrapolationWarning
from issm_emulator.learning.dataset import DirectDataset, StepDataset, collate
from issm_emulator.learning.objective import evaluate_loss
from issm_emulator.learning.train import history_paths, last_checkpoint_path, train
from issm_emulator.solvers.emulator.checkpoint import check_manifest, load_checkpoint

YTS = 365.0 * 24 * 3600
TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}



def _weights(path):
    return load_checkpoint(path).model.state_dict()


def test_normalisers_fitted_on_train_only_and_loss_decreases(ens, tmp_path):
    # time as an input (decoder=None): the output normaliser is fitted on the absolute targets
    out = train(ens, model="gcn", mode="direct", out=tmp_path / "g.pt", epochs=8, lr=3e-3, decoder=None, **TINY)
    ck = load_checkpoint(out)
    names = ck.input_normalizer.scalar_names
    mean = ck.input_normalizer.scalar_mean.numpy()
    # training runs are 5 and 15 m/yr (validation 10, test 0 and 20): mean 10 m/yr, std 5 m/yr
    assert mean[names.index("melt_rate")] == pytest.approx(10.0 / YTS)
    assert ck.input_normalizer.scalar_std.numpy()[names.index("melt_rate")] == pytest.approx(5.0 / YTS)
    with xr.open_dataset(ens, decode_times=False) as ds:
        train_pos = np.flatnonzero(np.isin(ds["melt_rate"].values, [5.0, 15.0]))
        h = ds["thickness"].values[train_pos]  # targets of the 6 training samples
    assert ck.output_normalizer.scalar_mean.numpy()[0] == pytest.approx(h.mean(), rel=1e-6)
    assert ck.output_normalizer.scalar_std.numpy()[0] == pytest.approx(h.std(), rel=1e-5)
    hist = json.loads(history_paths(out)[1].read_text())
    assert len(hist) == 8 and hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert history_paths(out)[0].read_text().startswith("epoch,lr,train_loss,validation_loss")
    assert hist[1]["lr"] == pytest.approx(3e-3 * 0.99)  # ExponentialLR


def test_same_seed_same_weights(ens, tmp_path):
    a = _weights(train(ens, model="egcn", mode="step", out=tmp_path / "a.pt", epochs=2, seed=3, **TINY))
    b = _weights(train(ens, model="egcn", mode="step", out=tmp_path / "b.pt", epochs=2, seed=3, **TINY))
    c = _weights(train(ens, model="egcn", mode="step", out=tmp_path / "c.pt", epochs=2, seed=4, **TINY))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_keeps_the_best_epoch(ens, tmp_path):
    out = train(ens, model="cnn", mode="step", out=tmp_path / "c.pt", epochs=30, lr=0.3, patience=2,
                lr_schedule="constant", **TINY)
    hist = json.loads(history_paths(out)[1].read_text())
    val = [h["validation_loss"] for h in hist]
    best = int(np.argmin(val)) + 1
    assert len(hist) < 30 and len(hist) == best + 2  # stopped two epochs after the best
    ck = load_checkpoint(out)
    assert ck.extra["training"]["best_epoch"] == best
    vd = StepDataset(ens, "validation")
    loader = torch.utils.data.DataLoader(vd, batch_size=2, collate_fn=collate)
    loss = evaluate_loss(ck.model, loader, ck.input_normalizer, ck.output_normalizer, (), torch.device("cpu"), 1)
    assert loss == pytest.approx(min(val), rel=1e-5)


def test_checkpoint_manifest_round_trip(ens, tmp_path):
    out = train(ens, model="egcn", mode="direct", out=tmp_path / "e.pt", epochs=1, **TINY)
    ck = load_checkpoint(out)
    m = ck.manifest
    d = DirectDataset(ens, "train")
    assert ck.mode == "direct" and m["arch"] == "egcn" and ck.spec == d.spec
    assert m["forcing_ranges"]["melt_rate"] == pytest.approx([5.0 / YTS, 15.0 / YTS])
    # EGCN direct mode is time-decoded: exact at t = 0, so its time range starts there
    assert m["forcing_ranges"]["time"] == pytest.approx([0.0, 3 * YTS])
    assert ck.model.config["decoder"] == "increment"
    assert m["units"]["melt_rate"] == "m/s" and m["package_version"]
    assert m["extra"]["train_values"] == [5.0, 15.0] and m["extra"]["validation_values"] == [10.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_manifest(m, d.spec, {"melt_rate": 10.0 / YTS, "time": 2 * YTS})
    with pytest.warns(ExtrapolationWarning, match="melt_rate"):
        check_manifest(m, d.spec, {"melt_rate": 20.0 / YTS, "time": 2 * YTS})


def test_resume_continues_identically(ens, tmp_path):
    full = train(ens, model="gcn", mode="step", out=tmp_path / "full.pt", epochs=4, patience=None, **TINY)
    part = tmp_path / "part.pt"
    train(ens, model="gcn", mode="step", out=part, epochs=2, patience=None, **TINY)
    assert last_checkpoint_path(part).is_file()
    train(ens, model="gcn", mode="step", out=part, epochs=4, patience=None, resume=True, **TINY)
    h_full = json.loads(history_paths(full)[1].read_text())
    h_part = json.loads(history_paths(part)[1].read_text())
    assert [h["epoch"] for h in h_part] == [1, 2, 3, 4]
    assert [h["train_loss"] for h in h_part] == pytest.approx([h["train_loss"] for h in h_full], rel=1e-12)
    a = torch.load(last_checkpoint_path(full), weights_only=True)["model"]
    b = torch.load(last_checkpoint_path(part), weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_arguments(ens, tmp_path):
    with pytest.raises(ValueError, match="model"):
        train(ens, model="mlp", out=tmp_path / "x.pt")
    with pytest.raises(ValueError, match="mode"):
        train(ens, mode="both", out=tmp_path / "x.pt")


def test_ddp_gloo_two_processes(ens, tmp_path):  # ~20 s: DistributedDataParallel is a deliverable
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "issm_emulator.learning", "--data", str(ens), "--model", "egcn", "--mode", "step", "--out",
           str(out), "--epochs", "1", "--hidden", "8", "--layers", "1", "--batch-size", "1", "--device", "cpu",
           "--no-progress"]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads(out.with_name("ddp.ddp.json").read_text())
    assert info == {"world_size": 2, "replica_max_abs_diff": 0.0}
    ck = load_checkpoint(out)
    assert ck.extra["training"]["world_size"] == 2


def test_resume_with_other_data_or_options_is_refused(ens, tmp_path):
    from issm_emulator.learning.dataset import DatasetError

    part = tmp_path / "part.pt"
    train(ens, model="gcn", mode="step", out=part, epochs=1, patience=None, **TINY)
    last = last_checkpoint_path(part)
    before = last.read_bytes()
    with pytest.raises(DatasetError, match=r"cannot resume.*hidden: 8 -> 16.*lr: 0\.001 -> 0\.002") as info:
        train(ens, model="gcn", mode="step", out=part, epochs=2, patience=None, resume=True,
              **{**TINY, "hidden": 16}, lr=2e-3)
    assert "2 difference(s)" in str(info.value)
    # other data: the same ensemble regenerated elsewhere is another file (created, size may differ)
    other = tmp_path / "other.nc"
    with xr.open_dataset(ens, decode_times=False) as ds:
        ds = ds.load()
    ds.attrs["created"] = "2000-01-01T00:00:00Z"
    ds.to_netcdf(other)
    with pytest.raises(DatasetError, match=r"cannot resume.*data\.created"):
        train(other, model="gcn", mode="step", out=part, epochs=2, patience=None, resume=True, **TINY)
    assert last.read_bytes() == before  # nothing mixed into the refused run
    # only the number of epochs changed: resumes
    train(ens, model="gcn", mode="step", out=part, epochs=2, patience=None, resume=True, **TINY)
    assert [h["epoch"] for h in json.loads(history_paths(part)[1].read_text())] == [1, 2]


def test_checkpoints_and_history_get_the_users_file_mode(ens, tmp_path):
    old = os.umask(0o027)
    try:
        out = train(ens, model="gcn", mode="step", out=tmp_path / "m.pt", epochs=1, **TINY)
    finally:
        os.umask(old)
    for p in (out, last_checkpoint_path(out), *history_paths(out)):
        assert (p.stat().st_mode & 0o777) == 0o640, p
