"""ISSM solution names: parsing the ``solution_string`` of ``solve`` as pyISSM does.

ISSM accepts, case-insensitively, a short form (``'tr'``), a long form (``'transient'``) and the full name
(``'TransientSolution'``). issm-emulator implements two of ISSM's solutions; every other ISSM solution name
is recognised (so the error can say so) and rejected with :class:`~issm_emulator.errors.UnknownSolutionError`.
"""

from __future__ import annotations

from issm_emulator.errors import UnknownSolutionError

TRANSIENT = "TransientSolution"
STRESSBALANCE = "StressbalanceSolution"
SUPPORTED_SOLUTIONS = (TRANSIENT, STRESSBALANCE)

#: Every solution name of ``pyissm.model.execute.solve`` (short and long forms) -> ISSM solution name.
ISSM_SOLUTIONS = {
    "sb": STRESSBALANCE, "stressbalance": STRESSBALANCE,
    "mt": "MasstransportSolution", "masstransport": "MasstransportSolution",
    "oceant": "OceantransportSolution", "oceantransport": "OceantransportSolution",
    "th": "ThermalSolution", "thermal": "ThermalSolution",
    "st": "SteadystateSolution", "steadystate": "SteadystateSolution",
    "tr": TRANSIENT, "transient": TRANSIENT,
    "mc": "BalancethicknessSolution", "balancethickness": "BalancethicknessSolution",
    "mcsoft": "BalancethicknessSoftSolution",
    "bv": "BalancevelocitySolution", "balancevelocity": "BalancevelocitySolution",
    "bsl": "BedSlopeSolution", "bedslope": "BedSlopeSolution",
    "ssl": "SurfaceSlopeSolution", "surfaceslope": "SurfaceSlopeSolution",
    "hy": "HydrologySolution", "hydrology": "HydrologySolution",
    "da": "DamageEvolutionSolution", "damageevolution": "DamageEvolutionSolution",
    "gia": "GiaSolution",
    "lv": "LoveSolution", "love": "LoveSolution",
    "esa": "EsaSolution",
    "smp": "SamplingSolution", "sampling": "SamplingSolution",
}
# Full names ('TransientSolution', case-insensitive) are accepted too.
_LOOKUP = {**ISSM_SOLUTIONS, **{full.lower(): full for full in ISSM_SOLUTIONS.values()}}


def _supported_forms() -> str:
    forms = []
    for full in SUPPORTED_SOLUTIONS:
        names = sorted((k for k, v in ISSM_SOLUTIONS.items() if v == full), key=len)
        forms.append(f"{full} ({', '.join(repr(n) for n in names)})")
    return "; ".join(forms)


def parse_solution(solution_string: str) -> str:
    """ISSM's solution name for ``solution_string``.

    Parameters
    ----------
    solution_string : str
        ``'tr'``, ``'transient'``, ``'TransientSolution'``, ``'sb'``, ``'stressbalance'`` or
        ``'StressbalanceSolution'``, in any case; surrounding whitespace is ignored.

    Returns
    -------
    str
        ``'TransientSolution'`` or ``'StressbalanceSolution'``.

    Raises
    ------
    UnknownSolutionError
        For any other ISSM solution (``'mt'``, ``'th'``, ...) or an unrecognised string; the message lists
        the supported solutions.
    """
    if not isinstance(solution_string, str):
        raise UnknownSolutionError(f"solution_string: expected a str such as 'Transient' or 'sb', got "
                                   f"{type(solution_string).__name__}; supported: {_supported_forms()}")
    key = solution_string.strip().lower()
    full = _LOOKUP.get(key)
    if full in SUPPORTED_SOLUTIONS:
        return full
    if full is not None:
        raise UnknownSolutionError(f"solution {solution_string!r} ({full}) is an ISSM solution that "
                                   f"issm-emulator does not implement; supported: {_supported_forms()}")
    raise UnknownSolutionError(f"solution {solution_string!r} is not an ISSM solution name; supported: "
                               f"{_supported_forms()}")
