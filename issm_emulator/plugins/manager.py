"""The pluggy plugin manager and the solver registry built on it.

Solver backends come from plugins implementing the ``issm_emulator_solvers`` hook
(:mod:`issm_emulator.plugins.hookspecs`). Plugins are found through the entry-point group ``issm_emulator``;
issm-emulator's own solvers are the plugin ``builtin`` (:mod:`issm_emulator.plugins.builtin`) and register
exactly like third-party ones.

Environment variable
--------------------
``ISSM_EMULATOR_PLUGINS``
    Comma-separated allow-list of entry-point names. When set, only the named external plugins load
    (whitespace around names is ignored; an empty value loads no external plugin). The built-in plugin
    ``builtin`` always loads. When unset, every installed plugin loads. The variable is read when a
    manager is created; call :func:`reset_default_manager` after changing it in a running process.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from issm_emulator.errors import DuplicateSolverError, SolverError, UnknownSolverError
from issm_emulator.plugins import hookspecs
from issm_emulator.solvers.base import Solver

ENV_VAR = "ISSM_EMULATOR_PLUGINS"
BUILTIN_PLUGIN = "builtin"
BUILTIN_MODULE = "issm_emulator.plugins.builtin"
DEFAULT_SOLVER_PREFERENCE = ("egcn", "fem")


class PluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers which distribution each entry-point plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.plugin_distributions: dict[str, str] = {}  #: plugin name -> "dist-name version"


def allowed_plugins_from_env(env: dict[str, str] | None = None) -> set[str] | None:
    """The allow-list from ``ISSM_EMULATOR_PLUGINS``, or None when the variable is unset."""
    value = (os.environ if env is None else env).get(ENV_VAR)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def create_plugin_manager(load_entrypoints: bool = True, *,
                          allowed: Iterable[str] | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with issm-emulator's hook specifications.

    Parameters
    ----------
    load_entrypoints : bool
        Load the plugins of the entry-point group ``issm_emulator``. With False the manager is empty
        (register plugin objects yourself with ``pm.register(obj, name=...)``).
    allowed : iterable of str, optional
        Names of external entry points to load; default: ``ISSM_EMULATOR_PLUGINS`` (see the module doc),
        everything when that is unset. ``builtin`` always loads.

    Returns
    -------
    pluggy.PluginManager
    """
    pm = PluginManager()
    if load_entrypoints:
        allow = allowed_plugins_from_env() if allowed is None else {str(a) for a in allowed}
        _load_entrypoints(pm, allow)
    return pm


def _load_entrypoints(pm: PluginManager, allow: set[str] | None) -> None:
    eps = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    found = set()
    for ep in eps:
        found.add(ep.name)
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        if ep.name != BUILTIN_PLUGIN and allow is not None and ep.name not in allow:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            if ep.name == BUILTIN_PLUGIN:
                raise
            warnings.warn(f"issm-emulator plugin {ep.name!r} ({ep.value}) failed to import and is skipped: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
            continue
        pm.register(plugin, name=ep.name)
        dist = getattr(ep, "dist", None)
        if dist is not None:
            pm.plugin_distributions[ep.name] = f"{dist.metadata['Name']} {dist.version}"
    if pm.get_plugin(BUILTIN_PLUGIN) is None:
        # Source tree used without installing the distribution: no entry-point metadata exists, so the
        # built-in plugin module is registered under the name its entry point would give it.
        pm.register(importlib.import_module(BUILTIN_MODULE), name=BUILTIN_PLUGIN)
    if allow is not None:
        missing = sorted(allow - found)
        if missing:
            warnings.warn(f"{ENV_VAR} names plugin(s) that are not installed: {', '.join(missing)} "
                          f"(installed: {', '.join(sorted(found)) or 'none'})", RuntimeWarning, stacklevel=3)


@dataclass
class SolverSpec:
    """One registered solver: its name, the factory that builds it and the plugin that provided it."""

    name: str
    factory: Callable[[], Solver]
    plugin: str


class SolverRegistry:
    """The solvers offered by the plugins of a plugin manager.

    Factories are called lazily, on the first :meth:`get` (or listing) of a name, and the instance is
    cached. The registry re-reads the hook when plugins are registered or unregistered afterwards.
    """

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._specs: dict[str, SolverSpec] | None = None
        self._plugins_seen: tuple[str, ...] = ()
        self._instances: dict[str, Solver] = {}
        self._lock = threading.Lock()

    def _current_plugins(self) -> tuple[str, ...]:
        return tuple(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)

    def specs(self) -> dict[str, SolverSpec]:
        """Name -> :class:`SolverSpec`, in plugin registration order."""
        plugins = self._current_plugins()
        if self._specs is None or plugins != self._plugins_seen:
            with self._lock:
                self._specs = self._collect()
                self._plugins_seen = plugins
                self._instances = {k: v for k, v in self._instances.items() if k in self._specs}
        return self._specs

    def _collect(self) -> dict[str, SolverSpec]:
        order = {name: i for i, name in enumerate(self._current_plugins())}
        impls = sorted(self.pm.hook.issm_emulator_solvers.get_hookimpls(),
                       key=lambda impl: order.get(impl.plugin_name, len(order)))
        specs: dict[str, SolverSpec] = {}
        for impl in impls:
            plugin = impl.plugin_name
            returned = impl.function()
            if returned is None:
                continue
            if isinstance(returned, (str, bytes)) or not isinstance(returned, Iterable):
                raise SolverError(f"plugin {plugin!r}: issm_emulator_solvers() must return a list of "
                                  f"(name, factory) pairs, got {type(returned).__name__}")
            for item in returned:
                if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                        and item[0] and callable(item[1])):
                    raise SolverError(f"plugin {plugin!r}: issm_emulator_solvers() must return (name, "
                                      f"factory) pairs with a non-empty str name and a callable factory, "
                                      f"got {item!r}")
                name, factory = item
                if name in specs:
                    raise DuplicateSolverError(
                        f"solver name {name!r} is registered by two plugins: {specs[name].plugin!r} and "
                        f"{plugin!r}; uninstall one or exclude it with {ENV_VAR}")
                specs[name] = SolverSpec(name, factory, plugin)
        return specs

    def names(self) -> list[str]:
        """Registered solver names, in plugin registration order."""
        return list(self.specs())

    def __contains__(self, name: object) -> bool:
        return name in self.specs()

    def get(self, name: str) -> Solver:
        """The solver registered as ``name`` (built by its factory on first use).

        Raises
        ------
        UnknownSolverError
            No plugin registered ``name``; the message lists the registered names.
        SolverError
            The factory failed or did not return a :class:`~issm_emulator.solvers.base.Solver`.
        """
        specs = self.specs()
        if name not in specs:
            choices = ", ".join(repr(n) for n in specs) or "none (is the package installed?)"
            raise UnknownSolverError(f"unknown solver {name!r}; registered solvers: {choices}")
        if name not in self._instances:
            spec = specs[name]
            try:
                solver = spec.factory()
            except Exception as exc:
                raise SolverError(f"solver {name!r} from plugin {spec.plugin!r} could not be created: "
                                  f"{type(exc).__name__}: {exc}") from exc
            if not isinstance(solver, Solver):
                raise SolverError(f"solver {name!r} from plugin {spec.plugin!r}: the factory returned "
                                  f"{type(solver).__name__}, expected an issm_emulator.solvers.base.Solver")
            self._instances[name] = solver
        return self._instances[name]

    def describe(self, name: str) -> dict[str, Any]:
        """Name, version, description, devices, solutions, plugin and distribution of one solver.

        A factory that is a :class:`Solver` subclass is described from its class attributes without
        being called.
        """
        spec = self.specs().get(name)
        if spec is None:
            self.get(name)  # raises UnknownSolverError with the choices
        assert spec is not None
        if inspect.isclass(spec.factory) and issubclass(spec.factory, Solver):
            src: Any = spec.factory
        else:
            src = self.get(name)
        return {
            "name": name,
            "version": str(src.version),
            "description": str(src.description),
            "devices": tuple(src.devices),
            "solutions": tuple(src.solutions),
            "plugin": spec.plugin,
            "distribution": self.distribution(spec.plugin),
        }

    def distribution(self, plugin: str) -> str:
        """``'name version'`` of the installed distribution that provides ``plugin`` (its entry point);
        the built-in plugin of an uninstalled source tree is ``'issm-emulator <version> (source tree)'``;
        a plugin registered in this process with ``pm.register`` has none (``''``)."""
        dist = getattr(self.pm, "plugin_distributions", {}).get(plugin)
        if dist:
            return dist
        if plugin == BUILTIN_PLUGIN:
            from issm_emulator._version import __version__

            return f"issm-emulator {__version__} (source tree)"
        return ""

    def available(self) -> list[dict[str, Any]]:
        """:meth:`describe` of every registered solver.

        A solver whose factory fails is still listed (version ``'?'``, no devices, the error as its
        description) with a :class:`RuntimeWarning`, so one broken plugin does not hide the others;
        :meth:`get` raises the error itself.
        """
        out = []
        for name in self.names():
            try:
                out.append(self.describe(name))
            except SolverError as exc:
                warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
                plugin = self.specs()[name].plugin
                out.append({"name": name, "version": "?", "description": f"unavailable: {exc}",
                            "devices": (), "solutions": (), "plugin": plugin,
                            "distribution": self.distribution(plugin)})
        return out

    def default_name(self) -> str:
        """The first of ``('egcn', 'fem')`` that is registered (the built-in ``egcn`` only when its default
        weights are bundled, see :func:`issm_emulator.weights.has_default`)."""
        specs = self.specs()
        for name in DEFAULT_SOLVER_PREFERENCE:
            if name in specs and _default_usable(specs[name]):
                return name
        raise UnknownSolverError(
            f"none of the default solvers {', '.join(map(repr, DEFAULT_SOLVER_PREFERENCE))} is registered; "
            f"registered solvers: {', '.join(map(repr, specs)) or 'none'}; pass solver=<name>")


def _default_usable(spec: SolverSpec) -> bool:
    """A built-in emulator is a usable default only with bundled weights; other solvers always are."""
    if spec.plugin != BUILTIN_PLUGIN or spec.name not in ("egcn", "gcn", "cnn"):
        return True
    from issm_emulator.weights import has_default

    return has_default(spec.name, "step")


_default_lock = threading.Lock()
_default_manager: pluggy.PluginManager | None = None
_default_registry: SolverRegistry | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (created, with entry points loaded, on first call)."""
    global _default_manager
    with _default_lock:
        if _default_manager is None:
            _default_manager = create_plugin_manager()
        return _default_manager


def get_registry() -> SolverRegistry:
    """The :class:`SolverRegistry` of the process-wide plugin manager."""
    global _default_registry
    pm = get_plugin_manager()
    with _default_lock:
        if _default_registry is None or _default_registry.pm is not pm:
            _default_registry = SolverRegistry(pm)
        return _default_registry


def reset_default_manager() -> None:
    """Forget the process-wide manager and registry (they are rebuilt, re-reading the environment)."""
    global _default_manager, _default_registry
    with _default_lock:
        _default_manager = None
        _default_registry = None


def available_solvers(registry: SolverRegistry | None = None) -> list[dict[str, Any]]:
    """Every registered solver as ``dict(name, version, description, devices, solutions, plugin,
    distribution)``.

    Examples
    --------
    >>> [s["name"] for s in available_solvers()]  # doctest: +SKIP
    ['fem']
    """
    return (registry or get_registry()).available()


def get_solver(name: str | None = None, registry: SolverRegistry | None = None) -> Solver:
    """The solver registered as ``name`` (default: :func:`default_solver_name`)."""
    reg = registry or get_registry()
    return reg.get(reg.default_name() if name is None else name)


def default_solver_name(registry: SolverRegistry | None = None) -> str:
    """The first registered of ``('egcn', 'fem')``: the emulator when installed with its default weights
    (``issm_emulator/weights/egcn-step-<scenario>.pt``), else the FE solver."""
    return (registry or get_registry()).default_name()
