"""When does training an emulator for your own model pay off? Writes its section of docs/results.md.

For the Pine Island 3 km set-up (20 years, monthly steps), measured in one process:

* ``t_fem``: one member solved by ``fem`` (median of ``--repeats``);
* ``t_run``: one run of ``generate`` (``fem`` plus writing the run file), from a 2-run sweep;
* ``t_epoch``: one training epoch of the published EGCN direct recipe on ``--data`` (the ``--members``-run
  ensemble), times ``--epochs`` (the recipe's count, see scripts/train_weights.sh) = ``t_train``;
* ``t_emu``: one member solved by the bundled EGCN direct checkpoint (median of ``--repeats``).

The emulator pays off after ``N* = (members x t_run + t_train) / (t_fem - t_emu)`` members.

Usage::

    python benchmarks/own_model.py --data /data/pig-melt [--members 36] [--epochs 182] [--out docs/results.md]

Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_TITLE, quiet, set_threads  # noqa: E402
from report import machine_line, write_section  # noqa: E402

os.environ.setdefault("USER", "issm-emulator")
ROOT = Path(__file__).resolve().parents[1]


def _timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    quiet(fn, *args, **kwargs)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the pig-melt ensemble (3 km, 20 years)")
    ap.add_argument("--members", type=int, default=36, help="runs of the training ensemble")
    ap.add_argument("--epochs", type=int, default=182, help="epochs of the recipe (egcn-direct-pig)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--years", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    set_threads(args.threads)

    import issm_emulator
    from issm_emulator.datasets import EnsembleSpec, generate_ensemble
    from issm_emulator.learning.train import train
    from issm_emulator.scenarios.pine_island import pine_island

    def member():
        return quiet(pine_island, 3e3, 30.0, years=args.years)

    t_fem = statistics.median(_timed(issm_emulator.solve, member(), "Transient", solver="fem")
                              for _ in range(args.repeats))
    t_emu = statistics.median(_timed(issm_emulator.solve, member(), "Transient", solver="egcn", mode="direct",
                                     checkpoint="egcn-direct-pig", device="cpu") for _ in range(args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        spec = EnsembleSpec(scenario="pine_island", parameter="melt_rate", values=[10.0, 50.0], units="m yr^-1",
                            scenario_kwargs={"resolution": 3000.0}, years=args.years, time_step=1.0 / 12.0,
                            name="break-even", split_rule="pig-melt")
        t0 = time.perf_counter()
        quiet(generate_ensemble, spec, Path(tmp) / "ens", workers=0, progress=False)
        t_run = (time.perf_counter() - t0) / 2
        t0 = time.perf_counter()
        quiet(train, args.data, model="egcn", mode="direct", out=Path(tmp) / "e.pt", epochs=1, hidden=64, layers=4,
              batch_size=4, lr=2e-3, lr_decay=0.99, patience=None, progress=False, device="cpu",
              calibrate_indicator=False)
        t_epoch = time.perf_counter() - t0
    t_gen = args.members * t_run
    t_train = args.epochs * t_epoch
    gain = t_fem - t_emu
    n_star = (t_gen + t_train) / gain if gain > 0 else math.inf
    lines = [
        "## Own model: when the emulator pays off (`benchmarks/own_model.py`)",
        "",
        machine_line(),
        "",
        f"Pine Island, 3 km mesh, {args.years:g} years of monthly steps; EGCN direct mode (the published recipe). "
        "Every figure measured in one process on this machine (the training cost as one measured epoch times "
        "the recipe's epoch count).",
        "",
        "| step | wall time |",
        "|---|---|",
        f"| one member with `fem` | {t_fem:.2f} s |",
        f"| one member with the EGCN direct emulator | {t_emu:.2f} s |",
        f"| generate the training ensemble ({args.members} runs x {t_run:.2f} s) | {t_gen:.0f} s |",
        f"| train ({args.epochs} epochs x {t_epoch:.1f} s) | {t_train:.0f} s |",
        "",
        f"Break-even: the emulator pays off from **N = {n_star:.0f} members** "
        f"((generate + train) / (fem - emulator) per member); beyond that each member saves {gain:.2f} s.",
    ]
    write_section(args.out, "own-model", "\n".join(lines), title=RESULTS_TITLE)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
