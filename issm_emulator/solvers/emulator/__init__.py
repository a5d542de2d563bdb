"""The emulator runtime: everything one emulated solve runs, below the ISSM glue and above the networks.

=====================  ==========================================================================
module                 job
=====================  ==========================================================================
``solver``             the ``egcn``/``gcn``/``cnn`` solver backends (options, checkpoint cache)
``checkpoint``         the checkpoint file: network, normalisers, input manifest; save and load
``inputs``             network inputs assembled from a ``ModelState``; manifest check
``network``            a checkpoint bound to one mesh and device: batched forward passes
``step``               step mode (network velocity inside the shared transient loop), stress balance
``direct``             direct mode (each output step predicted from the initial state)
=====================  ==========================================================================

Only :mod:`.solver` is imported here, and it imports torch only when a solve runs, so listing the solvers
stays cheap.
"""

from issm_emulator.solvers.emulator.solver import (
    EMULATORS,
    MODES,
    CNNSolver,
    EGCNSolver,
    EmulatorSolver,
    GCNSolver,
)

__all__ = ["EMULATORS", "MODES", "CNNSolver", "EGCNSolver", "EmulatorSolver", "GCNSolver"]
