"""Safe files: atomic writes with the user's normal file permissions, and a cheap check that a NetCDF file
is one and is complete.

:func:`atomic_write` writes a file through a temporary file in the same folder (``mkstemp``),
fsync and :func:`os.replace`, so readers see the old file or the complete new one, and an error leaves no
temporary file and the old file untouched. ``mkstemp`` creates its file ``0600``; :func:`apply_user_mode`
gives it ``0o666 & ~umask`` (what ``open()`` would give), so checkpoints and data files come out with the
permissions the user's other files get. Every ``mkstemp``-based writer of the package goes through here.

:func:`check_netcdf` reads the first bytes of a file and refuses (:class:`~issm_emulator.errors.DataFileError`
naming the file) one that is not NetCDF (classic or HDF5-based) or an HDF5 file shorter than the end of
file its superblock records (a truncated copy or an interrupted write), before the NetCDF library reports
a bare "NetCDF: HDF error" on some later read.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from issm_emulator.errors import DataFileError

__all__ = ["apply_user_mode", "atomic_write", "check_netcdf", "user_file_mode"]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the system tells it (Linux), else by setting and
    restoring it under a lock."""
    try:
        with open("/proc/self/status") as fh:
            m = re.search(r"^Umask:\s*([0-7]+)", fh.read(), re.MULTILINE)
        if m:
            return int(m.group(1), 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def user_file_mode() -> int:
    """The mode a new regular file gets from ``open()``: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def apply_user_mode(target: int | str | os.PathLike) -> None:
    """Give the file (an open descriptor or a path) :func:`user_file_mode`; call it on ``mkstemp`` files."""
    if isinstance(target, int):
        os.fchmod(target, user_file_mode())
    else:
        os.chmod(target, user_file_mode())


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path`` (folders created), give it the user's
    file mode, fsync it and rename it to ``path``; on any failure the old file is left as it was and the
    temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.close(fd)
        write(tmp)
        apply_user_mode(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_end_of_file(head: bytes, at: int) -> int | None:
    """The end-of-file address an HDF5 superblock at offset ``at`` of ``head`` records (None: unknown)."""
    version = head[at + 8]
    if version in (0, 1):  # base, free-space, end-of-file and driver addresses after 24 (28) bytes
        size, base_at = head[at + 13], at + (24 if version == 0 else 28)
    elif version in (2, 3):  # base, superblock-extension and end-of-file addresses after 12 bytes
        size, base_at = head[at + 9], at + 12
    else:
        return None
    eof_at = base_at + 2 * size
    if size not in (2, 4, 8) or eof_at + size > len(head):
        return None
    base = int.from_bytes(head[base_at:base_at + size], "little")
    eof = int.from_bytes(head[eof_at:eof_at + size], "little")
    if eof == (1 << (8 * size)) - 1:  # the undefined address
        return None
    return base + eof


def check_netcdf(path: str | os.PathLike) -> Path:
    """``path`` if it starts as a NetCDF file (classic ``CDF`` or HDF5) and, for HDF5, is as long as its
    superblock says; else :class:`~issm_emulator.errors.DataFileError` naming it (missing files raise
    :class:`FileNotFoundError`)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(2048)
    size = path.stat().st_size
    if head[:3] == b"CDF" and len(head) >= 4 and head[3] in (1, 2, 5):
        return path
    for at in (0, 512, 1024):  # the superblock may follow a user block of 512 * 2^k bytes
        if head[at:at + 8] == _HDF5_SIGNATURE and len(head) >= at + 64:
            eof = _hdf5_end_of_file(head, at)
            if eof is not None and size < eof:
                raise DataFileError(path, f"truncated NetCDF file ({size} of its {eof} bytes); it was cut short "
                                    "(an interrupted copy or write): copy or generate it again")
            return path
    if not head:
        raise DataFileError(path, "empty file, expected NetCDF")
    raise DataFileError(path, "not a NetCDF file (neither NetCDF classic nor NetCDF-4/HDF5)")
