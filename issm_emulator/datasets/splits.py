"""Train / validation / test splits of an ensemble, by the swept parameter(s).

Rules (:data:`SPLIT_RULES`)
---------------------------
``'interleaved'`` (the default of every ensemble that names no other rule, model sweeps included): works for
any number of runs and any number of swept parameters. The runs are sorted by their parameter values
(lexicographically: by the first parameter, then the second, ...); ``k`` (0-based) is a run's position in
that order, ``n`` the number of runs, and the period ``P`` is 3 for n <= 4, 4 for 5 <= n <= 11, 6 for n >= 12:

    test        k mod P == 1
    validation  k mod P == P // 2 + 1       (2, 3 or 4)
    train       everything else

so the first run (smallest values) always trains, held-out runs lie between training runs, and every split
has a run as soon as there are 3 runs. With several parameters, ``P`` is raised (7 instead of 6, 5 instead
of 4) until it shares no factor with the number of distinct values of the last parameter, so the held-out
runs do not all fall on one value of it (a 7 x 3 grid holds out runs at all three). Examples: 0,10,20,30 -> train 0, 30; test 10; validation 20.
0:70:2 (36 runs) -> test 2, 14, 26, ...; validation 8, 20, 32, ...; 24 runs train. The period depends on
``n``, so extending a grid may move runs between splits (compare checkpoints on one grid).

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

Explicit value lists (:class:`ExplicitSplit`, :func:`parse_split`): ``'test=10,30;validation=20'`` puts the
runs with those values in test and validation, every other run in train. Values use the syntax of
:func:`~issm_emulator.datasets.spec.parse_values` (``'test=0:70:20'``). With several swept parameters, name
the one the values refer to: ``'test:friction_coefficient_factor=0.9;validation:basalforcings_floatingice_melting_rate=20'``
(the coordinate name, or the md path as given to ``--vary``, e.g. ``test:friction.coefficient*=0.9``). A
listed value that matches no run, or a run listed in both test and validation, is an error.

Custom rules are :class:`ModuloRule` instances or any callable ``f(values) -> labels`` returning one of
``'train'``, ``'validation'``, ``'test'`` per run (``values`` is 1-D for one swept parameter, ``(n, p)`` for
``p`` parameters). :func:`split_report` gives what ``generate`` and ``info`` print, including the fix when a
split is empty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RULE",
    "SPLITS",
    "SPLIT_RULES",
    "ExplicitSplit",
    "InterleavedRule",
    "ModuloRule",
    "coord_aliases",
    "parse_split",
    "select_split",
    "split_labels",
    "split_report",
    "split_runs",
]

#: The rule of an ensemble that names none (and of model sweeps).
DEFAULT_RULE = "interleaved"

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


def _ranks(values: np.ndarray) -> np.ndarray:
    """Per column, the rank of each value among the column's distinct values (numbers or strings)."""
    cols = []
    for col in values.T:
        try:
            col = col.astype(float)
        except (TypeError, ValueError):
            col = col.astype(str)
        cols.append(np.unique(col, return_inverse=True)[1].reshape(-1))
    return np.stack(cols, axis=1)


@dataclass(frozen=True)
class InterleavedRule:
    """The default rule for any grid (see the module documentation): runs sorted by value(s), position
    ``k``, period ``P`` (3, 4 or 6 by the number of runs); test ``k mod P == 1``, validation
    ``k mod P == P // 2 + 1``, train the rest."""

    @staticmethod
    def period(n: int, inner: int | None = None) -> int:
        """P for ``n`` runs; with several parameters, raised until it shares no factor with ``inner``, the
        number of distinct values of the last parameter, so held-out runs do not all fall on one of them."""
        p = 3 if n <= 4 else 4 if n < 12 else 6
        while inner is not None and inner > 1 and math.gcd(p, inner) != 1:
            p += 1
        return p

    def __call__(self, values: Any) -> np.ndarray:
        v = np.asarray(values)
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2:
            raise ValueError(f"split rule 'interleaved': expected (runs,) or (runs, parameters) values, got shape "
                             f"{v.shape}")
        n = v.shape[0]
        labels = np.full(n, "train", dtype=object)
        if n == 0:
            return labels.astype(str)
        ranks = _ranks(v)
        order = np.lexsort(ranks.T[::-1])  # first parameter most significant; stable for equal rows
        k = np.empty(n, dtype=np.int64)
        k[order] = np.arange(n)
        p = self.period(n, int(ranks[:, -1].max()) + 1 if v.shape[1] > 1 else None)
        labels[k % p == p // 2 + 1] = "validation"
        labels[k % p == 1] = "test"
        return labels.astype(str)

    def describe(self) -> str:
        return ("k = position of the run among the runs sorted by parameter value(s), P = 3 (<= 4 runs), 4 (5-11) "
                "or 6 (>= 12), with several parameters raised to share no factor with the last one's count; "
                "test: k mod P == 1; validation: k mod P == P//2 + 1; train: the rest")


#: Built-in rules by name (see the module documentation).
SPLIT_RULES: dict[str, Any] = {
    "interleaved": InterleavedRule(),
    "pig-melt": ModuloRule(20.0, 0.0, 10.0, by="value",
                           description="test: melt rate mod 20 m/yr == 0; validation: melt rate mod 20 m/yr == "
                                       "10; train: the rest"),
    "north79-calving": ModuloRule(6, 1, 4, by="position",
                                  description="k = rank of the threshold among the sorted distinct thresholds; "
                                              "test: k mod 6 == 1; validation: k mod 6 == 4; train: the rest"),
    "by-position": ModuloRule(6, 1, 4, by="position"),
}
SPLIT_RULES["square-melt"] = SPLIT_RULES["pig-melt"]


@dataclass(frozen=True)
class ExplicitSplit:
    """Test and validation runs given by value lists (:func:`parse_split`); every other run trains.

    ``clauses`` are ``(split, parameter or None, values)``; ``parameter`` is a coordinate name or an md path
    (None: the ensemble's only swept parameter).
    """

    clauses: tuple[tuple[str, Any, tuple[Any, ...]], ...]
    text: str = ""

    uses_table = True

    def labels(self, table: Mapping[str, np.ndarray], aliases: Mapping[str, str] | None = None) -> np.ndarray:
        """Labels of the runs whose swept values are ``table`` (``{coordinate: (runs,) values}``)."""
        aliases = dict(aliases or {})
        names = list(table)
        n = len(next(iter(table.values()))) if table else 0
        labels = np.full(n, "train", dtype=object)
        for which, param, values in self.clauses:
            if param is None:
                if len(names) != 1:
                    raise ValueError(f"split {self.text!r}: the ensemble sweeps {len(names)} parameters "
                                     f"({', '.join(names)}); name one, e.g. '{which}:{names[0]}=...'")
                name = names[0]
            else:
                key = str(param)
                key = key.removeprefix("md.")
                name = key if key in table else aliases.get(key, aliases.get(f"md.{key}"))
                if name not in table:
                    raise ValueError(f"split {self.text!r}: {param!r} is not a swept parameter of the ensemble "
                                     f"(swept: {', '.join(names + sorted(aliases))})")
            col = np.asarray(table[name])
            hit = np.zeros(n, dtype=bool)
            for val in values:
                if col.dtype.kind in "iuf" and not isinstance(val, str):
                    m = np.isclose(col.astype(float), float(val), rtol=1e-9, atol=1e-12)
                else:
                    m = col.astype(str) == str(val)
                if not m.any():
                    raise ValueError(f"split {self.text!r}: {name} = {val!r} ({which}) matches no run of the "
                                     f"ensemble (values: {', '.join(map(str, np.unique(col).tolist()))})")
                hit |= m
            clash = hit & (labels != "train") & (labels != which)
            if clash.any():
                raise ValueError(f"split {self.text!r}: runs {np.flatnonzero(clash).tolist()} are listed in both "
                                 "test and validation")
            labels[hit] = which
        return labels.astype(str)

    def __call__(self, values: Any) -> np.ndarray:
        v = np.asarray(values)
        if v.ndim != 1:
            raise ValueError(f"split {self.text!r}: give the runs as a table of named parameters")
        return self.labels({"value": v})

    def describe(self) -> str:
        return f"explicit: {self.text}; train: the rest"


def parse_split(text: Any) -> Any:
    """A split rule from text: a name of :data:`SPLIT_RULES`, or value lists
    ``'test=V;validation=V'`` (``'test:PARAM=V'`` with several parameters) as an :class:`ExplicitSplit`.
    Anything else (a rule object, None) is returned as it is."""
    if not isinstance(text, str):
        return text
    t = text.strip()
    if t in SPLIT_RULES:
        return t
    if "=" not in t:
        raise ValueError(f"split: unknown rule {t!r}; give a rule name ({', '.join(sorted(SPLIT_RULES))}) or value "
                         "lists such as 'test=10,30;validation=20'")
    from .spec import parse_values

    clauses = []
    for part in (p.strip() for p in t.split(";")):
        if not part:
            continue
        left, _, right = part.partition("=")
        which, _, param = left.strip().partition(":")
        which = which.strip()
        if which not in ("test", "validation"):
            raise ValueError(f"split {t!r}: {which!r} is not 'test' or 'validation' (every other run trains)")
        try:
            values, unit = parse_values(right, allow_strings=True)
        except ValueError as exc:
            raise ValueError(f"split {t!r}: {exc}") from None
        if unit is not None:
            raise ValueError(f"split {t!r}: give values in the parameter's units, without a unit")
        clauses.append((which, param.strip() or None, tuple(values)))
    if not clauses:
        raise ValueError(f"split {t!r}: no 'test=...' or 'validation=...' clause")
    return ExplicitSplit(tuple(clauses), t)


def _resolve_rule(rule: Any, ds: Any = None) -> Callable[[Any], Any]:
    if rule is None:
        rule = (getattr(ds, "attrs", None) or {}).get("split_rule") or DEFAULT_RULE
    if isinstance(rule, str):
        if rule in SPLIT_RULES:
            return SPLIT_RULES[rule]
        return parse_split(rule)
    if callable(rule):
        return rule
    raise TypeError(f"split: rule must be a rule name, value lists, a ModuloRule or a callable, got "
                    f"{type(rule).__name__}")


def coord_aliases(attrs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """md-path aliases (``'friction.coefficient*'``) of swept coordinates, from ``{name: attributes}``."""
    out = {}
    for name, a in attrs.items():
        if a.get("md_path"):
            out[str(a["md_path"]).removeprefix("md.") + ("*" if a.get("operation") == "scale" else "")] = name
    return out


def split_labels(values: Any, rule: Any, *, aliases: Mapping[str, str] | None = None) -> np.ndarray:
    """``'train'``/``'validation'``/``'test'`` for each run's parameter value(s) under ``rule`` (name, text of
    :func:`parse_split` or callable); ``values`` is ``(runs,)`` or ``(runs, parameters)``, or a mapping
    ``{parameter: (runs,) values}``."""
    r = _resolve_rule(rule)
    if isinstance(values, Mapping):
        table = {k: np.asarray(v) for k, v in values.items()}
        if getattr(r, "uses_table", False):
            labels = np.asarray(r.labels(table, aliases))
        else:
            cols = list(table.values())
            v = cols[0] if len(cols) == 1 else np.stack(cols, axis=1)
            labels = _call_rule(r, v)
        n = len(next(iter(table.values()))) if table else 0
        shape: tuple[int, ...] = (n,)
    else:
        v = np.asarray(values)
        labels = _call_rule(r, v)
        shape = v.shape[:1]
    if labels.shape != shape:
        raise ValueError(f"split rule returned {labels.shape} labels for {shape[0]} runs")
    bad = sorted(set(labels.tolist()) - set(SPLITS))
    if bad:
        raise ValueError(f"split rule returned unknown label(s) {bad}; expected {SPLITS}")
    return labels


def _call_rule(rule: Any, v: np.ndarray) -> np.ndarray:
    if v.ndim == 2 and isinstance(rule, ModuloRule):
        raise ValueError(f"split rule {rule.describe()!r} works on one swept parameter; this ensemble sweeps "
                         f"{v.shape[1]}: use 'interleaved' or value lists ('test:PARAM=...')")
    return np.asarray(rule(v))


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


def _parameter_table(ds: Any, parameter: str | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``{coordinate: values along run}`` of the swept parameter(s) and md-path aliases of the coordinates."""
    if parameter is not None:
        names = [parameter]
    else:
        raw = ds.attrs.get("parameters")
        try:
            names = list(json.loads(raw)) if raw else []
        except ValueError:
            names = []
        if not names:
            if not ds.attrs.get("parameter"):
                raise ValueError("split: the dataset names no swept parameter (attribute 'parameter'); "
                                 "pass parameter=")
            names = [ds.attrs["parameter"]]
    table = {name: _parameter_values(ds, name) for name in names}
    return table, coord_aliases({name: ds[name].attrs for name in names})


def split_runs(ds: Any, rule: Any = None, *, parameter: str | None = None) -> dict[str, np.ndarray]:
    """Positions along ``run`` of each split.

    Parameters
    ----------
    ds : xarray.Dataset
        An ensemble (:func:`issm_emulator.datasets.generate_ensemble`), or anything with a ``run``
        coordinate named by ``parameter``.
    rule : str, ModuloRule or callable, optional
        A rule name, value lists (:func:`parse_split`) or a callable. Default: the dataset's ``split_rule``
        attribute, else :data:`DEFAULT_RULE` (``'interleaved'``).
    parameter : str, optional
        The swept parameter; default the dataset's ``parameter`` attribute.

    Returns
    -------
    dict
        ``{'train': idx, 'validation': idx, 'test': idx}``, sorted int64 arrays of run positions (for
        ``ds.isel(run=idx)``); together they cover every run exactly once.
    """
    r = _resolve_rule(rule, ds)
    table, aliases = _parameter_table(ds, parameter)
    labels = split_labels(table, r, aliases=aliases)
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


def rule_name(rule: Any) -> str:
    """A rule as text: its name, its value lists, or the callable's name."""
    if rule is None:
        return DEFAULT_RULE
    if isinstance(rule, str):
        return rule
    if isinstance(rule, ExplicitSplit):
        return rule.text
    for name, r in SPLIT_RULES.items():
        if r is rule:
            return name
    return getattr(rule, "__name__", type(rule).__name__)


def empty_split_hint(rule: Any, dataset: Any = None) -> str:
    """`` under the split rule 'X' (...); choose ...``: what to add to an 'empty split' error."""
    attrs = getattr(getattr(dataset, "ds", None), "attrs", {}) or {}
    name = rule_name(rule if rule is not None else (attrs.get("split_rule") or None))
    return (f" under the split rule {name!r} (issm-emulator info shows the split); choose another rule or explicit "
            "value lists with --split, e.g. --split interleaved or --split 'test=V1;validation=V2'")


def split_report(table: Mapping[str, Any], rule: Any, *, aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What ``generate`` and ``info`` print about a grid's splits under ``rule``.

    ``table`` is ``{parameter: (runs,) values}`` (``aliases``: md paths of its names, :func:`coord_aliases`).
    Returns ``{'rule', 'description', 'train', 'validation',
    'test'`` (run positions), ``'empty'`` (names of empty splits), ``'message'`` (a one-line summary) and
    ``'fix'`` (what to do about empty splits, or None)}``.
    """
    name = rule_name(rule)
    out: dict[str, Any] = {"rule": name}
    try:
        r = _resolve_rule(rule)
        out["description"] = describe_rule(r) if not isinstance(r, ExplicitSplit) else r.describe()
        labels = split_labels(table, r, aliases=aliases)
    except (ValueError, TypeError) as exc:
        out.update(description="", train=[], validation=[], test=[], empty=list(SPLITS), error=str(exc),
                   message=f"split rule {name!r}: {exc}",
                   fix="pass --split interleaved (or value lists, e.g. --split 'test=V1;validation=V2') to "
                       "train and evaluate")
        return out
    for which in SPLITS:
        out[which] = np.flatnonzero(labels == which).tolist()
    out["empty"] = [which for which in SPLITS if not out[which]]
    n = labels.size
    out["message"] = (f"splits ({name}): train {len(out['train'])}, validation {len(out['validation'])}, test "
                      f"{len(out['test'])} of {n} run(s)")
    fix = None
    if out["empty"]:
        if n < 3:
            fix = (f"{n} run(s) cannot fill train, validation and test: add values (3 runs or more fill every "
                   "split under 'interleaved')")
        elif name == DEFAULT_RULE:
            fix = "give explicit value lists to train and evaluate, e.g. --split 'test=V1;validation=V2'"
        else:
            fix = (f"the rule {name!r} does not fit these values: pass --split interleaved (or value lists, e.g. "
                   "--split 'test=V1;validation=V2') to train and evaluate, or choose values the rule covers")
    out["fix"] = fix
    return out
