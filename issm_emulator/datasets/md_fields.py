"""The md fields of a pyISSM model that a model sweep varies: one job, reading and changing them.

* :func:`load_pyissm_model` reads a file of ``pyissm.model.io.save_model``; :func:`model_digest` digests a
  model's content (so the same model, however saved, is recognised);
* :class:`Variation` is one swept field (``PATH=VALUES`` sets it, ``PATH*=VALUES`` scales it), parsed from the
  command line by :func:`parse_vary`;
* :func:`resolve_field` finds ``md.PATH``, :func:`check_numeric` and :func:`values_list` check the field and
  the values (finite scalars, converted to the field's ISSM unit of :data:`issm_emulator.units.MD_UNITS`),
  raising
  :class:`~issm_emulator.errors.ModelInputError` naming the md field;
* :func:`apply_variation` writes a value into a model: a scalar broadcast to the field's shape (a forcing time
  series keeps its time row), or the field multiplied by it.

The sweep itself (the grid, the spec, the ensemble folder) is :mod:`issm_emulator.datasets.model_sweep`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from issm_emulator.errors import IssmEmulatorError, ModelInputError
from issm_emulator.units import MD_UNITS, registry_for

from .spec import parse_values

__all__ = ["FORCING_FEATURES", "MD_FIELD_UNITS", "Variation", "apply_variation", "check_numeric", "field_unit",
           "load_pyissm_model", "model_digest", "parse_vary", "quiet", "resolve_field", "save_pyissm_model",
           "strip_md", "values_list"]

#: ISSM user units of the md fields (``md.`` omitted): :data:`issm_emulator.units.MD_UNITS`, the package's
#: one table of input units. Values of other fields, and of fields whose unit depends on a law's exponents
#: (``friction.coefficient``, ``materials.rheology_B``), are taken as plain numbers in the field's ISSM unit
#: (a pint quantity with a unit is refused for them).
MD_FIELD_UNITS = MD_UNITS

#: md field -> the network feature that carries it (its range goes into checkpoints). Fields that are
#: features anyway (friction_coefficient, rheology_B, smb, ...) need no entry.
FORCING_FEATURES: dict[str, str] = {
    "basalforcings.floatingice_melting_rate": "melt_rate",
    "calving.stress_threshold_floatingice": "calving_threshold",
}

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_TIME_FIELDS = ("timestepping.final_time", "timestepping.time_step", "settings.output_frequency")


def quiet():
    """Silence pyISSM's prints and warnings while it loads or saves a model."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def load_pyissm_model(path: str | os.PathLike) -> Any:
    """A model written by ``pyissm.model.io.save_model``, read with ``pyissm.model.io.load_model``."""
    p = Path(path)
    if not p.is_file():
        raise ModelInputError("model file", "a model saved by pyissm.model.io.save_model", f"{p} does not exist")
    from pyissm.model.io import load_model

    os.environ.setdefault("USER", "issm-emulator")  # pyISSM's cluster class reads $USER while loading
    try:
        with quiet():
            md = load_model(str(p))
    except Exception as exc:  # noqa: BLE001 - any reader error is a bad model file
        raise ModelInputError("model file", "a model saved by pyissm.model.io.save_model",
                              f"{p} cannot be read ({type(exc).__name__}: {exc})") from None
    if md is None or not hasattr(md, "mesh"):
        raise ModelInputError("model file", "a model saved by pyissm.model.io.save_model", f"{p} holds no model")
    return md


def save_pyissm_model(md: Any, path: Path) -> None:
    from pyissm.model.io import save_model

    with quiet():
        save_model(md, str(path))


# ------------------------------------------------------------------------------------------- digest
_SKIP_CLASSES = frozenset({"results", "private", "cluster", "toolkits", "verbose", "miscellaneous", "radaroverlay",
                           "debug", "qmu", "autodiff", "inversion", "outputdefinition"})


def _feed(h: Any, obj: Any, depth: int = 0) -> None:
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        a = np.ascontiguousarray(obj, dtype=np.float64)
        h.update(f"a{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, (bool, int, float, np.integer, np.floating)):
        h.update(f"n{float(obj)!r}".encode())
    elif isinstance(obj, (str, bytes)):
        h.update(f"s{obj!r}".encode())
    elif isinstance(obj, (list, tuple, np.ndarray)):
        h.update(f"l{len(obj)}".encode())
        for item in obj:
            _feed(h, item, depth + 1)
    elif isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(f"k{k}".encode())
            _feed(h, obj[k], depth + 1)
    elif obj is None:
        h.update(b"none")
    elif hasattr(obj, "__dict__") and depth < 3:
        h.update(f"o{type(obj).__name__}".encode())
        for k in sorted(vars(obj)):
            h.update(f"f{k}".encode())
            _feed(h, getattr(obj, k), depth + 1)
    else:
        h.update(f"t{type(obj).__name__}".encode())


def model_digest(md: Any) -> str:
    """sha256 (hex) of a model's content (every field of its classes except results, cluster and other
    bookkeeping): identical models, however saved, have the same digest."""
    h = hashlib.sha256()
    for name in sorted(vars(md)):
        if name in _SKIP_CLASSES:
            continue
        h.update(f"c{name}".encode())
        _feed(h, getattr(md, name))
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- variations
def strip_md(path: str) -> str:
    path = path.strip()
    return path.removeprefix("md.")


def _coord_name(path: str, scale: bool) -> str:
    return path.replace(".", "_") + ("_factor" if scale else "")


@dataclass(frozen=True)
class Variation:
    """One swept md field: ``path`` (``'basalforcings.floatingice_melting_rate'``), whether its values set
    the field or ``scale`` it, the values (floats in ``units``), and ``units`` (the field's ISSM unit; ``'1'``
    for factors; None when unknown: plain numbers)."""

    path: str
    scale: bool
    values: tuple[float, ...]
    units: str | None = None

    @property
    def name(self) -> str:
        """The ensemble coordinate of this variation (``basalforcings_floatingice_melting_rate``,
        ``friction_coefficient_factor``)."""
        return _coord_name(self.path, self.scale)

    @property
    def md_path(self) -> str:
        return f"md.{self.path}"

    def label(self) -> str:
        return f"{self.path}{'*' if self.scale else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "operation": "scale" if self.scale else "set", "units": self.units,
                "values": list(self.values)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Variation:
        return cls(str(d["path"]), d.get("operation") == "scale", tuple(float(v) for v in d.get("values", ())),
                   d.get("units"))


def parse_vary(text: str) -> tuple[str, bool, str]:
    """``'PATH=VALUES'`` or ``'PATH*=VALUES'`` -> ``(path without 'md.', scale, values text)``."""
    key, sep, values = str(text).partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ValueError(f"--vary {text!r}: expected PATH=VALUES or 'PATH*=VALUES' (e.g. "
                         "basalforcings.floatingice_melting_rate=0:70:2)")
    key = key.strip()
    scale = key.endswith("*")
    return strip_md(key.rstrip("*").strip()), scale, values.strip()


def field_unit(path: str, scale: bool) -> str | None:
    """The unit swept values of ``md.path`` are in: ``'1'`` for a scale factor, else the field's ISSM unit
    (None when unknown or dependent on the model's exponents)."""
    if scale:
        return "1"
    unit = MD_UNITS.get(path)
    if unit is None:
        return None
    try:
        registry_for(None).parse_units(unit)
    except Exception:  # noqa: BLE001 - a unit with symbolic exponents ('Pa s^(1/n)')
        return None
    return unit


def resolve_field(md: Any, path: str) -> tuple[Any, str, Any]:
    """``(owner object, attribute, current value)`` of ``md.path``, or a ModelInputError."""
    if not _PATH.match(path):
        raise ModelInputError(f"md.{path}", "a field path such as basalforcings.floatingice_melting_rate",
                              repr(path))
    obj = md
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not hasattr(obj, part):
            where = "md" + "".join(f".{p}" for p in parts[:i])
            known = sorted(k for k in getattr(obj, "__dict__", {}) if not k.startswith("_"))
            raise ModelInputError(f"md.{path}", f"a field of the model ({where} has: {', '.join(known[:40])})",
                                  f"no field {part!r} in {where}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
    return obj, parts[-1], getattr(obj, parts[-1])


def check_numeric(path: str, current: Any, scale: bool) -> None:
    if current is None and not scale:
        return
    if hasattr(current, "__dict__") and not isinstance(current, np.ndarray):
        raise ModelInputError(f"md.{path}", "a numeric field (a number or an array)",
                              f"a {type(current).__name__} object; name one of its fields")
    arr = np.asarray(current)
    if arr.dtype.kind not in "biuf":
        raise ModelInputError(f"md.{path}", "a numeric field (a number or an array)", f"{type(current).__name__} "
                              f"{str(current)[:60]!r}")
    if scale and arr.size == 0:
        raise ModelInputError(f"md.{path}", "a field with values to scale", "an empty field")


def _to_value(v: Any, path: str, unit: str | None, scale: bool, yts: float | None) -> float:
    """One swept value as a float in the field's ISSM unit."""
    from issm_emulator.units import to_issm

    field_name = f"md.{path}" + (" (scale factor)" if scale else "")
    mag = getattr(v, "magnitude", v)
    if np.ndim(mag) != 0:
        raise ModelInputError(field_name, "scalar values (each is broadcast to the field's shape)",
                              f"a value of shape {np.shape(mag)}")
    if isinstance(v, (bool, np.bool_)):
        raise ModelInputError(field_name, "numbers", repr(v))
    try:
        if unit is None:
            if hasattr(v, "units") or isinstance(v, str):
                from issm_emulator.units import ureg

                q = ureg.Quantity(v) if isinstance(v, str) else v
                if not q.dimensionless:
                    raise ModelInputError(field_name, "a plain number in the field's ISSM unit (its unit is not "
                                          "known to issm-emulator, so a quantity cannot be converted)", str(v))
                out = float(q.to("").magnitude)
            else:
                out = float(v)
        else:
            out = float(to_issm(v, unit, field=field_name, yts=yts))
    except ModelInputError:
        raise
    except (IssmEmulatorError, ValueError, TypeError, AttributeError) as exc:
        raise ModelInputError(field_name, f"values in {unit or 'the field unit'} (or a compatible pint quantity)",
                              f"{v!r}: {exc}") from None
    if not math.isfinite(out):
        raise ModelInputError(field_name, "finite values", repr(v))
    return float(round(out, 12))


def values_list(raw: Any, path: str, unit: str | None, scale: bool, yts: float | None) -> tuple[float, ...]:
    field_name = f"md.{path}"
    if isinstance(raw, str):
        try:
            parsed, given = parse_values(raw)
        except ValueError as exc:
            raise ModelInputError(field_name, "values such as 0:70:2 or 0,10,35 (optionally with a unit)",
                                  str(exc)) from None
        items: list[Any] = [f"{p!r} {given}" for p in parsed] if given else parsed
    elif hasattr(raw, "units") and hasattr(raw, "magnitude"):  # a pint Quantity array
        mag = np.asarray(raw.magnitude)
        if mag.ndim > 1:
            raise ModelInputError(field_name, "a list of scalar values", f"an array of shape {mag.shape}")
        items = [raw[i] for i in range(mag.size)] if mag.ndim == 1 else [raw]
    elif isinstance(raw, np.ndarray):
        if raw.ndim > 1:
            raise ModelInputError(field_name, "a list of scalar values (each is broadcast to the field's shape)",
                                  f"an array of shape {raw.shape}")
        items = list(np.atleast_1d(raw))
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        items = [raw]
    if not items:
        raise ModelInputError(field_name, "at least one value", "none")
    out = tuple(_to_value(v, path, unit, scale, yts) for v in items)
    if len(set(out)) != len(out):
        raise ModelInputError(field_name, "distinct values", f"duplicates in {list(out)}")
    return out


def _timeseries(arr: np.ndarray, nv: int, ne: int) -> bool:
    return arr.ndim == 2 and arr.shape[0] in (nv + 1, ne + 1) and arr.shape[1] > 1


def apply_variation(md: Any, var: Variation, value: float) -> None:
    owner, attr, current = resolve_field(md, var.path)
    nv = int(md.mesh.numberofvertices)
    ne = int(md.mesh.numberofelements)
    if current is None or np.ndim(current) == 0:
        if var.scale:
            setattr(owner, attr, float(current) * value)
        else:
            setattr(owner, attr, float(value))
        return
    arr = np.array(current, dtype=np.float64)
    rows = slice(0, -1) if _timeseries(arr, nv, ne) else slice(None)
    if var.scale:
        arr[rows] = arr[rows] * value
    else:
        arr[rows] = value
    setattr(owner, attr, arr)
