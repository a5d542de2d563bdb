"""Step mode with the previous velocity as an input (a warm start the network corrects): the feature set,
the perturbed input velocity of training, the rollout that feeds each step's velocity into the next, and a
tiny deterministic training showing that the perturbation does what it is for."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from issm_emulator.learning.dataset import DatasetError, StepDataset, collate
from issm_emulator.nn.features import default_spec


def test_default_spec_puts_the_previous_velocity_first_in_step_mode_only():
    plain = default_spec("step")
    warm = default_spec("step", previous_velocity=True)
    assert "velocity" not in plain.vectors
    assert warm.vectors == ("velocity",) + plain.vectors and warm.scalars == plain.scalars
    with pytest.raises(ValueError, match="step-mode"):
        default_spec("direct", previous_velocity=True)


def test_input_velocity_is_the_previous_output_and_its_noise_is_relative_to_the_speed(ens):
    clean = StepDataset(ens, "train", previous_velocity=True)
    assert clean.spec.vectors[0] == "velocity"
    p, k = clean.samples[1]
    f = clean.run_arrays(p).fields
    vin = clean[1].vectors[:, 0].double().numpy()
    np.testing.assert_allclose(vin, np.stack([f["vx"][k - 1], f["vy"][k - 1]], 1), rtol=1e-6, atol=1e-12)
    torch.manual_seed(3)
    noisy = StepDataset(ens, "train", previous_velocity=True, velocity_noise=0.1)
    s = noisy[1]
    vn = s.vectors[:, 0].double().numpy()
    speed = np.hypot(vin[:, 0], vin[:, 1])
    dv = vn - vin
    assert np.all(np.abs(dv) <= 1e-6 * speed.max() + 10 * 0.1 * speed[:, None])  # relative to the local speed
    assert np.sqrt(np.mean(dv ** 2)) > 1e-3 * np.sqrt(np.mean(vin ** 2))           # and really there
    torch.testing.assert_close(s.y_velocity, clean[1].y_velocity)                  # the target is kept
    torch.testing.assert_close(s.scalars, clean[1].scalars)                        # geometry untouched
    with pytest.raises(DatasetError, match="previous_velocity"):
        StepDataset(ens, "train", velocity_noise=0.1)
    with pytest.raises(DatasetError, match="velocity_noise"):
        StepDataset(ens, "train", previous_velocity=True, velocity_noise=-1.0)


def test_train_refuses_the_options_outside_step_mode(ens, tmp_path):
    from issm_emulator.learning.train import train

    with pytest.raises(ValueError, match="step-mode"):
        train(ens, model="gcn", mode="direct", out=tmp_path / "d.pt", epochs=1, hidden=4, layers=1,
              progress=False, previous_velocity=True)
    with pytest.raises(ValueError, match="previous_velocity=True"):
        train(ens, model="gcn", mode="step", out=tmp_path / "s.pt", epochs=1, hidden=4, layers=1,
              progress=False, velocity_noise=0.1)


def _noisy_loss(model, ds, in_norm, out_norm) -> float:
    from issm_emulator.learning.objective import batch_loss

    torch.manual_seed(11)  # the same perturbed inputs for every model compared
    batch = collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        return float(batch_loss(model.eval(), batch, in_norm, out_norm, ()))


def _error_transfer(ckpt, noisy: StepDataset, clean: StepDataset) -> float:
    """|prediction(perturbed input velocity) - prediction(exact)| / |perturbation|, over every sample."""
    from issm_emulator.learning.objective import predict_batch

    torch.manual_seed(11)
    nb = collate([noisy[i] for i in range(len(noisy))])
    cb = collate([clean[i] for i in range(len(clean))])
    with torch.no_grad():
        pn, pc = (predict_batch(ckpt.model.eval(), b, ckpt.input_normalizer, ckpt.output_normalizer, ())["velocity"]
                  for b in (nb, cb))
    return float((pn - pc).norm() / (nb.vectors[:, 0] - cb.vectors[:, 0]).norm())


def test_velocity_noise_training_corrects_a_wrong_warm_start(ens, tmp_path):
    """A tiny deterministic training, twice, the same in all but the perturbation of the input velocity. On
    inputs whose velocity is 20 % off, the network trained with that perturbation has the lower loss, and
    passes on a smaller part of the input's error to its prediction than the one trained on exact warm
    starts (which learns to copy its input)."""
    from issm_emulator.learning.train import train
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

    kw = {"model": "egcn", "mode": "step", "epochs": 25, "hidden": 16, "layers": 1, "batch_size": 2, "lr": 1e-2,
          "lr_decay": 1.0, "patience": None, "progress": False, "seed": 0, "previous_velocity": True,
          "calibrate_indicator": False}
    plain = load_checkpoint(train(ens, out=tmp_path / "plain.pt", **kw))
    noisy = load_checkpoint(train(ens, out=tmp_path / "noisy.pt", velocity_noise=0.2, **kw))
    assert plain.extra["training"]["velocity_noise"] == 0.0 and noisy.extra["training"]["velocity_noise"] == 0.2
    probe = StepDataset(ens, None, previous_velocity=True, velocity_noise=0.2)
    exact = StepDataset(ens, None, previous_velocity=True)
    loss_plain = _noisy_loss(plain.model, probe, plain.input_normalizer, plain.output_normalizer)
    loss_noisy = _noisy_loss(noisy.model, probe, noisy.input_normalizer, noisy.output_normalizer)
    assert loss_noisy < loss_plain, (loss_noisy, loss_plain)
    transfer_plain, transfer_noisy = (_error_transfer(c, probe, exact) for c in (plain, noisy))
    assert transfer_noisy < 0.8 * transfer_plain, (transfer_noisy, transfer_plain)


def test_rollout_feeds_each_steps_velocity_into_the_next(ens, tmp_path, monkeypatch):
    """The solver passes the velocity at the start of each step (the previous step's result; the model's
    initial velocity at the first) to a warm-start network, and StressbalanceSolution the initial one."""
    import issm_emulator
    from issm_emulator.learning.train import train
    from issm_emulator.solvers.emulator import network

    ckpt = train(ens, out=tmp_path / "w.pt", model="egcn", mode="step", epochs=1, hidden=8, layers=1,
                 batch_size=2, progress=False, previous_velocity=True, velocity_noise=0.05,
                 calibrate_indicator=False)
    seen: list[np.ndarray] = []
    original = network.BoundNetwork.inputs

    def spy(self, arrays):
        seen.append(np.asarray(arrays["velocity"], float).copy())
        return original(self, arrays)

    monkeypatch.setattr(network.BoundNetwork, "inputs", spy)
    md = StepDataset(ens, "validation").ensemble_spec().build_model(10.0)  # an ensemble run's model
    v0 = np.stack([np.ravel(md.initialization.vx), np.ravel(md.initialization.vy)], 1) / (365.0 * 24 * 3600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = issm_emulator.solve(copy.deepcopy(md), "Transient", solver="egcn", mode="step", checkpoint=ckpt)
    steps = out.results.TransientSolution.steps
    assert len(seen) == len(steps) == 3
    np.testing.assert_allclose(seen[0], v0, rtol=1e-12, atol=1e-20)
    for k in (1, 2):
        prev = np.stack([np.ravel(steps[k - 1].Vx), np.ravel(steps[k - 1].Vy)], 1) / (365.0 * 24 * 3600)
        np.testing.assert_allclose(seen[k], prev, rtol=1e-9, atol=1e-15)


def test_seeded_noise_is_fixed_per_sample_as_validation_needs(ens):
    fixed = StepDataset(ens, "validation", previous_velocity=True, velocity_noise=0.1, noise_seed=4)
    again = StepDataset(ens, "validation", previous_velocity=True, velocity_noise=0.1, noise_seed=4)
    other = StepDataset(ens, "validation", previous_velocity=True, velocity_noise=0.1, noise_seed=5)
    a, b = len(fixed) - 1, len(fixed) - 2  # samples after the first step (the initial velocity may be 0)
    torch.testing.assert_close(fixed[a].vectors, fixed[a].vectors)   # the same each time it is drawn
    torch.testing.assert_close(fixed[a].vectors, again[a].vectors)   # and in another dataset object
    assert not torch.allclose(fixed[a].vectors, other[a].vectors)
    clean = StepDataset(ens, "validation", previous_velocity=True)
    d0, d1 = (fixed[i].vectors[:, 0] - clean[i].vectors[:, 0] for i in (a, b))
    assert not torch.allclose(d0 / d0.norm(), d1 / d1.norm())       # each sample its own perturbation
