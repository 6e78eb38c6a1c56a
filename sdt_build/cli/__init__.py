"""The `sdt-build` command: a thin shell over the stage functions, one module per group of commands
(``folder``: init, docs, check, lock; ``image``: build, smoke; ``machine``: base, clean, doctor;
``run``: run, report), with what they share in ``shell``. Only this package prints."""

from sdt_build.cli import folder, image, machine, run  # noqa: F401  (each adds its commands to main)
from sdt_build.cli.shell import main

__all__ = ["main"]
