"""The issm-emulator command line (click CliRunner)."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner
from modelfactory import make_square_shelf_md

from issm_emulator import __version__
from issm_emulator.cli import describe_state, main
from issm_emulator.plugins import manager


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.delenv(manager.ENV_VAR, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    manager.reset_default_manager()
    yield
    manager.reset_default_manager()


def test_help_and_version():
    runner = CliRunner()
    res = runner.invoke(main, ["--help"])
    assert res.exit_code == 0 and "solvers" in res.output and "inspect" in res.output
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_solvers_table_and_json():
    runner = CliRunner()
    res = runner.invoke(main, ["solvers"])
    assert res.exit_code == 0, res.output
    for word in ("name", "version", "description", "devices", "fem", "cpu", "builtin"):
        assert word in res.output
    res = runner.invoke(main, ["solvers", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    fem = next(r for r in rows if r["name"] == "fem")
    egcn = next(r for r in rows if r["name"] == "egcn")
    assert fem["plugin"] == "builtin" and "cpu" in fem["devices"]
    from issm_emulator import weights

    # the default is EGCN when its default weights ship with the package, fem otherwise
    assert egcn["default"] is weights.has_default("egcn", "step") and fem["default"] is not egcn["default"]
    assert set(fem) >= {"name", "version", "description", "devices", "solutions", "plugin"}


def test_inspect_default_model():
    res = CliRunner().invoke(main, ["inspect", "--resolution", "100000"])
    assert res.exit_code == 0, res.output
    for text in ("TransientSolution", "vertices / elements", "thickness", "grounded / floating", "smb",
                 "friction", "budd", "0 .. 3 yr, dt 1 yr", "requested outputs"):
        assert text in res.output, text


def test_inspect_saved_model_and_errors(tmp_path):
    from pyissm.model.io import save_model

    md = make_square_shelf_md(transient=False)
    path = tmp_path / "md.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_model(md, str(path))
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", "--model", str(path), "--solution", "sb"])
    assert res.exit_code == 0, res.output
    assert "StressbalanceSolution" in res.output and f"{md.mesh.numberofvertices} / " in res.output
    res = runner.invoke(main, ["inspect", "--model", str(path), "--solution", "mt"])
    assert res.exit_code != 0 and "does not implement" in res.output
    # a stress-balance-only model is not valid for a transient: the field is named
    res = runner.invoke(main, ["inspect", "--model", str(path)])
    assert res.exit_code != 0 and "md." in res.output


def test_describe_state_units():
    from issm_emulator.issm.adapter import read_model

    md = make_square_shelf_md()
    md.initialization.vx = md.initialization.vx + 250.0  # m/yr
    rows = {(s, k): v for s, k, v in describe_state(read_model(md, "tr"))}
    assert rows[("velocity", "initial speed")] == "250 m/yr"
    assert rows[("mesh", "vertices / elements")] == f"{md.mesh.numberofvertices} / {md.mesh.numberofelements}"
