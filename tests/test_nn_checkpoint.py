"""Checkpoints (issm_emulator.solvers.emulator.checkpoint) and normalisation (issm_emulator.nn.normalizer)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial import Delaunay
from torch_geometric.data import Data

from issm_emulator import __version__
from issm_emulator.errors import ExtrapolationWarning
from issm_emulator.nn import FeatureSpec, Normalizer, default_spec, model_from_spec
from issm_emulator.solvers.emulator.checkpoint import (
    CheckpointCorruptedError,
    CheckpointMismatchError,
    check_manifest,
    content_sha256,
    load_checkpoint,
    make_manifest,
    save_checkpoint,
    update_manifest,
    value_range,
)
from issm_emulator.state import YTS_DEFAULT

F64 = torch.float64
SPEC = FeatureSpec(("thickness", "bed", "melt_rate", "time"), ("velocity", "surface_gradient"), ("thickness",))
MELT = (0.0, 70.0 / YTS_DEFAULT)  # 0-70 m/yr, as the seed's PIG runs
TIME = (0.0, 20.0 * YTS_DEFAULT)


def mesh_graph_data(n: int = 30, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 10e3, (n, 2))
    tri = Delaunay(p).simplices
    e = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1), axis=0)
    return Data(pos=torch.tensor(p, dtype=F64), edge_index=torch.from_numpy(np.concatenate([e, e[:, ::-1]]).T.copy()),
                face=torch.from_numpy(tri.T.copy()), num_nodes=n)


def fitted_normalizers(n: int = 30):
    torch.manual_seed(0)
    s = (torch.randn(n, 4, dtype=F64) * torch.tensor([300.0, 100.0, 1e-7, 1e8], dtype=F64)
         + torch.tensor([1000.0, -300.0, 1e-6, 3e8], dtype=F64))
    v = torch.randn(n, 2, 2, dtype=F64) * 1e-5
    norm_in = Normalizer(SPEC.scalars, SPEC.vectors).fit(s, v)
    norm_out = Normalizer(SPEC.scalar_outputs, ("velocity",)).fit(s[:, :1], v[:, :1])
    return s, v, norm_in, norm_out


@pytest.mark.parametrize("arch", ["egcn", "gcn", "cnn"])
def test_round_trip_same_outputs(tmp_path, arch):
    g = mesh_graph_data()
    s, v, norm_in, norm_out = fitted_normalizers()
    torch.manual_seed(1)
    model = model_from_spec(arch, SPEC, hidden=8, n_layers=2).double()
    manifest = make_manifest(SPEC, "direct", {"melt_rate": MELT, "time": TIME})
    path = save_checkpoint(tmp_path / "sub" / f"{arch}.pt", model, manifest, norm_in, norm_out,
                           extra={"epochs": 3, "val_loss": np.float64(0.5)})
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    ck = load_checkpoint(path)
    assert ck.mode == "direct" and ck.manifest["arch"] == arch and ck.extra == {"epochs": 3, "val_loss": 0.5}
    assert ck.spec == SPEC and not ck.model.training
    with torch.no_grad():
        o1 = model(g, *norm_in.encode(s, v))
        o2 = ck.model(g, *ck.input_normalizer.encode(s, v))
    assert o2["velocity"].dtype == F64  # float64 weights stay float64
    for key in o1:
        assert torch.equal(o1[key], o2[key])


def test_normaliser_statistics_are_stored(tmp_path):
    s, v, norm_in, norm_out = fitted_normalizers()
    model = model_from_spec("gcn", SPEC, hidden=4, n_layers=1)
    path = save_checkpoint(tmp_path / "m.pt", model, make_manifest(SPEC, "step", {"melt_rate": MELT, "time": TIME}),
                           norm_in, norm_out)
    raw = torch.load(path, weights_only=True)
    assert raw["input_normalizer"]["scalar_names"] == list(SPEC.scalars)
    assert np.allclose(raw["input_normalizer"]["scalar_mean"], s.mean(0).numpy())
    assert np.allclose(raw["input_normalizer"]["scalar_std"], s.std(0, unbiased=False).numpy())
    rms = v.square().sum(-1).mean(0).sqrt()
    assert np.allclose(raw["input_normalizer"]["vector_scale"], rms.numpy())
    assert raw["manifest"]["package_version"] == __version__
    assert raw["manifest"]["units"]["melt_rate"] == "m/s" and raw["manifest"]["units"]["velocity"] == "m/s"
    assert raw["manifest"]["forcing_ranges"]["melt_rate"] == list(MELT)
    ck = load_checkpoint(path)
    for name in ("scalar_mean", "scalar_std", "vector_scale"):
        assert torch.equal(getattr(ck.input_normalizer, name), getattr(norm_in, name))
        assert torch.equal(getattr(ck.output_normalizer, name), getattr(norm_out, name))


def test_normalizer_fit_streaming_encode_decode_and_equivariance():
    s, v, norm_in, _ = fitted_normalizers()
    streamed = Normalizer(SPEC.scalars, SPEC.vectors).fit([(s[:10], v[:10]), (s[10:], v[10:])])
    assert torch.allclose(streamed.scalar_mean, norm_in.scalar_mean)
    assert torch.allclose(streamed.scalar_std, norm_in.scalar_std)
    assert torch.allclose(streamed.vector_scale, norm_in.vector_scale)
    es, ev = norm_in.encode(s, v)
    assert torch.allclose(es.mean(0), torch.zeros(4, dtype=F64), atol=1e-10)
    assert torch.allclose(es.std(0, unbiased=False), torch.ones(4, dtype=F64))
    ds, dv = norm_in.decode(es, ev)
    assert torch.allclose(ds, s) and torch.allclose(dv, v)
    q = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=F64)
    assert torch.allclose(norm_in.encode(s, v @ q.T)[1], ev @ q.T)  # no mean shift: equivariant
    const = Normalizer(("a", "b"), ("w",)).fit(torch.tensor([[0.0, 3.0]] * 5), torch.zeros(5, 1, 2))
    assert const.scalar_std.tolist() == [1.0, 3.0] and const.vector_scale.tolist() == [1.0]
    with pytest.raises(ValueError, match="shape"):
        norm_in.encode(s[:, :3], v)


def test_manifest_mismatch_refused(tmp_path):
    manifest = make_manifest(SPEC, "direct", {"melt_rate": MELT, "time": TIME}, arch="egcn")
    check_manifest(manifest, SPEC, {"melt_rate": 1e-6, "time": 3e7}, mode="direct", arch="egcn")  # fits
    other = FeatureSpec(("thickness", "melt_rate", "bed", "time"), SPEC.vectors, SPEC.scalar_outputs)
    with pytest.raises(CheckpointMismatchError, match="scalar inputs"):
        check_manifest(manifest, other)
    with pytest.raises(CheckpointMismatchError, match="mode 'direct'"):
        check_manifest(manifest, SPEC, mode="step")
    with pytest.raises(CheckpointMismatchError, match="'egcn'"):
        check_manifest(manifest, SPEC, arch="gcn")
    with pytest.raises(CheckpointMismatchError, match=r"bed \[m\] from md.geometry.bed"):
        check_manifest(manifest, ["thickness", "melt_rate", "time", "velocity", "surface_gradient"])
    check_manifest(manifest, [*SPEC.scalars, *SPEC.vectors, "surface"])  # a superset is fine
    with pytest.raises(CheckpointMismatchError, match="md.basalforcings.floatingice_melting_rate"):
        check_manifest(manifest, SPEC, {"time": 1.0})
    bad_units = dict(manifest, units=dict(manifest["units"], thickness="km"))
    with pytest.raises(CheckpointMismatchError, match="units"):
        check_manifest(bad_units, SPEC)
    with pytest.raises(CheckpointMismatchError, match="format version"):
        check_manifest(dict(manifest, format_version=99), SPEC)
    with pytest.raises(ValueError, match="no training range"):
        make_manifest(SPEC, "direct", {"melt_rate": MELT})
    # saving refuses a network that does not fit the manifest
    _, _, norm_in, norm_out = fitted_normalizers()
    wrong = model_from_spec("gcn", default_spec("step"), hidden=4, n_layers=1)
    with pytest.raises(CheckpointMismatchError, match="manifest lists"):
        save_checkpoint(tmp_path / "x.pt", wrong, manifest, norm_in, norm_out)
    assert not list(tmp_path.iterdir())


def test_extrapolation_warning_names_parameter_and_range():
    manifest = make_manifest(SPEC, "direct", {"melt_rate": MELT, "time": TIME})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_manifest(manifest, SPEC, {"melt_rate": np.array([0.0, 35.0 / YTS_DEFAULT]), "time": 0.0})
    with pytest.warns(ExtrapolationWarning, match=r"'melt_rate'.*80 m/yr.*\[0 m/s \(0 m/yr\), .*70 m/yr\)\]"):
        check_manifest(manifest, SPEC, {"melt_rate": 80.0 / YTS_DEFAULT, "time": 0.0})
    with pytest.warns(ExtrapolationWarning, match=r"'time'.*25 yr"):
        check_manifest(manifest, SPEC, {"melt_rate": 1e-7, "time": 25 * YTS_DEFAULT})
    assert value_range([0.0, np.array([3.0, -1.0]), torch.tensor(2.0)]) == (-1.0, 3.0)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    _, _, norm_in, norm_out = fitted_normalizers()
    model = model_from_spec("gcn", SPEC, hidden=4, n_layers=1)
    manifest = make_manifest(SPEC, "step", {"melt_rate": MELT, "time": TIME})
    path = save_checkpoint(tmp_path / "m.pt", model, manifest, norm_in, norm_out)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, manifest, norm_in, norm_out)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_load_refuses_foreign_or_inconsistent_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError, match="not an issm-emulator checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    _, _, norm_in, norm_out = fitted_normalizers()
    model = model_from_spec("egcn", SPEC, hidden=4, n_layers=1, vector_hidden=2)
    path = save_checkpoint(tmp_path / "m.pt", model, make_manifest(SPEC, "direct", {"melt_rate": MELT, "time": TIME}),
                           norm_in, norm_out)
    raw = torch.load(path, weights_only=True)
    raw["model_config"]["hidden"] = 8  # weights no longer fit the configuration
    torch.save(raw, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointCorruptedError, match="tampered.pt: the checkpoint's content does not match"):
        load_checkpoint(tmp_path / "tampered.pt")
    raw["content_sha256"] = content_sha256(raw)  # re-sealed: the hash holds, the weights still do not fit
    torch.save(raw, tmp_path / "resealed.pt")
    with pytest.raises(CheckpointMismatchError, match="do not fit"):
        load_checkpoint(tmp_path / "resealed.pt")


def test_every_load_checks_the_content_hash(tmp_path):
    _, _, norm_in, norm_out = fitted_normalizers()
    model = model_from_spec("egcn", SPEC, hidden=4, n_layers=1, vector_hidden=2)
    path = save_checkpoint(tmp_path / "m.pt", model, make_manifest(SPEC, "direct", {"melt_rate": MELT, "time": TIME}),
                           norm_in, norm_out)
    assert load_checkpoint(path).content_sha256 == torch.load(path, weights_only=True)["content_sha256"]
    raw = torch.load(path, weights_only=True)
    name = next(k for k, v in raw["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    raw["state_dict"][name].view(-1)[:4] += 1e-3  # a few flipped weights
    torch.save(raw, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointCorruptedError, match="flipped.pt"):
        load_checkpoint(tmp_path / "flipped.pt")
    del raw["content_sha256"]
    torch.save(raw, tmp_path / "unsealed.pt")
    with pytest.raises(CheckpointCorruptedError, match="no content hash"):
        load_checkpoint(tmp_path / "unsealed.pt")
    # update_manifest re-seals: the new entry is hashed too
    update_manifest(path, {"domain": {"version": 1}})
    assert load_checkpoint(path).manifest["domain"] == {"version": 1}
