"""The shared transient loop (issm_emulator.solvers.transient) with velocity providers other than the SSA."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from issm_emulator.errors import EmulatorDivergedError, SolverDivergedError
from issm_emulator.issm.adapter import read_model
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers import transient as tr
from issm_emulator.solvers.fem import FEMSolver
from tests.modelfactory import make_square_shelf_md

YTS = 365.0 * 24 * 3600


def _state(nx=5, *, final=3.0, dt=1.0, freq=1, requested=("default",), **md_edits):
    md = make_square_shelf_md(nx, nx)
    nv = md.mesh.numberofvertices
    md.timestepping.final_time = final
    md.timestepping.time_step = dt
    md.settings.output_frequency = freq
    md.transient.requested_outputs = list(requested)
    md.smb.mass_balance = np.full(nv, 0.3)
    md.basalforcings.floatingice_melting_rate = np.full(nv, 2.0)
    for k, v in md_edits.items():
        obj, attr = k.split("__")
        setattr(getattr(md, obj), attr, v)
    return read_model(md, "TransientSolution")


def _uniform(speed_myr: float):
    """A velocity provider: uniform flow in +x, recording what it was given."""
    calls = []

    def velocity(state, geometry, vx_prev, vy_prev, t, step):
        calls.append((step, t, np.array(geometry.thickness), np.array(vx_prev), np.array(geometry.forcing.smb)))
        n = state.numberofvertices
        return np.full(n, speed_myr / YTS), np.zeros(n), {"niter": 2}

    return velocity, calls


def test_schedule_shortens_the_last_step_and_flags_outputs():
    st = _state(final=2.5, dt=0.5, freq=2)
    sched = tr.transient_schedule(st)
    assert [s.step for s in sched] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([s.time / YTS for s in sched], [0.5, 1.0, 1.5, 2.0, 2.5])
    assert [s.step for s in sched if s.output] == [1, 2, 4, 5]
    st = _state(final=1.25, dt=0.5)
    assert [round(s.dt / YTS, 12) for s in tr.transient_schedule(st)] == [0.5, 0.5, 0.25]


def test_provider_sees_start_of_step_geometry_forcing_and_warm_start():
    st = _state(final=2.0)
    velocity, calls = _uniform(50.0)
    res = tr.run_transient(st, velocity, solver_name="test")
    assert [c[0] for c in calls] == [1, 2]
    np.testing.assert_allclose(calls[0][2], st.geometry.thickness)
    np.testing.assert_allclose(calls[1][2], res.steps[0]["Thickness"])  # start of step 2 = end of step 1
    np.testing.assert_allclose(calls[0][3], st.vx)
    np.testing.assert_allclose(calls[1][3], 50.0 / YTS)
    np.testing.assert_allclose(calls[0][4], 0.3 / YTS)
    assert [s["StressbalanceConvergenceNumSteps"] for s in res.steps] == [2, 2]
    assert res.info["stressbalance_iterations"] == [2, 2]
    np.testing.assert_allclose(res.steps[1]["Pressure"], 917.0 * 9.81 * res.steps[0]["Thickness"])


def test_batched_provider_equals_the_plain_callable_and_members_stop_on_their_own():
    states = [_state(final=3.0), _state(final=1.0), _state(final=2.0, dt=0.5)]
    velocity, _ = _uniform(80.0)

    class Batched:
        def __init__(self):
            self.sizes = []

        def many(self, requests):
            self.sizes.append(len(requests))
            assert all(r.member is not None for r in requests)
            return [velocity(r.state, r.geometry, r.vx_prev, r.vy_prev, r.time, r.step) for r in requests]

    b = Batched()
    many = tr.run_transient_many(states, b, solver_name="test")
    assert b.sizes == [3, 2, 2, 1]  # one call per step; members 1, 0, 2 stop after 1, 3, 4 steps
    for st, r in zip(states, many):
        single = tr.run_transient(st, velocity, solver_name="test")
        assert [s["step"] for s in r.steps] == [s["step"] for s in single.steps]
        for a, c in zip(r.steps, single.steps):
            for name in ("Vx", "Thickness", "Surface", "Base"):
                np.testing.assert_array_equal(a[name], c[name])


def test_ssa_provider_reproduces_the_fem_solver():
    st = _state(final=2.0, requested=("default", "IceVolume", "TotalSmb"))
    ref = FEMSolver().solve(st, "TransientSolution")
    pm = P1Mesh.from_mesh(st.mesh)

    def ssa(state, geometry, vx, vy, t, step):
        res = FEMSolver._ssa(state, pm, H=geometry.thickness, s=geometry.surface, b=geometry.base,
                             phi=geometry.ocean_levelset, ice=geometry.ice_levelset, vx=vx, vy=vy, strict=False,
                             step=step, t=t)
        return res.vx, res.vy, {"niter": res.niter}

    out = tr.run_transient(st, ssa, pmesh=pm, solver_name="fem")
    for a, b in zip(out.steps, ref.steps):
        assert set(a) == set(b)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def test_mass_transport_step_conserves_mass_with_closed_boundary_flow():
    st = _state()
    pm = P1Mesh.from_mesh(st.mesh)
    f = tr.TransientFields.initial(st, pm.elements)
    f.vx = np.zeros_like(f.vx)
    f.vy = np.zeros_like(f.vy)
    forcing = tr.step_forcing(st, YTS, f)
    new = tr.mass_transport_step(st, pm, f, forcing, time=YTS, dt=YTS)
    # no flow: every vertex changes by (smb - floating melt) dt
    np.testing.assert_allclose(new.thickness - f.thickness, (0.3 - 2.0), rtol=1e-9)
    assert new is not f and np.shares_memory(new.bed, f.bed)


def test_outputs_follow_the_request_and_warn_about_unknown_names():
    st = _state(requested=("default", "Foo", "SmbMassBalance", "Vel", "IceVolume", "CalvingCalvingrate"))
    velocity, _ = _uniform(10.0)
    with pytest.warns(UserWarning, match=r"'mine' does not compute the requested output\(s\) Foo, CalvingCalv"):
        res = tr.run_transient(st, velocity, solver_name="mine")
    np.testing.assert_allclose(res.steps[0]["Vel"], 10.0 / YTS)
    s = res.steps[0]
    np.testing.assert_allclose(s["SmbMassBalance"], 0.3 / YTS)
    assert "Foo" not in s and "CalvingCalvingrate" not in s and "DeviatoricStressxx" not in s
    pm = P1Mesh.from_mesh(st.mesh)
    np.testing.assert_allclose(s["IceVolume"], pm.area @ s["Thickness"][st.mesh.elements].mean(axis=1))


def test_divergence_names_member_and_step_with_the_given_error_class():
    good, _ = _uniform(10.0)
    states = [_state(), _state()]

    def velocity(state, geometry, vx, vy, t, step):
        if state is states[1] and step == 2:
            n = state.numberofvertices
            return np.full(n, np.nan), np.zeros(n), {}  # NaN thickness from the mass transport
        return good(state, geometry, vx, vy, t, step)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(EmulatorDivergedError, match=r"step 2 \(t = 2 yr\) \(ensemble member 1\)") as err:
            tr.run_transient_many(states, velocity, solver_name="x", error=EmulatorDivergedError)
    assert err.value.step == 2 and isinstance(err.value, SolverDivergedError)


def test_no_stress_balance_never_calls_the_provider():
    st = _state(transient__isstressbalance=0)

    def velocity(*args):
        raise AssertionError("called")

    res = tr.run_transient(st, velocity, solver_name="test")
    assert len(res.steps) == 3 and "Vx" not in res.steps[0] and res.info["stressbalance_iterations"] == []
