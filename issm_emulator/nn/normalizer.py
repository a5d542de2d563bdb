"""Per-feature normalisation of network inputs and outputs.

Scalars are standardised, ``s' = (s - mean) / std``. A 2-vector channel is divided by one positive number,
its RMS norm ``sqrt(mean |v|^2)``, and never shifted: a mean shift ``v - m`` would single out the direction
of ``m`` and break rotation equivariance, a common scale does not. Constant features get std 1 (zero mean
features) or ``|mean|``, so that nothing is divided by zero.

Statistics are accumulated in float64 (Chan's pairwise mean/variance update) over any number of batches (:meth:`Normalizer.update`) and frozen
with :meth:`Normalizer.finalize`; they live in buffers (``state_dict``) and in :meth:`Normalizer.to_dict`,
which :mod:`issm_emulator.solvers.emulator.checkpoint` stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch


class Normalizer(torch.nn.Module):
    """Mean/std for scalar channels, RMS scale for vector channels.

    Parameters
    ----------
    scalar_names, vector_names : channel names (for messages and checkpoints)
    """

    def __init__(self, scalar_names: Sequence[str], vector_names: Sequence[str]):
        super().__init__()
        self.scalar_names = tuple(scalar_names)
        self.vector_names = tuple(vector_names)
        s, c = len(self.scalar_names), len(self.vector_names)
        self.register_buffer("scalar_mean", torch.zeros(s, dtype=torch.float64))
        self.register_buffer("scalar_std", torch.ones(s, dtype=torch.float64))
        self.register_buffer("vector_scale", torch.ones(c, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._reset_sums()

    def _reset_sums(self) -> None:
        s, c = len(self.scalar_names), len(self.vector_names)
        self._n = 0
        self._mean = torch.zeros(s, dtype=torch.float64)
        self._m2 = torch.zeros(s, dtype=torch.float64)  # sum of squared deviations from the mean
        self._v2 = torch.zeros(c, dtype=torch.float64)

    def _check(self, scalars: torch.Tensor | None, vectors: torch.Tensor | None) -> None:
        if scalars is not None and (scalars.ndim != 2 or scalars.shape[1] != len(self.scalar_names)):
            raise ValueError(f"scalars must have shape (n, {len(self.scalar_names)}) for channels "
                             f"{list(self.scalar_names)}, got {tuple(scalars.shape)}")
        if vectors is not None and (vectors.ndim != 3 or vectors.shape[1:] != (len(self.vector_names), 2)):
            raise ValueError(f"vectors must have shape (n, {len(self.vector_names)}, 2) for channels "
                             f"{list(self.vector_names)}, got {tuple(vectors.shape)}")

    @torch.no_grad()
    def update(self, scalars: torch.Tensor, vectors: torch.Tensor) -> None:
        """Accumulate statistics of one batch (rows are vertices)."""
        scalars = torch.as_tensor(scalars).detach().to("cpu", torch.float64)
        vectors = torch.as_tensor(vectors).detach().to("cpu", torch.float64)
        self._check(scalars, vectors)
        if scalars.shape[0] != vectors.shape[0]:
            raise ValueError("scalars and vectors must have the same number of rows")
        nb = scalars.shape[0]
        if nb == 0:
            return
        # Chan et al.'s pairwise update of mean and squared deviations (no cancellation for large means)
        bmean = scalars.mean(0)
        bm2 = ((scalars - bmean) ** 2).sum(0)
        n = self._n + nb
        delta = bmean - self._mean
        self._mean += delta * (nb / n)
        self._m2 += bm2 + delta ** 2 * (self._n * nb / n)
        self._n = n
        self._v2 += (vectors ** 2).sum(dim=(0, 2))

    @torch.no_grad()
    def finalize(self) -> Normalizer:
        """Turn the accumulated sums into the statistics used by :meth:`encode`."""
        if self._n == 0:
            raise ValueError("Normalizer.finalize: no data were given to update()")
        mean = self._mean.clone()
        std = (self._m2 / self._n).clamp_min(0.0).sqrt()
        tiny = std <= 1e-12 * mean.abs().clamp_min(torch.finfo(torch.float64).tiny)
        std = torch.where(tiny, torch.where(mean != 0, mean.abs(), torch.ones_like(mean)), std)
        rms = (self._v2 / self._n).sqrt()
        rms = torch.where(rms > 0, rms, torch.ones_like(rms))
        dev = self.scalar_mean.device
        self.scalar_mean.copy_(mean.to(dev))
        self.scalar_std.copy_(std.to(dev))
        self.vector_scale.copy_(rms.to(dev))
        self.fitted.fill_(True)
        self._reset_sums()
        return self

    def fit(self, scalars: torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]],
            vectors: torch.Tensor | None = None) -> Normalizer:
        """Fit on one pair of tensors, or on an iterable of ``(scalars, vectors)`` pairs."""
        self._reset_sums()
        if vectors is not None:
            self.update(scalars, vectors)  # type: ignore[arg-type]
        else:
            for s, v in scalars:  # type: ignore[union-attr]
                self.update(s, v)
        return self.finalize()

    @torch.no_grad()
    def zero_mean(self) -> Normalizer:
        """Scale-only scalars: mean 0 and std the root mean square ``sqrt(std^2 + mean^2)``, so that
        :meth:`decode` maps 0 to 0 (for outputs that are changes since an initial state)."""
        rms = torch.sqrt(self.scalar_std ** 2 + self.scalar_mean ** 2)
        self.scalar_std.copy_(torch.where(rms > 0, rms, torch.ones_like(rms)))
        self.scalar_mean.zero_()
        return self

    def encode(self, scalars: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``((s - mean) / std, v / scale)`` in the dtype of the inputs."""
        self._check(scalars, vectors)
        s = (scalars - self.scalar_mean.to(scalars)) / self.scalar_std.to(scalars)
        v = vectors / self.vector_scale.to(vectors)[None, :, None]
        return s, v

    def decode(self, scalars: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of :meth:`encode`."""
        self._check(scalars, vectors)
        s = scalars * self.scalar_std.to(scalars) + self.scalar_mean.to(scalars)
        v = vectors * self.vector_scale.to(vectors)[None, :, None]
        return s, v

    def to_dict(self) -> dict[str, Any]:
        """Names and statistics as plain Python objects (for checkpoints and manifests)."""
        return {"scalar_names": list(self.scalar_names), "vector_names": list(self.vector_names),
                "scalar_mean": self.scalar_mean.cpu().tolist(), "scalar_std": self.scalar_std.cpu().tolist(),
                "vector_scale": self.vector_scale.cpu().tolist(), "fitted": bool(self.fitted)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        norm = cls(d["scalar_names"], d["vector_names"])
        with torch.no_grad():
            norm.scalar_mean.copy_(torch.tensor(d["scalar_mean"], dtype=torch.float64))
            norm.scalar_std.copy_(torch.tensor(d["scalar_std"], dtype=torch.float64))
            norm.vector_scale.copy_(torch.tensor(d["vector_scale"], dtype=torch.float64))
            norm.fitted.fill_(bool(d.get("fitted", True)))
        return norm

    def extra_repr(self) -> str:
        return f"scalars={list(self.scalar_names)}, vectors={list(self.vector_names)}"
