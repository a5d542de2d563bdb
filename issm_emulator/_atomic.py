"""Atomic file writes with the user's normal file permissions.

One job: :func:`atomic_write` writes a file through a temporary file in the same folder (``mkstemp``),
fsync and :func:`os.replace`, so readers see the old file or the complete new one, and an error leaves no
temporary file and the old file untouched. ``mkstemp`` creates its file ``0600``; :func:`apply_user_mode`
gives it ``0o666 & ~umask`` (what ``open()`` would give), so checkpoints and data files come out with the
permissions the user's other files get. Every ``mkstemp``-based writer of the package goes through here.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["apply_user_mode", "atomic_write", "user_file_mode"]

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
