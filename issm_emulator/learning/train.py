"""Training of the emulators (EGCN, GCN, CNN) on an ensemble, in direct or step mode, on one or many GPUs.

:func:`train` fits the input and output normalisers on the **training split only**, then minimises the mean
squared error of the normalised outputs,

.. math:: L = \\frac{1}{N} \\sum_i \\Big[ \\tfrac{|\\hat u_i - u_i|^2}{s_u^2}
          + \\sum_q \\tfrac{(\\hat q_i - q_i)^2}{\\sigma_q^2} \\Big] / (2 + m)

(``s_u`` the RMS speed, ``sigma_q`` the standard deviation of each of the ``m`` scalar outputs), with Adam
and an exponential (or plateau) learning-rate schedule, and stops early when the validation loss (or, with
``select='rollout'``, the validation rollouts: :mod:`.selection`) has not improved for ``patience`` epochs.
Files written (rank 0 only):

* ``out`` (e.g. ``egcn.pt``): the best checkpoint on the validation split (lowest loss, or best rollouts)
  (:func:`issm_emulator.solvers.emulator.checkpoint.save_checkpoint`: weights, config, normalisers, manifest with
  feature names, units, training range of every forcing parameter, package version);
* ``<out stem>.last.pt``: everything needed to resume (weights, optimiser, schedule, history, RNG states),
  written atomically after every epoch; ``train(..., resume=True)`` continues from it;
* ``<out stem>.history.csv`` / ``.history.json``: epoch, learning rate, training and validation loss, time.

Determinism: with the same seed, data and device the weights are identical (seeded model init and loader
shuffling, ``torch.use_deterministic_algorithms(True, warn_only=True)`` during training, 0 loader workers
by default). Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (backend ``nccl`` on CUDA, ``gloo`` on CPU), the
training samples are sharded by a :class:`~torch.utils.data.distributed.DistributedSampler` and validation
losses are summed over ranks::

    torchrun --nproc_per_node 2 -m issm_emulator.learning --data ens/ --model egcn --mode step --out m.pt
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from issm_emulator._files import atomic_write
from issm_emulator.errors import IssmEmulatorError
from issm_emulator.learning.dataset import (
    DatasetError,
    collate,
    make_dataset,
)
from issm_emulator.learning.distributed import dist_env, replica_difference
from issm_emulator.learning.objective import batch_loss, evaluate_loss, fit_normalizers
from issm_emulator.learning.resume import check_resume, resume_record
from issm_emulator.learning.selection import SELECT_RULES, rollout_score
from issm_emulator.progress import progress_bar
from issm_emulator.solvers.emulator.checkpoint import atomic_torch_save, make_manifest, save_checkpoint
from issm_emulator.solvers.emulator.processing_mesh import mesh_record

__all__ = ["history_paths", "last_checkpoint_path", "train"]

def last_checkpoint_path(out: str | os.PathLike) -> Path:
    """``<stem>.last.pt`` beside ``out``: the resumable last-epoch state."""
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")


def history_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.history.csv, <stem>.history.json)`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + ".history.csv"), out.with_name(out.stem + ".history.json")


# --------------------------------------------------------------------------------------------- helpers
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _resolve_device(device: Any, local_rank: int) -> torch.device:
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return dev


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, newline=""))


@contextlib.contextmanager
def _deterministic(enabled: bool, device: torch.device):
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _build_model(arch: str, spec: Any, hidden: int, layers: int, options: Mapping[str, Any]) -> nn.Module:
    from issm_emulator.nn import model_from_spec

    options = dict(options)
    if arch == "egcn":
        options.setdefault("normalize", True)  # bounded hidden states: stable long step-mode rollouts
    return model_from_spec(arch, spec, hidden=int(hidden), n_layers=int(layers), **options)


# --------------------------------------------------------------------------------------------- train
def train(data: str | os.PathLike, *, model: str = "egcn", mode: str = "step", out: str | os.PathLike,
          epochs: int = 100, lr: float = 1e-3, batch_size: int = 8, device: Any = None, seed: int = 0,
          hidden: int = 128, layers: int = 5, patience: int | None = 20, lr_schedule: str = "exponential",
          lr_decay: float = 0.99, weight_decay: float = 0.0, grad_clip: float | None = None,
          parameters: Sequence[str] | None = None, moving_front: bool | None = None, split_rule: Any = None,
          model_options: Mapping[str, Any] | None = None, num_workers: int = 0, resume: bool = False,
          progress: bool = True, deterministic: bool = True, cache_bytes: int = 2 * 1024 ** 3,
          time_stride: int = 1, callback: Callable[[dict[str, Any]], None] | None = None,
          decoder: str | None = "auto", input_noise: float = 0.0, noise_targets: str = "keep",
          calibrate_indicator: bool = True, init_from: str | os.PathLike | None = None,
          previous_velocity: bool = False, velocity_noise: float = 0.0, rotate_stride: bool = False,
          processing_mesh: bool = False, fit_targets: bool = False, processing_back: str = "taylor",
          select: str = "loss", rollout_inputs: float = 0.0, rollout_refresh: int = 0,
          rollout_on: Sequence[int] | None = None) -> Path:
    """Train an emulator on the ``train`` split of an ensemble; keep the best on ``validation``.

    Parameters
    ----------
    data : ensemble folder or its ``ensemble.nc``, or a list of them: ensembles of one glacier on several
        meshes, trained together (:class:`~issm_emulator.learning.collection.EnsembleCollection`)
    model : ``'egcn'``, ``'gcn'`` or ``'cnn'``
    mode : ``'direct'`` (initial state + time -> state at t) or ``'step'`` (geometry k-1 -> velocity k)
    out : checkpoint path to write (the best epoch)
    epochs, lr, batch_size : optimisation (Adam)
    device : ``'cpu'``, ``'cuda'``, ``'cuda:1'``...; default CUDA when available (per local rank)
    seed : seeds the weights, the shuffling and everything random
    hidden, layers : network width and depth (``n_layers``)
    patience : stop after this many epochs without a better validation loss (None: never)
    lr_schedule : ``'exponential'`` (``lr *= lr_decay`` each epoch), ``'plateau'``
        (:class:`~torch.optim.lr_scheduler.ReduceLROnPlateau`, factor 0.5, patience ``max(1, patience//4)``)
        or ``'constant'``
    weight_decay, grad_clip : Adam weight decay; clip the gradient norm (None: no clipping)
    parameters, moving_front, split_rule : passed to the datasets (:class:`~issm_emulator.learning.dataset.EnsembleDataset`)
    model_options : further network keywords (``vector_hidden``, ``cell_size``...)
    num_workers : DataLoader worker processes (0 keeps runs bit-reproducible and memory low)
    resume : continue from ``<stem>.last.pt`` when it exists (same configuration)
    progress : rich progress bar on stderr (rank 0)
    deterministic : ``torch.use_deterministic_algorithms(True, warn_only=True)`` while training
    time_stride : train and validate on every ``time_stride``-th output only (cheaper epochs)
    rotate_stride : epoch ``e`` trains on the outputs ``k = m S - ((e - 1) mod S)`` (``S = time_stride``), so
        every ``S`` epochs see every output once; validation keeps ``k = m S``
    callback : called on rank 0 with each epoch's history record
    decoder : direct mode's output parameterisation: ``'increment'`` (outputs = changes since the initial
        state, exactly the initial state at ``t = 0``: :class:`~issm_emulator.nn.direct.EGCNDirect`, one pass
        per run; :class:`~issm_emulator.nn.increment.TimeInputIncrement`, one GCN/CNN pass per time), None
        (time as an input, absolute outputs: the seed's method), ``'auto'``: ``'increment'`` in direct mode
    input_noise : step mode: standard deviation (m) of the smooth thickness perturbation of the training
        inputs (:class:`~issm_emulator.learning.dataset.StepDataset`; validation inputs are never perturbed)
    noise_targets : with ``input_noise``: ``'keep'`` the true velocity as the target, or ``'ssa'`` the stress
        balance of the perturbed geometry solved by ``fem`` (the ensemble's models are rebuilt for it)
    previous_velocity : step mode: the velocity at the start of the step is an input too (a warm start the
        network corrects; :func:`~issm_emulator.nn.features.default_spec`)
    velocity_noise : with ``previous_velocity``: standard deviation of the smooth perturbation of that input
        velocity, as a fraction of the local speed; the validation inputs get it too, drawn once per sample
        (``seed``), so that the kept epoch is the one that corrects a wrong warm start best
    init_from : a checkpoint to fine-tune: its network (architecture, sizes, weights) and normalisers are
        the starting point (``hidden``, ``layers``, ``model_options`` are then taken from it), e.g. to extend a
        network trained on one mesh to a collection of meshes
    calibrate_indicator : after training, calibrate the error indicator on the validation runs
        (:func:`~issm_emulator.learning.applicability.calibrate_checkpoint`); the checkpoint always records
        its applicability domain (:func:`~issm_emulator.learning.applicability.training_domain`)
    processing_mesh : the network runs on the first ensemble's mesh for every ensemble and every model
        (recorded in the checkpoint; :mod:`~issm_emulator.solvers.emulator.processing_mesh`); ``fit_targets``:
        the other ensembles' targets there are fitted (least squares through the move back), not interpolated;
        ``processing_back``: the rule moving outputs back to a model's mesh (``"taylor"`` or ``"p1"``, recorded)
    select : the epoch kept: ``"loss"`` (lowest validation loss) or, for step networks, ``"rollout"`` (best
        rollouts of the validation runs; :mod:`~issm_emulator.learning.selection`)

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    if model not in ("egcn", "gcn", "cnn"):
        raise ValueError(f"model must be 'egcn', 'gcn' or 'cnn', got {model!r}")
    if mode not in ("direct", "step"):
        raise ValueError(f"mode must be 'direct' or 'step', got {mode!r}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0 (got {epochs}, {batch_size}, {lr})")
    if lr_schedule not in ("exponential", "plateau", "constant"):
        raise ValueError(f"lr_schedule must be 'exponential', 'plateau' or 'constant', got {lr_schedule!r}")
    if decoder == "auto":
        decoder = "increment" if mode == "direct" else None
    if decoder not in (None, "increment"):
        raise ValueError(f"decoder must be 'increment', None or 'auto', got {decoder!r}")
    if decoder is not None and mode != "direct":
        raise ValueError(f"decoder={decoder!r} is a direct-mode option (got {model} {mode} mode)")
    out = Path(out)
    world, rank, local_rank = dist_env()
    distributed = world > 1
    dev = _resolve_device(device, local_rank)
    own_group = False
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.distributed.init_process_group(backend=backend)
        own_group = True
    try:
        with _deterministic(deterministic, dev):
            return _train(data, arch=model, mode=mode, out=out, epochs=epochs, lr=lr, batch_size=batch_size,
                          dev=dev, seed=seed, hidden=hidden, layers=layers, patience=patience,
                          lr_schedule=lr_schedule, lr_decay=lr_decay, weight_decay=weight_decay,
                          grad_clip=grad_clip, parameters=parameters, moving_front=moving_front,
                          split_rule=split_rule, model_options=model_options or {}, num_workers=num_workers,
                          resume=resume, progress=progress, cache_bytes=cache_bytes, time_stride=time_stride,
                          callback=callback, decoder=decoder, input_noise=input_noise,
                          noise_targets=noise_targets, calibrate_indicator=calibrate_indicator,
                          init_from=init_from, previous_velocity=previous_velocity,
                          velocity_noise=velocity_noise, rotate_stride=rotate_stride, world=world, rank=rank,
                          processing_mesh=processing_mesh, fit_targets=fit_targets,
                          processing_back=processing_back, select=select, rollout_inputs=rollout_inputs,
                          rollout_refresh=rollout_refresh, rollout_on=rollout_on)
    finally:
        if own_group:
            torch.distributed.destroy_process_group()


def _train(data: Any, *, arch: str, mode: str, out: Path, epochs: int, lr: float, batch_size: int,
           dev: torch.device, seed: int, hidden: int, layers: int, patience: int | None, lr_schedule: str,
           lr_decay: float, weight_decay: float, grad_clip: float | None, parameters: Any, moving_front: Any,
           split_rule: Any, model_options: Mapping[str, Any], num_workers: int, resume: bool, progress: bool,
           cache_bytes: int, time_stride: int, callback: Any, world: int, rank: int,
           decoder: str | None = None, input_noise: float = 0.0, noise_targets: str = "keep",
           calibrate_indicator: bool = True, init_from: Any = None, previous_velocity: bool = False,
           velocity_noise: float = 0.0, rotate_stride: bool = False, processing_mesh: bool = False,
           fit_targets: bool = False, processing_back: str = "taylor", select: str = "loss",
           rollout_inputs: float = 0.0, rollout_refresh: int = 0, rollout_on: Sequence[int] | None = None) -> Path:
    _seed_everything(seed)
    n_data = len(data) if isinstance(data, (list, tuple)) else 1
    if not (math.isfinite(rollout_inputs) and 0.0 <= rollout_inputs <= 1.0):
        raise ValueError(f"rollout_inputs: expected a fraction of the training samples in [0, 1], got {rollout_inputs!r}")
    if rollout_inputs and mode != "step":
        raise ValueError("rollout_inputs is a step-mode option (direct mode does not roll out)")
    if rollout_refresh < 0:
        raise ValueError(f"rollout_refresh: expected a number of epochs >= 0, got {rollout_refresh!r}")
    rollout_on = list(range(n_data)) if rollout_on is None else sorted({int(i) for i in rollout_on})
    if any(i < 0 or i >= n_data for i in rollout_on):
        raise ValueError(f"rollout_on: expected indices of the {n_data} ensemble(s) of data, got {rollout_on}")
    if select not in SELECT_RULES or (select == "rollout" and mode != "step"):
        raise ValueError(f"select: expected 'loss', or 'rollout' for a step network; got {select!r} "
                         f"(mode {mode!r})")
    kw = {"parameters": parameters, "rule": split_rule, "cache_bytes": cache_bytes, "time_stride": time_stride,
          "decoder": decoder}
    noise = {"input_noise": input_noise, "noise_targets": noise_targets} if input_noise or rollout_inputs else {}
    if noise and mode != "step":
        raise ValueError("input_noise is a step-mode option (direct mode starts from the true initial state)")
    if (previous_velocity or velocity_noise) and (mode != "step" or not previous_velocity):
        raise ValueError("previous_velocity and velocity_noise are step-mode options, and velocity_noise perturbs "
                         "the previous velocity input: it needs previous_velocity=True")
    if previous_velocity:
        noise = {**noise, "previous_velocity": True, "velocity_noise": float(velocity_noise)}
    from issm_emulator.learning.collection import (EnsembleCollection, is_collection, mesh_vertices, parts,
                                                   run_values, set_time_phase)

    def processing_record(mesh: Any) -> dict[str, Any] | None:
        return mesh_record(mesh.x, mesh.y, mesh.elements, back=processing_back) if processing_mesh else None

    def split_dataset(split: str, **extra: Any) -> Any:
        """One split of ``data``: one ensemble, or several (a collection with the first one's features)."""
        if not is_collection(data):
            return make_dataset(mode, data, split, moving_front=moving_front, **kw, **extra)
        first = make_dataset(mode, data[0], split, moving_front=moving_front, **kw, **extra)
        extra = {**extra, "spec": first.spec, "processing_mesh": processing_record(first.mesh),
                 "fit_targets": bool(processing_mesh and fit_targets)}
        return EnsembleCollection([first] + [make_dataset(mode, d, split, moving_front=first.moving_front, **kw,
                                                          **extra) for d in data[1:]])

    train_ds = split_dataset("train", **noise)
    if len(train_ds) == 0:
        from issm_emulator.datasets.splits import empty_split_hint

        raise DatasetError(f"{train_ds.path}: the training split has no samples"
                           + empty_split_hint(split_rule, train_ds))
    spec = train_ds.spec
    # a warm-start network is validated on warm starts as wrong as those it trains on (fixed per sample, so
    # epochs compare): on exact ones, copying the input would look best
    val_noise = {"velocity_noise": float(velocity_noise), "noise_seed": seed} if velocity_noise else {}
    if is_collection(data):
        val_ds = split_dataset("validation", spec=spec, **val_noise)
    else:
        val_ds = make_dataset(mode, data, "validation", spec=spec, moving_front=train_ds.moving_front, **kw,
                              **val_noise)
    if select == "rollout":  # the rollouts need the runs' models: refuse now, not after the first epoch
        for part in parts(val_ds):
            if len(part.run_positions) == 0:
                continue
            try:
                part.run_state(int(part.run_positions[0]))
            except Exception as exc:
                raise DatasetError(f"select='rollout' rolls out the validation runs of {part.path.name}, but "
                                   f"their models cannot be rebuilt: {exc}") from exc
    start = None
    if init_from is not None:  # fine-tuning: the checkpoint's network and normalisers, as they are
        from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

        start = load_checkpoint(init_from)
        if start.mode != mode or start.config.get("arch") != arch or start.config.get("decoder") != decoder or \
                tuple(start.spec.scalars) != tuple(spec.scalars) or tuple(start.spec.vectors) != tuple(spec.vectors):
            raise DatasetError(f"init_from={init_from}: a {start.config.get('arch')} {start.mode}-mode network (decoder "
                               f"{start.config.get('decoder')}) with inputs {list(start.spec.scalars)}; this training "
                               f"is {arch} {mode} mode (decoder {decoder}) with {list(spec.scalars)}")
        in_norm, out_norm = start.input_normalizer, start.output_normalizer
    else:
        in_norm, out_norm = fit_normalizers(train_ds)
    in_norm, out_norm = in_norm.to(dev), out_norm.to(dev)
    forcing_ranges = train_ds.forcing_ranges()
    manifest = make_manifest(spec, mode, forcing_ranges, arch=arch, extra={
        "ensemble": train_ds.ds.attrs.get("ensemble", ""), "data": str(train_ds.path.name),
        "swept_parameter": train_ds.parameter, "parameter_units": train_ds.ds.attrs.get("parameter_units", ""),
        "train_values": run_values(train_ds), "validation_values": run_values(val_ds),
        "moving_front": train_ds.moving_front, "mesh_vertices": mesh_vertices(train_ds),
        "split_rule": None if split_rule is None or callable(split_rule) else str(split_rule)})
    from issm_emulator.learning.applicability import training_domain

    manifest["domain"] = training_domain(train_ds, mode)
    if processing_mesh:
        manifest["processing_mesh"] = processing_record(parts(train_ds)[0].mesh)

    if decoder is not None:  # the time decoder's column and time unit come from the training data
        model_options = {**model_options, "decoder": decoder, "time_column": spec.scalars.index("time"),
                         "time_scale": float(forcing_ranges["time"][1])}
    if arch == "cnn" and is_collection(data) and model_options.get("cell_size") is None:
        from issm_emulator.nn.cnn import mean_edge_length  # one grid spacing for every mesh: the first one's

        m0 = parts(train_ds)[0].mesh
        model_options = {**model_options, "cell_size": mean_edge_length(m0.x, m0.y, m0.elements)}
    _seed_everything(seed)
    if start is not None:
        net = start.model.to(dev)
        model_options = {k: v for k, v in start.config.items() if k not in ("arch",)}
        hidden, layers = int(start.config.get("hidden", hidden)), int(start.config.get("n_layers", layers))
    else:
        net = _build_model(arch, spec, hidden, layers, model_options).to(dev)
    scalar_outputs = tuple(spec.scalar_outputs)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    if lr_schedule == "exponential":
        scheduler: Any = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=lr_decay)
    elif lr_schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5,
                                                               patience=max(1, (patience or 8) // 4))
    else:
        scheduler = None

    config = {"arch": arch, "mode": mode, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
              "hidden": hidden, "layers": layers, "patience": patience, "lr_schedule": lr_schedule,
              "lr_decay": lr_decay, "weight_decay": weight_decay, "grad_clip": grad_clip,
              "model_options": dict(model_options), "world_size": world, "device": str(dev.type),
              "decoder": decoder, "input_noise": input_noise, "noise_targets": noise_targets,
              "init_from": None if start is None else {"path": str(init_from), "sha256": start.content_sha256}}
    if previous_velocity:  # recorded only when used, so that runs from before the option still resume
        config.update(previous_velocity=True, velocity_noise=float(velocity_noise))
    rotate_stride = bool(rotate_stride) and time_stride > 1
    if rotate_stride:  # likewise
        config["rotate_stride"] = True
    if select != "loss":  # likewise
        config["select"] = select
    if rollout_inputs:  # likewise
        config.update(rollout_inputs=float(rollout_inputs), rollout_refresh=int(rollout_refresh),
                      rollout_on=list(rollout_on))
    if processing_mesh:  # likewise
        config.update(processing_mesh=True, **({"fit_targets": True} if fit_targets else {}),
                      **({"processing_back": processing_back} if processing_back != "p1" else {}))
    history: list[dict[str, Any]] = []
    best = {"loss": math.inf, "epoch": 0}
    start_epoch = 1
    last_path = last_checkpoint_path(out)
    record = resume_record(config, train_ds, manifest, parameters=parameters, split_rule=split_rule,
                            time_stride=time_stride)
    if resume and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if state.get("config", {}).get("arch") != arch or state.get("config", {}).get("mode") != mode:
            raise DatasetError(f"{last_path}: cannot resume, it was written for {state.get('config')}")
        check_resume(last_path, state, record)
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        history = list(json.loads(state["history"]))
        best = dict(json.loads(state["best"]))
        start_epoch = int(state["epoch"]) + 1
        torch.set_rng_state(state["rng_cpu"])
    module = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)

    gen = torch.Generator().manual_seed(seed)
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler: Any = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        train_loader = DataLoader(train_ds, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                                  num_workers=num_workers)
        val_part: Any = Subset(val_ds, list(range(rank, len(val_ds), world)))
    else:
        sampler = None
        train_loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=gen, collate_fn=collate,
                                  num_workers=num_workers)
        val_part = val_ds
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=False, collate_fn=collate,
                            num_workers=num_workers)
    has_val = len(val_ds) > 0
    if rank == 0 and not has_val:
        warnings.warn(f"{train_ds.path.name}: the validation split is empty; the checkpoint keeps the epoch with "
                      "the lowest training loss and early stopping watches the training loss", RuntimeWarning,
                      stacklevel=3)

    def write_best(epoch: int, loss: float, path: Path | None = None) -> None:
        watched = "train" if not has_val else "validation rollouts" if select == "rollout" else "validation"
        save_checkpoint(path or out, module, manifest, in_norm, out_norm, extra={
            "training": {**config, "best_epoch": epoch, "best_loss": loss, "watched": watched,
                         "forcing_ranges": {k: list(v) for k, v in forcing_ranges.items()}}})

    bar = progress_bar(epochs, progress and rank == 0, f"train {arch}/{mode}", unit="epoch",
                       initial=start_epoch - 1)
    stale = int(history[-1]["epoch"]) - int(best["epoch"]) if history else 0

    def roll_out(epoch: int) -> None:
        """The training runs' rollouts by the network as it is now (:mod:`.rollout_inputs`), into the
        training datasets."""
        from issm_emulator.learning.rollout_inputs import rollout_thickness

        with tempfile.TemporaryDirectory(prefix="issm-emulator-rollouts-") as tmp:
            path = Path(tmp) / "rollouts.pt"
            write_best(epoch - 1, math.nan, path)
            for i, part in enumerate(parts(train_ds)):
                if i in rollout_on:
                    part.set_rollouts(rollout_thickness(path, part), rollout_inputs)

    try:
        for epoch in range(start_epoch, epochs + 1):
            t0 = time.perf_counter()
            if rollout_inputs and (epoch == start_epoch or (rollout_refresh and (epoch - 1) % rollout_refresh == 0)):
                roll_out(epoch)
                t_roll = time.perf_counter() - t0
            else:
                t_roll = None
            if rotate_stride and set_time_phase(train_ds, epoch - 1) and sampler is not None:
                sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
                train_loader = DataLoader(train_ds, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                                          num_workers=num_workers)
            if sampler is not None:
                sampler.set_epoch(epoch)
            else:
                gen.manual_seed(seed * 1_000_003 + epoch)  # the same order on resume as without
            net.train()
            tot, count = 0.0, 0
            for batch in train_loader:
                batch = batch.to(dev)
                optimiser.zero_grad(set_to_none=True)
                loss = batch_loss(net, batch, in_norm, out_norm, scalar_outputs)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss is {float(loss)} at epoch {epoch}; lower the "
                                             f"learning rate (lr={lr})")
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
                optimiser.step()
                tot += float(loss.detach()) * batch.num_graphs
                count += batch.num_graphs
            train_loss = torch.tensor([tot, count], dtype=torch.float64, device=dev)
            if world > 1:
                torch.distributed.all_reduce(train_loss)
            train_loss_v = float(train_loss[0] / train_loss[1])
            val_loss = evaluate_loss(net, val_loader, in_norm, out_norm, scalar_outputs, dev, world) \
                if has_val else math.nan
            watch = val_loss if has_val else train_loss_v
            score = None
            if select == "rollout" and has_val:  # the validation runs' rollouts choose the epoch kept
                score = torch.zeros(1, dtype=torch.float64, device=dev)
                if rank == 0:
                    score += rollout_score(lambda p, e=epoch, v=val_loss: write_best(e, v, p),
                                           list(data) if is_collection(data) else [data],
                                           split_rule=split_rule)
                if world > 1:
                    torch.distributed.broadcast(score, 0)
                watch = score = float(score)
            current_lr = optimiser.param_groups[0]["lr"]
            if scheduler is not None:
                if lr_schedule == "plateau":
                    scheduler.step(watch)
                else:
                    scheduler.step()
            improved = watch < best["loss"]
            if improved:
                best = {"loss": watch, "epoch": epoch}
                stale = 0
                if rank == 0:
                    write_best(epoch, watch)
            else:
                stale += 1
            rec = {"epoch": epoch, "lr": current_lr, "train_loss": train_loss_v, "validation_loss": val_loss,
                   **({} if score is None else {"validation_rollout_thickness_rmse": score}),
                   **({} if t_roll is None else {"rollout_seconds": t_roll}),
                   "best": improved, "seconds": time.perf_counter() - t0}
            history.append(rec)
            if rank == 0:
                _write_history(out, history)
                atomic_torch_save({
                    "config": config, "epoch": epoch, "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                    "optimizer": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "history": json.dumps(history), "best": json.dumps(best), "rng_cpu": torch.get_rng_state(),
                    "resume_record": json.dumps(record, sort_keys=True)},
                    last_path)
                if callback is not None:
                    callback(rec)
            bar.set_postfix_str(f"loss {train_loss_v:.3e} val {val_loss:.3e} best {best['loss']:.3e} @ {best['epoch']}")
            bar.update(1)
            if patience is not None and stale >= patience:
                break
        if world > 1:
            diff = replica_difference(module)
            if rank == 0:
                _atomic_text(out.with_name(out.stem + ".ddp.json"),
                             json.dumps({"world_size": world, "replica_max_abs_diff": diff}))
            if diff != 0.0:
                raise RuntimeError(f"DistributedDataParallel replicas differ after training (max |w - w_rank0| "
                                   f"= {diff:g})")
            torch.distributed.barrier()
    finally:
        bar.close()
    if rank == 0 and calibrate_indicator and has_val and out.is_file():
        from issm_emulator.learning.applicability import calibrate_checkpoint

        try:
            calibrate_checkpoint(out, val_ds, "validation", device="cpu")
        except (ValueError, IssmEmulatorError) as exc:  # too few validation outputs, a rollout that diverges
            warnings.warn(f"{out.name}: the error indicator could not be calibrated ({exc}); "
                          "EmulatorVelocityError will be NaN", RuntimeWarning, stacklevel=3)
    return out


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    csv_path, json_path = history_paths(out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.StringIO()
    names = list(dict.fromkeys(k for rec in history for k in rec))  # some columns only on some epochs
    w = csv.DictWriter(buf, fieldnames=names)
    w.writeheader()
    w.writerows(history)
    _atomic_text(csv_path, buf.getvalue())
    _atomic_text(json_path, json.dumps(history, indent=1))
