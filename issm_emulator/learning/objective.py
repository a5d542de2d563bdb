"""What a network is trained to minimise, and its physical outputs: normalisers, losses, predictions.

The normalisers are fitted on the training split only (:func:`fit_normalizers`); the loss is the mean
squared error of the normalised outputs (:func:`loss_fn`; :func:`increment_loss` for the increments of a
time-decoded direct network); :func:`predict_batch` turns a network's normalised outputs back into SI
fields. Training (:mod:`.train`) minimises these; evaluation (:mod:`.evaluate`) predicts with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from issm_emulator.learning.dataset import DatasetError, DirectRunDataset, EnsembleDataset
from issm_emulator.nn.normalizer import Normalizer

__all__ = ["batch_loss", "decode_outputs", "evaluate_loss", "fit_normalizers", "increment_loss", "loss_fn",
           "predict_batch"]


def fit_normalizers(dataset: EnsembleDataset) -> tuple[Normalizer, Normalizer]:
    """Input and output normalisers fitted on every sample of ``dataset`` (the training split)."""
    if len(dataset) == 0:
        raise DatasetError(f"cannot fit normalisers: {dataset!r} has no samples")
    from issm_emulator.learning.collection import parts

    spec = dataset.spec
    inp = Normalizer(spec.scalars, spec.vectors)
    out = Normalizer(spec.scalar_outputs, ("velocity",))
    increments = isinstance(parts(dataset)[0], DirectRunDataset)
    m = len(spec.scalar_outputs)
    for i in range(len(dataset)):
        s = dataset[i]
        inp.update(s.scalars, s.vectors)
        rows = s.y_velocity.numel() // 2
        out.update(s.y_scalars.reshape(rows, m), s.y_velocity.reshape(rows, 1, 2))
    inp.finalize()
    out.finalize()
    if increments:  # changes since t = 0 are scaled, never shifted: zero stays zero
        out.zero_mean()
    return inp, out


def loss_fn(raw: Mapping[str, torch.Tensor], batch: Any, out_norm: Normalizer,
            scalar_outputs: Sequence[str]) -> torch.Tensor:
    """Mean squared error between the network's (normalised) outputs ``raw`` and the normalised targets of
    ``batch`` over the velocity components and the scalar outputs."""
    y_s, y_v = out_norm.encode(batch.y_scalars, batch.y_velocity.unsqueeze(1))
    err = [raw["velocity"] - y_v[:, 0]]
    if scalar_outputs:
        err.append(torch.stack([raw[n] for n in scalar_outputs], 1) - y_s)
    return torch.cat(err, 1).pow(2).mean()


def decode_outputs(raw: Mapping[str, torch.Tensor], out_norm: Normalizer,
                   scalar_outputs: Sequence[str]) -> dict[str, torch.Tensor]:
    """Physical (SI) outputs ``{'velocity': (n, 2), name: (n,)}`` from the network's normalised outputs."""
    vel = raw["velocity"]
    sc = torch.stack([raw[n] for n in scalar_outputs], 1) if scalar_outputs else vel.new_zeros((vel.shape[0], 0))
    s, v = out_norm.decode(sc, vel.unsqueeze(1))
    out = {"velocity": v[:, 0]}
    for j, n in enumerate(scalar_outputs):
        out[n] = s[:, j]
    return out


def predict_batch(model: nn.Module, batch: Any, in_norm: Normalizer, out_norm: Normalizer,
                  scalar_outputs: Sequence[str]) -> dict[str, torch.Tensor]:
    """Physical outputs of ``model`` on a batch of raw (SI) inputs."""
    s, v = in_norm.encode(batch.scalars, batch.vectors)
    return decode_outputs(model(batch, s, v), out_norm, scalar_outputs)


def increment_loss(raw: Mapping[str, torch.Tensor], batch: Any, out_norm: Normalizer,
                   scalar_outputs: Sequence[str]) -> torch.Tensor:
    """Mean squared error of a time-decoded network's normalised increments ``raw`` (``(n, K, ...)``)
    against the batch's increments since ``t = 0``, scaled by the (zero-mean) output normaliser."""
    v_scale = out_norm.vector_scale.to(batch.y_velocity)[0]
    err = [(raw["velocity"] - batch.y_velocity / v_scale).flatten(1)]
    if scalar_outputs:
        y_s = batch.y_scalars / out_norm.scalar_std.to(batch.y_scalars)
        err.append((torch.stack([raw[n] for n in scalar_outputs], -1) - y_s).flatten(1))
    return torch.cat(err, 1).pow(2).mean()


def batch_loss(model: nn.Module, batch: Any, in_norm: Normalizer, out_norm: Normalizer,
               scalar_outputs: Sequence[str]) -> torch.Tensor:
    """The training loss of ``model`` on ``batch``: :func:`loss_fn`, or :func:`increment_loss` for a
    time-decoded direct network."""
    s, v = in_norm.encode(batch.scalars, batch.vectors)
    if getattr(batch, "times", None) is not None:  # a time-decoded direct network (DirectRunDataset)
        return increment_loss(model(batch, s, v, batch.times), batch, out_norm, scalar_outputs)
    return loss_fn(model(batch, s, v), batch, out_norm, scalar_outputs)


def evaluate_loss(model: nn.Module, loader: DataLoader, in_norm: Normalizer, out_norm: Normalizer,
                  scalar_outputs: Sequence[str], device: torch.device, world: int) -> float:
    """Sample-weighted mean loss over ``loader`` (summed over ranks when distributed)."""
    model.eval()
    tot = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            loss = batch_loss(model, batch, in_norm, out_norm, scalar_outputs)
            nb = batch.num_graphs
            tot[0] += float(loss) * nb
            tot[1] += nb
    if world > 1:
        torch.distributed.all_reduce(tot)
    return float(tot[0] / tot[1]) if tot[1] > 0 else math.nan
