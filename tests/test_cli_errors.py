"""The command line answers a bad situation with one line naming the problem and a non-zero exit status,
never a traceback (``--debug`` shows it): a read-only output folder, a full disk, a truncated or non-NetCDF
input, ``--device cuda`` without CUDA, an unreachable dask scheduler."""

from __future__ import annotations

import errno
import os
import pathlib
import tempfile

import pytest
import torch
from click.testing import CliRunner

from issm_emulator.cli import describe_error, main

SQUARE = ["generate", "square-melt", "--melt-rates", "0", "--years", "1", "--workers", "0", "--no-progress"]


def _invoke(args, **kw):
    res = CliRunner().invoke(main, args, **kw)
    text = res.output
    assert res.exit_code not in (0, None), text
    assert "Traceback" not in text, text
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    last = text.strip().splitlines()[-1]
    assert last.startswith("Error: "), text
    return last


@pytest.fixture()
def read_only(tmp_path, monkeypatch):
    """A folder that cannot be written (chmod; as root, whose writes a mode does not stop, simulated)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return

    real_mkdir, real_mkstemp = pathlib.Path.mkdir, tempfile.mkstemp

    def mkdir(self, *a, **k):
        if str(self).startswith(str(folder) + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    def mkstemp(*a, dir=None, **k):
        if dir is not None and str(dir).startswith(str(folder)):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    yield folder


def test_read_only_output_folder(read_only, ens):
    line = _invoke(SQUARE + ["--out", str(read_only / "ens")])
    assert "permission denied" in line and str(read_only) in line
    line = _invoke(["train", "--data", str(ens), "--out", str(read_only / "m.pt"), "--epochs", "1", "--hidden", "4",
                    "--layers", "1", "--model", "gcn", "--no-progress"])
    assert "permission denied" in line and str(read_only) in line


def test_full_disk(tmp_path, monkeypatch, ens):
    import xarray as xr

    def full(self, path=None, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    line = _invoke(SQUARE + ["--out", str(tmp_path / "ens")])
    assert "No space left on device" in line
    monkeypatch.undo()

    def full_save(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_save)
    line = _invoke(["train", "--data", str(ens), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--hidden", "4",
                    "--layers", "1", "--model", "gcn", "--no-progress"])
    assert line == "Error: no space left on device (--debug shows the traceback)"


def test_truncated_and_non_netcdf_inputs(tmp_path, ens):
    data = ens.read_bytes()
    cut = tmp_path / "ensemble.nc"
    cut.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.txt"
    text.write_text("not an ensemble\n")
    for bad, problem in ((cut, "truncated NetCDF file"), (text, "not a NetCDF file")):
        for args in (["info", str(bad)], ["train", "--data", str(bad), "--out", str(tmp_path / "m.pt"),
                                          "--no-progress"]):
            line = _invoke(args)
            assert str(bad) in line and problem in line, line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(tmp_path, ens):
    line = _invoke(["train", "--data", str(ens), "--out", str(tmp_path / "m.pt"), "--device", "cuda",
                    "--no-progress"])
    assert "CUDA is not available" in line
    ckpt = tmp_path / "g.pt"
    CliRunner().invoke(main, ["train", "--data", str(ens), "--out", str(ckpt), "--epochs", "1", "--hidden", "4",
                              "--layers", "1", "--model", "gcn", "--no-progress"])
    line = _invoke(["evaluate", "--checkpoint", str(ckpt), "--data", str(ens), "--out", str(tmp_path / "ev"),
                    "--device", "cuda", "--no-plots"])
    assert "CUDA is not available" in line


def test_unreachable_dask_scheduler(tmp_path):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        line = _invoke(SQUARE + ["--out", str(tmp_path / "ens"), "--scheduler", "tcp://127.0.0.1:9"])
    assert "cannot connect to the dask scheduler 'tcp://127.0.0.1:9'" in line


def test_debug_shows_the_traceback(tmp_path, ens):
    text = tmp_path / "notes.txt"
    text.write_text("x")
    res = CliRunner().invoke(main, ["--debug", "info", str(text)])
    assert res.exit_code != 0 and res.exception is not None and "not a NetCDF file" in str(res.exception)
    res = CliRunner().invoke(main, ["--debug", "train", "--data", str(text), "--out", str(tmp_path / "m.pt")])
    assert res.exit_code != 0 and "Traceback" in res.output and "not a NetCDF file" in res.output


def test_describe_error_is_one_line():
    assert describe_error(OSError(errno.EROFS, "Read-only file system", "/x")) == "read-only file system: '/x'"
    assert describe_error(OSError(-101, "NetCDF: HDF error", "/e.nc")).startswith(
        "'/e.nc': cannot be read as NetCDF (NetCDF: HDF error)")
    assert describe_error(KeyError("a\nb")) == "KeyError: 'a\\nb'"
    assert "\n" not in describe_error(ValueError("two\nlines"))
