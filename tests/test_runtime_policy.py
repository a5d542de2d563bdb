"""The emulator runtime's policy: graphs per forward pass, intra-op threads, torch.compile fallback, and the
direct mode's pass count (counters, never timings)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from issm_emulator.errors import UnsupportedOptionError
from issm_emulator.issm.adapter import read_model
from issm_emulator.solvers.emulator import network
from issm_emulator.solvers.emulator.direct import direct_transient_many
from issm_emulator.solvers.emulator.network import RuntimePolicy, intra_op_threads
from issm_emulator.solvers.emulator.step import rollout_step
from issm_emulator.state import YTS_DEFAULT
from tests.modelfactory import make_square_shelf_md
from tests.test_rollout import make_checkpoint

YTS = YTS_DEFAULT
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shelf_state():
    return read_model(make_square_shelf_md(6, 6), "TransientSolution")


def test_default_batch_by_device_and_graph_size(monkeypatch):
    monkeypatch.delenv("ISSM_EMULATOR_BATCH_SIZE", raising=False)
    p = RuntimePolicy()
    small = network.CPU_BATCH_VERTICES // 10
    assert p.graphs_per_pass(CPU, small, 100) == 10             # CPU: a pass of about CPU_BATCH_VERTICES
    assert p.graphs_per_pass(CPU, 10 * network.CPU_BATCH_VERTICES, 100) == 1
    assert p.graphs_per_pass(CPU, small, 3) == 3                # never more graphs than asked for
    assert p.graphs_per_pass(torch.device("cuda"), 1800, 240) == 240   # CUDA: everything at once
    assert RuntimePolicy(batch_size=7).graphs_per_pass(CPU, 1800, 240) == 7
    monkeypatch.setenv("ISSM_EMULATOR_BATCH_SIZE", "5")
    assert RuntimePolicy().graphs_per_pass(CPU, 1800, 240) == 5
    assert RuntimePolicy(batch_size=2).graphs_per_pass(CPU, 1800, 240) == 2   # the option beats the variable
    monkeypatch.setenv("ISSM_EMULATOR_BATCH_SIZE", "zero")
    with pytest.raises(UnsupportedOptionError, match="ISSM_EMULATOR_BATCH_SIZE"):
        RuntimePolicy().graphs_per_pass(CPU, 1800, 240)


def test_default_threads_by_pass_size(monkeypatch):
    monkeypatch.delenv("ISSM_EMULATOR_THREADS", raising=False)
    p = RuntimePolicy()
    assert p.intra_op_threads(CPU, network.CPU_SMALL_PASS_VERTICES - 1) == network.CPU_THREADS_SMALL
    big = p.intra_op_threads(CPU, network.CPU_SMALL_PASS_VERTICES * 10)
    assert 1 <= big <= network.CPU_THREADS_MAX
    assert p.intra_op_threads(torch.device("cuda"), 10) is None         # CUDA: torch's own setting
    assert RuntimePolicy(threads=3).intra_op_threads(CPU, 10) == 3
    monkeypatch.setenv("ISSM_EMULATOR_THREADS", "2")
    assert RuntimePolicy().intra_op_threads(CPU, 10) == 2
    with pytest.raises(UnsupportedOptionError, match="threads"):
        RuntimePolicy(threads=0).intra_op_threads(CPU, 10)


def test_idle_cores_follows_the_load(monkeypatch):
    monkeypatch.setattr(network.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(network.os, "getloadavg", lambda: (1.0, 1.0, 1.0))   # only this process runs
    assert network.idle_cores() == 4
    monkeypatch.setattr(network.os, "getloadavg", lambda: (3.2, 3.0, 3.0))   # two other jobs busy
    assert network.idle_cores() == 2
    monkeypatch.setattr(network.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert network.idle_cores() == 1
    monkeypatch.setenv("ISSM_EMULATOR_THREADS", "")
    monkeypatch.setattr(network.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert RuntimePolicy().intra_op_threads(CPU, 1814) == min(4, network.CPU_THREADS_MAX)


def test_threads_are_restored():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with intra_op_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), intra_op_threads(other):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_threads_option_is_used_and_reported(tmp_path, shelf_state):
    ck = make_checkpoint(tmp_path / "s.pt", "egcn", "step", shelf_state)
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    res = rollout_step(ck, shelf_state, threads=other)
    assert res.info["torch_threads"] == other
    assert torch.get_num_threads() == before


def test_direct_mode_costs_one_graph_per_requested_output(tmp_path, shelf_state):
    """Monthly steps for 3 years with yearly outputs: 3 graphs, not 36."""
    ck = make_checkpoint(tmp_path / "d.pt", "egcn", "direct", shelf_state)
    ts = shelf_state.timestepping
    st = shelf_state.replace(timestepping=type(ts)(start_time=0.0, final_time=3 * YTS, time_step=YTS / 12,
                                                   interp_forcing=1), output_frequency=12)
    res = direct_transient_many(ck, [st], batch_size=1)[0]
    assert res.info["nsteps"] == 36
    assert [s["step"] for s in res.steps] == [1, 12, 24, 36]     # ISSM's schedule: first, every 12th, last
    assert res.info["graphs_evaluated"] == res.info["outputs"] == 4
    assert res.info["forward_passes"] == 4                       # batch_size=1: one pass per output
    batched = direct_transient_many(ck, [st], batch_size=4)[0]
    assert batched.info["forward_passes"] == 1 and batched.info["graphs_evaluated"] == 4
    for a, b in zip(res.steps, batched.steps):
        np.testing.assert_allclose(a["Thickness"], b["Thickness"], rtol=1e-5)


def test_compile_falls_back_with_a_warning(tmp_path, shelf_state, monkeypatch):
    ck = make_checkpoint(tmp_path / "s.pt", "egcn", "step", shelf_state)
    eager = rollout_step(ck, shelf_state)

    def broken(model, **kw):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = rollout_step(ck, shelf_state, compile=True)
    assert any("running the network eagerly" in str(w.message) and "no compiler here" in str(w.message)
               for w in rec)
    assert res.info["compiled"] is False and "no compiler here" in res.info["compile_fallback"]
    np.testing.assert_array_equal(res.steps[-1]["Thickness"], eager.steps[-1]["Thickness"])


def test_compile_failing_at_first_call_falls_back(tmp_path, shelf_state, monkeypatch):
    ck = make_checkpoint(tmp_path / "s.pt", "egcn", "step", shelf_state)
    eager = rollout_step(ck, shelf_state)

    def lazy_failure(model, **kw):
        def run(*args, **kwargs):
            raise RuntimeError("backend missing at first call")
        return run

    monkeypatch.setattr(torch, "compile", lazy_failure)
    with pytest.warns(RuntimeWarning, match="backend missing at first call"):
        res = rollout_step(ck, shelf_state, compile=True)
    assert res.info["compiled"] is False
    np.testing.assert_array_equal(res.steps[-1]["Thickness"], eager.steps[-1]["Thickness"])


def test_compile_reports_first_call_cost(tmp_path, shelf_state, monkeypatch):
    ck = make_checkpoint(tmp_path / "s.pt", "egcn", "step", shelf_state)
    monkeypatch.setattr(torch, "compile", lambda model, **kw: (lambda *a, **k: model(*a, **k)))
    res = rollout_step(ck, shelf_state, compile=True)
    assert res.info["compiled"] is True and res.info["compile_first_call_s"] >= 0.0


def test_solver_options_are_checked():
    from issm_emulator.solvers.emulator import EGCNSolver

    s = EGCNSolver()
    s.check_options({"threads": 2, "compile": True, "batch_size": 4})
    with pytest.raises(UnsupportedOptionError, match="threads"):
        s.check_options({"threads": 0})
    with pytest.raises(UnsupportedOptionError, match="compile"):
        s.check_options({"compile": "yes"})


def test_edge_geometry_is_computed_once_per_graph_not_per_pass(tmp_path, shelf_state, monkeypatch):
    """A step rollout computes the EGCN's edge geometry once for its graph and passes it to every forward
    pass; the result is the same as with the geometry computed inside each pass."""
    from issm_emulator.nn.egcn import EGCN

    ck = make_checkpoint(tmp_path / "g.pt", "egcn", "step", shelf_state)
    ref = rollout_step(ck, shelf_state)
    calls = []
    original = EGCN.graph_geometry

    def counted(graph, dtype):
        calls.append(dtype)
        return original(graph, dtype)

    monkeypatch.setattr(EGCN, "graph_geometry", staticmethod(counted))
    res = rollout_step(ck, shelf_state)
    assert res.info["forward_passes"] == len(res.steps) > 1 and len(calls) == 1
    for a, b in zip(ref.steps, res.steps):
        np.testing.assert_array_equal(a["Vx"], b["Vx"])
        np.testing.assert_array_equal(a["Thickness"], b["Thickness"])
