"""Training a step network on the states its own rollouts reach (learning.rollout_inputs, ``train(rollout_inputs=...)``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from issm_emulator.learning.dataset import DatasetError, StepDataset
from issm_emulator.learning.rollout_inputs import rollout_thickness
from issm_emulator.learning.train import history_paths, train
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}


@pytest.fixture(scope="module")
def net(ens, tmp_path_factory):
    return train(ens, model="egcn", mode="step", out=tmp_path_factory.mktemp("ri") / "m.pt", epochs=1, **TINY)


def test_rollout_thickness_is_the_runtime_rollout_at_the_run_outputs(ens, net):
    ds = StepDataset(ens, "train", spec=load_checkpoint(net).spec)
    rolls = rollout_thickness(net, ds)
    assert sorted(rolls) == sorted(int(p) for p in ds.run_positions)
    from issm_emulator.solvers.emulator.step import rollout_step

    p = int(ds.run_positions[0])
    h_true = ds.run_arrays(p).fields["thickness"]
    h = rolls[p]
    assert h.shape == h_true.shape and np.array_equal(h[0], h_true[0]) and np.all(np.isfinite(h))
    last = rollout_step(net, ds.run_state(p)).steps[-1]["Thickness"]
    assert np.allclose(h[-1], last, rtol=1e-6, atol=1e-6)  # batched float32 passes round differently
    assert np.abs(h[1:] - h_true[1:]).max() > 0  # a tiny network drifts


def test_a_sample_starts_from_the_rollout_state(ens, net):
    ds = StepDataset(ens, "train", spec=load_checkpoint(net).spec, noise_seed=3)
    p = int(ds.run_positions[0])
    base = ds.input_arrays(p, 3)
    fields = ds.run_arrays(p).fields
    fake = np.array(fields["thickness"], float) + 7.0                   # a rollout 7 m thicker everywhere
    ds.set_rollouts({p: fake}, 1.0)
    moved = ds.input_arrays(p, 3)
    ice = (np.asarray(base["ice_levelset"]) < 0) & (np.asarray(base["thickness"]) > 1.0)
    assert np.allclose(moved["thickness"][ice], fake[2][ice])
    assert np.array_equal(moved["thickness"][~ice], base["thickness"][~ice])
    floating = np.asarray(base["ocean_levelset"]) < 0
    ds_ = np.asarray(moved["surface"]) - np.asarray(base["surface"])
    assert np.all(ds_[ice & ~floating] == pytest.approx(7.0))            # grounded: the surface moves
    assert np.all(ds_[ice & floating] < 7.0)                              # floating: by flotation
    assert np.array_equal(ds.input_arrays(p, 1)["thickness"], ds.state_arrays(p, 0)["thickness"])  # t0 as is
    ds.set_rollouts({p: fake}, 0.0)
    assert np.array_equal(ds.input_arrays(p, 3)["thickness"], base["thickness"])
    with pytest.raises(DatasetError, match="rollout thickness of run position"):
        ds.set_rollouts({p: fake[:, :3]}, 1.0)
    with pytest.raises(DatasetError, match=r"rollout fraction must lie in \[0, 1\]"):
        ds.set_rollouts({p: fake}, 1.5)


def test_training_on_rollout_states_rolls_out_and_records_it(ens, net, tmp_path):
    out = train(ens, model="egcn", mode="step", out=tmp_path / "d.pt", epochs=2, init_from=net,
                rollout_inputs=1.0, rollout_refresh=1, noise_targets="ssa", lr=1e-3, **TINY)
    history = json.loads(history_paths(out)[1].read_text())
    assert all(h["rollout_seconds"] > 0 for h in history)                   # refreshed every epoch
    training = load_checkpoint(out).extra["training"]
    assert training["rollout_inputs"] == 1.0 and training["rollout_on"] == [0]
    with pytest.raises(ValueError, match="rollout_inputs: expected a fraction"):
        train(ens, model="egcn", mode="step", out=tmp_path / "x.pt", epochs=1, rollout_inputs=2.0, **TINY)
    with pytest.raises(ValueError, match="rollout_on: expected indices"):
        train(ens, model="egcn", mode="step", out=tmp_path / "x.pt", epochs=1, rollout_inputs=0.5,
              rollout_on=[3], **TINY)
    with pytest.raises(ValueError, match="rollout_inputs is a step-mode option"):
        train(ens, model="egcn", mode="direct", out=tmp_path / "x.pt", epochs=1, rollout_inputs=0.5, **TINY)


def test_training_on_rollout_states_lowers_the_loss_on_them(ens, net, tmp_path):
    """The method's tiny deterministic run: the stress balance of the geometries the network's own rollouts
    reach is predicted better after training on them. (On this 26-vertex case the rollouts drift by 5-13 m
    and the same training on the runs' own states does about as well, within 5 %; the method's gain shows
    on Pine Island's 2 km rollouts, docs/training.md.)"""
    import torch
    from torch.utils.data import DataLoader

    from issm_emulator.learning.dataset import collate
    from issm_emulator.learning.objective import evaluate_loss

    def loss_on_rollout_states(path):
        ckpt = load_checkpoint(path)
        ds = StepDataset(ens, "train", spec=ckpt.spec, noise_targets="ssa", noise_seed=5)
        ds.set_rollouts(rolls, 1.0)
        loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate)
        return evaluate_loss(ckpt.model, loader, ckpt.input_normalizer, ckpt.output_normalizer, (),
                             torch.device("cpu"), 1)

    rolls = rollout_thickness(net, StepDataset(ens, "train", spec=load_checkpoint(net).spec))
    before = loss_on_rollout_states(net)
    out = train(ens, model="egcn", mode="step", out=tmp_path / "t.pt", epochs=3, init_from=net, seed=1,
                rollout_inputs=1.0, noise_targets="ssa", lr=3e-3, **TINY)
    assert loss_on_rollout_states(out) < 0.9 * before
