"""Ensemble folders (issm_emulator.datasets.guard): two concurrent generations, a stale lock, a changed spec,
an unreadable run file, a killed generation's workers, run-count and disk limits. Runs are the 26-vertex
square shelf for one year; the slow scenario below sleeps so that a generation is caught mid-run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner

from issm_emulator.datasets import EnsembleSpec, generate_ensemble, guard, parse_values, run_file_for
from issm_emulator.datasets.guard import FolderLockedError, SpecMismatchError, SweepTooLargeError
from issm_emulator.datasets.layout import RUNS_DIR

ROOT = Path(__file__).resolve().parents[1]
SLOW = "tests.test_guard:slow_square"


def slow_square(resolution=200e3, melt_rate=0.0, *, years=1.0, time_step=1.0, output_frequency=1):
    """``square_melt``, after leaving ``started-<pid>`` in ``$GUARD_TEST_MARKERS`` and sleeping
    ``$GUARD_TEST_SLEEP`` seconds when the melt rate is at least ``$GUARD_TEST_SLOW_FROM`` (default 0)."""
    from issm_emulator.datasets.sweeps import square_melt

    markers = os.environ.get("GUARD_TEST_MARKERS")
    if markers:
        Path(markers, f"started-{os.getpid()}").touch()
    if float(getattr(melt_rate, "magnitude", melt_rate)) >= float(os.environ.get("GUARD_TEST_SLOW_FROM", "0")):
        time.sleep(float(os.environ.get("GUARD_TEST_SLEEP", "0")))
    return square_melt(resolution, melt_rate, years=years, time_step=time_step, output_frequency=output_frequency)


def _spec(values, years=1.0):
    return EnsembleSpec(scenario=SLOW, parameter="melt_rate", values=values, units="m yr^-1", years=years,
                        time_step=1.0, name="guard-test")


def _start_generation(out: Path, markers: Path, values, workers: int, **env) -> subprocess.Popen:
    # Ctrl-C as in a terminal: a process started in the background by a non-interactive shell (as CI may
    # run the suite) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from tests.test_guard import _spec; from issm_emulator.datasets import generate_ensemble; "
            f"generate_ensemble(_spec({values!r}), sys.argv[1], workers={workers}, progress=False, check_disk=False)")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "GUARD_TEST_MARKERS": str(markers),
                "GUARD_TEST_SLEEP": "300", **env}
    return subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_markers(markers: Path, n: int, proc: subprocess.Popen, timeout: float = 90.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = [int(p.name.split("-")[1]) for p in markers.glob("started-*")]
        if len(pids) >= n:
            return pids
        if proc.poll() is not None:
            raise AssertionError(f"the generation ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{n} run(s) did not start within {timeout} s")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - not Linux
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _snapshot(runs: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(runs.glob("*.nc"))}


def test_second_writer_is_refused_and_stale_lock_taken_over(tmp_path):
    out, markers = tmp_path / "ens", tmp_path / "markers"
    markers.mkdir()
    generate_ensemble(_spec([0.0, 1.0]), out, workers=0, progress=False)
    before = _snapshot(out / RUNS_DIR)
    assert len(before) == 2
    # a second generation (run 2 sleeps) holds the folder
    proc = _start_generation(out, markers, [0.0, 1.0, 2.0], 0, GUARD_TEST_SLOW_FROM="2")
    try:
        _wait_markers(markers, 1, proc)
        for spec in (_spec([0.0, 1.0], years=2.0), _spec([0.0, 1.0, 2.0])):
            with pytest.raises(FolderLockedError) as info:
                generate_ensemble(spec, out, workers=0, progress=False)
            msg = str(info.value)
            assert f"pid {proc.pid} on host {socket.gethostname()}" in msg and str(out) in msg
        assert _snapshot(out / RUNS_DIR) == before  # finished runs untouched
    finally:
        proc.kill()
        proc.wait()
    # the killed holder left its lock file: taken over with a warning naming it
    assert json.loads((out / guard.LOCK_FILE).read_text())["pid"] == proc.pid
    with pytest.warns(RuntimeWarning, match=f"taking over the lock .*pid {proc.pid}"):
        path = generate_ensemble(_spec([0.0, 1.0, 2.0]), out, workers=0, progress=False)
    with xr.open_dataset(path) as ds:
        assert ds.melt_rate.values.tolist() == [0.0, 1.0, 2.0]
    assert {k: v for k, v in _snapshot(out / RUNS_DIR).items() if k in before} == before
    assert not (out / guard.LOCK_FILE).exists()  # released on a normal end


def test_changed_spec_is_refused_with_the_differences(tmp_path):
    generate_ensemble(_spec([0.0]), tmp_path, workers=0, progress=False)
    before = _snapshot(tmp_path / RUNS_DIR)
    changed = EnsembleSpec(scenario=SLOW, parameter="melt_rate", values=[0.0], units="m yr^-1", years=2.0,
                           time_step=1.0, name="guard-test", solver_options={"restol": 1e-3})
    with pytest.raises(SpecMismatchError) as info:
        generate_ensemble(changed, tmp_path, workers=0, progress=False)
    msg = str(info.value)
    assert "2 difference(s)" in msg and "years: 1.0 -> 2.0" in msg and 'solver_options.restol: null -> 0.001' in msg
    assert _snapshot(tmp_path / RUNS_DIR) == before
    generate_ensemble(_spec([0.0, 3.0]), tmp_path, workers=0, progress=False)  # other values: fine


def test_truncated_run_file_is_named_set_aside_and_recomputed(tmp_path):
    generate_ensemble(_spec([0.0, 1.0]), tmp_path, workers=0, progress=False)
    spec = _spec([0.0, 1.0])
    bad = tmp_path / RUNS_DIR / run_file_for(spec.value_coords(1.0), spec.fingerprint(1.0))
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])  # the header (and the attributes) still read
    with pytest.warns(RuntimeWarning, match=f"run file {bad} is unreadable"):
        path = generate_ensemble(_spec([0.0, 1.0]), tmp_path, workers=0, progress=False)
    aside = list((tmp_path / RUNS_DIR / "corrupt").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith(bad.name) and aside[0].stat().st_size < len(data)
    with xr.open_dataset(path) as ds:
        assert ds.melt_rate.values.tolist() == [0.0, 1.0] and bool(ds.thickness.notnull().all())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_generation_leaves_no_workers(tmp_path, sig):
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = _start_generation(tmp_path / "ens", markers, [0.0, 1.0], 2)
    try:
        workers = _wait_markers(markers, 2, proc)
        assert proc.pid not in workers
        proc.send_signal(sig)
        proc.wait(timeout=120)  # generous: the machine may be busy
        end = time.monotonic() + 60
        while any(_alive(p) for p in workers) and time.monotonic() < end:
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], f"workers left running after {sig.name}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in markers.glob("started-*"):
            try:
                os.kill(int(p.name.split("-")[1]), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_run_count_and_disk_limits(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="more than the 1000000"):
        parse_values("0:1e9:1")  # refused before anything is expanded
    with pytest.raises(SweepTooLargeError, match=r"12 runs, more than the limit of 10.*max_runs"):
        generate_ensemble(_spec([float(i) for i in range(12)]), tmp_path / "a", max_runs=10, progress=False)
    assert not (tmp_path / "a").exists()

    class Usage:
        free = 50_000  # bytes

    monkeypatch.setattr(guard.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(SweepTooLargeError, match=r"needs about .* MB .* has 0\.05 MB free.*check_disk=False"):
        generate_ensemble(_spec([0.0, 1.0]), tmp_path / "b", workers=0, progress=False)
    assert not list((tmp_path / "b").rglob("*.nc"))
    path = generate_ensemble(_spec([0.0, 1.0]), tmp_path / "b", workers=0, progress=False, check_disk=False)
    assert path.is_file()


def test_cli_limits(tmp_path, monkeypatch):
    from issm_emulator.datasets import cli as dcli

    res = CliRunner().invoke(dcli.generate, ["square-melt", "--melt-rates", "0:20000:1", "--out", str(tmp_path / "c"),
                                             "--no-progress"])
    assert res.exit_code != 0 and "20001 runs" in res.output and "--max-runs" in res.output

    class Usage:
        free = 1000

    monkeypatch.setattr(guard.shutil, "disk_usage", lambda path: Usage)
    args = ["square-melt", "--melt-rates", "0", "--years", "1", "--out", str(tmp_path / "d"), "--workers", "0",
            "--no-progress"]
    res = CliRunner().invoke(dcli.generate, args)
    assert res.exit_code != 0 and "--ignore-disk-space" in res.output
    res = CliRunner().invoke(dcli.generate, args + ["--ignore-disk-space"])
    assert res.exit_code == 0, res.output
