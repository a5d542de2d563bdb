"""The demo's and the evaluation's figures carry what a slide needs: colour bars with units, grounding line
and ice front on the maps, titles with parameter values (with units) and rounded times, the sign of the
difference panels, volume above flotation next to ice volume, and tick labels that do not overlap."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

from issm_emulator.issm.plotting import Panel, format_parameter, format_time, front_segments, map_figure

plt.switch_backend("Agg")


def _mesh(n: int = 9, size: float = 60e3):
    """A square mesh (m) of n x n vertices; grounded for y < size/2, the ice front along y = size."""
    g = np.linspace(0.0, size, n)
    X, Y = np.meshgrid(g, g)
    x, y = X.ravel(), Y.ravel()
    el = []
    for j in range(n - 1):
        for i in range(n - 1):
            a = j * n + i
            el += [[a, a + 1, a + n + 1], [a, a + n + 1, a + n]]
    ocean = size / 2 - y                       # > 0 grounded
    ice = np.where(y >= size * (1 - 1e-9), 0.0, -1.0)  # < 0 ice, 0 on the front
    return x, y, np.asarray(el) + 1, ocean, ice


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _overlaps(labels) -> bool:
    boxes = [t.get_window_extent() for t in labels if t.get_text() and t.get_visible()]
    return any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])


def assert_slide_ready(fig) -> None:
    fig.canvas.draw()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        assert not _overlaps(ax.get_xticklabels()), f"overlapping x tick labels in {ax.get_title()!r}"
        assert not _overlaps(ax.get_yticklabels()), f"overlapping y tick labels in {ax.get_title()!r}"


def test_titles_round_times_and_give_units():
    assert format_time(1.0) == "t = 1.0 yr" and format_time(20.0) == "t = 20.0 yr"
    assert format_time(1 / 12) == "t = 0.08 yr" and format_time(0.99999999) == "t = 1.0 yr"
    assert format_parameter("melt_rate", 20.0, "m yr^-1") == "melt 20 m/yr"
    assert format_parameter("stress_threshold", 1e6, "Pa") == "calving threshold 1e+06 Pa"


def test_map_figure_elements():
    x, y, el, ocean, ice = _mesh()
    h = 500 + y / 100
    panels = [Panel(h, "ice thickness", "m", title="fem", group="a", ocean_levelset=ocean, ice_levelset=ice),
              Panel(h - 3, "ice thickness difference", "m", title="EGCN - fem", kind="difference",
                    sign_note="> 0 (red): EGCN thicker than fem", ocean_levelset=ocean,
                    other_ocean_levelset=ocean - 2e3, other_label="EGCN grounding line", ice_levelset=ice)]
    fig = map_figure(x, y, el, panels, suptitle="Pine Island, melt 20 m/yr, t = 1.0 yr")
    maps = [ax for ax in fig.axes if ax.get_title()]
    cbars = [ax for ax in fig.axes if not ax.get_title()]
    assert [ax.get_title() for ax in maps] == ["fem", "EGCN - fem"]
    labels = [ax.get_ylabel() for ax in cbars]
    assert labels[0] == "ice thickness (m)" and labels[1].startswith("ice thickness difference (m)\n> 0")
    assert fig._suptitle.get_text() == "Pine Island, melt 20 m/yr, t = 1.0 yr"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["grounding line", "EGCN grounding line", "ice front"]
    for ax in maps:
        assert ax.collections[1:], "no grounding line / ice front drawn"
        assert ax.get_xlabel() == "x (km)" and ax.get_ylabel() == "y (km)"
    assert_slide_ready(fig)


def test_front_on_the_mesh_boundary():
    x, y, el, _, ice = _mesh(n=5, size=4.0)
    segs = front_segments(x, y, el - 1, ice)
    assert len(segs) == 4 and all(np.allclose(s[:, 1], 4.0) for s in segs)


def _results_md():
    from modelfactory import make_square_shelf_md

    from issm_emulator.issm.results import fill_results
    from issm_emulator.solvers.base import SolverResult

    yts = 365.0 * 24 * 3600
    md = make_square_shelf_md(nx=6, ny=6)
    nv = md.mesh.numberofvertices
    ocean = 5e5 - np.asarray(md.mesh.y, float)
    ice = np.where(np.asarray(md.mesh.y) >= np.max(md.mesh.y), 0.0, -1.0)
    steps = [{"step": k, "time": k * yts, "Vx": np.full(nv, 100.0 * k / yts), "Vy": np.zeros(nv),
              "Thickness": md.geometry.thickness - k, "IceVolume": 5e12 - k * 1e10,
              "IceVolumeAboveFloatation": 1e12 - k * 1e10, "MaskOceanLevelset": ocean, "MaskIceLevelset": ice}
             for k in (1, 2)]
    fill_results(md, SolverResult("TransientSolution", steps), yts)
    return md


def test_demo_figures(tmp_path, monkeypatch):
    import issm_emulator
    from issm_emulator.demo import _maps

    ds = issm_emulator.to_xarray(_results_md())
    emu = ds.copy(deep=True)
    emu["Thickness"] = emu["Thickness"] + 1.0
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)  # keep the figures to inspect them
    files = _maps(tmp_path, ds, emu, "Pine Island, " + format_parameter("melt_rate", 20, "m yr^-1"))
    assert set(files) == {"thickness", "speed", "ice_volume"} and all(p.is_file() for p in files.values())
    figs = [plt.figure(n) for n in plt.get_fignums()]
    thickness, speed, volume = figs
    assert thickness._suptitle.get_text() == "Pine Island, melt 20 m/yr, t = 2.0 yr"
    cbar_labels = [ax.get_ylabel() for ax in thickness.axes if not ax.get_title()]
    assert cbar_labels[:2] == ["ice thickness (m)"] * 2 and "> 0 (red): EGCN thicker" in cbar_labels[2]
    assert next(ax.get_ylabel() for ax in speed.axes if not ax.get_title()) == "ice speed (m/yr)"
    assert thickness.legends[0].get_texts()[0].get_text() == "grounding line"
    assert "ice front" in [t.get_text() for t in thickness.legends[0].get_texts()]
    assert [ax.get_ylabel() for ax in volume.axes] == ["ice volume (km³)", "volume above flotation (km³)"]
    for fig in figs:
        assert_slide_ready(fig)


def test_evaluation_figures(tmp_path, monkeypatch):
    from issm_emulator.learning.evaluate import RunPrediction, _plots

    x, y, el, ocean, ice = _mesh()
    nv, t = x.size, np.array([1 / 12, 1.0])
    true = {"vx": np.full((2, nv), 300.0), "vy": np.zeros((2, nv)), "thickness": np.full((2, nv), 400.0)}
    pred = {k: v + 1.0 for k, v in true.items()}
    rp = RunPrediction(3, 20.0, t, true, pred, levelsets={"ocean_levelset": np.stack([ocean] * 2),
                                                          "ice_levelset": np.stack([ice] * 2)})
    rp.series = {"time": np.array([0.0, *t]), "volume_true": np.ones(3) * 1e12, "volume_pred": np.ones(3) * 1e12,
                 "grounded_area_true": np.ones(3) * 1e9, "grounded_area_pred": np.ones(3) * 1e9}
    pm = SimpleNamespace(x=x, y=y, elements=el - 1)
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    files = _plots(tmp_path, [rp], pm, None, 4, "melt_rate", "rollout", units="m yr^-1")
    assert all(p.is_file() for p in files.values())
    maps, series = (plt.figure(n) for n in plt.get_fignums())
    assert maps._suptitle.get_text() == "run 3: melt 20 m/yr (rollout)"
    titles = [ax.get_title() for ax in maps.axes if ax.get_title()]
    assert titles[:3] == ["FE speed, t = 0.08 yr", "emulator - FE speed, t = 0.08 yr",
                          "emulator - FE thickness, t = 0.08 yr"] and titles[3] == "FE speed, t = 1.0 yr"
    cbar = [ax.get_ylabel() for ax in maps.axes if not ax.get_title()]
    assert cbar[0] == "FE ice speed (m/yr)" and cbar[1] == "speed error (m/yr)\n> 0 (red): emulator faster"
    assert cbar[2] == "thickness error (m)\n> 0 (red): emulator thicker"
    assert {t.get_text() for t in maps.legends[0].get_texts()} == {"grounding line", "ice front"}
    assert [ax.get_ylabel() for ax in series.axes] == ["ice volume (km³)", "grounded area (km²)"]
    for fig in (maps, series):
        assert_slide_ready(fig)
