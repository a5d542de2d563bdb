"""Output times per stacked pass of the GCN and CNN direct networks: the measurement behind
``issm_emulator.nn.increment.TimeInputIncrement.stacked_times``; writes its section of docs/performance.md.

A time-input increment network (``nn/increment.py``) costs one pass of its base network per output time;
``forward_stacked`` runs ``K`` of them as one pass. This script times the base network of each checkpoint
(``--checkpoints``, default the published ``gcn-direct-pig`` and ``cnn-direct-pig``) on the initial state of
the first test run of a Pine Island ensemble (``--data``), under ``torch.inference_mode()`` on ``--threads``
torch threads, for every ``K`` of ``--stacks``: the median over ``--repeats`` calls (after one untimed call)
divided by ``K``, i.e. the cost per output time.

Usage::

    python benchmarks/stacked_times.py --data DATA/pig-melt [--checkpoints weights/gcn-direct-pig.pt ...]

Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import quiet  # noqa: E402
from report import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def per_time_ms(checkpoint: Path, data: Path, stacks: list[int], repeats: int,
                device: str) -> tuple[dict[int, float], int]:
    import torch

    from issm_emulator.learning.dataset import make_dataset
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    ds = make_dataset("direct", data, "test", decoder="increment", spec=ck.spec)
    sample = ds[0].to(device)
    model = ck.model.to(device).eval()
    s, v = ck.input_normalizer.to(device).encode(sample.scalars, sample.vectors)
    out = {}
    with torch.inference_mode():
        for k in stacks:
            ss = s.unsqueeze(0).repeat(k, 1, 1)
            model.base.forward_stacked(sample, ss, v)
            times = []
            for _ in range(repeats):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model.base.forward_stacked(sample, ss, v)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            out[k] = 1e3 * statistics.median(times) / k
    return out, model.times_per_pass(device)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="Pine Island ensemble folder (its test split)")
    ap.add_argument("--checkpoints", type=Path, nargs="+",
                    default=[ROOT / "weights" / "gcn-direct-pig.pt", ROOT / "weights" / "cnn-direct-pig.pt"])
    ap.add_argument("--stacks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for ck in args.checkpoints:
        ms, used = quiet(per_time_ms, ck, args.data, args.stacks, args.repeats, args.device)
        print(ck.stem, {k: round(v, 2) for k, v in ms.items()})
        rows.append(f"| {ck.stem} | " + " | ".join(f"{ms[k]:.2f}" for k in args.stacks)
                    + f" | {min(ms, key=ms.get)} | {used} |")
    body = "\n".join([
        "## Output times per stacked pass (`benchmarks/stacked_times.py`)", "",
        machine_line(), "",
        f"Cost of one output time (ms) of the GCN and CNN direct networks when `K` output times go through one "
        f"stacked pass of the base network (`forward_stacked`), on {args.device} with {args.threads} torch "
        f"thread(s): the initial state of the first Pine Island test run ({args.data.name}), median of "
        f"{args.repeats} calls divided by `K`. *Cheapest K*: measured here; *K used*: what the network's "
        "`TimeInputIncrement.stacked_times` gives for this device (set from this table).", "",
        "| checkpoint | " + " | ".join(f"K = {k}" for k in args.stacks) + " | cheapest K | K used |",
        "|---|" + "---|" * (len(args.stacks) + 2),
        *rows])
    write_section(args.out, "stacked_times", body)
    print(body)


if __name__ == "__main__":
    main()
