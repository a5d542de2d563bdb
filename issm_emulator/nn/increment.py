r"""Direct-mode GCN and CNN that predict the change since the initial state (time as an input).

The seed paper's direct mode gives the network the elapsed time as one more (normalised) input column and
reads the absolute state at that time from its outputs, so at ``t = 0`` it returns whatever the network
makes of it. The GCN and CNN have no trunk that could run once per initial state (unlike
:class:`~issm_emulator.nn.direct.EGCNDirect`), so here the base network ``N`` still runs once per output
time, on the initial state and the forcing with the ``time`` column replaced by ``\tau = t / T``
(``T`` = :attr:`~TimeInputIncrement.time_scale`, the longest training time; the wrapper's own
normalisation, so no input-normaliser statistics are needed at decode time), and its outputs
``(f_v, f_s) = N(s_0, \tau, V_0)`` are turned into increments:

.. math::
    \Delta s_i(\tau) &= \tau\, f_{s,i}(\tau) \\
    \Delta u_i(\tau) &= [\tau > 0]\, f_{v,i}(\tau)

``\Delta s`` are the scalar outputs (thickness, ...), ``\Delta u`` the velocity change. At ``t = 0`` both
are exactly zero, so the returned state is exactly the initial one whatever the weights; the velocity jump
at ``t > 0`` is learned freely, as in :class:`~issm_emulator.nn.direct.EGCNDirect` (ISSM's first output is
the stress balance of the initial geometry, not the observed initial velocity).

``K`` output times cost ``K`` passes of the base network, done as one stacked pass
(:meth:`~issm_emulator.nn.gcn.GCN.forward_stacked`: the ``K`` feature sets are a leading batch dimension
of the same graph), as many times per pass as :attr:`~TimeInputIncrement.stacked_times` gives for the device. Outputs are increments in normalised units,
scaled by an output normaliser fitted on increments with zero mean, as for ``EGCNDirect``.

The interface is that of ``EGCNDirect``: :meth:`~TimeInputIncrement.encode` (here it only keeps the graph
and the inputs: the :class:`TimeInputCode`), :meth:`~TimeInputIncrement.decode` at any times,
:meth:`~TimeInputIncrement.member_codes` (one code per graph of a batch) and ``forward(graph, scalars,
vectors, times)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from issm_emulator.nn.cnn import CNN
from issm_emulator.nn.direct import TimeDecoded
from issm_emulator.nn.gcn import GCN


@dataclass(frozen=True)
class TimeInputCode:
    """What :meth:`TimeInputIncrement.decode` needs: the graph (``Data`` or ``Batch``) and the normalised
    inputs ``scalars (n, S)`` (time column included, replaced at decode time) and ``vectors (n, C_v, 2)``."""

    graph: Any
    scalars: Tensor
    vectors: Tensor


class TimeInputIncrement(TimeDecoded, nn.Module):
    """A GCN or CNN (``base_class``) in direct mode predicting increments since the initial state (module
    docstring). Subclasses: :class:`GCNIncrement`, :class:`CNNIncrement`.

    Parameters (besides the base network's, passed on to it)
    ------------------------------------------------------
    time_column : index of the ``time`` feature in the scalar inputs (replaced by ``tau``)
    time_scale : ``T`` (s), the time that maps to ``tau = 1`` (the longest training time)
    """

    #: the time is an input of the base network: every output time costs one graph pass
    time_input = True
    arch: ClassVar[str]
    base_class: ClassVar[type[nn.Module]]
    #: output times per stacked pass of the base network, by device type, the cheapest per time measured by
    #: benchmarks/stacked_times.py (docs/performance.md): on the CPU a stacked GCN pass costs more per time
    #: than single ones (its per-edge gathers of K copies leave the cache), a CNN pass least at about 4.
    #: An instance's ``max_stacked_times`` overrides it.
    stacked_times: ClassVar[dict[str, int]] = {"cpu": 4, "cuda": 16}
    max_stacked_times: int | None = None

    def __init__(self, n_scalars: int, n_vectors: int, scalar_outputs: Sequence[str] = (), *,
                 time_column: int, time_scale: float, **kw: Any):
        super().__init__()
        if not 0 <= int(time_column) < int(n_scalars):
            raise ValueError(f"time_column must index the scalar inputs (0..{int(n_scalars) - 1}), got "
                             f"{time_column}")
        if not float(time_scale) > 0:
            raise ValueError(f"time_scale must be positive (s), got {time_scale}")
        self.base = self.base_class(n_scalars, n_vectors, scalar_outputs, **kw)
        self.n_scalars, self.n_vectors = self.base.n_scalars, self.base.n_vectors
        self.scalar_outputs = tuple(self.base.scalar_outputs)
        self.time_column = int(time_column)
        self.time_scale = float(time_scale)
        self.config: dict[str, Any] = {**self.base.config, "time_column": self.time_column,
                                       "time_scale": self.time_scale, "decoder": "increment"}

    def reset_parameters(self) -> None:
        """Re-initialise every weight (the base network's)."""
        self.base.reset_parameters()

    def encode(self, graph: Any, scalars: Tensor, vectors: Tensor) -> TimeInputCode:
        """The code of an initial state: the graph and the normalised inputs (no trunk to run here)."""
        if scalars.ndim != 2 or scalars.shape[1] != self.n_scalars:
            raise ValueError(f"{type(self).__name__}: scalars must have shape (n, {self.n_scalars}), got "
                             f"{tuple(scalars.shape)}")
        return TimeInputCode(graph, scalars, vectors)

    @staticmethod
    def member_codes(code: TimeInputCode, n_members: int) -> list[TimeInputCode]:
        """One code per graph of the batch ``code.graph`` (``n_members`` graphs, in order)."""
        g = code.graph
        if n_members == 1 and getattr(g, "ptr", None) is None:
            return [code]
        ptr = g.ptr.tolist()
        if len(ptr) != n_members + 1:
            raise ValueError(f"the code holds {len(ptr) - 1} graphs, not {n_members}")
        return [TimeInputCode(g.get_example(j), code.scalars[ptr[j]:ptr[j + 1]], code.vectors[ptr[j]:ptr[j + 1]])
                for j in range(n_members)]

    def times_per_pass(self, device: Any) -> int:
        """Output times per stacked pass of the base network on ``device`` (:attr:`stacked_times`, or the
        instance's ``max_stacked_times``)."""
        kind = torch.device(device).type
        return int(self.max_stacked_times or self.stacked_times.get(kind, self.stacked_times["cpu"]))

    def decode(self, code: TimeInputCode, times: Tensor) -> dict[str, Tensor]:
        """Increments at elapsed ``times`` (s since the initial state): ``(K,)`` for every vertex, or
        ``(n, K)`` per vertex (a batch of graphs with their own times).

        Returns ``{'velocity': (n, K, 2), <scalar output>: (n, K)}`` in normalised units."""
        s0 = code.scalars
        tau = times.to(s0) / self.time_scale
        n = s0.shape[0]
        tau = tau.unsqueeze(0).expand(n, -1) if tau.ndim == 1 else tau                       # (n, K)
        if tau.ndim != 2 or tau.shape[0] != n:
            raise ValueError(f"times must have shape (K,) or ({n}, K), got {tuple(times.shape)}")
        parts: list[dict[str, Tensor]] = []
        step = self.times_per_pass(s0.device)
        for k0 in range(0, tau.shape[1], step):
            tk = tau[:, k0:k0 + step].transpose(0, 1)                                         # (k, n)
            s = s0.unsqueeze(0).repeat(tk.shape[0], 1, 1)
            s[..., self.time_column] = tk
            raw = self.base.forward_stacked(code.graph, s, code.vectors)
            out = {"velocity": raw["velocity"] * (tk > 0).to(s0).unsqueeze(-1)}
            for name in self.scalar_outputs:
                out[name] = raw[name] * tk
            parts.append(out)
        return {key: torch.cat([p[key] for p in parts], 0).movedim(0, 1) for key in parts[0]} if parts else \
            {"velocity": s0.new_zeros((n, 0, 2)), **{name: s0.new_zeros((n, 0)) for name in self.scalar_outputs}}


class GCNIncrement(TimeInputIncrement):
    """:class:`~issm_emulator.nn.gcn.GCN` predicting increments since the initial state (module docstring)."""

    arch = "gcn"
    base_class = GCN
    stacked_times: ClassVar[dict[str, int]] = {"cpu": 1, "cuda": 16}


class CNNIncrement(TimeInputIncrement):
    """:class:`~issm_emulator.nn.cnn.CNN` predicting increments since the initial state (module docstring)."""

    arch = "cnn"
    base_class = CNN
