"""GCN and CNN baselines (issm_emulator.nn.gcn, issm_emulator.nn.cnn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import Delaunay
from torch_geometric.data import Batch, Data

from issm_emulator.nn import CNN, GCN, build_model, grid_operator

F64 = torch.float64


def random_mesh(seed: int, n: int = 50, size: float = 20e3):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, size, (n, 2))
    return p[:, 0], p[:, 1], Delaunay(p).simplices.astype(np.int64)


def square_mesh(n: int = 12, size: float = 10e3, jitter: float = 0.2, seed: int = 0):
    """A structured-ish mesh of a square: jittered grid points, Delaunay triangles."""
    rng = np.random.default_rng(seed)
    g = np.linspace(0.0, size, n)
    xx, yy = np.meshgrid(g, g)
    x, y = xx.ravel().copy(), yy.ravel().copy()
    interior = (x > 0) & (x < size) & (y > 0) & (y < size)
    h = size / (n - 1)
    x[interior] += jitter * h * rng.uniform(-1, 1, interior.sum())
    y[interior] += jitter * h * rng.uniform(-1, 1, interior.sum())
    return x, y, Delaunay(np.stack([x, y], 1)).simplices.astype(np.int64)


def graph(x, y, tri, with_face: bool = True) -> Data:
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    e = np.unique(e, axis=0)
    ei = torch.from_numpy(np.concatenate([e, e[:, ::-1]]).T.copy())
    d = Data(pos=torch.tensor(np.stack([x, y], 1), dtype=F64), edge_index=ei, num_nodes=len(x))
    if with_face:
        d.face = torch.from_numpy(tri.T.copy())
    return d


def rotation(th: float) -> torch.Tensor:
    return torch.tensor([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]], dtype=F64)


@pytest.mark.parametrize("arch", ["gcn", "cnn", "egcn"])
def test_shapes_and_common_interface(arch):
    x, y, tri = random_mesh(0)
    model = build_model({"arch": arch, "n_scalars": 3, "n_vectors": 2,
                         "scalar_outputs": ["thickness", "ice_levelset"], "hidden": 16}).double()
    s, v = torch.randn(50, 3, dtype=F64), torch.randn(50, 2, 2, dtype=F64)
    out = model(graph(x, y, tri), s, v)
    assert set(out) == {"velocity", "thickness", "ice_levelset"}
    assert out["velocity"].shape == (50, 2) and out["thickness"].shape == (50,)
    assert all(t.dtype == F64 and torch.isfinite(t).all() for t in out.values())
    assert type(build_model(model.config)) is type(model)


def test_default_depth_and_width():
    gcn, cnn = GCN(4, 2), CNN(4, 2)
    assert len(gcn.convs) == 5 and gcn.convs[0].out_channels == 128
    assert len(cnn.convs) == 5 and all(c.kernel_size == (3, 3) and c.out_channels == 128 for c in cnn.convs)


def test_gcn_is_not_rotation_equivariant():
    """The vector components are plain features: rotating the plane does not rotate the prediction."""
    torch.manual_seed(0)
    x, y, tri = random_mesh(1)
    model = GCN(2, 1, hidden=32).double()
    with torch.no_grad():
        model.skip.weight.normal_()
    s, v = torch.randn(50, 2, dtype=F64), torch.randn(50, 1, 2, dtype=F64)
    q = rotation(0.9)
    p2 = (torch.tensor(np.stack([x, y], 1)) @ q.T).numpy()
    with torch.no_grad():
        o1 = model(graph(x, y, tri), s, v)["velocity"]
        o2 = model(graph(p2[:, 0], p2[:, 1], tri), s, v @ q.T)["velocity"]
    err = float((o2 - o1 @ q.T).norm(dim=1).mean() / o1.norm(dim=1).mean())
    assert err > 0.1


def test_cnn_round_trip_of_linear_field_is_exact():
    x, y, tri = square_mesh()
    op = grid_operator(x, y, tri)
    f = 3.0 + 2e-3 * x - 5e-4 * y
    back = op.to_mesh @ (op.to_grid @ f)
    assert np.abs(back - f).max() < 1e-9 * np.abs(f).max()
    gx, gy = op.centres()
    inside = op.inside.ravel()
    assert inside.mean() > 0.4
    assert np.allclose((op.to_grid @ f)[inside], (3.0 + 2e-3 * gx - 5e-4 * gy).ravel()[inside], atol=1e-9)
    # default spacing is the mean edge length
    e = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1), axis=0)
    assert op.cell_size == pytest.approx(np.hypot(*(np.stack([x, y])[:, e[:, 1]] - np.stack([x, y])[:, e[:, 0]])).mean())
    # also on an irregular random mesh with slivers on its hull
    xr, yr, tr = random_mesh(2, n=200)
    opr = grid_operator(xr, yr, tr)
    fr = 1.0 + xr - 2 * yr
    assert np.abs(opr.to_mesh @ (opr.to_grid @ fr) - fr).max() < 1e-8 * np.abs(fr).max()


def test_grid_extrapolation_is_bounded_beside_a_straight_boundary():
    # a straight boundary sampled every 100 m (nudged by 0.1 mm) beside 1 km interior vertices: the nearest
    # vertices of a centre just outside are all nearly collinear, and a plain plane fit through them
    # amplifies values by ~3e4 (a 79N mesh gave 6e13); the fit must cut that and stay bounded
    gx, gy = np.meshgrid(np.arange(12.0), np.arange(1.0, 6.0))
    bx = np.arange(0.0, 11.01, 0.1)
    x = np.concatenate([gx.ravel(), bx]) * 1e3
    y = np.concatenate([gy.ravel(), np.random.default_rng(0).normal(0.0, 1e-4, bx.shape)]) * 1e3
    tri = Delaunay(np.stack([x, y], 1)).simplices.astype(np.int64)
    op = grid_operator(x, y, tri, cell_size=370.0, max_gain=8.0)
    gain = np.abs(op.to_grid).sum(axis=1).A.ravel()
    assert gain.max() <= 8.0 + 1e-9
    f = 3.0 + 2e-3 * x - 5e-4 * y  # still exact inside the mesh
    cx, cy = op.centres()
    inside = op.inside.ravel()
    assert np.allclose((op.to_grid @ f)[inside], (3.0 + 2e-3 * cx - 5e-4 * cy).ravel()[inside], atol=1e-9)


def test_cnn_round_trip_of_smooth_field_converges():
    x, y, tri = square_mesh(n=25, jitter=0.1)
    f = np.sin(x / 3e3) * np.cos(y / 4e3)
    errs = []
    for h in (800.0, 400.0, 200.0):
        op = grid_operator(x, y, tri, cell_size=h)
        interior = (x > 1e3) & (x < 9e3) & (y > 1e3) & (y < 9e3)
        errs.append(np.abs(op.to_mesh @ (op.to_grid @ f) - f)[interior].max())
    assert errs[2] < errs[0] and errs[2] < 0.05


def test_cnn_batched_equals_unbatched_and_caches_operators():
    torch.manual_seed(1)
    model = CNN(2, 1, ("thickness",), hidden=8, n_layers=3).double()
    meshes = [square_mesh(n=8, seed=1), random_mesh(3, n=30), square_mesh(n=8, seed=1)]
    graphs = [graph(*m) for m in meshes]
    inputs = [(torch.randn(g.num_nodes, 2, dtype=F64), torch.randn(g.num_nodes, 1, 2, dtype=F64)) for g in graphs]
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        ob = model(batch, torch.cat([i[0] for i in inputs]), torch.cat([i[1] for i in inputs]))
        start = 0
        for g, (s, v) in zip(graphs, inputs):
            o = model(g, s, v)
            stop = start + g.num_nodes
            assert torch.allclose(ob["velocity"][start:stop], o["velocity"], atol=1e-12)
            assert torch.allclose(ob["thickness"][start:stop], o["thickness"], atol=1e-12)
            start = stop
    assert len(model._cache) == 2  # two distinct meshes, each grid built once
    op = model.operator(graphs[0].pos.numpy(), meshes[0][2])
    assert op is model.operator(graphs[0].pos.numpy(), meshes[0][2])


def test_cnn_without_faces_and_grid_limit():
    x, y, tri = square_mesh(n=8)
    model = CNN(1, 1, hidden=4, n_layers=1).double()
    out = model(graph(x, y, tri, with_face=False), torch.randn(64, 1, dtype=F64), torch.randn(64, 1, 2, dtype=F64))
    assert out["velocity"].shape == (64, 2)
    with pytest.raises(ValueError, match="cell_size >="):
        grid_operator(x, y, tri, cell_size=1.0, max_cells=10_000)


def test_cnn_trains_on_grid_field():
    """A few Adam steps reduce the loss: gradients flow through both sparse interpolations."""
    torch.manual_seed(2)
    x, y, tri = square_mesh(n=10)
    g = graph(x, y, tri)
    model = CNN(1, 1, ("thickness",), hidden=8, n_layers=2).double()
    s = torch.tensor(np.sin(x / 2e3)[:, None], dtype=F64)
    v = torch.zeros(100, 1, 2, dtype=F64)
    target = torch.tensor(np.cos(y / 3e3), dtype=F64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (model(g, s, v)["thickness"] - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
