"""Sweeps of a user's own pyISSM model: ``issm-emulator generate --model MY_MODEL.nc --vary PATH=VALUES``.

A model sweep takes a model saved by ``pyissm.model.io.save_model`` (or a model in memory), and runs it
once per point of a grid of md-field values:

* ``PATH=VALUES`` sets the field ``md.PATH`` to each value; a scalar value is broadcast to the field's
  shape (a per-vertex field becomes uniform; a forcing time series keeps its time row).
* ``PATH*=VALUES`` multiplies the model's existing field by each value (a dimensionless factor).
* several variations make a full grid (first variation slowest); ``zip=True`` pairs them instead.

Values are in the field's ISSM user unit (m/yr for melt rates, Pa for stresses, ...: :data:`issm_emulator.units.MD_UNITS`);
pint quantities and strings such as ``'10 m/day'`` are converted. Everything is checked before any run starts
(:func:`model_sweep_spec`): the paths exist in ``md`` and are numeric, the values are finite scalars of a
compatible unit, and every grid point's model passes ``fem``'s input checks
(:func:`issm_emulator.issm.adapter.read_model`); a failure raises :class:`~issm_emulator.errors.ModelInputError`
naming the md field.

The model is copied into the ensemble folder as ``model-<digest>.nc`` (the digest is of the model's content,
so re-running with the same model resumes, and a changed model gives new runs); each run file records its
values, so the learning pipeline rebuilds any run's model (:meth:`ModelSweepSpec.from_attrs`,
:meth:`ModelSweepSpec.build_model`). Generation uses the same resumable, parallel, dask-capable runner as the
built-in sweeps (:func:`~issm_emulator.datasets.runner.generate_ensemble`); runs are keyed by their values.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from issm_emulator.errors import IssmEmulatorError, ModelInputError

from .md_fields import (
    FORCING_FEATURES,
    MD_FIELD_UNITS,
    Variation,
    apply_variation,
    check_numeric,
    field_unit,
    load_pyissm_model,
    model_digest,
    parse_vary,
    quiet,
    resolve_field,
    save_pyissm_model,
    strip_md,
    values_list,
)
from .spec import EnsembleError, jsonable

__all__ = ["MD_FIELD_UNITS", "ModelSweepSpec", "Variation", "load_pyissm_model", "model_digest",
           "model_sweep_spec", "parse_vary", "sweep_model"]

# ------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True, eq=False)
class ModelSweepSpec:
    """A sweep of md fields of one saved pyISSM model (see the module documentation).

    It has the interface of :class:`~issm_emulator.datasets.spec.EnsembleSpec` that the runner and the store
    use (``values``, ``parameters``, ``value_coords``, ``fingerprint``, ``build_model``, ...). A run's value is
    a float for one variation and a tuple of floats (one per variation) for several. Build it with
    :func:`model_sweep_spec`, which checks the model and copies it into the ensemble folder.
    """

    model_file: str
    model_digest: str
    variations: tuple[Variation, ...]
    zip: bool = False
    years: Any = None
    time_step: Any = None
    output_frequency: int | None = None
    solver: Any = "fem"
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    split_rule: str | None = "interleaved"
    model_source: str = ""
    model_bytes: bytes | None = field(default=None, repr=False)
    values: tuple[Any, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variations", tuple(self.variations))
        object.__setattr__(self, "solver_options", dict(self.solver_options))
        if not self.variations:
            raise EnsembleError("a model sweep needs at least one --vary PATH=VALUES")
        names = [v.name for v in self.variations]
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise EnsembleError(f"a model sweep varies each field once; repeated: {repeated}")
        lists = [v.values for v in self.variations]
        if len(lists) == 1:
            values: tuple[Any, ...] = tuple(lists[0])
        elif self.zip:
            if len({len(v) for v in lists}) != 1:
                raise EnsembleError("--zip pairs the values of every --vary: they need the same number of values, "
                                    f"got {', '.join(f'{v.label()}: {len(v.values)}' for v in self.variations)}")
            values = tuple(zip(*lists))
        else:
            values = tuple(itertools.product(*lists))
        object.__setattr__(self, "values", values)
        if not self.name:
            object.__setattr__(self, "name", "model-" + "-".join(v.name for v in self.variations))

    # --- the interface shared with EnsembleSpec
    @property
    def scenario(self) -> str:
        return f"model:{Path(self.model_file).name}"

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variations)

    @property
    def parameter(self) -> str:
        return self.parameters[0]

    @property
    def units(self) -> str | None:
        return self.variations[0].units

    @property
    def solver_name(self) -> str:
        if isinstance(self.solver, str):
            return self.solver
        return str(getattr(self.solver, "name", "") or type(self.solver).__name__)

    def value_coords(self, value: Any) -> dict[str, Any]:
        vals = (value,) if len(self.variations) == 1 and np.ndim(value) == 0 else tuple(value)
        return {v.name: float(x) for v, x in zip(self.variations, vals)}

    def coord_attrs(self, name: str) -> dict[str, str]:
        var = next(v for v in self.variations if v.name == name)
        attrs = {"long_name": (f"scale factor of {var.md_path}" if var.scale else f"value of {var.md_path}"),
                 "md_path": var.md_path, "operation": "scale" if var.scale else "set"}
        if var.units is not None:
            attrs["units"] = var.units
            if "/" in var.units:  # a fractional power (Budd friction): UDUNITS-readable units, full unit aside
                from .member import _reduced_unit

                attrs.update(units=_reduced_unit(var.units), issm_units=var.units)
        return attrs

    def coord_numeric(self, name: str) -> bool:
        return True

    def provenance(self) -> dict[str, Any]:
        """Everything that determines a run except its values (the model by content digest)."""
        return {
            "ensemble": self.name,
            "scenario": "model",
            "model_digest": self.model_digest,
            "variations": [[v.path, "scale" if v.scale else "set", v.units] for v in self.variations],
            "years": jsonable(self.years),
            "time_step": jsonable(self.time_step),
            "output_frequency": self.output_frequency,
            "solver": self.solver_name,
            "solver_options": jsonable(self.solver_options),
        }

    def fingerprint(self, value: Any) -> str:
        """sha256 (16 hex digits) of :meth:`provenance` and the run's values: identifies a finished run."""
        vals = [self.value_coords(value)[n] for n in self.parameters]
        text = json.dumps({**self.provenance(), "value": vals}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def scenario_call_kwargs(self, value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {f"{v.md_path}{'*' if v.scale else ''}": x
                               for v, x in zip(self.variations, self.value_coords(value).values())}
        for key in ("years", "time_step", "output_frequency"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.provenance(), "parameters": list(self.parameters), "model_file": Path(self.model_file).name,
                "model_source": self.model_source, "vary": [v.to_dict() for v in self.variations],
                "zip": self.zip, "values": [jsonable(v) for v in self.values], "split_rule": self.split_rule}

    def ensemble_attrs(self) -> dict[str, Any]:
        feats = [FORCING_FEATURES[v.path] for v in self.variations if v.path in FORCING_FEATURES and not v.scale]
        feats += [FORCING_FEATURES[v.path] for v in self.variations if v.path in FORCING_FEATURES and v.scale]
        return {"sweep_kind": "model", "model_file": Path(self.model_file).name, "model_digest": self.model_digest,
                "model_source": self.model_source,
                "vary": json.dumps([v.to_dict() for v in self.variations]), "zip": int(self.zip),
                "forcing_features": json.dumps(list(dict.fromkeys(feats)))}

    def prepare(self) -> None:
        if not Path(self.model_file).is_file() and self.model_bytes is None:
            raise EnsembleError(f"the swept model {self.model_file} is missing")

    def for_workers(self) -> ModelSweepSpec:
        """This spec carrying the model file's bytes, for workers without the ensemble folder (dask)."""
        if self.model_bytes is not None:
            return self
        return replace(self, model_bytes=Path(self.model_file).read_bytes())

    # --- models
    def base_model(self) -> Any:
        """The swept model as saved (read from :attr:`model_file`, or from :attr:`model_bytes`)."""
        if Path(self.model_file).is_file():
            return load_pyissm_model(self.model_file)
        if self.model_bytes is None:
            raise EnsembleError(f"the swept model {self.model_file} is missing (a model sweep keeps it in the "
                                "ensemble folder)")
        with tempfile.TemporaryDirectory(prefix="issm-emulator-model-") as tmp:
            p = Path(tmp) / "model.nc"
            p.write_bytes(self.model_bytes)
            return load_pyissm_model(p)

    def apply(self, md: Any, value: Any) -> Any:
        """Apply the time overrides and the run's values to ``md`` (changed in place, returned)."""
        _apply_time(md, self.years, self.time_step, self.output_frequency)
        for var, x in zip(self.variations, self.value_coords(value).values()):
            apply_variation(md, var, x)
        return md

    def build_model(self, value: Any) -> Any:
        """The pyISSM model of one run: the base model with the run's values."""
        return self.apply(self.base_model(), value)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], folder: str | os.PathLike) -> ModelSweepSpec:
        """The spec recorded in an ensemble's (or a run file's) attributes; the model file is looked up in
        ``folder`` (the ensemble folder)."""
        def js(name: str, default: Any = None) -> Any:
            raw = attrs.get(name)
            if raw is None or raw == "":
                return default
            try:
                return json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                return default

        variations = tuple(Variation.from_dict(d) for d in js("vary", []))
        if not variations:
            raise EnsembleError("the ensemble records no model-sweep variations (attribute 'vary')")
        return cls(model_file=str(Path(folder) / str(attrs["model_file"])), model_digest=str(attrs["model_digest"]),
                   variations=variations, zip=bool(int(attrs.get("zip", 0) or 0)), years=js("years"),
                   time_step=js("time_step"), output_frequency=js("output_frequency"),
                   solver=str(attrs.get("solver", "fem")), solver_options=js("solver_options", {}) or {},
                   name=str(attrs.get("ensemble", "")), split_rule=str(attrs.get("split_rule", "")) or None,
                   model_source=str(attrs.get("model_source", "")))


def _apply_time(md: Any, years: Any, time_step: Any, output_frequency: Any) -> None:
    if years is not None:
        md.timestepping.final_time = float(md.timestepping.start_time) + float(years)
    if time_step is not None:
        md.timestepping.time_step = float(time_step)
    if output_frequency is not None:
        md.settings.output_frequency = int(output_frequency)


def _time_overrides(years: Any, time_step: Any, output_frequency: Any) -> tuple[Any, Any, Any]:
    from issm_emulator.units import to_issm

    out = []
    for value, fld in ((years, "md.timestepping.final_time (run length, years)"),
                       (time_step, "md.timestepping.time_step")):
        if value is None:
            out.append(None)
            continue
        v = float(to_issm(value, "yr", field=fld))
        if not (math.isfinite(v) and v > 0):
            raise ModelInputError(fld, "a positive number of years", repr(value))
        out.append(v)
    if output_frequency is not None and (isinstance(output_frequency, bool) or int(output_frequency) < 1
                                         or int(output_frequency) != output_frequency):
        raise ModelInputError("md.settings.output_frequency", "a positive integer", repr(output_frequency))
    return out[0], out[1], None if output_frequency is None else int(output_frequency)


def _check_grid(spec: ModelSweepSpec, base: Any, max_checks: int = 64) -> None:
    """Every grid point's model (at most ``max_checks`` of them, evenly spread, first and last included)
    passes ``fem``'s input checks; else a ModelInputError naming the field and the run's values."""
    from issm_emulator.issm.adapter import read_model

    from .member import request_masks

    n = len(spec.values)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_checks)).round().astype(int)) if n else []
    for i in idx:
        value = spec.values[int(i)]
        md = spec.apply(copy.deepcopy(base), value)
        request_masks(md)
        try:
            with quiet():
                read_model(md, "Transient")
        except ModelInputError as exc:
            raise ModelInputError(exc.field, exc.expected,
                                  f"{exc.got if exc.got is not None else 'an invalid value'} (in the model of run "
                                  f"{spec.value_coords(value)})") from None
        except IssmEmulatorError as exc:
            raise ModelInputError("md", "a model that fem can run (issm_emulator.issm.adapter.read_model)",
                                  f"{type(exc).__name__}: {exc} (in the model of run {spec.value_coords(value)})") \
                from None


def model_sweep_spec(md: Any, vary: Mapping[str, Any] | Sequence[str], out_dir: str | os.PathLike, *,
                     zip: bool = False, years: Any = None, time_step: Any = None,
                     output_frequency: int | None = None, solver: Any = "fem",
                     solver_options: Mapping[str, Any] | None = None, name: str = "",
                     split_rule: str | None = "interleaved") -> ModelSweepSpec:
    """Check a model sweep and prepare its ensemble folder (nothing runs yet).

    Parameters
    ----------
    md : pyISSM model or path
        The model, or a file written by ``pyissm.model.io.save_model``.
    vary : mapping or sequence of str
        ``{'basalforcings.floatingice_melting_rate': '0:70:2', 'friction.coefficient*': [0.8, 1.0, 1.2]}``
        (a trailing ``*`` scales the existing field) or the CLI's ``['PATH=VALUES', 'PATH*=VALUES']``.
        Values: a range/list string (:func:`~issm_emulator.datasets.spec.parse_values`, optional unit), a list
        of numbers, pint quantities or strings, or a 1-D pint Quantity; in the field's ISSM unit.
    out_dir : ensemble folder; the model is copied there as ``model-<digest>.nc``
    zip : pair the variations' values (same count) instead of a full grid
    years, time_step, output_frequency : override the model's run length (years from
        ``md.timestepping.start_time``), time step (years) and output frequency
    solver, solver_options, name, split_rule : as :class:`~issm_emulator.datasets.spec.EnsembleSpec`

    Raises
    ------
    ModelInputError
        A path that does not exist in md or is not numeric, values of the wrong shape or unit, a model that
        fails ``fem``'s input checks (on the grid's models).
    """
    out = Path(out_dir)
    source = ""
    if isinstance(md, (str, os.PathLike)):
        source = str(Path(md).resolve())
        src_path = Path(md)
        md = load_pyissm_model(src_path)
    else:
        src_path = None
        if not hasattr(md, "mesh") or not hasattr(md, "timestepping"):
            raise ModelInputError("md", "a pyISSM model (or the path of one saved by save_model)",
                                  type(md).__name__)
    items: list[tuple[str, bool, Any]] = []
    if isinstance(vary, Mapping):
        for key, raw in vary.items():
            key = str(key).strip()
            items.append((strip_md(key.rstrip("*")), key.endswith("*"), raw))
    else:
        for text in vary:
            try:
                items.append(parse_vary(text))
            except ValueError as exc:
                raise EnsembleError(str(exc)) from None
    if not items:
        raise EnsembleError("a model sweep needs at least one variation (--vary PATH=VALUES)")
    yts = float(getattr(getattr(md, "constants", None), "yts", 0) or 0) or None
    variations = []
    for path, scale, raw in items:
        _, _, current = resolve_field(md, path)
        check_numeric(path, current, scale)
        unit = field_unit(path, scale)
        variations.append(Variation(path, scale, values_list(raw, path, unit, scale, yts), unit))
    years, time_step, output_frequency = _time_overrides(years, time_step, output_frequency)

    # the model as the workers will read it: from a file saved by pyISSM, digested by content
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".model.{os.getpid()}.tmp.nc"
    try:
        if src_path is None:
            save_pyissm_model(md, tmp)
        else:
            shutil.copyfile(src_path, tmp)
        base = load_pyissm_model(tmp)
        digest = model_digest(base)
        final = out / f"model-{digest[:12]}.nc"
        if not final.is_file():
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    spec = ModelSweepSpec(model_file=str(final.resolve()), model_digest=digest, variations=tuple(variations),
                          zip=zip, years=years, time_step=time_step, output_frequency=output_frequency,
                          solver=solver, solver_options=dict(solver_options or {}), name=name,
                          split_rule=split_rule, model_source=source)
    _check_grid(spec, base)
    return spec


def sweep_model(md: Any, vary: Mapping[str, Any] | Sequence[str], out_dir: str | os.PathLike, *, zip: bool = False,
                years: Any = None, time_step: Any = None, output_frequency: int | None = None,
                solver: Any = "fem", solver_options: Mapping[str, Any] | None = None, name: str = "",
                split_rule: str | None = "interleaved", workers: int | None = None, scheduler: Any = None,
                progress: bool = True) -> Path:
    """Run a pyISSM model over a grid of md-field values and combine the runs into ``out_dir/ensemble.nc``.

    ``issm_emulator.datasets.sweep_model(md, vary={'basalforcings.floatingice_melting_rate': '0:70:2'},
    out_dir='ens')``. Arguments as :func:`model_sweep_spec` (which checks everything before any run) and
    :func:`~issm_emulator.datasets.runner.generate_ensemble` (``workers``, ``scheduler``, ``progress``).
    Re-running resumes: values already computed (same model, settings and value) are not run again.

    Returns
    -------
    pathlib.Path
        ``out_dir / 'ensemble.nc'``.
    """
    from .runner import generate_ensemble

    spec = model_sweep_spec(md, vary, out_dir, zip=zip, years=years, time_step=time_step,
                            output_frequency=output_frequency, solver=solver, solver_options=solver_options,
                            name=name, split_rule=split_rule)
    return generate_ensemble(spec, out_dir, workers=workers, scheduler=scheduler, progress=progress)
