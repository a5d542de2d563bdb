"""``issm-emulator fetch``: download pretrained weights into the cache, or list them.

Attach with ``main.add_command(fetch_command)``.
"""

from __future__ import annotations

import click

from issm_emulator.errors import IssmEmulatorError

__all__ = ["fetch_command"]


@click.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Fetch every registered checkpoint.")
@click.option("--list", "list_", is_flag=True, help="List the bundled and downloadable checkpoints.")
def fetch_command(names: tuple[str, ...], all_: bool, list_: bool) -> None:
    """Fetch pretrained weights NAME... (or --all) and print their local paths.

    Bundled weights need no download. Downloads are sha256-checked and kept in $ISSM_EMULATOR_WEIGHTS_DIR
    (default: the user cache folder); $ISSM_EMULATOR_WEIGHTS_URL overrides where they come from.
    """
    from issm_emulator import weights

    if list_:
        if names or all_:
            raise click.UsageError("--list takes no NAME and no --all")
        _print_list(weights)
        return
    if all_ and names:
        raise click.UsageError("give NAME... or --all, not both")
    if not all_ and not names:
        raise click.UsageError("give NAME... or --all (or --list to see the names)")
    try:
        targets = weights.available_names() if all_ else list(names)
    except ValueError as exc:  # malformed registry
        raise click.ClickException(str(exc)) from exc
    failures = []
    for name in targets:
        try:
            click.echo(str(weights.fetch(name)))
        except (IssmEmulatorError, KeyError, ValueError) as exc:
            failures.append(str(exc))
    if failures:
        raise click.ClickException("\n".join(failures))


def _print_list(weights) -> None:
    try:
        rows = weights.available()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"cache folder: {weights.cache_dir()} (${weights.CACHE_ENV_VAR})")
    click.echo(f"download URL: {weights.base_url()} (${weights.URL_ENV_VAR})")
    if not rows:
        click.echo("no weights are bundled or registered")
        return
    width = max(len(r.name) for r in rows)
    for r in rows:
        where = str(r.path) if r.path is not None else ("delete it and fetch again" if r.corrupted
                                                          else "not downloaded")
        click.echo(f"{r.name:<{width}}  {r.status:<9}  {where}")
