"""Command line of the ensemble datasets: ``issm-emulator generate <sweep> ...``, ``issm-emulator generate
--model MY_MODEL.nc --vary PATH=VALUES ...`` and ``issm-emulator info FILE``.

This module defines the click objects :data:`generate` (a group with one sub-command per built-in sweep, and
the options of a model sweep on the group itself) and :data:`info`; :mod:`issm_emulator.cli` attaches them to
the main ``issm-emulator`` group. Before running, ``generate`` prints how many runs of the grid are already
computed (runs are found by value), the run files that belong to no value of the grid (left alone), and the
train/validation/test split of the grid, with the fix when a split would be empty.

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
from .layout import ENSEMBLE_FILE, RUNS_DIR
from .runner import generate_ensemble, other_runs_message
from .spec import parse_values
from .splits import coord_aliases, parse_split, split_report
from .store import find_runs
from .sweeps import SWEEPS, ensemble_spec

_SPLIT_HELP = ("Split rule recorded in the ensemble (the default of train and evaluate, which can override it with "
               "their own --split): 'interleaved' (runs sorted by value; test every P-th from the second, "
               "validation an offset set, P = 3/4/6 for <=4/5-11/>=12 runs), 'pig-melt' (test: rate mod 20 m/yr == "
               "0, validation: == 10), 'north79-calving', 'by-position', or value lists "
               "'test=10,30;validation=20'. Default: the sweep's rule (model sweeps: interleaved).")

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
            click.option("--split", "split", default=None, metavar="RULE",
                         help=_SPLIT_HELP.replace("the sweep's rule", f"{s.split_rule or 'interleaved'}")),
            click.option("--max-runs", type=click.IntRange(min=1), default=MAX_RUNS, show_default=True,
                         help="Refuse a sweep of more runs than this (a mistyped range)."),
            click.option("--ignore-disk-space", is_flag=True,
                         help="Generate even when the runs' estimated size exceeds the free disk space."),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    return deco


def _split_text(split: str | None) -> str | None:
    if split is None:
        return None
    try:
        parse_split(split)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--split") from None
    return split.strip()


def _report(spec: Any, out: Path) -> None:
    """Print what is done, what runs, the run files outside the grid and the grid's split."""
    found = find_runs(spec, out)
    n = len(spec.values)
    click.echo(f"{len(found['done'])} of {n} runs already computed in {out} (found by value); "
               f"{len(found['todo'])} to run", err=True)
    if found["other"]:
        click.echo("note: " + other_runs_message(found["other"], out / RUNS_DIR), err=True)
    table = {name: np.asarray([spec.value_coords(v)[name] for v in spec.values],
                              dtype=float if spec.coord_numeric(name) else object) for name in spec.parameters}
    rep = split_report(table, spec.split_rule,
                       aliases=coord_aliases({name: spec.coord_attrs(name) for name in spec.parameters}))
    click.echo(_split_lines(rep, table), err=True)
    if rep.get("fix"):
        click.echo(f"warning: the {', '.join(rep['empty'])} split(s) would be empty. Fix: {rep['fix']}", err=True)


def _split_lines(rep: dict[str, Any], table: dict[str, Any]) -> str:
    text = rep["message"] + (f" [{rep['description']}]" if rep.get("description") else "")
    if len(table) == 1 and "error" not in rep:
        col = np.asarray(next(iter(table.values())))
        for which in ("validation", "test"):
            if rep[which]:
                text += f"\n  {which}: {_fmt_list(col[rep[which]])}"
    return text


def _fmt_item(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt_item(x) for x in v) + ")"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _fmt_list(v: np.ndarray) -> str:
    items = [f"{x:.6g}" if isinstance(x, (float, np.floating)) else str(x) for x in v.tolist()]
    return ", ".join(items[:12]) + (f", ... ({len(items) - 12} more)" if len(items) > 12 else "")


def _generate(spec: Any, out: Path, workers: int | None, scheduler: str | None, progress: bool, *,
              max_runs: int | None = MAX_RUNS, check_disk: bool = True) -> None:
    from .guard import check_spec

    try:
        check_spec(spec, out)  # a folder of another spec is refused before anything is reported
    except IssmEmulatorError as exc:
        raise click.ClickException(str(exc)) from None
    _report(spec, out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            path = generate_ensemble(spec, out, workers=workers, scheduler=scheduler, progress=progress,
                                     max_runs=max_runs, check_disk=check_disk)
        except IssmEmulatorError as exc:
            raise click.ClickException(str(exc)) from None
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    click.echo(str(path))


def _run(sweep: str, values: Any, scenario_kwargs: dict[str, Any], *, out: Path, resolution: str | None,
         years: str | None, time_step: str | None, output_frequency: int | None, workers: int | None,
         scheduler: str | None, solver: str, options: tuple[str, ...], progress: bool, split: str | None,
         max_runs: int = MAX_RUNS, ignore_disk_space: bool = False) -> None:
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
    rule = _split_text(split)
    if rule is not None:
        from dataclasses import replace

        spec = replace(spec, split_rule=rule)
    click.echo(f"{sweep}: {len(spec.values)} runs of {spec.parameter} "
               f"({_fmt_values(np.asarray(spec.values, dtype=object))}{' ' + spec.units if spec.units else ''}) "
               f"with solver {spec.solver_name!r} -> {out}", err=True)
    _generate(spec, out, workers, scheduler, progress, max_runs=max_runs, check_disk=not ignore_disk_space)


_MODEL_HELP = """Generate an ensemble dataset (one NetCDF per run, combined into ensemble.nc; resumable).

\b
Built-in sweeps:   issm-emulator generate SWEEP --out DIR ...   (see the commands below)
Your own model:    issm-emulator generate --model MY_MODEL.nc \\
                       --vary basalforcings.floatingice_melting_rate=0:70:2 --out DIR

\b
--model is a file written by pyissm.model.io.save_model. --vary PATH=VALUES sets md.PATH to each value (a
scalar is broadcast to the field's shape); --vary 'PATH*=VALUES' multiplies the existing field. Values are in
the field's ISSM unit (m/yr for melt rates) or carry a unit ('0:5:1 m/day'). Several --vary make a full grid
(--zip pairs them). Years, time step and output frequency come from the model unless given.

\b
Runs are identified by their values: re-running with an overlapping or extended grid computes only the new
values; run files of values outside the grid are reported and left alone (never combined).

\b
Splits (printed before the runs start; train/evaluate --split overrides): 'interleaved' is the default of
model sweeps and of ensembles that name no rule: the runs are sorted by value, k is a run's position and
P = 3 (<= 4 runs), 4 (5-11) or 6 (>= 12), with several --vary raised to share no factor with the last
one's number of values; test: k mod P == 1, validation: k mod P == P//2 + 1, train: the rest.
pig-melt and square-melt use the seed's Pine Island rule 'pig-melt' (test: rate mod 20 m/yr == 0,
validation: rate mod 20 == 10), north79-calving the rule of the same name. An empty split is reported
with the fix; train/evaluate --split 'test=10,30;validation=20' choose the held-out values explicitly.
"""


@click.group("generate", context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True,
             help=_MODEL_HELP)
@click.option("--model", "model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sweep this saved pyISSM model (pyissm.model.io.save_model) instead of a built-in sweep.")
@click.option("--vary", "vary", multiple=True, metavar="PATH=VALUES",
              help="With --model: set md.PATH to each value, or 'PATH*=VALUES' to scale it; repeatable (grid).")
@click.option("--zip", "zip_", is_flag=True, help="With --model: pair the --vary values instead of a full grid.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --model: output folder (runs/, ensemble.nc and the model); re-running resumes.")
@click.option("--years", default=None, help="With --model: run length in years (default: the model's).")
@click.option("--time-step", default=None, help="With --model: time step, years or with a unit (default: the model's).")
@click.option("--output-frequency", type=click.IntRange(min=1), default=None,
              help="With --model: store results every N steps (default: the model's).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Local worker processes (default min(2, CPUs); 0 = in this process).")
@click.option("--scheduler", default=None, metavar="ADDR", help="Run on this dask.distributed scheduler.")
@click.option("--solver", default="fem", show_default=True, help="Registered solver name.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Solver option; repeatable.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar with ETA.")
@click.option("--split", "split", default=None, metavar="RULE", help=_SPLIT_HELP)
@click.option("--max-runs", type=click.IntRange(min=1), default=MAX_RUNS, show_default=True,
              help="With --model: refuse a sweep of more runs than this (a mistyped range).")
@click.option("--ignore-disk-space", is_flag=True,
              help="With --model: generate even when the runs' estimated size exceeds the free disk space.")
@click.pass_context
def generate(ctx: click.Context, model: Path | None, vary: tuple[str, ...], zip_: bool, out: Path | None,
             years: str | None, time_step: str | None, output_frequency: int | None, workers: int | None,
             scheduler: str | None, solver: str, options: tuple[str, ...], progress: bool, split: str | None,
             max_runs: int, ignore_disk_space: bool) -> None:
    if ctx.invoked_subcommand is not None:
        if model is not None or vary:
            raise click.UsageError("--model/--vary sweep your own model; do not combine them with a built-in sweep "
                                   f"({ctx.invoked_subcommand})")
        return
    if model is None:
        if vary:
            raise click.UsageError("--vary needs --model MY_MODEL.nc")
        click.echo(ctx.get_help())
        return
    if not vary:
        raise click.UsageError("--model needs at least one --vary PATH=VALUES "
                               "(e.g. --vary basalforcings.floatingice_melting_rate=0:70:2)")
    if out is None:
        raise click.UsageError("--model needs --out DIR")
    from .model_sweep import model_sweep_spec

    try:
        spec = model_sweep_spec(model, list(vary), out, zip=zip_, years=_quantity(years, "yr", "--years"),
                                time_step=_quantity(time_step, "yr", "--time-step"),
                                output_frequency=output_frequency, solver=solver,
                                solver_options=_solver_options(options),
                                split_rule=_split_text(split) or "interleaved")
    except (IssmEmulatorError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    grid = " x ".join(f"{v.label()} ({_fmt_values(np.asarray(v.values))}"
                      f"{' ' + v.units if v.units not in (None, '1') else ''})"
                      for v in spec.variations)
    click.echo(f"{model.name}: {len(spec.values)} runs of {grid}{' (zipped)' if zip_ else ''} with solver "
               f"{spec.solver_name!r} -> {out}", err=True)
    _generate(spec, out, workers, scheduler, progress, max_runs=max_runs, check_disk=not ignore_disk_space)


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
        try:
            names = [n for n in json.loads(attrs.get("parameters") or "[]") if n in ds.coords]
        except ValueError:
            names = []
        if not names and param and param in ds.coords:
            names = [param]
        out["parameters"] = []
        for name in names:
            values = np.asarray(ds[name].values)
            entry = {"name": name, "units": ds[name].attrs.get("units", ""), "values": values.tolist(),
                     "summary": _fmt_values(np.unique(values) if len(names) > 1 else values)}
            if ds[name].attrs.get("md_path"):
                entry.update(md_path=ds[name].attrs["md_path"], operation=ds[name].attrs.get("operation", "set"))
            if values.dtype.kind in "iuf" and values.size:
                entry.update(min=float(values.min()), max=float(values.max()))
            out["parameters"].append(entry)
        if out["parameters"]:
            out["parameter"] = out["parameters"][0]
        if attrs.get("sweep_kind") == "model":
            out["model"] = {"file": attrs.get("model_file"), "source": attrs.get("model_source"),
                            "digest": attrs.get("model_digest"), "zip": bool(int(attrs.get("zip", 0) or 0))}
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
        rule = attrs.get("split_rule") or "interleaved"
        if out["runs"] and names:
            table = {n: np.asarray(ds[n].values) for n in names}
            rep = split_report(table, rule, aliases=coord_aliases({n: ds[n].attrs for n in names}))
            out["splits"] = {"rule": rep["rule"], "description": rep.get("description", "")}
            if "error" in rep:
                out["splits"]["error"] = rep["error"]
            else:
                out["splits"].update({k: len(rep[k]) for k in ("train", "validation", "test")})
                out["splits"]["values"] = {k: ([table[names[0]][i].item() for i in rep[k]] if len(names) == 1 else
                                               [[table[n][i].item() for n in names] for i in rep[k]])
                                           for k in ("validation", "test")}
            if rep.get("fix"):
                out["splits"].update(empty=rep["empty"], fix=rep["fix"])
    return out


@click.command("info")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(file: Path, as_json: bool) -> None:
    """Summarise an ensemble dataset FILE (ensemble.nc or its folder): runs, times, mesh, parameters, the
    train/validation/test split (rule and values; the default rule is 'interleaved'), failures."""
    s = summarize(file)
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
        return
    lines = [f"file        {s['file']}",
             f"ensemble    {s.get('ensemble')} (scenario {s.get('scenario')})",
             f"solver      {s.get('solver')} {s.get('solver_version') or ''} options {s.get('solver_options')}",
             f"created     {s.get('created')} by {s.get('source')}",
             f"runs        {s['runs']} finished of {s['runs_requested']} requested"]
    if s.get("model"):
        m = s["model"]
        lines.append(f"model       {m['file']} (from {m.get('source') or 'a model in memory'})"
                     f"{', values zipped' if m.get('zip') else ''}")
    for p in s.get("parameters", []):
        what = f" ({p['operation']} {p['md_path']})" if p.get("md_path") else ""
        units = p["units"] if p["units"] != "1" else ""
        lines.append(f"parameter   {p['name']}{what}: {p['summary']} {units}".rstrip())
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
            for which in ("validation", "test"):
                vals = sp["values"][which]
                if vals:
                    lines.append(f"  {which:<10}  " + ", ".join(_fmt_item(v) for v in vals[:12]) +
                        (f", ... ({len(vals) - 12} more)" if len(vals) > 12 else ""))
        if sp.get("fix"):
            lines.append(f"  warning: the {', '.join(sp['empty'])} split(s) are empty. Fix: {sp['fix']}")
    fails = s.get("failures") or []
    lines.append(f"failures    {len(fails)}")
    for f in fails:
        lines.append(f"  run {f.get('index')} ({f.get('value')}): {f.get('error_type')}: {f.get('message')}")
    click.echo("\n".join(lines))
