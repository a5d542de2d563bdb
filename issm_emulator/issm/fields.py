"""Field access and validation primitives for reading a pyISSM ``md``.

Every section reader of :mod:`issm_emulator.issm` goes through these: :func:`get` follows an ``md``
attribute path and converts a pint quantity found there to ISSM's unit of the field
(:data:`issm_emulator.units.MD_UNITS`), or refuses it naming the field and the expected dimension, so a
unit is never stripped; :func:`sized`, :func:`scalar`, :func:`integer` and :func:`string` turn a value into a frozen
float array, a number or one of a set of choices, and raise :class:`~issm_emulator.errors.ModelInputError`
whose message starts with the ``md.`` field path, e.g. ``md.geometry.thickness: expected 1234 values (one
per vertex), got 1233``; :func:`class_key` names the law an ``md`` section's class implements.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError, UnitError
from issm_emulator.state import YTS_DEFAULT, frozen_array
from issm_emulator.units import MD_TIME_SERIES, MD_UNITS, registry_for, to_issm

__all__ = [
    "MISSING",
    "Ctx",
    "check_values",
    "class_key",
    "describe",
    "err",
    "get",
    "integer",
    "is_quantity",
    "is_unset",
    "numeric",
    "quantities_converted",
    "read_table",
    "scalar",
    "sized",
    "string",
]

MISSING = object()


@dataclass(frozen=True)
class Ctx:
    """What every section reader needs: mesh sizes and the year length."""

    nv: int
    ne: int
    yts: float


def err(path: str, expected: str, got: str | None = None) -> ModelInputError:
    return ModelInputError(f"md.{path}", expected, got)


def get(md: Any, path: str, default: Any = MISSING) -> Any:
    """``md.<path>``; a missing attribute or ``None`` raises unless ``default`` is given.

    A pint quantity is returned as plain numbers in ISSM's unit of the field (:data:`MD_UNITS`); a
    quantity of another dimension, on a field without a known unit or given as a time series raises
    :class:`ModelInputError` naming the field (``md`` is only read).
    """
    obj = md
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            if default is not MISSING:
                return default
            raise err(path, "a value", "nothing (the field is missing or None)")
    if is_quantity(obj):
        return _to_field_unit(md, path, obj)
    if isinstance(obj, (list, tuple)) and any(is_quantity(v) for v in obj):
        raise err(path, "numbers, or one pint quantity for the whole field (not a list of quantities)",
                  "a list with pint quantities")
    return obj


@contextmanager
def quantities_converted(md: Any) -> Iterator[None]:
    """For the duration of the block, every pint quantity on a field of :data:`MD_UNITS` is replaced by
    its plain value in ISSM's unit (so that pyISSM's own consistency check, which strips units, sees the
    numbers issm-emulator solves with); the original objects are put back afterwards, whatever happens."""
    saved: list[tuple[Any, str, Any]] = []
    try:
        for path in MD_UNITS:
            *parents, name = path.split(".")
            owner = md
            for part in parents:
                owner = getattr(owner, part, None)
            value = getattr(owner, name, None) if owner is not None else None
            if is_quantity(value):
                plain = get(md, path)
                saved.append((owner, name, value))
                setattr(owner, name, plain)
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def is_quantity(value: Any) -> bool:
    """Whether ``value`` is a pint quantity (of any registry)."""
    return all(hasattr(value, a) for a in ("magnitude", "units", "dimensionality", "to"))


def _uniform(md: Any, path: str) -> float | None:
    """The value of an exponent field when it is set and the same everywhere, else None."""
    value = get(md, path, None)
    if is_unset(value) or isinstance(value, str):
        return None
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(arr).all() and np.ptp(arr) == 0 and arr[0] != 0):
        return None
    return float(arr[0])


def _field_unit(md: Any, path: str, given: Any) -> str:
    """ISSM's unit of ``md.<path>`` as a pint unit string, the law's exponents filled in."""
    unit = MD_UNITS.get(path)
    if unit is None:
        raise err(path, "plain numbers (issm-emulator knows no ISSM unit for this field, so it cannot "
                  "convert a pint quantity)", f"a quantity in '{given.units}'")
    exponents = {"materials.rheology_B": ("materials.rheology_n",), "friction.coefficient": ("friction.p",
                 "friction.q"), "friction.C": ("friction.m",)}.get(path)
    if exponents is None:
        return unit
    values = [_uniform(md, e) for e in exponents]
    if any(v is None for v in values):
        raise err(path, f"plain numbers in {unit} (SI): a quantity is converted only when "
                  f"{' and '.join('md.' + e for e in exponents)} are set and uniform",
                  f"a quantity in '{given.units}'")
    if path == "materials.rheology_B":
        return f"Pa * s**({1.0 / values[0]!r})"
    if path == "friction.coefficient":
        p, q = values
        return f"Pa**({(1.0 - q / p) / 2.0!r}) * (s / m)**({1.0 / (2.0 * p)!r})"
    return f"Pa**0.5 * (s / m)**({1.0 / (2.0 * values[0])!r})"


def _model_yts(md: Any) -> float:
    """``md.constants.yts`` for converting year-based units (ISSM's default when unset or invalid)."""
    raw = getattr(getattr(md, "constants", None), "yts", None)
    try:
        value = float(to_issm(raw, "s", field="md.constants.yts")) if raw is not None else YTS_DEFAULT
    except (UnitError, ModelInputError, TypeError, ValueError):
        return YTS_DEFAULT
    return value if np.isfinite(value) and value > 0 else YTS_DEFAULT


def _to_field_unit(md: Any, path: str, q: Any) -> float | np.ndarray:
    unit = _field_unit(md, path, q)
    shape = np.shape(q.magnitude)
    if path in MD_TIME_SERIES and len(shape) == 2:
        x = getattr(getattr(md, "mesh", None), "x", None)
        nv = int(np.size(getattr(x, "magnitude", x))) if x is not None else -1
        if shape[0] in (2, nv + 1):
            raise err(path, f"a time series as plain numbers (values in {MD_UNITS[path]}, times in years in "
                      "the last row): one pint unit cannot describe both rows", f"a quantity in "
                      f"'{q.units}' of shape {shape}")
    yts = _model_yts(md)
    try:
        return to_issm(q, unit, field=f"md.{path}", yts=yts)
    except UnitError:
        reg = registry_for(yts)
        expected = reg.parse_units(unit).dimensionality
        try:
            given = f"'{q.units}' (dimension {q.dimensionality})"
        except Exception:  # noqa: BLE001 - a foreign quantity pint cannot describe
            given = repr(q)
        dim = "none (a pure number)" if not expected else str(expected)
        raise err(path, f"a quantity of dimension {dim} (ISSM unit '{MD_UNITS[path]}')", given) from None


def is_unset(value: Any) -> bool:
    """pyISSM marks unset fields with a scalar NaN (or leaves them None / empty)."""
    if value is None:
        return True
    if is_quantity(value):
        value = value.magnitude
    arr = np.asarray(value) if not isinstance(value, str) else None
    if arr is None or arr.dtype == object:
        return False
    return arr.size == 0 or (arr.size == 1 and arr.dtype.kind in "fc" and bool(np.isnan(arr.ravel()[0])))


def numeric(path: str, value: Any) -> np.ndarray:
    """``value`` as a float array (a new copy), or a ModelInputError. A pint quantity (that did not come
    through :func:`get`, which converts it) is refused rather than stripped of its unit."""
    if is_quantity(value):
        raise err(path, "plain numbers in ISSM's unit (a pint quantity is converted only on the md fields "
                  "of issm_emulator.units.MD_UNITS)", f"a quantity in '{value.units}'")
    if isinstance(value, (list, tuple)) and any(is_quantity(v) for v in value):
        raise err(path, "numbers, or one pint quantity for the whole field (not a list of quantities)",
                  "a list with pint quantities")
    if isinstance(value, (str, bytes)):
        raise err(path, "numbers", f"the string {value!r}")
    try:
        arr = np.array(value, dtype=float, copy=True)
    except (TypeError, ValueError):
        raise err(path, "numbers", f"{type(value).__name__}") from None
    return arr


def describe(arr: np.ndarray) -> str:
    if arr.ndim == 0:
        return "a scalar"
    if arr.ndim == 1 or (arr.ndim == 2 and 1 in arr.shape):
        return str(arr.size)
    return f"an array of shape {arr.shape}"


def check_values(path: str, arr: np.ndarray, *, allow_nan: bool = False, ge: float | None = None,
                 gt: float | None = None, le: float | None = None) -> None:
    """NaN/inf and bound checks (NaN entries skip the bounds)."""
    if np.isinf(arr).any():
        raise err(path, "finite values", "inf")
    if not allow_nan and np.isnan(arr).any():
        raise err(path, "finite values (no NaN)", f"{int(np.isnan(arr).sum())} NaN value(s)")
    ok = arr[~np.isnan(arr)]
    for bound, bad, word in ((ge, lambda a, b: a < b, ">="), (gt, lambda a, b: a <= b, ">"),
                             (le, lambda a, b: a > b, "<=")):
        if bound is not None and ok.size and bad(ok, bound).any():
            worst = ok[bad(ok, bound)][0]
            raise err(path, f"values {word} {bound:g}", f"{worst:g}")


#: size kinds of the table-driven readers: name -> (count attribute of Ctx, words for the message)
_SIZES = {"vertex": ("nv", "one per vertex"), "element": ("ne", "one per element")}


def sized(path: str, value: Any, ctx: Ctx, kind: str, *, broadcast: bool = False,
          allow_nan: bool = False, scale: float = 1.0, ge: float | None = None, gt: float | None = None,
          le: float | None = None) -> np.ndarray:
    """A per-vertex or per-element field as a frozen 1-D float array (column vectors accepted)."""
    attr, words = _SIZES[kind]
    n = getattr(ctx, attr)
    if is_unset(value):
        raise err(path, f"{n} values ({words})", "an unset field (missing, None or NaN)")
    arr = numeric(path, value)
    if arr.ndim == 0 and broadcast:
        arr = np.full(n, float(arr))
    elif arr.ndim <= 2 and arr.size == n and (arr.ndim < 2 or 1 in arr.shape):
        arr = arr.reshape(n)
    else:
        raise err(path, f"{n} values ({words})", describe(arr))
    check_values(path, arr, allow_nan=allow_nan, ge=ge, gt=gt, le=le)
    return frozen_array(arr * scale)


def scalar(path: str, value: Any, *, allow_nan: bool = False, ge: float | None = None,
           gt: float | None = None, le: float | None = None, scale: float = 1.0) -> float:
    if value is None:
        raise err(path, "a number", "nothing (the field is missing or None)")
    arr = numeric(path, value)
    if arr.size != 1:
        raise err(path, "a single number", f"{arr.size} values")
    check_values(path, arr.ravel(), allow_nan=allow_nan, ge=ge, gt=gt, le=le)
    return float(arr.ravel()[0]) * scale


def integer(path: str, value: Any, *, ge: int | None = None,
            choices: tuple[int, ...] | None = None) -> int:
    x = scalar(path, value)
    if x != int(x):
        raise err(path, "an integer", f"{x:g}")
    x = int(x)
    if ge is not None and x < ge:
        raise err(path, f"an integer >= {ge}", str(x))
    if choices is not None and x not in choices:
        raise err(path, f"one of {', '.join(map(str, choices))}", str(x))
    return x


def string(path: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise err(path, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    return value


def read_table(md: Any, section: str, table: dict[str, dict[str, Any]], ctx: Ctx) -> dict[str, np.ndarray]:
    """Read several sized fields of ``md.<section>`` as described by ``table`` (name -> sized kwargs).

    A ``default`` entry in the kwargs is used (broadcast to the size) when the field is unset.
    """
    out = {}
    for name, spec in table.items():
        spec = dict(spec)
        default = spec.pop("default", MISSING)
        kind = spec.pop("kind")
        path = f"{section}.{name}"
        value = get(md, path, None)
        if is_unset(value) and default is not MISSING:
            n = ctx.nv if kind == "vertex" else ctx.ne
            out[name] = frozen_array(np.full(n, default, dtype=float))
            continue
        out[name] = sized(path, value, ctx, kind, **spec)
    return out


def class_key(obj: Any, section: str, table: dict[str, str]) -> str:
    """The law of ``md.<section>`` from its class (pyISSM ``section.class`` or ISSM class name)."""
    cls = type(obj)
    module_tail = cls.__module__.rsplit(".", 1)[-1]
    for key in (cls.__name__, f"{module_tail}.{cls.__name__}", f"{section}.{cls.__name__}"):
        if key in table:
            return table[key]
    supported = sorted({k for k in table})
    raise err(section, "an instance of one of the supported classes: " + ", ".join(supported),
              f"{cls.__module__}.{cls.__name__}")
