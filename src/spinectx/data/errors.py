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
