"""Solution names as pyISSM's solve parses them."""

from __future__ import annotations

import pytest

from issm_emulator.errors import UnknownSolutionError
from issm_emulator.issm.solutions import ISSM_SOLUTIONS, SUPPORTED_SOLUTIONS, parse_solution


@pytest.mark.parametrize("name", ["tr", "TR", "transient", "Transient", "TransientSolution",
                                  "transientsolution", " tr "])
def test_transient_forms(name):
    assert parse_solution(name) == "TransientSolution"


@pytest.mark.parametrize("name", ["sb", "SB", "stressbalance", "Stressbalance", "StressbalanceSolution",
                                  "STRESSBALANCESOLUTION"])
def test_stressbalance_forms(name):
    assert parse_solution(name) == "StressbalanceSolution"


def test_table_matches_pyissm():
    pytest.importorskip("pyissm")
    import inspect

    from pyissm.model import execute

    src = inspect.getsource(execute.solve)
    for short, full in ISSM_SOLUTIONS.items():
        assert f"'{short}': '{full}'" in src


@pytest.mark.parametrize("name", sorted(set(ISSM_SOLUTIONS) - {"tr", "transient", "sb", "stressbalance"})
                         + ["MasstransportSolution", "ThermalSolution"])
def test_other_issm_solutions_rejected_with_choices(name):
    with pytest.raises(UnknownSolutionError) as exc:
        parse_solution(name)
    msg = str(exc.value)
    assert "does not implement" in msg
    assert all(s in msg for s in SUPPORTED_SOLUTIONS) and "'tr'" in msg and "'sb'" in msg


@pytest.mark.parametrize("name", ["", "trans", "xyz", "Transient Solution", None, 3])
def test_garbage_rejected(name):
    with pytest.raises(UnknownSolutionError, match="TransientSolution.*StressbalanceSolution"):
        parse_solution(name)
