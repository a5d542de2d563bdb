"""Training a step network on the states its own rollouts reach (dataset aggregation, "DAgger").

A step network is trained one step at a time from the ensemble's states, but in use every step starts from
the network's earlier steps: the states it meets drift away from the training trajectories, and a network that
has never seen that drift lets it grow. ``--input-noise`` perturbs the training geometry with smooth random
fields; ``train(rollout_inputs=F)`` (``issm-emulator train --rollout-inputs F``) perturbs it with the drift
itself. Before the first epoch (and every ``rollout_refresh`` epochs), the network rolls out every training
run of the chosen ensembles, on each ensemble's own mesh, as the runtime would
(:func:`~issm_emulator.solvers.emulator.step.rollout_step_many`); a fraction ``F`` of the training samples
then start from the rollout's thickness at output ``k - 1`` instead of the run's:

    H_in = H_run[k - 1] + (H_rollout[k - 1] - H_run[k - 1])      where there is ice (H > 1 m), as the noise is,

surface and base following by flotation (:class:`~issm_emulator.learning.dataset.StepDataset`). With
``noise_targets='ssa'`` the target is ``fem``'s stress balance of that geometry: the network learns the
velocity of the states its rollouts visit (Ross, Gordon and Bagnell 2011), which a rollout needs; with
``'keep'`` it learns to answer them with the run's velocity.

The rollouts cost what the runtime's do (the 28 training runs of the 2 km Pine Island ensemble, 20 years
each, batched: about 4 minutes on a 2-core CPU), so they are done for the ensembles named (``rollout_on``),
e.g. only the mesh whose rollouts drift most.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["rollout_thickness"]


def rollout_thickness(checkpoint: Any, dataset: Any, *, device: Any = "cpu",
                      batch_size: int | None = None) -> dict[int, np.ndarray]:
    """The step checkpoint's rollouts of every run of ``dataset`` (a single-ensemble dataset): ``{run
    position: (T + 1, nv) thickness (m) at the run's outputs 0..T}``, row 0 the initial state; outputs the
    rollout does not reach (a time it does not stop at) are NaN. Raises as the rollout does
    (:class:`~issm_emulator.errors.EmulatorDivergedError`, or a run whose model cannot be rebuilt)."""
    from issm_emulator.learning.evaluate import steps_at_outputs
    from issm_emulator.solvers.emulator.checkpoint import Checkpoint, load_checkpoint
    from issm_emulator.solvers.emulator.step import rollout_step_many

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(Path(checkpoint),
                                                                                 map_location="cpu")
    positions = [int(p) for p in dataset.run_positions]
    if not positions:
        return {}
    states = [dataset.run_state(p) for p in positions]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # forcing and domain notes were given at training
        results = rollout_step_many(ckpt, states, device=device, batch_size=batch_size)
    out: dict[int, np.ndarray] = {}
    for p, res in zip(positions, results):
        ra = dataset.run_arrays(p)
        h_true = np.asarray(ra.fields["thickness"], float)
        h = np.full_like(h_true, np.nan)
        h[0] = h_true[0]
        t0 = float(ra.static.get("start_time", 0.0)) * float(dataset.yts)
        at = steps_at_outputs(res.steps, np.asarray(ra.time, float)[1:] + t0)
        for k in np.flatnonzero(at >= 0) + 1:
            h[k] = np.asarray(res.steps[int(at[k - 1])]["Thickness"], float)
        out[p] = h
    return out
