"""GCN baseline (the seed paper's best-documented model): graph convolutions on the mesh graph.

The vector inputs enter as plain features (their x and y components), so this network is **not**
rotation-equivariant, by design: it is the reference the equivariant :class:`~issm_emulator.nn.egcn.EGCN`
is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from issm_emulator.nn.egcn import check_inputs, edge_vectors, graph_parts, stacked_inputs


class GCN(nn.Module):
    r"""``n_layers`` :class:`torch_geometric.nn.GCNConv` layers of width ``hidden`` with LeakyReLU.

    Node features are ``[s, V_x, V_y]`` (``S + 2 C_v`` numbers); edge weights ``w_ij = exp(-d_ij / L)``
    (the seed used ``L = 1000`` m) when ``distance_weights``. A linear head maps the last layer to
    ``[u_x, u_y, scalar outputs]`` and a linear skip adds a map of the raw input features.

    Parameters
    ----------
    n_scalars, n_vectors : input channels (``scalars (n, S)``, ``vectors (n, C_v, 2)``)
    scalar_outputs : names of the scalar outputs besides the velocity
    hidden, n_layers : width and depth (128 and 5 as in the seed)
    length_scale : ``L`` (m) of the edge weights
    distance_weights : use ``exp(-d/L)`` edge weights (else all weights 1)
    """

    arch = "gcn"

    def __init__(self, n_scalars: int, n_vectors: int, scalar_outputs: Sequence[str] = (), *,
                 hidden: int = 128, n_layers: int = 5, length_scale: float = 1000.0,
                 distance_weights: bool = True, negative_slope: float = 0.01):
        super().__init__()
        self.n_scalars, self.n_vectors = int(n_scalars), int(n_vectors)
        self.scalar_outputs = tuple(scalar_outputs)
        if not length_scale > 0:
            raise ValueError(f"length_scale must be positive, got {length_scale}")
        self.length_scale = float(length_scale)
        self.distance_weights = bool(distance_weights)
        self.config: dict[str, Any] = {
            "arch": self.arch, "n_scalars": self.n_scalars, "n_vectors": self.n_vectors,
            "scalar_outputs": list(self.scalar_outputs), "hidden": int(hidden), "n_layers": int(n_layers),
            "length_scale": self.length_scale, "distance_weights": self.distance_weights,
            "negative_slope": float(negative_slope)}
        n_in = self.n_scalars + 2 * self.n_vectors
        n_out = 2 + len(self.scalar_outputs)
        sizes = [n_in] + [hidden] * n_layers
        self.convs = nn.ModuleList(GCNConv(sizes[k], sizes[k + 1]) for k in range(n_layers))
        self.act = nn.LeakyReLU(negative_slope)
        self.head = nn.Linear(hidden, n_out)
        self.skip = nn.Linear(n_in, n_out, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight."""
        for conv in self.convs:
            conv.reset_parameters()
        self.head.reset_parameters()
        nn.init.zeros_(self.skip.weight)

    def forward(self, graph: Any, scalars: Tensor, vectors: Tensor,
                edge_attr: Tensor | None = None) -> dict[str, Tensor]:
        """Predict ``{'velocity': (n, 2), <scalar output>: (n,), ...}``; ``edge_attr`` is ignored."""
        pos, _ = graph_parts(graph)
        check_inputs(self, pos, scalars, vectors)
        out = self.forward_stacked(graph, scalars.unsqueeze(0), vectors)
        return {k: y[0] for k, y in out.items()}

    def forward_stacked(self, graph: Any, scalars: Tensor, vectors: Tensor) -> dict[str, Tensor]:
        """``K`` passes on the same graph in one: ``scalars (K, n, S)``, ``vectors (n, C_v, 2)`` (shared by
        the ``K`` passes) -> ``{'velocity': (K, n, 2), <scalar output>: (K, n)}``. The ``K`` feature sets go
        through one block-diagonal graph of ``K`` copies (node ``j n + i`` is node ``i`` of copy ``j``), so
        the convolutions keep their two-dimensional (nodes x channels) fast path."""
        pos, x_in = stacked_inputs(self, graph, scalars, vectors)
        _, edge_index = graph_parts(graph)
        k, n = scalars.shape[0], pos.shape[0]
        x_in = x_in.reshape(k * n, -1)                                                     # (K n, F)
        weight = None
        if self.distance_weights:
            d = edge_vectors(graph, pos, edge_index).to(scalars.dtype).norm(dim=-1)
            weight = torch.exp(-d / self.length_scale)
        if k > 1:
            shift = torch.arange(k, device=edge_index.device, dtype=edge_index.dtype) * n
            edge_index = (edge_index.unsqueeze(1) + shift.view(1, k, 1)).reshape(2, -1)
            weight = None if weight is None else weight.repeat(k)
        x = x_in
        for conv in self.convs:
            x = self.act(conv(x, edge_index, weight))
        y = (self.head(x) + self.skip(x_in)).reshape(k, n, -1)
        out = {"velocity": y[..., :2]}
        for j, name in enumerate(self.scalar_outputs):
            out[name] = y[..., 2 + j]
        return out
