"""``issm-emulator solvers`` stays cheap (no torch import, well under 2 s) and shows each solver's
distribution, as docs/plugins.md promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from issm_emulator.cli import main

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from issm_emulator.cli import main
try:
    main(["solvers", "--json"], standalone_mode=False)
finally:
    heavy = sorted(m for m in ("torch", "torch_geometric") if m in sys.modules)
    print(json.dumps({"wall_s": time.perf_counter() - t0, "heavy": heavy}), file=sys.stderr)
"""


def test_listing_solvers_does_not_import_torch():
    res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    probe = json.loads(res.stderr.strip().splitlines()[-1])
    assert probe["heavy"] == [], f"listing the solvers imported {probe['heavy']}"
    assert probe["wall_s"] < 2.0, probe
    rows = json.loads(res.stdout)
    assert {r["name"] for r in rows} >= {"fem", "egcn"}


def test_solvers_table_shows_the_distribution():
    res = CliRunner().invoke(main, ["solvers"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "distribution" in res.output and "issm-emulator" in res.output
    rows = json.loads(CliRunner().invoke(main, ["solvers", "--json"]).output)
    fem = next(r for r in rows if r["name"] == "fem")
    assert fem["distribution"].startswith("issm-emulator ")


def test_in_process_plugin_has_no_distribution():
    from issm_emulator.plugins.hookspecs import hookimpl
    from issm_emulator.plugins.manager import SolverRegistry, create_plugin_manager
    from issm_emulator.solvers.fem import FEMSolver

    class Plugin:
        @hookimpl
        def issm_emulator_solvers(self):
            return [("mine", FEMSolver)]

    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(Plugin(), name="mine-plugin")
    row = SolverRegistry(pm).describe("mine")
    assert row["plugin"] == "mine-plugin" and row["distribution"] == ""
