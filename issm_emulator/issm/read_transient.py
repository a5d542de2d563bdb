"""Read the ``md`` sections only the transient solution needs, in SI units.

``md.timestepping`` (years -> s), ``md.transient`` switches, SMB, basal forcings (law from the class, see
:data:`BASALFORCINGS_CLASSES`), mass transport, grounding line, level set, calving (:data:`CALVING_CLASSES`)
and frontal forcings. Rates in m/yr are divided by ``md.constants.yts``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from issm_emulator.state import (
    BasalForcings,
    Calving,
    Forcing,
    GroundinglineSettings,
    LevelsetSettings,
    MasstransportSettings,
    Timestepping,
    TransientFlags,
)

from .fields import Ctx, class_key, err, get, integer, read_table, scalar, string
from .timeseries import forcing, global_series

__all__ = [
    "BASALFORCINGS_CLASSES",
    "CALVING_CLASSES",
    "FRICTION_INTERPOLATIONS",
    "FRONTALFORCINGS_CLASSES",
    "MELT_INTERPOLATIONS",
    "MIGRATIONS",
    "SMB_CLASSES",
    "TIMESTEPPING_CLASSES",
    "read_basalforcings",
    "read_calving",
    "read_frontal_meltingrate",
    "read_groundingline",
    "read_levelset",
    "read_masstransport",
    "read_smb",
    "read_timestepping",
    "read_transient_flags",
]

#: class key (pyISSM ``section.class`` or ISSM class name) -> law
BASALFORCINGS_CLASSES = {
    "basalforcings.default": "default", "basalforcings": "default",
    "basalforcings.linear": "linear", "linearbasalforcings": "linear",
    "basalforcings.mismip": "mismip", "mismipbasalforcings": "mismip",
}
CALVING_CLASSES = {
    "calving.default": "default", "calving": "default",
    "calving.vonmises": "vonmises", "calvingvonmises": "vonmises",
    "calving.levermann": "levermann", "calvinglevermann": "levermann",
    "calving.minthickness": "minthickness", "calvingminthickness": "minthickness",
}
SMB_CLASSES = {"smb.default": "default", "SMBforcing": "default", "smbforcing": "default"}
FRONTALFORCINGS_CLASSES = {"frontalforcings.default": "default", "frontalforcings": "default"}
TIMESTEPPING_CLASSES = {"timestepping.default": "default", "timestepping": "default"}

MIGRATIONS = ("None", "AggressiveMigration", "SoftMigration", "SubelementMigration")
FRICTION_INTERPOLATIONS = ("SubelementFriction1", "SubelementFriction2", "NoFrictionOnPartiallyFloating")
MELT_INTERPOLATIONS = ("NoMeltOnPartiallyFloating", "SubelementMelt1", "SubelementMelt2",
                       "IntrusionMelt", "FullMeltOnPartiallyFloating")
#: transient switches for physics issm-emulator does not model: they must be 0 (or absent)
_UNSUPPORTED_TRANSIENT_FLAGS = ("isage", "ismmemasstransport", "isoceantransport", "isesa",
                                "isdamageevolution", "ishydrology", "isdebris", "issampling", "isslc",
                                "isoceancoupling")


def read_timestepping(md: Any, yts: float) -> Timestepping:
    class_key(get(md, "timestepping"), "timestepping", TIMESTEPPING_CLASSES)
    t = "timestepping"
    start = scalar(f"{t}.start_time", get(md, f"{t}.start_time", 0.0))
    final = scalar(f"{t}.final_time", get(md, f"{t}.final_time"))
    dt = scalar(f"{t}.time_step", get(md, f"{t}.time_step"))
    if dt <= 0:
        raise err(f"{t}.time_step", "a positive time step (years)", f"{dt:g}")
    if final < start:
        raise err(f"{t}.final_time", f"a final time >= start_time = {start:g} (years)", f"{final:g}")
    interp = integer(f"{t}.interp_forcing", get(md, f"{t}.interp_forcing", 1), choices=(0, 1))
    return Timestepping(start_time=start * yts, final_time=final * yts, time_step=dt * yts,
                        interp_forcing=interp)


def read_transient_flags(md: Any) -> TransientFlags:
    names = ("issmb", "ismasstransport", "isstressbalance", "isgroundingline", "ismovingfront")
    defaults = (1, 1, 1, 0, 0)
    flags = {n: integer(f"transient.{n}", get(md, f"transient.{n}", d), choices=(0, 1))
             for n, d in zip(names, defaults)}
    for n in _UNSUPPORTED_TRANSIENT_FLAGS:
        value = get(md, f"transient.{n}", 0)
        if integer(f"transient.{n}", value) != 0:
            raise err(f"transient.{n}", "0 (this physics is not modelled by issm-emulator)", str(value))
    return TransientFlags(**flags)


def read_smb(md: Any, ctx: Ctx) -> Forcing:
    class_key(get(md, "smb"), "smb", SMB_CLASSES)
    return forcing("smb.mass_balance", get(md, "smb.mass_balance", None), ctx, scale=1.0 / ctx.yts)


def read_basalforcings(md: Any, ctx: Ctx) -> BasalForcings:
    kind = class_key(get(md, "basalforcings"), "basalforcings", BASALFORCINGS_CLASSES)
    b, per_yr = "basalforcings", 1.0 / ctx.yts

    def rate(name: str, default: float | None = None) -> Forcing:
        return forcing(f"{b}.{name}", get(md, f"{b}.{name}", None), ctx, scale=per_yr, default=default)

    params: dict[str, Any] = {}
    floating = None
    if kind in ("default", "linear"):
        params["perturbation_melting_rate"] = rate("perturbation_melting_rate", default=0.0)  # unset = 0
    if kind == "default":
        floating = rate("floatingice_melting_rate")
    elif kind == "linear":  # global parameters, each a number or a single time series
        spec = {"deepwater_melting_rate": {"scale": per_yr, "ge": 0.0},
                "upperwater_melting_rate": {"scale": per_yr, "ge": 0.0},
                "deepwater_elevation": {}, "upperwater_elevation": {"le": 0.0}}
        params.update({n: global_series(f"{b}.{n}", get(md, f"{b}.{n}"), ctx, **kw)
                       for n, kw in spec.items()})
        deep, up = params["deepwater_elevation"], params["upperwater_elevation"]
        if not isinstance(deep, Forcing) and not isinstance(up, Forcing) and deep >= up:
            raise err(f"{b}.deepwater_elevation", f"a value below upperwater_elevation = {up:g} m",
                      f"{deep:g}")
    else:  # mismip
        spec = {"meltrate_factor": {"scale": per_yr, "ge": 0.0}, "threshold_thickness": {"ge": 0.0},
                "upperdepth_melt": {"le": 0.0}}
        params.update({n: scalar(f"{b}.{n}", get(md, f"{b}.{n}"), **kw) for n, kw in spec.items()})
    return BasalForcings(kind=kind, groundedice_melting_rate=rate("groundedice_melting_rate"),
                         floatingice_melting_rate=floating, params=params)


def read_masstransport(md: Any, ctx: Ctx) -> MasstransportSettings:
    m = "masstransport"
    return MasstransportSettings(
        spcthickness=forcing(f"{m}.spcthickness", get(md, f"{m}.spcthickness", None), ctx, allow_nan=True,
                             default=np.nan, broadcast=False),
        min_thickness=scalar(f"{m}.min_thickness", get(md, f"{m}.min_thickness", 1.0), gt=0),
        stabilization=integer(f"{m}.stabilization", get(md, f"{m}.stabilization", 1),
                              choices=(0, 1, 2, 3, 4, 5)),
        hydrostatic_adjustment=string(f"{m}.hydrostatic_adjustment",
                                      get(md, f"{m}.hydrostatic_adjustment", "Absolute"),
                                      ("Absolute", "Incremental")),
    )


def read_groundingline(md: Any) -> GroundinglineSettings:
    g = "groundingline"
    return GroundinglineSettings(
        migration=string(f"{g}.migration", get(md, f"{g}.migration", "SubelementMigration"), MIGRATIONS),
        friction_interpolation=string(f"{g}.friction_interpolation",
                                      get(md, f"{g}.friction_interpolation", "SubelementFriction1"),
                                      FRICTION_INTERPOLATIONS),
        melt_interpolation=string(f"{g}.melt_interpolation",
                                  get(md, f"{g}.melt_interpolation", "NoMeltOnPartiallyFloating"),
                                  MELT_INTERPOLATIONS),
    )


def read_levelset(md: Any, ctx: Ctx) -> LevelsetSettings:
    s = "levelset"
    return LevelsetSettings(
        stabilization=integer(f"{s}.stabilization", get(md, f"{s}.stabilization", 1),
                              choices=(0, 1, 2, 5, 6)),
        reinit_frequency=integer(f"{s}.reinit_frequency", get(md, f"{s}.reinit_frequency", 10), ge=1),
        kill_icebergs=integer(f"{s}.kill_icebergs", get(md, f"{s}.kill_icebergs", 1), choices=(0, 1)),
        migration_max=scalar(f"{s}.migration_max", get(md, f"{s}.migration_max", 1e12), gt=0,
                             scale=1.0 / ctx.yts),
        spclevelset=forcing(f"{s}.spclevelset", get(md, f"{s}.spclevelset", None), ctx, allow_nan=True,
                            default=np.nan, broadcast=False),
    )


def read_calving(md: Any, ctx: Ctx) -> Calving:
    law = class_key(get(md, "calving"), "calving", CALVING_CLASSES)
    c = "calving"
    if law == "default":
        params = {"calvingrate": forcing(f"{c}.calvingrate", get(md, f"{c}.calvingrate", None), ctx,
                                         scale=1.0 / ctx.yts, ge=0)}
    elif law == "vonmises":
        params = read_table(md, c, {
            "stress_threshold_groundedice": {"kind": "vertex", "broadcast": True, "gt": 0.0},
            "stress_threshold_floatingice": {"kind": "vertex", "broadcast": True, "gt": 0.0}}, ctx)
        params["min_thickness"] = scalar(f"{c}.min_thickness", get(md, f"{c}.min_thickness", 0.0), ge=0)
    elif law == "levermann":
        params = read_table(md, c, {"coeff": {"kind": "vertex", "broadcast": True, "gt": 0.0}}, ctx)
    else:  # minthickness
        params = {"min_thickness": scalar(f"{c}.min_thickness", get(md, f"{c}.min_thickness"), gt=0)}
    return Calving(law=law, params=params)


def read_frontal_meltingrate(md: Any, ctx: Ctx) -> Forcing:
    class_key(get(md, "frontalforcings"), "frontalforcings", FRONTALFORCINGS_CLASSES)
    return forcing("frontalforcings.meltingrate", get(md, "frontalforcings.meltingrate", None), ctx,
                   scale=1.0 / ctx.yts, ge=0)
