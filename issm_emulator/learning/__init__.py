"""The learning pipeline: from an ensemble on disk to a trained, evaluated checkpoint.

==============  ===========================================================================
module          job
==============  ===========================================================================
``dataset``     torch datasets of (input state, target) samples read from an ensemble
``train``       training (single process or DDP), normaliser fitting, resumable checkpoints
``evaluate``    metrics and plots of a checkpoint on a split (one pass or rollouts)
``cli``         ``issm-emulator train`` / ``evaluate`` (and ``python -m issm_emulator.learning``)
==============  ===========================================================================

It sits on top of the package: it reads ensembles (:mod:`issm_emulator.datasets`), builds networks
(:mod:`issm_emulator.nn`) and writes the checkpoints that the emulator runtime
(:mod:`issm_emulator.solvers.emulator`) loads. Nothing below imports it.
"""
