"""``issm-emulator checkpoints``, ``register`` and ``domain``: the emulator checkpoints a solve can use.

Attach with ``main.add_command(...)`` (:mod:`issm_emulator.cli` does).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from issm_emulator.errors import IssmEmulatorError

__all__ = ["checkpoints_command", "domain_command", "register_command"]

_YTS = 365.0 * 24 * 3600
#: forcing parameters as a glaciologist reads them (ISSM's units): factor from SI and unit
_SHOWN = {"melt_rate": (_YTS, "m/yr"), "time": (1.0 / _YTS, "yr"), "calving_threshold": (1e-6, "MPa")}


@click.command("checkpoints")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def checkpoints_command(as_json: bool) -> None:
    """List the registered, bundled and downloaded emulator checkpoints with their applicability domains
    (glacier fingerprint, resolutions, time steps, forcing ranges). The default solve searches them in
    that order ($ISSM_EMULATOR_CHECKPOINTS_DIR holds the registered ones)."""
    from issm_emulator.solvers.emulator.catalog import CHECKPOINTS_ENV_VAR, catalog, user_dir
    from issm_emulator.solvers.emulator.domain import describe_domain

    entries = catalog()
    if as_json:
        click.echo(json.dumps([{"name": e.name, "source": e.source, "path": str(e.path), "arch": e.arch,
                                "mode": e.mode, "sha256": e.content_sha256, "error": e.error,
                                "domain": {k: v for k, v in (e.domain or {}).items() if k != "footprint"},
                                "forcing_ranges": e.forcing_ranges, "indicator": e.indicator}
                               for e in entries], indent=1))
        return
    click.echo(f"registered checkpoints folder: {user_dir()} (${CHECKPOINTS_ENV_VAR})")
    if not entries:
        click.echo("no emulator checkpoint is installed")
        return
    for e in entries:
        if e.error:
            click.echo(f"{e.name} [{e.source}] unreadable: {e.error}")
            continue
        click.echo(f"{e.name} [{e.source}] {e.arch} {e.mode} sha256 {e.content_sha256[:12]}")
        click.echo(f"    {describe_domain(e.domain)}")
        for name, (lo, hi) in e.forcing_ranges.items():
            scale, unit = _SHOWN.get(name, (1.0, "SI"))
            click.echo(f"    forcing {name}: [{lo * scale:.4g}, {hi * scale:.4g}] {unit}")


@click.command("register")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Name to install it under (default: the file's stem).")
@click.option("--overwrite", is_flag=True, help="Replace a different checkpoint of the same name.")
def register_command(checkpoint: Path, name: str | None, overwrite: bool) -> None:
    """Install a trained CHECKPOINT so that the default `issm_emulator.solve` picks it for models inside
    its applicability domain."""
    from issm_emulator.solvers.emulator.catalog import register

    try:
        dest = register(checkpoint, name=name, overwrite=overwrite)
    except (IssmEmulatorError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"registered: {dest}")


@click.command("domain")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="The ensemble the checkpoint was trained on (folder or ensemble.nc).")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Also calibrate the error indicator on the ensemble's validation runs.")
def domain_command(checkpoint: Path, data: Path, calibrate: bool) -> None:
    """Record CHECKPOINT's applicability domain (from its training runs in --data) and its error
    indicator's calibration; rewrites the file (training records both already)."""
    from issm_emulator.learning.applicability import record_applicability
    from issm_emulator.solvers.emulator.domain import describe_domain

    try:
        out = record_applicability(checkpoint, data, calibrate_indicator=calibrate)
    except (IssmEmulatorError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{checkpoint}: {describe_domain(out['domain'])}")
    if out["indicator"]:
        c = out["indicator"]
        click.echo(f"indicator: e = exp({c['a']:.3f}) c^{c['b']:.3f} m/yr, Spearman {c['spearman']:.3f} "
                   f"on {c['n']} validation outputs")
