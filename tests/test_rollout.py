"""Emulator rollouts (issm_emulator.solvers.emulator.step/direct): direct and step modes on a tiny mesh with tiny networks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from issm_emulator.errors import EmulatorDivergedError
from issm_emulator.graph import mesh_graph
from issm_emulator.issm.adapter import read_model
from issm_emulator.nn import Normalizer, build_inputs, default_spec, model_from_spec
from issm_emulator.physics import diagnostics
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers.emulator.checkpoint import CheckpointMismatchError, make_manifest, save_checkpoint
from issm_emulator.solvers.emulator.direct import direct_transient_many, rollout_direct
from issm_emulator.solvers.emulator.inputs import feature_arrays
from issm_emulator.solvers.emulator.domain import domain_from_states
from issm_emulator.solvers.emulator.step import rollout_step, rollout_step_many
from issm_emulator.state import YTS_DEFAULT
from tests.modelfactory import make_square_shelf_md

YTS = YTS_DEFAULT
MELT_RANGE = (0.0, 20.0 / YTS)  # m/s
TIME_RANGE = (0.0, 10.0 * YTS)  # s


def make_checkpoint(path, arch: str, mode: str, state, *, seed: int = 0, dtype=torch.float32,
                    speed_myr: float = 100.0, parameters=("melt_rate",), nan: bool = False,
                    moving_front: bool = False, domain: bool = True):
    """A checkpoint of a randomly initialised tiny network (hidden 8, 2 layers) with normalisers fitted on
    the inputs of ``state`` and on synthetic targets (velocity of RMS ``speed_myr``, the state's H); its
    applicability domain is computed from ``state`` (``domain=False``: none, as older checkpoints)."""
    spec = default_spec(mode, parameters=parameters, moving_front=moving_front)
    torch.manual_seed(seed)
    model = model_from_spec(arch, spec, hidden=8, n_layers=2).to(dtype)
    if nan:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    g = mesh_graph(state.mesh)
    nv = state.numberofvertices
    geo = state.geometry
    arrays = feature_arrays(
        state, thickness=geo.thickness, surface=geo.surface, base=geo.base, bed=geo.bed,
        ocean_levelset=state.masks.ocean_levelset, ice_levelset=state.masks.ice_levelset, vx=state.vx,
        vy=state.vy, smb=np.zeros(nv), melt_rate=np.full(nv, 5.0 / YTS),
        elapsed=2.0 * YTS if mode == "direct" else None, edge_index=g.edge_index.numpy(),
        is_boundary=g.is_boundary.numpy())
    if "calving_threshold" in spec.scalars:
        arrays["calving_threshold"] = 1e5
    s, v = build_inputs(spec, P1Mesh.from_mesh(state.mesh), dtype=torch.float64, **arrays)
    v = v.clone()
    if "velocity" in spec.vectors:  # direct mode: the initial velocity channel, not all zero
        v[:, spec.vectors.index("velocity")] = torch.randn(nv, 2, dtype=torch.float64) * 50.0 / YTS
    norm_in = Normalizer(spec.scalars, spec.vectors).fit(s, v)
    rng = np.random.default_rng(seed)
    vel_t = torch.tensor(rng.normal(size=(nv, 1, 2)) * speed_myr / YTS)
    out_s = torch.tensor(np.asarray(geo.thickness, float))[:, None].repeat(1, len(spec.scalar_outputs))
    norm_out = Normalizer(spec.scalar_outputs, ("velocity",)).fit(out_s, vel_t)
    ranges = {p: (MELT_RANGE if p == "melt_rate" else (5e4, 2e5)) for p in parameters}
    if mode == "direct":
        ranges["time"] = TIME_RANGE
    manifest = make_manifest(spec, mode, ranges, arch=arch)
    if domain:
        manifest["domain"] = domain_from_states([state], mode=mode)
    return save_checkpoint(path, model, manifest, norm_in, norm_out)


@pytest.fixture(scope="module")
def shelf_state():
    return read_model(make_square_shelf_md(6, 6), "TransientSolution")


def _segments(state) -> np.ndarray:
    """(nseg, 5) [x1, y1, x2, y2, element] of the boundary, counter-clockwise (outward normal on the right)."""
    seg = np.asarray(state.mesh.segments)
    x, y = state.mesh.x, state.mesh.y
    return np.column_stack([x[seg[:, 0]], y[seg[:, 0]], x[seg[:, 1]], y[seg[:, 1]], seg[:, 2]]).astype(float)


@pytest.mark.parametrize("arch", ["egcn", "gcn", "cnn"])
def test_step_mode_conserves_mass(tmp_path, shelf_state, arch):
    """No SMB, no melt: V_k - V_{k-1} = -dt oint H_k u_k.n ds at every step (implicit Euler)."""
    ck = make_checkpoint(tmp_path / "s.pt", arch, "step", shelf_state, speed_myr=300.0)
    st = shelf_state.replace(requested_outputs=("default", "IceVolume"))
    res = rollout_step(ck, st)
    assert [s["step"] for s in res.steps] == [1, 2, 3]
    np.testing.assert_allclose([s["time"] for s in res.steps], [YTS, 2 * YTS, 3 * YTS])
    pm = P1Mesh.from_mesh(st.mesh)
    seg = _segments(st)
    rho = st.materials.rho_ice
    vol = [float(np.sum(np.abs(pm.area) * pm.element_mean(st.geometry.thickness)))]
    for s in res.steps:
        assert s["Thickness"].min() > st.masstransport.min_thickness  # no floor: pure transport
        vol.append(s["IceVolume"])
        flux = diagnostics.mass_flux(pm, seg, s["Thickness"], s["Vx"], s["Vy"], rho, issm_point_values=False)
        dv = vol[-1] - vol[-2]
        assert abs(flux) > 0
        np.testing.assert_allclose(dv, -YTS * flux / rho, rtol=1e-9, atol=1e-12 * vol[0])
    # the thickness changed: the network's velocity did drive the transport
    assert not np.allclose(res.steps[-1]["Thickness"], st.geometry.thickness)


def test_step_mode_any_time_step_and_duration(tmp_path, shelf_state):
    ck = make_checkpoint(tmp_path / "s.pt", "egcn", "step", shelf_state)
    ts = shelf_state.timestepping
    st = shelf_state.replace(timestepping=type(ts)(start_time=0.5 * YTS, final_time=1.6 * YTS,
                                                   time_step=0.25 * YTS, interp_forcing=1),
                             output_frequency=2)
    res = rollout_step(ck, st)
    # steps 1..5 end at 0.75, 1.0, 1.25, 1.5, 1.6 yr; outputs at 1, 2, 4 and the last (5)
    assert [s["step"] for s in res.steps] == [1, 2, 4, 5]
    np.testing.assert_allclose([s["time"] / YTS for s in res.steps], [0.75, 1.0, 1.5, 1.6])
    for s in res.steps:
        assert s["Vx"].shape == (st.numberofvertices,) and np.all(np.isfinite(s["Thickness"]))


def test_direct_mode_batched_over_times(tmp_path, shelf_state):
    ck = make_checkpoint(tmp_path / "d.pt", "egcn", "direct", shelf_state)
    times = np.array([0.5, 1.0, 2.0, 3.0]) * YTS
    full = rollout_direct(ck, shelf_state, times)
    one = rollout_direct(ck, shelf_state, times, batch_size=1)
    assert [p["time"] for p in full] == list(times)
    for a, b in zip(full, one):
        assert set(a) == {"time", "vx", "vy", "thickness"}
        for k in ("vx", "vy", "thickness"):
            assert a[k].shape == (shelf_state.numberofvertices,)
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-12)
    # time is an input: the predictions differ between times
    assert not np.allclose(full[0]["thickness"], full[-1]["thickness"])


def test_direct_time_outside_training_range_warns(tmp_path, shelf_state):
    from issm_emulator.errors import ExtrapolationWarning

    ck = make_checkpoint(tmp_path / "d.pt", "gcn", "direct", shelf_state)
    with pytest.warns(ExtrapolationWarning, match=r"'time'.*training range"):
        rollout_direct(ck, shelf_state, [20.0 * YTS])


def test_nan_weights_raise_naming_the_step(tmp_path, shelf_state):
    ck = make_checkpoint(tmp_path / "n.pt", "egcn", "step", shelf_state, nan=True)
    with pytest.raises(EmulatorDivergedError, match="step 1") as exc:
        rollout_step(ck, shelf_state)
    assert exc.value.step == 1
    ck = make_checkpoint(tmp_path / "nd.pt", "cnn", "direct", shelf_state, nan=True)
    with pytest.raises(EmulatorDivergedError, match="step 1"):
        rollout_direct(ck, shelf_state, [YTS, 2 * YTS])


def test_mode_and_missing_feature_refused(tmp_path, shelf_state):
    ck = make_checkpoint(tmp_path / "d.pt", "egcn", "direct", shelf_state)
    with pytest.raises(CheckpointMismatchError, match="mode 'direct'"):
        rollout_step(ck, shelf_state)
    # a network that needs the von Mises calving threshold, on a model with default calving
    ck = make_checkpoint(tmp_path / "c.pt", "egcn", "step", shelf_state, parameters=("calving_threshold",))
    with pytest.raises(CheckpointMismatchError, match="calving_threshold"):
        rollout_step(ck, shelf_state)


def test_step_many_equals_single(tmp_path, shelf_state):
    ck = make_checkpoint(tmp_path / "s.pt", "gcn", "step", shelf_state)
    bf = shelf_state.basalforcings
    nv = shelf_state.numberofvertices
    states = [shelf_state.replace(basalforcings=type(bf)(kind="default",
                                                         groundedice_melting_rate=bf.groundedice_melting_rate,
                                                         floatingice_melting_rate=type(bf.groundedice_melting_rate)(
                                                             np.full(nv, m / YTS))))
              for m in (0.0, 5.0, 15.0)]
    many = rollout_step_many(ck, states)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        singles = [rollout_step(ck, s) for s in states]
    for a, b in zip(many, singles):
        for sa, sb in zip(a.steps, b.steps):
            for k in ("Vx", "Vy", "Thickness"):
                np.testing.assert_allclose(sa[k], sb[k], rtol=1e-5, atol=1e-9 * np.abs(sb[k]).max())
    # different melt gives different thickness
    assert not np.allclose(many[0].steps[-1]["Thickness"], many[2].steps[-1]["Thickness"])


def _front_state(calving_myr: float):
    """A 20 km square shelf whose front (ice level set = y - 14 km) calves at ``calving_myr``."""
    length = 2e4
    md = make_square_shelf_md(8, 8, length=length)
    md.transient.ismovingfront = 1
    md.calving.calvingrate = np.full(md.mesh.numberofvertices, calving_myr)
    md.mask.ice_levelset = md.mesh.y - 0.7 * length
    md.transient.requested_outputs = ["default", "IceVolume", "CalvingCalvingrate"]
    return read_model(md, "TransientSolution")


def test_step_mode_moving_front_retreats(tmp_path):
    st = _front_state(3000.0)  # 3 km/yr against a 2.9 km mesh spacing
    ck = make_checkpoint(tmp_path / "s.pt", "gcn", "step", st, speed_myr=200.0)
    res = rollout_step(ck, st)
    n_ice = [int((st.masks.ice_levelset < 0).sum())] + [int((s["MaskIceLevelset"] < 0).sum()) for s in res.steps]
    assert n_ice[-1] < n_ice[0] and all(a >= b for a, b in zip(n_ice, n_ice[1:]))
    vols = [s["IceVolume"] for s in res.steps]
    assert vols[-1] < vols[0]
    np.testing.assert_allclose(res.steps[0]["CalvingCalvingrate"] * YTS, 3000.0)
    # vertices left without ice get min_thickness, as ISSM
    last = res.steps[-1]
    e = np.asarray(st.mesh.elements)
    icy = np.zeros(st.numberofvertices, bool)
    icy[e[np.any(last["MaskIceLevelset"][e] < 0, axis=1)].ravel()] = True
    np.testing.assert_array_equal(last["Thickness"][~icy], st.masstransport.min_thickness)


def test_direct_mode_predicts_the_ice_levelset_when_the_front_moves(tmp_path):
    st = _front_state(0.0)
    ck = make_checkpoint(tmp_path / "d.pt", "egcn", "direct", st, moving_front=True)
    pred = rollout_direct(ck, st, [YTS, 2 * YTS])
    assert all(p["ice_levelset"].shape == (st.numberofvertices,) for p in pred)
    res = direct_transient_many(ck, [st])[0]
    assert [s["step"] for s in res.steps] == [1, 2, 3]
    np.testing.assert_allclose(res.steps[1]["MaskIceLevelset"], pred[1]["ice_levelset"])
