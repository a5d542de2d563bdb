"""Ensemble datasets: parameter sweeps of a scenario solved into NetCDF/xarray, and their splits.

:func:`generate_ensemble` runs an :class:`EnsembleSpec` (built-in sweeps: :data:`SWEEPS`, through
:func:`ensemble_spec`) in parallel processes or on a dask cluster, resumably; :func:`split_runs` and
:func:`select_split` give the train/validation/test runs (:mod:`issm_emulator.datasets.splits`).
The command line is in :mod:`issm_emulator.datasets.cli` (``issm-emulator generate ...``, ``info``).

Modules, one job each:

* :mod:`~issm_emulator.datasets.spec`: :class:`EnsembleSpec` (fingerprints, JSON), :func:`parse_values`,
  the scenario registry :data:`SCENARIOS`;
* :mod:`~issm_emulator.datasets.sweeps`: the built-in sweeps :data:`SWEEPS` and their scenario functions
  (:func:`square_melt`, :func:`mismip_plus_experiment`, :func:`mismip_plus_melt`);
* :mod:`~issm_emulator.datasets.layout`: the output folder's file names and variables;
* :mod:`~issm_emulator.datasets.member`: one run, built, solved and packaged (:func:`run_member`);
* :mod:`~issm_emulator.datasets.store`: atomic writes, finished runs, failure records, :func:`combine_runs`;
* :mod:`~issm_emulator.datasets.guard`: the output folder's lock, spec check, unreadable runs, size limits,
  workers that die with the generation;
* :mod:`~issm_emulator.datasets.runner`: the local and dask executors and :func:`generate_ensemble`;
* :mod:`~issm_emulator.datasets.model_sweep`: sweeps of a user's saved pyISSM model over md fields
  (:func:`sweep_model`, :class:`ModelSweepSpec`; ``issm-emulator generate --model``);
* :mod:`~issm_emulator.datasets.splits`: train/validation/test splits.
"""

from __future__ import annotations

from .layout import ENSEMBLE_FILE, RUNS_DIR, run_file_for, run_file_name
from .member import initial_fields, member_dataset, request_masks, run_member
from .model_sweep import ModelSweepSpec, Variation, model_sweep_spec, parse_vary, sweep_model
from .runner import generate_ensemble
from .spec import SCENARIOS, EnsembleError, EnsembleSpec, parse_values, resolve_scenario
from .splits import (
                       SPLIT_RULES,
                       SPLITS,
                       ModuloRule,
                       parse_split,
                       select_split,
                       split_labels,
                       split_report,
                       split_runs,
)
from .store import atomic_write_netcdf, combine_runs, find_runs, read_failures, scan_runs
from .sweeps import SWEEPS, Sweep, ensemble_spec, mismip_plus_experiment, mismip_plus_melt, square_melt

__all__ = [
                       "ENSEMBLE_FILE",
                       "RUNS_DIR",
                       "SCENARIOS",
                       "SPLITS",
                       "SPLIT_RULES",
                       "SWEEPS",
                       "EnsembleError",
                       "EnsembleSpec",
                       "ModelSweepSpec",
                       "ModuloRule",
                       "Sweep",
                       "Variation",
                       "atomic_write_netcdf",
                       "combine_runs",
                       "ensemble_spec",
                       "find_runs",
                       "generate_ensemble",
                       "initial_fields",
                       "member_dataset",
                       "mismip_plus_experiment",
                       "mismip_plus_melt",
                       "model_sweep_spec",
                       "parse_split",
                       "parse_values",
                       "parse_vary",
                       "read_failures",
                       "request_masks",
                       "resolve_scenario",
                       "run_file_for",
                       "run_file_name",
                       "run_member",
                       "scan_runs",
                       "select_split",
                       "split_labels",
                       "split_report",
                       "split_runs",
                       "square_melt",
                       "sweep_model",
]
