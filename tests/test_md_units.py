"""Pint quantities assigned to ``md`` fields are converted to ISSM's unit of the field
(:data:`issm_emulator.units.MD_UNITS`) or refused with the field and the expected dimension named; a unit
is never stripped, with or without pyISSM's consistency check, and ``md`` is left as it was."""

from __future__ import annotations

import numpy as np
import pytest

import issm_emulator
from issm_emulator.errors import ModelInputError
from issm_emulator.issm.adapter import read_model
from issm_emulator.issm.fields import numeric, quantities_converted
from issm_emulator.units import MD_TIME_SERIES, MD_UNITS, Q_, ureg

try:
    from tests.modelfactory import make_square_shelf_md
except ImportError:  # pragma: no cover
    from modelfactory import make_square_shelf_md


@pytest.fixture()
def md():
    return make_square_shelf_md(nx=4, ny=4)


def test_time_step_in_months_is_a_month(md):
    plain = read_model(md)
    md.timestepping.time_step = Q_(1, "month")
    state = read_model(md)
    assert state.timestepping.time_step == pytest.approx(plain.yts / 12.0)
    md.timestepping.time_step = Q_(1, "day")
    assert read_model(md).timestepping.time_step == pytest.approx(86400.0)


@pytest.mark.parametrize("check", [False, True])
def test_solve_honours_a_month_step(md, check):
    md.timestepping.time_step = Q_(1, "month")
    md.timestepping.final_time = Q_(2, "month")
    step, final = md.timestepping.time_step, md.timestepping.final_time
    issm_emulator.solve(md, "Transient", solver="fem", check_consistency=check)
    np.testing.assert_allclose(md.results.TransientSolution.time, [1 / 12, 2 / 12])
    # pyISSM's check saw plain numbers for its duration; md has its own quantities back
    assert md.timestepping.time_step is step and md.timestepping.final_time is final


@pytest.mark.parametrize("check", [False, True])
def test_wrong_dimension_is_refused_naming_field_and_dimension(md, check):
    q = md.timestepping.time_step = Q_(1, "kg")
    md.geometry.thickness = thickness = Q_(md.geometry.thickness, "m")
    results, private = dict(vars(md.results)), dict(vars(md.private))
    with pytest.raises(ModelInputError) as info:
        issm_emulator.solve(md, "Transient", solver="fem", check_consistency=check)
    msg = str(info.value)
    assert msg.startswith("md.timestepping.time_step:") and "[time]" in msg and "kilogram" in msg
    assert md.timestepping.time_step is q and md.geometry.thickness is thickness
    assert dict(vars(md.results)) == results and dict(vars(md.private)) == private


def test_thickness_in_km_is_converted(md):
    plain = read_model(md)
    md.geometry.thickness = Q_(md.geometry.thickness / 1000.0, "km")
    md.geometry.surface = Q_(md.geometry.surface, "m")
    state = read_model(md)
    np.testing.assert_allclose(state.geometry.thickness, plain.geometry.thickness, rtol=1e-12)
    md.geometry.base = Q_(np.asarray(md.geometry.base), "s")
    with pytest.raises(ModelInputError, match=r"^md\.geometry\.base: .*\[length\]"):
        read_model(md)


def test_rates_and_model_year(md):
    plain = read_model(md)
    md.initialization.vx = Q_(np.ones(16), "m/day")
    md.constants.yts = 365.2422 * 86400
    state = read_model(md)  # m/day -> m/yr with the model's year -> m/s: exactly 1/86400
    np.testing.assert_allclose(state.vx, np.full(16, 1 / 86400.0), rtol=1e-12)
    assert plain.yts != state.yts


def test_law_dependent_units(md):
    plain = read_model(md)
    md.materials.rheology_B = Q_(md.materials.rheology_B / 1e6, "MPa s^(1/3)")
    md.friction.coefficient = Q_(np.full(16, 20.0), "s^(1/2) m^(-1/2)")
    state = read_model(md)
    np.testing.assert_allclose(state.materials.rheology_B, plain.materials.rheology_B, rtol=1e-12)
    np.testing.assert_allclose(state.friction.fields["coefficient"], 20.0)
    md.friction.coefficient = Q_(np.full(16, 20.0), "Pa")
    with pytest.raises(ModelInputError, match=r"^md\.friction\.coefficient: .*\[time\] \*\* 0\.5"):
        read_model(md)
    md.friction.coefficient = Q_(np.full(16, 20.0), "s^(1/2) m^(-1/2)")
    md.friction.p = np.r_[2.0, np.ones(md.friction.p.size - 1)]  # varying exponent: unit not unique
    with pytest.raises(ModelInputError, match=r"^md\.friction\.coefficient: .*uniform"):
        read_model(md)


def test_dimensionless_fields_and_time_series(md):
    md.transient.isgroundingline = Q_(0, "m")
    with pytest.raises(ModelInputError, match=r"^md\.transient\.isgroundingline: .*pure number"):
        read_model(md)
    md.transient.isgroundingline = Q_(0, "dimensionless")
    read_model(md)
    series = np.vstack([np.zeros((16, 2)), [[0.0, 1.0]]])
    md.smb.mass_balance = Q_(series, "m/yr")
    with pytest.raises(ModelInputError, match=r"^md\.smb\.mass_balance: .*time series"):
        read_model(md)
    md.smb.mass_balance = Q_(np.full(16, 1.0), "mm/day")
    np.testing.assert_allclose(read_model(md).smb.values, 1e-3 / 86400.0, rtol=1e-12)


def test_quantity_outside_the_table_is_refused(md):
    with pytest.raises(ModelInputError, match=r"^md\.outputdefinition\.x: expected plain numbers"):
        numeric("outputdefinition.x", Q_(np.ones(3), "m"))
    md.geometry.bed = [Q_(-1000.0, "m")] * 16  # a list of quantities is not stripped either
    with pytest.raises(ModelInputError, match=r"^md\.geometry\.bed: .*list"):
        read_model(md)


def test_table_units_parse_and_cover_series():
    for path, unit in MD_UNITS.items():
        if "(1/" not in unit and "q/p" not in unit:
            ureg.parse_units(unit)
    assert MD_TIME_SERIES <= set(MD_UNITS)


def test_quantities_converted_restores_on_error(md):
    q = Q_(1, "month")
    md.timestepping.time_step = q
    with pytest.raises(RuntimeError), quantities_converted(md):
        assert md.timestepping.time_step == pytest.approx(1 / 12)
        raise RuntimeError
    assert md.timestepping.time_step is q
