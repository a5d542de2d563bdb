"""Record what a checkpoint applies to: its applicability domain and its error indicator's calibration.

One job: from an ensemble, compute

* the **domain** (:func:`training_domain`): :func:`issm_emulator.solvers.emulator.domain.domain_from_states`
  over the rebuilt initial states of the training runs;
* the **indicator pairs** (:func:`indicator_pairs`): for every output step of the runs of a split, the
  emulator's relative SSA residual, its Picard correction and its true RMS velocity error against the
  ensemble's ``fem`` output;
* the **calibration** (:func:`calibrate_checkpoint`): a power law fitted to the validation split's pairs,
  stored in the checkpoint's manifest (``indicator``) so that ``EmulatorVelocityError`` reads in m/yr.

:func:`train <issm_emulator.learning.train.train>` records both; :func:`record_applicability` (the
``issm-emulator domain`` command) adds them to an existing checkpoint from its training ensemble.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from issm_emulator.learning.dataset import DatasetError, DirectDataset, EnsembleDataset
from issm_emulator.solvers.emulator.checkpoint import Checkpoint, load_checkpoint, update_manifest
from issm_emulator.solvers.emulator.domain import domain_from_states
from issm_emulator.solvers.emulator.indicator import calibrate

__all__ = ["calibrate_checkpoint", "indicator_pairs", "record_applicability", "training_domain"]


def _dataset(data: Any, split: str | None, runs: Sequence[int] | None = None) -> Any:
    from issm_emulator.learning.collection import EnsembleCollection

    if isinstance(data, (EnsembleDataset, EnsembleCollection)):
        return data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return DirectDataset(data, None if runs is not None else split, runs=runs)  # runs and fields only


def training_domain(data: Any, mode: str, *, split: str | None = "train",
                    runs: Sequence[int] | None = None) -> dict[str, Any]:
    """The applicability domain of a network trained on ``split`` (or the run positions ``runs``) of
    ``data`` (an ensemble folder or an :class:`~issm_emulator.learning.dataset.EnsembleDataset`)."""
    from issm_emulator.learning.collection import parts

    dsets = parts(data) if not isinstance(data, (str, os.PathLike)) else [_dataset(data, split, runs)]
    states = [d.run_state(int(p)) for d in dsets for p in d.run_positions]
    if not states:
        raise DatasetError(f"{dsets[0].path}: no runs to compute a domain from")
    return domain_from_states(states, mode=mode)


def indicator_pairs(checkpoint: Checkpoint | str | os.PathLike, data: Any, split: str = "validation", *,
                    device: Any = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(residuals, corrections, errors)`` over every output step of the runs of ``split``: the emulator's
    relative SSA residual (``EmulatorResidual``), the RMS of its Picard correction
    (``EmulatorVelocityCorrection``, m/s) and its RMS velocity error (m/s) against the ensemble's fields."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    from issm_emulator.learning.collection import EnsembleCollection

    if isinstance(data, EnsembleCollection):  # one mesh at a time
        pairs = [indicator_pairs(ckpt, d, split, device=device) for d in data.parts]
        return tuple(np.concatenate([p[i] for p in pairs]) for i in range(3))  # type: ignore[return-value]
    ds = _dataset(data, split)
    if not len(ds.run_positions):
        raise DatasetError(f"{ds.path}: the {split!r} split has no runs to calibrate the indicator on")
    states = []
    for p in ds.run_positions:
        st = ds.run_state(int(p))
        states.append(st.replace(requested_outputs=tuple(st.requested_outputs)
                                 + ("EmulatorResidual", "EmulatorVelocityCorrection")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ckpt.mode == "step":
            from issm_emulator.solvers.emulator.step import rollout_step_many

            results = rollout_step_many(ckpt, states, device=device)
        else:
            from issm_emulator.solvers.emulator.direct import direct_transient_many

            results = direct_transient_many(ckpt, states, device=device)
    res, corr, err = [], [], []
    for p, st, result in zip(ds.run_positions, states, results):
        ra = ds.run_arrays(int(p))
        t_true = ra.time + st.timestepping.start_time  # s, output 0 = initial state
        for s in result.steps:
            if "EmulatorResidual" not in s:
                continue
            i = int(np.argmin(np.abs(t_true - float(s["time"]))))
            if i == 0 or abs(t_true[i] - float(s["time"])) > 1.0:
                continue
            dvx = np.asarray(s["Vx"], float) - ra.fields["vx"][i]
            dvy = np.asarray(s["Vy"], float) - ra.fields["vy"][i]
            res.append(float(s["EmulatorResidual"]))
            c = np.asarray(s["EmulatorVelocityCorrection"], float)
            corr.append(float(np.sqrt(np.mean(c * c))))
            err.append(float(np.sqrt(np.mean(dvx * dvx + dvy * dvy))))
    return np.asarray(res), np.asarray(corr), np.asarray(err)


def calibrate_checkpoint(path: str | os.PathLike, data: Any, split: str = "validation", *,
                         device: Any = "cpu") -> dict[str, Any]:
    """Fit the indicator's calibration on ``split`` of ``data`` and store it in the checkpoint at ``path``
    (rewritten atomically); returns the calibration."""
    ds = _dataset(data, split)
    r, c, e = indicator_pairs(path, ds, split, device=device)
    cal = calibrate(c, e, yts=ds.yts, residuals=r)
    cal["split"] = split
    update_manifest(path, {"indicator": cal})
    return cal


def _train_positions(ckpt: Checkpoint, ds: EnsembleDataset) -> list[int] | None:
    """Run positions of the values the checkpoint was trained on (None: not recorded)."""
    values = (ckpt.manifest.get("extra") or {}).get("train_values")
    if not values:
        return None
    want = [np.atleast_1d(np.asarray(v, float)) for v in values]
    out = []
    for p in range(ds.ds.sizes["run"]):
        v = np.atleast_1d(np.asarray(ds.run_value(p), float))
        if any(w.shape == v.shape and np.allclose(w, v, rtol=1e-9, atol=1e-12) for w in want):
            out.append(p)
    return out or None


def record_applicability(path: str | os.PathLike, data: str | os.PathLike, *, calibrate_indicator: bool = True,
                         device: Any = "cpu") -> dict[str, Any]:
    """Add the domain (from the checkpoint's training runs in ``data``) and, optionally, the indicator's
    calibration (validation split) to an existing checkpoint. Older checkpoints without a content hash are
    sealed on the way. Returns ``{'domain': ..., 'indicator': ...}``."""
    path = Path(path)
    from issm_emulator.solvers.emulator.checkpoint import CheckpointCorruptedError

    try:
        ckpt = load_checkpoint(path)
    except CheckpointCorruptedError as err:
        if "no content hash" not in str(err):
            raise
        update_manifest(path, {}, allow_unsealed=True)
        ckpt = load_checkpoint(path)
    full = _dataset(data, None)
    positions = _train_positions(ckpt, full)
    domain = training_domain(data, ckpt.mode, split="train" if positions is None else None, runs=positions)
    update_manifest(path, {"domain": domain})
    out: dict[str, Any] = {"domain": domain, "indicator": None}
    if calibrate_indicator:
        out["indicator"] = calibrate_checkpoint(path, data, "validation", device=device)
    return out
