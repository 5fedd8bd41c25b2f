"""Networks: backbones (timm), necks (MSC) and landmark heads, one module per model."""

from spinectx.models.base import LandmarkNet
from spinectx.models.ccfnet import CCFNet
from spinectx.models.hrnet import HRNet
from spinectx.models.msc import MSC
from spinectx.models.scn import SCN
from spinectx.models.simplebaseline import SimpleBaseline

__all__ = ["CCFNet", "HRNet", "LandmarkNet", "MSC", "SCN", "SimpleBaseline"]
