"""Read the ``md`` sections every solution needs (the stress-balance inputs), in SI units.

``md.constants``, ``md.flowequation`` (SSA only), ``md.geometry``, ``md.mask``, the initial velocity
(m/yr -> m/s), ``md.materials``, ``md.friction`` (law from its class, see :data:`FRICTION_CLASSES`),
``md.stressbalance`` settings and the sea level.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from issm_emulator.state import YTS_DEFAULT, Friction, Geometry, Masks, Materials, StressbalanceSettings

from .fields import Ctx, class_key, err, get, integer, is_unset, numeric, read_table, scalar, sized

__all__ = [
    "FRICTION_CLASSES",
    "check_flowequation",
    "read_constants",
    "read_friction",
    "read_geometry",
    "read_masks",
    "read_materials",
    "read_sealevel",
    "read_stressbalance",
    "read_velocity",
]

#: class key (pyISSM ``section.class`` or ISSM class name) -> law
FRICTION_CLASSES = {
    "friction.default": "budd", "friction": "budd",
    "friction.weertman": "weertman", "frictionweertman": "weertman",
    "friction.coulomb": "coulomb", "frictioncoulomb": "coulomb",
}


_OTHER_FLOW_EQUATIONS = ("isSIA", "isL1L2", "isMOLHO", "isHO", "isFS")


def check_flowequation(md: Any) -> None:
    """The solvers are 2-D SSA (shelfy-stream) models: refuse a model set up for another flow equation
    rather than silently solving it as SSA. Unset flags (pyISSM's defaults) are accepted."""
    for name in _OTHER_FLOW_EQUATIONS:
        value = get(md, f"flowequation.{name}", 0)
        try:
            on = bool(np.any(np.asarray(value, dtype=float) != 0))
        except (TypeError, ValueError):
            raise err(f"flowequation.{name}", "0 or 1", repr(value)) from None
        if on:
            raise err(f"flowequation.{name}", "0: issm-emulator solves the SSA equations only "
                      "(pyissm.model.param.set_flow_equation(md, SSA='all'))", str(value))


def read_constants(md: Any) -> tuple[float, float]:
    yts = scalar("constants.yts", get(md, "constants.yts", YTS_DEFAULT), gt=0)
    g = scalar("constants.g", get(md, "constants.g", 9.81), gt=0)
    return yts, g


_GEOMETRY_TABLE = {
    "thickness": {"kind": "vertex", "ge": 0.0},
    "surface": {"kind": "vertex"},
    "base": {"kind": "vertex"},
    "bed": {"kind": "vertex", "allow_nan": True, "default": np.nan},
}


def read_geometry(md: Any, ctx: Ctx) -> Geometry:
    f = read_table(md, "geometry", _GEOMETRY_TABLE, ctx)
    mismatch = np.abs(f["thickness"] - (f["surface"] - f["base"]))
    tol = 1e-6 * max(1.0, float(np.max(np.abs(f["thickness"]))))
    if (mismatch > tol).any():
        k = int(np.argmax(mismatch))
        raise err("geometry.thickness", "thickness == surface - base at every vertex",
                  f"a difference of {mismatch[k]:g} m at vertex {k + 1}")
    return Geometry(**f)


_MASK_TABLE = {"ocean_levelset": {"kind": "vertex"}, "ice_levelset": {"kind": "vertex"}}


def read_masks(md: Any, ctx: Ctx) -> Masks:
    f = read_table(md, "mask", _MASK_TABLE, ctx)
    if not (f["ice_levelset"] < 0).any():
        raise err("mask.ice_levelset", "ice (a negative value) at one vertex at least", "no ice anywhere")
    return Masks(**f)


def read_velocity(md: Any, ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    per_yr = 1.0 / ctx.yts
    table = {"vx": {"kind": "vertex", "scale": per_yr}, "vy": {"kind": "vertex", "scale": per_yr}}
    f = read_table(md, "initialization", table, ctx)
    return f["vx"], f["vy"]


def read_materials(md: Any, ctx: Ctx) -> Materials:
    rho = {name: scalar(f"materials.{name}", get(md, f"materials.{name}"), gt=0)
           for name in ("rho_ice", "rho_water")}
    rho["rho_freshwater"] = scalar("materials.rho_freshwater", get(md, "materials.rho_freshwater", 1000.0),
                                   gt=0)
    f = read_table(md, "materials", {
        "rheology_B": {"kind": "vertex", "broadcast": True, "gt": 0.0},
        "rheology_n": {"kind": "element", "broadcast": True, "gt": 0.0},
    }, ctx)
    return Materials(**rho, **f)


_FRICTION_TABLES = {
    "budd": {"coefficient": {"kind": "vertex", "broadcast": True},
             "p": {"kind": "element", "broadcast": True}, "q": {"kind": "element", "broadcast": True}},
    "weertman": {"C": {"kind": "vertex", "broadcast": True, "ge": 0.0},
                 "m": {"kind": "element", "broadcast": True, "gt": 0.0}},
    "coulomb": {"coefficient": {"kind": "vertex", "broadcast": True},
                "coefficientcoulomb": {"kind": "vertex", "broadcast": True, "ge": 0.0},
                "p": {"kind": "element", "broadcast": True}, "q": {"kind": "element", "broadcast": True}},
}


def read_friction(md: Any, ctx: Ctx) -> Friction:
    law = class_key(get(md, "friction"), "friction", FRICTION_CLASSES)
    fields = read_table(md, "friction", _FRICTION_TABLES[law], ctx)
    coupling = 0
    if law != "weertman":
        coupling = integer("friction.coupling", get(md, "friction.coupling", 0), choices=(0, 1, 2, 3, 4))
        if coupling in (3, 4):
            pressure = get(md, "friction.effective_pressure", None)
            fields["effective_pressure"] = sized("friction.effective_pressure", pressure, ctx, "vertex")
    limit = scalar("friction.effective_pressure_limit", get(md, "friction.effective_pressure_limit", 0.0),
                   ge=0)
    return Friction(law=law, fields=fields, coupling=coupling, effective_pressure_limit=limit)


def read_stressbalance(md: Any, ctx: Ctx) -> StressbalanceSettings:
    s = "stressbalance"
    f = read_table(md, s, {"spcvx": {"kind": "vertex", "allow_nan": True, "scale": 1.0 / ctx.yts},
                           "spcvy": {"kind": "vertex", "allow_nan": True, "scale": 1.0 / ctx.yts}}, ctx)
    return StressbalanceSettings(
        **f,
        restol=scalar(f"{s}.restol", get(md, f"{s}.restol"), gt=0),
        reltol=scalar(f"{s}.reltol", get(md, f"{s}.reltol", np.nan), allow_nan=True, gt=0),
        abstol=scalar(f"{s}.abstol", get(md, f"{s}.abstol", np.nan), allow_nan=True, gt=0,
                      scale=1.0 / ctx.yts),
        maxiter=integer(f"{s}.maxiter", get(md, f"{s}.maxiter"), ge=1),
        isnewton=integer(f"{s}.isnewton", get(md, f"{s}.isnewton", 0), choices=(0, 1, 2)),
    )


def read_sealevel(md: Any, ctx: Ctx) -> float:
    for path in ("solidearth.initialsealevel", "initialization.sealevel"):
        value = get(md, path, None)
        if is_unset(value):
            continue
        arr = numeric(path, value)
        if arr.size == 1:
            return scalar(path, arr)
        field = sized(path, arr, ctx, "vertex")
        if np.ptp(field) > 1e-9 * max(1.0, float(np.max(np.abs(field)))):
            raise err(path, "a spatially uniform sea level (issm-emulator uses a single value)",
                      f"values from {field.min():g} to {field.max():g} m")
        return float(field.mean())
    return 0.0
