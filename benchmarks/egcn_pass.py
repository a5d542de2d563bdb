"""Time one EGCN forward pass: the implementation before the fast rewrite (a verbatim copy, below) against
:class:`issm_emulator.nn.egcn.EGCN`, on a synthetic graph the size of the Pine Island 3 km mesh.

* Graph: a Delaunay triangulation of 1,814 points in a 70 km disk, 149 of them on the circle, so that it
  has exactly the 10,580 directed edges (both directions of 5,290 sides) of the Pine Island 3 km mesh.
* Models: ``--hidden`` widths (default 64, the published model, and 32) x ``--layers`` layers (4) with
  ``--vector-hidden`` vector channels (16), 13 scalar and 3 vector inputs, ``normalize=True``. The width-64
  model carries the published ``egcn-step-pig.pt`` weights when present (realistic activations: SiLU costs
  more on large arguments), the others their default initialisation. The old and new models share weights.
* Timing: ``torch.inference_mode()``, float32, ``torch.set_num_threads`` 1 and 2 (``--threads``), two
  warm-up passes, then ``--repeats`` passes of old and new interleaved (the median and the minimum wall
  time are reported; on a busy machine the minimum is the steadier number). ``--compile`` adds
  ``torch.compile`` rows.
* FLOPs: counted analytically from the layer sizes of the model's definition, ``2 * in * out`` per row
  of every per-edge and per-vertex ``Linear`` (the "nominal" work of the function, the same for both
  implementations; cross-checked with ``torch.utils.flop_counter.FlopCounterMode`` on the old forward),
  and the matrix-product FLOPs the new implementation actually runs (``FlopCounterMode`` on its plain
  PyTorch path).
* Floor: a 2048 x 2048 x 2048 float32 ``torch.matmul`` gives the machine's matrix-product rate (and,
  for information, the oneDNN kernel that the new pass uses); the "floor ratio" is
  ``time per pass / (nominal FLOPs / matmul rate)``, 1 for a pass that ran at matrix-product speed.

Usage::

    python benchmarks/egcn_pass.py [--hidden 64 32] [--layers 4] [--threads 1 2] [--repeats 9]
                                   [--compile] [--profile]

Prints markdown tables; asserts nothing (the equality of the two implementations is tested in
tests/test_nn_egcn.py; here the largest relative difference of the outputs is printed as a check).
"""

from __future__ import annotations

import argparse
import builtins
import platform
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import Delaunay
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from issm_emulator.nn.egcn import EGCN

PUBLISHED = ROOT / "issm_emulator" / "weights" / "egcn-step-pig.pt"
N_SCALARS, N_VECTORS = 13, 3  # the published model's inputs


# --- the implementation before the fast rewrite ------------------------------------------------------------
# Verbatim copy of issm_emulator/nn/egcn.py (safe_norm ... EGCN) before the per-vertex / x-y-block rewrite,
# with the names prefixed Ref / _ref_ (the same copy as in tests/test_nn_egcn.py; benchmarks do not import
# tests).

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


# --- the benchmark --------------------------------------------------------------------------------------

def pig_size_graph(n: int = 1814, n_hull: int = 149, radius: float = 70e3, seed: int = 0) -> Data:
    """Delaunay graph of ``n`` points in a disk, ``n_hull`` on its circle: ``2 (3 n - 3 - n_hull)`` directed
    edges (10,580 for the defaults, as the Pine Island 3 km mesh)."""
    rng = np.random.default_rng(seed)
    th = np.sort(rng.uniform(0.0, 2 * np.pi, n_hull))
    r = radius * np.sqrt(rng.uniform(0.0, 0.97 ** 2, n - n_hull))
    a = rng.uniform(0.0, 2 * np.pi, n - n_hull)
    p = np.concatenate([radius * np.stack([np.cos(th), np.sin(th)], 1), np.stack([r * np.cos(a), r * np.sin(a)], 1)])
    tri = Delaunay(p).simplices.astype(np.int64)
    e = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1), axis=0)
    ei = torch.from_numpy(np.concatenate([e, e[:, ::-1]]).T.copy())
    return Data(pos=torch.tensor(p, dtype=torch.float32), edge_index=ei, num_nodes=n)


def _lin(rows: int, n_in: int, n_out: int) -> int:
    return 2 * rows * n_in * n_out


def nominal_flops(model: EGCN, n: int, e: int) -> int:
    """``2 * in * out`` per row of every Linear of the model's definition (per-vertex and per-edge)."""
    cfg = model.config
    hd, c, s, cv, a = cfg["hidden"], cfg["vector_hidden"], cfg["n_scalars"], cfg["n_vectors"], cfg["edge_attr_dim"]
    n_out = len(cfg["scalar_outputs"])
    total = _lin(n, s + cv, hd) + _lin(n, hd, hd) + _lin(2 * n, cv, c) + _lin(n, hd, cv)  # encoders, input gate
    if n_out:
        total += _lin(n, hd, hd) + _lin(n, hd, n_out) + (_lin(n, s, n_out) if s else 0)
    for layer in [*model.layers, model.velocity_decoder]:
        f, ci, co, fo = layer.scalar_in, layer.vector_in, layer.vector_out, layer.scalar_out
        total += 2 * _lin(n, f, hd) + _lin(e, 1 + 5 * ci + a, hd) + _lin(e, hd, hd) + 2 * _lin(e, hd, co)
        total += 2 * _lin(2 * n, ci, co) + _lin(n, f, co)  # mix_self, mix_neigh (x and y rows), gate
        if fo:
            total += _lin(n, f + hd, hd) + _lin(n, hd, fo)
    return total


def counted_flops(model: nn.Module, args: tuple) -> int:
    """Matrix-product FLOPs that ``model(*args)`` runs, by ``FlopCounterMode`` (with gradients enabled, so
    that the new model takes its plain PyTorch path, whose products the counter knows)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(*args)
    return int(counter.get_total_flops())


def matmul_rate(threads: int, repeats: int = 7, size: int = 2048) -> tuple[float, float]:
    """GFLOP/s of a ``size``^3 float32 product: ``torch.matmul`` and oneDNN's linear (nan if unavailable)."""
    torch.set_num_threads(threads)
    x, y = torch.randn(size, size), torch.randn(size, size)
    rates = []
    runs = [lambda: x @ y]
    try:
        op = torch.ops.mkldnn._linear_pointwise
        op(x[:8], y, None, "none", [], "")
        runs.append(lambda: op(x, y, None, "none", [], ""))
    except (AttributeError, RuntimeError):
        pass
    for run in runs:
        run()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t0)
        rates.append(2 * size ** 3 / statistics.median(ts) / 1e9)
    return rates[0], rates[1] if len(rates) > 1 else float("nan")


def make_models(hidden: int, layers: int, vector_hidden: int) -> tuple[RefEGCN, EGCN, str]:
    kw = {"hidden": hidden, "n_layers": layers, "vector_hidden": vector_hidden, "normalize": True}
    torch.manual_seed(0)
    old = RefEGCN(N_SCALARS, N_VECTORS, (), **kw)
    new = EGCN(N_SCALARS, N_VECTORS, (), **kw)
    weights = "default init"
    if PUBLISHED.exists():
        ck = torch.load(PUBLISHED, weights_only=True)
        cfg = ck["model_config"]
        if cfg == new.config:
            old.load_state_dict(ck["state_dict"])
            weights = "published egcn-step-pig"
    new.load_state_dict(old.state_dict())  # strict: identical keys and shapes
    return old.eval(), new.eval(), weights


def time_passes(fns: dict[str, Any], args: tuple, repeats: int) -> dict[str, dict[str, float]]:
    """Median and minimum wall time (ms) and minor page faults per pass, the functions interleaved."""
    with torch.inference_mode():
        for f in fns.values():
            f(*args)
            f(*args)
        ts: dict[str, list[float]] = {k: [] for k in fns}
        faults = dict.fromkeys(fns, 0)
        for _ in range(repeats):
            for k, f in fns.items():
                r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                f(*args)
                ts[k].append(time.perf_counter() - t0)
                faults[k] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
    return {k: {"median": 1e3 * statistics.median(v), "min": 1e3 * min(v), "faults": faults[k] / repeats}
            for k, v in ts.items()}


def max_rel_diff(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1e-30))
               for k in b)


def profile_new(model: EGCN, args: tuple, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    with torch.inference_mode():
        for _ in range(3):
            model(*args)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                model(*args)
    print("\ntorch.profiler, new pass, 1 thread, 10 passes:\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 32], help="widths (default: 64 32)")
    ap.add_argument("--layers", type=int, default=4, help="EquivariantConv layers (default: 4)")
    ap.add_argument("--vector-hidden", type=int, default=16, help="vector channels (default: 16)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default: 1 2)")
    ap.add_argument("--repeats", type=int, default=9, help="timed passes per case, >= 7 (default: 9)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of the new pass")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "performance.md",
                    help="markdown file whose 'egcn-pass' section is rewritten")
    ap.add_argument("--no-write", action="store_true", help="print only")
    opts = ap.parse_args(argv)
    repeats = max(7, opts.repeats)
    lines: list[str] = []

    def print(*a: Any, end: str = "\n", **kw: Any) -> None:  # noqa: A001 - echo and keep for the report
        text = " ".join(str(x) for x in a) + end
        lines.append(text)
        builtins.print(*a, end=end, **kw)

    g = pig_size_graph()
    n, e = g.num_nodes, g.edge_index.shape[1]
    gen = torch.Generator().manual_seed(1)
    args = (g, torch.randn(n, N_SCALARS, generator=gen), torch.randn(n, N_VECTORS, 2, generator=gen))
    print(f"# EGCN forward pass: {n} vertices, {e} directed edges, float32, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} default threads\n")

    rates = {th: matmul_rate(th) for th in opts.threads}
    print("| threads | torch.matmul 2048^3 GFLOP/s | oneDNN linear 2048^3 GFLOP/s |\n|---:|---:|---:|")
    for th, (mm, dnn) in rates.items():
        print(f"| {th} | {mm:.1f} | {dnn:.1f} |")

    rows = []
    for hidden in opts.hidden:
        old, new, weights = make_models(hidden, opts.layers, opts.vector_hidden)
        flops = nominal_flops(old, n, e)
        counted_old, counted_new = counted_flops(old, args), counted_flops(new, args)
        with torch.inference_mode():
            diff = max_rel_diff(new(*args), old(*args))
        fns: dict[str, Any] = {"old": old, "new": new}
        if opts.compile:
            fns["old compiled"], fns["new compiled"] = torch.compile(old), torch.compile(new)
            with torch.inference_mode():
                for k in ("old compiled", "new compiled"):
                    t0 = time.perf_counter()
                    fns[k](*args)
                    print(f"\n{k} (width {hidden}): first call (compilation) {time.perf_counter() - t0:.1f} s",
                          end="")
            print()
        for th in opts.threads:
            torch.set_num_threads(th)
            res = time_passes(fns, args, repeats)
            mm = rates[th][0]
            for k, r in res.items():
                rows.append((hidden, th, k, r, flops, counted_new if k.startswith("new") else counted_old, mm,
                             res["old"]["median"] / r["median"]))
        print(f"\nwidth {hidden} x {opts.layers} layers, {opts.vector_hidden} vector channels ({weights}): "
              f"nominal {flops / 1e9:.3f} GFLOP/pass (FlopCounterMode on the old forward: {counted_old / 1e9:.3f}), "
              f"the new forward runs {counted_new / 1e9:.3f} GFLOP of matrix products; "
              f"max relative output difference new vs old {diff:.1e}")
        if opts.profile and hidden == opts.hidden[0]:
            profile_new(new, args)

    print("\n| width | threads | forward | ms/pass (median) | ms/pass (min) | speed-up (median) | GFLOP/pass "
          "nominal | GFLOP/pass run | GFLOP/s (nominal / median) | matmul GFLOP/s | floor ratio | page faults/pass |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for hidden, th, k, r, flops, counted, mm, speedup in rows:
        floor_ms = 1e3 * flops / (mm * 1e9)
        print(f"| {hidden} | {th} | {k} | {r['median']:.1f} | {r['min']:.1f} | {speedup:.2f} | {flops / 1e9:.3f} | "
              f"{counted / 1e9:.3f} | {flops / (r['median'] * 1e6):.1f} | {mm:.1f} | {r['median'] / floor_ms:.2f} | "
              f"{r['faults']:.0f} |")
    print("\nfloor ratio = (ms/pass) / (nominal FLOPs / torch.matmul rate); speed-up = old eager median / median")
    if not opts.no_write:
        from report import machine_line, write_section

        text = "".join(lines).replace("# EGCN forward pass:", "## EGCN forward pass (`benchmarks/egcn_pass.py`)\n\n"
                                      + machine_line() + " Synthetic Pine-Island-sized graph:", 1)
        write_section(opts.out, "egcn-pass", text, title="Performance")


if __name__ == "__main__":
    main()
