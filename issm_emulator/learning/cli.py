"""Command-line interface of training and evaluation: ``issm-emulator train`` and ``issm-emulator evaluate``.

Both commands are plain :mod:`click` commands; :mod:`issm_emulator.cli` attaches them to the main group.
``train`` also runs under ``torchrun`` (``python -m torch.distributed.run --nproc_per_node 2 -m
issm_emulator.learning --data ... ``), one process per GPU (or CPU process with gloo).
"""

from __future__ import annotations

from pathlib import Path

import click

from issm_emulator.errors import IssmEmulatorError

_SPLIT_HELP = ("Split rule: a name - 'interleaved' (the default of ensembles that name none: runs sorted by value, "
               "every P-th from the second to test, an offset set to validation, P = 3/4/6 for <=4/5-11/>=12 runs), "
               "'pig-melt' (test: rate mod 20 m/yr == 0, validation: == 10), 'north79-calving', 'by-position' - or "
               "value lists 'test=10,30;validation=20' ('test:PARAM=...' when several parameters are swept); "
               "every other run trains. Default: the ensemble's rule (issm-emulator info shows it).")


def _split_rule(text: str | None) -> object:
    if text is None:
        return None
    from issm_emulator.datasets.splits import parse_split

    try:
        return parse_split(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--split") from None


@click.command("train")
@click.option("--data", "data", required=True, multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Ensemble folder (issm-emulator generate) or its ensemble.nc; repeat it for ensembles of one "
                   "glacier on several meshes, trained together into one checkpoint.")
@click.option("--model", "arch", type=click.Choice(["egcn", "gcn", "cnn"]), default="egcn", show_default=True)
@click.option("--mode", type=click.Choice(["direct", "step"]), default="step", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint to write (the best epoch on the validation split).")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=20, show_default=True,
              help="Early stopping: epochs without a better validation loss.")
@click.option("--lr-schedule", type=click.Choice(["exponential", "plateau", "constant"]), default="exponential",
              show_default=True)
@click.option("--lr-decay", type=float, default=0.99, show_default=True, help="ExponentialLR gamma.")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--time-stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Use every N-th output time only (cheaper epochs on long monthly runs).")
@click.option("--rotate-stride", is_flag=True,
              help="With --time-stride N: shift the kept outputs by one each epoch, so every N epochs train on "
                   "every output once (validation keeps every N-th).")
@click.option("--vector-hidden", type=click.IntRange(min=1), default=None,
              help="EGCN: vector channels inside the network (default 16).")
@click.option("--decoder", type=click.Choice(["auto", "increment", "none"]), default="auto", show_default=True,
              help="Direct mode: 'increment' = the network predicts the change since the initial state, exactly "
                   "the initial state at t = 0 (EGCN: one graph pass per run and a time decoder; GCN, CNN: one "
                   "pass per output time, time t/T as an input); 'none' = time as a normalised input and the "
                   "absolute state as output (the seed's method); 'auto' = increment in direct mode.")
@click.option("--input-noise", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Step mode: std (m) of a smooth thickness perturbation of the training inputs, so the network "
                   "learns to correct the drift of its own rollouts.")
@click.option("--noise-targets", type=click.Choice(["keep", "ssa"]), default="keep", show_default=True,
              help="With --input-noise: keep the true velocity as the target, or solve the stress balance of the "
                   "perturbed geometry with fem (ssa).")
@click.option("--previous-velocity", is_flag=True,
              help="Step mode: the velocity at the start of the step is an input too (a warm start the network "
                   "corrects, as fem's Picard iterations start from the previous velocity).")
@click.option("--velocity-noise", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --previous-velocity: std of a smooth perturbation of that input velocity, as a "
                   "fraction of the local speed, so the network learns to correct a wrong warm start.")
@click.option("--processing-mesh", is_flag=True,
              help="Run the network on the first --data ensemble's mesh for every ensemble, and record that mesh: "
                   "models on other meshes are interpolated onto it and the outputs back.")
@click.option("--fit-targets", is_flag=True,
              help="With --processing-mesh: the other ensembles' targets on it are the values whose interpolation "
                   "back fits their outputs best (least squares), instead of their outputs interpolated onto it.")
@click.option("--processing-back", type=click.Choice(["taylor", "p1"]), default="taylor", show_default=True,
              help="With --processing-mesh: how outputs move back to a model's mesh: blended Taylor expansions "
                   "with recovered gradients, or P1 interpolation (as checkpoints trained before the option).")
@click.option("--select", type=click.Choice(["loss", "rollout"]), default="loss", show_default=True,
              help="The epoch kept: lowest validation loss, or (step mode) best rollouts of the validation runs "
                   "(thickness RMSE; each epoch then also rolls out every validation run).")
@click.option("--rollout-inputs", type=click.FloatRange(min=0, max=1), default=0.0, show_default=True,
              help="Step mode: this fraction of the training samples start from the thickness the network's own "
                   "rollouts of their run reach (DAgger; the drift enters as --input-noise does, and with "
                   "--noise-targets ssa the target is that geometry's stress balance).")
@click.option("--rollout-refresh", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --rollout-inputs: roll the training runs out again every N epochs (0: once, before the "
                   "first epoch of this invocation).")
@click.option("--rollout-on", type=click.Path(path_type=Path), multiple=True,
              help="With --rollout-inputs: the --data ensembles whose training runs are rolled out (repeat it; "
                   "default: all).")
@click.option("--split", "split", default=None, metavar="RULE", help=_SPLIT_HELP)
@click.option("--init", "init_from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Fine-tune this checkpoint (its network, sizes and normalisers) instead of starting afresh.")
@click.option("--resume", is_flag=True, help="Continue from <out stem>.last.pt.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train_command(data: tuple[Path, ...], arch: str, mode: str, out: Path, epochs: int, lr: float, batch_size: int,
                  device: str | None, seed: int, hidden: int, layers: int, patience: int, lr_schedule: str,
                  lr_decay: float, num_workers: int, time_stride: int, rotate_stride: bool, vector_hidden: int | None, decoder: str,
                  input_noise: float, noise_targets: str, previous_velocity: bool, velocity_noise: float,
                  processing_mesh: bool, fit_targets: bool, processing_back: str, select: str,
                  rollout_inputs: float, rollout_refresh: int, rollout_on: tuple[Path, ...], split: str | None,
                  init_from: Path | None, resume: bool, no_progress: bool) -> None:
    """Train an emulator network (EGCN, GCN or CNN) on the train split of an ensemble, keeping the best epoch on
    the validation split (see --split for the rule)."""
    from issm_emulator.learning.train import history_paths, train

    if vector_hidden and arch != "egcn":
        raise click.ClickException(f"--vector-hidden is an EGCN option, not one of {arch}")
    on = None
    if rollout_on:
        given = [Path(d).resolve() for d in data]
        on = []
        for d in rollout_on:
            if Path(d).resolve() not in given:
                raise click.ClickException(f"--rollout-on {d}: expected one of the --data ensembles "
                                           f"({', '.join(str(g) for g in data)})")
            on.append(given.index(Path(d).resolve()))
    try:
        path = train(data[0] if len(data) == 1 else list(data), model=arch, mode=mode, out=out, epochs=epochs,
                     lr=lr, batch_size=batch_size,
                     device=device, seed=seed, hidden=hidden, layers=layers, patience=patience,
                     lr_schedule=lr_schedule, lr_decay=lr_decay, num_workers=num_workers, resume=resume,
                     progress=not no_progress, time_stride=time_stride, rotate_stride=rotate_stride,
                     model_options={"vector_hidden": vector_hidden} if vector_hidden else None,
                     decoder=None if decoder == "none" else decoder, input_noise=input_noise,
                     noise_targets=noise_targets, split_rule=_split_rule(split), init_from=init_from,
                     previous_velocity=previous_velocity, velocity_noise=velocity_noise,
                     processing_mesh=processing_mesh, fit_targets=fit_targets,
                     processing_back=processing_back, select=select, rollout_inputs=rollout_inputs,
                     rollout_refresh=rollout_refresh, rollout_on=on)
    except (IssmEmulatorError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        csv_path, _ = history_paths(path)
        click.echo(f"checkpoint: {path}\nhistory: {csv_path}")


@click.command("evaluate")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Ensemble folder or its ensemble.nc.")
@click.option("--split", "split", default=None, metavar="RULE",
              help=_SPLIT_HELP + " For compatibility, train/validation/test/all here choose the runs (as --runs).")
@click.option("--runs", "runs", type=click.Choice(["train", "validation", "test", "all"]), default=None,
              help="Which runs to evaluate under the split rule (default test).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.md, metrics.csv and the plots.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--times", default=None, help="Comma-separated model times (yr) to evaluate (default: all).")
@click.option("--plot-times", default=None, help="Comma-separated times (yr) of the error maps.")
@click.option("--no-plots", is_flag=True)
def evaluate_command(checkpoint: Path, data: Path, split: str | None, runs: str | None, out_dir: Path, device: str,
                     times: str | None, plot_times: str | None, no_plots: bool) -> None:
    """Evaluate a checkpoint on a split of an ensemble (default: the test runs of the ensemble's split rule):
    RMSE and R per run and overall, plots."""
    from issm_emulator.learning.evaluate import evaluate

    def floats(text: str | None) -> list[float] | None:
        if text is None:
            return None
        try:
            return [float(t) for t in text.split(",") if t.strip()]
        except ValueError as exc:
            raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from exc

    rule = None
    if split in ("train", "validation", "test", "all"):
        if runs is not None and runs != split:
            raise click.UsageError(f"--split {split} and --runs {runs} disagree")
        runs = split
    else:
        rule = _split_rule(split)
    try:
        res = evaluate(checkpoint, data, runs or "test", out_dir=out_dir, times=floats(times), device=device,
                       plot_times=floats(plot_times), plots=not no_plots, split_rule=rule)
    except (IssmEmulatorError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(res.markdown)
    click.echo(f"written to {out_dir}")
