"""The docs agree with the code and the packaging: every page is in the index, the supported Python
versions are stated once and match pyproject.toml, every runtime dependency is used, and swap-solver.md
names the real default solver and the refusal of HO/FS models."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: distribution name -> import name, where they differ
_IMPORT_NAMES = {"torch-geometric": "torch_geometric", "pint-xarray": "pint_xarray", "netcdf4": "netCDF4"}
#: dependencies the package never imports itself, and why they are still runtime dependencies
_NOT_IMPORTED = {"pint-xarray": "registers the ds.pint accessor that docs/swap-solver.md shows for the outputs"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_index_lists_every_page():
    index = (DOCS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([\w.-]+\.md)\)", index))
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages - linked == set(), f"docs/README.md does not list {sorted(pages - linked)}"
    assert linked - pages == set(), f"docs/README.md links missing pages {sorted(linked - pages)}"


def test_python_versions_stated_once_and_matching():
    floor = re.fullmatch(r">=(3\.\d+)", _pyproject()["project"]["requires-python"]).group(1)
    texts = [ROOT / "README.md", *DOCS.glob("*.md")]
    claims = [(p.name, m.group(0)) for p in texts for m in
              re.finditer(r"Python (3\.\d+)( or newer|\+| and (newer|later))", p.read_text())]
    assert len(claims) == 1, claims
    assert claims[0][1] == f"Python {floor} or newer", claims
    assert _pyproject()["tool"]["ruff"]["target-version"] == "py" + floor.replace(".", "")


def test_every_runtime_dependency_is_imported():
    source = "\n".join(p.read_text() for p in (ROOT / "issm_emulator").rglob("*.py"))
    for req in _pyproject()["project"]["dependencies"]:
        dist = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
        module = _IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        used = re.search(rf"^\s*(import|from) {re.escape(module)}\b", source, re.MULTILINE) is not None
        assert used or dist in _NOT_IMPORTED, f"{dist} is a dependency in pyproject.toml but never imported"


def test_swap_solver_doc_matches_the_code():
    import issm_emulator
    from issm_emulator import api, weights

    text = (DOCS / "swap-solver.md").read_text()
    # the default solve chooses an applicable emulator, else fem with a FallbackWarning (api._choose_default)
    assert "### The default solver: an emulator that applies, else `fem`" in text
    assert "FallbackWarning" in text and hasattr(issm_emulator, "FallbackWarning")
    assert "solve_info" in text and callable(api.solve_info)
    assert api.EMULATOR_ARCHS == ("egcn", "gcn", "cnn")
    bundled = {n.rsplit("-", 1)[-1] for n in weights.list_bundled()}
    assert bundled == {"pig"} and "bundles Pine Island weights" in text
    assert "is refused" in text and "isHO" in text and "isFS" in text
    assert "solved as SSA" not in text.replace("never solved as SSA", "")
