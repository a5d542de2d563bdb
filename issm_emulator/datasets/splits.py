"""Train / validation / test splits of an ensemble, by the swept parameter.

Rules (:data:`SPLIT_RULES`)
---------------------------
``'pig-melt'`` (the seed's rule for Pine Island melt rates, also used by ``'square-melt'``), by value:

    test        rate mod 20 m/yr == 0      (0, 20, 40, 60 of 0:70:2)
    validation  rate mod 20 m/yr == 10     (10, 30, 50, 70)
    train       everything else            (28 of the 36 runs)

``'north79-calving'`` (79N stress thresholds), by the position ``k`` (0-based) of the threshold among the
sorted distinct thresholds of the ensemble:

    test        k mod 6 == 1
    validation  k mod 6 == 4
    train       everything else

so every held-out threshold lies strictly between two training thresholds (the smallest threshold, k = 0,
is always training; no extrapolation below the sweep), test and validation alternate every third
threshold, and 2/3 of the thresholds train. For the default 0.05:0.6:0.05 MPa sweep (12 runs): test 0.10
and 0.40 MPa, validation 0.25 and 0.55 MPa, the other 8 train (for the seed's Helheim-like 0.65:1.2:0.05
MPa: test 0.70 and 1.00, validation 0.85 and 1.15).

``'by-position'``: the same positional rule for any numeric sweep (MISMIP+ melt factors).

Custom rules are :class:`ModuloRule` instances or any callable ``f(values) -> labels`` returning one of
``'train'``, ``'validation'``, ``'test'`` per run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SPLITS", "SPLIT_RULES", "ModuloRule", "select_split", "split_labels", "split_runs"]

#: The split names, in the order :func:`split_runs` returns them.
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class ModuloRule:
    """Hold out runs by a modulo rule on the parameter value or on its rank.

    ``by='value'``: ``test`` where ``value mod period == test_offset``, ``validation`` where
    ``value mod period == validation_offset`` (compared with a relative tolerance ``rtol * period``).
    ``by='position'``: the same on the rank ``k`` of the value among the sorted distinct values.
    Everything else is ``train``.
    """

    period: float
    test_offset: float
    validation_offset: float
    by: str = "value"
    rtol: float = 1e-9
    description: str = ""

    def __post_init__(self) -> None:
        if self.by not in ("value", "position"):
            raise ValueError(f"ModuloRule.by must be 'value' or 'position', got {self.by!r}")
        if not (np.isfinite(self.period) and self.period > 0):
            raise ValueError(f"ModuloRule.period must be a positive number, got {self.period!r}")
        for name in ("test_offset", "validation_offset"):
            off = getattr(self, name)
            if not (0 <= off < self.period):
                raise ValueError(f"ModuloRule.{name} must lie in [0, period), got {off!r}")
        if np.isclose(self.test_offset, self.validation_offset):
            raise ValueError("ModuloRule: test_offset and validation_offset must differ")

    def __call__(self, values: Any) -> np.ndarray:
        v = np.asarray(values)
        if v.ndim != 1:
            raise ValueError(f"split rule: expected a 1-D array of parameter values, got shape {v.shape}")
        if v.dtype.kind not in "iuf":
            raise ValueError(f"split rule {self.describe()!r} needs numeric parameter values, got dtype {v.dtype}")
        if self.by == "value":
            key = v.astype(float)
        else:
            distinct = np.unique(v.astype(float))
            key = np.searchsorted(distinct, v.astype(float)).astype(float)
        r = np.mod(key, self.period)
        tol = self.rtol * self.period

        def near(offset: float) -> np.ndarray:
            d = np.abs(r - offset)
            return (d <= tol) | (np.abs(d - self.period) <= tol)  # wrap-around (19.9999... == 0 mod 20)

        labels = np.full(v.shape, "train", dtype=object)
        labels[near(self.validation_offset)] = "validation"
        labels[near(self.test_offset)] = "test"
        return labels.astype(str)

    def describe(self) -> str:
        if self.description:
            return self.description
        what = "value" if self.by == "value" else "rank of the value"
        return (f"test: {what} mod {self.period:g} == {self.test_offset:g}; validation: {what} mod "
                f"{self.period:g} == {self.validation_offset:g}; train: the rest")


#: Built-in rules by name (see the module documentation).
SPLIT_RULES: dict[str, ModuloRule] = {
    "pig-melt": ModuloRule(20.0, 0.0, 10.0, by="value",
                           description="test: melt rate mod 20 m/yr == 0; validation: melt rate mod 20 m/yr == "
                                       "10; train: the rest"),
    "north79-calving": ModuloRule(6, 1, 4, by="position",
                                  description="k = rank of the threshold among the sorted distinct thresholds; "
                                              "test: k mod 6 == 1; validation: k mod 6 == 4; train: the rest"),
    "by-position": ModuloRule(6, 1, 4, by="position"),
}
SPLIT_RULES["square-melt"] = SPLIT_RULES["pig-melt"]


def _resolve_rule(rule: Any, ds: Any = None) -> Callable[[Any], Any]:
    if rule is None:
        name = (getattr(ds, "attrs", None) or {}).get("split_rule")
        if not name:
            raise ValueError("split: the dataset names no split rule (attribute 'split_rule'); pass rule= one of "
                             f"{sorted(SPLIT_RULES)} or a callable")
        rule = name
    if isinstance(rule, str):
        try:
            return SPLIT_RULES[rule]
        except KeyError:
            raise ValueError(f"split: unknown rule {rule!r}; known rules: {', '.join(sorted(SPLIT_RULES))}") \
                from None
    if callable(rule):
        return rule
    raise TypeError(f"split: rule must be a rule name, a ModuloRule or a callable, got {type(rule).__name__}")


def split_labels(values: Any, rule: Any) -> np.ndarray:
    """``'train'``/``'validation'``/``'test'`` for each parameter value under ``rule`` (name or callable)."""
    labels = np.asarray(_resolve_rule(rule)(np.asarray(values)))
    v = np.asarray(values)
    if labels.shape != v.shape:
        raise ValueError(f"split rule returned {labels.shape} labels for {v.shape} values")
    bad = sorted(set(labels.tolist()) - set(SPLITS))
    if bad:
        raise ValueError(f"split rule returned unknown label(s) {bad}; expected {SPLITS}")
    return labels


def _parameter_values(ds: Any, parameter: str | None) -> np.ndarray:
    name = parameter or ds.attrs.get("parameter")
    if not name:
        raise ValueError("split: the dataset names no swept parameter (attribute 'parameter'); pass parameter=")
    if name not in ds.coords and name not in ds.variables:
        raise ValueError(f"split: the dataset has no coordinate {name!r} (the swept parameter)")
    values = ds[name]
    if values.dims != ("run",):
        raise ValueError(f"split: {name!r} must be a coordinate along 'run', got dims {values.dims}")
    return np.asarray(values.values)


def split_runs(ds: Any, rule: Any = None, *, parameter: str | None = None) -> dict[str, np.ndarray]:
    """Positions along ``run`` of each split.

    Parameters
    ----------
    ds : xarray.Dataset
        An ensemble (:func:`issm_emulator.datasets.generate_ensemble`), or anything with a ``run``
        coordinate named by ``parameter``.
    rule : str, ModuloRule or callable, optional
        Default: the dataset's ``split_rule`` attribute.
    parameter : str, optional
        The swept parameter; default the dataset's ``parameter`` attribute.

    Returns
    -------
    dict
        ``{'train': idx, 'validation': idx, 'test': idx}``, sorted int64 arrays of run positions (for
        ``ds.isel(run=idx)``); together they cover every run exactly once.
    """
    labels = split_labels(_parameter_values(ds, parameter), _resolve_rule(rule, ds))
    return {name: np.flatnonzero(labels == name).astype(np.int64) for name in SPLITS}


def select_split(ds: Any, which: str, rule: Any = None, *, parameter: str | None = None) -> Any:
    """The runs of one split: ``ds.isel(run=split_runs(ds, rule)[which])``."""
    if which not in SPLITS:
        raise ValueError(f"select_split: which must be one of {SPLITS}, got {which!r}")
    return ds.isel(run=split_runs(ds, rule, parameter=parameter)[which])


def describe_rule(rule: Any) -> str:
    """A one-line description of a rule (name, ModuloRule or callable)."""
    r = _resolve_rule(rule)
    describe = getattr(r, "describe", None)
    return describe() if callable(describe) else getattr(r, "__name__", repr(r))


def split_counts(ds: Any, rule: Any = None) -> Mapping[str, int]:
    """Number of runs in each split."""
    return {k: int(v.size) for k, v in split_runs(ds, rule).items()}
