"""Lightning glue: the shared LightningModule and callbacks."""

from spinectx.lit.callbacks import MetricsJson, OverlayImages
from spinectx.lit.module import LandmarkModule

__all__ = ["LandmarkModule", "MetricsJson", "OverlayImages"]
