"""The EGCN as it was before the fast rewrite (issm_emulator/nn/egcn.py, per-edge invariants, (n, C, 2)
vectors), kept verbatim with its names prefixed ``Ref`` / ``_ref_``.

The current ``EquivariantConv`` / ``EGCN`` must compute the same function with the same parameters
(state_dict keys and shapes), to floating-point rounding: ``tests/test_nn_egcn.py`` checks that, and
``benchmarks/egcn_pass.py`` times the two against each other. One copy, imported by both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

_EPS = 1e-12


def _ref_safe_norm(v: Tensor, dim: int = -1) -> Tensor:
    """``sqrt(|v|^2 + eps) - sqrt(eps)``: a norm with a finite gradient at ``v = 0``."""
    return torch.sqrt((v * v).sum(dim) + _EPS) - _EPS ** 0.5


def _ref_mix(linear: nn.Linear, v: Tensor) -> Tensor:
    """Apply a bias-free linear map across vector channels: ``(n, C_in, 2) -> (n, C_out, 2)``.

    The map acts on the channel index only, so it commutes with rotations of the 2-vectors."""
    return linear(v.transpose(1, 2)).transpose(1, 2)


def _ref_mlp(sizes: Sequence[int], act: type[nn.Module] = nn.SiLU, last_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


def _ref_reset(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()


class RefEquivariantConv(MessagePassing):
    r"""One E(2)-equivariant message-passing layer with scalar and vector channels.

    For an edge from ``j`` (source) to ``i`` (target) with ``r_ij = x_i - x_j``, ``d_ij = |r_ij|`` and
    ``u_ij = r_ij / d_ij``, the invariants per vector channel ``c`` are

    .. math::
        I_{ij} = \big[d_{ij}/L,\ \langle V_i^c, V_j^c\rangle,\ |V_i^c|,\ |V_j^c|,
                 \langle V_i^c, u_{ij}\rangle,\ \langle V_j^c, u_{ij}\rangle,\ a_{ij}\big]

    (``L`` a fixed length scale, ``a_ij`` optional invariant edge attributes). Then

    .. math::
        m_{ij} &= \phi_e(h_i, h_j, I_{ij}) \\
        V_i'^{\,c} &= g_c(h_i)\,(W V_i)^c + \operatorname{mean}_j \big[\phi_u(m_{ij})_c\, u_{ij}
                     + \phi_v(m_{ij})_c\, (W' V_j)^c\big] \\
        h_i' &= h_i + \phi_h\big(h_i, \operatorname{mean}_j m_{ij}\big)

    ``W``, ``W'`` are bias-free channel-mixing matrices, ``g``, ``phi_u``, ``phi_v`` linear maps and
    ``phi_e``, ``phi_h`` two-layer SiLU MLPs. The residual in ``h'`` is used when ``scalar_in ==
    scalar_out``. With ``scalar_out = 0`` the layer only produces vectors (used as a decoder).
    Aggregation is the mean over incoming edges (robust to the vertex degree of unstructured meshes).

    Parameters
    ----------
    scalar_in, vector_in : input scalar channels ``F`` and vector channels ``C`` (``vector_in >= 1``)
    hidden : width of the message ``m_ij`` and of the MLPs
    scalar_out, vector_out : output channels
    edge_attr_dim : number of invariant edge attributes ``a_ij`` (0 for none)
    length_scale : ``L`` (m), the distance unit of the invariant ``d_ij / L``
    """

    def __init__(self, scalar_in: int, vector_in: int, hidden: int, scalar_out: int, vector_out: int,
                 edge_attr_dim: int = 0, *, length_scale: float = 1000.0):
        super().__init__(aggr="mean", flow="source_to_target", node_dim=0)
        if vector_in < 1 or vector_out < 1:
            raise ValueError("RefEquivariantConv needs vector_in >= 1 and vector_out >= 1")
        if not length_scale > 0:
            raise ValueError(f"length_scale must be positive, got {length_scale}")
        self.scalar_in, self.vector_in, self.hidden = scalar_in, vector_in, hidden
        self.scalar_out, self.vector_out, self.edge_attr_dim = scalar_out, vector_out, edge_attr_dim
        self.length_scale = float(length_scale)
        n_inv = 1 + 5 * vector_in + edge_attr_dim
        # phi_e's first layer acts on the concatenation [h_i, h_j, I_ij]; it is split into three blocks so
        # that the h parts are computed per vertex, not per edge (same function, far fewer operations)
        self.phi_e_i = nn.Linear(scalar_in, hidden)
        self.phi_e_j = nn.Linear(scalar_in, hidden, bias=False)
        self.phi_e_inv = nn.Linear(n_inv, hidden, bias=False)
        self.phi_e = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.phi_u = nn.Linear(hidden, vector_out)
        self.phi_v = nn.Linear(hidden, vector_out)
        self.mix_self = nn.Linear(vector_in, vector_out, bias=False)
        self.mix_neigh = nn.Linear(vector_in, vector_out, bias=False)
        self.gate = nn.Linear(scalar_in, vector_out)
        self.phi_h = _ref_mlp([scalar_in + hidden, hidden, scalar_out]) if scalar_out > 0 else None
        self.residual = scalar_out == scalar_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight (default PyTorch init; small direction weights as in E_GCL)."""
        super().reset_parameters()
        _ref_reset(self)
        nn.init.xavier_uniform_(self.phi_u.weight, gain=1e-2)
        nn.init.zeros_(self.phi_u.bias)

    def forward(self, h: Tensor, v: Tensor, edge_index: Tensor, edge_vec: Tensor,
                edge_attr: Tensor | None = None) -> tuple[Tensor | None, Tensor]:
        """Update ``h`` ``(n, scalar_in)`` and ``v`` ``(n, vector_in, 2)`` on the graph.

        ``edge_index`` (2, E) holds sources in row 0 and targets in row 1; ``edge_vec`` (E, 2) is
        ``x_target - x_source`` (``r_ij``).

        Returns ``(h', v')`` with shapes ``(n, scalar_out)`` (None when ``scalar_out == 0``) and
        ``(n, vector_out, 2)``.
        """
        if h.shape[-1] != self.scalar_in or v.shape[1:] != (self.vector_in, 2):
            raise ValueError(f"RefEquivariantConv expects h (n, {self.scalar_in}) and v (n, {self.vector_in}, 2)"
                             f", got {tuple(h.shape)} and {tuple(v.shape)}")
        if self.edge_attr_dim and (edge_attr is None or edge_attr.shape[-1] != self.edge_attr_dim):
            raise ValueError(f"RefEquivariantConv expects edge_attr (E, {self.edge_attr_dim})")
        n = h.shape[0]
        agg = self.propagate(edge_index, a=self.phi_e_i(h), b=self.phi_e_j(h), v=v,
                             w=_ref_mix(self.mix_neigh, v), edge_vec=edge_vec, edge_attr=edge_attr, size=(n, n))
        m_mean = agg[:, : self.hidden]
        v_agg = agg[:, self.hidden:].reshape(n, self.vector_out, 2)
        v_new = self.gate(h).unsqueeze(-1) * _ref_mix(self.mix_self, v) + v_agg
        if self.phi_h is None:
            return None, v_new
        dh = self.phi_h(torch.cat([h, m_mean], dim=-1))
        h_new = h + dh if self.residual else dh
        return h_new, v_new

    def edge_message(self, a_i: Tensor, b_j: Tensor, inv: Tensor) -> Tensor:
        """``m_ij = phi_e(h_i, h_j, I_ij)`` from ``a_i = phi_e_i(h_i)``, ``b_j = phi_e_j(h_j)``."""
        return self.phi_e(a_i + b_j + self.phi_e_inv(inv))

    def message(self, a_i: Tensor, b_j: Tensor, v_i: Tensor, v_j: Tensor, w_j: Tensor, edge_vec: Tensor,
                edge_attr: Tensor | None) -> Tensor:
        r = edge_vec
        d = torch.sqrt((r * r).sum(-1, keepdim=True)).clamp_min(torch.finfo(r.dtype).tiny)
        u = r / d  # (E, 2) unit edge direction, rotates with the plane
        inv = [d / self.length_scale,
               (v_i * v_j).sum(-1),  # (E, C) dot products
               _ref_safe_norm(v_i), _ref_safe_norm(v_j),
               (v_i * u.unsqueeze(1)).sum(-1), (v_j * u.unsqueeze(1)).sum(-1)]  # projections on the edge
        if self.edge_attr_dim:
            inv.append(edge_attr)
        m = self.edge_message(a_i, b_j, torch.cat(inv, dim=-1))
        vec = (self.phi_u(m).unsqueeze(-1) * u.unsqueeze(1)
               + self.phi_v(m).unsqueeze(-1) * w_j)  # (E, C_out, 2); w = W' V, mixed per vertex
        return torch.cat([m, vec.flatten(1)], dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(scalars {self.scalar_in}->{self.scalar_out}, vectors "
                f"{self.vector_in}->{self.vector_out}, hidden={self.hidden}, edge_attr={self.edge_attr_dim})")


def _ref_graph_parts(graph: Any) -> tuple[Tensor, Tensor]:
    """``(pos, edge_index)`` of a PyG ``Data``/``Batch`` (or any object with those attributes)."""
    pos = getattr(graph, "pos", None)
    edge_index = getattr(graph, "edge_index", None)
    if pos is None or edge_index is None:
        raise ValueError("the graph must have 'pos' (n, 2) and 'edge_index' (2, E); build it with "
                         "issm_emulator.graph.mesh_graph")
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"graph.pos must have shape (n, 2), got {tuple(pos.shape)}")
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"graph.edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    return pos, edge_index.long()


def _ref_edge_vectors(graph: Any, pos: Tensor, edge_index: Tensor) -> Tensor:
    """``x_target - x_source`` per edge: ``graph.edge_vec`` when present (computed in float64 by
    :func:`issm_emulator.graph.mesh_graph`), else from ``pos``."""
    vec = getattr(graph, "edge_vec", None)
    if vec is not None and vec.shape == (edge_index.shape[1], 2):
        return vec
    return pos[edge_index[1]] - pos[edge_index[0]]


def _ref_check_inputs(model: Any, pos: Tensor, scalars: Tensor, vectors: Tensor) -> None:
    """Shape checks shared by the three networks."""
    n = pos.shape[0]
    if scalars.ndim != 2 or scalars.shape != (n, model.n_scalars):
        raise ValueError(f"{type(model).__name__}: scalars must have shape ({n}, {model.n_scalars}), "
                         f"got {tuple(scalars.shape)}")
    if vectors.ndim != 3 or vectors.shape != (n, model.n_vectors, 2):
        raise ValueError(f"{type(model).__name__}: vectors must have shape ({n}, {model.n_vectors}, 2), "
                         f"got {tuple(vectors.shape)}")


class RefEGCN(nn.Module):
    r"""Equivariant emulator: encoder, ``n_layers`` :class:`RefEquivariantConv` layers, decoders.

    * Encoder: ``h^0 = MLP(s, |V^1|, ..., |V^{C_v}|)`` (invariant), ``V^0 = W_0 V`` (equivariant).
    * ``n_layers`` layers of width ``hidden`` with ``vector_hidden`` vector channels.
    * Velocity (equivariant): an :class:`RefEquivariantConv` with one vector output, i.e. learned invariant
      weights times edge directions plus gated vectors, plus a learned invariant gate on the *input*
      vector channels: :math:`u_i = \operatorname{mean}_j w(m_{ij}) u_{ij} + \ldots
      + \sum_c \gamma_c(h_i) V_i^{c,\mathrm{in}}`.
    * Scalars (invariant): ``MLP(h^L) + A s`` (a linear skip from the scalar inputs).

    Inputs and outputs are in normalised units (see :mod:`issm_emulator.nn.normalizer`).

    Parameters
    ----------
    n_scalars, n_vectors : input channels (``scalars (n, S)``, ``vectors (n, C_v, 2)``)
    scalar_outputs : names of the scalar outputs (e.g. ``('thickness',)``)
    hidden, n_layers : width and depth (the seed paper's 128 and 5)
    vector_hidden : vector channels inside the network
    length_scale : distance unit ``L`` (m) of the invariant edge length
    edge_attr_dim : invariant edge attributes passed to ``forward`` (0 for none)
    normalize : after every layer, normalise the hidden state: ``h <- LayerNorm(h)`` (parameter-free,
        invariant) and ``V <- V / sqrt(1 + mean_c |V^c|^2)`` (a division by an invariant, so equivariant).
        Without it the gated vector channels can grow geometrically with depth for inputs outside the
        training data and overflow along a long step-mode rollout; new trainings use it (``issm-emulator
        train``), checkpoints trained without it keep ``False`` in their config.
    """

    arch = "egcn"

    def __init__(self, n_scalars: int, n_vectors: int, scalar_outputs: Sequence[str] = (), *,
                 hidden: int = 128, n_layers: int = 5, vector_hidden: int = 16, length_scale: float = 1000.0,
                 edge_attr_dim: int = 0, normalize: bool = False):
        super().__init__()
        if n_vectors < 1:
            raise ValueError("RefEGCN needs at least one vector input channel (e.g. velocity)")
        self.n_scalars, self.n_vectors = int(n_scalars), int(n_vectors)
        self.scalar_outputs = tuple(scalar_outputs)
        self.config: dict[str, Any] = {
            "arch": self.arch, "n_scalars": self.n_scalars, "n_vectors": self.n_vectors,
            "scalar_outputs": list(self.scalar_outputs), "hidden": int(hidden), "n_layers": int(n_layers),
            "vector_hidden": int(vector_hidden), "length_scale": float(length_scale),
            "edge_attr_dim": int(edge_attr_dim), "normalize": bool(normalize)}
        self.edge_attr_dim = int(edge_attr_dim)
        self.normalize = bool(normalize)
        self.encoder = _ref_mlp([self.n_scalars + self.n_vectors, hidden, hidden])
        self.vector_encoder = nn.Linear(self.n_vectors, vector_hidden, bias=False)
        self.layers = nn.ModuleList(
            RefEquivariantConv(hidden, vector_hidden, hidden, hidden, vector_hidden, edge_attr_dim,
                            length_scale=length_scale) for _ in range(n_layers))
        self.velocity_decoder = RefEquivariantConv(hidden, vector_hidden, hidden, 0, 1, edge_attr_dim,
                                                length_scale=length_scale)
        self.input_gate = nn.Linear(hidden, self.n_vectors)
        n_out = len(self.scalar_outputs)
        self.scalar_decoder = _ref_mlp([hidden, hidden, n_out]) if n_out else None
        self.scalar_skip = nn.Linear(self.n_scalars, n_out, bias=False) if n_out and self.n_scalars else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight."""
        _ref_reset(self)
        for layer in self.layers:
            layer.reset_parameters()
        self.velocity_decoder.reset_parameters()
        nn.init.zeros_(self.input_gate.weight)  # start from "velocity = decoder output"
        nn.init.zeros_(self.input_gate.bias)
        if self.scalar_skip is not None:
            nn.init.zeros_(self.scalar_skip.weight)

    def forward(self, graph: Any, scalars: Tensor, vectors: Tensor,
                edge_attr: Tensor | None = None) -> dict[str, Tensor]:
        """Predict ``{'velocity': (n, 2), <scalar output>: (n,), ...}`` on ``graph`` (Data or Batch).

        ``graph`` supplies ``pos`` (n, 2) and ``edge_index`` (2, E); ``scalars`` is ``(n, S)``,
        ``vectors`` ``(n, C_v, 2)``; ``edge_attr`` (E, edge_attr_dim) must be invariant.
        """
        pos, edge_index = _ref_graph_parts(graph)
        _ref_check_inputs(self, pos, scalars, vectors)
        vec = _ref_edge_vectors(graph, pos, edge_index).to(scalars.dtype)
        h = self.encoder(torch.cat([scalars, _ref_safe_norm(vectors)], dim=-1))
        v = _ref_mix(self.vector_encoder, vectors)
        for layer in self.layers:
            h, v = layer(h, v, edge_index, vec, edge_attr)
            if self.normalize:
                h = nn.functional.layer_norm(h, h.shape[-1:])
                v = v / torch.sqrt(1.0 + (v * v).sum(-1).mean(-1))[:, None, None]
        _, vel = self.velocity_decoder(h, v, edge_index, vec, edge_attr)
        vel = vel[:, 0] + (self.input_gate(h).unsqueeze(-1) * vectors).sum(1)
        out = {"velocity": vel}
        if self.scalar_decoder is not None:
            s = self.scalar_decoder(h)
            if self.scalar_skip is not None:
                s = s + self.scalar_skip(scalars)
            for k, name in enumerate(self.scalar_outputs):
                out[name] = s[:, k]
        return out
