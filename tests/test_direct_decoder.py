"""Time-decoded direct mode (nn.direct.EGCNDirect): equivariance, exact initial state at t = 0, one trunk
pass per run at training and at run time, and training on a tiny ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from issm_emulator.issm.adapter import read_model
from issm_emulator.learning.dataset import DirectRunDataset, collate
from issm_emulator.learning.train import train
from issm_emulator.nn import EGCNDirect, build_model
from issm_emulator.nn.direct import time_features
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint
from issm_emulator.solvers.emulator.direct import direct_transient_many, rollout_direct
from tests.modelfactory import make_square_shelf_md

YTS = 365.0 * 24 * 3600


def _graph(n=12, seed=0):
    from scipy.spatial import Delaunay
    from torch_geometric.data import Data

    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 5e3, (n, 2))
    tri = Delaunay(pts).simplices
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0).T
    return Data(pos=torch.tensor(pts, dtype=torch.float64), edge_index=torch.tensor(e)), rng


def _model(**kw):
    torch.manual_seed(0)
    return EGCNDirect(4, 2, ("thickness",), time_column=3, time_scale=10 * YTS, hidden=8, n_layers=2,
                      vector_hidden=4, normalize=True, **kw).double()


def test_zero_change_at_t0_and_equivariance():
    g, rng = _graph()
    m = _model()
    s = torch.tensor(rng.normal(size=(12, 4)))
    v = torch.tensor(rng.normal(size=(12, 2, 2)))
    t = torch.tensor([0.0, 1 * YTS, 7 * YTS], dtype=torch.float64)
    out = m(g, s, v, t)
    assert out["velocity"].shape == (12, 3, 2) and out["thickness"].shape == (12, 3)
    assert torch.all(out["velocity"][:, 0] == 0) and torch.all(out["thickness"][:, 0] == 0)
    assert out["thickness"][:, 2].abs().max() > 0
    # the time column is not an input of the trunk: changing it changes nothing
    s2 = s.clone()
    s2[:, 3] += 5.0
    assert torch.equal(m(g, s2, v, t)["thickness"], out["thickness"])
    # rotation + reflection + translation of the plane
    th = 0.7
    q = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
    q = q @ torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    g2 = g.clone()
    g2.pos = g.pos @ q.T + torch.tensor([3e3, -2e3], dtype=torch.float64)
    rot = m(g2, s, v @ q.T, t)
    torch.testing.assert_close(rot["velocity"], out["velocity"] @ q.T, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rot["thickness"], out["thickness"], rtol=1e-10, atol=1e-12)


def test_times_per_vertex_equal_times_shared():
    g, rng = _graph()
    m = _model()
    s = torch.tensor(rng.normal(size=(12, 4)))
    v = torch.tensor(rng.normal(size=(12, 2, 2)))
    t = torch.tensor([0.5 * YTS, 3 * YTS], dtype=torch.float64)
    shared = m(g, s, v, t)
    per_vertex = m(g, s, v, t[None, :].expand(12, -1))
    torch.testing.assert_close(shared["velocity"], per_vertex["velocity"])
    assert time_features(torch.tensor([0.0])).shape == (1, 9)


def test_config_round_trip():
    m = _model()
    m2 = build_model(m.config)
    assert isinstance(m2, EGCNDirect) and m2.config == m.config
    m2.load_state_dict(m.state_dict())
    with pytest.raises(ValueError, match="time_column"):
        EGCNDirect(3, 1, time_column=3, time_scale=1.0)
    with pytest.raises(ValueError, match="no 'absolute' decoder"):
        build_model({**m.config, "decoder": "absolute"})



def test_run_dataset_holds_increments(ens):
    ds = DirectRunDataset(ens, "train")
    assert len(ds) == len(ds.run_positions) == 2 and list(ds.kept_outputs) == [1, 2, 3]
    b = collate([ds[0], ds[1]])
    nv = ds.mesh.nv
    assert b.times.shape == (2 * nv, 3) and b.y_velocity.shape == (2 * nv, 3, 2)
    f = ds.run_arrays(int(ds.run_positions[0])).fields
    np.testing.assert_allclose(ds[0].y_scalars[:, 2, 0].numpy(), f["thickness"][3] - f["thickness"][0], rtol=1e-5)
    np.testing.assert_allclose(ds[0].times[0].numpy(), [YTS, 2 * YTS, 3 * YTS])


def test_train_and_run_decoded_direct_mode(ens, tmp_path):
    out = train(ens, model="egcn", mode="direct", out=tmp_path / "d.pt", epochs=3, hidden=8, layers=1,
                batch_size=2, progress=False, lr=3e-3)
    ck = load_checkpoint(out)
    assert isinstance(ck.model, EGCNDirect) and ck.model.config["decoder"] == "increment"
    assert float(ck.output_normalizer.scalar_mean[0]) == 0.0   # increments: scaled, never shifted
    st = read_model(make_square_shelf_md(6, 6), "TransientSolution")
    ts = st.timestepping
    st = st.replace(timestepping=type(ts)(start_time=0.0, final_time=3 * YTS, time_step=YTS / 12,
                                          interp_forcing=1), output_frequency=12)
    pred = rollout_direct(ck, st, [0.0, YTS])
    np.testing.assert_array_equal(pred[0]["thickness"], st.geometry.thickness)   # t = 0: the initial state
    np.testing.assert_array_equal(pred[0]["vx"], st.vx)
    res = direct_transient_many(ck, [st, st])
    assert [s["step"] for s in res[0].steps] == [1, 12, 24, 36]
    info = res[0].info
    assert info["graphs_evaluated"] == 2 and info["decoded_times"] == 8   # one trunk pass per member
    np.testing.assert_allclose(res[0].steps[-1]["Thickness"], res[1].steps[-1]["Thickness"])


def test_evaluate_decoded_direct_checkpoint(ens, tmp_path):
    from issm_emulator.learning.evaluate import evaluate

    out = train(ens, model="egcn", mode="direct", out=tmp_path / "d.pt", epochs=2, hidden=8, layers=1,
                batch_size=2, progress=False)
    res = evaluate(out, ens, "test", out_dir=tmp_path / "ev", plots=False)
    assert res.method == "direct-decoded"
    from issm_emulator.learning.dataset import DirectDataset
    from issm_emulator.learning.evaluate import _rollout_states

    ds = DirectDataset(ens, "test")
    state = _rollout_states(ds)[0]
    run = res.runs[0]
    times = [(t - float(state.timestepping.start_time) / YTS) * YTS + state.timestepping.start_time
             for t in run.time]
    pred = rollout_direct(out, state, times)
    # the evaluation's predictions are the runtime's (same trunk pass and decoder)
    np.testing.assert_allclose(run.pred["thickness"], np.stack([p["thickness"] for p in pred]), rtol=1e-5)
