"""Rotating the kept outputs of a strided training set (``time_stride`` with ``rotate_stride``)."""

from __future__ import annotations

import pytest

from issm_emulator.learning.collection import EnsembleCollection, set_time_phase
from issm_emulator.learning.dataset import DirectDataset, DirectRunDataset, StepDataset
from issm_emulator.learning.train import train

TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False, "calibrate_indicator": False}


def _outputs(ds):
    return sorted({k for _, k in ds.samples})


@pytest.mark.parametrize("cls", [StepDataset, DirectDataset])
def test_phases_cover_every_output_once(ens, cls):
    full = _outputs(cls(ens, "train"))
    ds = cls(ens, "train", time_stride=2)
    assert _outputs(ds) == [k for k in full if k % 2 == 0]
    seen = []
    for phase in range(2):
        ds.set_time_phase(phase)
        seen += _outputs(ds)
    assert sorted(seen) == full  # every output once over a cycle of phases
    ds.set_time_phase(2)  # the phase is taken modulo the stride
    assert _outputs(ds) == [k for k in full if k % 2 == 0]


def test_run_samples_follow_the_phase(ens):
    ds = DirectRunDataset(ens, "train", time_stride=2)
    ks0 = ds.kept_outputs.tolist()
    ds.set_time_phase(1)
    assert ds.kept_outputs.tolist() != ks0 and ds[0].k.flatten().tolist() == ds.kept_outputs.tolist()


def test_collection_follows_the_phase(ens):
    a, b = StepDataset(ens, "train", time_stride=2), StepDataset(ens, "train", time_stride=2)
    col = EnsembleCollection([a, b])
    before = len(col)
    changed = set_time_phase(col, 1)
    assert len(col) == len(a) + len(b) and changed == (len(col) != before)
    assert col[len(col) - 1].k.item() == b.samples[-1][1]  # indices map into the shifted parts


def test_rotation_changes_the_samples_from_the_second_epoch(ens, tmp_path):
    losses = {}
    for rotate in (False, True):
        hist = []
        train(ens, model="gcn", mode="step", out=tmp_path / f"r{rotate}.pt", epochs=2, time_stride=2,
              rotate_stride=rotate, seed=3, callback=hist.append, **TINY)
        losses[rotate] = [h["train_loss"] for h in hist]
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-12)  # epoch 1: phase 0 in both
    assert losses[True][1] != pytest.approx(losses[False][1], rel=1e-6)   # epoch 2: other outputs


def test_resume_refuses_another_rotation(ens, tmp_path):
    from issm_emulator.errors import IssmEmulatorError

    out = tmp_path / "m.pt"
    train(ens, model="gcn", mode="step", out=out, epochs=1, time_stride=2, rotate_stride=True, **TINY)
    with pytest.raises(IssmEmulatorError, match="rotate_stride"):
        train(ens, model="gcn", mode="step", out=out, epochs=2, time_stride=2, resume=True, **TINY)
