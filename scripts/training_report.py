"""Summarise the training histories of the published weights into docs/training.md (its `histories` block).

Usage: ``python scripts/training_report.py CKPT_DIR [--out docs/training.md]``. Reads every
``<name>.history.csv`` written by ``issm-emulator train`` beside the checkpoints and the checkpoints'
manifests (configuration, training ranges); measures nothing itself. Rows of weights that CKPT_DIR does not
hold are kept as they are in the block (retraining some weights updates only their rows).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report import write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "training.md")
    args = ap.parse_args()
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

    rows = ["| weights | network | epochs run | best epoch | best validation loss | training time (s) | parameters |",
            "|---|---|---|---|---|---|---|"]
    for hist in sorted(args.ckpt_dir.glob("*.history.csv")):
        name = hist.name[: -len(".history.csv")]
        ckpt = args.ckpt_dir / f"{name}.pt"
        if not ckpt.is_file():
            continue
        with hist.open() as f:
            recs = list(csv.DictReader(f))
        if not recs:
            continue
        ck = load_checkpoint(ckpt)
        # the epoch the checkpoint holds: the lowest validation loss, or the one its training chose otherwise
        # (--select rollout: the best validation rollouts)
        kept = (ck.extra.get("training") or {}).get("best_epoch")
        best = next((r for r in recs if kept is not None and int(r["epoch"]) == int(kept)), None) \
            or min(recs, key=lambda r: float(r["validation_loss"]))
        note = ""
        if best.get("validation_rollout_thickness_rmse"):
            note = f" (kept for its validation rollouts, {float(best['validation_rollout_thickness_rmse']):.2f} m)"
        cfg = ck.model.config
        arch = ck.manifest.get("arch", "?")
        width = cfg.get("hidden", "?")
        depth = cfg.get("n_layers", "?")
        nparam = sum(p.numel() for p in ck.model.parameters())
        rows.append(f"| `{name}` | {arch} {depth} x {width} | {len(recs)} | {best['epoch']} | "
                    f"{float(best['validation_loss']):.3g}{note} | {sum(float(r['seconds']) for r in recs):.0f} | {nparam} |")
    import re

    mine = {re.match(r"\| `([^`]+)`", r).group(1) for r in rows[2:]}
    text = args.out.read_text() if args.out.is_file() else ""
    block = re.search(r"<!-- begin:histories -->(.*?)<!-- end:histories -->", text, re.S)
    kept = [line for line in (block.group(1).splitlines() if block else [])
            if (m := re.match(r"\| `([^`]+)`", line)) and m.group(1) not in mine]
    rows = rows[:2] + sorted(rows[2:] + kept)
    body = "\n".join(["## Training histories (`scripts/training_report.py`)", "",
                      "Validation loss: mean squared error of the normalised outputs on the validation split "
                      "(velocity divided by its RMS, scalar outputs by their standard deviation).", "", *rows])
    write_section(args.out, "histories", body, title="Training the published weights")
    print(body)


if __name__ == "__main__":
    main()
