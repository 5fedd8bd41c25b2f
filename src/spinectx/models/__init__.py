"""Networks: backbones (timm), necks (MSC) and landmark heads."""

from spinectx.models.ccfnet import CCFNet
from spinectx.models.msc import MSC

__all__ = ["CCFNet", "MSC"]
