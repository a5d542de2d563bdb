r"""Direct-mode EGCN with a time decoder: one graph pass per initial state, any number of output times.

The seed paper's direct mode feeds the elapsed time ``t`` to the network as one more input, so every output
time costs a whole graph pass and the prediction at ``t = 0`` is whatever the network makes of it. Here the
equivariant trunk of :class:`~issm_emulator.nn.egcn.EGCN` runs **once** on the initial state and the forcing
(the ``time`` input column is not given to it) and a per-vertex decoder maps its hidden state
``h_i`` (invariant) and ``V_i`` (equivariant vector channels) to the **change since the initial state** at
any elapsed time ``t``, with ``\tau = t / T`` (``T`` = :attr:`time_scale`, the longest training time):

.. math::
    z_i(\tau) &= \mathrm{SiLU}\big(A h_i + B\,\psi(\tau) + b\big) \\
    \Delta s_i(\tau) &= \tau\, C z_i(\tau) \\
    \Delta u_i(\tau) &= [\tau > 0] \sum_c \big(D z_i(\tau)\big)_c\, V_i^c

with ``\psi(\tau) = [\tau, \tau^2, \sqrt{\tau}, \sin(k\pi\tau), \cos(k\pi\tau)]_{k=1..3}``. ``\Delta s`` are
the invariant scalar outputs (thickness, ...), ``\Delta u`` the velocity change, an invariant-weighted sum
of equivariant vectors, so the decoder keeps E(2) equivariance. The factor ``\tau`` makes the thickness at
``t = 0`` exactly the initial one, and the thickness error can only grow from zero. The velocity is not
continuous at ``t = 0``: ISSM's first output holds the stress balance of the initial geometry, which can
differ from the initial (observed) velocity by hundreds of m/yr (Pine Island), so its change is learned freely
for ``t > 0`` and is exactly zero at ``t = 0`` (the indicator ``[\tau > 0]``). ``A h_i`` is computed once per vertex and
``B \psi(\tau)`` once per time, so ``K`` output times cost one trunk pass plus ``K`` small per-vertex maps.

Outputs are increments in normalised units; the runtime and the trainer scale them with an output
normaliser fitted on increments with zero mean (:meth:`~issm_emulator.nn.normalizer.Normalizer.fit` then
``scale_only``) and add the initial state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from issm_emulator.nn.egcn import EGCN

#: number of time features psi(tau)
N_TIME_FEATURES = 9


def time_features(tau: Tensor) -> Tensor:
    """``psi(tau)`` of the module docstring: ``(...,) -> (..., 9)``; ``tau >= 0``."""
    k = torch.arange(1, 4, dtype=tau.dtype, device=tau.device)
    t = tau.unsqueeze(-1)
    return torch.cat([t, t * t, torch.sqrt(t.clamp_min(0.0)), torch.sin(math.pi * k * t),
                      torch.cos(math.pi * k * t)], dim=-1)


class TimeDecoded:
    """The interface of the time-decoded direct-mode networks (:class:`EGCNDirect`,
    :class:`~issm_emulator.nn.increment.TimeInputIncrement`): ``encode(graph, scalars, vectors)`` gives the
    code of an initial state, ``member_codes(code, n)`` splits a batch's code per graph, ``decode(code,
    times)`` gives the increments at any elapsed times, and ``forward`` chains them."""

    decodes_time = True
    time_scale: float

    def forward(self, graph: Any, scalars: Tensor, vectors: Tensor,
                times: Tensor | None = None) -> dict[str, Tensor]:
        """``decode(encode(graph, scalars, vectors), times)``; ``times`` defaults to ``[time_scale]``."""
        code = self.encode(graph, scalars, vectors)  # type: ignore[attr-defined]
        if times is None:
            times = scalars.new_full((1,), self.time_scale)
        return self.decode(code, times)  # type: ignore[attr-defined]


class EGCNDirect(TimeDecoded, EGCN):
    """:class:`EGCN` trunk + increment decoder (module docstring). Direct mode only.

    Parameters (besides :class:`EGCN`'s)
    ------------------------------------
    time_column : index of the ``time`` feature in the scalar inputs (dropped from the trunk's inputs)
    time_scale : ``T`` (s), the time that maps to ``tau = 1`` (the longest training time)
    decoder_hidden : width of ``z``
    """

    def __init__(self, n_scalars: int, n_vectors: int, scalar_outputs: Sequence[str] = (), *,
                 time_column: int, time_scale: float, decoder_hidden: int = 32, **kw: Any):
        if not 0 <= int(time_column) < int(n_scalars):
            raise ValueError(f"time_column must index the scalar inputs (0..{int(n_scalars) - 1}), got "
                             f"{time_column}")
        if not float(time_scale) > 0:
            raise ValueError(f"time_scale must be positive (s), got {time_scale}")
        super().__init__(int(n_scalars) - 1, n_vectors, scalar_outputs, **kw)  # the trunk: no time column
        self.n_inputs = int(n_scalars)  # scalar columns callers pass (time included)
        self.time_column = int(time_column)
        self.time_scale = float(time_scale)
        hidden = self.config["hidden"]
        vh = self.config["vector_hidden"]
        self.config.update(n_scalars=self.n_inputs, time_column=self.time_column, time_scale=self.time_scale,
                           decoder_hidden=int(decoder_hidden), decoder="increment")
        self.dec_h = nn.Linear(hidden, decoder_hidden)
        self.dec_t = nn.Linear(N_TIME_FEATURES, decoder_hidden, bias=False)
        self.dec_s = nn.Linear(decoder_hidden, len(self.scalar_outputs)) if self.scalar_outputs else None
        self.dec_v = nn.Linear(decoder_hidden, vh + self.n_vectors)
        # the trunk's own output heads are not used in direct mode
        self.velocity_decoder = None
        self.input_gate = None
        self.scalar_decoder = None
        self.scalar_skip = None

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()

    def _trunk_scalars(self, scalars: Tensor) -> Tensor:
        keep = [j for j in range(self.n_inputs) if j != self.time_column]
        return scalars[:, keep]

    def encode(self, graph: Any, scalars: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
        """One trunk pass: ``(A h + b (n, D), V_all (n, C + C_in, 2))`` for :meth:`decode`.

        ``scalars`` ``(n, S)`` include the (ignored) time column; ``vectors`` ``(n, C_in, 2)``."""
        if scalars.ndim != 2 or scalars.shape[1] != self.n_inputs:
            raise ValueError(f"EGCNDirect: scalars must have shape (n, {self.n_inputs}), got "
                             f"{tuple(scalars.shape)}")
        h, v = self.trunk(graph, self._trunk_scalars(scalars), vectors)
        return self.dec_h(h), torch.cat([v, vectors], dim=1)

    @staticmethod
    def member_codes(code: tuple[Tensor, Tensor], n_members: int) -> list[tuple[Tensor, Tensor]]:
        """The code of each of ``n_members`` equal-size graphs of a batch (row views, no copy)."""
        a, vall = code
        n = a.shape[0] // n_members
        if n * n_members != a.shape[0]:
            raise ValueError(f"a code of {a.shape[0]} vertices does not split into {n_members} equal graphs")
        return [(a[j * n:(j + 1) * n], vall[j * n:(j + 1) * n]) for j in range(n_members)]

    def decode(self, code: tuple[Tensor, Tensor], times: Tensor) -> dict[str, Tensor]:
        """Increments at elapsed ``times`` (s since the initial state): ``(K,)`` for every vertex, or
        ``(n, K)`` per vertex (a batch of graphs with their own times).

        Returns ``{'velocity': (n, K, 2), <scalar output>: (n, K)}`` in normalised units."""
        a, vall = code
        tau = times.to(a) / self.time_scale
        if tau.ndim == 1:  # the same times everywhere: the time features once per time, not per vertex
            t_feat = self.dec_t(time_features(tau)).unsqueeze(0)                          # (1, K, D)
            tau = tau.unsqueeze(0).expand(a.shape[0], -1)
        else:
            t_feat = self.dec_t(time_features(tau))                                       # (n, K, D)
        z = torch.nn.functional.silu(a.unsqueeze(1) + t_feat)                             # (n, K, D)
        w = self.dec_v(z)                                                                # (n, K, C)
        vel = torch.einsum("nkc,ncd->nkd", w, vall) * (tau > 0).to(a).unsqueeze(-1)
        out = {"velocity": vel}
        if self.dec_s is not None:
            s = self.dec_s(z) * tau.unsqueeze(-1)
            for j, name in enumerate(self.scalar_outputs):
                out[name] = s[..., j]
        return out
