"""ISSM forcings and time series as :class:`~issm_emulator.state.Forcing` objects, in SI units.

A per-vertex field is ``numberofvertices`` values; a time series has ``numberofvertices + 1`` rows, the
last one the times in years (converted to s with ``md.constants.yts``). Global parameters that ISSM allows
as a "single time series" (``[[values], [times]]``) become a float when constant, else a ``Forcing`` with
``values`` of shape ``(1, nt)``; :func:`global_value` evaluates either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from issm_emulator.state import Forcing, frozen_array

from .fields import Ctx, check_values, describe, err, is_unset, numeric

__all__ = ["check_times", "forcing", "global_series", "global_value"]


def forcing(path: str, value: Any, ctx: Ctx, *, scale: float = 1.0, allow_nan: bool = False,
            ge: float | None = None, default: float | None = None, broadcast: bool = True) -> Forcing:
    """A per-vertex field or ISSM time series (nv+1 rows, times in years in the last row) as a Forcing."""
    nv = ctx.nv
    if is_unset(value):
        if default is None:
            raise err(path, f"{nv} values (one per vertex) or a time series of {nv + 1} rows",
                      "an unset field (missing, None or NaN)")
        return Forcing(frozen_array(np.full(nv, default, dtype=float)))
    arr = numeric(path, value)
    if arr.ndim == 0 and broadcast:
        arr = np.full(nv, float(arr))
    if arr.ndim == 1 and arr.size == nv + 1:
        arr = arr.reshape(nv + 1, 1)
    if arr.ndim <= 2 and arr.size == nv and (arr.ndim < 2 or 1 in arr.shape):
        values = arr.reshape(nv)
        check_values(path, values, allow_nan=allow_nan, ge=ge)
        return Forcing(frozen_array(values * scale))
    if arr.ndim == 2 and arr.shape[0] == nv + 1:
        values, times = arr[:nv], arr[nv]
        check_times(path, times)
        check_values(path, values, allow_nan=allow_nan, ge=ge)
        return Forcing(frozen_array(values * scale), frozen_array(times * ctx.yts))
    raise err(path, f"{nv} values (one per vertex) or a time series of {nv + 1} rows "
              "(times in years in the last row)", describe(arr) if arr.ndim != 2 else
              f"an array of shape {arr.shape}")


def check_times(path: str, times: np.ndarray) -> None:
    if not np.isfinite(times).all():
        raise err(path, "finite times (years) in the last row of the time series", "NaN/inf")
    if times.size > 1 and not (np.diff(times) > 0).all():
        raise err(path, "strictly increasing times (years) in the last row of the time series",
                  f"{np.array2string(times, threshold=8)}")


def global_series(path: str, value: Any, ctx: Ctx, *, scale: float = 1.0, ge: float | None = None,
                  le: float | None = None) -> float | Forcing:
    """A scalar, or a single time series ``[[v1, v2, ...], [t1, t2, ...]]`` (times in years)."""
    if is_unset(value):
        raise err(path, "a number or a 2-row time series [[values], [times]]",
                  "an unset field (missing, None or NaN)")
    arr = numeric(path, value)
    if arr.size == 1:
        x = arr.ravel()
        check_values(path, x, ge=ge, le=le)
        return float(x[0]) * scale
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise err(path, "a number or a time series of 2 rows (values, then times in years)",
                  f"an array of shape {arr.shape}")
    check_times(path, arr[1])
    check_values(path, arr[0], ge=ge, le=le)
    return Forcing(frozen_array(arr[:1] * scale), frozen_array(arr[1] * ctx.yts))


def global_value(p: float | Forcing, t: float, interp: bool = True) -> float:
    """Evaluate a global parameter read by :func:`read_model` (float or 1-row Forcing) at time ``t`` (s)."""
    if isinstance(p, Forcing):
        return float(np.ravel(p.at(t, interp))[0])
    return float(p)
