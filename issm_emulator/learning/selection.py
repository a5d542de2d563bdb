"""Which epoch of a step network to keep: by its validation loss, or by its validation rollouts.

A step network is trained on one step at a time (teacher forcing, with noise on the inputs), but it is used
for rollouts, where every step starts from the network's own previous steps. The one-step validation loss
and the rollout error do not rise and fall together: on 79N, the epoch with the lowest validation loss of a
further training stage rolled out the test runs to 15.75 m of thickness RMSE, where the published network
gives 15.41 m (docs/training.md). ``train(select="rollout")`` (``issm-emulator train --select rollout``)
therefore keeps the epoch whose rollouts of the **validation** runs are best:

    score = sqrt(mean over ensembles e of RMSE_e^2),

``RMSE_e`` the thickness RMSE of 20-year (whole-run) rollouts of ensemble ``e``'s validation runs, over all
their outputs, on that ensemble's own mesh (:func:`~issm_emulator.learning.evaluate.evaluate`, ``step_method=
'rollout'``). The test runs are never looked at. Each epoch then costs one rollout per validation run as
well: about 10 s on 79N, and about 3 minutes for the 2, 3 and 5 km Pine Island ensembles together.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SELECT_RULES", "rollout_score"]

#: how ``train`` chooses the epoch it keeps
SELECT_RULES = ("loss", "rollout")


def rollout_score(save: Callable[[Path], Any], data: Sequence[Any], *, split_rule: Any = None,
                  split: str = "validation") -> float:
    """The selection score of a step network: the root mean square, over the ensembles ``data``, of the
    thickness RMSE (m) of rollouts of their ``split`` runs. ``save(path)`` writes the network as a checkpoint
    there (a temporary file)."""
    from issm_emulator.learning.evaluate import evaluate

    squares = []
    with tempfile.TemporaryDirectory(prefix="issm-emulator-select-") as tmp:
        path = Path(tmp) / "epoch.pt"
        save(path)
        for i, d in enumerate(data):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # forcing and domain notes were given at training
                res = evaluate(path, d, split, out_dir=Path(tmp) / f"eval{i}", step_method="rollout",
                               plots=False, split_rule=split_rule)
            row = res.overall().get(("thickness", "all"))
            if row is None or not math.isfinite(row["rmse"]):
                return math.inf  # a rollout that failed or diverged is never the best
            squares.append(row["rmse"] ** 2)
    return math.sqrt(sum(squares) / len(squares))
