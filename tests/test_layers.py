"""The package's import layering: imports flow one way, from the command line down to the state.

:data:`LAYERS` is the one table of the layers (``docs/architecture.md`` draws it). Every module of the
package belongs to exactly one layer, found by the longest matching prefix; a module may import modules of
its own layer or of lower layers, never of a higher one, and no two modules may import each other, directly
or through others. Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "issm_emulator"

#: (layer number, module prefixes), bottom first. A prefix names a module or a package (and its modules).
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("issm_emulator._version", "issm_emulator.errors", "issm_emulator.state", "issm_emulator.units",
         "issm_emulator.graph", "issm_emulator.progress", "issm_emulator._download", "issm_emulator.data",
         "issm_emulator._files",
         "issm_emulator.weights")),
    (1, ("issm_emulator.physics",)),
    (2, ("issm_emulator.nn",)),
    (3, ("issm_emulator.solvers",)),
    (4, ("issm_emulator.issm", "issm_emulator.plugins", "issm_emulator.api", "issm_emulator.ensemble_api")),
    (5, ("issm_emulator.scenarios",)),
    (6, ("issm_emulator.datasets", "issm_emulator.validation")),
    (7, ("issm_emulator.learning",)),
    # the command line: the root package (whose lazy attributes reach every layer), the main program, the
    # demo it runs, and one module of commands per package
    (8, ("issm_emulator", "issm_emulator.cli", "issm_emulator.demo", "issm_emulator.datasets.cli",
         "issm_emulator.learning.cli", "issm_emulator.learning.__main__", "issm_emulator.weights.cli",
         "issm_emulator.solvers.emulator.cli")),
]

#: a module longer than this must say in its docstring that it does one job ("One job: ...")
MAX_LINES = 600


def module_files(pkg: Path = PKG) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their ``__init__``)."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(pkg.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int:
    """The layer of ``module``: the entry of :data:`LAYERS` with the longest prefix matching it."""
    best, best_len = None, -1
    for number, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = number, len(p)
    if best is None:
        raise KeyError(f"{module} is in no layer of tests/test_layers.py: LAYERS; add it there")
    return best


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``module`` imports (``from A import b`` counts as ``A.b`` when that is a
    module, else as ``A``; ``import A.b.c`` as its longest prefix that is a module)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def nearest(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_pkg else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in targets:
            if t == "issm_emulator" or t.startswith("issm_emulator."):
                m = nearest(t)
                if m is not None and m != module:
                    found.add(m)
    return found


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    modules = module_files(pkg)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                  for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))


# ------------------------------------------------------------------------------------------------- tests
def test_every_module_has_a_layer():
    missing = []
    for m in module_files():
        try:
            layer_of(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"modules in no layer (add them to LAYERS): {missing}"


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_imports_flow_downward():
    bad = upward_imports(import_graph())
    assert not bad, "imports from a lower layer into a higher one:\n" + "\n".join(bad)


def test_networks_import_only_torch_and_lower_layers():
    graph = import_graph()
    nn_mods = [m for m in graph if m == "issm_emulator.nn" or m.startswith("issm_emulator.nn.")]
    assert nn_mods
    bad = [f"{m} -> {t}" for m in nn_mods for t in graph[m] if layer_of(t) > layer_of("issm_emulator.nn")]
    assert not bad


def test_long_modules_do_one_job():
    long = []
    for m, path in module_files().items():
        n = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if n > MAX_LINES and "One job:" not in doc:
            long.append(f"{m}: {n} lines")
    assert not long, (f"modules over {MAX_LINES} lines whose docstring does not say 'One job: ...' "
                      f"(split them by job): {long}")


# ----------------------------------------------------------------------------- the checker checks itself
def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "issm_emulator"


def test_checker_finds_a_cycle_and_an_upward_import(tmp_path):
    pkg = _write(tmp_path, {
        "issm_emulator/__init__.py": "",
        "issm_emulator/errors.py": "from issm_emulator.nn import net\n",        # layer 0 -> 2: upward
        "issm_emulator/nn/__init__.py": "",
        "issm_emulator/nn/net.py": "def f():\n    from . import other\n",       # lazy, relative
        "issm_emulator/nn/other.py": "import issm_emulator.nn.net\n",            # net <-> other: a cycle
    })
    graph = import_graph(pkg)
    assert graph["issm_emulator.nn.net"] == {"issm_emulator.nn.other"}
    assert cycles(graph) == [["issm_emulator.nn.net", "issm_emulator.nn.other"]]
    assert upward_imports(graph) == ["issm_emulator.errors (layer 0) imports issm_emulator.nn.net (layer 2)"]


def test_checker_accepts_downward_imports(tmp_path):
    pkg = _write(tmp_path, {
        "issm_emulator/__init__.py": "from issm_emulator.errors import E\n",
        "issm_emulator/errors.py": "E = 1\n",
        "issm_emulator/solvers/__init__.py": "",
        "issm_emulator/solvers/a.py": "from issm_emulator import errors\nfrom ..nn import net\n",
        "issm_emulator/nn/__init__.py": "",
        "issm_emulator/nn/net.py": "from issm_emulator.errors import E\n",
    })
    graph = import_graph(pkg)
    assert graph["issm_emulator.solvers.a"] == {"issm_emulator.errors", "issm_emulator.nn.net"}
    assert cycles(graph) == [] and upward_imports(graph) == []


def test_unknown_module_is_named():
    with pytest.raises(KeyError, match="issmx"):
        layer_of("issmx.thing")
