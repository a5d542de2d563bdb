"""Unit conversion: ISSM user units <-> SI, pint quantities, yts, CF unit strings."""

from __future__ import annotations

import numpy as np
import pint
import pytest
import xarray as xr

from issm_emulator.errors import ModelInputError, UnitError
from issm_emulator.units import (
    CF_UNITS,
    Q_,
    SI_TO_ISSM_FACTOR,
    YTS_DEFAULT,
    as_quantity,
    registry_for,
    to_issm,
    to_si,
    ureg,
)

YTS = 365.0 * 24.0 * 3600.0
YTS_293 = 365.2422 * 24.0 * 3600.0  # ISSM test 293


def test_registry_year_is_issm_yts():
    assert YTS_DEFAULT == YTS
    assert Q_(1, "yr").to("s").magnitude == YTS
    assert Q_(1, "a").to("s").magnitude == YTS and Q_(1, "year").to("day").magnitude == 365.0
    assert Q_(3, "month").to("yr").magnitude == pytest.approx(0.25, rel=1e-15)
    assert Q_(1, "Gt").to("kg").magnitude == 1e12
    assert Q_(1, "m yr-1").to("m/s").magnitude == pytest.approx(1 / YTS, rel=1e-15)  # UDUNITS syntax
    assert Q_(2, "m3").to("m^3").magnitude == 2.0
    assert Q_(1e3, "kg m-3").to("kg/m^3").magnitude == 1e3


def test_plain_numbers_are_issm_units():
    assert to_si(100.0, "m/yr", field="md.initialization.vx") == pytest.approx(100.0 / YTS, rel=1e-15)
    assert to_si(2, "yr", field="md.timestepping.final_time") == 2 * YTS
    assert to_si(500.0, "m", field="md.geometry.thickness") == 500.0
    assert to_si(1.5e5, "Pa", field="p") == 1.5e5
    assert to_si(917, "kg/m^3", field="md.materials.rho_ice") == 917.0
    assert isinstance(to_si(3, "m", field="f"), float)
    arr = to_si([[1, 2], [3, 4]], "m/yr", field="md.smb.mass_balance")
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == (2, 2)
    np.testing.assert_allclose(arr, np.array([[1, 2], [3, 4]]) / YTS, rtol=1e-15)
    assert to_issm(250.0, "m/yr", field="f") == 250.0
    np.testing.assert_array_equal(to_issm(np.arange(3), "yr", field="f"), [0.0, 1.0, 2.0])


def test_quantities_in_other_units():
    assert to_issm(Q_(30, "m/day"), "m/yr", field="md.initialization.vx") == pytest.approx(30 * 365, rel=1e-14)
    assert to_si(Q_(30, "m/day"), "m/yr", field="f") == pytest.approx(30 / 86400, rel=1e-14)
    assert to_issm(Q_(1, "km/yr"), "m/yr", field="f") == pytest.approx(1000.0, rel=1e-15)
    assert to_si(Q_(1, "km"), "m", field="f") == 1000.0
    assert to_issm(Q_(3, "months"), "yr", field="md.timestepping.time_step") == pytest.approx(0.25, rel=1e-15)
    assert to_si(Q_(3, "month"), "yr", field="f") == pytest.approx(0.25 * YTS, rel=1e-15)
    assert to_issm(Q_(1, "bar"), "Pa", field="f") == pytest.approx(1e5)
    assert to_issm(Q_(0.917, "g/cm^3"), "kg/m^3", field="f") == pytest.approx(917.0)
    v = to_issm(Q_(np.array([1.0, 2.0]), "km/yr"), "m/yr", field="f")
    np.testing.assert_allclose(v, [1000.0, 2000.0], rtol=1e-15)
    ints = to_si(Q_(np.arange(3), "m"), "m", field="f")
    assert ints.dtype == np.float64 and ints.tolist() == [0.0, 1.0, 2.0]
    assert to_issm("30 m/day", "m/yr", field="f") == pytest.approx(30 * 365, rel=1e-14)
    assert to_issm("12.5", "m/yr", field="f") == 12.5  # a bare number in a string is in ISSM's unit


def test_quantity_from_another_registry_uses_model_year():
    other = pint.UnitRegistry()  # pint's own year is 365.25 days
    assert to_issm(other.Quantity(2, "m/day"), "m/yr", field="f") == pytest.approx(730.0, rel=1e-14)
    assert to_si(other.Quantity(1, "yr"), "yr", field="f") == YTS  # 'year' read as the model's year


def test_incompatible_unit_names_field_and_dimensionality():
    with pytest.raises(UnitError) as err:
        to_si(Q_(3, "m"), "m/yr", field="md.initialization.vx")
    msg = str(err.value)
    assert msg.startswith("md.initialization.vx:")
    assert "meter" in msg and "[length] / [time]" in msg and "m/yr" in msg
    assert err.value.field == "md.initialization.vx" and err.value.given == "meter"
    with pytest.raises(UnitError, match="md.timestepping.time_step"):
        to_issm(Q_(1, "m/s"), "yr", field="md.timestepping.time_step")
    with pytest.raises(UnitError, match="md.materials.rheology_B"):
        to_si("5 kelvin", "Pa", field="md.materials.rheology_B")
    with pytest.raises(UnitError, match="md.constants.g"):
        to_si("3 furlongs_per_blink", "m/s^2", field="md.constants.g")
    assert isinstance(UnitError("x"), ValueError)


def test_non_numeric_values():
    with pytest.raises(ModelInputError, match="md.geometry.thickness"):
        to_si(True, "m", field="md.geometry.thickness")
    with pytest.raises(ModelInputError, match="md.geometry.thickness"):
        to_si([object()], "m", field="md.geometry.thickness")
    with pytest.raises(ModelInputError, match="md.geometry.thickness"):
        to_si(1 + 2j, "m", field="md.geometry.thickness")


def test_yts_override():
    assert to_si(1.0, "yr", field="f", yts=YTS_293) == YTS_293
    assert to_si(100.0, "m/yr", field="f", yts=YTS_293) == pytest.approx(100.0 / YTS_293, rel=1e-15)
    assert to_si(Q_(1, "m/yr"), "m/yr", field="f", yts=YTS_293) == pytest.approx(1 / YTS_293, rel=1e-15)
    assert to_issm(Q_(365.2422, "day"), "yr", field="f", yts=YTS_293) == pytest.approx(1.0, rel=1e-15)
    assert to_issm(Q_(30, "m/day"), "m/yr", field="f", yts=YTS_293) == pytest.approx(30 * 365.2422, rel=1e-14)
    assert to_issm(Q_(6, "month"), "yr", field="f", yts=YTS_293) == pytest.approx(0.5, rel=1e-15)
    # the shared registry is untouched, and the default yts gives the shared registry back
    assert Q_(1, "yr").to("s").magnitude == YTS
    assert registry_for(YTS) is ureg and registry_for(None) is ureg
    assert registry_for(YTS_293) is registry_for(YTS_293)
    assert as_quantity(2.0, "yr", yts=YTS_293).to("s").magnitude == 2 * YTS_293
    for bad in (0.0, -1.0, float("nan"), "abc"):
        with pytest.raises(ModelInputError, match="md.constants.yts"):
            to_si(1.0, "yr", field="f", yts=bad)


def test_as_quantity():
    q = as_quantity(5.0, "m/yr")
    assert q.units == ureg.parse_units("m/yr") and q.magnitude == 5.0
    q = as_quantity(Q_(2, "km/day"), "m/yr")
    assert q.units == ureg.parse_units("km/day")  # a quantity keeps its own unit
    with pytest.raises(UnitError, match="md.calving.calvingrate"):
        as_quantity(Q_(2, "Pa"), "m/yr", field="md.calving.calvingrate")


REQUIRED = ["Vx", "Vy", "Vel", "Thickness", "Surface", "Base", "Pressure", "MaskOceanLevelset",
            "MaskIceLevelset", "IceVolume", "IceVolumeAboveFloatation", "GroundedArea", "FloatingArea",
            "TotalSmb", "TotalFloatingBmb", "TotalGroundedBmb", "CalvingCalvingrate",
            "BasalforcingsFloatingiceMeltingRate", "StressbalanceConvergenceNumSteps", "DeviatoricStressxx"]

DIMS = {"Vx": "[length] / [time]", "Thickness": "[length]", "Pressure": "[mass] / [length] / [time] ** 2",
        "IceVolume": "[length] ** 3", "GroundedArea": "[length] ** 2", "TotalSmb": "[mass] / [time]",
        "StressbalanceConvergenceNumSteps": "dimensionless", "MaskIceLevelset": "[length]",
        "CalvingCalvingrate": "[length] / [time]", "time": "[time]"}


def test_cf_units_cover_outputs_and_parse_everywhere():
    vanilla = pint.UnitRegistry()  # pint's default registry, as pint-xarray uses without unit_registry=
    assert set(REQUIRED) <= set(CF_UNITS)
    for name, unit in CF_UNITS.items():
        ours = ureg.parse_units(unit)
        assert vanilla.parse_units(unit).dimensionality == ours.dimensionality, name
    for name, dim in DIMS.items():
        assert str(ureg.parse_units(CF_UNITS[name]).dimensionality) == dim, name


def test_cf_units_quantify_with_pint_xarray():
    pytest.importorskip("pint_xarray")
    names = ["Vel", "Thickness", "IceVolume", "TotalSmb", "StressbalanceConvergenceNumSteps"]
    ds = xr.Dataset({n: ("time", np.array([1.0, 2.0]), {"units": CF_UNITS[n]}) for n in names})
    q = ds.pint.quantify(unit_registry=ureg)
    assert q["Vel"].pint.to("m/s").data.magnitude[0] == pytest.approx(1 / YTS, rel=1e-15)
    assert q["TotalSmb"].pint.to("kg/s").data.magnitude[1] == pytest.approx(2e12 / YTS, rel=1e-15)
    assert q["IceVolume"].pint.units == ureg.parse_units("m^3")
    default = ds.pint.quantify()  # pint's application registry reads them too
    assert default["Vel"].pint.units.dimensionality == ureg.parse_units("m/s").dimensionality


def test_si_to_issm_factor():
    assert SI_TO_ISSM_FACTOR("Vx") == YTS
    assert SI_TO_ISSM_FACTOR("Vel", YTS_293) == YTS_293
    assert SI_TO_ISSM_FACTOR("TotalSmb") == pytest.approx(YTS / 1e12, rel=1e-15)
    assert SI_TO_ISSM_FACTOR("TotalFloatingBmb", YTS_293) == pytest.approx(YTS_293 / 1e12, rel=1e-15)
    assert SI_TO_ISSM_FACTOR("time") == pytest.approx(1 / YTS, rel=1e-15)
    for name in ("Thickness", "Pressure", "IceVolume", "GroundedArea", "MaskIceLevelset",
                 "StressbalanceConvergenceNumSteps", "StrainRateparallel"):
        assert SI_TO_ISSM_FACTOR(name) == 1.0, name
    # consistent with to_si for every output: 1 ISSM unit -> SI -> back to 1
    for name, unit in CF_UNITS.items():
        for yts in (None, YTS_293):
            assert SI_TO_ISSM_FACTOR(name, yts) * to_si(1.0, unit, field=name, yts=yts) == \
                pytest.approx(1.0, rel=1e-14), name
    with pytest.raises(UnitError, match="NotAnOutput"):
        SI_TO_ISSM_FACTOR("NotAnOutput")
