"""Read a pyISSM model into a validated, read-only :class:`~issm_emulator.state.ModelState`.

:func:`read_model` accepts a ``pyissm.model.Model`` or any object with the same attribute paths (ISSM's own
Python ``model`` class, a tree of ``SimpleNamespace`` objects, ...). It

* converts ISSM's user units to SI: rates in m/yr are divided by ``md.constants.yts`` (velocities, SMB,
  melt, calving and frontal-melt rates, ``stressbalance.abstol``, ``levelset.migration_max``,
  ``mismip`` ``meltrate_factor``), times in years are multiplied by it;
* makes ``md.mesh.elements`` / ``md.mesh.segments`` 0-based;
* copies and freezes every array (``md`` is only read, never written);
* validates only what the requested solution needs and fills neutral values (zero forcings, NaN
  Dirichlet fields, ISSM's defaults) for the rest.

Every problem raises :class:`~issm_emulator.errors.ModelInputError` whose message starts with the ``md``
field path, e.g. ``md.geometry.thickness: expected 1234 values (one per vertex), got 1233``.

Class names identify the law of a section. pyISSM names are ``<section>.<class>`` (module tail and class
name, e.g. ``friction.weertman``); ISSM's own Python classes are recognised by their class name alone
(``frictionweertman``). See ``FRICTION_CLASSES``, ``BASALFORCINGS_CLASSES``, ``CALVING_CLASSES``.

Time-dependent forcings follow ISSM: ``numberofvertices + 1`` rows, last row the times (years); they become
:class:`~issm_emulator.state.Forcing` objects. Global parameters that ISSM allows as a "single time
series" (``linearbasalforcings`` ``deepwater_melting_rate`` etc., e.g. ``[[50, 100], [0, 5]]``: values row,
times row) become a plain float when constant and a ``Forcing`` with ``values`` of shape ``(1, nt)`` when
time-dependent (``global_value`` evaluates either).

Flux gates: every ``massfluxatgate`` definition of ``md.outputdefinition.definitions`` whose ``name`` is a
requested output is read into ``extras['mass_flux_gates']`` (name -> (nseg, 5) ``[x1, y1, x2, y2,
element]``, 0-based elements, ISSM's ``MeshProfileIntersection`` layout), from its ``.profile`` contour, its
``.segments`` (1-based, as ISSM) or its ``profilename`` ``.exp`` file, in that order.

Sea level (``ModelState.sealevel``): ``md.solidearth.initialsealevel`` if that field exists and is set,
otherwise ``md.initialization.sealevel``, otherwise 0. A per-vertex field must be spatially uniform (its
mean is used; a non-uniform sea level raises ``ModelInputError`` because the solvers take a scalar).

This module holds :func:`read_model` and decides, per solution, which sections are read and which get
neutral values. The work is done by: :mod:`.fields` (field access and validation, error messages),
:mod:`.timeseries` (forcings and time series), :mod:`.read_mesh`, :mod:`.read_stressbalance` (sections
every solution reads), :mod:`.read_transient` (transient-only sections) and :mod:`.read_outputs`
(requested outputs, flux gates).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from issm_emulator.errors import UnknownSolutionError
from issm_emulator.state import (
    BasalForcings,
    Calving,
    Forcing,
    LevelsetSettings,
    MasstransportSettings,
    Mesh,
    ModelState,
    Timestepping,
    TransientFlags,
    frozen_array,
)

from .fields import Ctx, get, integer
from .read_mesh import read_mesh, read_scale_factor
from .read_outputs import MASSFLUX_CLASSES, read_mass_flux_gates, read_requested_outputs
from .read_stressbalance import (
    FRICTION_CLASSES,
    check_flowequation,
    read_constants,
    read_friction,
    read_geometry,
    read_masks,
    read_materials,
    read_sealevel,
    read_stressbalance,
    read_velocity,
)
from .read_transient import (
    BASALFORCINGS_CLASSES,
    CALVING_CLASSES,
    MIGRATIONS,
    read_basalforcings,
    read_calving,
    read_frontal_meltingrate,
    read_groundingline,
    read_levelset,
    read_masstransport,
    read_smb,
    read_timestepping,
    read_transient_flags,
)
from .solutions import STRESSBALANCE, TRANSIENT
from .timeseries import global_value

__all__ = [
    "BASALFORCINGS_CLASSES",
    "CALVING_CLASSES",
    "FRICTION_CLASSES",
    "MASSFLUX_CLASSES",
    "MIGRATIONS",
    "global_value",
    "read_model",
]

_SOLUTION_ALIASES = {
    "transientsolution": TRANSIENT, "transient": TRANSIENT, "tr": TRANSIENT,
    "stressbalancesolution": STRESSBALANCE, "stressbalance": STRESSBALANCE, "sb": STRESSBALANCE,
}


# ----------------------------------------------------------------------------------------------------------
# neutral values for what a solution does not need
# ----------------------------------------------------------------------------------------------------------
def _zeros(ctx: Ctx) -> Forcing:
    return Forcing(frozen_array(np.zeros(ctx.nv)))


def _nans(ctx: Ctx) -> Forcing:
    return Forcing(frozen_array(np.full(ctx.nv, np.nan)))


def _neutral_basalforcings(ctx: Ctx) -> BasalForcings:
    return BasalForcings(kind="default", groundedice_melting_rate=_zeros(ctx),
                         floatingice_melting_rate=_zeros(ctx))


def _neutral_masstransport(ctx: Ctx) -> MasstransportSettings:
    return MasstransportSettings(spcthickness=_nans(ctx), min_thickness=1.0, stabilization=1,
                                 hydrostatic_adjustment="Absolute")


def _neutral_levelset(ctx: Ctx) -> LevelsetSettings:
    return LevelsetSettings(stabilization=1, reinit_frequency=10, kill_icebergs=1,
                            migration_max=1e12 / ctx.yts, spclevelset=_nans(ctx))


_NEUTRAL_FLAGS = TransientFlags(issmb=0, ismasstransport=0, isstressbalance=1, isgroundingline=0,
                                ismovingfront=0)


def _when(flag: bool, read: Callable[[], Any], neutral: Callable[[], Any]) -> Any:
    return read() if flag else neutral()


# ----------------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------------
def _canonical_solution(solution: str) -> str:
    key = str(solution).strip().lower()
    if key not in _SOLUTION_ALIASES:
        raise UnknownSolutionError(
            f"solution {solution!r} is not supported; choose {TRANSIENT!r} ('Transient', 'tr') or "
            f"{STRESSBALANCE!r} ('Stressbalance', 'sb')")
    return _SOLUTION_ALIASES[key]


def _add_gates(extras: dict[str, Any], md: Any, mesh: Mesh, requested: tuple[str, ...]) -> None:
    gates = read_mass_flux_gates(md, mesh, requested)
    if gates:
        extras["mass_flux_gates"] = gates


def read_model(md: Any, solution: str = TRANSIENT) -> ModelState:
    """Validate ``md`` for ``solution`` and return it as a read-only :class:`ModelState` in SI units.

    Parameters
    ----------
    md
        A ``pyissm.model.Model`` or any object with the same attribute paths. It is only read.
    solution
        ``'TransientSolution'`` or ``'StressbalanceSolution'`` (case-insensitive; ``'tr'``, ``'sb'``,
        ``'Transient'``, ``'Stressbalance'`` accepted). Only the sections this solution uses are
        validated; the others get neutral values (zero forcings, NaN Dirichlet fields, ISSM defaults).

    Returns
    -------
    ModelState
        Velocities and rates in m/s (``v_SI = v_md / yts``), times in s (``t_SI = t_md * yts``),
        0-based triangles, frozen arrays.

    Raises
    ------
    ModelInputError
        A field is missing, has the wrong size or values, or names an unsupported class; the message
        starts with the ``md`` field path.
    UnknownSolutionError
        ``solution`` is neither a transient nor a stress-balance solution.
    """
    solution = _canonical_solution(solution)
    check_flowequation(md)
    yts, g = read_constants(md)
    mesh, ctx = read_mesh(md, yts)
    vx, vy = read_velocity(md, ctx)
    common: dict[str, Any] = {
        "mesh": mesh, "geometry": read_geometry(md, ctx), "masks": read_masks(md, ctx), "vx": vx, "vy": vy,
        "materials": read_materials(md, ctx), "friction": read_friction(md, ctx),
        "stressbalance": read_stressbalance(md, ctx), "g": g, "yts": yts,
        "sealevel": read_sealevel(md, ctx),
    }
    extras: dict[str, Any] = {"solution": solution}
    scale = read_scale_factor(md, ctx)
    if scale is not None:
        extras["scale_factor"] = scale
    if solution == STRESSBALANCE:
        requested = read_requested_outputs(md, "stressbalance.requested_outputs")
        _add_gates(extras, md, mesh, requested)
        return ModelState(
            **common, smb=_zeros(ctx), basalforcings=_neutral_basalforcings(ctx),
            calving=Calving("default", {"calvingrate": _zeros(ctx)}), frontal_meltingrate=_zeros(ctx),
            masstransport=_neutral_masstransport(ctx), levelset=_neutral_levelset(ctx),
            # ISSM reads md.groundingline.* for every solution (CreateParameters): the migration style
            # decides which elements get friction, friction_interpolation how partly grounded ones do
            groundingline=read_groundingline(md),
            timestepping=Timestepping(start_time=0.0, final_time=0.0, time_step=yts, interp_forcing=1),
            transient=_NEUTRAL_FLAGS,
            requested_outputs=requested, output_frequency=1, extras=extras)

    flags = read_transient_flags(md)
    moving = bool(flags.ismovingfront)
    requested = read_requested_outputs(md, "transient.requested_outputs")
    _add_gates(extras, md, mesh, requested)
    return ModelState(
        **common,
        # ISSM's mass transport reads md.smb.mass_balance even when issmb == 0 (the SMB core only
        # recomputes it), so the SMB is needed whenever thickness evolves.
        smb=_when(bool(flags.issmb or flags.ismasstransport), lambda: read_smb(md, ctx),
                  lambda: _zeros(ctx)),
        basalforcings=_when(bool(flags.ismasstransport), lambda: read_basalforcings(md, ctx),
                            lambda: _neutral_basalforcings(ctx)),
        calving=_when(moving, lambda: read_calving(md, ctx),
                      lambda: Calving("default", {"calvingrate": _zeros(ctx)})),
        frontal_meltingrate=_when(moving, lambda: read_frontal_meltingrate(md, ctx), lambda: _zeros(ctx)),
        masstransport=_when(bool(flags.ismasstransport), lambda: read_masstransport(md, ctx),
                            lambda: _neutral_masstransport(ctx)),
        levelset=_when(moving, lambda: read_levelset(md, ctx), lambda: _neutral_levelset(ctx)),
        groundingline=read_groundingline(md),
        timestepping=read_timestepping(md, yts),
        transient=flags,
        requested_outputs=requested,
        output_frequency=integer("settings.output_frequency", get(md, "settings.output_frequency", 1),
                                 ge=1),
        extras=extras,
    )
