"""Ensemble -> torch datasets: stored initial/static fields, shapes, the direct and step (k-1 -> k) pairings,
collate, forcing ranges, the run cache and errors. A 5-run square-melt ensemble (26 vertices, 3 steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from issm_emulator.learning.dataset import DatasetError, DirectDataset, StepDataset, collate, make_dataset

YTS = 365.0 * 24 * 3600



def test_ensemble_stores_initial_and_static_fields(ens):
    with xr.open_dataset(ens, decode_times=False) as ds:
        for name in ("vx0", "vy0", "thickness0", "surface0", "base0", "ice_levelset0", "ocean_levelset0", "bed",
                     "friction_coefficient", "rheology_B", "smb", "floatingice_melting_rate", "spcvx", "spcvy"):
            assert ds[name].dims == ("run", "vertex"), name
            assert ds[name].attrs["units"]
        assert ds["vx0"].attrs["units"] == "m yr^-1" and ds["thickness0"].attrs["units"] == "m"
        assert ds["friction_coefficient"].attrs["friction_law"] == "budd"
        assert ds["start_time"].dims == ("run",) and float(ds["start_time"][0]) == 0.0
        melt = ds["floatingice_melting_rate"].values
        assert np.allclose(melt, ds["melt_rate"].values[:, None])  # the swept value, m/yr, every vertex
        # one year of thinning: the first output differs from the stored initial thickness
        assert not np.allclose(ds["thickness"].values[:, 0], ds["thickness0"].values)


def test_direct_dataset_shapes_and_inputs(ens):
    d = DirectDataset(ens, "train")
    with xr.open_dataset(ens, decode_times=False) as ds:
        train_pos = np.flatnonzero(np.isin(ds["melt_rate"].values, [5.0, 15.0]))
        assert d.run_positions.tolist() == train_pos.tolist()
        assert len(d) == 2 * 3 and d.spec.scalar_outputs == ("thickness",) and not d.moving_front
        nv = ds.sizes["vertex"]
        for i, (p, k) in enumerate(d.samples):
            s = d[i]
            assert s.scalars.shape == (nv, d.spec.n_scalars) and s.vectors.shape == (nv, d.spec.n_vectors, 2)
            assert s.y_velocity.shape == (nv, 2) and s.y_scalars.shape == (nv, 1)
            col = d.spec.scalars.index
            np.testing.assert_allclose(s.scalars[:, col("thickness")].numpy(), ds["thickness0"].values[p], rtol=1e-6)
            np.testing.assert_allclose(s.scalars[:, col("time")].numpy(), ds["time"].values[k - 1] * YTS, rtol=1e-6)
            np.testing.assert_allclose(s.scalars[:, col("melt_rate")].numpy(), ds["melt_rate"].values[p] / YTS,
                                       rtol=1e-6)
            np.testing.assert_allclose(s.y_velocity[:, 0].numpy(), ds["vx"].values[p, k - 1] / YTS, rtol=1e-6)
            np.testing.assert_allclose(s.y_scalars[:, 0].numpy(), ds["thickness"].values[p, k - 1], rtol=1e-6)
            assert int(s.run) == p and int(s.k) == k


def test_step_dataset_pairs_geometry_k_minus_1_with_velocity_k(ens):
    d = StepDataset(ens, "validation")
    assert d.spec.scalar_outputs == () and "time" not in d.spec.scalars
    assert "velocity" not in d.spec.vectors  # step mode: velocity from geometry, no velocity feedback
    with xr.open_dataset(ens, decode_times=False) as ds:
        p_val = int(np.flatnonzero(ds["melt_rate"].values == 10.0)[0])
        assert {p for p, _ in d.samples} == {p_val} and sorted(k for _, k in d.samples) == [1, 2, 3]
        col = d.spec.scalars.index
        for i, (p, k) in enumerate(d.samples):
            s = d[i]
            h_in = ds["thickness0"].values[p] if k == 1 else ds["thickness"].values[p, k - 2]
            np.testing.assert_allclose(s.scalars[:, col("thickness")].numpy(), h_in, rtol=1e-6)
            np.testing.assert_allclose(s.y_velocity[:, 1].numpy(), ds["vy"].values[p, k - 1] / YTS, rtol=1e-6)


def test_collate_batches_graphs(ens):
    d = make_dataset("step", ens, "train")
    b = collate([d[0], d[1], d[2]])
    nv = d.mesh.nv
    assert b.num_graphs == 3 and b.ptr.tolist() == [0, nv, 2 * nv, 3 * nv]
    assert b.scalars.shape == (3 * nv, d.spec.n_scalars) and b.edge_index.max() == 3 * nv - 1
    assert b.face.shape[1] == 3 * d.mesh.elements.shape[0] and b.k.tolist() == [d.samples[i][1] for i in range(3)]


def test_forcing_ranges_cover_the_split_only(ens):
    d = DirectDataset(ens, "train")
    r = d.forcing_ranges()
    assert r["melt_rate"] == pytest.approx((5.0 / YTS, 15.0 / YTS))
    assert r["time"] == pytest.approx((YTS, 3 * YTS))


def test_cache_is_bounded_and_all_split(ens):
    d = StepDataset(ens, None, cache_bytes=1)
    assert len(d.run_positions) == 5 and len(d) == 15
    for i in range(len(d)):
        d[i]
    assert len(d._cache) == 1
    assert torch.equal(d[0].scalars, StepDataset(ens, "all")[0].scalars)


def test_times_subset_and_errors(ens, tmp_path):
    d = DirectDataset(ens, "train", times=[2.0])
    assert sorted({k for _, k in d.samples}) == [2]
    assert sorted({k for _, k in StepDataset(ens, "train", time_stride=2).samples}) == [2]
    assert sorted({k for _, k in DirectDataset(ens, "train", times=[1.0, 2.0], time_stride=2).samples}) == [2]
    with pytest.raises(DatasetError, match="time_stride"):
        DirectDataset(ens, "train", time_stride=0)
    with pytest.raises(DatasetError, match="split must be"):
        DirectDataset(ens, "bogus")
    with pytest.raises(ValueError, match="mode"):
        make_dataset("both", ens)
    with xr.open_dataset(ens, decode_times=False) as ds:
        ds.drop_vars(["vx0", "bed"]).to_netcdf(tmp_path / "old.nc")
    with pytest.raises(DatasetError, match="vx0"):
        DirectDataset(tmp_path / "old.nc")
    with pytest.raises(FileNotFoundError):
        DirectDataset(tmp_path / "nothing")


def test_step_input_noise_is_smooth_consistent_and_reproducible(ens):
    clean = StepDataset(ens, "train")
    noisy = StepDataset(ens, "train", input_noise=20.0)
    p, k = clean.samples[1]
    a = clean.input_arrays(p, k)
    torch.manual_seed(5)
    b = noisy.input_arrays(p, k)
    dh = b["thickness"] - a["thickness"]
    ice = (a["ice_levelset"] < 0) & (a["thickness"] > 1.0)
    assert np.all(dh[~ice] == 0) and dh[ice].std() > 5.0
    floating = a["ocean_levelset"] < 0
    # flotation kept: (surface - base) is the new thickness, and floating ice moves base and surface together
    np.testing.assert_allclose(b["surface"] - b["base"], a["surface"] - a["base"] + dh, atol=1e-9)
    grounded = ~floating
    np.testing.assert_allclose(b["base"][grounded], a["base"][grounded])
    torch.manual_seed(5)
    np.testing.assert_array_equal(noisy.input_arrays(p, k)["thickness"], b["thickness"])   # seeded: same draw
    assert not np.array_equal(noisy.input_arrays(p, k)["thickness"], b["thickness"])       # next draw differs
    s_clean, _ = clean.inputs(a)
    s_noisy, _ = noisy.inputs(b)
    assert not torch.equal(s_clean, s_noisy)
    torch.testing.assert_close(noisy[0].y_velocity, clean[0].y_velocity)                  # targets unchanged
    with pytest.raises(DatasetError, match="input_noise"):
        StepDataset(ens, "train", input_noise=-1.0)


def test_step_noise_with_ssa_targets_solves_the_perturbed_geometry(ens):
    from issm_emulator.physics.ssa import solve_ssa

    clean = StepDataset(ens, "train")
    noisy = StepDataset(ens, "train", input_noise=30.0, noise_targets="ssa")
    torch.manual_seed(2)
    sample = noisy[1]
    p, k = noisy.samples[1]
    torch.manual_seed(2)
    arrays = noisy.input_arrays(p, k)
    st = noisy.run_state(p)
    f = noisy.run_arrays(p).fields
    ref = solve_ssa(st, thickness=arrays["thickness"], surface=arrays["surface"], base=arrays["base"],
                    ocean_levelset=arrays["ocean_levelset"], ice_levelset=arrays["ice_levelset"],
                    vx0=f["vx"][k], vy0=f["vy"][k])
    np.testing.assert_allclose(sample.y_velocity[:, 0].numpy(), ref.vx, rtol=1e-5, atol=1e-12)
    # a thicker or thinner shelf flows differently: the target moved off the clean one
    assert not torch.allclose(sample.y_velocity, clean[1].y_velocity)
    with pytest.raises(DatasetError, match="noise_targets"):
        StepDataset(ens, "train", input_noise=1.0, noise_targets="other")


def test_step_training_with_ssa_noise_runs(ens, tmp_path):
    from issm_emulator.learning.train import train

    out = train(ens, model="egcn", mode="step", out=tmp_path / "n.pt", epochs=2, hidden=8, layers=1, batch_size=2,
                progress=False, input_noise=20.0, noise_targets="ssa")
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

    tr = load_checkpoint(out).extra["training"]
    assert tr["input_noise"] == 20.0 and tr["noise_targets"] == "ssa"


def test_ssa_targets_are_extrapolated_into_the_ice_free_area_with_a_moving_front(ens, monkeypatch):
    # a moving-front ensemble's velocity outputs are extrapolated from the vertices of ice elements into the
    # ice-free area (transient.py, front_step): the SSA targets of noisy inputs must be too
    from issm_emulator.physics.fe import P1Mesh
    from issm_emulator.physics.levelset import extrapolate, ice_vertex_mask
    from issm_emulator.physics.ssa import solve_ssa

    noisy = StepDataset(ens, "train", input_noise=30.0, noise_targets="ssa", moving_front=True)
    p, k = noisy.samples[1]
    x = np.asarray(noisy.run_state(p).mesh.x, float)
    cut = np.quantile(x, 0.3)
    orig = StepDataset.input_arrays

    def with_front(self, position, kk):  # the ice ends at x = cut
        arrays = dict(orig(self, position, kk))
        arrays["ice_levelset"] = x - cut
        return arrays

    monkeypatch.setattr(StepDataset, "input_arrays", with_front)
    torch.manual_seed(2)
    sample = noisy[1]
    torch.manual_seed(2)
    arrays = noisy.input_arrays(p, k)
    st = noisy.run_state(p)
    f = noisy.run_arrays(p).fields
    pm = P1Mesh.from_mesh(st.mesh)
    ref = solve_ssa(st, thickness=arrays["thickness"], surface=arrays["surface"], base=arrays["base"],
                    ocean_levelset=arrays["ocean_levelset"], ice_levelset=arrays["ice_levelset"],
                    vx0=f["vx"][k], vy0=f["vy"][k], mesh=pm)
    known = ice_vertex_mask(arrays["ice_levelset"], pm.elements, pm.nv)
    assert known.any() and not known.all()
    got = sample.y_velocity.numpy().astype(float)
    np.testing.assert_allclose(got[known, 0], ref.vx[known], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(got[:, 0], extrapolate(pm, ref.vx, known), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(got[:, 1], extrapolate(pm, ref.vy, known), rtol=1e-5, atol=1e-12)


def test_ssa_noise_training_lowers_the_loss_on_perturbed_geometries(ens, tmp_path):
    """The rollout-training method of the published step weights, in a tiny deterministic run: two networks
    trained alike but for ``input_noise`` with ``noise_targets='ssa'``; on geometries perturbed as a rollout
    perturbs them (fixed draws, ``noise_seed``), with the stress balance of the perturbed geometry as the
    truth, the noise-trained network has the clearly lower loss."""
    from issm_emulator.learning.objective import batch_loss
    from issm_emulator.learning.train import train
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

    kw = {"model": "egcn", "mode": "step", "epochs": 25, "hidden": 16, "layers": 1, "batch_size": 2, "lr": 1e-2,
          "lr_decay": 1.0, "patience": None, "progress": False, "seed": 0, "calibrate_indicator": False}
    plain = load_checkpoint(train(ens, out=tmp_path / "plain.pt", **kw))
    noisy = load_checkpoint(train(ens, out=tmp_path / "noisy.pt", input_noise=60.0, noise_targets="ssa", **kw))
    probe = StepDataset(ens, None, input_noise=60.0, noise_targets="ssa", noise_seed=3)
    batch = collate([probe[i] for i in range(len(probe))])
    with torch.no_grad():
        loss_plain, loss_noisy = (float(batch_loss(c.model.eval(), batch, c.input_normalizer,
                                                    c.output_normalizer, ())) for c in (plain, noisy))
    assert loss_noisy < 0.8 * loss_plain, (loss_noisy, loss_plain)
