"""Field access and validation primitives for reading a pyISSM ``md``.

Every section reader of :mod:`issm_emulator.issm` goes through these: :func:`get` follows an ``md``
attribute path; :func:`sized`, :func:`scalar`, :func:`integer` and :func:`string` turn a value into a frozen
float array, a number or one of a set of choices, and raise :class:`~issm_emulator.errors.ModelInputError`
whose message starts with the ``md.`` field path, e.g. ``md.geometry.thickness: expected 1234 values (one
per vertex), got 1233``; :func:`class_key` names the law an ``md`` section's class implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.state import frozen_array

__all__ = [
    "MISSING",
    "Ctx",
    "check_values",
    "class_key",
    "describe",
    "err",
    "get",
    "integer",
    "is_unset",
    "numeric",
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
    """``md.<path>``; a missing attribute or ``None`` raises unless ``default`` is given."""
    obj = md
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            if default is not MISSING:
                return default
            raise err(path, "a value", "nothing (the field is missing or None)")
    return obj


def is_unset(value: Any) -> bool:
    """pyISSM marks unset fields with a scalar NaN (or leaves them None / empty)."""
    if value is None:
        return True
    arr = np.asarray(value) if not isinstance(value, str) else None
    if arr is None or arr.dtype == object:
        return False
    return arr.size == 0 or (arr.size == 1 and arr.dtype.kind in "fc" and bool(np.isnan(arr.ravel()[0])))


def numeric(path: str, value: Any) -> np.ndarray:
    """``value`` as a float array (a new copy), or a ModelInputError."""
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
