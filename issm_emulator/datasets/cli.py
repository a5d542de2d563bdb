"""Command line of the ensemble datasets: ``issm-emulator generate <sweep> ...`` and ``issm-emulator info FILE``.

This module defines the click objects :data:`generate` (a group with one sub-command per built-in sweep)
and :data:`info`; :mod:`issm_emulator.cli` attaches them to the main ``issm-emulator`` group.

Value syntax (``--melt-rates``, ``--thresholds``, ...): ``start:stop:step`` (``stop`` included when it
falls on the grid, so ``0:70:2`` is 36 values), comma lists (``0,10,35``), both mixed, optionally followed
by a unit after a space (``'0.65:1.2:0.05 MPa'``); see :func:`issm_emulator.datasets.spec.parse_values`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from issm_emulator.errors import IssmEmulatorError

from .guard import MAX_RUNS
from .layout import ENSEMBLE_FILE
from .runner import generate_ensemble
from .spec import parse_values
from .sweeps import SWEEPS, ensemble_spec

__all__ = ["generate", "info"]


def _quantity(text: str | None, unit: str, option: str) -> float | None:
    if text is None:
        return None
    from issm_emulator.units import to_issm

    try:
        value = float(to_issm(text, unit, field=option))
    except (IssmEmulatorError, ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    if not np.isfinite(value) or value <= 0:
        raise click.BadParameter(f"expected a positive value in {unit}, got {text!r}", param_hint=option)
    return value


def _values(text: str, option: str, allow_strings: bool = False) -> list[Any]:
    try:
        values, unit = parse_values(text, allow_strings=allow_strings)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    if unit is None:
        return values
    return [f"{v!r} {unit}" for v in values]


def _solver_options(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def _common(defaults: str) -> Callable[[Callable], Callable]:
    """Options shared by every sweep sub-command."""
    s = SWEEPS[defaults]

    def deco(f: Callable) -> Callable:
        opts = [
            click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
                         help="Output folder (runs/ and ensemble.nc); re-running resumes."),
            click.option("--resolution", default=None,
                         help=f"Mesh resolution, e.g. '3km' (plain numbers: m; default "
                              f"{s.scenario_kwargs.get('resolution', 0) / 1e3:g} km)."),
            click.option("--years", default=None,
                         help=f"Run length in years (default {s.years if s.years is not None else 'the scenario'})."),
            click.option("--time-step", default=None,
                         help=f"Time step in years or with a unit, e.g. '1 month' (default {s.time_step:.6g} yr)."),
            click.option("--output-frequency", type=click.IntRange(min=1), default=None,
                         help="Store results every N time steps (default 1)."),
            click.option("--workers", type=click.IntRange(min=0), default=None,
                         help="Local worker processes (default min(2, CPUs); 0 = in this process)."),
            click.option("--scheduler", default=None, metavar="ADDR",
                         help="Run on this dask.distributed scheduler (e.g. tcp://host:8786)."),
            click.option("--solver", default="fem", show_default=True, help="Registered solver name."),
            click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
                         help="Solver option (value read as JSON when possible); repeatable."),
            click.option("--progress/--no-progress", default=True, show_default=True,
                         help="Progress bar with ETA."),
            click.option("--max-runs", type=click.IntRange(min=1), default=MAX_RUNS, show_default=True,
                         help="Refuse a sweep of more runs than this (a mistyped range)."),
            click.option("--ignore-disk-space", is_flag=True,
                         help="Generate even when the runs' estimated size exceeds the free disk space."),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    return deco


def _run(sweep: str, values: Any, scenario_kwargs: dict[str, Any], *, out: Path, resolution: str | None,
         years: str | None, time_step: str | None, output_frequency: int | None, workers: int | None,
         scheduler: str | None, solver: str, options: tuple[str, ...], progress: bool, max_runs: int = MAX_RUNS,
         ignore_disk_space: bool = False) -> None:
    kwargs = dict(scenario_kwargs)
    res = _quantity(resolution, "m", "--resolution")
    if res is not None:
        kwargs["resolution"] = res
    try:
        spec = ensemble_spec(sweep, values, scenario_kwargs=kwargs, solver=solver,
                             solver_options=_solver_options(options),
                             years=_quantity(years, "yr", "--years"),
                             time_step=_quantity(time_step, "yr", "--time-step"),
                             output_frequency=output_frequency)
    except (IssmEmulatorError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{sweep}: {len(spec.values)} runs of {spec.parameter} "
               f"({_fmt_values(np.asarray(spec.values, dtype=object))}{' ' + spec.units if spec.units else ''}) "
               f"with solver {spec.solver_name!r} -> {out}", err=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            path = generate_ensemble(spec, out, workers=workers, scheduler=scheduler, progress=progress,
                                     max_runs=max_runs, check_disk=not ignore_disk_space)
        except IssmEmulatorError as exc:
            raise click.ClickException(str(exc)) from None
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    click.echo(str(path))


@click.group("generate", context_settings={"help_option_names": ["-h", "--help"]})
def generate() -> None:
    """Generate an ensemble dataset (one NetCDF per run, combined into ensemble.nc; resumable)."""


@generate.command("pig-melt")
@click.option("--melt-rates", default=SWEEPS["pig-melt"].default_values, show_default=True,
              help="Floating-ice melt rates, m/yr: start:stop:step and/or comma list.")
@_common("pig-melt")
def pig_melt(melt_rates: str, **kw: Any) -> None:
    """Pine Island Glacier over the sub-shelf melt rate (the seed's 0-70 m/yr sweep)."""
    _run("pig-melt", _values(melt_rates, "--melt-rates"), {}, **kw)


@generate.command("north79-calving")
@click.option("--thresholds", default=SWEEPS["north79-calving"].default_values, show_default=True,
              help="Von Mises stress thresholds, Pa unless a unit follows (e.g. '0.65:1.2:0.05 MPa').")
@_common("north79-calving")
def north79_calving(thresholds: str, **kw: Any) -> None:
    """79N Glacier over the von Mises calving stress threshold (needs a moving-front solver)."""
    _run("north79-calving", _values(thresholds, "--thresholds"), {}, **kw)


@generate.command("mismip-plus")
@click.option("--experiments", default=None,
              help=f"MISMIP+ experiments, comma list (default {SWEEPS['mismip-plus'].default_values}).")
@click.option("--melt-factors", default=None,
              help="Sweep the Ice1r melt factor Omega (1/yr) instead of the experiment, e.g. 0:0.4:0.05.")
@click.option("--spinup-years", type=float, default=None,
              help="Start from a cached Ice0 spin-up of this many years (computed once).")
@_common("mismip-plus")
def mismip_plus(experiments: str | None, melt_factors: str | None, spinup_years: float | None, **kw: Any) -> None:
    """MISMIP+ over the experiment (Ice0, Ice1r, ...) or the melt factor."""
    if experiments is not None and melt_factors is not None:
        raise click.UsageError("give --experiments or --melt-factors, not both")
    extra = {} if spinup_years is None else {"spinup_years": spinup_years}
    if melt_factors is not None:
        _run("mismip-plus-melt", _values(melt_factors, "--melt-factors"), extra, **kw)
    else:
        text = experiments if experiments is not None else SWEEPS["mismip-plus"].default_values
        _run("mismip-plus", _values(text, "--experiments", allow_strings=True), extra, **kw)


@generate.command("square-melt")
@click.option("--melt-rates", default=SWEEPS["square-melt"].default_values, show_default=True,
              help="Floating-ice melt rates, m/yr.")
@_common("square-melt")
def square_melt(melt_rates: str, **kw: Any) -> None:
    """The floating square ice shelf over the melt rate: a cheap demonstration ensemble."""
    _run("square-melt", _values(melt_rates, "--melt-rates"), {}, **kw)


# ------------------------------------------------------------------------------------------------- info
def _fmt_values(v: np.ndarray) -> str:
    if v.size == 0:
        return "none"
    if v.dtype.kind not in "iuf":
        try:
            v = v.astype(float)
        except (TypeError, ValueError):
            return ", ".join(map(str, v.tolist()))
    if v.size <= 8:
        return ", ".join(f"{x:.6g}" for x in v)
    steps = np.diff(np.sort(v))
    step = f" step {steps[0]:.6g}" if np.allclose(steps, steps[0]) else ""
    return f"{v.min():.6g} .. {v.max():.6g}{step}"


def summarize(path: str | Path) -> dict[str, Any]:
    """A JSON-able summary of an ensemble file (or of ``DIR/ensemble.nc``)."""
    import xarray as xr

    p = Path(path)
    if p.is_dir():
        p = p / ENSEMBLE_FILE
    if not p.is_file():
        raise click.BadParameter(f"{p} does not exist", param_hint="FILE")
    from issm_emulator._files import check_netcdf

    with xr.open_dataset(check_netcdf(p), engine="netcdf4", decode_times=False) as ds:  # time: model years
        attrs = dict(ds.attrs)
        param = attrs.get("parameter")
        out: dict[str, Any] = {"file": str(p), "ensemble": attrs.get("ensemble"), "scenario": attrs.get("scenario"),
                               "solver": attrs.get("solver"), "solver_version": attrs.get("solver_version"),
                               "solver_options": attrs.get("solver_options"), "source": attrs.get("source"),
                               "created": attrs.get("created"),
                               "runs": int(ds.sizes.get("run", 0)),
                               "runs_requested": int(attrs.get("runs_requested", ds.sizes.get("run", 0)))}
        if param and param in ds.coords:
            values = np.asarray(ds[param].values)
            out["parameter"] = {"name": param, "units": ds[param].attrs.get("units", ""),
                                "values": values.tolist(), "summary": _fmt_values(values)}
            if values.dtype.kind in "iuf" and values.size:
                out["parameter"].update(min=float(values.min()), max=float(values.max()))
        if "time" in ds.coords:
            t = np.asarray(ds["time"].values, dtype=float)
            out["times"] = {"count": int(t.size), "units": ds["time"].attrs.get("units", ""),
                            "first": float(t[0]) if t.size else None, "last": float(t[-1]) if t.size else None}
            if t.size > 1:
                out["times"]["interval"] = float(np.median(np.diff(t)))
        out["mesh"] = {"vertices": int(ds.sizes.get("vertex", 0)), "elements": int(ds.sizes.get("element", 0))}
        out["variables"] = {name: {"dims": list(v.dims), "units": v.attrs.get("units", "")}
                            for name, v in ds.data_vars.items()}
        try:
            out["failures"] = json.loads(attrs.get("failed_runs", "[]"))
        except ValueError:
            out["failures"] = [{"message": attrs.get("failed_runs")}]
        rule = attrs.get("split_rule")
        if rule and out["runs"]:
            from .splits import describe_rule, split_runs

            try:
                out["splits"] = {"rule": rule, "description": describe_rule(rule),
                                 **{k: int(v.size) for k, v in split_runs(ds).items()}}
            except (ValueError, TypeError) as exc:
                out["splits"] = {"rule": rule, "error": str(exc)}
    return out


@click.command("info")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(file: Path, as_json: bool) -> None:
    """Summarise an ensemble dataset FILE (ensemble.nc or its folder): runs, times, mesh, parameter, failures."""
    s = summarize(file)
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
        return
    lines = [f"file        {s['file']}",
             f"ensemble    {s.get('ensemble')} (scenario {s.get('scenario')})",
             f"solver      {s.get('solver')} {s.get('solver_version') or ''} options {s.get('solver_options')}",
             f"created     {s.get('created')} by {s.get('source')}",
             f"runs        {s['runs']} finished of {s['runs_requested']} requested"]
    if "parameter" in s:
        p = s["parameter"]
        lines.append(f"parameter   {p['name']}: {p['summary']} {p['units']}".rstrip())
    if "times" in s:
        t = s["times"]
        step = f", every {t['interval']:.6g} {t['units']}" if "interval" in t else ""
        lines.append(f"times       {t['count']} from {t['first']:.6g} to {t['last']:.6g} {t['units']}{step}")
    lines.append(f"mesh        {s['mesh']['vertices']} vertices, {s['mesh']['elements']} elements")
    lines.append("variables   " + ", ".join(f"{k} [{v['units']}]" if v["units"] else k
                                            for k, v in s["variables"].items()))
    if "splits" in s:
        sp = s["splits"]
        if "error" in sp:
            lines.append(f"splits      {sp['rule']}: {sp['error']}")
        else:
            lines.append(f"splits      train {sp['train']}, validation {sp['validation']}, test {sp['test']} "
                         f"({sp['rule']}: {sp['description']})")
    fails = s.get("failures") or []
    lines.append(f"failures    {len(fails)}")
    for f in fails:
        lines.append(f"  run {f.get('index')} ({f.get('value')}): {f.get('error_type')}: {f.get('message')}")
    click.echo("\n".join(lines))
