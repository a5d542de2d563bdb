"""Ensemble datasets: parameter sweeps of a scenario solved into NetCDF/xarray, and their splits.

:func:`generate_ensemble` runs an :class:`EnsembleSpec` (built-in sweeps: :data:`SWEEPS`, through
:func:`ensemble_spec`) in parallel processes or on a dask cluster, resumably; :func:`split_runs` and
:func:`select_split` give the train/validation/test runs (:mod:`issm_emulator.datasets.splits`).
The command line is in :mod:`issm_emulator.datasets.cli` (``issm-emulator generate ...``, ``info``).
"""

from __future__ import annotations

from .ensemble import (
                       ENSEMBLE_FILE,
                       SCENARIOS,
                       SWEEPS,
                       EnsembleError,
                       EnsembleSpec,
                       Sweep,
                       atomic_write_netcdf,
                       combine_runs,
                       ensemble_spec,
                       generate_ensemble,
                       parse_values,
                       read_failures,
                       run_file_name,
                       run_member,
)
from .splits import SPLIT_RULES, SPLITS, ModuloRule, select_split, split_labels, split_runs

__all__ = [
                       "ENSEMBLE_FILE",
                       "SCENARIOS",
                       "SPLITS",
                       "SPLIT_RULES",
                       "SWEEPS",
                       "EnsembleError",
                       "EnsembleSpec",
                       "ModuloRule",
                       "Sweep",
                       "atomic_write_netcdf",
                       "combine_runs",
                       "ensemble_spec",
                       "generate_ensemble",
                       "parse_values",
                       "read_failures",
                       "run_file_name",
                       "run_member",
                       "select_split",
                       "split_labels",
                       "split_runs",
]
