"""Physical units: one shared :mod:`pint` registry and the conversions between ISSM's user units and SI.

Conventions
-----------
* The registry's **year** (``yr``, ``a``, ``year``, ``julian_year``) is ISSM's default
  ``yts = 365 * 24 * 3600 s = 31 536 000 s``, not pint's Julian year (365.25 days); units derived from it
  (``month = yr / 12``, ``century``, ...) follow. ``Gt`` (gigatonne, 1e12 kg) is defined too.
* A model with another ``md.constants.yts`` (ISSM test 293 uses 365.2422 days) passes ``yts=``; every
  year-based unit is then read with that year (a separate, cached registry is used for it).
* The registry also reads UDUNITS-style exponents (``'m yr-1'``, ``'m3'``) besides pint's own
  (``'m yr^-1'``, ``'m**3'``).
* Public functions that take a physical quantity accept a plain number (or array) in ISSM's user unit,
  a :class:`pint.Quantity` of any compatible unit (from this or any other pint registry; a foreign
  quantity is re-read by its unit name, so its ``year`` is the model's year), or a string such as
  ``'30 m/day'``. An incompatible unit raises :class:`issm_emulator.errors.UnitError` naming the field.

:data:`CF_UNITS` is the single source of truth for the units of ISSM's outputs (results and xarray
export); :func:`SI_TO_ISSM_FACTOR` gives the factor from the solver's SI value to that unit.
:data:`MD_UNITS` is its counterpart for the inputs: ISSM's unit of every ``md`` field that issm-emulator
reads, used to convert a pint quantity assigned to a field (``md.timestepping.time_step = Q_(1, 'month')``)
or to refuse it with the field and the expected dimension named.
"""

from __future__ import annotations

import logging
import math
import re
from functools import lru_cache
from numbers import Number
from typing import Any

import numpy as np
import pint

from issm_emulator.errors import ModelInputError, UnitError
from issm_emulator.state import YTS_DEFAULT

__all__ = [
    "CF_UNITS",
    "CF_UNIT_PATTERNS",
    "MD_TIME_SERIES",
    "MD_UNITS",
    "Q_",
    "SI_TO_ISSM_FACTOR",
    "YTS_DEFAULT",
    "as_quantity",
    "registry_for",
    "to_issm",
    "to_si",
    "ureg",
]

# A unit name (letters) directly followed by an integer exponent: 'm3', 'yr-1', 's+2'. The look-behind
# keeps the exponent of a number in scientific notation ('1e12') untouched.
_UDUNITS_EXPONENT = re.compile(r"(?<=[A-Za-z_])(?<![0-9][eE])([+-]?[0-9]+)(?![0-9.])")


def _udunits_exponents(text: str) -> str:
    """Rewrite UDUNITS exponents (``'m yr-1'``) in pint syntax (``'m yr**-1'``)."""
    return _UDUNITS_EXPONENT.sub(r"**\1", text)


def _make_registry(yts: float) -> pint.UnitRegistry:
    reg = pint.UnitRegistry(preprocessors=[_udunits_exponents], force_ndarray_like=True)  # pint-xarray needs it
    pint_logger = logging.getLogger("pint")
    level = pint_logger.level
    pint_logger.setLevel(logging.ERROR)  # redefining 'year' on purpose; do not log a warning for it
    try:
        reg.define(f"year = {float(yts)!r} * second = a = yr = julian_year")
        reg.define("gigatonne = 1e12 * kilogram = Gt")
    finally:
        pint_logger.setLevel(level)
    return reg


#: The shared registry (year = ISSM's default yts). Use it for every quantity in issm-emulator, e.g.
#: ``ds.pint.quantify(unit_registry=ureg)`` with pint-xarray.
ureg: pint.UnitRegistry = _make_registry(YTS_DEFAULT)
#: Shorthand for ``ureg.Quantity``.
Q_ = ureg.Quantity


def _check_yts(yts: Any) -> float:
    try:
        value = float(yts)
    except (TypeError, ValueError):
        raise ModelInputError("md.constants.yts", "a positive number of seconds per year",
                              repr(yts)) from None
    if not math.isfinite(value) or value <= 0.0:
        raise ModelInputError("md.constants.yts", "a positive number of seconds per year", repr(yts))
    return value


@lru_cache(maxsize=16)
def _registry_cached(yts: float) -> pint.UnitRegistry:
    return _make_registry(yts)


def registry_for(yts: float | None = None) -> pint.UnitRegistry:
    """The registry whose year is ``yts`` seconds (:data:`ureg` for ``None`` or ISSM's default)."""
    if yts is None:
        return ureg
    value = _check_yts(yts)
    if value == YTS_DEFAULT:
        return ureg
    return _registry_cached(value)


def _numeric(value: Any, field: str) -> float | np.ndarray:
    """A plain number or array as float / float64 array, or a ModelInputError naming ``field``."""
    if isinstance(value, (bool, np.bool_)):
        raise ModelInputError(field, "a number or a pint Quantity", f"{value!r} (a boolean)")
    if isinstance(value, Number) and not isinstance(value, complex):
        return float(value)
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything numpy cannot read is bad input
        raise ModelInputError(field, "a number or a pint Quantity", type(value).__name__) from None
    if arr.dtype.kind not in "iuf":
        raise ModelInputError(field, "a number, an array of numbers or a pint Quantity",
                              f"{type(value).__name__} of dtype {arr.dtype}")
    if arr.ndim == 0:
        return float(arr)
    return arr.astype(np.float64)


def _parse_unit(reg: pint.UnitRegistry, unit: str, field: str) -> pint.Unit:
    try:
        return reg.parse_units(unit)
    except (pint.errors.PintError, AttributeError, TypeError, SyntaxError, ValueError) as exc:
        raise UnitError(f"{field}: unit {unit!r} is not understood ({exc})") from None


def _unit_error(field: str, given: Any, expected: pint.Unit, unit_issm: str) -> UnitError:
    err = UnitError(
        f"{field}: expected a quantity of dimensionality {expected.dimensionality} "
        f"(ISSM unit '{unit_issm}'), got unit '{given}' of dimensionality {given.dimensionality}"
    )
    err.field = field  # type: ignore[attr-defined]
    err.given = str(given)  # type: ignore[attr-defined]
    err.expected = str(expected.dimensionality)  # type: ignore[attr-defined]
    return err


def _quantity(value: Any, unit_issm: str, field: str, yts: float | None) -> pint.Quantity:
    """``value`` as a quantity of ``registry_for(yts)``, checked against ``unit_issm``'s dimensionality."""
    reg = registry_for(yts)
    expected = _parse_unit(reg, unit_issm, f"{field} (ISSM unit)")
    if isinstance(value, str):
        try:
            parsed = reg.parse_expression(value)
        except (pint.errors.PintError, AttributeError, TypeError, SyntaxError, ValueError) as exc:
            raise UnitError(f"{field}: cannot read {value!r} as a quantity in '{unit_issm}' ({exc})") from None
        if isinstance(parsed, pint.Quantity):  # a bare number ('12.5') is in ISSM's unit, as plain numbers
            value = parsed.magnitude if parsed.unitless else parsed
        else:
            value = parsed
    if isinstance(value, pint.Quantity):
        if getattr(value, "_REGISTRY", None) is reg:
            q = value
        else:  # another registry (or another yts): re-read the unit by name in ours
            units = _parse_unit(reg, str(value.units), field)
            q = reg.Quantity(value.magnitude, units)
        mag = q.magnitude
        if not (isinstance(mag, np.ndarray) and mag.dtype == np.float64):  # ints, lists, float32 -> float64
            q = reg.Quantity(_numeric(mag, field), q.units)
        if q.dimensionality != expected.dimensionality:
            raise _unit_error(field, q.units, expected, unit_issm)
        return q
    return reg.Quantity(_numeric(value, field), expected)


def as_quantity(value: Any, unit: str, *, field: str = "value", yts: float | None = None) -> pint.Quantity:
    """``value`` as a pint Quantity: plain numbers get ``unit``; quantities keep their own unit.

    Raises :class:`~issm_emulator.errors.UnitError` when a quantity's unit is not compatible with ``unit``.
    """
    return _quantity(value, unit, field, yts)


def _out(mag: Any) -> float | np.ndarray:
    if isinstance(mag, np.ndarray):
        return float(mag) if mag.ndim == 0 else mag
    return float(mag)


def to_si(value: Any, unit_issm: str, *, field: str, yts: float | None = None) -> float | np.ndarray:
    """Convert a user value to SI base units (m, s, kg, Pa, K).

    Parameters
    ----------
    value
        A plain number/array, taken in ``unit_issm`` (ISSM's user convention), a pint Quantity of any
        compatible unit, or a string such as ``'30 m/day'``.
    unit_issm
        ISSM's user unit of the field, e.g. ``'m/yr'``, ``'yr'``, ``'m'``, ``'Pa'``, ``'kg/m^3'``.
    field
        The md field (``'md.timestepping.time_step'``) named in errors.
    yts
        Seconds per year of the model (``md.constants.yts``); ``None`` is ISSM's default.

    Returns
    -------
    float or numpy.ndarray
        The magnitude in SI, e.g. ``100 m/yr -> 100 / yts m/s``.
    """
    return _out(_quantity(value, unit_issm, field, yts).to_base_units().magnitude)


def to_issm(value: Any, unit_issm: str, *, field: str, yts: float | None = None) -> float | np.ndarray:
    """Like :func:`to_si` but returns the number in ISSM's user unit ``unit_issm`` (what goes into ``md``).

    Plain numbers are already in ``unit_issm`` and are returned as float / float64 array.
    """
    q = _quantity(value, unit_issm, field, yts)
    return _out(q.to(_parse_unit(q._REGISTRY, unit_issm, field)).magnitude)


_RATE = "m yr^-1"
_MASS_FLUX = "Gt yr^-1"

#: Output families that ISSM numbers, looked up by pattern in :data:`CF_UNITS`: ``MassFlux<N>`` are the flux
#: gates of test 101 (``massfluxatgate`` output definitions), reported in kg/s, which ISSM does not convert.
CF_UNIT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"MassFlux[0-9]+"), "kg s^-1"),
)


class _OutputUnits(dict):
    """A dict of output name -> unit that also answers for the names of :data:`CF_UNIT_PATTERNS`
    (``in``, ``[]`` and ``get``); iterating it lists the explicit names only."""

    def _pattern_unit(self, name: object) -> str | None:
        if isinstance(name, str):
            for pattern, unit in CF_UNIT_PATTERNS:
                if pattern.fullmatch(name):
                    return unit
        return None

    def __missing__(self, name: str) -> str:
        unit = self._pattern_unit(name)
        if unit is None:
            raise KeyError(name)
        return unit

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or self._pattern_unit(name) is not None

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


#: Units of ISSM's outputs as ISSM reports them to the user (``md.results``), written so that both
#: UDUNITS (CF) and pint (any registry, hence pint-xarray) read them. Level sets are distance-like (m).
#: Besides the names listed, ``MassFlux<N>`` (any N) is known through :data:`CF_UNIT_PATTERNS`.
CF_UNITS: dict[str, str] = _OutputUnits({
    # coordinates and bookkeeping of a results step
    "x": "m",
    "y": "m",
    "time": "yr",
    "step": "1",
    # velocities and rates (m/yr, multiplied by yts on output)
    "Vx": _RATE,
    "Vy": _RATE,
    "Vz": _RATE,
    "Vel": _RATE,
    "CalvingCalvingrate": _RATE,
    "CalvingMeltingrate": _RATE,
    "Calvingratex": _RATE,
    "Calvingratey": _RATE,
    "BasalforcingsFloatingiceMeltingRate": _RATE,
    "BasalforcingsGroundediceMeltingRate": _RATE,
    "SmbMassBalance": _RATE,
    # geometry and masks
    "Thickness": "m",
    "Surface": "m",
    "Base": "m",
    "Bed": "m",
    "MaskOceanLevelset": "m",
    "MaskIceLevelset": "m",
    # stresses
    "Pressure": "Pa",
    "EffectivePressure": "Pa",
    "SigmaVM": "Pa",
    "DeviatoricStressxx": "Pa",
    "DeviatoricStressxy": "Pa",
    "DeviatoricStressyy": "Pa",
    "DeviatoricStresseffective": "Pa",
    "StressTensorxx": "Pa",
    "StressTensorxy": "Pa",
    "StressTensoryy": "Pa",
    # strain rates stay in 1/s (no yts conversion in ISSM)
    "StrainRateparallel": "s^-1",
    "StrainRateperpendicular": "s^-1",
    # integrated scalars
    "IceVolume": "m^3",
    "IceVolumeScaled": "m^3",
    "IceVolumeAboveFloatation": "m^3",
    "IceVolumeAboveFloatationScaled": "m^3",
    "GroundedArea": "m^2",
    "GroundedAreaScaled": "m^2",
    "FloatingArea": "m^2",
    "FloatingAreaScaled": "m^2",
    "TotalSmb": _MASS_FLUX,
    "TotalSmbScaled": _MASS_FLUX,
    "TotalFloatingBmb": _MASS_FLUX,
    "TotalFloatingBmbScaled": _MASS_FLUX,
    "TotalGroundedBmb": _MASS_FLUX,
    "TotalGroundedBmbScaled": _MASS_FLUX,
    # moving-front fluxes: pyISSM converts IcefrontMassFluxLevelset to Gt/yr but leaves
    # TotalCalvingFluxLevelset in ISSM's raw kg/s
    "IcefrontMassFluxLevelset": _MASS_FLUX,
    "TotalCalvingFluxLevelset": "kg s^-1",
    # solver diagnostics
    "StressbalanceConvergenceNumSteps": "1",
    # the emulators' error indicator (issm_emulator.solvers.emulator.indicator)
    "EmulatorResidual": "1",
    "EmulatorVelocityError": _RATE,
    "EmulatorVelocityCorrection": _RATE,
})


def SI_TO_ISSM_FACTOR(name: str, yts: float | None = None) -> float:
    """Factor ``f`` such that ``value_issm = f * value_si`` for ISSM output ``name`` (see :data:`CF_UNITS`).

    m/s -> m/yr: ``f = yts``; kg/s -> Gt/yr: ``f = yts / 1e12``; yr: ``f = 1 / yts``; m, Pa, m^3 and the
    flux gates ``MassFlux<N>`` (kg/s): 1.

    Raises
    ------
    UnitError
        ``name`` has no entry in :data:`CF_UNITS`.
    """
    try:
        unit = CF_UNITS[name]
    except KeyError:
        raise UnitError(f"no ISSM unit is known for output {name!r}; known: {', '.join(sorted(CF_UNITS))}") \
            from None
    reg = registry_for(yts)
    target = reg.parse_units(unit)
    si = reg.Quantity(1.0, target).to_base_units().units
    return float(reg.Quantity(1.0, si).to(target).magnitude)


_MD_RATE = "m yr^-1"
#: ISSM's user unit of every ``md`` field issm-emulator reads (path without ``md.``), the counterpart of
#: :data:`CF_UNITS` for inputs. ``"1"`` marks numbers without dimension (flags, counts, exponents, vertex
#: numbers, tolerances). A pint quantity assigned to one of these fields is converted to this unit by
#: :func:`issm_emulator.issm.fields.get`; a quantity of another dimension, or one assigned to a field not
#: listed here, is refused. Per-vertex time series (``numberofvertices + 1`` rows, times in years in the
#: last row) and the 2-row global series are given as plain numbers in this unit (one pint unit cannot
#: describe values and times). Three units depend on the model's exponents, written with them:
#: ``materials.rheology_B`` (Pa s^(1/n)), the Budd/Coulomb ``friction.coefficient``
#: (Pa^((1-q/p)/2) (s/m)^(1/(2p)), i.e. s^(1/2) m^(-1/2) for p = q = 1) and Weertman ``friction.C``
#: (Pa^(1/2) (s/m)^(1/(2m))); a quantity is accepted for them when those exponents are uniform.
MD_UNITS: dict[str, str] = {
    "constants.yts": "s",
    "constants.g": "m s^-2",
    **{f"flowequation.{n}": "1" for n in ("isSIA", "isSSA", "isL1L2", "isMOLHO", "isHO", "isFS")},
    "mesh.x": "m",
    "mesh.y": "m",
    "mesh.elements": "1",
    "mesh.segments": "1",
    "mesh.numberofvertices": "1",
    "mesh.numberofelements": "1",
    "mesh.vertexonboundary": "1",
    "mesh.scale_factor": "1",
    "geometry.thickness": "m",
    "geometry.surface": "m",
    "geometry.base": "m",
    "geometry.bed": "m",
    "mask.ocean_levelset": "m",
    "mask.ice_levelset": "m",
    "initialization.vx": _MD_RATE,
    "initialization.vy": _MD_RATE,
    "initialization.sealevel": "m",
    "solidearth.initialsealevel": "m",
    "materials.rho_ice": "kg m^-3",
    "materials.rho_water": "kg m^-3",
    "materials.rho_freshwater": "kg m^-3",
    "materials.rheology_B": "Pa s^(1/n)",
    "materials.rheology_n": "1",
    "friction.coefficient": "Pa^((1-q/p)/2) (s/m)^(1/(2p))",
    "friction.p": "1",
    "friction.q": "1",
    "friction.C": "Pa^(1/2) (s/m)^(1/(2m))",
    "friction.m": "1",
    "friction.coefficientcoulomb": "1",
    "friction.coupling": "1",
    "friction.effective_pressure": "Pa",
    "friction.effective_pressure_limit": "1",
    "stressbalance.spcvx": _MD_RATE,
    "stressbalance.spcvy": _MD_RATE,
    "stressbalance.restol": "1",
    "stressbalance.reltol": "1",
    "stressbalance.abstol": _MD_RATE,
    "stressbalance.maxiter": "1",
    "stressbalance.isnewton": "1",
    "timestepping.start_time": "yr",
    "timestepping.final_time": "yr",
    "timestepping.time_step": "yr",
    "timestepping.interp_forcing": "1",
    **{f"transient.{n}": "1" for n in (
        "issmb", "ismasstransport", "isstressbalance", "isgroundingline", "ismovingfront", "isage",
        "ismmemasstransport", "isoceantransport", "isesa", "isdamageevolution", "ishydrology", "isdebris",
        "issampling", "isslc", "isoceancoupling")},
    "smb.mass_balance": _MD_RATE,
    "basalforcings.groundedice_melting_rate": _MD_RATE,
    "basalforcings.floatingice_melting_rate": _MD_RATE,
    "basalforcings.perturbation_melting_rate": _MD_RATE,
    "basalforcings.deepwater_melting_rate": _MD_RATE,
    "basalforcings.upperwater_melting_rate": _MD_RATE,
    "basalforcings.deepwater_elevation": "m",
    "basalforcings.upperwater_elevation": "m",
    "basalforcings.meltrate_factor": "yr^-1",
    "basalforcings.threshold_thickness": "m",
    "basalforcings.upperdepth_melt": "m",
    "masstransport.spcthickness": "m",
    "masstransport.min_thickness": "m",
    "masstransport.stabilization": "1",
    "levelset.stabilization": "1",
    "levelset.reinit_frequency": "1",
    "levelset.kill_icebergs": "1",
    "levelset.migration_max": _MD_RATE,
    "levelset.spclevelset": "m",
    "calving.calvingrate": _MD_RATE,
    "calving.stress_threshold_groundedice": "Pa",
    "calving.stress_threshold_floatingice": "Pa",
    "calving.min_thickness": "m",
    "calving.coeff": "m s",
    "frontalforcings.meltingrate": _MD_RATE,
    "settings.output_frequency": "1",
}

#: The fields of :data:`MD_UNITS` that ISSM also accepts as a time series (last row: times in years).
MD_TIME_SERIES: frozenset[str] = frozenset({
    "smb.mass_balance", "basalforcings.groundedice_melting_rate", "basalforcings.floatingice_melting_rate",
    "basalforcings.perturbation_melting_rate", "basalforcings.deepwater_melting_rate",
    "basalforcings.upperwater_melting_rate", "basalforcings.deepwater_elevation",
    "basalforcings.upperwater_elevation", "masstransport.spcthickness", "levelset.spclevelset",
    "calving.calvingrate", "frontalforcings.meltingrate",
})
