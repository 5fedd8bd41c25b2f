"""Errors raised on bad input; every message names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad input data. ``path`` is the offending file or folder, ``problem`` what is wrong."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DicomError(DataError):
    """A DICOM file that cannot be read or decoded."""


class AnnotationError(DataError):
    """An annotation file that cannot be parsed."""


class CheckpointError(DataError):
    """A checkpoint file that cannot be read, or that is not a spinectx checkpoint."""


class ConfigError(ValueError):
    """A bad command-line or config value (e.g. ``data.fold=7`` with 4 folds); the message names
    the setting, what it should be and what was given."""


def config_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` of the setting ``name`` as an int (``4``, ``4.0`` and ``"4"`` are 4).

    Raises:
        ConfigError: not a whole number (``true``, ``"abc"``, ``2.5``, ``null``), or below ``minimum``.
    """
    number = config_float(name, value, what="an integer")
    if not number.is_integer():
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(number)


def config_float(name: str, value, low: float | None = None, high: float | None = None, what: str = "a number") -> float:
    """``value`` of the setting ``name`` as a finite float in (``low``, ``high``] (bounds optional).

    Raises:
        ConfigError: not a number (``true``, ``"abc"``, ``null``, NaN, ±inf) or outside the bounds.
    """
    import math

    number = math.nan
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    if (low is not None and not number > low) or (high is not None and not number <= high):
        bounds = f"({'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(f"{name} must be {what} in {bounds}, got {value!r}")
    return number
