"""Atomic writes (issm_emulator._files): the user's file mode (0o666 & ~umask, not mkstemp's 0600), no
temporary file left on failure, the old file kept."""

from __future__ import annotations

import os

import pytest

from issm_emulator._files import atomic_write, user_file_mode


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_user_file_mode_follows_umask(umask):
    assert user_file_mode() == 0o666 & ~umask


def test_writers_use_the_users_mode(umask, tmp_path):
    import torch

    from issm_emulator.datasets.store import atomic_write_json
    from issm_emulator.solvers.emulator.checkpoint import atomic_torch_save

    want = 0o666 & ~umask
    paths = [atomic_write(tmp_path / "a.txt", lambda t: t.write_text("x")),
             atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "w.pt"),
             atomic_write_json({"a": 1}, tmp_path / "a.json")]
    with open(tmp_path / "plain.txt", "w") as fh:  # what open() gives
        fh.write("x")
    assert (os.stat(tmp_path / "plain.txt").st_mode & 0o777) == want
    for p in paths:
        assert (os.stat(p).st_mode & 0o777) == want, p


def test_failure_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, boom)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
