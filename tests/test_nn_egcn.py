"""The equivariant graph network (issm_emulator.nn.egcn) and the shared input features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import Delaunay
from torch import nn
from torch_geometric.data import Batch, Data

from issm_emulator.errors import ModelInputError
from issm_emulator.graph import mesh_graph
from issm_emulator.nn import EGCN, EquivariantConv, FeatureSpec, Normalizer, build_inputs, nodal_gradient
from issm_emulator.nn.egcn import edge_geometry, safe_norm
from tests.egcn_reference import RefEGCN, RefEquivariantConv

F64 = torch.float64


def random_mesh(seed: int, n: int = 40, size: float = 20e3):
    """Delaunay triangulation of random points: x, y, (ne, 3) triangles."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, size, (n, 2))
    return p[:, 0], p[:, 1], Delaunay(p).simplices.astype(np.int64)


def edges(tri: np.ndarray) -> np.ndarray:
    """(2, E) both directions of every triangle side."""
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    e = np.unique(e, axis=0)
    return np.concatenate([e, e[:, ::-1]]).T.copy()


def graph(x, y, tri) -> Data:
    return Data(pos=torch.tensor(np.stack([x, y], 1), dtype=F64), edge_index=torch.from_numpy(edges(tri)),
                num_nodes=len(x))


def random_orthogonal(rng: np.random.Generator, reflect: bool) -> np.ndarray:
    th = rng.uniform(0, 2 * np.pi)
    q = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return q @ np.diag([1.0, -1.0]) if reflect else q


def perturbed_egcn(seed: int, **kw) -> EGCN:
    """A small EGCN (default depth) in float64 whose every weight is non-trivial (the zero-initialised
    gates and skips included)."""
    torch.manual_seed(seed)
    model = EGCN(kw.pop("n_scalars", 5), kw.pop("n_vectors", 3), kw.pop("scalar_outputs", ("thickness",)),
                 hidden=kw.pop("hidden", 24), vector_hidden=kw.pop("vector_hidden", 4),
                 length_scale=kw.pop("length_scale", 3000.0), **kw).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


SPEC = FeatureSpec(("thickness", "bed", "surface", "melt_rate"), ("velocity", "surface_gradient", "bed_gradient"),
                   ("thickness",))


def fields(x, y, seed):
    rng = np.random.default_rng(seed + 100)
    # scalar fields are functions of the vertex only (they do not change when the plane is rotated)
    thick = 500 + 300 * rng.random(len(x))
    bed = -400 + 200 * rng.random(len(x))
    return {"thickness": thick, "bed": bed, "surface": bed + thick, "melt_rate": 3e-7,
            "velocity": rng.normal(0, 3e-6, (len(x), 2))}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_whole_egcn_is_e2_equivariant(seed):
    rng = np.random.default_rng(seed)
    x, y, tri = random_mesh(seed)
    q = random_orthogonal(rng, reflect=bool(seed % 2))
    shift = rng.uniform(-1e6, 1e6, 2)
    p2 = np.stack([x, y], 1) @ q.T + shift
    x2, y2 = p2[:, 0], p2[:, 1]

    f1 = fields(x, y, seed)
    f2 = dict(f1, velocity=f1["velocity"] @ q.T)  # the input vectors rotate with the plane
    s1, v1 = build_inputs(SPEC, (x, y, tri), dtype=F64, **f1)
    s2, v2 = build_inputs(SPEC, (x2, y2, tri), dtype=F64, **f2)
    # gradients computed on the rotated mesh rotate; scalars are the same
    assert torch.allclose(s1, s2)
    assert torch.allclose(v2, v1 @ torch.tensor(q.T), rtol=1e-9, atol=1e-15)

    norm_in = Normalizer(SPEC.scalars, SPEC.vectors).fit(s1, v1)
    model = perturbed_egcn(seed, n_scalars=4, n_vectors=3)
    with torch.no_grad():
        o1 = model(graph(x, y, tri), *norm_in.encode(s1, v1))
        o2 = model(graph(x2, y2, tri), *norm_in.encode(s2, v2))

    vel1, vel2 = o1["velocity"], o2["velocity"]
    scale = max(1.0, float(vel1.abs().max()))
    assert float(vel1.abs().max()) > 1e-3  # a non-trivial prediction
    assert float((vel2 - vel1 @ torch.tensor(q.T)).abs().max()) <= 1e-5 * scale
    assert float((vel2 - vel1).abs().max()) > 1e-3 * scale  # it really rotated (not invariant)
    th = o1["thickness"]
    assert float((o2["thickness"] - th).abs().max()) <= 1e-5 * max(1.0, float(th.abs().max()))


def test_egcn_equivariance_with_mesh_graph():
    """Same property through issm_emulator.graph.mesh_graph (which supplies float64 edge vectors)."""
    from issm_emulator.graph import mesh_graph

    rng = np.random.default_rng(7)
    x, y, tri = random_mesh(7, n=30)
    q = random_orthogonal(rng, reflect=True)
    p2 = np.stack([x, y], 1) @ q.T + np.array([-1.7e6, 3.2e5])
    model = perturbed_egcn(7)
    s = torch.randn(30, 5, dtype=F64)
    v = torch.randn(30, 3, 2, dtype=F64)
    o1 = model(mesh_graph((x, y, tri), dtype=F64), s, v)
    o2 = model(mesh_graph((p2[:, 0], p2[:, 1], tri), dtype=F64), s, v @ torch.tensor(q.T))
    assert torch.allclose(o2["velocity"], o1["velocity"] @ torch.tensor(q.T), atol=1e-5, rtol=0)
    assert torch.allclose(o2["thickness"], o1["thickness"], atol=1e-5, rtol=0)


def test_permuting_vertices_permutes_outputs():
    x, y, tri = random_mesh(3)
    n = len(x)
    perm = np.random.default_rng(3).permutation(n)  # new vertex k is old vertex perm[k]
    inv = np.argsort(perm)
    model = perturbed_egcn(3)
    s = torch.randn(n, 5, dtype=F64)
    v = torch.randn(n, 3, 2, dtype=F64)
    o1 = model(graph(x, y, tri), s, v)
    o2 = model(graph(x[perm], y[perm], inv[tri]), s[perm], v[perm])
    assert torch.allclose(o2["velocity"], o1["velocity"][perm], atol=1e-10)
    assert torch.allclose(o2["thickness"], o1["thickness"][perm], atol=1e-10)


def test_batched_equals_unbatched():
    model = perturbed_egcn(4)
    graphs, inputs = [], []
    for seed, n in ((4, 25), (5, 33)):
        x, y, tri = random_mesh(seed, n=n)
        graphs.append(graph(x, y, tri))
        inputs.append((torch.randn(n, 5, dtype=F64), torch.randn(n, 3, 2, dtype=F64)))
    batch = Batch.from_data_list(graphs)
    ob = model(batch, torch.cat([i[0] for i in inputs]), torch.cat([i[1] for i in inputs]))
    start = 0
    for g, (s, v) in zip(graphs, inputs):
        o = model(g, s, v)
        stop = start + g.num_nodes
        assert torch.allclose(ob["velocity"][start:stop], o["velocity"], atol=1e-12)
        assert torch.allclose(ob["thickness"][start:stop], o["thickness"], atol=1e-12)
        start = stop


def test_precomputed_geometry_gives_the_same_outputs():
    """``forward(..., geometry=EGCN.graph_geometry(graph, dtype))`` (the runtime's cached geometry) is the
    same function as the geometry computed inside the pass, on one graph and on a batch."""
    model = perturbed_egcn(6)
    x, y, tri = random_mesh(6, n=30)
    g = graph(x, y, tri)
    s, v = torch.randn(30, 5, dtype=F64), torch.randn(30, 3, 2, dtype=F64)
    for gr, ss, vv in ((g, s, v), (Batch.from_data_list([g, g]), torch.cat([s, s]), torch.cat([v, v]))):
        geom = EGCN.graph_geometry(gr, F64)
        assert geom.mean_op is not None
        for grad in (False, True):  # inference: the sparse mean operator; with gradients: the scatter
            with torch.set_grad_enabled(grad):
                inside = model(gr, ss, vv)
                given = model(gr, ss, vv, geometry=geom)
            for name in inside:
                torch.testing.assert_close(inside[name], given[name], rtol=1e-12, atol=1e-12)
        m = torch.randn(gr.edge_index.shape[1], 3, dtype=F64)
        with torch.no_grad():
            torch.testing.assert_close(geom.mean(m, gr.num_nodes),
                                       geom._replace(mean_op=None).mean(m, gr.num_nodes), rtol=1e-12, atol=1e-12)


def test_reset_parameters_changes_weights():
    model = perturbed_egcn(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    model.reset_parameters()
    after = model.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert len(changed) == sum(1 for v in before.values() if v.is_floating_point())
    conv = model.layers[0]
    w = conv.phi_e_inv.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(w, conv.phi_e_inv.weight)


def test_default_sizes_and_float32():
    model = EGCN(4, 2, ("thickness", "ice_levelset"))
    assert len(model.layers) == 5 and model.layers[0].hidden == 128
    assert model.config["hidden"] == 128 and model.config["n_layers"] == 5
    x, y, tri = random_mesh(8, n=20)
    g = graph(x, y, tri)
    g.pos = g.pos.float()
    out = model(g, torch.randn(20, 4), torch.randn(20, 2, 2))
    assert out["velocity"].shape == (20, 2) and out["velocity"].dtype == torch.float32
    assert out["thickness"].shape == (20,) and out["ice_levelset"].shape == (20,)
    assert all(torch.isfinite(t).all() for t in out.values())


def test_gradients_finite_with_zero_vectors():
    """Zero velocities (ice-free vertices) must not give NaN gradients (safe norm)."""
    model = perturbed_egcn(9)
    x, y, tri = random_mesh(9, n=20)
    v = torch.zeros(20, 3, 2, dtype=F64, requires_grad=True)
    out = model(graph(x, y, tri), torch.randn(20, 5, dtype=F64), v)
    (out["velocity"].square().sum() + out["thickness"].sum()).backward()
    assert torch.isfinite(v.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert float(safe_norm(torch.tensor([[3.0, 4.0]], dtype=F64))[0]) == pytest.approx(5.0, abs=1e-5)


def test_equivariant_conv_matches_formula_on_tiny_graph():
    """One layer on a hand-built 3-vertex graph against the documented update, edge by edge."""
    torch.manual_seed(0)
    conv = EquivariantConv(2, 1, 8, 2, 2, edge_attr_dim=1, length_scale=10.0).double()
    with torch.no_grad():
        for p in conv.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pos = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0]], dtype=F64)
    edge_index = torch.tensor([[0, 1, 0, 2], [1, 0, 2, 0]])  # 0<->1, 0<->2 (1 and 2 not linked)
    evec = pos[edge_index[1]] - pos[edge_index[0]]
    eattr = torch.tensor([[0.1], [0.2], [0.3], [0.4]], dtype=F64)
    h = torch.randn(3, 2, dtype=F64)
    v = torch.randn(3, 1, 2, dtype=F64)
    h_new, v_new = conv(h, v, edge_index, evec, eattr)

    def mix(lin, vec):  # (C_in, 2) -> (C_out, 2)
        return lin.weight @ vec

    for i in range(3):
        incoming = [k for k in range(4) if int(edge_index[1, k]) == i]
        ms, vs = [], []
        for k in incoming:
            j = int(edge_index[0, k])
            r = pos[i] - pos[j]
            d = r.norm()
            u = r / d
            inv = torch.cat([(d / 10.0).reshape(1), (v[i] * v[j]).sum(-1), safe_norm(v[i]), safe_norm(v[j]),
                             v[i] @ u, v[j] @ u, eattr[k]])
            # phi_e as one MLP on the concatenation [h_i, h_j, I_ij] (the layer splits its first matrix)
            w1 = torch.cat([conv.phi_e_i.weight, conv.phi_e_j.weight, conv.phi_e_inv.weight], dim=1)
            m = conv.phi_e(w1 @ torch.cat([h[i], h[j], inv]) + conv.phi_e_i.bias)
            ms.append(m)
            vs.append(conv.phi_u(m)[:, None] * u[None] + conv.phi_v(m)[:, None] * mix(conv.mix_neigh, v[j]))
        m_mean = torch.stack(ms).mean(0)
        expect_v = conv.gate(h[i])[:, None] * mix(conv.mix_self, v[i]) + torch.stack(vs).mean(0)
        expect_h = h[i] + conv.phi_h(torch.cat([h[i], m_mean]))
        assert torch.allclose(v_new[i], expect_v, atol=1e-12)
        assert torch.allclose(h_new[i], expect_h, atol=1e-12)


def test_wrong_shapes_are_refused():
    model = EGCN(3, 2, hidden=8, vector_hidden=2, n_layers=1)
    x, y, tri = random_mesh(1, n=10)
    g = graph(x, y, tri)
    with pytest.raises(ValueError, match="scalars must have shape"):
        model(g, torch.randn(10, 4, dtype=F64), torch.randn(10, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match="vectors must have shape"):
        model(g, torch.randn(10, 3), torch.randn(10, 2))
    with pytest.raises(ValueError, match="pos"):
        model(Data(edge_index=g.edge_index), torch.randn(10, 3), torch.randn(10, 2, 2))


# --- the input features shared by all networks ---------------------------------------------------------

def test_nodal_gradient_exact_for_linear_fields():
    x, y, tri = random_mesh(11, n=60)
    g = nodal_gradient((x, y, tri), 4.0 + 0.01 * x - 0.03 * y)
    assert np.allclose(g, [[0.01, -0.03]], atol=1e-12)
    # a quadratic: the area-weighted average is a consistent approximation in the interior
    g2 = nodal_gradient((x, y, tri), 1e-5 * x ** 2)
    assert np.corrcoef(g2[:, 0], 2e-5 * x)[0, 1] > 0.95
    # the sparse operator is the definition: sum over the elements e around i of A_e grad_e f / sum A_e
    from issm_emulator.physics.fe import P1Mesh

    pm = P1Mesh(np.asarray(x, float), np.asarray(y, float), np.asarray(tri, np.int64))
    f = np.sin(x / 5e3) * np.cos(y / 7e3)
    gx, gy = pm.gradient(f)
    a = np.abs(pm.area)
    expect = np.zeros((pm.nv, 2))
    for e, verts in enumerate(pm.elements):  # a plain loop, as the definition reads
        for i in verts:
            expect[i] += a[e] * np.array([gx[e], gy[e]])
    expect /= np.bincount(pm.elements.ravel(), weights=np.repeat(a, 3), minlength=pm.nv)[:, None]
    np.testing.assert_allclose(nodal_gradient(pm, f), expect, rtol=1e-12, atol=1e-18)


def test_build_inputs_order_broadcast_and_errors():
    x, y, tri = random_mesh(12, n=15)
    f = fields(x, y, 12)
    s, v = build_inputs(SPEC, (x, y, tri), **f)
    assert s.shape == (15, 4) and v.shape == (15, 3, 2) and s.dtype == torch.float32
    assert np.allclose(s[:, 0].numpy(), f["thickness"], rtol=1e-6)
    assert np.allclose(s[:, 3].numpy(), 3e-7)  # the forcing parameter is broadcast
    assert np.allclose(v[:, 0].numpy(), f["velocity"], rtol=1e-6, atol=1e-12)
    assert np.allclose(v[:, 1].numpy(), nodal_gradient((x, y, tri), f["surface"]), rtol=1e-5, atol=1e-9)
    _, v2 = build_inputs(SPEC, (x, y, tri), **dict(f, velocity=(f["velocity"][:, 0], f["velocity"][:, 1])))
    assert torch.equal(v, v2)
    with pytest.raises(ModelInputError, match="md.geometry.bed"):
        build_inputs(SPEC, (x, y, tri), **{k: val for k, val in f.items() if k != "bed"})
    with pytest.raises(ModelInputError, match="md.geometry.thickness"):
        build_inputs(SPEC, (x, y, tri), **dict(f, thickness=1000.0))  # fields must be per-vertex
    with pytest.raises(ModelInputError, match="md.initialization.vx/vy"):
        build_inputs(SPEC, (x, y, tri), **dict(f, velocity=np.zeros((15, 3))))
    with pytest.raises(ModelInputError, match="NaN"):
        build_inputs(SPEC, (x, y, tri), **dict(f, bed=np.full(15, np.nan)))
    with pytest.raises(TypeError, match="unknown feature"):
        build_inputs(SPEC, (x, y, tri), thicknes=1, **f)
    spec_b = FeatureSpec(("thickness", "is_boundary"), ("velocity",))
    g = graph(x, y, tri)
    g.is_boundary = torch.zeros(15, dtype=torch.bool)
    g.is_boundary[:3] = True
    sb, _ = build_inputs(spec_b, (x, y, tri), graph=g, thickness=f["thickness"], velocity=f["velocity"])
    assert sb[:, 1].tolist() == [1.0] * 3 + [0.0] * 12
    with pytest.raises(ValueError, match="unknown scalar feature"):
        FeatureSpec(("thickness", "nonsense"), ("velocity",))


def test_normalized_egcn_is_equivariant_and_bounded():
    """``normalize=True`` keeps the network equivariant and its hidden state bounded for wild inputs."""
    rng = np.random.default_rng(5)
    pts = rng.uniform(0, 5e4, (40, 2))
    tri = Delaunay(pts).simplices
    g = mesh_graph((pts[:, 0], pts[:, 1], tri), dtype=torch.float64)
    model = EGCN(3, 2, ("thickness",), hidden=16, n_layers=4, normalize=True).double()
    assert model.config["normalize"] is True
    with torch.no_grad():
        for p in model.parameters():  # large weights: an unnormalised network would overflow
            p.mul_(30.0)
    s = torch.tensor(rng.normal(size=(40, 3)) * 50)
    v = torch.tensor(rng.normal(size=(40, 2, 2)) * 50)
    out = model(g, s, v)
    assert torch.isfinite(out["velocity"]).all() and torch.isfinite(out["thickness"]).all()
    th = 0.7
    q = torch.tensor([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]], dtype=torch.float64)
    rot = pts @ q.numpy().T
    g2 = mesh_graph((rot[:, 0], rot[:, 1], tri), dtype=torch.float64)
    out2 = model(g2, s, v @ q.T)
    scale = out["velocity"].abs().max().item()
    torch.testing.assert_close(out2["velocity"], out["velocity"] @ q.T, rtol=1e-6, atol=1e-6 * scale)
    torch.testing.assert_close(out2["thickness"], out["thickness"], rtol=1e-6, atol=1e-6)


def _ref_pair(seed: int, **kw):
    """A reference model with non-trivial weights and the current EGCN loaded with the same state_dict."""
    args = (kw.pop("n_scalars", 5), kw.pop("n_vectors", 3), kw.pop("scalar_outputs", ("thickness",)))
    kw = {"hidden": 16, "n_layers": 3, "vector_hidden": 4, "length_scale": 3000.0, **kw}
    torch.manual_seed(seed)
    ref = RefEGCN(*args, **kw).double()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    new = EGCN(*args, **kw).double()
    assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    new.load_state_dict(ref.state_dict())
    return ref, new


def _assert_same(o_ref: dict, o_new: dict, rel: float = 1e-10) -> None:
    assert o_ref.keys() == o_new.keys()
    for k, ref in o_ref.items():
        scale = max(1e-3, float(ref.abs().max()))
        assert o_new[k].dtype == ref.dtype and o_new[k].shape == ref.shape
        assert float((o_new[k] - ref).abs().max()) <= rel * scale, k


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("edge_attr_dim", [0, 2])
@pytest.mark.parametrize("outputs", [("thickness",), ()])
def test_egcn_matches_reference_implementation(normalize, edge_attr_dim, outputs):
    """Same weights, same outputs (float64) as the implementation before the rewrite."""
    x, y, tri = random_mesh(21, n=60)
    g = graph(x, y, tri)
    ref, new = _ref_pair(21, normalize=normalize, edge_attr_dim=edge_attr_dim, scalar_outputs=outputs)
    gen = torch.Generator().manual_seed(1)
    s, v = torch.randn(60, 5, dtype=F64, generator=gen), torch.randn(60, 3, 2, dtype=F64, generator=gen)
    ea = torch.randn(g.edge_index.shape[1], edge_attr_dim, dtype=F64, generator=gen) if edge_attr_dim else None
    with torch.no_grad():
        _assert_same(ref(g, s, v, ea), new(g, s, v, ea))
    # the training path (gradients): same loss, same parameter gradients
    grads = []
    for model in (ref, new):
        model.zero_grad()
        out = model(g, s, v, ea)
        sum(o.square().sum() for o in out.values()).backward()
        grads.append([p.grad for p in model.parameters()])
    for g_ref, g_new in zip(*grads):
        assert float((g_new - g_ref).abs().max()) <= 1e-10 * max(1e-3, float(g_ref.abs().max()))


@pytest.mark.parametrize("scalar_out", [0, 3, 4])
def test_equivariant_conv_matches_reference(scalar_out):
    """The public layer interface (h, v (n, C, 2)), with edge attributes and an isolated vertex."""
    x, y, tri = random_mesh(22, n=30)
    ei = torch.from_numpy(edges(tri))
    pos = torch.tensor(np.stack([np.append(x, 0.0), np.append(y, 0.0)], 1))  # vertex 30 has no edges
    evec = pos[ei[1]] - pos[ei[0]]
    torch.manual_seed(22)
    ref = RefEquivariantConv(4, 3, 8, scalar_out, 2, edge_attr_dim=1, length_scale=5e3).double()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.3 * torch.randn_like(p))
    new = EquivariantConv(4, 3, 8, scalar_out, 2, edge_attr_dim=1, length_scale=5e3).double()
    new.load_state_dict(ref.state_dict())
    h, v = torch.randn(31, 4, dtype=F64), torch.randn(31, 3, 2, dtype=F64)
    ea = torch.randn(ei.shape[1], 1, dtype=F64)
    with torch.no_grad():
        h_ref, v_ref = ref(h, v, ei, evec, ea)
        h_new, v_new = new(h, v, ei, evec, ea)
    assert v_new.shape == (31, 2, 2)
    assert torch.allclose(v_new, v_ref, rtol=0, atol=1e-12 * float(v_ref.abs().max()))
    if scalar_out:
        assert torch.allclose(h_new, h_ref, rtol=0, atol=1e-12 * float(h_ref.abs().max()))
    else:
        assert h_new is None and h_ref is None
    # message/aggregate agree with the explicit gathers and sums of forward_xy
    geom = edge_geometry(ei, evec, 31)
    vt = v.transpose(1, 2).contiguous()
    with torch.no_grad():
        ab, vt_flat, s = new.vertex_tables(h, vt)
        agg = new.propagate(ei, ab=ab, vt=vt_flat, s=s, u=geom.u, dl=geom.d / new.length_scale, edge_attr=ea,
                            size=(31, 31))
        v_prop = new.gate(h).unsqueeze(1) * (vt @ new.mix_self.weight.t()) + agg[:, new.hidden:].view(31, 2, 2)
    assert torch.allclose(v_prop.transpose(1, 2), v_ref, rtol=0, atol=1e-12 * float(v_ref.abs().max()))


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("with_add", [False, True])
def test_fast_linear_matches_plain_linear(silu, with_add):
    """``_linear``: the fused oneDNN kernel (float32 CPU inference) and the plain path give the same numbers."""
    from issm_emulator.nn.egcn import _linear

    gen = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(500, 49, generator=gen), torch.randn(64, 49, generator=gen) / 7, torch.randn(64, generator=gen)
    add = torch.randn(500, 64, generator=gen) if with_add else None
    expect = x.double() @ w.double().t() + b.double() + (add.double() if with_add else 0.0)
    expect = nn.functional.silu(expect) if silu else expect
    with torch.inference_mode():
        fast = _linear(x, w, b, silu=silu, add=add)
    plain = _linear(x, w.requires_grad_(), b, silu=silu, add=add).detach()  # the autograd path
    for y in (fast, plain):
        assert y.shape == (500, 64) and y.dtype == torch.float32
        torch.testing.assert_close(y.double(), expect, rtol=1e-5, atol=1e-5)


PUBLISHED = Path(__file__).resolve().parents[1] / "issm_emulator" / "weights" / "egcn-step-pig.pt"


@pytest.mark.skipif(not PUBLISHED.exists(), reason="published EGCN weights not in this checkout")
def test_published_checkpoint_loads_and_matches_reference():
    """The published Pine Island checkpoint loads unchanged and gives the reference outputs."""
    ck = torch.load(PUBLISHED, weights_only=True)
    cfg, state = dict(ck["model_config"]), ck["state_dict"]
    assert cfg.pop("arch") == "egcn"
    args = (cfg.pop("n_scalars"), cfg.pop("n_vectors"), cfg.pop("scalar_outputs"))
    ref, new = RefEGCN(*args, **cfg), EGCN(*args, **cfg)
    new.load_state_dict(state)  # strict: same keys, same shapes
    ref.load_state_dict(state)
    assert new.config == ref.config
    x, y, tri = random_mesh(23, n=200, size=60e3)
    g = graph(x, y, tri)
    gen = torch.Generator().manual_seed(23)
    s, v = torch.randn(200, args[0], dtype=F64, generator=gen), torch.randn(200, args[1], 2, dtype=F64, generator=gen)
    with torch.no_grad():
        o_ref = ref.double()(g, s, v)
        _assert_same(o_ref, new.double()(g, s, v))
        # float32 inference (the fast CPU path) agrees to float32 rounding
        g32 = graph(x, y, tri)
        g32.pos = g32.pos.float()
        new.float()
        for ctx in (torch.inference_mode, torch.enable_grad):
            with ctx():
                o32 = new(g32, s.float(), v.float())
            for k in o_ref:
                scale = float(o_ref[k].abs().max())
                assert float((o32[k].double() - o_ref[k]).abs().max()) <= 1e-4 * scale
