"""ISSM file formats: .arch archives and .exp outlines."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from issm_emulator.issm.formats import ArchiveFormatError, read_arch, read_exp, write_arch, write_exp


def test_arch_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    recs = {"s": 3.25, "v": rng.normal(size=7), "m": rng.normal(size=(4, 3)), "i": np.arange(1, 7.0).reshape(2, 3)}
    p = tmp_path / "a.arch"
    write_arch(p, recs)
    back = read_arch(p)
    assert list(back) == list(recs)
    assert isinstance(back["s"], float) and back["s"] == 3.25
    assert back["v"].shape == (7, 1) and np.array_equal(back["v"][:, 0], recs["v"])
    assert np.array_equal(back["m"], recs["m"]) and np.array_equal(back["i"], recs["i"])
    # column-major on disk: the first values after the header are the first column
    write_arch(p, {"m": recs["m"]})
    raw = p.read_bytes()
    assert struct.unpack(">2d", raw[13 + 16:13 + 32]) == (recs["m"][0, 0], recs["m"][1, 0])


def test_arch_length_fields_match_issm(tmp_path):
    p = tmp_path / "b.arch"
    write_arch(p, {"Archive1_field1": np.ones((5, 1)), "Archive1_field2": 2.0})
    raw = p.read_bytes()
    assert struct.unpack(">iii", raw[:12]) == (8 + 15, 1, 15)
    assert struct.unpack(">iiii", raw[27:43]) == (12 + 40, 3, 5, 1)


def test_arch_truncated_and_bad_type(tmp_path):
    p = tmp_path / "c.arch"
    write_arch(p, {"x": np.ones(4)})
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ArchiveFormatError, match="truncated"):
        read_arch(p)
    p.write_bytes(struct.pack(">iii", 9, 1, 1) + b"x" + struct.pack(">ii", 12, 7))
    with pytest.raises(ArchiveFormatError, match="unknown data type 7"):
        read_arch(p)


def test_read_real_archive_matches_pyissm(shared_data_dir):
    from pyissm.tools.archive import arch_read

    f = shared_data_dir / "archives" / "Archive101.arch"
    recs = read_arch(f)
    assert len(recs) == 13
    assert recs["Archive101_field1"].shape == (340, 1)
    assert isinstance(recs["Archive101_field8"], float)
    assert recs["Archive101_field8"] == pytest.approx(-6365215.283, rel=1e-9)
    ref = np.asarray(arch_read(str(f), "Archive101_field2")).ravel()
    assert np.array_equal(ref, recs["Archive101_field2"].ravel())



def test_rewrite_real_archive_byte_identical(shared_data_dir, tmp_path):
    f = shared_data_dir / "archives" / "Archive208.arch"
    q = tmp_path / "r.arch"
    write_arch(q, read_arch(f))
    assert q.read_bytes() == f.read_bytes()


def test_read_exp_square(shared_data_dir):
    cs = read_exp(shared_data_dir / "exp" / "Square.exp")
    assert len(cs) == 1 and cs[0]["name"] == "domainoutline" and cs[0]["closed"]
    assert np.array_equal(cs[0]["x"], [0, 1e6, 1e6, 0, 0]) and np.array_equal(cs[0]["y"], [0, 0, 1e6, 1e6, 0])
    isl = read_exp(shared_data_dir / "exp" / "PigIslands.exp")
    assert [c["x"].size for c in isl] == [7, 9, 7, 8, 7]


def test_exp_round_trip(tmp_path):
    cs = [{"name": "a", "x": np.array([0.0, 1.5, 2.0]), "y": np.array([0.0, 1.0, -3.25]), "closed": True},
          {"name": "b", "x": np.array([5.0, 6.0]), "y": np.array([1.0, 2.0])}]
    p = tmp_path / "o.exp"
    write_exp(p, cs)
    back = read_exp(p)
    assert [c["name"] for c in back] == ["a", "b"]
    assert back[0]["closed"] and back[0]["x"].size == 4 and back[0]["x"][-1] == 0.0
    assert not back[1]["closed"] and np.array_equal(back[1]["y"], [1.0, 2.0])


def test_exp_bad_file(tmp_path):
    from issm_emulator.issm.formats import ExpFormatError

    p = tmp_path / "bad.exp"
    p.write_text("## Name:x\n## Icon:0\n# Points Count Value\n3 1.\n# X pos Y pos\n0 0\n1 1\n")
    with pytest.raises(ExpFormatError, match="announces 3 points"):
        read_exp(p)
