"""Exceptions and warnings raised by issm-emulator.

Every error that concerns user input names the offending ``md`` field (ISSM's attribute path) and what
was expected, so that a glaciologist can fix the model without reading our code.
"""

from __future__ import annotations


class IssmEmulatorError(Exception):
    """Base class of every error raised on purpose by issm-emulator."""


class ModelInputError(IssmEmulatorError, ValueError):
    """A pyISSM model field is missing, malformed or inconsistent.

    ``field`` is the attribute path (``'md.geometry.thickness'``); the message starts with it.
    """

    def __init__(self, field: str, expected: str, got: str | None = None):
        self.field = field
        self.expected = expected
        self.got = got
        msg = f"{field}: expected {expected}"
        if got is not None:
            msg += f", got {got}"
        super().__init__(msg)


class UnitError(IssmEmulatorError, ValueError):
    """A quantity was given in a unit that cannot be converted to the one required."""


class UnknownSolutionError(IssmEmulatorError, ValueError):
    """The solution string does not name a solution that issm-emulator supports."""


class SolverError(IssmEmulatorError):
    """Base class of errors raised while a solver runs."""


class UnknownSolverError(SolverError, KeyError):
    """No registered solver has the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateSolverError(SolverError):
    """Two plugins registered solvers under the same name."""


class UnsupportedOptionError(IssmEmulatorError, ValueError):
    """An option of pyISSM's ``solve`` that has no meaning for a surrogate was given a non-default value."""


class SolverDivergedError(SolverError, ArithmeticError):
    """A numerical solve diverged (NaN/inf, or no convergence when strict convergence was asked for)."""

    def __init__(self, message: str, *, step: int | None = None, time: float | None = None,
                 residual: float | None = None):
        self.step = step
        self.time = time
        self.residual = residual
        super().__init__(message)


class EmulatorDivergedError(SolverDivergedError):
    """A neural-network rollout produced NaN or inf."""


class DataUnavailableError(IssmEmulatorError, OSError):
    """A data file or weights file is neither cached nor downloadable."""


class OutOfDomainError(SolverError, ValueError):
    """A model lies outside the applicability domain of an emulator checkpoint.

    ``violations`` lists each reason (what, the model's value, the trained range); the message names them
    all. ``allow_extrapolation=True`` turns the refusal into an :class:`ExtrapolationWarning`.
    """

    def __init__(self, message: str, violations: tuple = ()):
        self.violations = tuple(violations)
        super().__init__(message)


class DataFileError(IssmEmulatorError, ValueError):
    """A data file cannot be used: truncated, damaged or not in the expected format. ``path`` is the file;
    the message starts with it."""

    def __init__(self, path: object, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}")


class ExtrapolationWarning(UserWarning):
    """A model or forcing value lies outside the range an emulator was trained on."""


class FallbackWarning(UserWarning):
    """The default solve used ``fem`` because no emulator checkpoint applies to the model."""
