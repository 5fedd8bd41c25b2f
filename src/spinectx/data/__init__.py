"""Data: DICOM reading, study indexing, annotations, records, transforms and the DataModule."""

from spinectx.data.errors import AnnotationError, DataError, DicomError
from spinectx.data.landmarks import LandmarkGroup, LandmarkSet

__all__ = ["AnnotationError", "DataError", "DicomError", "LandmarkGroup", "LandmarkSet", "SpineDataModule"]


def __getattr__(name: str):  # lazy: keeps `import spinectx.data` light (no Lightning import)
    if name == "SpineDataModule":
        from spinectx.data.datamodule import SpineDataModule

        return SpineDataModule
    raise AttributeError(name)
