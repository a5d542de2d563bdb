"""Reading and writing an ensemble's output folder: atomic writes, finished-run detection, failure records
and the combination of the finished runs into ``ensemble.nc`` (layout: :mod:`issm_emulator.datasets.layout`).

Every file is written to a temporary file in the same folder and renamed (:func:`atomic_write`,
:func:`atomic_write_netcdf`), so readers see either the old file or the complete new one, and an
interrupted generation (crash, Ctrl-C) loses only the runs in flight. A run file counts as finished
when it carries ``run_complete = 1`` and the fingerprint of the spec's settings and the run's value
(``run_fingerprint``). :func:`scan_runs` indexes the finished run files of a folder by fingerprint, whatever
their names, so runs are found by **value**: a later generation whose grid contains that value (with the same
settings) skips it, and :func:`find_runs` sorts a folder into the requested runs that are done, those to
run, and the run files that belong to no requested value (``other``: other values or settings; reported
and left alone, never combined). :func:`read_failures` reads the failure records, :func:`combine_runs`
writes the combined dataset of the requested finished runs.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from issm_emulator._files import atomic_write  # one atomic writer for the package (re-exported here)

from .layout import ENSEMBLE_FILE, RUNS_DIR, utc_now
from .spec import EnsembleError, jsonable, scenario_label

__all__ = [
    "atomic_write",
    "atomic_write_json",
    "atomic_write_netcdf",
    "clean_stale_tmp",
    "combine_runs",
    "find_runs",
    "is_finished",
    "read_failures",
    "run_encoding",
    "scan_runs",
]


def atomic_write_netcdf(ds: Any, path: str | os.PathLike, *, encoding: Mapping[str, Any] | None = None) -> Path:
    """Write ``ds`` to ``path`` through a temporary file in the same folder and :func:`os.replace`.

    Readers see either the old file or the complete new one; an error (or Ctrl-C) during the write leaves
    no temporary file behind and the old file, if any, untouched.
    """
    return atomic_write(Path(path), lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding))


def atomic_write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented JSON to ``path``, atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def clean_stale_tmp(folder: Path) -> None:
    """Remove temporary files of writers that no longer run (a crash between write and rename)."""
    for tmp in folder.glob(".*.tmp"):
        parts = tmp.name.split(".")
        try:
            pid = int(parts[-3])
        except (IndexError, ValueError):
            continue
        alive = True
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            tmp.unlink(missing_ok=True)


def is_finished(path: Path, fingerprint: str) -> bool:
    """Whether ``path`` is a readable run file with ``run_complete = 1`` and this ``fingerprint``."""
    if not path.is_file():
        return False
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return int(ds.attrs.get("run_complete", 0)) == 1 and ds.attrs.get("run_fingerprint") == fingerprint
    except Exception:  # noqa: BLE001 - unreadable file: not finished, it is recomputed
        return False


def run_encoding(ds: Any) -> dict[str, Any]:
    """The NetCDF encoding of a run file: its floating-point variables compressed (zlib, level 1)."""
    return {name: {"zlib": True, "complevel": 1} for name, var in ds.data_vars.items()
            if np.issubdtype(var.dtype, np.floating)}


def scan_runs(runs_dir: str | os.PathLike) -> dict[str, Path]:
    """The finished run files of ``runs_dir`` by fingerprint: ``{run_fingerprint: path}``.

    Every ``run*.nc`` is looked at (its attributes only), whatever its name: files of the value-keyed naming
    (:func:`~issm_emulator.datasets.layout.run_file_for`) and of the former index-keyed one. Unreadable and
    unfinished files are left out (their runs are recomputed).
    """
    import netCDF4

    found: dict[str, Path] = {}
    folder = Path(runs_dir)
    if not folder.is_dir():
        return found
    for p in sorted(folder.glob("run*.nc")):
        try:
            with netCDF4.Dataset(p, "r") as nc:
                attrs = nc.__dict__
                complete = int(attrs.get("run_complete", 0)) == 1
                fp = attrs.get("run_fingerprint")
        except Exception:  # noqa: BLE001, S112 - unreadable file: not finished, its run is recomputed
            continue
        if complete and isinstance(fp, str) and fp:
            found.setdefault(fp, p)
    return found


def find_runs(spec: Any, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Sort ``out_dir/runs`` against ``spec``'s grid.

    Returns ``{'done': [(index, value, path)], 'todo': [(index, value)], 'other': [path]}``: the requested
    runs already finished (found by fingerprint, i.e. by value and settings), those still to run, and the
    finished run files that belong to no requested value (another grid or other settings: left alone).
    """
    index = scan_runs(Path(out_dir) / RUNS_DIR)
    done, todo, wanted = [], [], set()
    for i, value in enumerate(spec.values):
        fp = spec.fingerprint(value)
        wanted.add(fp)
        if fp in index:
            done.append((i, value, index[fp]))
        else:
            todo.append((i, value))
    other = sorted(p for fp, p in index.items() if fp not in wanted)
    return {"done": done, "todo": todo, "other": other}


def read_failures(out_dir: str | os.PathLike, spec: Any = None) -> list[dict[str, Any]]:
    """The failure records in ``out_dir/runs`` (those of ``spec``'s current values when given)."""
    runs_dir = Path(out_dir) / RUNS_DIR
    wanted = None if spec is None else {spec.fingerprint(v): i for i, v in enumerate(spec.values)}
    records = []
    for p in sorted(runs_dir.glob("run*.failed.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if wanted is not None:
            if rec.get("fingerprint") not in wanted:
                continue
            rec["index"] = wanted[rec["fingerprint"]]  # the run's position in the current grid
        records.append(rec)
    return records


def _number_or_json(value: Any) -> Any:
    """A global attribute: a plain number as a number (CF), anything else (None, lists, dicts) as JSON."""
    value = jsonable(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return json.dumps(value)


def combine_runs(spec: Any, out_dir: str | os.PathLike, *, found: Mapping[str, Any] | None = None) -> Path:
    """Combine the finished run files of ``spec``'s values in ``out_dir/runs`` into ``out_dir/ensemble.nc``.

    Only the runs of the requested grid are combined (found by fingerprint, :func:`find_runs`; ``found`` is
    its result when the caller has it); other run files in the folder are left out. The ``run`` coordinate
    is each run's position in ``spec.values``. Run files are read one at a time and written into the
    combined file run by run, so memory stays at one run. Runs with other output times get NaN at the times
    they lack.

    Raises
    ------
    EnsembleError
        No finished run, or runs on different meshes.
    """
    import netCDF4
    import xarray as xr

    from issm_emulator._version import __version__
    from issm_emulator.issm.xarray_export import CONVENTIONS, is_mesh_variable

    out = Path(out_dir)
    runs_dir = out / RUNS_DIR
    if found is None:
        found = find_runs(spec, out)
    finished: list[tuple[int, Any, Path]] = sorted(found["done"], key=lambda t: t[0])
    failures = read_failures(out, spec)
    if not finished:
        detail = "; ".join(f"run {f['index']} ({spec.value_coords(f['value'])}): {f['error_type']}: "
                           f"{f['message'][:200]}" for f in failures[:5])
        raise EnsembleError(f"ensemble {spec.name!r}: no run finished in {runs_dir}" +
                            (f"; failures: {detail}" if detail else ""))

    # pass 1: metadata (times, variables, mesh) without loading the fields
    times: list[np.ndarray] = []
    variables: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
    first = None
    yts = None
    solver_versions = set()
    for index, value, path in finished:
        with xr.open_dataset(path, engine="netcdf4", decode_times=False) as ds:  # time: model years
            if first is None:
                first = xr.Dataset({n: v.load() for n, v in ds.data_vars.items() if is_mesh_variable(n, v)},
                                   coords={"x": ds["x"].load(), "y": ds["y"].load()})
                yts = ds.attrs.get("issm_yts")
                time_attrs = dict(ds["time"].attrs)
            else:
                for name in ("x", "y"):
                    if not np.array_equal(ds[name].values, first[name].values):
                        raise EnsembleError(f"run file {path.name} has another mesh ({name} differs) than run "
                                            f"{finished[0][0]}; an ensemble needs one mesh")
                if not np.array_equal(ds["elements"].values, first["elements"].values):
                    raise EnsembleError(f"run file {path.name} has other elements than run {finished[0][0]}; "
                                        "an ensemble needs one mesh")
            times.append(np.asarray(ds["time"].values, dtype=np.float64))
            for name, var in ds.data_vars.items():
                if not is_mesh_variable(name, var) and name not in variables:
                    variables[name] = (var.dims, dict(var.attrs))
            solver_versions.add(str(ds.attrs.get("solver_version", "")))
    assert first is not None
    all_times = np.unique(np.concatenate(times))
    nrun, nt = len(finished), all_times.size

    coords: dict[str, Any] = {
        "run": ("run", np.array([i for i, _, _ in finished], dtype=np.int64),
                {"long_name": "index of the run in the ensemble specification"}),
    }
    for name in spec.parameters:
        col = [spec.value_coords(v)[name] for _, v, _ in finished]
        coords[name] = ("run", np.array(col, dtype=np.float64 if spec.coord_numeric(name) else object),
                        spec.coord_attrs(name))
    coords.update({"time": ("time", all_times, time_attrs), "x": first["x"], "y": first["y"]})
    skeleton = xr.Dataset({n: first[n] for n in first.data_vars}, coords=coords)
    failed_short = [{k: f.get(k) for k in ("index", "value", "error_type", "message")} for f in failures]
    skeleton.attrs = {
        "Conventions": CONVENTIONS,
        "title": f"ensemble {spec.name}: {', '.join(spec.parameters)} sweep of {scenario_label(spec.scenario)}",
        "source": f"issm-emulator {__version__}",
        "ensemble": spec.name,
        "scenario": scenario_label(spec.scenario),
        "parameter": spec.parameter,
        "parameter_units": spec.units or "",
        "solver": spec.solver_name,
        "solver_version": ",".join(sorted(v for v in solver_versions if v)),
        "solver_options": json.dumps(jsonable(spec.solver_options), sort_keys=True),
        "scenario_kwargs": json.dumps(spec.provenance().get("scenario_kwargs", {}), sort_keys=True),
        "years": _number_or_json(spec.years),
        "time_step": _number_or_json(spec.time_step),
        "output_frequency": _number_or_json(spec.output_frequency),
        "issm_yts": float(yts) if yts is not None else 365.0 * 24 * 3600,
        "created": utc_now(),
        "split_rule": spec.split_rule or "",
        "parameters": json.dumps(list(spec.parameters)),
        **spec.ensemble_attrs(),
        "runs_requested": len(spec.values),
        "runs_finished": nrun,
        "failed_runs": json.dumps(failed_short, default=str),
        "comment": "units use the model's year of issm_yts seconds; elements are 1-based (md.mesh.elements)",
    }
    coord_names = " ".join([*spec.parameters, "x", "y"])

    def write(tmp: Path) -> None:
        skeleton.to_netcdf(tmp, engine="netcdf4")
        with netCDF4.Dataset(tmp, "a") as nc:
            nc.set_auto_mask(False)
            ncvars = {}
            for name, (dims, attrs) in variables.items():
                full_dims = ("run",) + tuple(dims)
                shape = [nrun] + [nt if d == "time" else nc.dimensions[d].size for d in dims]
                v = nc.createVariable(name, "f8", full_dims, zlib=True, complevel=1, fill_value=np.nan,
                                      chunksizes=[1] + shape[1:])
                v.setncatts({k: (json.dumps(a) if isinstance(a, (dict, list)) else a)
                             for k, a in attrs.items() if k not in ("_FillValue", "coordinates")})
                v.coordinates = coord_names if "vertex" in dims else " ".join(spec.parameters)
                ncvars[name] = (v, dims)
            for k, (index, value, path) in enumerate(finished):
                with xr.open_dataset(path, engine="netcdf4", decode_times=False) as ds:
                    pos = np.searchsorted(all_times, ds["time"].values)
                    for name, (v, dims) in ncvars.items():
                        if name not in ds:
                            continue
                        arr = np.asarray(ds[name].values, dtype=np.float64)
                        if np.array_equal(pos, np.arange(nt)):
                            v[k, ...] = arr
                        else:
                            block = np.full((nt,) + arr.shape[1:], np.nan)
                            block[pos] = arr
                            v[k, ...] = block

    path = atomic_write(out / ENSEMBLE_FILE, write)
    if failures:
        warnings.warn(f"ensemble {spec.name!r}: {len(failures)} of {len(spec.values)} runs failed (see "
                      f"{runs_dir}/*.failed.json): " + "; ".join(
                          f"run {f['index']} ({spec.value_coords(f['value'])}): "
                          f"{f['error_type'].rsplit('.', 1)[-1]}: {f['message'][:120]}"
                          for f in failures[:3]), RuntimeWarning, stacklevel=2)
    return path
