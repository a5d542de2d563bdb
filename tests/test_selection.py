"""Keeping a step network's epoch by its validation rollouts (learning.selection, ``train(select=...)``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from issm_emulator.learning.evaluate import evaluate
from issm_emulator.learning.selection import rollout_score
from issm_emulator.learning.train import history_paths, train
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}


def test_rollout_selection_keeps_the_epoch_with_the_best_validation_rollouts(ens, tmp_path):
    out = train(ens, model="egcn", mode="step", out=tmp_path / "m.pt", epochs=3, select="rollout", **TINY)
    history = json.loads(history_paths(out)[1].read_text())
    scores = [h["validation_rollout_thickness_rmse"] for h in history]
    assert all(math.isfinite(s) and s > 0 for s in scores)
    training = load_checkpoint(out).extra["training"]
    assert training["select"] == "rollout" and training["watched"] == "validation rollouts"
    kept = int(np.argmin(scores)) + 1  # scores only: the validation loss plays no part
    assert training["best_epoch"] == kept and training["best_loss"] == pytest.approx(scores[kept - 1])
    assert [h["best"] for h in history] == [s < min(scores[:i], default=math.inf) for i, s in enumerate(scores)]
    # the score is what evaluate() reports for the kept network's validation rollouts
    res = evaluate(out, ens, "validation", out_dir=tmp_path / "ev", step_method="rollout", plots=False)
    rmse = next(r["rmse"] for r in res.rows if r["run"] == "overall" and r["variable"] == "thickness"
                and r["region"] == "all")
    assert rmse == pytest.approx(scores[kept - 1], rel=1e-6)
    # on several ensembles: the root mean square of their scores
    both = rollout_score(lambda p: p.write_bytes(out.read_bytes()), [ens, ens])
    assert both == pytest.approx(scores[kept - 1], rel=1e-6)


def test_rollout_selection_is_for_step_networks(ens, tmp_path):
    with pytest.raises(ValueError, match="select: expected 'loss', or 'rollout' for a step network"):
        train(ens, model="egcn", mode="direct", out=tmp_path / "d.pt", epochs=1, select="rollout", **TINY)
    with pytest.raises(ValueError, match="select"):
        train(ens, model="egcn", mode="step", out=tmp_path / "s.pt", epochs=1, select="best", **TINY)


def test_rollout_selection_refuses_runs_it_cannot_rebuild_before_training(ens, tmp_path, monkeypatch):
    from issm_emulator.learning.dataset import DatasetError, StepDataset

    def no_model(self, position):
        raise DatasetError("the geometry of this scenario is not installed")

    monkeypatch.setattr(StepDataset, "run_state", no_model)
    out = tmp_path / "m.pt"
    with pytest.raises(DatasetError, match="select='rollout' rolls out the validation runs of .*not installed"):
        train(ens, model="egcn", mode="step", out=out, epochs=1, select="rollout", **TINY)
    assert not out.exists() and not history_paths(out)[0].exists()  # refused before the first epoch
