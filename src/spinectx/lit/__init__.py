"""Lightning glue: the LightningModules (one-stage landmark models, the stage-2 crop classifier) and callbacks."""

from spinectx.lit.callbacks import MetricsJson, OverlayImages
from spinectx.lit.crop_module import CropClassifierModule, load_two_stage
from spinectx.lit.module import LandmarkModule, SpineModuleBase

__all__ = ["CropClassifierModule", "LandmarkModule", "MetricsJson", "OverlayImages", "SpineModuleBase", "load_two_stage"]
