"""``generate`` / ``info`` click commands (issm_emulator.datasets.cli) through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from issm_emulator.datasets import cli as dcli


def test_generate_square_melt_then_info(tmp_path):
    runner = CliRunner()
    out = tmp_path / "sq"
    res = runner.invoke(dcli.generate, ["square-melt", "--melt-rates", "0:20:10", "--years", "2", "--time-step",
                                        "1", "--resolution", "200km", "--out", str(out), "--workers", "0",
                                        "--no-progress"])
    assert res.exit_code == 0, res.output
    path = out / "ensemble.nc"
    assert str(path) in res.output
    with xr.open_dataset(path, decode_times=False) as ds:
        assert ds.melt_rate.values.tolist() == [0.0, 10.0, 20.0]
        nv, ne = ds.sizes["vertex"], ds.sizes["element"]
        assert ds.sizes["time"] == 2 and ds.attrs["solver"] == "fem"

    res = runner.invoke(dcli.info, [str(path), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["runs"] == 3 and s["runs_requested"] == 3 and s["failures"] == []
    assert s["parameter"]["name"] == "melt_rate" and s["parameter"]["units"] == "m yr^-1"
    assert (s["parameter"]["min"], s["parameter"]["max"]) == (0.0, 20.0)
    assert s["times"] == {"count": 2, "units": "common_years since 0000-01-01 00:00:00", "first": 1.0, "last": 2.0,
                          "interval": 1.0}  # model years; CF: 365-day years since year 0
    assert s["mesh"] == {"vertices": nv, "elements": ne}
    assert s["variables"]["vx"] == {"dims": ["run", "time", "vertex"], "units": "m yr^-1"}
    assert {k: s["splits"][k] for k in ("test", "validation", "train")} == {"test": 2, "validation": 1, "train": 0}

    res = runner.invoke(dcli.info, [str(out)])  # the folder works too; human-readable text
    assert res.exit_code == 0, res.output
    assert "3 finished of 3 requested" in res.output and "melt_rate: 0, 10, 20 m yr^-1" in res.output
    assert f"{nv} vertices, {ne} elements" in res.output and "failures    0" in res.output


def test_info_lists_failures(tmp_path):
    runner = CliRunner()
    out = tmp_path / "f"
    # a time step longer than the run makes the scenario refuse the model: every run fails
    res = runner.invoke(dcli.generate, ["square-melt", "--melt-rates", "1,2", "--years", "1", "--time-step", "2",
                                        "--out", str(out), "--workers", "0", "--no-progress"])
    assert res.exit_code == 1 and "no run finished" in res.output and "md.timestepping.time_step" in res.output
    assert len(list((out / "runs").glob("*.failed.json"))) == 2


@pytest.mark.parametrize("args, expected", [
    (["pig-melt", "--melt-rates", "0:70:2", "--years", "20", "--resolution", "3km", "--time-step", "1 month"],
     {"scenario": "pine_island", "parameter": "melt_rate", "n": 36, "first": 0.0, "last": 70.0, "years": 20.0,
      "time_step": 1.0 / 12.0, "resolution": 3000.0}),
    (["north79-calving", "--thresholds", "0.65:1.2:0.05 MPa", "--resolution", "5000"],
     {"scenario": "north79", "parameter": "stress_threshold", "n": 12, "first": 650e3, "last": 1.2e6,
      "years": 10.0, "time_step": 1.0 / 12.0, "resolution": 5000.0}),
    (["mismip-plus", "--experiments", "Ice0,Ice1r", "--spinup-years", "500"],
     {"scenario": "mismip_plus", "parameter": "experiment", "n": 2, "first": "Ice0", "last": "Ice1r",
      "years": None, "time_step": 1.0, "resolution": 4000.0}),
    (["mismip-plus", "--melt-factors", "0.1:0.3:0.1"],
     {"scenario": "mismip_plus_melt", "parameter": "melt_factor", "n": 3, "first": 0.1, "last": 0.3,
      "years": None, "time_step": 1.0, "resolution": 4000.0}),
])
def test_generate_options_build_the_spec(monkeypatch, tmp_path, args, expected):
    seen = {}

    def fake_generate(spec, out, *, workers, scheduler, progress, **guard):
        seen.update(spec=spec, out=out, workers=workers, scheduler=scheduler, progress=progress, guard=guard)
        return out / "ensemble.nc"

    monkeypatch.setattr(dcli, "generate_ensemble", fake_generate)
    res = CliRunner().invoke(dcli.generate, args + ["--out", str(tmp_path), "--workers", "3", "--scheduler",
                                                    "tcp://127.0.0.1:8786", "--option", "strict=true"])
    assert res.exit_code == 0, res.output
    spec = seen["spec"]
    assert (spec.scenario, spec.parameter, len(spec.values)) == (expected["scenario"], expected["parameter"],
                                                                 expected["n"])
    assert spec.values[0] == pytest.approx(expected["first"]) if not isinstance(expected["first"], str) \
        else spec.values[0] == expected["first"]
    assert spec.values[-1] == pytest.approx(expected["last"]) if not isinstance(expected["last"], str) \
        else spec.values[-1] == expected["last"]
    assert spec.years == (pytest.approx(expected["years"]) if expected["years"] is not None else None)
    assert spec.time_step == pytest.approx(expected["time_step"])
    assert spec.scenario_kwargs["resolution"] == pytest.approx(expected["resolution"])
    assert spec.solver == "fem" and spec.solver_options == {"strict": True}
    assert (seen["workers"], seen["scheduler"]) == (3, "tcp://127.0.0.1:8786")
    assert seen["guard"] == {"max_runs": 10_000, "check_disk": True}  # datasets.guard's defaults
    if "--spinup-years" in args:
        assert spec.scenario_kwargs["spinup_years"] == 500.0


@pytest.mark.parametrize("args, message", [
    (["square-melt", "--melt-rates", "0:10:0"], "step must not be 0"),
    (["square-melt", "--melt-rates", "5,5"], "duplicate"),
    (["square-melt", "--resolution", "3 Pa"], "--resolution"),
    (["north79-calving", "--thresholds", "1:2:1 m/yr"], "dimensionality"),
    (["mismip-plus", "--experiments", "Ice0", "--melt-factors", "0.1"], "not both"),
    (["square-melt", "--option", "nokey"], "KEY=VALUE"),
])
def test_generate_rejects_bad_input(tmp_path, args, message):
    res = CliRunner().invoke(dcli.generate, args + ["--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "x").exists()


def test_summarize_values_text():
    assert dcli._fmt_values(np.arange(0.0, 72.0, 2.0)) == "0 .. 70 step 2"
    assert dcli._fmt_values(np.array(["Ice0", "Ice1r"], dtype=object)) == "Ice0, Ice1r"
