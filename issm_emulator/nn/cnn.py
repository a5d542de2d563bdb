"""CNN baseline (the seed paper's "FCN"): convolutions on a regular grid.

Mesh fields are interpolated to the centres of a regular grid (P1, i.e. barycentric, interpolation), pass
through ``n_layers`` 3x3 convolutions and come back to the vertices by bilinear interpolation. Both maps
are sparse matrices built once per mesh (:func:`grid_operator`) and cached by the network.

Grid centres outside the mesh but within ``band`` cells of it get the value of the least-squares plane
through the nearest vertices (so linear fields are reproduced exactly up to the boundary); farther centres
get zero.
A mask channel (1 inside the mesh, 0 outside) is appended to the grid input.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from matplotlib.tri import Triangulation
from scipy.spatial import cKDTree
from torch import Tensor, nn

from issm_emulator.nn.egcn import check_inputs, graph_parts, stacked_inputs


@dataclass(eq=False)
class GridOperator:
    """Sparse mesh <-> grid interpolation for one mesh.

    Grid cell ``(iy, ix)`` has centre ``(x0 + (ix + 1/2) h, y0 + (iy + 1/2) h)`` and flat index
    ``iy * nx + ix``.

    Attributes
    ----------
    nx, ny, cell_size, x0, y0 : the grid
    to_grid : (nx*ny, nv) CSR, P1 interpolation of vertex values at the cell centres
    to_mesh : (nv, nx*ny) CSR, bilinear interpolation of cell-centre values at the vertices
    inside : (ny, nx) bool, cell centre inside the mesh
    """

    nx: int
    ny: int
    cell_size: float
    x0: float
    y0: float
    to_grid: sp.csr_matrix
    to_mesh: sp.csr_matrix
    inside: np.ndarray
    _torch: dict = field(default_factory=dict, repr=False)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(ny, nx) x and y of the cell centres."""
        gx = self.x0 + (np.arange(self.nx) + 0.5) * self.cell_size
        gy = self.y0 + (np.arange(self.ny) + 0.5) * self.cell_size
        return np.meshgrid(gx, gy)

    def tensors(self, dtype: torch.dtype, device: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(to_grid, to_mesh, mask)`` as torch sparse COO matrices and an (ny, nx) mask, cached."""
        key = (dtype, str(device))
        if key not in self._torch:
            def conv(m: sp.csr_matrix) -> Tensor:
                c = m.tocoo()
                idx = torch.from_numpy(np.stack([c.row, c.col]).astype(np.int64))
                return torch.sparse_coo_tensor(idx, torch.from_numpy(c.data), c.shape, check_invariants=True).to(
                    dtype=dtype, device=device).coalesce()
            mask = torch.from_numpy(self.inside.astype(np.float64)).to(dtype=dtype, device=device)
            self._torch[key] = (conv(self.to_grid), conv(self.to_mesh), mask)
        return self._torch[key]


def _barycentric(x: np.ndarray, y: np.ndarray, tri: np.ndarray, px: np.ndarray, py: np.ndarray,
                 which: np.ndarray) -> np.ndarray:
    """(npts, 3) barycentric coordinates of points ``(px, py)`` in triangles ``tri[which]``."""
    t = tri[which]
    x1, x2, x3 = x[t[:, 0]], x[t[:, 1]], x[t[:, 2]]
    y1, y2, y3 = y[t[:, 0]], y[t[:, 1]], y[t[:, 2]]
    det = (x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1)
    l2 = ((px - x1) * (y3 - y1) - (x3 - x1) * (py - y1)) / det
    l3 = ((x2 - x1) * (py - y1) - (px - x1) * (y2 - y1)) / det
    return np.stack([1.0 - l2 - l3, l2, l3], axis=1)


def mean_edge_length(x: np.ndarray, y: np.ndarray, triangles: np.ndarray) -> float:
    """Mean length of the distinct triangle sides."""
    t = np.asarray(triangles, np.int64)
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    e = np.unique(e, axis=0)
    return float(np.hypot(x[e[:, 1]] - x[e[:, 0]], y[e[:, 1]] - y[e[:, 0]]).mean())


def grid_operator(x: Any, y: Any, triangles: Any = None, *, cell_size: float | None = None,
                  band: float = 2.0, n_fit: int = 6, max_cells: int = 4_000_000,
                  max_gain: float = 8.0) -> GridOperator:
    """Build the interpolation matrices between a triangle mesh and a regular grid.

    Parameters
    ----------
    x, y : (nv,) vertex coordinates (m)
    triangles : (ne, 3) 0-based triangles; None triangulates the vertices (Delaunay, convex hull)
    cell_size : grid spacing ``h`` (m); default the mean edge length of the mesh
    band : centres outside the mesh within ``band * h`` of a vertex get the value at the centre of the
        least-squares plane through their ``n_fit`` nearest vertices (linear extrapolation); farther ones 0
    n_fit : number of vertices of that plane fit
    max_gain : largest sum of absolute weights of such a fit; beyond it (nearly collinear neighbours) the
        centre gets inverse-distance weights of the same vertices instead (no amplification)
    max_cells : refuse grids with more cells (raise :class:`ValueError` naming a coarser spacing)
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    nv = x.shape[0]
    tri_obj = Triangulation(x, y) if triangles is None else Triangulation(x, y, np.asarray(triangles, np.int64))
    tri = np.asarray(tri_obj.triangles, np.int64)
    h = mean_edge_length(x, y, tri) if cell_size is None else float(cell_size)
    if not h > 0:
        raise ValueError(f"cell_size must be positive, got {h}")
    pad = 2
    x0, y0 = x.min() - pad * h, y.min() - pad * h
    nx = int(np.ceil((x.max() - x.min()) / h)) + 2 * pad
    ny = int(np.ceil((y.max() - y.min()) / h)) + 2 * pad
    if nx * ny > max_cells:
        suggest = h * np.sqrt(nx * ny / max_cells) * 1.05
        raise ValueError(f"a {h:.4g} m grid would have {nx} x {ny} cells (> max_cells={max_cells}); "
                         f"use cell_size >= {suggest:.4g} m")
    gx, gy = np.meshgrid(x0 + (np.arange(nx) + 0.5) * h, y0 + (np.arange(ny) + 0.5) * h)
    px, py = gx.ravel(), gy.ravel()

    which = np.asarray(tri_obj.get_trifinder()(px, py), np.int64)
    inside = which >= 0
    rows, cols, vals = [], [], []
    k_in = np.flatnonzero(inside)
    lam = _barycentric(x, y, tri, px[k_in], py[k_in], which[k_in])
    rows.append(np.repeat(k_in, 3)), cols.append(tri[which[k_in]].ravel()), vals.append(lam.ravel())

    k_out = np.flatnonzero(~inside)
    if k_out.size:
        tree = cKDTree(np.stack([x, y], 1))
        dist, _ = tree.query(np.stack([px[k_out], py[k_out]], 1))
        k_out = k_out[dist <= band * h]
        nk = min(n_fit, nv)
        _, nbr = tree.query(np.stack([px[k_out], py[k_out]], 1), k=nk)
        nbr = np.asarray(nbr, np.int64).reshape(k_out.size, nk)
        # least-squares plane through the nearest vertices, evaluated at the centre: exact for linear
        # fields; the weights are the first row of the pseudo-inverse of A = [1, dx/h, dy/h]. Nearly
        # collinear neighbours (a straight mesh boundary) make A ill-conditioned: small singular values are
        # cut (rcond), and a fit still amplifying by more than max_gain falls back to inverse-distance weights
        a_mat = np.stack([np.ones(nbr.shape), (x[nbr] - px[k_out, None]) / h,
                          (y[nbr] - py[k_out, None]) / h], axis=2)
        w_fit = np.linalg.pinv(a_mat, rcond=1e-2)[:, 0, :] if k_out.size else np.zeros((0, nk))
        wild = np.abs(w_fit).sum(axis=1) > max_gain
        if wild.any():
            d_nbr = np.hypot(x[nbr[wild]] - px[k_out[wild], None], y[nbr[wild]] - py[k_out[wild], None])
            inv = 1.0 / np.maximum(d_nbr, 1e-9 * h)
            w_fit[wild] = inv / inv.sum(axis=1, keepdims=True)
        rows.append(np.repeat(k_out, nk)), cols.append(nbr.ravel()), vals.append(w_fit.ravel())
    to_grid = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(nx * ny, nv))

    fx = (x - x0) / h - 0.5
    fy = (y - y0) / h - 0.5
    ix = np.clip(np.floor(fx).astype(np.int64), 0, nx - 2)
    iy = np.clip(np.floor(fy).astype(np.int64), 0, ny - 2)
    tx, ty = fx - ix, fy - iy
    base = iy * nx + ix
    cols_m = np.stack([base, base + 1, base + nx, base + nx + 1], 1)
    w = np.stack([(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty], 1)
    to_mesh = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(nv), 4), cols_m.ravel())), shape=(nv, nx * ny))
    return GridOperator(nx, ny, h, float(x0), float(y0), to_grid, to_mesh, inside.reshape(ny, nx))


class CNN(nn.Module):
    """``n_layers`` 3x3 convolutions of width ``hidden`` (LeakyReLU) on a regular grid.

    Per graph: ``z = to_grid @ [s, V_x, V_y]`` on the grid (plus a mask channel), ``n_layers`` 3x3
    convolutions, a 1x1 convolution to ``[u_x, u_y, scalar outputs]``, back to the vertices with
    ``to_mesh``, plus a linear skip from the vertex inputs. Not rotation-equivariant.

    Parameters
    ----------
    n_scalars, n_vectors : input channels (``scalars (n, S)``, ``vectors (n, C_v, 2)``)
    scalar_outputs : names of the scalar outputs besides the velocity
    hidden, n_layers : width and depth (128 and 5 as in the seed)
    cell_size : grid spacing (m); None = the mean edge length of each mesh
    max_cells : largest grid accepted
    """

    arch = "cnn"

    def __init__(self, n_scalars: int, n_vectors: int, scalar_outputs: Sequence[str] = (), *,
                 hidden: int = 128, n_layers: int = 5, cell_size: float | None = None,
                 max_cells: int = 4_000_000, negative_slope: float = 0.01, cache_size: int = 8):
        super().__init__()
        if n_layers < 1:
            raise ValueError("CNN needs n_layers >= 1")
        self.n_scalars, self.n_vectors = int(n_scalars), int(n_vectors)
        self.scalar_outputs = tuple(scalar_outputs)
        self.cell_size = None if cell_size is None else float(cell_size)
        self.max_cells = int(max_cells)
        self.config: dict[str, Any] = {
            "arch": self.arch, "n_scalars": self.n_scalars, "n_vectors": self.n_vectors,
            "scalar_outputs": list(self.scalar_outputs), "hidden": int(hidden), "n_layers": int(n_layers),
            "cell_size": self.cell_size, "max_cells": self.max_cells, "negative_slope": float(negative_slope),
            "cache_size": int(cache_size)}
        n_in = self.n_scalars + 2 * self.n_vectors
        n_out = 2 + len(self.scalar_outputs)
        chans = [n_in + 1] + [hidden] * n_layers
        self.convs = nn.ModuleList(nn.Conv2d(chans[k], chans[k + 1], 3, padding=1) for k in range(n_layers))
        self.act = nn.LeakyReLU(negative_slope)
        self.head = nn.Conv2d(hidden, n_out, 1)
        self.skip = nn.Linear(n_in, n_out, bias=False)
        self._cache: OrderedDict[str, GridOperator] = OrderedDict()
        self._cache_size = int(cache_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight."""
        for conv in self.convs:
            conv.reset_parameters()
        self.head.reset_parameters()
        nn.init.zeros_(self.skip.weight)

    def operator(self, pos: np.ndarray, faces: np.ndarray | None) -> GridOperator:
        """The (cached) :class:`GridOperator` of a mesh: ``pos`` (nv, 2), ``faces`` (ne, 3) or None."""
        hsh = hashlib.sha1(np.ascontiguousarray(pos, np.float64).tobytes())
        if faces is not None:
            hsh.update(np.ascontiguousarray(faces, np.int64).tobytes())
        hsh.update(repr((self.cell_size, self.max_cells)).encode())
        key = hsh.hexdigest()
        op = self._cache.get(key)
        if op is None:
            op = grid_operator(pos[:, 0], pos[:, 1], faces, cell_size=self.cell_size, max_cells=self.max_cells)
            self._cache[key] = op
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return op

    def _graphs(self, graph: Any, pos: Tensor) -> list[tuple[int, int, np.ndarray | None]]:
        """(start, stop, faces local to the graph) for every graph of a Data or Batch."""
        n = pos.shape[0]
        ptr = getattr(graph, "ptr", None)
        bounds = [0, n] if ptr is None else [int(p) for p in ptr.tolist()]
        face = getattr(graph, "face", None)
        face_np = None if face is None else face.detach().cpu().numpy().T  # (ne, 3) global indices
        out = []
        face_graph = None
        if face_np is not None and len(bounds) > 2:
            face_graph = np.searchsorted(np.asarray(bounds), face_np[:, 0], side="right") - 1
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            if face_np is None:
                f = None
            elif face_graph is None:
                f = face_np
            else:
                f = face_np[face_graph == k] - a
            out.append((a, b, f))
        return out

    def forward(self, graph: Any, scalars: Tensor, vectors: Tensor,
                edge_attr: Tensor | None = None) -> dict[str, Tensor]:
        """Predict ``{'velocity': (n, 2), <scalar output>: (n,), ...}``; uses ``graph.pos`` and
        ``graph.face`` (triangles; Delaunay of ``pos`` when absent). ``edge_attr`` is ignored."""
        pos, _ = graph_parts(graph)
        check_inputs(self, pos, scalars, vectors)
        out = self.forward_stacked(graph, scalars.unsqueeze(0), vectors)
        return {k: y[0] for k, y in out.items()}

    def forward_stacked(self, graph: Any, scalars: Tensor, vectors: Tensor) -> dict[str, Tensor]:
        """``K`` passes on the same graph(s) in one: ``scalars (K, n, S)``, ``vectors (n, C_v, 2)`` (shared
        by the ``K`` passes) -> ``{'velocity': (K, n, 2), <scalar output>: (K, n)}``; the ``K`` feature sets
        of every graph are one more batch dimension of the grid convolutions."""
        pos, x_in = stacked_inputs(self, graph, scalars, vectors)                         # x_in (K, n, C)
        kk, n = scalars.shape[0], pos.shape[0]
        pos_np = pos.detach().cpu().numpy().astype(np.float64)
        groups: OrderedDict[str, list[tuple[int, int]]] = OrderedDict()
        ops: dict[str, GridOperator] = {}
        for a, b, f in self._graphs(graph, pos):
            op = self.operator(pos_np[a:b], f)
            key = str(id(op))
            ops[key] = op
            groups.setdefault(key, []).append((a, b))
        n_out = 2 + len(self.scalar_outputs)
        y = x_in.new_zeros((kk, n, n_out))
        pieces, index = [], []
        for key, spans in groups.items():
            op = ops[key]
            to_grid, to_mesh, mask = op.tensors(x_in.dtype, x_in.device)
            nb, nv, c = len(spans), spans[0][1] - spans[0][0], x_in.shape[-1]
            xb = torch.stack([x_in[:, a:b] for a, b in spans], 2).transpose(0, 1).reshape(nv, kk * nb * c)
            z = torch.sparse.mm(to_grid, xb).reshape(op.ny, op.nx, kk * nb, c).permute(2, 3, 0, 1)
            z = torch.cat([z, mask.expand(kk * nb, 1, op.ny, op.nx)], dim=1)
            for conv in self.convs:
                z = self.act(conv(z))
            z = self.head(z)  # (K*B, n_out, ny, nx)
            zg = z.permute(2, 3, 0, 1).reshape(op.ny * op.nx, kk * nb * n_out)
            ym = torch.sparse.mm(to_mesh, zg).reshape(nv, kk, nb, n_out)
            for j, (a, b) in enumerate(spans):
                pieces.append(ym[:, :, j].transpose(0, 1))                           # (K, nv, n_out)
                index.append(torch.arange(a, b, device=x_in.device))
        y = y.index_copy(1, torch.cat(index), torch.cat(pieces, 1)) + self.skip(x_in)
        out = {"velocity": y[..., :2]}
        for j, name in enumerate(self.scalar_outputs):
            out[name] = y[..., 2 + j]
        return out
