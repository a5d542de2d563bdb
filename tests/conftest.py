"""Shared test fixtures.

ISSM's test data live in ``../shared/data/issm`` beside the checkout (in CI too). Tests that need them use
the ``issm_data_dir`` fixture, which points ``ISSM_EMULATOR_DATA_DIR`` there and skips cleanly when the
folder is absent.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("USER", "issm-emulator-tests")  # pyISSM's Model() reads $USER
warnings.filterwarnings("ignore", message="pyissm.model.classes.cluster.generic")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "issm"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The read-only ``../shared/data/issm`` folder, or skip."""
    if not (SHARED_DATA / "Pig.arch").is_file():
        pytest.skip(f"ISSM test data not found at {SHARED_DATA} (../shared/data/issm beside the checkout)")
    return SHARED_DATA


@pytest.fixture()
def issm_data_dir(shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the data cache (``ISSM_EMULATOR_DATA_DIR``) at the shared ISSM data, or skip."""
    monkeypatch.setenv("ISSM_EMULATOR_DATA_DIR", str(shared_data_dir))
    return shared_data_dir


@pytest.fixture(scope="session")
def ens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-run square-melt ensemble (melt 0-20 m/yr, 26 vertices, 3 yearly steps), generated once per session
    and shared read-only by the dataset, training and evaluation tests (split: train 5 and 15, validation
    10, test 0 and 20 m/yr)."""
    from issm_emulator.datasets import EnsembleSpec, generate_ensemble

    spec = EnsembleSpec(scenario="square_melt", parameter="melt_rate", values=[0, 5, 10, 15, 20], units="m yr^-1",
                        scenario_kwargs={"resolution": 200e3}, years=3.0, time_step=1.0, name="square-melt",
                        split_rule="square-melt")
    return generate_ensemble(spec, tmp_path_factory.mktemp("ens"), workers=0, progress=False)


@pytest.fixture(scope="session")
def ens_fine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep of :func:`ens` on a finer mesh of the same square (150 km instead of 200 km), for the
    tests of training on several meshes."""
    from issm_emulator.datasets import EnsembleSpec, generate_ensemble

    spec = EnsembleSpec(scenario="square_melt", parameter="melt_rate", values=[0, 5, 10, 15, 20], units="m yr^-1",
                        scenario_kwargs={"resolution": 150e3}, years=3.0, time_step=1.0, name="square-melt-fine",
                        split_rule="square-melt")
    return generate_ensemble(spec, tmp_path_factory.mktemp("ens_fine"), workers=0, progress=False)
