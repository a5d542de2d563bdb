"""Safety of an ensemble's output folder: one writer at a time, one spec per folder, unreadable run files
set aside, no orphaned workers, no sweep larger than the disk.

:func:`guarded` wraps :func:`~issm_emulator.datasets.runner.generate_ensemble`; before any run starts it

* takes an exclusive lock on the folder (:func:`folder_lock`, the file ``OUT/.generate.lock`` holding the
  holder's pid, host and start time). A second writer gets :class:`FolderLockedError` naming the holder,
  so finished runs are never overwritten by a concurrent generation. The lock is an ``flock`` that the
  system releases when its process dies (even by SIGKILL); a lock file left by a dead process is taken
  over with a warning naming it;
* refuses a spec whose provenance (scenario, parameter, units, scenario options, years, time step, output
  frequency, solver and its options) differs from the folder's ``spec.json`` (:func:`check_spec`,
  :class:`SpecMismatchError` listing the differences). The values may change: runs are matched by value;
* refuses a sweep of more than ``max_runs`` runs (default :data:`MAX_RUNS`) or whose files would not fit in
  the free disk space (:func:`check_size`; :class:`SweepTooLargeError`, override with ``max_runs=`` and
  ``check_disk=False``, on the command line ``--max-runs`` and ``--ignore-disk-space``);
* reads every existing run file of the spec in full and moves an unreadable one (a truncated or damaged
  NetCDF) to ``runs/corrupt/`` with a warning naming it, so the run is recomputed
  (:func:`set_aside_unreadable`);
* turns SIGTERM into :class:`SystemExit` for its duration (main thread only), so the local worker pool is
  terminated as on Ctrl-C.

Local workers call :func:`die_with_parent` when they start: they exit when the generating process dies,
however it dies (Linux ``PR_SET_PDEATHSIG`` plus a watchdog thread elsewhere); :func:`stop_workers` kills a
pool's workers at once when the generation is interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from issm_emulator.errors import IssmEmulatorError

from .layout import FIELDS, RUNS_DIR, SPEC_FILE, run_file_for, run_file_name, utc_now
from .spec import EnsembleError, EnsembleSpec
from .store import find_runs
from .sweeps import ensemble_spec

__all__ = [
    "LOCK_FILE",
    "MAX_RUNS",
    "FolderLockedError",
    "SpecMismatchError",
    "SweepTooLargeError",
    "check_size",
    "check_spec",
    "die_with_parent",
    "estimate_run_bytes",
    "folder_lock",
    "guarded",
    "set_aside_unreadable",
    "stop_workers",
]

LOCK_FILE = ".generate.lock"  #: the lock file in the output folder
CORRUPT_DIR = "corrupt"  #: sub-folder of ``runs/`` where unreadable run files are moved
MAX_RUNS = 10_000  #: default largest number of runs of one generation (``max_runs=`` / ``--max-runs``)


class FolderLockedError(EnsembleError):
    """Another process is generating into the same output folder."""


class SpecMismatchError(EnsembleError):
    """The output folder holds an ensemble of another spec."""


class SweepTooLargeError(EnsembleError):
    """The sweep has more runs than allowed or would not fit in the free disk space."""


# ------------------------------------------------------------------------------------------------ lock
def _holder_text(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, since {info.get('since', '?')}"
            + (f" ({info['command']})" if info.get("command") else ""))


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text() or "{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


def _lock_fd(fd: int) -> bool:
    """Try an exclusive non-blocking lock on ``fd``; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the lock file's existence is the lock
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


@contextlib.contextmanager
def folder_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of the output folder ``out`` (created) for the block.

    Raises :class:`FolderLockedError` naming the holder (pid, host, start time) when another process holds
    it. A lock file whose process is gone (killed) is taken over with a :class:`RuntimeWarning`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now(),
          "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:6]))}
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _lock_fd(fd):
            os.close(fd)
            info = _read_info(path)
            raise FolderLockedError(f"{out} is being written by another generation ({_holder_text(info)}); "
                                    "wait for it to finish or use another output folder")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by the previous holder between our open and our lock
            break
        os.close(fd)
    old = _read_info(path)
    if old.get("pid") is not None and (old.get("pid"), old.get("host")) != (me["pid"], me["host"]):
        state = "no longer running" if old.get("host") != me["host"] or not _pid_alive(old["pid"]) else \
            "gone (its lock was released)"
        warnings.warn(f"{out}: taking over the lock left by an interrupted generation ({_holder_text(old)}, "
                      f"{state}); its finished runs are kept", RuntimeWarning, stacklevel=3)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # releases the flock


# ------------------------------------------------------------------------------------------------ spec
def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"]
    return []


def check_spec(spec: EnsembleSpec, out: str | os.PathLike) -> None:
    """Refuse ``spec`` when the folder's ``spec.json`` records another provenance (everything a run
    depends on but its value), listing the differences (recorded -> new). Values may differ."""
    path = Path(out) / SPEC_FILE
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecMismatchError(f"{path} is unreadable ({exc}); it records the spec of the ensemble in "
                                f"{out}: repair or remove it") from None
    new = json.loads(json.dumps(spec.provenance(), default=str))
    old = {k: recorded.get(k) for k in new}
    diffs = _differences(old, new)
    if diffs:
        raise SpecMismatchError(
            f"{out} holds ensemble {recorded.get('ensemble')!r} of another spec ({len(diffs)} difference(s), "
            f"recorded -> now): " + "; ".join(diffs) + "; use another output folder (its finished runs are "
            "kept)")


# ------------------------------------------------------------------------------------------------ size
def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def estimate_run_bytes(spec: EnsembleSpec, out: str | os.PathLike) -> int | None:
    """An upper estimate of one run file's size: the largest run file of ``spec`` in ``out``, else from the
    model of the first value (vertices x stored times x fields, 8 bytes each, uncompressed); None when that
    model cannot be built (the run's own failure is then recorded as usual)."""
    sizes = [p.stat().st_size for _, _, p in find_runs(spec, out)["done"] if p.is_file()]
    if sizes:
        return max(sizes)
    import numpy as np

    try:
        md = spec.build_model(spec.values[0])
    except Exception:  # noqa: BLE001 - reported by the run itself
        return None
    nv = int(np.size(md.mesh.x))
    ne = int(np.shape(md.mesh.elements)[0])
    ts = md.timestepping
    span = float(np.ravel(ts.final_time)[0]) - float(np.ravel(ts.start_time)[0])
    dt = float(np.ravel(ts.time_step)[0])
    freq = max(1, int(np.ravel(getattr(md.settings, "output_frequency", 1))[0]))
    steps = int(np.ceil(span / dt - 1e-9)) if dt > 0 and span > 0 else 1
    nt = steps // freq + 1
    per_vertex = len(FIELDS) * nt + 20  # the fields at every stored time, initial and static fields
    return int(8 * (nv * per_vertex + 3 * ne + 64 * nt) + 65536)


def check_size(spec: EnsembleSpec, out: str | os.PathLike, todo: int, *, max_runs: int | None = MAX_RUNS,
               check_disk: bool = True) -> None:
    """Refuse a sweep of more than ``max_runs`` runs, or whose ``todo`` new run files and the combined
    ``ensemble.nc`` (about the size of all run files) would not fit in the free space of ``out``."""
    n = len(spec.values)
    if max_runs is not None and n > max_runs:
        raise SweepTooLargeError(f"the sweep of {spec.parameter} has {n} runs, more than the limit of {max_runs} "
                                 "(a mistyped range?); pass max_runs= (--max-runs) to allow it")
    if not check_disk or todo == 0:
        return
    per_run = estimate_run_bytes(spec, out)
    if per_run is None:
        return
    need = per_run * (todo + n)  # the new run files, then ensemble.nc with every run
    free = shutil.disk_usage(out).free
    if need > free:
        raise SweepTooLargeError(
            f"the sweep needs about {_gb(need)} ({todo} new run(s) of about {_gb(per_run)} each, plus "
            f"ensemble.nc) but {out} has {_gb(free)} free; free some space, sweep fewer values or pass "
            "check_disk=False (--ignore-disk-space)")


# ------------------------------------------------------------------------------------------ unreadable
def _readable(path: Path) -> str | None:
    """None when every variable of ``path`` reads, else the error."""
    import xarray as xr

    from issm_emulator._files import check_netcdf

    try:
        with xr.open_dataset(check_netcdf(path), engine="netcdf4") as ds:
            ds.load()
    except Exception as exc:  # noqa: BLE001 - whatever the NetCDF library raises, the file is unusable
        return str(exc) if isinstance(exc, IssmEmulatorError) else f"{type(exc).__name__}: {exc}"
    return None


def _run_files(spec: Any, out: str | os.PathLike) -> list[Path]:
    """The run files of ``spec``'s values in ``out/runs``: those found by fingerprint, and the files at a
    requested value's name (value-keyed, or index-keyed of older versions) whose header cannot be read."""
    runs = Path(out) / RUNS_DIR
    found = {int(i): p for i, _, p in find_runs(spec, out)["done"]}
    paths = list(found.values())
    for i, v in enumerate(spec.values):
        if i in found:
            continue
        names = [run_file_for(spec.value_coords(v), spec.fingerprint(v))]
        if isinstance(spec, EnsembleSpec):
            names.append(run_file_name(i, spec.parameter, v))
        paths += [runs / n for n in names if (runs / n).is_file()]
    return list(dict.fromkeys(paths))


def set_aside_unreadable(spec: Any, out: str | os.PathLike) -> list[Path]:
    """Move every run file of ``spec`` in ``out/runs`` that cannot be read in full to ``runs/corrupt/``
    (a :class:`RuntimeWarning` names each), so the run is recomputed; returns the new paths."""
    runs = Path(out) / RUNS_DIR
    moved = []
    for path in _run_files(spec, out):
        if not path.is_file():
            continue
        problem = _readable(path)
        if problem is None:
            continue
        dest_dir = runs / CORRUPT_DIR
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(path, dest)
        moved.append(dest)
        warnings.warn(f"run file {path} is unreadable ({problem.splitlines()[0][:200]}); moved to {dest}, "
                      "the run is recomputed", RuntimeWarning, stacklevel=3)
    return moved


# ------------------------------------------------------------------------------------------- processes
def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def die_with_parent(parent: int) -> None:
    """Worker initializer: exit as soon as the process ``parent`` (the generation) is gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="issm-emulator-parent").start()


def stop_workers(pool: Any) -> None:
    """Kill the worker processes of a ``ProcessPoolExecutor`` now (their runs are abandoned)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if callable(terminate):
        with contextlib.suppress(Exception):
            terminate()
            return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()
    with contextlib.suppress(Exception):
        pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------------ hook
def guarded(generate: Callable[..., Path]) -> Callable[..., Path]:
    """Decorate ``generate(spec, out_dir, **kw)`` with the checks of this module; it gains the keywords
    ``max_runs`` (default :data:`MAX_RUNS`, None: no limit) and ``check_disk`` (default True)."""

    @functools.wraps(generate)
    def wrapper(spec: EnsembleSpec | str, out_dir: str | os.PathLike, *args: Any, max_runs: int | None = MAX_RUNS,
                check_disk: bool = True, **kw: Any) -> Path:
        if isinstance(spec, str):
            spec = ensemble_spec(spec)
        if not callable(getattr(spec, "fingerprint", None)) or not hasattr(spec, "value_coords"):
            raise TypeError(f"spec: expected an EnsembleSpec, a ModelSweepSpec or a sweep name, got "
                            f"{type(spec).__name__}")
        out = Path(out_dir)
        check_size(spec, out, 0, max_runs=max_runs, check_disk=False)
        with folder_lock(out), _sigterm_exits():
            check_spec(spec, out)
            set_aside_unreadable(spec, out)
            if check_disk:
                todo = len(find_runs(spec, out)["todo"])
                check_size(spec, out, todo, max_runs=None, check_disk=True)
            return generate(spec, out, *args, **kw)

    return wrapper
