"""Torch datasets of an ensemble (:func:`issm_emulator.datasets.generate_ensemble`) for the two emulator modes.

One job: turning an ensemble on disk into training samples (inputs and targets) for every mode, including
the sample-level augmentation of step mode (input noise and its SSA-solved targets).

Outputs of a run are numbered ``k = 1 .. T`` (the ensemble's ``time`` axis); ``k = 0`` is the initial state
at ``start_time`` stored with the run (``vx0, thickness0, ...`` and the static fields, see
:func:`issm_emulator.datasets.member.initial_fields`).

* :class:`DirectDataset` (the seed's method): one sample per ``(run, k)``, inputs = the initial state
  (``k = 0``), the forcing parameters and ``time = t_k - t_0`` (s); targets = ``vx, vy, thickness`` (and
  ``ice_levelset`` when the front moves) at ``k``.
* :class:`StepDataset`: one sample per ``(run, k)``, inputs = geometry, masks, forcing and velocity of
  output ``k - 1`` (the initial state for ``k = 1``), target = the velocity of output ``k``. ISSM's
  transient solves the stress balance first, so the velocity it outputs at step ``k`` is the one of the
  geometry of step ``k - 1``; the pairing is exact when every time step is output
  (``md.settings.output_frequency = 1``), otherwise a warning is given.

Inputs are built by :func:`issm_emulator.nn.features.build_inputs` (so all three networks see the same
features), in SI units and **not normalised** (the trainer normalises on the device). Each sample is a
:class:`torch_geometric.data.Data` holding the mesh graph (one :func:`~issm_emulator.graph.mesh_graph`
shared by every sample) plus ``scalars (nv, S)``, ``vectors (nv, C, 2)``, targets ``y_velocity (nv, 2)``
(m/s) and ``y_scalars (nv, m)`` (in ``spec.scalar_outputs`` order) and graph-level ``run``, ``k``;
:func:`collate` batches them into a :class:`torch_geometric.data.Batch`.

Loading is lazy: the NetCDF file is opened with :func:`xarray.open_dataset` and one run is read at a time
when a sample of it is asked for; loaded runs are kept in a least-recently-used cache bounded in bytes.

Mapping from the ensemble variables (ISSM user units) to the features (SI):

=======================  =================================================================
feature                  ensemble variable
=======================  =================================================================
velocity                 (vx, vy) / yts, (vx0, vy0) at k = 0
thickness, surface, ...  thickness, surface, base, ice_levelset, ocean_levelset (... 0 at k = 0)
bed, rheology_B          bed, rheology_B
friction_coefficient     friction_coefficient
smb                      smb / yts
melt_rate                floatingice_melting_rate / yts (per vertex)
calving_threshold        calving_stress_threshold (Pa)
dirichlet_mask           1 where spcvx or spcvy is not NaN
velocity_dirichlet       (spcvx, spcvy) / yts, 0 where NaN
is_boundary, is_front    from the mesh graph; is_front from the ice level set of the input state
=======================  =================================================================
"""

from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from issm_emulator.errors import IssmEmulatorError
from issm_emulator.graph import front_vertices, mesh_graph
from issm_emulator.nn.features import FeatureSpec, build_inputs, default_spec
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers.emulator.processing_mesh import processing_for
from issm_emulator.state import YTS_DEFAULT

__all__ = [
    "PARAMETER_FEATURES",
    "DatasetError",
    "DirectDataset",
    "EnsembleDataset",
    "RunArrays",
    "StepDataset",
    "collate",
    "ensemble_path",
    "make_dataset",
    "open_ensemble",
]

#: swept ensemble parameter -> the forcing feature(s) that carry it into the networks
PARAMETER_FEATURES: dict[str, tuple[str, ...]] = {
    "melt_rate": ("melt_rate",),
    "stress_threshold": ("calving_threshold",),
    "calving_threshold": ("calving_threshold",),
}

#: time-dependent fields (ensemble name, name of its initial value)
_DYNAMIC = {"vx": "vx0", "vy": "vy0", "thickness": "thickness0", "surface": "surface0", "base": "base0",
            "ice_levelset": "ice_levelset0", "ocean_levelset": "ocean_levelset0"}
_RATES = {"vx", "vy", "smb", "floatingice_melting_rate", "spcvx", "spcvy"}  # m/yr in the file
_STATIC = ("bed", "friction_coefficient", "rheology_B", "smb", "floatingice_melting_rate", "spcvx", "spcvy",
           "calving_stress_threshold", "rho_ice", "rho_water", "start_time")
_REQUIRED_STATIC = ("bed", "rheology_B", "spcvx", "spcvy")


class DatasetError(IssmEmulatorError, ValueError):
    """An ensemble file cannot be used for training (missing variables, no samples, bad split...)."""


def ensemble_path(data: str | os.PathLike) -> Path:
    """The ensemble NetCDF file: ``data`` itself, or ``data/ensemble.nc`` for a folder."""
    from issm_emulator.datasets.layout import ENSEMBLE_FILE

    p = Path(data)
    if p.is_dir():
        p = p / ENSEMBLE_FILE
    if not p.is_file():
        raise FileNotFoundError(f"ensemble file not found: {p} (give an ensemble folder or its {ENSEMBLE_FILE})")
    return p


def open_ensemble(data: str | os.PathLike) -> Any:
    """Open an ensemble lazily (:func:`xarray.open_dataset`; nothing is loaded yet)."""
    import xarray as xr

    from issm_emulator._files import check_netcdf

    return xr.open_dataset(check_netcdf(ensemble_path(data)), engine="netcdf4", decode_times=False)  # model years


@dataclass
class RunArrays:
    """One run in SI units, output 0 (the initial state) prepended to the outputs.

    ``time`` (T+1,) s since the initial state; ``fields[name]`` (T+1, nv) for vx, vy (m/s), thickness,
    surface, base, ice_levelset, ocean_levelset (m); ``static[name]`` (nv,) or scalars (see module doc).
    """

    position: int
    run: int
    value: Any
    time: np.ndarray
    fields: dict[str, np.ndarray]
    static: dict[str, Any]
    features: dict[str, Any] = field(default_factory=dict)  #: static features by feature name

    @property
    def nbytes(self) -> int:
        n = self.time.nbytes + sum(a.nbytes for a in self.fields.values())
        return n + sum(np.asarray(a).nbytes for a in self.static.values())

    @property
    def n_outputs(self) -> int:
        return self.time.size - 1


def _parse_json_attr(ds: Any, name: str) -> Any:
    raw = ds.attrs.get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None


class EnsembleDataset(Dataset):
    """Samples ``(run, k)`` of one split of an ensemble; base of :class:`DirectDataset` and
    :class:`StepDataset`.

    Parameters
    ----------
    data : ensemble folder or NetCDF file
    split : ``'train'``, ``'validation'``, ``'test'`` or None/``'all'`` (every run)
    spec : the networks' features; default :func:`~issm_emulator.nn.features.default_spec` of the mode
        with ``parameters`` and ``moving_front``
    parameters : forcing features; default from the swept parameter (:data:`PARAMETER_FEATURES`)
    moving_front : predict the ice level set (direct mode); default: whether any run's ice level set
        changes sign pattern over time
    rule : split rule: a name, value lists (``'test=10,30;validation=20'``) or a callable
        (:mod:`issm_emulator.datasets.splits`); default the ensemble's ``split_rule`` attribute, else
        ``'interleaved'``
    runs : explicit run positions (along the file's ``run`` axis) instead of ``split``
    times : keep only outputs at these model times (years, matched to the nearest output)
    time_stride : keep only every ``time_stride``-th output (k = stride, 2 stride, ...); fewer, less
        correlated samples per epoch for long monthly runs (:meth:`set_time_phase` shifts them)
    dtype : floating dtype of the tensors
    cache_bytes : bound of the loaded-run cache (bytes)
    processing_mesh : the mesh the network runs on (``x``, ``y``, 0-based ``elements``;
        :mod:`issm_emulator.solvers.emulator.processing_mesh`): inputs and targets are interpolated onto
        it and samples carry its graph; None or this ensemble's own mesh: the ensemble's mesh
    fit_targets : with a processing mesh, the targets are the processing-mesh values whose interpolation
        back fits this ensemble's outputs best (least squares) instead of the outputs interpolated onto it
    """

    mode = ""

    def __init__(self, data: str | os.PathLike, split: str | None = "train", *, spec: FeatureSpec | None = None,
                 parameters: Sequence[str] | None = None, moving_front: bool | None = None, rule: Any = None,
                 runs: Iterable[int] | None = None, times: Iterable[float] | None = None,
                 time_stride: int = 1, dtype: torch.dtype = torch.float32, cache_bytes: int = 2 * 1024 ** 3,
                 processing_mesh: Any = None, fit_targets: bool = False):
        self.path = ensemble_path(data)
        self.ds = open_ensemble(self.path)
        ds = self.ds
        missing = [n for n in ("x", "y", "elements", *_DYNAMIC, *_DYNAMIC.values(), *_REQUIRED_STATIC)
                   if n not in ds.variables]
        if missing:
            raise DatasetError(f"{self.path}: the ensemble lacks variable(s) {missing} needed for training; "
                               "regenerate it with this version of issm-emulator (issm-emulator generate)")
        self.yts = float(ds.attrs.get("issm_yts", YTS_DEFAULT))
        self.parameter = str(ds.attrs.get("parameter", ""))
        self.split = split
        nrun = ds.sizes["run"]
        if runs is not None:
            pos = np.asarray(list(runs), dtype=np.int64)
            if pos.size and (pos.min() < 0 or pos.max() >= nrun):
                raise DatasetError(f"run positions must lie in [0, {nrun}), got {pos.tolist()}")
        elif split in (None, "all"):
            pos = np.arange(nrun, dtype=np.int64)
        else:
            from issm_emulator.datasets.splits import SPLITS, split_runs

            if split not in SPLITS:
                raise DatasetError(f"split must be one of {SPLITS}, 'all' or None, got {split!r}")
            pos = split_runs(ds, rule)[split]
        self.run_positions = pos
        x = np.asarray(ds["x"].values, float)
        y = np.asarray(ds["y"].values, float)
        elements = np.asarray(ds["elements"].values, np.int64) - 1  # file is 1-based (md.mesh.elements)
        self.mesh = P1Mesh(x, y, elements)
        self.graph = mesh_graph((x, y, elements), dtype=dtype)
        self._edge_index = self.graph.edge_index.numpy()
        self.dtype = dtype
        # the network's processing mesh (solvers.emulator.processing_mesh): samples live there, the data here
        self.remesh = processing_for(x, y, elements, processing_mesh, dtype=dtype)
        self.net_mesh = self.mesh if self.remesh is None else self.remesh.mesh
        self.net_graph = self.graph if self.remesh is None else self.remesh.graph
        self.fit_targets = bool(fit_targets)
        self.output_times = np.asarray(ds["time"].values, float)  # years
        if parameters is None:
            recorded = _parse_json_attr(ds, "forcing_features")  # model sweeps record their features
            parameters = recorded if isinstance(recorded, list) else PARAMETER_FEATURES.get(self.parameter, ())
        self.parameters = tuple(parameters)
        if moving_front is None:
            moving_front = self._detect_moving_front()
        self.moving_front = bool(moving_front)
        self.spec = spec if spec is not None else self.default_spec()
        self._cache: OrderedDict[int, RunArrays] = OrderedDict()
        self._cache_bytes = int(cache_bytes)
        self._times_kept: set[int] | None = None
        if times is not None:
            want = np.atleast_1d(np.asarray(list(times), float))
            self._times_kept = {int(np.argmin(np.abs(self.output_times - t))) + 1 for t in want}
        if int(time_stride) < 1:
            raise DatasetError(f"time_stride must be >= 1, got {time_stride}")
        self.time_stride = int(time_stride)
        self.time_phase = 0
        self.samples: list[tuple[int, int]] = self._make_samples(self._outputs_at_phase(0))
        if self.mode == "step":
            self._check_step_pairing()

    def _outputs_at_phase(self, phase: int) -> set[int] | None:
        """Outputs ``k`` (1-based) kept by ``times`` and by the stride at ``phase``: ``k = m S - phase``."""
        keep = self._times_kept
        s = self.time_stride
        if s > 1:
            strided = set(range(s - phase % s, self.output_times.size + 1, s))
            keep = strided if keep is None else keep & strided
        return keep

    def set_time_phase(self, phase: int) -> None:
        """Keep the outputs ``k = m S - phase`` (``m >= 1``, ``S = time_stride``) instead of ``k = m S``
        (phase 0, the default). A training that steps the phase through ``0 .. S-1``, one per epoch, sees every
        monthly output at the cost of every ``S``-th per epoch; the validation split stays at phase 0."""
        phase = int(phase) % self.time_stride
        if phase != self.time_phase:
            self.time_phase = phase
            self.samples = self._make_samples(self._outputs_at_phase(phase))

    # ------------------------------------------------------------------ set-up helpers
    def _detect_moving_front(self) -> bool:
        for p in self.run_positions:
            r = self.ds.isel(run=int(p))
            ls = np.asarray(r["ice_levelset"].values, float)
            ls0 = np.asarray(r["ice_levelset0"].values, float)
            ok = np.isfinite(ls).all(axis=1)
            if np.any(np.sign(ls[ok]) != np.sign(ls0)[None, :]):
                return True
        return False

    def _valid_outputs(self, p: int) -> np.ndarray:
        """Outputs k (1-based) whose fields are all finite (runs may lack some times)."""
        v = np.asarray(self.ds["thickness"].isel(run=p).values, float)
        return np.flatnonzero(np.isfinite(v).all(axis=1)) + 1

    def _make_samples(self, keep: set[int] | None) -> list[tuple[int, int]]:
        out = []
        for p in self.run_positions:
            valid = self._valid_outputs(int(p))
            for k in valid:
                if keep is not None and int(k) not in keep:
                    continue
                if self.mode == "step" and k > 1 and (k - 1) not in set(valid.tolist()):
                    continue
                out.append((int(p), int(k)))
        return out

    def _check_step_pairing(self) -> None:
        freq = _parse_json_attr(self.ds, "output_frequency")
        dt = _parse_json_attr(self.ds, "time_step")
        if isinstance(freq, (int, float)) and freq != 1:
            warnings.warn(f"{self.path.name}: output_frequency = {freq}; step-mode samples pair the velocity of "
                          "output k with the geometry of output k-1, which is exact only when every step is "
                          "output", RuntimeWarning, stacklevel=3)
        elif isinstance(dt, (int, float)) and self.output_times.size:
            t0 = float(np.asarray(self.ds["start_time"].values).reshape(-1)[0]) if "start_time" in self.ds \
                else self.output_times[0] - dt
            gaps = np.diff(np.concatenate([[t0], self.output_times]))
            if np.any(gaps > dt * (1 + 1e-6)):
                warnings.warn(f"{self.path.name}: outputs are {gaps.max():g} yr apart but the time step is "
                              f"{dt:g} yr; step-mode pairs (geometry k-1 -> velocity k) are approximate",
                              RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ runs
    def _value_of(self, r: Any) -> Any:
        """The swept value of a run (one run of the file): a number, or a tuple for several parameters."""
        names = [n for n in (_parse_json_attr(self.ds, "parameters") or [self.parameter]) if n in r.coords]
        return (r[names[0]].values.item() if len(names) == 1
                else tuple(r[n].values.item() for n in names) if names else None)

    def run_value(self, position: int) -> Any:
        """The swept value of the run at ``position``, read from the coordinates only (no fields loaded)."""
        return self._value_of(self.ds.isel(run=int(position)))

    def run_arrays(self, position: int) -> RunArrays:
        """The run at ``position`` (along the file's run axis) in SI units, from the cache or the file."""
        position = int(position)
        hit = self._cache.get(position)
        if hit is not None:
            self._cache.move_to_end(position)
            return hit
        r = self.ds.isel(run=position).load()
        yts = self.yts
        t0 = float(r["start_time"].values) if "start_time" in r else 0.0
        time = np.concatenate([[0.0], (np.asarray(r["time"].values, float) - t0) * yts])
        fields = {}
        for name, name0 in _DYNAMIC.items():
            a = np.concatenate([np.asarray(r[name0].values, float)[None, :], np.asarray(r[name].values, float)])
            fields[name] = a / yts if name in _RATES else a
        static: dict[str, Any] = {}
        for name in _STATIC:
            if name in r:
                a = np.asarray(r[name].values, float)
                static[name] = a / yts if name in _RATES else a
        value = self._value_of(r)
        run = int(r["run"].values) if "run" in r.coords else position
        arrays = RunArrays(position, run, value, time, fields, static)
        arrays.features = self._static_features(arrays)
        self._cache[position] = arrays
        total = sum(a.nbytes for a in self._cache.values())
        while len(self._cache) > 1 and total > self._cache_bytes:
            _, old = self._cache.popitem(last=False)
            total -= old.nbytes
        return arrays

    def _static_features(self, ra: RunArrays) -> dict[str, Any]:
        s = ra.static
        out: dict[str, Any] = {"bed": s["bed"], "rheology_B": s["rheology_B"],
                               "is_boundary": self.graph.is_boundary.numpy().astype(float)}
        for src, dst in (("friction_coefficient", "friction_coefficient"), ("smb", "smb"),
                         ("floatingice_melting_rate", "melt_rate"), ("calving_stress_threshold", "calving_threshold")):
            if src in s:
                out[dst] = s[src]
        spcvx, spcvy = s["spcvx"], s["spcvy"]
        fixed = np.isfinite(spcvx) | np.isfinite(spcvy)
        out["dirichlet_mask"] = fixed.astype(float)
        out["velocity_dirichlet"] = np.stack([np.nan_to_num(spcvx), np.nan_to_num(spcvy)], axis=1)
        return out

    def forcing(self, position: int) -> dict[str, Any]:
        """The forcing parameters of a run by feature name (SI), as checked against a checkpoint's training
        ranges: ``melt_rate`` at the initially floating vertices (all vertices when none floats),
        ``calving_threshold``, and ``time`` (the elapsed times of the run's outputs, direct mode)."""
        ra = self.run_arrays(position)
        feats = ra.features
        missing = [p for p in self.spec.parameters if p != "time" and p not in feats]
        if missing:
            raise DatasetError(f"{self.path.name}: no data for forcing parameter(s) {missing}")
        out: dict[str, Any] = {}
        floating = ra.fields["ocean_levelset"][0] < 0.0
        for p in self.spec.parameters:
            if p == "time":
                out[p] = ra.time[1:]
            elif p == "melt_rate" and np.ndim(feats[p]) == 1 and floating.any():
                out[p] = np.asarray(feats[p])[floating]
            else:
                out[p] = feats[p]
        return out

    def forcing_ranges(self) -> dict[str, tuple[float, float]]:
        """``{parameter: (min, max)}`` (SI) over the runs of this dataset, for the checkpoint manifest."""
        from issm_emulator.solvers.emulator.checkpoint import value_range

        per_run = [self.forcing(q) for q in self.run_positions]
        return {p: value_range([f[p] for f in per_run]) for p in self.spec.parameters}

    def default_spec(self) -> FeatureSpec:
        """The features used when none are given: :func:`~issm_emulator.nn.features.default_spec`."""
        return default_spec(self.mode, self.parameters, self.moving_front)

    def state_arrays(self, position: int, k: int) -> dict[str, Any]:
        """Every feature array (by feature name, SI) of the state at output ``k`` (0 = initial)."""
        ra = self.run_arrays(position)
        f = ra.fields
        arrays = dict(ra.features)
        for name in ("thickness", "surface", "base", "ice_levelset", "ocean_levelset"):
            arrays[name] = f[name][k]
        arrays["velocity"] = np.stack([f["vx"][k], f["vy"][k]], axis=1)
        arrays["is_front"] = front_vertices(self._edge_index, f["ice_levelset"][k]).astype(float)
        return arrays

    def inputs(self, arrays: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scalars, vectors)`` of :func:`build_inputs` for the features of this dataset's spec."""
        needed = set(self.spec.scalars) | set(self.spec.vectors) | {"surface", "bed", "thickness"}
        given = {k: v for k, v in arrays.items() if k in needed}
        if self.remesh is not None:
            given = self.remesh.features(given)
        return build_inputs(self.spec, self.net_mesh, dtype=self.dtype, graph=self.net_graph, **given)

    def on_net_mesh(self, values: np.ndarray) -> np.ndarray:
        """Per-vertex target values (first axis) of the data's mesh on the mesh the network runs on:
        interpolated, or with ``fit_targets`` fitted (:meth:`ProcessingMesh.fit`)."""
        if self.remesh is None:
            return values
        return self.remesh.fit(values) if self.fit_targets else self.remesh.forward(values)

    def targets(self, position: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y_velocity (nv, 2), y_scalars (nv, m))`` at output ``k`` (SI)."""
        f = self.run_arrays(position).fields
        vel = np.stack([f["vx"][k], f["vy"][k]], axis=1)
        sc = np.stack([f[n][k] for n in self.spec.scalar_outputs], axis=1) if self.spec.scalar_outputs \
            else np.zeros((vel.shape[0], 0))
        return (torch.as_tensor(self.on_net_mesh(vel), dtype=self.dtype),
                torch.as_tensor(self.on_net_mesh(sc), dtype=self.dtype))

    def input_arrays(self, position: int, k: int) -> dict[str, Any]:  # pragma: no cover - overridden
        """The input feature arrays of sample ``(position, k)``; defined by each mode's subclass."""
        raise TypeError(f"{type(self).__name__} has no mode: use DirectDataset or StepDataset (make_dataset)")

    def ensemble_spec(self) -> Any:
        """The spec recorded in the file's attributes: an :class:`~issm_emulator.datasets.spec.EnsembleSpec`, or
        for a model sweep a :class:`~issm_emulator.datasets.model_sweep.ModelSweepSpec` whose model is the
        ``model-<digest>.nc`` next to the ensemble file."""
        from issm_emulator.datasets.spec import EnsembleSpec

        a = self.ds.attrs
        if a.get("sweep_kind") == "model":  # a sweep of a saved model: the model is in the ensemble folder
            from issm_emulator.datasets.model_sweep import ModelSweepSpec

            return ModelSweepSpec.from_attrs(a, self.path.parent)
        js = lambda name: _parse_json_attr(self.ds, name)  # noqa: E731
        return EnsembleSpec(scenario=a["scenario"], parameter=a["parameter"],
                            values=[float(v) for v in np.asarray(self.ds[a["parameter"]].values)],
                            units=a.get("parameter_units") or None, scenario_kwargs=js("scenario_kwargs") or {},
                            years=js("years"), time_step=js("time_step"), output_frequency=js("output_frequency"),
                            name=a.get("ensemble", ""))

    def run_state(self, position: int) -> Any:
        """The :class:`~issm_emulator.state.ModelState` of a run's initial state, rebuilt from the ensemble's
        recorded scenario (cached); raises :class:`DatasetError` when it does not reproduce the stored one."""
        position = int(position)
        cache = self.__dict__.setdefault("_states", {})
        if position in cache:
            return cache[position]
        import contextlib
        import io

        from issm_emulator.datasets.member import request_masks
        from issm_emulator.issm.adapter import read_model

        ra = self.run_arrays(position)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            md = self.ensemble_spec().build_model(ra.value)
        request_masks(md)
        md.transient.requested_outputs = list(md.transient.requested_outputs) + ["Thickness", "Vx", "Vy"]
        st = read_model(md, "Transient")
        if st.numberofvertices != self.mesh.nv or not np.allclose(st.geometry.thickness, ra.fields["thickness"][0]):
            raise DatasetError(f"the rebuilt model of run {ra.run} does not reproduce the stored initial state")
        cache[position] = st
        return st

    # ------------------------------------------------------------------ Dataset protocol
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Data:
        p, k = self.samples[index]
        scalars, vectors = self.inputs(self.input_arrays(p, k))
        y_vel, y_sc = self.targets(p, k)
        g = self.net_graph
        return Data(edge_index=g.edge_index, pos=g.pos, edge_vec=g.edge_vec, edge_len=g.edge_len, face=g.face,
                    num_nodes=g.num_nodes, scalars=scalars, vectors=vectors, y_velocity=y_vel, y_scalars=y_sc,
                    run=torch.tensor([p]), k=torch.tensor([k]))

    def close(self) -> None:
        """Close the NetCDF file and drop the cache."""
        self._cache.clear()
        self.ds.close()

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: reopen the file, start with no cache
        state = dict(self.__dict__)
        state["ds"] = None
        state["_cache"] = OrderedDict()
        state.pop("_states", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.ds = open_ensemble(self.path)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path.name}, split={self.split!r}, runs={len(self.run_positions)}, "
                f"samples={len(self)}, nv={self.mesh.nv}, moving_front={self.moving_front})")


class DirectDataset(EnsembleDataset):
    """Direct mode: initial state + forcing + ``time`` -> velocity, thickness (, ice level set) at ``t_k``."""

    mode = "direct"

    def input_arrays(self, position: int, k: int) -> dict[str, Any]:
        arrays = self.state_arrays(position, 0)
        arrays["time"] = float(self.run_arrays(position).time[k])
        return arrays


class DirectRunDataset(DirectDataset):
    """Direct mode for time-decoded networks (:class:`~issm_emulator.nn.direct.EGCNDirect`,
    :class:`~issm_emulator.nn.increment.TimeInputIncrement`): one sample per **run**, inputs = the initial
    state and the forcing (the ``time`` column is 0: unused, or replaced by the network's ``t / T``),
    targets = the **changes since the initial state** at every kept output ``k`` of the run.

    A sample holds ``times (nv, K)`` (s since the start, the same on every vertex), ``y_velocity (nv, K, 2)``
    and ``y_scalars (nv, K, m)`` (increments, SI) and ``k (K,)``; only outputs present in every run of the
    split are kept (so ``K`` is the same for all samples and they batch together).
    """

    def _make_samples(self, keep: set[int] | None) -> list[tuple[int, int]]:
        common: set[int] | None = None
        for p in self.run_positions:
            valid = {int(k) for k in self._valid_outputs(int(p))}
            common = valid if common is None else common & valid
        ks = sorted((common or set()) if keep is None else (common or set()) & keep)
        self.kept_outputs = np.asarray(ks, dtype=np.int64)
        return [(int(p), 0) for p in self.run_positions] if ks else []

    def forcing(self, position: int) -> dict[str, Any]:
        """As :meth:`EnsembleDataset.forcing`, with ``time`` starting at 0: at ``t = 0`` a time-decoded
        network returns the initial state exactly, so the range it covers starts there."""
        out = super().forcing(position)
        if "time" in out:
            out["time"] = np.concatenate([[0.0], np.asarray(out["time"], float)])
        return out

    def targets_run(self, position: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(times (nv, K), y_velocity (nv, K, 2), y_scalars (nv, K, m))``: increments since ``k = 0`` (SI)."""
        ra = self.run_arrays(position)
        f = ra.fields
        ks = self.kept_outputs
        nv = f["vx"].shape[1]
        vel = np.stack([f["vx"][ks] - f["vx"][0], f["vy"][ks] - f["vy"][0]], axis=-1).transpose(1, 0, 2)
        names = self.spec.scalar_outputs
        sc = np.stack([f[n][ks] - f[n][0] for n in names], axis=-1).transpose(1, 0, 2) if names \
            else np.zeros((nv, ks.size, 0))
        vel, sc = self.on_net_mesh(vel), self.on_net_mesh(sc)
        times = np.broadcast_to(ra.time[ks][None, :], (vel.shape[0], ks.size))
        return (torch.as_tensor(np.ascontiguousarray(times), dtype=torch.float64),
                torch.as_tensor(vel, dtype=self.dtype), torch.as_tensor(sc, dtype=self.dtype))

    def __getitem__(self, index: int) -> Data:
        p, _ = self.samples[index]
        arrays = self.state_arrays(p, 0)
        arrays["time"] = 0.0
        scalars, vectors = self.inputs(arrays)
        times, y_vel, y_sc = self.targets_run(p)
        g = self.net_graph
        return Data(edge_index=g.edge_index, pos=g.pos, edge_vec=g.edge_vec, edge_len=g.edge_len, face=g.face,
                    num_nodes=g.num_nodes, scalars=scalars, vectors=vectors, times=times, y_velocity=y_vel,
                    y_scalars=y_sc, run=torch.tensor([p]), k=torch.as_tensor(self.kept_outputs)[None, :])


class StepDataset(EnsembleDataset):
    """Step mode: geometry, masks, forcing and velocity of output ``k - 1`` -> velocity of output ``k``.

    ``input_noise`` (m, default 0) trains for rollouts: every time a sample is drawn, the input thickness
    gets a smooth random perturbation of that standard deviation where there is ice (white noise averaged
    twice over each vertex's neighbours, rescaled), with surface and base moved consistently (grounded ice:
    the surface; floating ice: both, by flotation), and the gradients follow. The target velocity is kept,
    so the network learns to map geometries a little off the training trajectories, as its own rollouts
    produce, back to the velocity of the true geometry. Noise is drawn from torch's generator, so a seeded
    training is reproducible.

    ``noise_targets='ssa'`` replaces that target by the stress balance of the **perturbed** geometry, solved
    by ``fem``'s SSA (:func:`~issm_emulator.physics.ssa.solve_ssa`, warm-started from the true velocity) on
    the run's rebuilt model (:meth:`run_state`): the network then learns how the velocity answers a geometry
    off the training trajectories, which is what a rollout needs, instead of learning to ignore the change.
    With a moving front the solved velocity is extrapolated into the ice-free area from the vertices of ice
    elements, as the ensemble's outputs are (:func:`~issm_emulator.physics.levelset.extrapolate`).
    Step-mode networks predict velocity only (no scalar outputs).

    ``previous_velocity=True`` adds the velocity of output ``k - 1`` (the step's start) to the inputs
    (:func:`~issm_emulator.nn.features.default_spec`); ``velocity_noise`` (a fraction, default 0) then
    perturbs that input velocity by a smooth random field of that standard deviation relative to the local
    speed, each component independently, while the target stays the velocity of the (possibly perturbed)
    geometry: the network learns to move a wrong warm start towards the stress balance, which is what keeps
    its rollouts from drifting.

    :meth:`set_rollouts` gives the network's own rollouts of the runs (:mod:`~issm_emulator.learning.rollout_inputs`):
    a fraction of the samples then start from the rollout's thickness at output ``k - 1``, the difference to
    the run's entering as the noise does (and adding to it), with the same targets rule.

    ``noise_seed`` fixes the perturbations: sample ``(run, k)`` then always gets the same ones (drawn from
    ``numpy.random.default_rng([noise_seed, run, k])``), as a validation split needs to compare epochs;
    without it they are drawn anew each time from torch's generator.
    """

    mode = "step"

    def __init__(self, *args: Any, input_noise: float = 0.0, noise_targets: str = "keep",
                 previous_velocity: bool = False, velocity_noise: float = 0.0, noise_seed: int | None = None,
                 **kwargs: Any):
        if not (np.isfinite(input_noise) and input_noise >= 0):
            raise DatasetError(f"input_noise must be a non-negative thickness (m), got {input_noise!r}")
        if noise_targets not in ("keep", "ssa"):
            raise DatasetError(f"noise_targets must be 'keep' or 'ssa', got {noise_targets!r}")
        if not (np.isfinite(velocity_noise) and velocity_noise >= 0):
            raise DatasetError(f"velocity_noise must be a non-negative fraction of the speed, got {velocity_noise!r}")
        self.input_noise = float(input_noise)
        self.noise_targets = noise_targets
        self.previous_velocity = bool(previous_velocity)
        self.velocity_noise = float(velocity_noise)
        self.noise_seed = None if noise_seed is None else int(noise_seed)
        super().__init__(*args, **kwargs)
        if self.velocity_noise and "velocity" not in self.spec.vectors:
            raise DatasetError("velocity_noise perturbs the input velocity: it needs previous_velocity=True (a "
                               "spec with the 'velocity' input)")
        self._neighbours = None
        self._pmesh_ssa = None
        self._rollouts: dict[int, np.ndarray] = {}
        self.rollout_fraction = 0.0

    def set_rollouts(self, thickness: Mapping[int, np.ndarray], fraction: float) -> None:
        """Start a ``fraction`` of the samples from the thickness of the network's own rollouts (``{run position:
        (T + 1, nv)}``, :func:`~issm_emulator.learning.rollout_inputs.rollout_thickness`) instead of the
        run's: the difference enters as the noise does (where there is ice; surface and base by flotation;
        with ``noise_targets='ssa'`` the target is the stress balance of that geometry). An empty mapping or
        a zero fraction switches it off."""
        if not (np.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise DatasetError(f"rollout fraction must lie in [0, 1], got {fraction!r}")
        rolls = {}
        for p, h in thickness.items():
            h = np.asarray(h, float)
            nt, nv = self.run_arrays(int(p)).fields["thickness"].shape
            if h.shape != (nt, nv):
                raise DatasetError(f"rollout thickness of run position {p}: expected shape {(nt, nv)}, got {h.shape}")
            rolls[int(p)] = h
        self._rollouts = rolls
        self.rollout_fraction = float(fraction) if rolls else 0.0

    @property
    def perturbed(self) -> bool:
        """Whether training inputs are moved off the runs' states (noise or rollouts)."""
        return self.input_noise > 0 or self.rollout_fraction > 0

    def __getitem__(self, index: int) -> Data:
        if not self.perturbed or self.noise_targets == "keep":
            return super().__getitem__(index)  # the true velocity of output k (input_arrays adds any noise)
        # 'ssa': the target is the stress balance of the perturbed geometry, solved by fem's SSA from the
        # true velocity, so the network learns how the velocity answers a geometry off the trajectory
        from issm_emulator.physics.fe import P1Mesh
        from issm_emulator.physics.ssa import solve_ssa

        p, k = self.samples[index]
        arrays = self.input_arrays(p, k)
        state = self.run_state(p)
        if self._pmesh_ssa is None:
            self._pmesh_ssa = P1Mesh.from_mesh(state.mesh)
        f = self.run_arrays(p).fields
        sol = solve_ssa(state, thickness=arrays["thickness"], surface=arrays["surface"], base=arrays["base"],
                        ocean_levelset=arrays["ocean_levelset"], ice_levelset=arrays["ice_levelset"],
                        vx0=f["vx"][k], vy0=f["vy"][k], mesh=self._pmesh_ssa)
        vx, vy = sol.vx, sol.vy
        if self.moving_front:
            # the ensemble's velocity outputs are extrapolated from the vertices of ice elements into the
            # ice-free area (transient.py, front_step), so the target is too
            from issm_emulator.physics.levelset import extrapolate, ice_vertex_mask

            known = ice_vertex_mask(np.asarray(arrays["ice_levelset"], float), self._pmesh_ssa.elements,
                                    self._pmesh_ssa.nv)
            vx, vy = extrapolate(self._pmesh_ssa, vx, known), extrapolate(self._pmesh_ssa, vy, known)
        scalars, vectors = self.inputs(arrays)
        y_vel = torch.as_tensor(self.on_net_mesh(np.stack([vx, vy], axis=1)), dtype=self.dtype)
        g = self.net_graph
        return Data(edge_index=g.edge_index, pos=g.pos, edge_vec=g.edge_vec, edge_len=g.edge_len, face=g.face,
                    num_nodes=g.num_nodes, scalars=scalars, vectors=vectors, y_velocity=y_vel,
                    y_scalars=torch.zeros((g.num_nodes, 0), dtype=self.dtype), run=torch.tensor([p]),
                    k=torch.tensor([k]))

    def _smooth_noise(self, nv: int, rng: np.random.Generator | None = None) -> np.ndarray:
        if self._neighbours is None:
            import scipy.sparse as sp

            src, dst = self._edge_index
            adj = sp.csr_matrix((np.ones(src.size), (dst, src)), shape=(nv, nv)) + sp.identity(nv, format="csr")
            self._neighbours = sp.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj
        if rng is None:
            rng = np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, (1,)).item()))
        eps = rng.standard_normal(nv)
        eps = self._neighbours @ (self._neighbours @ eps)
        return eps / max(float(eps.std()), 1e-12)

    def default_spec(self) -> FeatureSpec:
        return default_spec(self.mode, self.parameters, self.moving_front, previous_velocity=self.previous_velocity)

    def input_arrays(self, position: int, k: int) -> dict[str, Any]:
        arrays = self.state_arrays(position, k - 1)
        rng = None if self.noise_seed is None else np.random.default_rng([self.noise_seed, int(position), int(k)])
        if self.velocity_noise > 0:
            v = np.asarray(arrays["velocity"], float)
            nv = v.shape[0]
            noise = np.stack([self._smooth_noise(nv, rng), self._smooth_noise(nv, rng)], axis=1)
            arrays = dict(arrays)
            arrays["velocity"] = v + self.velocity_noise * np.hypot(v[:, 0], v[:, 1])[:, None] * noise
        drift = None
        if self.rollout_fraction > 0 and k >= 2 and int(position) in self._rollouts:
            u = rng.random() if rng is not None else float(torch.rand(1).item())
            if u < self.rollout_fraction:
                drift = self._rollouts[int(position)][k - 1] - np.asarray(arrays["thickness"], float)
                drift = np.where(np.isfinite(drift), drift, 0.0)
        if self.input_noise <= 0 and drift is None:
            return arrays
        h = np.asarray(arrays["thickness"], float)
        ice = (np.asarray(arrays["ice_levelset"], float) < 0) & (h > 1.0)
        dh = self.input_noise * self._smooth_noise(h.size, rng) if self.input_noise > 0 else np.zeros_like(h)
        dh = np.where(ice, dh if drift is None else dh + drift, 0.0)
        dh = np.maximum(h + dh, np.minimum(h, 1.0)) - h               # never below 1 m (or below the data)
        static = self.run_arrays(position).static
        ratio = float(np.nanmean(static["rho_ice"]) / np.nanmean(static["rho_water"])) \
            if "rho_ice" in static and "rho_water" in static else 917.0 / 1023.0
        floating = np.asarray(arrays["ocean_levelset"], float) < 0
        arrays = dict(arrays)
        arrays["thickness"] = h + dh
        arrays["base"] = np.asarray(arrays["base"], float) - np.where(floating, ratio * dh, 0.0)
        arrays["surface"] = np.asarray(arrays["surface"], float) + np.where(floating, (1.0 - ratio) * dh, dh)
        return arrays


def make_dataset(mode: str, data: str | os.PathLike, split: str | None = "train", *, decoder: str | None = None,
                 **kwargs: Any) -> EnsembleDataset:
    """:class:`DirectDataset` (``decoder=None``), :class:`DirectRunDataset` (``decoder='increment'``) or
    :class:`StepDataset` by ``mode``."""
    if mode == "direct":
        return DirectRunDataset(data, split, **kwargs) if decoder == "increment" else DirectDataset(data, split,
                                                                                                     **kwargs)
    if mode == "step":
        return StepDataset(data, split, **kwargs)
    raise ValueError(f"mode must be 'direct' or 'step', got {mode!r}")


def collate(samples: Sequence[Data]) -> Batch:
    """Batch samples into one disconnected graph (:class:`torch_geometric.data.Batch`): node tensors are
    concatenated, ``edge_index``/``face`` offset, ``run``/``k`` become ``(B,)``."""
    if not samples:
        raise ValueError("collate: no samples")
    return Batch.from_data_list(list(samples))
