"""ISSM nightly test cases rebuilt as pyISSM models, and the archived results they are checked against.

:func:`build_case` sets up test ``n`` exactly as ISSM's ``test<n>.m`` does (mesh from ``triangle`` with
ISSM's options, ``setmask``, the Par file, boundary conditions, the test's own overrides and requested
outputs) and returns ``(md, solution)`` ready for ``issm_emulator.solve(md, solution)``.
:func:`archive_fields` lists each record of ISSM's ``Archive<n>.arch`` with the ``md.results`` field it
checks and ISSM's tolerance; :func:`max_relative_error` is ISSM's comparison metric. Facts:
``issm-reference-cases.md`` (ISSM commit 3c79363). Data are read only through :mod:`issm_emulator.data`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import data
from ..issm.formats import read_arch
from ..issm.interpolation import mesh_profile_intersection
from ..issm.setup import paterson, round_mesh, set_mask, triangle_mesh
from ..scenarios.square import new_model, parameterize_square

__all__ = [
    "CASES",
    "archive_fields",
    "build_case",
    "mass_flux_gates",
    "max_relative_error",
    "mesh_profile_intersection",
    "relative_l2",
    "variants",
]

#: ISSM test numbers that :func:`build_case` knows, with ISSM's test names.
CASES: dict[int, str] = {
    101: "SquareShelfConstrainedStressSSA2d",
    201: "SquareShelfStressSSA2d",
    208: "SquareShelfTranSSA2d",
    292: "SquareShelfTranSSA2dFloatingMeltParam",
    293: "SquareShelfTranSSA2dMismipFloatingMeltParam",
    301: "SquareSheetConstrainedStressSSA2d",
    401: "SquareSheetShelfStressSSA2d",
    423: "RoundSheetShelfGLMigrationSSA2d",
    424: "SquareSheetShelfGroundingLine2dAggressive",
    425: "SquareSheetShelfGroundingLine2dSoft",
    491: "SquareSheetShelfTranMeltArtDiff",
    806: "SquareShelfLevelsetCalvingSSA2dLevermann",
    807: "SquareShelfLevelsetMeltingSSA2d",
    808: "SquareShelfLevelsetCalvingSSA2dMinThickness",
    2425: "SquareSheetShelfGroundingLine2dSoft",
}

_VARIANTS: dict[int, tuple[str, ...]] = {
    423: ("aggressive", "soft", "subelement1", "subelement2"),
    2425: ("default", "offset"),
}


def variants(n: int) -> tuple[str, ...]:
    """The runs of test ``n`` (ISSM solves 423 four times and 2425 twice); ``('default',)`` otherwise."""
    _check_case(n)
    return _VARIANTS.get(n, ("default",))


def _check_case(n: int) -> int:
    if int(n) not in CASES:
        raise KeyError(f"unknown ISSM test {n!r}; available: {sorted(CASES)}")
    return int(n)


def _resolve_variant(n: int, variant: str | None) -> str:
    vs = variants(n)
    v = vs[0] if variant is None or variant == "default" else variant
    if v not in vs:
        raise ValueError(f"test {n}: variant must be one of {vs}, got {variant!r}")
    return v


# ----------------------------------------------------------------------------------------------------
# flux gates of test 101 (test/Exp/MassFlux1..6.exp)
# ----------------------------------------------------------------------------------------------------
def _circle(name: str, radius: float, npts: int) -> dict:
    theta = np.linspace(0.0, 2.0 * np.pi, npts)
    # the files hold the points printed with 10 decimals
    x = np.array([float(f"{v:.10f}") for v in 5e5 + radius * np.cos(theta)])
    y = np.array([float(f"{v:.10f}") for v in 5e5 + radius * np.sin(theta)])
    return {"name": name, "x": x, "y": y, "closed": False, "density": 1.0}


def mass_flux_gates() -> list[dict]:
    """The six flux gates of test 101 as contours (point order as ISSM's ``MassFlux<k>.exp``).

    1: (2e5,4e5)->(5e5,8e5); 2: (5e5,8e5)->(8e5,4e5); 3: (2e5,4e5)->(8e5,4e5); 4, 5, 6: circles about
    (5e5,5e5) of radius 3e5, 2e5, 4e5 with 11, 101, 501 points (``linspace(0, 2 pi)``, counter-clockwise).
    """
    seg = lambda name, p, q: {"name": name, "x": np.array([p[0], q[0]], float),
                              "y": np.array([p[1], q[1]], float), "closed": False, "density": 1.0}
    return [seg("MassFlux1", (2e5, 4e5), (5e5, 8e5)), seg("MassFlux2", (5e5, 8e5), (8e5, 4e5)),
            seg("MassFlux3", (2e5, 4e5), (8e5, 4e5)), _circle("MassFlux4", 3e5, 11),
            _circle("MassFlux5", 2e5, 101), _circle("MassFlux6", 4e5, 501)]


# ----------------------------------------------------------------------------------------------------
# builders
# ----------------------------------------------------------------------------------------------------
def _ssa(md: Any) -> None:
    from pyissm.model.param import set_flow_equation

    set_flow_equation(md, SSA="all")


def _square(resolution: float, floating: Any, grounded: Any, par: str) -> Any:
    """triangle(Square.exp) -> setmask -> parameterize(Par) -> setflowequation('SSA','all')."""
    md = new_model()
    triangle_mesh(md, data.fetch_exp("Square.exp"), resolution)
    set_mask(md, floating, grounded)
    parameterize_square(md, par, initial_velocity="issm", front=data.fetch_exp("SquareFront.exp"))
    _ssa(md)
    return md


def _sheet_shelf() -> Any:
    return _square(150000.0, data.fetch_exp("SquareShelf.exp"), "", "SquareSheetShelf")


def _round_sheet_shelf() -> Any:
    """Test 423 up to and including ``parameterize(md, 'RoundSheetShelf.par')`` and setflowequation."""
    radius, shelfextent = 1.0e6, 2.0e5
    md = new_model()
    round_mesh(md, radius, 50000.0)
    x, y = md.mesh.x, md.mesh.y
    el0 = np.asarray(md.mesh.elements, np.int64) - 1
    rad_el = np.sqrt(np.mean(x[el0], axis=1) ** 2 + np.mean(y[el0], axis=1) ** 2)
    set_mask(md, (rad_el >= radius - shelfextent).astype(float), "")

    nv, ne = md.mesh.numberofvertices, md.mesh.numberofelements
    rho_i, rho_w = md.materials.rho_ice, md.materials.rho_water
    di = rho_i / rho_w
    hmin, hmax = 300.0, 1000.0
    r = np.sqrt(x * x + y * y)
    H = hmax + (hmin - hmax) * (r - r.min()) / (r.max() - r.min())
    base = -rho_i / rho_w * H
    grounded = np.asarray(md.mask.ocean_levelset) > 0
    base[grounded] = base[grounded] - 300.0 * (r[grounded] - (radius - shelfextent)) / (radius - shelfextent)
    surface = base + H
    pockets = ((r < 200000.0) | ((x < 0.2e6) & (x > -0.2e6) & (y > 0.0))
               | ((x < 0.1e6) & (x > -0.1e6) & (y < -0.5e6) & (y > -0.6e6)))
    H[pockets] = 100.0
    base[pockets] = -di * H[pockets] - 20.0
    surface[pockets] = base[pockets] + H[pockets]
    md.geometry.thickness, md.geometry.base, md.geometry.surface = H, base, surface

    md.initialization.vx, md.initialization.vy = np.zeros(nv), np.zeros(nv)
    md.initialization.vz, md.initialization.pressure = np.zeros(nv), np.zeros(nv)
    md.initialization.temperature = (273.0 - 20.0) * np.ones(nv)
    md.materials.rheology_B = paterson(md.initialization.temperature)
    md.materials.rheology_n = 3.0 * np.ones(ne)

    md.smb.mass_balance = -10.0 * np.ones(nv)
    md.basalforcings.groundedice_melting_rate = np.where(grounded, 10.0, 0.0)
    md.basalforcings.floatingice_melting_rate = np.zeros(nv)
    md.basalforcings.geothermalflux = np.ones(nv)

    coef = 20.0 * np.ones(nv)
    rad_f = np.sqrt((x[el0].sum(axis=1) / 3.0) ** 2 + (y[el0].sum(axis=1) / 3.0) ** 2)
    coef[el0[rad_f >= radius - shelfextent].ravel()] = 0.0
    md.friction.coefficient = coef
    md.friction.p, md.friction.q = np.ones(ne), np.ones(ne)

    md.masstransport.stabilization = 1
    md.thermal.stabilization = 1
    md.stressbalance.restol = 0.05
    md.stressbalance.reltol = 0.05
    md.steadystate.reltol = 0.05
    md.stressbalance.abstol = np.nan
    md.timestepping.time_step = 5.0
    md.timestepping.final_time = 5.0

    md.groundingline.migration = "AggressiveMigration"
    bed = base.copy()
    floating = np.asarray(md.mask.ocean_levelset) < 0
    bed[floating] = base[floating] - 900.0
    md.geometry.bed = bed

    md.stressbalance.spcvx = np.full(nv, np.nan)
    md.stressbalance.spcvy = np.full(nv, np.nan)
    md.stressbalance.spcvz = np.full(nv, np.nan)
    centre = (x == 0) & (y == 0)
    md.stressbalance.spcvx[centre] = 0.0
    md.stressbalance.spcvy[centre] = 0.0
    ice = np.asarray(md.mask.ice_levelset, float).copy()
    ice[np.asarray(md.mesh.vertexonboundary).astype(bool)] = 0.0
    md.mask.ice_levelset = ice
    md.balancethickness.spcthickness = np.full(nv, np.nan)
    md.masstransport.spcthickness = np.full(nv, np.nan)
    md.stressbalance.referential = np.full((nv, 6), np.nan)
    md.stressbalance.loadingforce = np.zeros((nv, 3))
    md.thermal.spctemperature = 737.0 * np.ones(nv)
    _ssa(md)
    return md


def _moving_front_shelf(resolution: float) -> Any:
    md = _square(resolution, "all", "", "SquareShelf")
    md.levelset.kill_icebergs = 0
    md.levelset.spclevelset = np.full(md.mesh.numberofvertices, np.nan)
    md.transient.isstressbalance = 1
    md.transient.ismasstransport = 1
    md.transient.issmb = 1
    md.transient.isthermal = 0
    md.transient.isgroundingline = 0
    md.transient.ismovingfront = 1
    return md


def build_case(n: int, variant: str | None = None) -> tuple[Any, str]:
    """Set up ISSM nightly test ``n`` as a pyISSM model.

    Parameters
    ----------
    n : one of :data:`CASES`
    variant : the run of a multi-run test (:func:`variants`): 423 'aggressive' (default), 'soft',
        'subelement1', 'subelement2'; 2425 'default' (run 1) or 'offset' (run 2: base, bed and surface
        +1000 m, sea level 1000 m).

    Returns
    -------
    (md, solution) with solution ``'Stressbalance'`` or ``'Transient'``.
    """
    n = _check_case(n)
    v = _resolve_variant(n, variant)
    nv_of = lambda md: md.mesh.numberofvertices

    if n == 101:
        md = new_model()
        triangle_mesh(md, data.fetch_exp("Square.exp"), 50000.0)
        set_mask(md, "all", "")
        parameterize_square(md, "SquareShelfConstrained", initial_velocity="issm")
        _ssa(md)
        from pyissm.model.classes.massfluxatgate import massfluxatgate

        gates = mass_flux_gates()
        defs = []
        for k, g in enumerate(gates, start=1):
            m = massfluxatgate(name=g["name"], definitionstring=f"Outputdefinition{k}",
                               profilename=f"{g['name']}.exp")
            # the gate travels with the definition (ISSM reads it from test/Exp/MassFlux<k>.exp, which the
            # data set does not ship): issm_emulator.issm.adapter reads .profile, pyISSM keeps .segments
            m.profile = g
            m.segments = mesh_profile_intersection(md.mesh.elements, md.mesh.x, md.mesh.y, g)
            defs.append(m)
        md.outputdefinition.definitions = defs
        md.stressbalance.requested_outputs = ["default", "DeviatoricStressxx", "DeviatoricStressyy",
                                              "DeviatoricStressxy"] + [g["name"] for g in gates]
        return md, "Stressbalance"

    if n in (201, 208, 292, 293):
        md = _square(150000.0, "all", "", "SquareShelf")
        if n == 201:
            return md, "Stressbalance"
        if n == 208:
            md.basalforcings.floatingice_melting_rate = np.ones(nv_of(md))
            md.transient.requested_outputs = ["default", "FloatingArea", "GroundedArea", "TotalGroundedBmb",
                                              "TotalFloatingBmb"]
        elif n == 292:
            from pyissm.model.classes.basalforcings import linear

            md.basalforcings = linear(md.basalforcings)
            md.basalforcings.deepwater_melting_rate = np.array([[50.0, 100.0], [0.0, 5.0]])
            md.timestepping.interp_forcing = 0
            md.transient.requested_outputs = ["default"]
        else:
            from pyissm.model.classes.basalforcings import mismip

            md.constants.yts = 365.2422 * 24.0 * 3600.0
            old = md.basalforcings
            md.basalforcings = mismip()
            md.basalforcings.groundedice_melting_rate = np.zeros(nv_of(md))
            md.basalforcings.geothermalflux = np.asarray(old.geothermalflux, float).copy() \
                if np.size(old.geothermalflux) == nv_of(md) else np.zeros(nv_of(md))
            md.transient.isgroundingline = 1
            md.geometry.bed = np.min(md.geometry.base) * np.ones(nv_of(md))
            md.transient.requested_outputs = ["default", "BasalforcingsFloatingiceMeltingRate"]
        return md, "Transient"

    if n == 301:
        md = _square(150000.0, "", "", "SquareSheetConstrained")
        return md, "Stressbalance"

    if n == 401:
        return _sheet_shelf(), "Stressbalance"

    if n == 423:
        md = _round_sheet_shelf()
        md.transient.isthermal = 0
        md.transient.ismasstransport = 0
        md.transient.issmb = 1
        md.transient.isstressbalance = 1
        md.transient.isgroundingline = 1
        if v == "aggressive":
            md.groundingline.migration = "AggressiveMigration"
        elif v == "soft":
            md.groundingline.migration = "SoftMigration"
        else:
            md.mask.ocean_levelset = md.geometry.thickness + md.materials.rho_water / md.materials.rho_ice \
                * md.geometry.bed
            md.groundingline.migration = "SubelementMigration"
            md.groundingline.friction_interpolation = "SubelementFriction1" if v == "subelement1" \
                else "SubelementFriction2"
        return md, "Transient"

    if n in (424, 425):
        md = _sheet_shelf()
        nv = nv_of(md)
        md.initialization.vx, md.initialization.vy = np.zeros(nv), np.zeros(nv)
        md.geometry.base = -700.0 - np.abs(md.mesh.y - 500000.0) / 1000.0
        md.geometry.bed = md.geometry.base.copy()
        md.geometry.thickness = 1000.0 * np.ones(nv)
        md.geometry.surface = md.geometry.base + md.geometry.thickness
        md.smb.mass_balance = 100.0 * np.ones(nv)
        md.transient.isstressbalance = 0
        md.transient.isgroundingline = 1
        md.transient.requested_outputs = ["IceVolume", "IceVolumeAboveFloatation",
                                          "IceVolumeAboveFloatationScaled", "GroundedArea", "FloatingArea",
                                          "GroundedAreaScaled", "FloatingAreaScaled"]
        md.mesh.scale_factor = 1.1 * np.ones(nv)
        md.groundingline.migration = "AggressiveMigration"
        if n == 425:  # 424 with soft migration, a thicker slab and strong ablation; default outputs only
            md.geometry.thickness = 1300.0 * np.ones(nv)
            md.geometry.surface = md.geometry.base + md.geometry.thickness
            md.smb.mass_balance = -150.0 * np.ones(nv)
            md.transient.requested_outputs = ["default"]
            md.groundingline.migration = "SoftMigration"
        return md, "Transient"

    if n == 2425:
        md = _sheet_shelf()
        nv = nv_of(md)
        md.initialization.vx, md.initialization.vy = np.zeros(nv), np.zeros(nv)
        md.geometry.base = -700.0 - (md.mesh.y - 500000.0) / 1000.0
        md.geometry.bed = md.geometry.base.copy()
        md.geometry.thickness = 1300.0 * np.ones(nv)
        md.geometry.surface = md.geometry.base + md.geometry.thickness
        md.transient.isstressbalance = 1
        md.transient.isgroundingline = 1
        md.groundingline.migration = "AggressiveMigration"
        md.timestepping.time_step = 0.1
        md.timestepping.final_time = 1.0
        if v == "offset":
            md.geometry.base = md.geometry.base + 1000.0
            md.geometry.bed = md.geometry.bed + 1000.0
            md.geometry.surface = md.geometry.surface + 1000.0
            md.initialization.sealevel = 1000.0 * np.ones(nv)  # ISSM: md.solidearth.initialsealevel = 1000
        return md, "Transient"

    if n == 491:
        from pyissm.model.classes.friction import coulomb

        md = _sheet_shelf()
        nv, ne = nv_of(md), md.mesh.numberofelements
        bed = np.asarray(md.geometry.base, float).copy()
        floating = np.asarray(md.mask.ocean_levelset) < 0
        bed[floating] = bed[floating] - 10.0
        md.geometry.bed = bed
        md.friction = coulomb()
        md.friction.coefficient = 20.0 * np.ones(nv)
        md.friction.p = np.ones(ne)
        md.friction.q = np.ones(ne)
        md.friction.coefficientcoulomb = 0.02 * np.ones(nv)
        md.transient.isthermal = 0
        md.transient.isgroundingline = 1
        md.masstransport.stabilization = 1
        md.transient.requested_outputs = ["default", "GroundedArea", "FloatingArea", "TotalFloatingBmb",
                                          "TotalGroundedBmb", "TotalSmb"]
        return md, "Transient"

    if n in (806, 807):
        md = _moving_front_shelf(50000.0)
        nv = nv_of(md)
        lx = md.mesh.x.max() - md.mesh.x.min()
        md.mask.ice_levelset = np.sign(md.mesh.x - 2.0 / 3.0 * lx)
        md.timestepping.time_step = 10.0
        md.timestepping.final_time = 30.0
        from pyissm.model.classes import calving as calving_classes
        from pyissm.model.classes import frontalforcings

        md.frontalforcings = frontalforcings.default()
        if n == 806:
            md.levelset.migration_max = 1e8
            md.calving = calving_classes.levermann()
            md.calving.coeff = 4.89e13 * np.ones(nv)
            md.frontalforcings.meltingrate = np.zeros(nv)
            md.transient.requested_outputs = ["default", "StrainRateparallel", "StrainRateperpendicular",
                                              "Calvingratex", "Calvingratey", "CalvingCalvingrate"]
        else:
            md.calving = calving_classes.default()
            md.calving.calvingrate = np.zeros(nv)
            md.frontalforcings.meltingrate = 10000.0 * np.ones(nv)
            md.transient.requested_outputs = ["default"]
        return md, "Transient"

    # 808
    from pyissm.model.classes import calving as calving_classes
    from pyissm.model.classes import frontalforcings

    md = _moving_front_shelf(30000.0)
    nv = nv_of(md)
    md.mask.ice_levelset = -1.0 + 2.0 * (md.mesh.y > 9e5)
    md.timestepping.time_step = 1.0
    md.timestepping.final_time = 3.0
    md.calving = calving_classes.minthickness()
    md.calving.min_thickness = 400.0
    md.frontalforcings = frontalforcings.default()
    md.frontalforcings.meltingrate = np.zeros(nv)
    md.levelset.reinit_frequency = 1
    md.levelset.migration_max = 1e10
    md.transient.requested_outputs = ["default"]
    return md, "Transient"


# ----------------------------------------------------------------------------------------------------
# archives
# ----------------------------------------------------------------------------------------------------
def _steps(fields: list[tuple[str, str, tuple[float, ...]]], nsteps: int) -> list[tuple[str, str, int, float]]:
    """Expand per-step field lists: (label, output, tolerance per step) -> (label<k>, output, k, tol)."""
    out = []
    for k in range(1, nsteps + 1):
        for label, output, tols in fields:
            out.append((f"{label}{k}", output, k, tols[min(k, len(tols)) - 1]))
    return out


_SB = lambda names, tols: [(nm, nm, None, t) for nm, t in zip(names, tols)]


def _spec(n: int) -> list[tuple[str, str, int | None, float, str]]:
    """(test field name, ISSM output, step or None, tolerance, variant) for each archive record, in order."""
    d = "default"
    if n == 101:
        rows = _SB(["Vx", "Vy", "Vel", "Pressure", "DeviatoricStressxx", "DeviatoricStressyy",
                    "DeviatoricStressxy"] + [f"MassFlux{k}" for k in range(1, 7)],
                   [4e-13] * 3 + [1e-13] + [2e-13] * 3 + [1e-13] * 6)
    elif n in (201, 301, 401):
        rows = _SB(["Vx", "Vy", "Vel", "Pressure"], [1e-13] * 4)
    elif n == 208:
        rows = _steps([(f, o, (1e-13,)) for f, o in [("Vx", "Vx"), ("Vy", "Vy"), ("Vel", "Vel"),
                       ("Pressure", "Pressure"), ("Bed", "Base"), ("Surface", "Surface"),
                       ("Thickness", "Thickness"), ("TotalGroundedBmb", "TotalGroundedBmb"),
                       ("TotalFloatingBmb", "TotalFloatingBmb")]], 3)
    elif n == 292:
        rows = _steps([(f, f, (1e-13,)) for f in ["Vx", "Vy", "Vel", "Pressure", "Base", "Surface",
                                                   "Thickness"]], 3)
    elif n == 293:
        rows = _steps([(f, o, (1e-13,)) for f, o in [("Vx", "Vx"), ("Vy", "Vy"), ("Vel", "Vel"),
                       ("Pressure", "Pressure"), ("Bed", "Base"), ("Surface", "Surface"),
                       ("Thickness", "Thickness")]]
                      + [("BasalforcingsFloatingiceMeltingRate", "BasalforcingsFloatingiceMeltingRate",
                          (2e-13,))], 3)
    elif n == 423:
        runs = [("Aggressive", "aggressive", 2e-12), ("Soft", "soft", 2e-12),
                ("Subelement", "subelement1", 3e-12), ("Subelement2", "subelement2", 2e-12)]
        out = []
        for label, var, tv in runs:
            out.append((f"ElementOnIceShelf{label}", "MaskOceanLevelset", 1, 1e-13, var))
            out.append((f"Vel{label}", "Vel", 1, tv, var))
        return out
    elif n == 424:
        rows = _steps([(f, o, (1e-13,)) for f, o in [
            ("Bed", "Base"), ("Surface", "Surface"), ("Thickness", "Thickness"),
            ("Floatingice", "MaskOceanLevelset"), ("IceVolume", "IceVolume"),
            ("IceVolumeAboveFloatation", "IceVolumeAboveFloatation"),
            ("IceVolumeAboveFloatationScaled", "IceVolumeAboveFloatationScaled"),
            ("GroundedArea", "GroundedArea"), ("GroundedAreaScaled", "GroundedAreaScaled"),
            ("FloatingArea", "FloatingArea"), ("FloatingAreaScaled", "FloatingAreaScaled")]], 3)
    elif n == 425:
        rows = _steps([(f, o, (1e-13,)) for f, o in [
            ("Bed", "Base"), ("Surface", "Surface"), ("Thickness", "Thickness"),
            ("Floatingice", "MaskOceanLevelset")]], 3)
    elif n == 491:
        rows = _steps([(f, f, (2e-13,)) for f in ["Vx", "Vy", "Vel"]]
                      + [(f, o, (1e-13,)) for f, o in [
                          ("Pressure", "Pressure"), ("Bed", "Base"), ("Surface", "Surface"),
                          ("Thickness", "Thickness"), ("GroundedArea", "GroundedArea"),
                          ("FloatingArea", "FloatingArea"), ("TotalFloatingBmb", "TotalFloatingBmb"),
                          ("TotalGroundedBmb", "TotalGroundedBmb"), ("TotalSmb", "TotalSmb")]], 3)
    elif n == 806:
        v = (1e-11, 2e-11, 2e-11)
        rows = _steps([(f, f, v) for f in ["Vx", "Vy", "Vel"]]
                      + [(f, f, (1e-11,)) for f in ["Pressure", "Thickness", "Surface", "MaskIceLevelset"]]
                      + [(f, f, (1e-11, 1e-11, 5e-11)) for f in ["StrainRateparallel",
                                                                 "StrainRateperpendicular",
                                                                 "CalvingCalvingrate"]], 3)
    elif n == 807:
        rows = _steps([(f, f, (1e-11, 2e-11, 2e-11)) for f in ["Vx", "Vy", "Vel"]]
                      + [(f, f, (1e-11,)) for f in ["Pressure", "Thickness", "Surface"]]
                      + [("MaskIceLevelset", "MaskIceLevelset", (1e-11, 5e-11, 5e-11))], 3)
    elif n == 808:
        rows = _steps([(f, f, (1e-8,)) for f in ["Vx", "Vy", "Vel"]]
                      + [(f, f, (1e-9,)) for f in ["Pressure", "Thickness", "Surface"]]
                      + [("MaskIceLevelset", "MaskIceLevelset", (3e-9,))], 3)
    elif n == 2425:
        return [("Vel", "Vel", 10, 1e-13, "default"), ("Veloffset", "Vel", 10, 1e-13, "offset")]
    else:  # pragma: no cover - guarded by _check_case
        raise KeyError(n)
    return [(lbl, out, step, tol, d) for lbl, out, step, tol in rows]


def archive_fields(n: int, variant: str | None = None) -> list[tuple[str, str, int | None, str, Any, float]]:
    """ISSM's archived results of test ``n``, each with the ``md.results`` field it checks.

    Parameters
    ----------
    n : test number
    variant : for 423 and 2425, the run whose records are returned (default: the first run, matching
        ``build_case(n)``); ``'all'`` returns the records of every run.

    Returns
    -------
    list of ``(record_name, field_name, step, issm_output_name, value, tol)``: ``record_name`` as in the
    archive (``Archive<n>_field<k>``), ``field_name`` the test's label, ``step`` the 1-based index into
    ``md.results.TransientSolution.steps`` (``None`` for ``StressbalanceSolution``), ``issm_output_name``
    the attribute of that solution step (``'Vx'``, ``'Base'``, ``'MaskOceanLevelset'``, ...), ``value`` a
    1-D float array (vertex fields) or a float (scalars), ``tol`` ISSM's tolerance for
    :func:`max_relative_error`.
    """
    n = _check_case(n)
    spec = _spec(n)
    which = None if variant == "all" else _resolve_variant(n, variant)
    records = read_arch(data.fetch_archive(n))
    out = []
    for k, (label, output, step, tol, var) in enumerate(spec, start=1):
        name = f"Archive{n}_field{k}"
        if name not in records:
            raise KeyError(f"{name} missing from Archive{n}.arch")
        if which is not None and var != which:
            continue
        val = records[name]
        val = float(val) if np.ndim(val) == 0 else np.asarray(val, float).ravel()
        out.append((name, label, step, output, val, tol))
    if len(records) != len(spec):
        raise ValueError(f"Archive{n}.arch has {len(records)} records, expected {len(spec)}")
    return out


def relative_l2(ref: Any, val: Any) -> float:
    """Relative L2 error ``||val - ref||_2 / ||ref||_2`` (absolute norm of the difference when ref = 0)."""
    r = np.asarray(ref, float).ravel()
    v = np.asarray(val, float).ravel()
    if r.shape != v.shape:
        raise ValueError(f"relative_l2: shapes differ ({r.shape} vs {v.shape})")
    den = np.linalg.norm(r)
    num = np.linalg.norm(v - r)
    return float(num / den) if den > 0 else float(num)


def max_relative_error(ref: Any, val: Any) -> float:
    """ISSM's test metric: ``max|ref - val| / (max|ref| + eps)`` (eps = float64 machine epsilon); NaN if
    any value is NaN."""
    r = np.asarray(ref, float).ravel()
    v = np.asarray(val, float).ravel()
    if r.shape != v.shape:
        raise ValueError(f"max_relative_error: shapes differ ({r.shape} vs {v.shape})")
    if np.isnan(r).any() or np.isnan(v).any():
        return float("nan")
    return float(np.max(np.abs(r - v)) / (np.max(np.abs(r)) + np.finfo(float).eps))
