"""A checkpoint's network bound to one mesh and one torch device: the emulator runtime's forward passes.

:func:`torch_device` resolves the ``device`` option, :func:`load` gives a :class:`Checkpoint` on it, and
:class:`BoundNetwork` turns per-graph input tensors into SI predictions, several graphs per forward pass,
under :func:`torch.inference_mode`. Step mode (:mod:`.step`) and direct mode (:mod:`.direct`) drive it.

Run-time policy (:class:`RuntimePolicy`), chosen by measurement (``benchmarks/threads_batch.py``, figures
in ``docs/performance.md``), overridable per solve or by environment variable:

* ``threads`` (``ISSM_EMULATOR_THREADS``): torch intra-op threads during the solve, restored afterwards.
  Default on a CPU: :data:`CPU_THREADS_SMALL` for passes of fewer than :data:`CPU_SMALL_PASS_VERTICES`
  vertices, else the cores other work leaves idle (:func:`idle_cores`), up to :data:`CPU_THREADS_MAX`. On
  CUDA torch's own setting is kept.
* ``batch_size`` (``ISSM_EMULATOR_BATCH_SIZE``): most graphs per forward pass. Default: on a CPU, as many
  graphs as keep a pass under :data:`CPU_BATCH_VERTICES` vertices (at least one); on CUDA, every graph at
  once up to :data:`CUDA_BATCH_VERTICES` vertices per pass.
* ``compile`` (``ISSM_EMULATOR_COMPILE=1``): run the network through :func:`torch.compile`; where
  compilation is unavailable or fails, the eager network runs instead, with a warning saying why. The
  first (compiling) call's cost is reported in the solve's ``info`` (``compile_first_call_s``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from issm_emulator.errors import EmulatorDivergedError, UnsupportedOptionError
from issm_emulator.graph import mesh_graph
from issm_emulator.nn.features import build_inputs
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers.emulator.checkpoint import Checkpoint, load_checkpoint
from issm_emulator.solvers.emulator.inputs import feature_arrays
from issm_emulator.solvers.emulator.processing_mesh import processing_for
from issm_emulator.state import ModelState

__all__ = ["FORWARD_PASSES_PER_SOLVE", "BoundNetwork", "RuntimePolicy", "check_finite", "diverged",
           "idle_cores", "intra_op_threads", "load", "member_label", "torch_device"]

log = logging.getLogger(__name__)

#: one network evaluation per velocity solve: reported as ISSM's count of stress-balance iterations
FORWARD_PASSES_PER_SOLVE = 1


def torch_device(device: Any) -> torch.device:
    """``device`` (None, ``'cpu'``, ``'cuda'``, ``'cuda:1'``, torch.device) as a usable torch device.

    None picks CUDA when available. Raises :class:`UnsupportedOptionError` for CUDA without CUDA.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UnsupportedOptionError(f"device={device!r} is not a torch device ('cpu' or 'cuda'): {err}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedOptionError(f"device={device!r}: CUDA is not available here (torch.cuda.is_available() "
                                     "is False); use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise UnsupportedOptionError(f"device={device!r}: the emulators run on 'cpu' or 'cuda'")
    return dev


def load(checkpoint: Checkpoint | str | os.PathLike, device: Any = "cpu") -> Checkpoint:
    """A :class:`Checkpoint` on ``device``: loaded from a file path, or an already loaded one moved there."""
    dev = torch_device(device)
    if isinstance(checkpoint, Checkpoint):
        checkpoint.model.to(dev).eval()
        return checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        return load_checkpoint(checkpoint, map_location=dev)
    raise TypeError(f"checkpoint: expected a Checkpoint or a file path, got {type(checkpoint).__name__}")


# ----------------------------------------------------------------------------------------------------------
# run-time policy: threads, graphs per pass, compilation
# ----------------------------------------------------------------------------------------------------------
#: CPU: intra-op threads for a pass of fewer than CPU_SMALL_PASS_VERTICES vertices (thread start-up costs
#: more than it saves on a tiny graph)
CPU_THREADS_SMALL = 1
CPU_SMALL_PASS_VERTICES = 1_000
#: CPU: most intra-op threads for larger passes
CPU_THREADS_MAX = 4
#: CPU: vertices per forward pass the default batch size aims at. Measured: per-graph time is flat from 1
#: to 16 Pine Island graphs per pass (1.8k-29k vertices) and 15-20 % worse at 32, so one graph of the usual
#: size per pass (smallest memory, no loss)
CPU_BATCH_VERTICES = 2_000
#: CUDA: vertices per forward pass of the default batch size (all graphs at once up to this)
CUDA_BATCH_VERTICES = 2_000_000


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UnsupportedOptionError(f"environment variable {name}={raw!r}: expected a positive integer")
    return value


def _positive(option: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnsupportedOptionError(f"{option}={value!r}: expected a positive int (or None for the default)")
    return value


@dataclass(frozen=True)
class RuntimePolicy:
    """How one solve runs its forward passes: graphs per pass, intra-op threads, compilation.

    ``None`` fields take the environment variable, else the measured default (module docstring).
    """

    batch_size: int | None = None
    threads: int | None = None
    compile: bool | None = None

    def graphs_per_pass(self, device: torch.device, n_vertices: int, n_graphs: int) -> int:
        """Graphs per forward pass for ``n_graphs`` graphs of ``n_vertices`` vertices on ``device``."""
        size = _positive("batch_size", self.batch_size) or _env_int("ISSM_EMULATOR_BATCH_SIZE")
        if size is None:
            budget = CUDA_BATCH_VERTICES if device.type == "cuda" else CPU_BATCH_VERTICES
            size = max(1, budget // max(n_vertices, 1))
        return max(1, min(size, max(n_graphs, 1)))

    def intra_op_threads(self, device: torch.device, vertices_per_pass: int) -> int | None:
        """Torch intra-op threads for passes of ``vertices_per_pass`` vertices (None: leave torch's)."""
        n = _positive("threads", self.threads) or _env_int("ISSM_EMULATOR_THREADS")
        if n is not None or device.type != "cpu":
            return n
        if vertices_per_pass < CPU_SMALL_PASS_VERTICES:
            return CPU_THREADS_SMALL
        return max(1, min(CPU_THREADS_MAX, idle_cores()))

    def compiled(self) -> bool:
        if self.compile is not None:
            if not isinstance(self.compile, bool):
                raise UnsupportedOptionError(f"compile={self.compile!r}: expected True or False")
            return self.compile
        return os.environ.get("ISSM_EMULATOR_COMPILE", "").strip().lower() in ("1", "true", "yes", "on")


def idle_cores() -> int:
    """Cores this process may use that other work is not already using: the cores it may run on minus the
    1-minute load average (this process counted as idle), at least 1.

    Measured (``benchmarks/threads_batch.py``) on the 2-core machine: with the machine otherwise quiet, 2
    threads ran a Pine Island pass 1.5x faster than 1; with two other jobs running, 2 threads were 1.5-3x
    slower than 1 (they wait for each other at every synchronisation). The load average tells the two apart.
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): assume the cores are free
        return n
    return max(1, min(n, int(round(n - load + 1.0))))


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count (None: no change)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _compile(model: torch.nn.Module) -> tuple[Any, str | None]:
    """``(torch.compile(model), None)``, or ``(model, why)`` where compilation is unavailable."""
    if not hasattr(torch, "compile"):
        return model, "this torch has no torch.compile"
    try:
        return torch.compile(model, dynamic=False), None
    except Exception as err:  # noqa: BLE001 - any failure means: run eagerly, and say why
        return model, f"torch.compile failed: {type(err).__name__}: {err}"


# ----------------------------------------------------------------------------------------------------------
# the network bound to one mesh and device
# ----------------------------------------------------------------------------------------------------------
class BoundNetwork:
    """A checkpoint's network bound to one mesh and device: builds inputs, runs batched forward passes.

    ``forward_passes`` counts calls of the network, ``graphs_evaluated`` the graphs they covered;
    ``compile_first_call_s`` is the first compiled call's wall time (compilation included) when compiled.
    """

    def __init__(self, ckpt: Checkpoint, state: ModelState, device: Any, *, policy: RuntimePolicy | None = None):
        self.ckpt = ckpt
        self.spec = ckpt.spec
        self.device = torch_device(device)
        self.policy = policy if policy is not None else RuntimePolicy()
        self.model = ckpt.model.to(self.device).eval()
        p = next(self.model.parameters(), None)
        self.dtype = p.dtype if p is not None else torch.float32
        self.pmesh = P1Mesh.from_mesh(state.mesh)
        graph = mesh_graph(state.mesh, dtype=self.dtype)
        self.edge_index = graph.edge_index.numpy()
        self.is_boundary = graph.is_boundary.numpy()
        #: the checkpoint's processing mesh (.processing_mesh) where it has one and this is another mesh:
        #: the network runs there, the fields mapped both ways
        self.remesh = processing_for(state.mesh.x, state.mesh.y, state.mesh.elements, ckpt.processing_mesh,
                                     dtype=self.dtype)
        self.graph = graph if self.remesh is None else self.remesh.graph
        self.gmesh = self.pmesh if self.remesh is None else self.remesh.mesh  # the mesh the network sees
        self.nv = self.gmesh.nv
        self._batches: dict[int, Any] = {}
        self._geometry: dict[int, Any] = {}  # id(batch) -> the EGCN's edge geometry of that (cached) batch
        self.forward_passes = 0
        self.graphs_evaluated = 0
        self.decoded_times = 0
        self.threads_used: int | None = None
        self.compile_first_call_s: float | None = None
        self.compile_fallback: str | None = None
        self._run = self.model
        if self.policy.compiled():
            self._run, self.compile_fallback = _compile(self.model)
            if self.compile_fallback is not None:
                warnings.warn(f"compile=True: running the network eagerly instead ({self.compile_fallback})",
                              RuntimeWarning, stacklevel=3)

    def graphs_per_pass(self, n_graphs: int) -> int:
        """Graphs per forward pass for a request of ``n_graphs`` graphs (the policy's batch size)."""
        return self.policy.graphs_per_pass(self.device, self.nv, n_graphs)

    def _forward(self, graph: Any, s: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
        kw = {}
        if hasattr(self.model, "graph_geometry") and not self.decodes_time:  # EGCN: edge geometry once per graph
            geom = self._geometry.get(id(graph))
            if geom is None:
                geom = self._geometry[id(graph)] = self.model.graph_geometry(graph, self.dtype)
            kw["geometry"] = geom
        if self._run is self.model or self.compile_first_call_s is not None:
            return self._run(graph, s, v, **kw)
        t0 = time.perf_counter()
        try:
            out = self._run(graph, s, v, **kw)
        except Exception as err:  # noqa: BLE001 - a failed compilation falls back to the eager network
            self.compile_fallback = f"torch.compile failed at the first call: {type(err).__name__}: {err}"
            warnings.warn(f"compile=True: running the network eagerly instead ({self.compile_fallback})",
                          RuntimeWarning, stacklevel=4)
            self._run = self.model
            return self.model(graph, s, v, **kw)
        self.compile_first_call_s = time.perf_counter() - t0
        log.info("torch.compile: first call (compilation included) took %.2f s", self.compile_first_call_s)
        return out

    @property
    def decodes_time(self) -> bool:
        """Whether the network is time-decoded (:class:`~issm_emulator.nn.direct.EGCNDirect`,
        :class:`~issm_emulator.nn.increment.TimeInputIncrement`): increments since the initial state at any
        times by :meth:`predict_increments`."""
        return bool(getattr(self.model, "decodes_time", False))

    def predict_increments(self, items: list[tuple[torch.Tensor, torch.Tensor]], times: list[np.ndarray],
                           chunk_times: int = 64) -> list[list[dict[str, np.ndarray]]]:
        """Changes since the initial state of each item at its ``times`` (s since the start), SI float64.

        ``items[m]`` are the (unnormalised) inputs of member ``m``'s initial state; up to the policy's
        graphs per pass are encoded together (``model.encode``: the EGCN's trunk pass; the GCN's and CNN's
        code only keeps the inputs), ``model.member_codes`` splits the code per member (the EGCN's rows, the
        GCN's and CNN's graph and rows), then each member's times are decoded ``chunk_times`` at a time
        (``model.decode``: the EGCN's per-vertex decoder; one stacked pass of the GCN or CNN per time).
        Returns per member a list of ``{'vx', 'vy', <scalar outputs>}``, one per time."""
        if not self.decodes_time:
            raise TypeError("predict_increments needs a time-decoded network (EGCNDirect, GCNIncrement, "
                            "CNNIncrement)")
        size = self.graphs_per_pass(len(items))
        per_time = bool(getattr(self.model, "time_input", False))  # one graph pass per output time
        names = self.spec.scalar_outputs
        onorm = self.ckpt.output_normalizer
        out: list[list[dict[str, np.ndarray]]] = []
        with torch.inference_mode(), intra_op_threads(self.policy.intra_op_threads(self.device, self.nv * size)):
            self.threads_used = torch.get_num_threads()
            v_scale = float(onorm.vector_scale[0])
            s_std = onorm.scalar_std.to(self.device, self.dtype)
            for start in range(0, len(items), size):
                chunk = items[start:start + size]
                s = torch.cat([c[0] for c in chunk])
                v = torch.cat([c[1] for c in chunk])
                s, v = self.ckpt.input_normalizer.encode(s, v)
                codes = self.model.member_codes(self.model.encode(self._batch(len(chunk)), s, v), len(chunk))
                if not per_time:  # the EGCN's trunk pass; a time-input network's passes are its decodes
                    self.forward_passes += 1
                    self.graphs_evaluated += len(chunk)
                for j, code in enumerate(codes):
                    t_all = np.asarray(times[start + j], float)
                    member: list[dict[str, np.ndarray]] = []
                    for t0 in range(0, t_all.size, chunk_times):
                        t = torch.as_tensor(t_all[t0:t0 + chunk_times], dtype=self.dtype, device=self.device)
                        res = self.model.decode(code, t)
                        if per_time:  # ceil(K / times per pass) stacked passes, K graphs evaluated
                            self.forward_passes += -(-t.shape[0] // self.model.times_per_pass(self.device))
                            self.graphs_evaluated += t.shape[0]
                        vel = (res["velocity"] * v_scale).to("cpu", torch.float64).numpy()      # (nv, K, 2)
                        sc = [(res[n] * s_std[i]).to("cpu", torch.float64).numpy() for i, n in enumerate(names)]
                        for q in range(t.shape[0]):
                            d = {"vx": vel[:, q, 0].copy(), "vy": vel[:, q, 1].copy()}
                            for n, arr in zip(names, sc):
                                d[n] = arr[:, q].copy()
                            member.append(self._on_state_mesh(d))
                    self.decoded_times += t_all.size
                    out.append(member)
        return out

    def runtime_info(self) -> dict[str, Any]:
        """What the solve's ``info`` reports about the forward passes."""
        info: dict[str, Any] = {"forward_passes": self.forward_passes,
                                "graphs_evaluated": self.graphs_evaluated, "torch_threads": self.threads_used,
                                "compiled": self._run is not self.model}
        if self.decodes_time:
            info["decoded_times"] = self.decoded_times
        if self.compile_first_call_s is not None:
            info["compile_first_call_s"] = self.compile_first_call_s
        if self.compile_fallback is not None:
            info["compile_fallback"] = self.compile_fallback
        return info

    def arrays(self, state: ModelState, **fields: Any) -> dict[str, Any]:
        """The network's input arrays (by feature name, SI) on the mesh it runs on."""
        out = feature_arrays(state, edge_index=self.edge_index, is_boundary=self.is_boundary, **fields)
        return out if self.remesh is None else self.remesh.features(out)

    def inputs(self, arrays: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return build_inputs(self.spec, self.gmesh, dtype=self.dtype, device=self.device, **arrays)

    def _on_state_mesh(self, d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.remesh is None:
            return d
        return {k: self.remesh.back(v) for k, v in d.items()}

    def _batch(self, n: int) -> Any:
        b = self._batches.get(n)
        if b is None:
            from torch_geometric.data import Batch

            b = Batch.from_data_list([self.graph] * n).to(self.device)
            self._batches[n] = b
        return b

    def predict(self, items: list[tuple[torch.Tensor, torch.Tensor]],
                size: int | None = None) -> list[dict[str, np.ndarray]]:
        """Forward passes over ``items`` (``(scalars, vectors)`` of one graph each), ``size`` (default: the
        policy's) graphs at a time; returns per item ``{'vx', 'vy', <scalar outputs>}`` as float64 numpy
        arrays (SI)."""
        size = size or self.graphs_per_pass(len(items))
        with torch.inference_mode(), intra_op_threads(self.policy.intra_op_threads(self.device, self.nv * size)):
            self.threads_used = torch.get_num_threads()
            return self._predict(items, size)

    def _predict(self, items: list[tuple[torch.Tensor, torch.Tensor]],
                 size: int) -> list[dict[str, np.ndarray]]:
        out: list[dict[str, np.ndarray]] = []
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            n = len(chunk)
            s = torch.cat([c[0] for c in chunk])
            v = torch.cat([c[1] for c in chunk])
            s, v = self.ckpt.input_normalizer.encode(s, v)
            res = self._forward(self._batch(n), s, v)
            self.forward_passes += 1
            self.graphs_evaluated += n
            vo = res["velocity"].reshape(-1, 1, 2)
            names = self.spec.scalar_outputs
            so = torch.stack([res[k] for k in names], 1) if names else vo.new_zeros((vo.shape[0], 0))
            so, vo = self.ckpt.output_normalizer.decode(so, vo)
            so = so.detach().to("cpu", torch.float64).numpy().reshape(n, self.nv, len(names))
            vo = vo.detach().to("cpu", torch.float64).numpy().reshape(n, self.nv, 2)
            for k in range(n):
                d = {"vx": vo[k, :, 0].copy(), "vy": vo[k, :, 1].copy()}
                for j, name in enumerate(names):
                    d[name] = so[k, :, j].copy()
                out.append(self._on_state_mesh(d))
        return out


def diverged(what: str, k: int, t: float, yts: float, member: int | None) -> EmulatorDivergedError:
    who = "" if member is None else f" (ensemble member {member})"
    return EmulatorDivergedError(f"emulator rollout produced NaN/inf in {what} at step {k} "
                                 f"(t = {t / yts:g} yr){who}; the model probably lies outside what the "
                                 "checkpoint was trained on (another glacier, mesh resolution or forcing): "
                                 "solve it with solver='fem', or train a checkpoint on an ensemble of such "
                                 "models (docs/ensembles-and-training.md)", step=k, time=t / yts)


def check_finite(pred: dict[str, np.ndarray], k: int, t: float, yts: float, member: int | None) -> None:
    bad = [name for name, arr in pred.items() if not np.all(np.isfinite(arr))]
    if bad:
        raise diverged("the network's " + ", ".join(bad), k, t, yts, member)


def member_label(n: int, m: int) -> int | None:
    return m if n > 1 else None
