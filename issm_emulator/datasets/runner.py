"""Generating an ensemble: every unfinished member of an :class:`~issm_emulator.datasets.spec.EnsembleSpec`
run in local worker processes or on a dask cluster, with a progress bar, then all finished runs combined.

Runs execute in local worker processes (:class:`concurrent.futures.ProcessPoolExecutor`, ``spawn``
start method) or, given a scheduler address or a ``dask.distributed.Client``, as tasks on that dask
cluster. Workers build the model from the spec themselves (:func:`~issm_emulator.datasets.member.run_member`)
and send back the run's dataset; only the calling process writes files
(:mod:`issm_emulator.datasets.store`), so the cluster needs no shared file system. Finished runs are
skipped, so the same call resumes an interrupted generation; failed runs are recorded and retried by the
next call. Runs are identified by their value and the spec's settings (the fingerprint), not by their
position: a call with an overlapping or extended grid runs only the new values, and run files of values
outside the grid are reported (logged) and left alone; the combined file holds the requested runs only.
The files are described in :mod:`issm_emulator.datasets.layout`.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from issm_emulator.progress import progress_bar

from .guard import die_with_parent, guarded, stop_workers
from .layout import RUNS_DIR, SPEC_FILE, failure_path, run_file_for, utc_now
from .member import failure_result, run_member
from .spec import EnsembleError, EnsembleSpec
from .store import (
    atomic_write_json,
    atomic_write_netcdf,
    clean_stale_tmp,
    combine_runs,
    find_runs,
    run_encoding,
)

__all__ = ["generate_ensemble", "other_runs_message"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- executors
def _run_serial(spec: EnsembleSpec, todo: list[tuple[int, Any]], handle: Callable[[dict], None]) -> None:
    for index, value in todo:
        handle(run_member(spec, index, value))


def _run_local(spec: EnsembleSpec, todo: list[tuple[int, Any]], handle: Callable[[dict], None], workers: int,
               mp_context: str) -> None:
    ctx = multiprocessing.get_context(mp_context)
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent,
                                  initargs=(os.getpid(),))
    futures = {pool.submit(run_member, spec, i, v): (i, v) for i, v in todo}
    try:
        for fut in cf.as_completed(futures):
            index, value = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (BrokenProcessPool, pickling, ...)
                result = failure_result(index, value, exc)
            handle(result)
    except BaseException:
        stop_workers(pool)  # Ctrl-C, SIGTERM, an error: no worker goes on with an abandoned run
        raise
    pool.shutdown(wait=True)


def _run_dask(spec: EnsembleSpec, todo: list[tuple[int, Any]], handle: Callable[[dict], None],
              scheduler: Any) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise EnsembleError("a dask scheduler was given but dask.distributed is not installed "
                            "(pip install 'issm-emulator[distributed]')") from exc
    for_workers = getattr(spec, "for_workers", None)
    if callable(for_workers):  # e.g. a model sweep sends its model file's bytes: no shared file system needed
        spec = for_workers()
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler) if own else scheduler
    except OSError as exc:  # unreachable, refused, timed out
        raise EnsembleError(f"cannot connect to the dask scheduler {scheduler!r}: {exc}") from exc
    token = uuid.uuid4().hex[:8]
    futures = []
    try:
        futures = [client.submit(run_member, spec, i, v, pure=False, key=f"issm-emulator-run-{i}-{token}")
                   for i, v in todo]
        where = {f.key: (i, v) for f, (i, v) in zip(futures, todo)}
        for fut in as_completed(futures):
            index, value = where[fut.key]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, CommClosedError, ...
                result = failure_result(index, value, exc)
            handle(result)
            fut.release()
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    finally:
        if own:
            client.close()



# ------------------------------------------------------------------------------------------- generate
@guarded  # folder lock, spec check, unreadable runs set aside, size limits (issm_emulator.datasets.guard)
def generate_ensemble(spec: EnsembleSpec | str, out_dir: str | os.PathLike, *, workers: int | None = None,
                      scheduler: Any = None, progress: bool = True, mp_context: str = "spawn") -> Path:
    """Run every member of ``spec`` that is not finished yet and combine all finished runs.

    Parameters
    ----------
    spec : EnsembleSpec, ModelSweepSpec or str
        The sweep (a name of :data:`~issm_emulator.datasets.sweeps.SWEEPS` uses its defaults; a
        :class:`~issm_emulator.datasets.model_sweep.ModelSweepSpec` sweeps a saved pyISSM model).
    out_dir : path
        Output folder (created): ``runs/`` holds one NetCDF per finished run and a ``.failed.json`` per
        failed run; the combined dataset is ``ensemble.nc``
        (:data:`~issm_emulator.datasets.layout.ENSEMBLE_FILE`).
    workers : int, optional
        Local worker processes; default ``min(2, os.cpu_count())``. ``0`` runs everything in this process
        (serially; useful for debugging and for solvers that cannot be pickled). Ignored with ``scheduler``.
    scheduler : str or dask.distributed.Client, optional
        Run on a dask cluster: a scheduler address (``'tcp://host:8786'``) or a connected client.
    progress : bool
        Show a progress bar of the finished runs with ETA (tqdm, on stderr; runs finished before count as
        done).
    mp_context : str
        Start method of the local worker processes (default ``'spawn'``: safe with threads and torch).
    max_runs, check_disk
        Refuse a sweep of more than ``max_runs`` runs (default 10 000; None: no limit) or, with
        ``check_disk``, one that would not fit in the free disk space
        (:mod:`issm_emulator.datasets.guard`, which also locks the folder and checks its spec).

    Returns
    -------
    pathlib.Path
        ``out_dir / 'ensemble.nc'``.

    Raises
    ------
    EnsembleError
        No run of the ensemble finished (each failure is recorded in ``runs/*.failed.json``).
        Also (subclasses of :mod:`~issm_emulator.datasets.guard`): another process writes into ``out_dir``,
        the folder holds another spec, or the sweep is too large.

    Notes
    -----
    Finished runs (a run file in ``runs/`` with ``run_complete = 1`` and the fingerprint of this spec's
    settings and the run's value, whatever the file's name) are skipped, so the same call resumes an
    interrupted generation, and a call with an overlapping or extended grid runs only the new values. Run
    files of other values or settings are logged (a warning) and left alone; the combined file holds the
    requested runs only, with ``run`` = their position in ``spec.values``. A failed run does not stop the
    others; a :class:`RuntimeWarning` lists the failures and the combined file records them (``failed_runs``).
    """
    # ``spec`` is an EnsembleSpec or a ModelSweepSpec here: the @guarded wrapper resolved and checked it
    out = Path(out_dir)
    runs_dir = out / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(runs_dir)
    clean_stale_tmp(out)
    atomic_write_json(spec.to_dict(), out / SPEC_FILE)

    found = find_runs(spec, out)
    todo = found["todo"]
    if found["other"]:
        log.warning("%s", other_runs_message(found["other"], runs_dir))
    if todo:
        spec.prepare()

    done_before = len(spec.values) - len(todo)
    log.info("ensemble %r in %s: %d of %d runs to run (%d finished before)", spec.name, out, len(todo),
             len(spec.values), done_before)
    bar = progress_bar(len(spec.values), progress and bool(todo), spec.name, unit="run", initial=done_before)
    failed = 0
    written: dict[int, tuple[int, Any, Path]] = {}

    def handle(result: dict[str, Any]) -> None:
        nonlocal failed
        index, value = result["index"], result["value"]
        fingerprint = spec.fingerprint(value)
        path = runs_dir / run_file_for(spec.value_coords(value), fingerprint)
        if result["ok"]:
            try:
                atomic_write_netcdf(result["dataset"], path, encoding=run_encoding(result["dataset"]))
            except Exception as exc:  # noqa: BLE001 - e.g. disk full: record, go on
                result = failure_result(index, value, exc)
            else:
                failure_path(path).unlink(missing_ok=True)
                written[index] = (index, value, path)
        if not result["ok"]:
            record = {k: result[k] for k in ("index", "value", "error_type", "message", "traceback")}
            record.update(run=index, parameter=spec.parameter, units=spec.units, ensemble=spec.name,
                          values=spec.value_coords(value), fingerprint=fingerprint, time=utc_now())
            atomic_write_json(record, failure_path(path))
            failed += 1
            log.info("ensemble %r: run %d (%s) failed: %s: %s", spec.name, index, spec.value_coords(value),
                     result["error_type"], result["message"])
            bar.set_postfix_str(f"{failed} failed")
        bar.update(1)

    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(spec, todo, handle, scheduler)
        else:
            n = min(2, os.cpu_count() or 1) if workers is None else int(workers)
            if n < 0:
                raise ValueError(f"workers must be >= 0, got {workers}")
            if n == 0:
                _run_serial(spec, todo, handle)
            else:
                _run_local(spec, todo, handle, min(n, len(todo)), mp_context)
    finally:
        bar.close()
    done = sorted([*found["done"], *written.values()], key=lambda t: t[0])
    return combine_runs(spec, out, found={"done": done, "todo": [], "other": found["other"]})


def other_runs_message(paths: list[Path], runs_dir: Path) -> str:
    """The report of run files that belong to no value of the requested grid (left alone, not combined)."""
    names = ", ".join(p.name for p in paths[:5]) + (f", ... ({len(paths) - 5} more)" if len(paths) > 5 else "")
    return (f"{len(paths)} run file(s) in {runs_dir} belong to no value of the requested grid (other values or "
            f"settings): left alone and not combined into the ensemble: {names}")
