"""The validated, read-only model state every solver works on.

:func:`issm_emulator.issm.adapter.read_model` turns a pyISSM ``Model`` (or anything with the same attribute
paths) into a :class:`ModelState`. Everything in it is in **SI units** (m, s, kg, Pa; velocities and rates in
m/s, times in s), triangles are **0-based**, and every array is read-only (``arr.flags.writeable`` is
False), so solvers can share it freely and can never modify the user's ``md``.

Conventions kept from ISSM: ``ocean_levelset`` > 0 grounded, < 0 floating; ``ice_levelset`` < 0 ice,
> 0 no ice, 0 on the front; NaN in a Dirichlet field (``spcvx``, ``spcthickness``, ...) means "free".
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

YTS_DEFAULT = 365.0 * 24.0 * 3600.0  #: ISSM's default seconds per year


def frozen_array(a: Any, dtype: Any = float) -> np.ndarray:
    """A read-only copy of ``a`` as a numpy array of ``dtype``."""
    arr = np.array(a, dtype=dtype, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class Forcing:
    """A per-vertex field that is either constant or an ISSM time series, in SI units.

    ``values`` has shape ``(nv,)`` for a constant field or ``(nv, nt)`` for a time series whose columns
    belong to ``times`` (seconds, increasing). ISSM stores the same as ``nv + 1`` rows with the times
    (years) in the last row; :func:`issm_emulator.issm.adapter.read_model` does the conversion.
    """

    values: np.ndarray
    times: np.ndarray | None = None

    @property
    def is_transient(self) -> bool:
        return self.times is not None

    def at(self, t: float, interp: bool = True) -> np.ndarray:
        """The field at time ``t`` (s), as ISSM evaluates forcings.

        Between two stamps the value is linearly interpolated when ``interp`` (``md.timestepping.
        interp_forcing == 1``), otherwise the earlier stamp's value is held; before the first or after
        the last stamp the end values are used.
        """
        if self.times is None:
            return self.values
        times = self.times
        if t <= times[0]:
            return self.values[:, 0]
        if t >= times[-1]:
            return self.values[:, -1]
        k = int(np.searchsorted(times, t, side="right")) - 1
        if not interp or times[k] == t:
            return self.values[:, k]
        w = (t - times[k]) / (times[k + 1] - times[k])
        return (1.0 - w) * self.values[:, k] + w * self.values[:, k + 1]


@dataclass(frozen=True)
class Mesh:
    """2-D triangle mesh: vertex coordinates (m) and 0-based, counter-clockwise triangles."""

    x: np.ndarray
    y: np.ndarray
    elements: np.ndarray  #: (ne, 3) int64, 0-based
    vertexonboundary: np.ndarray  #: (nv,) bool
    segments: np.ndarray | None = None  #: (ns, 3) int64, 0-based [v1, v2, element] or None

    @property
    def numberofvertices(self) -> int:
        return int(self.x.shape[0])

    @property
    def numberofelements(self) -> int:
        return int(self.elements.shape[0])


@dataclass(frozen=True)
class Geometry:
    """Ice geometry (m). ``bed`` may hold NaN where the model does not define it (ISSM allows that when
    nothing needs it); solvers that need a bed check for NaN themselves."""

    thickness: np.ndarray
    surface: np.ndarray
    base: np.ndarray
    bed: np.ndarray


@dataclass(frozen=True)
class Masks:
    ocean_levelset: np.ndarray  #: > 0 grounded, < 0 floating
    ice_levelset: np.ndarray  #: < 0 ice, > 0 no ice, 0 front


@dataclass(frozen=True)
class Materials:
    rho_ice: float  #: kg m^-3
    rho_water: float  #: kg m^-3 (sea water)
    rho_freshwater: float  #: kg m^-3
    rheology_B: np.ndarray  #: (nv,) Pa s^(1/n)
    rheology_n: np.ndarray  #: (ne,) Glen exponent


@dataclass(frozen=True)
class Friction:
    """Basal friction law and its fields.

    ``law`` is one of ``'budd'`` (ISSM's ``friction``: ``coefficient`` (nv), ``p``, ``q`` (ne)),
    ``'weertman'`` (``C`` (nv), ``m`` (ne)) and ``'coulomb'`` (``coefficient``, ``coefficientcoulomb``
    (nv), ``p``, ``q`` (ne)). ``fields`` holds the arrays by ISSM's attribute name, in ISSM's (SI) units.
    ``effective_pressure_limit`` and ``coupling`` are kept as ISSM defines them.
    """

    law: str
    fields: dict[str, np.ndarray]
    coupling: int = 0
    effective_pressure_limit: float = 0.0


@dataclass(frozen=True)
class BasalForcings:
    """Basal melt. ``kind`` is ``'default'`` (prescribed ``floatingice_melting_rate``), ``'linear'``
    (ISSM's ``linearbasalforcings``) or ``'mismip'`` (``mismipbasalforcings``). Rates in m/s (ice
    equivalent); ``params`` holds the parameterisation's scalars/forcings in SI (rates m/s, depths m,
    ``meltrate_factor`` 1/s)."""

    kind: str
    groundedice_melting_rate: Forcing
    floatingice_melting_rate: Forcing | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Calving:
    """Calving law (``'default'``, ``'vonmises'``, ``'levermann'``, ``'minthickness'``) with its
    parameters in SI: ``calvingrate`` (Forcing, m/s), ``stress_threshold_groundedice`` /
    ``stress_threshold_floatingice`` (Pa), ``coeff`` (m s), ``min_thickness`` (m)."""

    law: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StressbalanceSettings:
    spcvx: np.ndarray  #: m/s, NaN = free
    spcvy: np.ndarray  #: m/s, NaN = free
    restol: float
    reltol: float  #: NaN = not used
    abstol: float  #: m/s, NaN = not used
    maxiter: int
    isnewton: int


@dataclass(frozen=True)
class MasstransportSettings:
    spcthickness: Forcing  #: m, NaN = free
    min_thickness: float  #: m
    stabilization: int
    hydrostatic_adjustment: str


@dataclass(frozen=True)
class LevelsetSettings:
    stabilization: int
    reinit_frequency: int
    kill_icebergs: int
    migration_max: float  #: m/s
    spclevelset: Forcing  #: NaN = free


@dataclass(frozen=True)
class GroundinglineSettings:
    migration: str  #: 'None', 'AggressiveMigration', 'SoftMigration', 'SubelementMigration'
    friction_interpolation: str
    melt_interpolation: str


@dataclass(frozen=True)
class Timestepping:
    start_time: float  #: s
    final_time: float  #: s
    time_step: float  #: s
    interp_forcing: int


@dataclass(frozen=True)
class TransientFlags:
    issmb: int
    ismasstransport: int
    isstressbalance: int
    isgroundingline: int
    ismovingfront: int


@dataclass(frozen=True)
class ModelState:
    """Everything a solver needs from ``md``, validated and in SI units."""

    mesh: Mesh
    geometry: Geometry
    masks: Masks
    vx: np.ndarray  #: initial velocity (m/s)
    vy: np.ndarray  #: initial velocity (m/s)
    materials: Materials
    friction: Friction
    smb: Forcing  #: surface mass balance (m/s ice equivalent)
    basalforcings: BasalForcings
    calving: Calving
    frontal_meltingrate: Forcing  #: m/s
    stressbalance: StressbalanceSettings
    masstransport: MasstransportSettings
    levelset: LevelsetSettings
    groundingline: GroundinglineSettings
    timestepping: Timestepping
    transient: TransientFlags
    g: float = 9.81  #: m s^-2
    yts: float = YTS_DEFAULT  #: seconds per year used by this model
    sealevel: float = 0.0  #: m
    requested_outputs: tuple[str, ...] = ("default",)
    output_frequency: int = 1
    extras: dict[str, Any] = field(default_factory=dict)  #: anything else a solver may want

    @property
    def numberofvertices(self) -> int:
        return self.mesh.numberofvertices

    @property
    def numberofelements(self) -> int:
        return self.mesh.numberofelements

    def replace(self, **changes: Any) -> "ModelState":
        """A copy with some top-level fields replaced (the state itself is immutable)."""
        return replace(self, **changes)

    def field_names(self) -> list[str]:
        return [f.name for f in fields(self)]
