"""The layout of an ensemble's output folder: its file names and the variables the files hold.

:func:`~issm_emulator.datasets.runner.generate_ensemble` runs one transient per value of an
:class:`~issm_emulator.datasets.spec.EnsembleSpec` and writes

* ``OUT/spec.json``: the spec (:meth:`~issm_emulator.datasets.spec.EnsembleSpec.to_dict`).
* ``OUT/runs/run_melt_rate-6_3f2a9c1e.nc`` (:func:`run_file_for`): one file per finished run, named by its
  parameter value(s) and the first 8 hex digits of its fingerprint, carrying ``run_complete = 1`` and the
  fingerprint of the spec and value (``run_fingerprint``). Runs are identified by that fingerprint (the
  spec's settings and the run's **value**, not its position in the grid): a later generation with an
  overlapping or extended grid reuses every finished value, and run files of other values or settings are
  reported and left alone (never combined). Folders written before this naming (``run-0003_melt_rate-6.nc``,
  :func:`run_file_name`) are read the same way, by fingerprint. See :mod:`issm_emulator.datasets.store`.
* ``OUT/runs/run_melt_rate-6_3f2a9c1e.failed.json`` (:func:`failure_path`): a failed run's parameter,
  error type, message and traceback. The other runs go on; failed runs are retried by the next call.
* ``OUT/model-<digest>.nc`` (model sweeps only, :mod:`issm_emulator.datasets.model_sweep`): the swept
  pyISSM model as ``pyissm.model.io.save_model`` wrote it, named by a digest of its content; each run is
  this model with the run's values applied, so the learning pipeline rebuilds any run's model from it.
* ``OUT/ensemble.nc`` (:data:`ENSEMBLE_FILE`): every finished run combined, dims ``(run, time, vertex)``:

  ==================  ==================  ====================================================
  variable            dims                meaning (units from :data:`issm_emulator.units.CF_UNITS`)
  ==================  ==================  ====================================================
  vx, vy              run, time, vertex   velocity, m yr^-1
  thickness           run, time, vertex   ice thickness, m
  surface, base       run, time, vertex   surface / base elevation, m
  ice_levelset        run, time, vertex   < 0 ice, > 0 no ice, 0 front (m)
  ocean_levelset      run, time, vertex   > 0 grounded, < 0 floating (m)
  IceVolume, ...      run, time           the scenario's scalar requested outputs (ISSM names)
  vx0, vy0            run, vertex         initial velocity (md.initialization), m yr^-1
  thickness0, ...     run, vertex         initial thickness0, surface0, base0, ice_levelset0,
                                          ocean_levelset0 (md.geometry, md.mask), m
  bed, rheology_B,    run, vertex         static fields (:func:`initial_fields`): bed, hardness,
  friction_coef...                        friction coefficient, smb, floating/grounded melt rate,
                                          spcvx, spcvy (NaN = free), at the start time
  start_time, rho_*   run                 start time (yr), ice / sea-water density; von Mises
                                          runs also ``calving_stress_threshold`` (Pa)
  elements            element, nodes      ``md.mesh.elements`` (1-based)
  mesh, crs           (scalars)           UGRID mesh topology; grid mapping (Pine Island,
                                          79N: EPSG 3031, 3413), see :mod:`~issm_emulator.issm.xarray_export`
  x, y (coords)       vertex              m
  time (coord)        time                model years; CF ``common_years since 0000-01-01``,
                                          calendar ``365_day`` (attribute ``issm_yts``)
  <parameter> (coord) run                 the swept value, with its ``units`` (one coordinate per swept
                                          parameter; model sweeps: attributes ``md_path``, ``operation``)
  ==================  ==================  ====================================================

  Global attributes record the provenance: ``scenario``, ``ensemble``, ``parameter``, ``solver``,
  ``solver_version``, ``solver_options`` and ``scenario_kwargs`` (JSON), ``source`` (package version),
  ``created`` (UTC), ``split_rule``, ``parameters`` (JSON list of the swept coordinates) and
  ``failed_runs`` (JSON list). Model sweeps add ``sweep_kind = 'model'``, ``model_file``, ``model_digest``,
  ``vary`` (JSON), ``zip`` and ``forcing_features`` (JSON).

A run file holds the same variables without the ``run`` dimension and the swept value as a scalar
coordinate (:func:`~issm_emulator.datasets.member.member_dataset`; the initial and static fields are
:func:`~issm_emulator.datasets.member.initial_fields`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ENSEMBLE_FILE", "FIELDS", "RUNS_DIR", "SPEC_FILE", "failure_path", "run_file_for", "run_file_name",
           "utc_now"]

ENSEMBLE_FILE = "ensemble.nc"  #: name of the combined dataset in the output folder
RUNS_DIR = "runs"  #: sub-folder of the per-run files
SPEC_FILE = "spec.json"  #: the spec of the last generation, in the output folder

#: ISSM output name -> ensemble variable name (the fields every run stores).
FIELDS: dict[str, str] = {
    "Vx": "vx", "Vy": "vy", "Thickness": "thickness", "Surface": "surface", "Base": "base",
    "MaskIceLevelset": "ice_levelset", "MaskOceanLevelset": "ocean_levelset",
}


def _value_text(value: Any) -> str:
    text = format(value, ".10g") if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def run_file_name(index: int, parameter: str, value: Any) -> str:
    """``run-0003_melt_rate-6.nc``: the name of a run file before runs were keyed by value (index and
    value). Such files are still recognised, by their fingerprint; new runs are named by :func:`run_file_for`."""
    return f"run-{int(index):04d}_{parameter}-{_value_text(value)}.nc"


def run_file_for(coords: Mapping[str, Any], fingerprint: str) -> str:
    """``run_melt_rate-6_3f2a9c1e.nc``: a run's file name from its swept values (``{name: value}``) and its
    fingerprint (first 8 hex digits), so a run of other settings never overwrites it."""
    body = "_".join(f"{name}-{_value_text(value)}" for name, value in coords.items())
    if len(body) > 180:  # many parameters: the fingerprint keeps the name unique
        body = body[:180]
    return f"run_{body}_{fingerprint[:8]}.nc"


def failure_path(nc_path: Path) -> Path:
    """The failure record ``run-....failed.json`` next to the run file ``nc_path``."""
    return nc_path.with_name(nc_path.name[:-3] + ".failed.json")


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second: the ``created`` attribute of the files."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
