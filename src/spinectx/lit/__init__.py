"""Lightning glue: the shared LightningModule and callbacks."""

from spinectx.lit.callbacks import MetricsJson
from spinectx.lit.module import LandmarkModule

__all__ = ["LandmarkModule", "MetricsJson"]
