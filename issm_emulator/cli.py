"""The ``issm-emulator`` command line.

``issm-emulator solvers`` lists the registered solver backends; ``issm-emulator inspect`` builds (or loads)
a pyISSM model and prints what issm-emulator reads from it; ``issm-emulator demo`` (the README's main job)
runs Pine Island with the EGCN emulator and with ``fem`` and compares them (:mod:`issm_emulator.demo`).
New sub-commands are added with ``@main.command()`` in this module (or ``main.add_command`` from another
one).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import traceback
import warnings
from typing import Any

import click
import numpy as np

from issm_emulator._version import __version__
from issm_emulator.errors import IssmEmulatorError


def _console():
    from rich.console import Console

    return Console(soft_wrap=False, width=max(100, int(os.environ.get("COLUMNS", "0") or 0)))


def configure_logging(verbosity: int) -> None:
    """Send the package's log records (``logging.getLogger("issm_emulator...")``) to stderr.

    Library code only logs; the command line decides what is shown: warnings and above by default
    (``verbosity`` 0), progress information with ``-v``, debugging detail with ``-vv``.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger("issm_emulator")
    logger.setLevel(level)
    if not any(getattr(h, "_issm_emulator_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._issm_emulator_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


_OS_PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied (is the folder read-only?)",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or directory",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "not a folder",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_error(exc: BaseException) -> str:
    """One line naming the problem of an exception that reached the command line."""
    if isinstance(exc, IssmEmulatorError):
        return _one_line(str(exc))
    if isinstance(exc, OSError):
        where = " ".join(f"'{f}'" for f in (exc.filename, exc.filename2) if f is not None)
        if isinstance(exc.errno, int) and exc.errno < 0:  # the NetCDF library's own error numbers
            return _one_line(f"{where or 'a file'}: cannot be read as NetCDF ({exc.strerror}): truncated, "
                             "damaged or not a NetCDF file")
        problem = _OS_PROBLEMS.get(exc.errno) if exc.errno is not None else None
        if problem is None:
            problem = exc.strerror or str(exc) or type(exc).__name__
        return _one_line(f"{problem}: {where}" if where else problem)
    text = str(exc)
    if "NetCDF: " in text:
        return _one_line(f"{text} (a truncated or damaged NetCDF file?)")
    if isinstance(exc, (RuntimeError, ValueError)) and text:
        return _one_line(text)
    return _one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class _Main(click.Group):
    """The main group: an error escaping any command is printed as one line (``Error: ...``, exit status
    1) naming the problem; ``--debug`` (or ``ISSM_EMULATOR_DEBUG=1``) prints the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            cause = exc.__cause__ or exc.__context__
            if debug and cause is not None:
                traceback.print_exception(type(cause), cause, cause.__traceback__)
            if type(exc) is click.ClickException:  # a command's own message: one line too
                exc.message = _one_line(exc.message)
            raise
        except (click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:  # the one top-level handler of the command line
            if debug:
                raise
            hint = "" if isinstance(exc, IssmEmulatorError) else " (--debug shows the traceback)"
            raise click.ClickException(describe_error(exc) + hint) from exc


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="issm-emulator")
@click.option("-v", "--verbose", count=True, help="Log more (-v: information, -vv: debugging detail).")
@click.option("--debug", is_flag=True, envvar="ISSM_EMULATOR_DEBUG",
              help="Show the full traceback of an error (default: one line naming the problem).")
def main(verbose: int = 0, debug: bool = False) -> None:
    """issm-emulator: a GNN surrogate and a reference finite-element solver for ISSM models."""
    configure_logging(verbose)


# --------------------------------------------------------------------------------------------- solvers
@main.command("solvers")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def solvers_command(as_json: bool) -> None:
    """List the registered solvers (name, version, description, devices, plugin, distribution)."""
    from issm_emulator.plugins.manager import available_solvers, default_solver_name

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rows = available_solvers()
    try:
        default = default_solver_name()
    except IssmEmulatorError:
        default = None
    if as_json:
        click.echo(json.dumps([{**r, "devices": list(r["devices"]), "solutions": list(r["solutions"]),
                                "default": r["name"] == default} for r in rows], indent=2))
        return
    from rich.table import Table

    table = Table(title="issm-emulator solvers")
    for col in ("name", "version", "description", "devices", "solutions", "plugin", "distribution"):
        table.add_column(col, overflow="fold")
    for r in rows:
        name = f"{r['name']} (default)" if r["name"] == default else r["name"]
        table.add_row(name, r["version"], r["description"], ", ".join(r["devices"]),
                      ", ".join(r["solutions"]), r["plugin"], r.get("distribution", ""))
    _console().print(table)


# --------------------------------------------------------------------------------------------- inspect
def _range(values: Any, scale: float = 1.0, unit: str = "") -> str:
    arr = np.asarray(values, dtype=float) * scale
    if arr.size == 0:
        return "empty"
    finite = arr[np.isfinite(arr)]
    suffix = f" {unit}" if unit else ""
    if finite.size == 0:
        return "all NaN"
    lo, hi = float(finite.min()), float(finite.max())
    text = f"{lo:.6g}{suffix}" if lo == hi else f"{lo:.6g} .. {hi:.6g}{suffix}"
    if finite.size < arr.size:
        text += f" ({arr.size - finite.size} NaN)"
    return text


def _forcing(f: Any, yts: float, unit: str = "m/yr") -> str:
    text = _range(f.values, yts, unit)
    if f.is_transient:
        t = np.asarray(f.times) / yts
        text += f"; time series, {t.size} stamps {t[0]:.6g} .. {t[-1]:.6g} yr"
    return text


def describe_state(state: Any) -> list[tuple[str, str, str]]:
    """What issm-emulator reads from a model, as ``(section, item, value)`` rows in ISSM's user units."""
    yts = state.yts
    m, g, mk = state.mesh, state.geometry, state.masks
    rows: list[tuple[str, str, str]] = []

    def add(section: str, item: str, value: Any) -> None:
        rows.append((section, item, str(value)))

    add("mesh", "vertices / elements", f"{m.numberofvertices} / {m.numberofelements}")
    add("mesh", "x", _range(m.x, 1.0, "m"))
    add("mesh", "y", _range(m.y, 1.0, "m"))
    add("mesh", "boundary vertices", int(np.count_nonzero(m.vertexonboundary)))
    add("geometry", "thickness", _range(g.thickness, 1.0, "m"))
    add("geometry", "surface", _range(g.surface, 1.0, "m"))
    add("geometry", "base", _range(g.base, 1.0, "m"))
    add("geometry", "bed", _range(g.bed, 1.0, "m"))
    ocean, ice = np.asarray(mk.ocean_levelset), np.asarray(mk.ice_levelset)
    add("masks", "grounded / floating vertices",
        f"{int(np.count_nonzero(ocean > 0))} / {int(np.count_nonzero(ocean < 0))}")
    add("masks", "ice / ice-free / front vertices",
        f"{int(np.count_nonzero(ice < 0))} / {int(np.count_nonzero(ice > 0))} / {int(np.count_nonzero(ice == 0))}")
    add("velocity", "initial speed", _range(np.hypot(state.vx, state.vy), yts, "m/yr"))
    mat = state.materials
    add("materials", "rho_ice / rho_water", f"{mat.rho_ice:g} / {mat.rho_water:g} kg/m^3")
    add("materials", "rheology_B", _range(mat.rheology_B, 1.0, "Pa s^(1/n)"))
    add("materials", "rheology_n", _range(mat.rheology_n))
    fr = state.friction
    add("friction", "law", fr.law)
    for name, arr in fr.fields.items():
        add("friction", name, _range(arr))
    add("forcings", "smb", _forcing(state.smb, yts))
    bf = state.basalforcings
    add("forcings", "basal forcing", bf.kind)
    add("forcings", "grounded-ice melt", _forcing(bf.groundedice_melting_rate, yts))
    if bf.floatingice_melting_rate is not None:
        add("forcings", "floating-ice melt", _forcing(bf.floatingice_melting_rate, yts))
    add("forcings", "calving law", state.calving.law)
    add("forcings", "frontal melting rate", _forcing(state.frontal_meltingrate, yts))
    sb = state.stressbalance
    add("settings", "spcvx / spcvy set", f"{int(np.count_nonzero(np.isfinite(sb.spcvx)))} / "
                                         f"{int(np.count_nonzero(np.isfinite(sb.spcvy)))} vertices")
    add("settings", "restol / reltol / abstol / maxiter",
        f"{sb.restol:g} / {sb.reltol:g} / {sb.abstol * yts:g} m/yr / {sb.maxiter}")
    ts = state.timestepping
    add("settings", "time", f"{ts.start_time / yts:g} .. {ts.final_time / yts:g} yr, dt {ts.time_step / yts:g} yr")
    tr = state.transient
    add("settings", "transient flags", f"smb {tr.issmb}, masstransport {tr.ismasstransport}, stressbalance "
                                       f"{tr.isstressbalance}, groundingline {tr.isgroundingline}, "
                                       f"movingfront {tr.ismovingfront}")
    add("settings", "grounding line", state.groundingline.migration)
    add("settings", "requested outputs", ", ".join(state.requested_outputs))
    add("settings", "output frequency", state.output_frequency)
    add("settings", "yts", f"{yts:g} s")
    return rows


def _build_default_model(resolution: float) -> Any:
    from issm_emulator.scenarios.square import square_shelf

    return square_shelf(resolution)


@main.command("inspect")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              help="A pyISSM model saved with pyissm.model.io.save_model (NetCDF). "
                   "Default: ISSM's square ice shelf built in Python.")
@click.option("--resolution", type=float, default=50e3, show_default=True,
              help="Mesh resolution (m) of the default square ice shelf.")
@click.option("--solution", default="Transient", show_default=True,
              help="Solution to validate the model for (ISSM names: Transient/tr, Stressbalance/sb).")
def inspect_command(model_path: str | None, resolution: float, solution: str) -> None:
    """Build (or load) a pyISSM model and print what issm-emulator sees in it."""
    from issm_emulator.issm.adapter import read_model
    from issm_emulator.issm.solutions import parse_solution

    try:
        full = parse_solution(solution)
        if model_path:
            from contextlib import redirect_stdout
            from io import StringIO

            from pyissm.model.io import load_model

            with warnings.catch_warnings(), redirect_stdout(StringIO()):
                warnings.simplefilter("ignore")
                md = load_model(model_path)
            source = model_path
        else:
            md = _build_default_model(resolution)
            source = f"square ice shelf (issm_emulator.scenarios.square.square_shelf, {resolution:g} m)"
        state = read_model(md, full)
    except IssmEmulatorError as exc:
        raise click.ClickException(str(exc)) from exc

    from rich.table import Table

    table = Table(title=f"{full}: {source}")
    for col in ("section", "item", "value"):
        table.add_column(col, overflow="fold")
    last = None
    for section, item, value in describe_state(state):
        table.add_row(section if section != last else "", item, value)
        last = section
    _console().print(table)


@main.command("demo")
@click.option("--years", type=float, default=20.0, show_default=True, help="Simulated years.")
@click.option("--resolution", type=float, default=3e3, show_default=True,
              help="Mesh resolution (m) of the Pine Island model (3 km: 1814 vertices, as the bundled weights).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="demo_out", show_default=True,
              help="Folder for the NetCDF, the PNG maps and summary.txt.")
@click.option("--checkpoint", default=None,
              help="EGCN step-mode checkpoint (file or weights name). Default: the bundled weights.")
@click.option("--melt-rate", type=float, default=30.0, show_default=True,
              help="Floating-ice melt rate (m/yr).")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the emulator.")
@click.option("--maps/--no-maps", default=True, show_default=True, help="Write the PNG figures.")
def demo_command(years: float, resolution: float, out_dir: str, checkpoint: str | None, melt_rate: float,
                 device: str, maps: bool) -> None:
    """The main job: Pine Island with the bundled EGCN emulator and with fem, compared.

    Runs the same transient (ISSM's Pine Island geometry, shipped inside the package: no network needed)
    with the finite-element solver and with the EGCN emulator, prints the speed-up and the errors (thickness
    and velocity RMSE at the end, ice-volume difference) and writes a NetCDF and PNG maps to --out.
    """
    from issm_emulator.demo import run_demo

    try:
        run_demo(out_dir, years=years, resolution=resolution, checkpoint=checkpoint, melt_rate=melt_rate,
                 device=device, maps=maps, echo=click.echo)
    except (IssmEmulatorError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc


# Commands defined next to the code they drive.
from issm_emulator.datasets.cli import generate, info  # noqa: E402

main.add_command(generate)
main.add_command(info)
from issm_emulator.learning.cli import evaluate_command, train_command  # noqa: E402

main.add_command(train_command)
main.add_command(evaluate_command)
from issm_emulator.weights.cli import fetch_command  # noqa: E402

main.add_command(fetch_command)

from issm_emulator.solvers.emulator.cli import checkpoints_command, domain_command, register_command  # noqa: E402

main.add_command(checkpoints_command)
main.add_command(register_command)
main.add_command(domain_command)

if __name__ == "__main__":  # pragma: no cover - after every command is attached
    main()
