"""``python -m issm_emulator.learning --data ... --out ...``: the ``train`` command, also under ``torchrun``
(``torchrun --nproc_per_node 2 -m issm_emulator.learning ...``), one process per GPU or gloo CPU process."""

from issm_emulator.learning.cli import train_command

if __name__ == "__main__":
    train_command()
