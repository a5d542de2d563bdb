"""GCN and CNN direct mode predict the change since the initial state (nn.increment.TimeInputIncrement): zero
increments at t = 0 with any weights, one stacked pass equal to one base pass per time, config round trip,
training on the tiny ensemble and the runtime / evaluation returning the initial state at t = 0 exactly;
``decoder=None`` keeps the seed's time-as-input network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import issm_emulator
from issm_emulator.issm.adapter import read_model
from issm_emulator.learning.dataset import DatasetError
from issm_emulator.learning.train import train
from issm_emulator.nn import CNN, DECODERS, GCN, CNNIncrement, GCNIncrement, TimeInputIncrement, build_model
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint
from issm_emulator.solvers.emulator.direct import direct_transient_many, rollout_direct
from tests.modelfactory import make_square_shelf_md

YTS = 365.0 * 24 * 3600
TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}
CLASSES = {"gcn": (GCNIncrement, GCN), "cnn": (CNNIncrement, CNN)}


def _graph(n=30, seed=0):
    from scipy.spatial import Delaunay
    from torch_geometric.data import Data

    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 5e3, (n, 2))
    tri = Delaunay(pts).simplices
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0).T
    return Data(pos=torch.tensor(pts, dtype=torch.float64), edge_index=torch.tensor(e),
                face=torch.tensor(np.ascontiguousarray(tri.T))), rng


def _model(arch):
    torch.manual_seed(0)
    m = build_model({"arch": arch, "n_scalars": 4, "n_vectors": 2, "scalar_outputs": ["thickness"], "hidden": 8,
                     "n_layers": 2, "decoder": "increment", "time_column": 3, "time_scale": 10 * YTS}).double()
    with torch.no_grad():  # the skip starts at zero: make it count too
        torch.nn.init.normal_(m.base.skip.weight)
    return m


@pytest.mark.parametrize("arch", ["gcn", "cnn"])
def test_zero_increment_at_t0_and_one_base_pass_per_time(arch):
    g, rng = _graph()
    m = _model(arch)
    assert isinstance(m, CLASSES[arch][0]) and m.decodes_time and DECODERS[(arch, "increment")] is type(m)
    s = torch.tensor(rng.normal(size=(30, 4)))
    v = torch.tensor(rng.normal(size=(30, 2, 2)))
    t = torch.tensor([0.0, 1 * YTS, 4 * YTS, 10 * YTS], dtype=torch.float64)
    out = m(g, s, v, t)
    assert out["velocity"].shape == (30, 4, 2) and out["thickness"].shape == (30, 4)
    assert torch.all(out["velocity"][:, 0] == 0) and torch.all(out["thickness"][:, 0] == 0)
    assert out["thickness"][:, 2].abs().max() > 0 and out["velocity"][:, 1].abs().max() > 0
    # the input time column is ignored: tau = t / T replaces it
    s2 = s.clone()
    s2[:, 3] += 5.0
    assert torch.equal(m(g, s2, v, t)["thickness"], out["thickness"])
    # the stacked pass equals one pass of the base network per time, times tau (scalars) or [tau > 0]
    for k in range(t.numel()):
        tau = float(t[k]) / (10 * YTS)
        sk = s.clone()
        sk[:, 3] = tau
        ref = m.base(g, sk, v)
        torch.testing.assert_close(out["thickness"][:, k], tau * ref["thickness"])
        torch.testing.assert_close(out["velocity"][:, k], float(tau > 0) * ref["velocity"])


@pytest.mark.parametrize("arch", ["gcn", "cnn"])
def test_batches_per_vertex_times_and_member_codes(arch):
    from torch_geometric.data import Batch

    g, rng = _graph()
    m = _model(arch)
    m.max_stacked_times = 2  # the times are decoded in several stacked passes
    s = torch.tensor(rng.normal(size=(30, 4)))
    v = torch.tensor(rng.normal(size=(30, 2, 2)))
    t = torch.tensor([0.0, 0.5 * YTS, 3 * YTS], dtype=torch.float64)
    one, half = m(g, s, v, t), m(g, s, v, 0.5 * t)
    b = Batch.from_data_list([g, g])
    sb, vb = torch.cat([s, s]), torch.cat([v, v])
    tb = torch.cat([t[None].expand(30, -1), 0.5 * t[None].expand(30, -1)])   # (n, K): each graph its times
    both = m(b, sb, vb, tb)
    torch.testing.assert_close(both["thickness"], torch.cat([one["thickness"], half["thickness"]]))
    torch.testing.assert_close(both["velocity"], torch.cat([one["velocity"], half["velocity"]]))
    codes = m.member_codes(m.encode(b, sb, vb), 2)      # the runtime's split of a batch code
    assert len(codes) == 2
    torch.testing.assert_close(m.decode(codes[1], 0.5 * t)["thickness"], half["thickness"])


@pytest.mark.parametrize("arch", ["gcn", "cnn"])
def test_config_round_trip(arch):
    m = _model(arch)
    m2 = build_model(m.config)
    assert type(m2) is type(m) and m2.config == m.config and m.config["decoder"] == "increment"
    m2.load_state_dict(m.state_dict())
    m2.reset_parameters()
    with pytest.raises(ValueError, match="time_column"):
        build_model({**m.config, "time_column": 4})
    with pytest.raises(ValueError, match="time_scale"):
        build_model({**m.config, "time_scale": 0.0})
    plain = build_model({k: v for k, v in m.config.items() if k not in ("decoder", "time_column", "time_scale")})
    assert type(plain) is CLASSES[arch][1] and not getattr(plain, "decodes_time", False)


def _state():
    st = read_model(make_square_shelf_md(6, 6), "TransientSolution")
    ts = st.timestepping
    return st.replace(timestepping=type(ts)(start_time=0.0, final_time=3 * YTS, time_step=YTS / 12,
                                            interp_forcing=1), output_frequency=12)


@pytest.mark.parametrize("arch", ["gcn", "cnn"])
def test_train_run_and_evaluate_increment_direct_mode(arch, ens, tmp_path):
    from issm_emulator.learning.evaluate import evaluate

    out = train(ens, model=arch, mode="direct", out=tmp_path / "d.pt", epochs=2, lr=3e-3, time_stride=2, **TINY)
    ck = load_checkpoint(out)
    assert isinstance(ck.model, TimeInputIncrement) and ck.model.decodes_time
    assert ck.model.config["decoder"] == "increment" and ck.extra["training"]["decoder"] == "increment"
    assert float(ck.output_normalizer.scalar_mean[0]) == 0.0   # increments: scaled, never shifted
    assert ck.manifest["indicator"]["split"] == "validation"     # the error indicator was calibrated
    st = _state()
    pred = rollout_direct(ck, st, [0.0, YTS])
    np.testing.assert_array_equal(pred[0]["thickness"], st.geometry.thickness)   # t = 0: the initial state
    np.testing.assert_array_equal(pred[0]["vx"], st.vx)
    assert np.all(np.isfinite(pred[1]["thickness"]))
    res = direct_transient_many(ck, [st, st])
    assert [s["step"] for s in res[0].steps] == [1, 12, 24, 36]
    info = res[0].info
    assert info["decoded_times"] == 8 and info["graphs_evaluated"] == 8   # one base pass per member and time
    # stacked passes: ceil(4 times / times per pass) per member (GCN on the CPU: 1 time a pass, CNN: 4)
    assert info["forward_passes"] == 2 * -(-4 // ck.model.times_per_pass("cpu"))
    assert ck.model.times_per_pass("cpu") == {"gcn": 1, "cnn": 4}[arch]
    np.testing.assert_allclose(res[0].steps[-1]["Thickness"], res[1].steps[-1]["Thickness"])
    ev = evaluate(out, ens, "test", out_dir=tmp_path / "ev", plots=False)
    assert ev.method == "direct-decoded"
    from issm_emulator.learning.dataset import DirectDataset
    from issm_emulator.learning.evaluate import _rollout_states

    state = _rollout_states(DirectDataset(ens, "test"))[0]
    run = ev.runs[0]
    t0 = float(state.timestepping.start_time)
    times = [t0 + (t - t0 / YTS) * YTS for t in run.time]
    rt = rollout_direct(out, state, [t0, *times])
    np.testing.assert_array_equal(rt[0]["thickness"], state.geometry.thickness)
    # the evaluation's predictions are the runtime's (same passes, same increments)
    np.testing.assert_allclose(run.pred["thickness"], np.stack([p["thickness"] for p in rt[1:]]), rtol=1e-5)


def test_solve_direct_mode_with_a_gcn_increment_checkpoint(ens, tmp_path):
    out = train(ens, model="gcn", mode="direct", out=tmp_path / "g.pt", epochs=1, calibrate_indicator=False, **TINY)
    md = make_square_shelf_md(6, 6)
    issm_emulator.solve(md, "Transient", solver="gcn", mode="direct", checkpoint=str(out), device="cpu",
                        allow_extrapolation=True)  # a 200 km mesh, trained on 250 km
    steps = md.results.TransientSolution.steps
    assert len(steps) >= 2 and all(np.all(np.isfinite(np.asarray(s.Thickness))) for s in steps)


@pytest.mark.parametrize("arch", ["gcn", "cnn"])
def test_decoder_none_keeps_time_as_input(arch, ens, tmp_path):
    out = train(ens, model=arch, mode="direct", out=tmp_path / "n.pt", epochs=1, decoder=None,
                calibrate_indicator=False, **TINY)
    ck = load_checkpoint(out)
    assert type(ck.model) is CLASSES[arch][1] and not getattr(ck.model, "decodes_time", False)
    assert "decoder" not in ck.model.config and ck.extra["training"]["decoder"] is None
    with pytest.raises(DatasetError, match="decoder None"):   # fine-tuning keeps the parameterisation
        train(ens, model=arch, mode="direct", out=tmp_path / "t.pt", epochs=1, init_from=out, **TINY)
    with pytest.raises(ValueError, match="direct-mode option"):
        train(ens, model=arch, mode="step", out=tmp_path / "s.pt", epochs=1, decoder="increment", **TINY)
