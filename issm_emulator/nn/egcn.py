"""E(2)-equivariant graph network for 2-D ice flow, after Satorras, Hoogeboom & Welling (2021), "E(n)
Equivariant Graph Neural Networks" (layer E_GCL).

Every vertex ``i`` carries invariant scalar channels ``h_i`` (``F`` numbers) and equivariant vector
channels ``V_i`` (``C`` 2-vectors). Coordinates ``x_i`` are fixed (the mesh does not move), so unlike E_GCL
they are not updated. Under a rotation or reflection ``Q`` and a translation ``t`` of the plane
(``x -> Q x + t``, ``V -> Q V``) every quantity the layer computes from the geometry is invariant or
rotates with ``Q``, so ``h' -> h'`` and ``V' -> Q V'``. Vectors enter the scalar channels **only** through
invariants; raw x/y components never do (the seed paper's code fed vx, vy as scalar features and so was not
equivariant).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

_EPS = 1e-12


def safe_norm(v: Tensor, dim: int = -1) -> Tensor:
    """``sqrt(|v|^2 + eps) - sqrt(eps)``: a norm with a finite gradient at ``v = 0``."""
    return torch.sqrt((v * v).sum(dim) + _EPS) - _EPS ** 0.5


def _mlp(sizes: Sequence[int], act: type[nn.Module] = nn.SiLU, last_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()


def _onednn_works() -> bool:
    """Whether ``torch.ops.mkldnn._linear_pointwise`` (oneDNN's fused linear, a private op that inductor
    emits for frozen CPU models) exists here and agrees with ``F.linear`` on a tiny example; checked once at
    import, so that a torch without it (or with another signature) takes the plain path."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        op = torch.ops.mkldnn._linear_pointwise
        g = torch.Generator().manual_seed(0)
        x, w, b, z = (torch.randn(s, generator=g) for s in ((5, 3), (4, 3), (4,), (5, 4)))
        ref = x @ w.t() + b
        ok = torch.allclose(op(x, w, b, "none", [], ""), ref, rtol=1e-5, atol=1e-6)
        ok &= torch.allclose(op(x, w, b, "swish", [], ""), nn.functional.silu(ref), rtol=1e-5, atol=1e-6)
        ok &= torch.allclose(op.binary(x, z, w, None, "add"), x @ w.t() + z, rtol=1e-5, atol=1e-6)
        return bool(ok)
    except (AttributeError, RuntimeError, TypeError, ValueError):  # a torch without this private op
        return False


_ONEDNN = _onednn_works()


def _autocast_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return compiler.is_compiling()
    return torch._dynamo.is_compiling()  # torch < 2.3


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, silu: bool = False,
            add: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias + add``, then SiLU when ``silu`` (``bias``, ``add`` optional; ``x``, ``add`` 2-D).

    For float32 inference on the CPU (no gradient needed, no autocast) this calls oneDNN's fused linear
    (the bias, ``add`` and SiLU applied in the same pass over the output), about twice as fast as the
    general matrix product here; otherwise (gradients, other devices or dtypes, autocast, or inside
    ``torch.compile``, which fuses by itself) ``F.linear``/``addmm``. Both compute the same function."""
    if (_ONEDNN and x.dtype == torch.float32 and x.device.type == "cpu" and x.shape[0] > 0
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                                  or (add is not None and add.requires_grad)))
            and not _autocast_cpu() and not _compiling()):
        op = torch.ops.mkldnn._linear_pointwise
        if add is None:
            return op(x.contiguous(), weight.contiguous(), bias, "swish" if silu else "none", [], "")
        y = op.binary(x.contiguous(), add.contiguous(), weight.contiguous(), bias, "add")
        return nn.functional.silu(y, inplace=True) if silu else y
    if add is None:
        y = nn.functional.linear(x, weight, bias)
    else:
        y = torch.addmm(add, x, weight.t())
        if bias is not None:
            y = y + bias
    return nn.functional.silu(y) if silu else y


def _sum_into(src: Tensor, index: Tensor, n: int) -> Tensor:
    """``out[index[k]] += src[k]`` over the rows of ``src`` (E, K) into ``out`` (n, K) of zeros.

    ``scatter_add_`` with a broadcast index (as PyG's sum): a sorted, vectorised kernel on the CPU, and
    kept as that kernel by torch.compile with several threads (``index_add_`` becomes atomic adds there)."""
    return src.new_zeros(n, src.shape[1]).scatter_add_(0, index.view(-1, 1).expand_as(src), src)


class EdgeGeometry(NamedTuple):
    """What a layer needs from the graph alone, computed once per forward pass and shared by every layer.

    ``src``, ``dst`` (E,): sources (row 0 of ``edge_index``, ``j``) and targets (row 1, ``i``); ``pairs``
    (E, 2): ``[2 dst, 2 src + 1]``, so that ``embedding_bag(pairs, t.view(2 n, K), mode='sum')`` of a table
    ``t`` (n, 2, K) is ``t[i, 0] + t[j, 1]`` per edge; ``d`` (E, 1): edge lengths ``d_ij``; ``u`` (E, 2):
    unit directions ``u_ij``; ``deg`` (n, 1): the number of incoming edges per vertex, at least 1 (the
    divisor of the mean: isolated vertices receive 0, as with PyG's mean aggregation).
    """

    src: Tensor
    dst: Tensor
    pairs: Tensor
    d: Tensor
    u: Tensor
    deg: Tensor
    mean_op: Tensor | None = None

    def mean(self, src: Tensor, n: int) -> Tensor:
        """Mean of the edge rows ``src`` (E, K) over each vertex's incoming edges, (n, K).

        With ``mean_op`` (a sparse CSR matrix, :func:`mean_operator`) and no gradient needed, one sparse
        matrix product (about twice as fast on a CPU as the scatter); otherwise ``scatter_add_`` and a division.
        Both compute the same sums (in another order)."""
        if self.mean_op is not None and not (torch.is_grad_enabled() and src.requires_grad) and not _compiling():
            return self.mean_op @ src
        return _sum_into(src, self.dst, n) / self.deg


def edge_geometry(edge_index: Tensor, edge_vec: Tensor, n: int, dtype: torch.dtype | None = None) -> EdgeGeometry:
    """:class:`EdgeGeometry` of a graph with ``n`` vertices from ``edge_index`` (2, E) and ``edge_vec`` (E, 2)
    ``= x_target - x_source``; ``deg`` has ``dtype`` (default: that of ``edge_vec``)."""
    r = edge_vec
    d = torch.sqrt((r * r).sum(-1, keepdim=True)).clamp_min(torch.finfo(r.dtype).tiny)
    src, dst = edge_index[0].contiguous(), edge_index[1].contiguous()
    deg = _sum_into(torch.ones(dst.shape[0], 1, dtype=dtype or r.dtype, device=r.device), dst, n).clamp_min(1)
    return EdgeGeometry(src, dst, torch.stack([2 * dst, 2 * src + 1], 1), d, r / d, deg)


def mean_operator(geom: EdgeGeometry, n: int) -> Tensor | None:
    """The ``(n, E)`` sparse CSR matrix of the mean over incoming edges (row ``i``: ``1 / deg_i`` at the edges
    into ``i``), for :meth:`EdgeGeometry.mean`; None where sparse CSR products are unavailable."""
    dst = geom.dst
    try:
        order = torch.argsort(dst, stable=True)
        crow = torch.zeros(n + 1, dtype=torch.int64, device=dst.device)
        crow[1:] = torch.cumsum(torch.bincount(dst, minlength=n), 0)
        values = (1.0 / geom.deg[:, 0])[dst[order]]
        with warnings.catch_warnings():  # torch calls its sparse CSR support "beta" at every construction
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            return torch.sparse_csr_tensor(crow, order, values, size=(n, dst.shape[0]), check_invariants=False)
    except (RuntimeError, NotImplementedError, TypeError):  # pragma: no cover - a build without sparse CSR
        return None


class EquivariantConv(MessagePassing):
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

    Implementation (the same function with fewer per-edge operations): inside the network, vector channels
    are stored as ``(n, 2, C)``, the x components of all channels in one contiguous block and the y
    components in the next (:meth:`forward_xy`). The first layer of ``phi_e`` is linear in
    ``[h_i, h_j, I_ij]``, so its parts acting on ``h_i, |V_i|`` and on ``h_j, |V_j|`` are evaluated once per
    vertex (``a``, ``b``) and only ``[d/L, <V_i, V_j>, <V_i, u>, <V_j, u>, a_ij]`` is formed per edge;
    ``W' V`` is mixed per vertex; ``phi_u`` and ``phi_v`` are applied as one matrix; the edge geometry is
    computed once per pass (:func:`edge_geometry`), or once per graph by a caller that passes it in
    (:meth:`EGCN.graph_geometry`, whose sparse mean operator then aggregates inference passes,
    :meth:`EdgeGeometry.mean`); float32 inference on the CPU runs the per-edge products
    through oneDNN's fused linear + bias (+ SiLU) kernel. :meth:`message` is the per-edge message in this form:
    ``propagate`` with it and the mean aggregation gives what :meth:`forward_xy` computes with explicit
    gathers and sums.

    Parameters
    ----------
    scalar_in, vector_in : input scalar channels ``F`` and vector channels ``C`` (``vector_in >= 1``)
    hidden : width of the message ``m_ij`` and of the MLPs
    scalar_out, vector_out : output channels
    edge_attr_dim : number of invariant edge attributes ``a_ij`` (0 for none)
    length_scale : ``L`` (m), the distance unit of the invariant ``d_ij / L``
    """

    # the keyword arguments of ``propagate`` (see :meth:`message`), declared for PyG's generated propagate
    propagate_type: ClassVar[dict[str, str]] = {"ab": "Tensor", "vt": "Tensor", "s": "Tensor", "u": "Tensor",
                                                "dl": "Tensor", "edge_attr": "Optional[Tensor]"}

    def __init__(self, scalar_in: int, vector_in: int, hidden: int, scalar_out: int, vector_out: int,
                 edge_attr_dim: int = 0, *, length_scale: float = 1000.0):
        super().__init__(aggr="mean", flow="source_to_target", node_dim=0)
        if vector_in < 1 or vector_out < 1:
            raise ValueError("EquivariantConv needs vector_in >= 1 and vector_out >= 1")
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
        self.phi_h = _mlp([scalar_in + hidden, hidden, scalar_out]) if scalar_out > 0 else None
        self.residual = scalar_out == scalar_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight (default PyTorch init; small direction weights as in E_GCL)."""
        super().reset_parameters()
        _reset(self)
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
            raise ValueError(f"EquivariantConv expects h (n, {self.scalar_in}) and v (n, {self.vector_in}, 2)"
                             f", got {tuple(h.shape)} and {tuple(v.shape)}")
        geom = edge_geometry(edge_index, edge_vec, h.shape[0], h.dtype)
        h_new, v_new = self.forward_xy(h, v.transpose(1, 2).contiguous(), geom, edge_attr)
        return h_new, v_new.transpose(1, 2)

    def forward_xy(self, h: Tensor, v: Tensor, geom: EdgeGeometry,
                   edge_attr: Tensor | None = None) -> tuple[Tensor | None, Tensor]:
        """:meth:`forward` with vectors stored as x and y blocks, ``v`` ``(n, 2, vector_in)`` (``v[:, 0]``
        the x components) -> ``v'`` ``(n, 2, vector_out)``, on the graph's :func:`edge_geometry`."""
        if h.shape[-1] != self.scalar_in or v.shape[1:] != (2, self.vector_in):
            raise ValueError(f"EquivariantConv expects h (n, {self.scalar_in}) and v (n, 2, {self.vector_in})"
                             f", got {tuple(h.shape)} and {tuple(v.shape)}")
        if self.edge_attr_dim and (edge_attr is None or edge_attr.shape[-1] != self.edge_attr_dim):
            raise ValueError(f"EquivariantConv expects edge_attr (E, {self.edge_attr_dim})")
        n, co = h.shape[0], self.vector_out
        ab, vt, s = self.vertex_tables(h, v)
        ab_ij = nn.functional.embedding_bag(geom.pairs, ab.view(2 * n, -1), mode="sum")  # a_i + b_j, one pass
        m, vec = self.edge_terms(ab_ij, vt.index_select(0, geom.dst), s.index_select(0, geom.src), geom.u,
                                 geom.d / self.length_scale, edge_attr)
        v_agg = geom.mean(vec, n)
        v_new = self.gate(h).unsqueeze(1) * (v @ self.mix_self.weight.t()) + v_agg.view(n, 2, co)
        if self.phi_h is None:
            return None, v_new
        m_mean = geom.mean(m, n)
        lin1, lin2 = self.phi_h[0], self.phi_h[2]
        dh = _linear(_linear(torch.cat([h, m_mean], dim=-1), lin1.weight, lin1.bias, silu=True),
                     lin2.weight, lin2.bias)
        h_new = h + dh if self.residual else dh
        return h_new, v_new

    def vertex_tables(self, h: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-vertex quantities that the edges gather, from ``h`` (n, F) and ``v`` (n, 2, C).

        ``ab`` (n, 2, hidden): ``ab[:, 0] = a = phi_e_i(h) + A_i |V|`` (the target's part of the first
        layer of ``phi_e``) and ``ab[:, 1] = b = phi_e_j(h) + A_j |V|`` (the source's), where ``A_i``, ``A_j``
        are the columns of ``phi_e_inv`` acting on ``|V_i^c|`` and ``|V_j^c|``; ``vt = [V_x, V_y]``
        (n, 2C); ``s = [V_x, V_y, (W' V)_x, (W' V)_y]`` (n, 2C + 2 vector_out)."""
        n, c, hd = h.shape[0], self.vector_in, self.hidden
        vx, vy = v[:, 0], v[:, 1]
        norm = torch.sqrt(vx * vx + vy * vy + _EPS) - _EPS ** 0.5  # safe_norm of every channel, (n, C)
        w_inv = self.phi_e_inv.weight
        w_ab = torch.cat([torch.cat([self.phi_e_i.weight, w_inv[:, 1 + c:1 + 2 * c]], 1),
                          torch.cat([self.phi_e_j.weight, w_inv[:, 1 + 2 * c:1 + 3 * c]], 1)])
        bias = torch.cat([self.phi_e_i.bias, self.phi_e_i.bias.new_zeros(hd)])
        ab = _linear(torch.cat([h, norm], dim=-1), w_ab, bias).view(n, 2, hd)
        vt = v.reshape(n, 2 * c)
        w = v @ self.mix_neigh.weight.t()  # (n, 2, C_out): W' V, mixed per vertex
        return ab, vt, torch.cat([vt, w.reshape(n, -1)], 1)

    def edge_terms(self, ab: Tensor, vt_i: Tensor, s_j: Tensor, u: Tensor, dl: Tensor,
                   edge_attr: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per edge: ``m_ij`` (E, hidden) and ``phi_u(m) u_ij + phi_v(m) (W' V_j)`` (E, 2 vector_out; x block
        then y block), from ``ab = a_i + b_j``, the gathered :meth:`vertex_tables` rows ``vt_i``, ``s_j``,
        ``u`` (E, 2) and ``dl = d / L`` (E, 1)."""
        c, co = self.vector_in, self.vector_out
        xi, yi = vt_i[:, :c], vt_i[:, c:]
        xj, yj, wx, wy = s_j[:, :c], s_j[:, c:2 * c], s_j[:, 2 * c:2 * c + co], s_j[:, 2 * c + co:]
        ux, uy = u[:, :1], u[:, 1:]
        inv = [dl, torch.addcmul(xi * xj, yi, yj),  # (E, C) dot products
               torch.addcmul(xi * ux, yi, uy), torch.addcmul(xj * ux, yj, uy)]  # projections on the edge
        if self.edge_attr_dim:
            inv.append(edge_attr)
        w_inv = self.phi_e_inv.weight  # its |V_i|, |V_j| columns are in a and b
        w_edge = torch.cat([w_inv[:, :1 + c], w_inv[:, 1 + 3 * c:]], 1)
        pre = _linear(torch.cat(inv, 1), w_edge, add=ab, silu=True)  # SiLU(first layer of phi_e)
        lin = self.phi_e[1]
        m = _linear(pre, lin.weight, lin.bias, silu=True)
        uv = _linear(m, torch.cat([self.phi_u.weight, self.phi_v.weight]),
                     torch.cat([self.phi_u.bias, self.phi_v.bias]))  # [phi_u(m), phi_v(m)]
        pu, pv = uv[:, :co], uv[:, co:]
        vec = torch.cat([torch.addcmul(pu * ux, pv, wx), torch.addcmul(pu * uy, pv, wy)], 1)
        return m, vec

    def message(self, ab_i: Tensor, ab_j: Tensor, vt_i: Tensor, s_j: Tensor, u: Tensor, dl: Tensor,
                edge_attr: Tensor | None) -> Tensor:
        """``[m_ij, phi_u(m_ij) u_ij + phi_v(m_ij) (W' V_j)]`` (E, hidden + 2 vector_out) for
        ``propagate(edge_index, ab=ab, vt=vt, s=s, u=u, dl=d / L, edge_attr=..., size=(n, n))`` with the
        :meth:`vertex_tables`; its mean is what :meth:`forward_xy` aggregates."""
        m, vec = self.edge_terms(ab_i[:, 0] + ab_j[:, 1], vt_i, s_j, u, dl, edge_attr)
        return torch.cat([m, vec], dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(scalars {self.scalar_in}->{self.scalar_out}, vectors "
                f"{self.vector_in}->{self.vector_out}, hidden={self.hidden}, edge_attr={self.edge_attr_dim})")


def graph_parts(graph: Any) -> tuple[Tensor, Tensor]:
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


def edge_vectors(graph: Any, pos: Tensor, edge_index: Tensor) -> Tensor:
    """``x_target - x_source`` per edge: ``graph.edge_vec`` when present (computed in float64 by
    :func:`issm_emulator.graph.mesh_graph`), else from ``pos``."""
    vec = getattr(graph, "edge_vec", None)
    if vec is not None and vec.shape == (edge_index.shape[1], 2):
        return vec
    return pos[edge_index[1]] - pos[edge_index[0]]


def check_inputs(model: Any, pos: Tensor, scalars: Tensor, vectors: Tensor) -> None:
    """Shape checks shared by the three networks."""
    n = pos.shape[0]
    if scalars.ndim != 2 or scalars.shape != (n, model.n_scalars):
        raise ValueError(f"{type(model).__name__}: scalars must have shape ({n}, {model.n_scalars}), "
                         f"got {tuple(scalars.shape)}")
    if vectors.ndim != 3 or vectors.shape != (n, model.n_vectors, 2):
        raise ValueError(f"{type(model).__name__}: vectors must have shape ({n}, {model.n_vectors}, 2), "
                         f"got {tuple(vectors.shape)}")


def stacked_inputs(model: Any, graph: Any, scalars: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
    """Checks of ``K`` stacked feature sets (``scalars (K, n, S)``, ``vectors (n, C_v, 2)`` shared by them) and
    their per-vertex inputs ``(pos (n, 2), x (K, n, S + 2 C_v))``: the GCN's and CNN's ``forward_stacked``."""
    pos, _ = graph_parts(graph)
    k, n = scalars.shape[0], pos.shape[0]
    if scalars.ndim != 3 or scalars.shape[1:] != (n, model.n_scalars):
        raise ValueError(f"{type(model).__name__}: stacked scalars must have shape (K, {n}, {model.n_scalars}), "
                         f"got {tuple(scalars.shape)}")
    check_inputs(model, pos, scalars[0], vectors)
    return pos, torch.cat([scalars, vectors.flatten(1).expand(k, -1, -1)], dim=-1)


class EGCN(nn.Module):
    r"""Equivariant emulator: encoder, ``n_layers`` :class:`EquivariantConv` layers, decoders.

    * Encoder: ``h^0 = MLP(s, |V^1|, ..., |V^{C_v}|)`` (invariant), ``V^0 = W_0 V`` (equivariant).
    * ``n_layers`` layers of width ``hidden`` with ``vector_hidden`` vector channels.
    * Velocity (equivariant): an :class:`EquivariantConv` with one vector output, i.e. learned invariant
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
            raise ValueError("EGCN needs at least one vector input channel (e.g. velocity)")
        self.n_scalars, self.n_vectors = int(n_scalars), int(n_vectors)
        self.scalar_outputs = tuple(scalar_outputs)
        self.config: dict[str, Any] = {
            "arch": self.arch, "n_scalars": self.n_scalars, "n_vectors": self.n_vectors,
            "scalar_outputs": list(self.scalar_outputs), "hidden": int(hidden), "n_layers": int(n_layers),
            "vector_hidden": int(vector_hidden), "length_scale": float(length_scale),
            "edge_attr_dim": int(edge_attr_dim), "normalize": bool(normalize)}
        self.edge_attr_dim = int(edge_attr_dim)
        self.normalize = bool(normalize)
        self.encoder = _mlp([self.n_scalars + self.n_vectors, hidden, hidden])
        self.vector_encoder = nn.Linear(self.n_vectors, vector_hidden, bias=False)
        self.layers = nn.ModuleList(
            EquivariantConv(hidden, vector_hidden, hidden, hidden, vector_hidden, edge_attr_dim,
                            length_scale=length_scale) for _ in range(n_layers))
        self.velocity_decoder = EquivariantConv(hidden, vector_hidden, hidden, 0, 1, edge_attr_dim,
                                                length_scale=length_scale)
        self.input_gate = nn.Linear(hidden, self.n_vectors)
        n_out = len(self.scalar_outputs)
        self.scalar_decoder = _mlp([hidden, hidden, n_out]) if n_out else None
        self.scalar_skip = nn.Linear(self.n_scalars, n_out, bias=False) if n_out and self.n_scalars else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight."""
        _reset(self)
        for layer in self.layers:
            layer.reset_parameters()
        self.velocity_decoder.reset_parameters()
        nn.init.zeros_(self.input_gate.weight)  # start from "velocity = decoder output"
        nn.init.zeros_(self.input_gate.bias)
        if self.scalar_skip is not None:
            nn.init.zeros_(self.scalar_skip.weight)

    @staticmethod
    def graph_geometry(graph: Any, dtype: torch.dtype, *, mean_op: bool = True) -> EdgeGeometry:
        """The :class:`EdgeGeometry` of ``graph`` (Data or Batch) that every layer shares, in ``dtype``.

        It depends on the graph alone: a caller that runs many passes on one graph (the emulator runtime)
        computes it once and passes it to :meth:`forward` as ``geometry``; it includes the sparse mean
        operator (:func:`mean_operator`) that inference passes aggregate with (``mean_op=False``: without it,
        as a pass computing its own geometry does)."""
        pos, edge_index = graph_parts(graph)
        vec = edge_vectors(graph, pos, edge_index).to(dtype)
        geom = edge_geometry(edge_index, vec, pos.shape[0])
        return geom._replace(mean_op=mean_operator(geom, pos.shape[0])) if mean_op else geom

    def _trunk_xy(self, graph: Any, scalars: Tensor, vectors: Tensor, edge_attr: Tensor | None,
                  geometry: EdgeGeometry | None = None) -> tuple[Tensor, Tensor, EdgeGeometry]:
        pos, _ = graph_parts(graph)
        check_inputs(self, pos, scalars, vectors)
        geom = geometry if geometry is not None else self.graph_geometry(graph, scalars.dtype, mean_op=False)
        h = self.encoder(torch.cat([scalars, safe_norm(vectors)], dim=-1))
        v = self.vector_encoder(vectors.transpose(1, 2))  # (n, 2, vector_hidden): x and y blocks
        for layer in self.layers:
            h, v = layer.forward_xy(h, v, geom, edge_attr)
            if self.normalize:
                h = nn.functional.layer_norm(h, h.shape[-1:])
                v = v / torch.sqrt(1.0 + (v * v).sum(1).mean(-1))[:, None, None]
        return h, v, geom

    def trunk(self, graph: Any, scalars: Tensor, vectors: Tensor,
              edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encoder and message-passing layers only: ``h`` ``(n, hidden)`` (invariant) and ``V``
        ``(n, vector_hidden, 2)`` (equivariant), before the output heads."""
        h, v, _ = self._trunk_xy(graph, scalars, vectors, edge_attr)
        return h, v.transpose(1, 2)

    def forward(self, graph: Any, scalars: Tensor, vectors: Tensor, edge_attr: Tensor | None = None, *,
                geometry: EdgeGeometry | None = None) -> dict[str, Tensor]:
        """Predict ``{'velocity': (n, 2), <scalar output>: (n,), ...}`` on ``graph`` (Data or Batch).

        ``graph`` supplies ``pos`` (n, 2) and ``edge_index`` (2, E); ``scalars`` is ``(n, S)``,
        ``vectors`` ``(n, C_v, 2)``; ``edge_attr`` (E, edge_attr_dim) must be invariant. ``geometry``:
        :meth:`graph_geometry` of ``graph`` when the caller has it already (computed here otherwise).
        """
        h, v, geom = self._trunk_xy(graph, scalars, vectors, edge_attr, geometry)
        _, vel = self.velocity_decoder.forward_xy(h, v, geom, edge_attr)
        vel = vel[:, :, 0] + (self.input_gate(h).unsqueeze(-1) * vectors).sum(1)
        out = {"velocity": vel}
        if self.scalar_decoder is not None:
            s = self.scalar_decoder(h)
            if self.scalar_skip is not None:
                s = s + self.scalar_skip(scalars)
            for k, name in enumerate(self.scalar_outputs):
                out[name] = s[:, k]
        return out
