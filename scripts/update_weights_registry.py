"""Rewrite ``issm_emulator/registry/weights.txt`` from the repository's top-level ``weights/`` folder.

Every checkpoint ``weights/**/<name>.pt`` becomes a line ``<name> sha256:<hex> <path relative to weights/>``;
the files are then downloadable with ``issm-emulator fetch <name>`` once ``weights/`` is published at the
base URL (``$ISSM_EMULATOR_WEIGHTS_URL``, default the repository's raw ``weights/`` folder). Other files
(README, hidden files) are skipped and reported.

Usage::

    python scripts/update_weights_registry.py            # rewrite the registry
    python scripts/update_weights_registry.py --check    # exit 1 when the registry is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from issm_emulator._download import parse_registry, sha256_file

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = ".pt"
HEADER = """\
# issm-emulator pretrained weights that are downloaded on demand (issm_emulator.weights.fetch,
# `issm-emulator fetch NAME`). One checkpoint per line:
#   <name>  sha256:<hex>  <path relative to the base URL>
# Base URL: $ISSM_EMULATOR_WEIGHTS_URL, default
#   https://raw.githubusercontent.com/issm-emulator/issm-emulator/main/weights/
# Written by scripts/update_weights_registry.py from the repository's top-level weights/ folder; do not
# edit by hand. Weights bundled inside the package (issm_emulator/weights/*.pt) need no entry here.
"""


def scan(weights_dir: Path) -> tuple[dict[str, tuple[str, str]], list[Path]]:
    """``({name: ('sha256:<hex>', relative path)}, skipped files)`` of a weights folder."""
    if not weights_dir.is_dir():
        raise SystemExit(f"error: {weights_dir} is not a folder (expected the repository's weights/ folder)")
    entries: dict[str, tuple[str, str]] = {}
    skipped: list[Path] = []
    for path in sorted(p for p in weights_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(weights_dir)
        if path.suffix != SUFFIX or any(part.startswith(".") for part in rel.parts):
            skipped.append(rel)
            continue
        if any(c.isspace() for c in rel.as_posix()):
            raise SystemExit(f"error: {rel}: registry paths may not contain white space")
        name = path.stem
        if name in entries:
            raise SystemExit(f"error: two checkpoints are named {name!r}: {entries[name][1]} and {rel.as_posix()}")
        entries[name] = (f"sha256:{sha256_file(path)}", rel.as_posix())
    return entries, skipped


def render(entries: dict[str, tuple[str, str]]) -> str:
    """The registry text of ``entries`` (sorted by name, columns aligned)."""
    width = max((len(n) for n in entries), default=0)
    lines = [f"{name:<{width}}  {digest}  {rel}" for name, (digest, rel) in sorted(entries.items())]
    return HEADER + "".join(line + "\n" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights",
                        help="folder of the checkpoints (default: the repository's weights/)")
    parser.add_argument("--registry", type=Path, default=ROOT / "issm_emulator" / "registry" / "weights.txt",
                        help="registry file to write (default: the package's registry/weights.txt)")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when the registry differs from the folder")
    args = parser.parse_args(argv)
    entries, skipped = scan(args.weights_dir)
    for rel in skipped:
        print(f"skipped (not a {SUFFIX} checkpoint): {rel}", file=sys.stderr)
    if args.check:
        current = parse_registry(args.registry.read_text(), str(args.registry)) if args.registry.is_file() else {}
        if current != entries:
            stale = sorted(set(current) ^ set(entries) | {n for n in current if n in entries
                                                           and current[n] != entries[n]})
            print(f"{args.registry} is out of date ({', '.join(stale)}); run {Path(__file__).name}",
                  file=sys.stderr)
            return 1
        print(f"{args.registry} is up to date ({len(entries)} checkpoints)")
        return 0
    args.registry.parent.mkdir(parents=True, exist_ok=True)
    args.registry.write_text(render(entries))
    for name, (digest, rel) in sorted(entries.items()):
        print(f"{name}  {digest[7:19]}...  {rel}")
    print(f"wrote {args.registry} ({len(entries)} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
