"""The model zoo: every model × backbone × MSC builds, runs forward/backward with the right
shapes; parameter and MAC counts follow the paper's conventions."""

import pytest
import torch
from torch import nn

from spinectx.models import CCFNet, HRNet, SCN, SimpleBaseline
from spinectx.models.complexity import measure
from spinectx.models.msc import MSC, DenseAtrousBlock

K = 11
ZOO = [
    (CCFNet, "resnet18", True, 4, 16),
    (CCFNet, "resnet18", False, 4, 32),
    (CCFNet, "resnet50", True, 4, 16),
    (CCFNet, "resnet50", False, 4, 32),
    (SimpleBaseline, "resnet18", False, 2, 4),
    (SimpleBaseline, "resnet18", True, 2, 4),
    (SimpleBaseline, "resnet50", False, 2, 4),
    (SimpleBaseline, "resnet50", True, 2, 4),
    (SCN, "resnet18", False, 2, 4),
    (SCN, "resnet18", True, 2, 4),
    (HRNet, "hrnet_w32", False, 2, 4),
]


@pytest.mark.parametrize("cls,backbone,msc,cpl,stride", ZOO, ids=lambda v: getattr(v, "__name__", str(v)))
def test_forward_backward_shapes(cls, backbone, msc, cpl, stride):
    torch.manual_seed(0)
    net = cls(K, channels_per_landmark=cpl, backbone=backbone, msc=msc)
    assert net.stride == stride
    image = torch.rand(2, 1, 64, 96)
    out = net(image)
    assert out.shape == (2, cpl * K, 64 // stride, 96 // stride)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "every parameter takes part in forward"
    assert sum(g.abs().sum() for g in grads) > 0


def test_codec_sets_the_channel_count_and_inputs_must_fit_the_stride():
    net = SimpleBaseline(K, channels_per_landmark=4)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 44, 16, 16)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        CCFNet(K)(torch.rand(1, 1, 40, 40))
    with pytest.raises(ValueError, match="not a multiple of 32"):  # stride-4 output, stride-32 backbone
        SimpleBaseline(K)(torch.rand(1, 1, 72, 72))
    with pytest.raises(ValueError, match="no MSC"):
        HRNet(K, msc=True)


@pytest.mark.parametrize("cpl", [2, 4, 6], ids=["binary", "coarse_fine-binary", "multiclass-5-logits"])
def test_scn_multiplies_local_heatmaps_by_the_spatial_configuration(cpl):
    net = SCN(3, channels_per_landmark=cpl).eval()
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        local, spatial = net.forward_features(image)
        out = net(image)
    assert out.shape == (1, 3 * cpl, 16, 16)
    assert spatial.shape == (1, 3, 16, 16) and ((spatial > 0) & (spatial < 1)).all()
    assert torch.allclose(out[:, :3], local[:, :3] * spatial)
    # offsets and every class-logit block come from the local branch alone, never multiplied
    assert torch.equal(out[:, 3:], local[:, 3:])


def test_dense_atrous_block_gives_the_same_output_shared_or_not():
    block = DenseAtrousBlock(8).eval()
    x = torch.randn(2, 8, 12, 12)
    shared = block(x)
    block.share_branches = False
    assert torch.allclose(block(x), shared, atol=1e-6)


class _Tiny(nn.Module):
    """Known costs: conv 3×3 1→4 on 8×8 (no padding → 6×6), BN, transposed conv 4→2, k2 s2 → 12×12."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.unused = nn.Linear(100, 100)

    def forward(self, x):
        return self.up(self.bn(self.conv(x)))


def test_mac_counting_conventions_on_known_values():
    net = _Tiny()
    paper = measure(net, (8, 8), convention="paper")
    executed = measure(net, (8, 8), convention="executed")
    conv = 4 * 6 * 6 * 9  # out elements × in channels × kernel area
    assert executed.macs == conv + 4 * 6 * 6 * 2 * 4  # transposed: input elements × out channels × kernel area
    assert paper.macs == conv + 2 * 4 * 6 * 6 + 2 * 12 * 12 * 4 * 4  # BN 2/elt; transposed on the output grid
    # the unused Linear is not counted
    assert paper.params == sum(p.numel() for m in (net.conv, net.bn, net.up) for p in m.parameters())
    with pytest.raises(ValueError, match="convention"):
        measure(net, (8, 8), convention="thop")


def test_msc_is_counted_with_released_branches_and_left_shared():
    msc = MSC(16)
    paper = measure(msc, (8, 8), in_channels=16, convention="paper").macs
    executed = measure(msc, (8, 8), in_channels=16, convention="executed").macs
    atrous = 16 * 16 * 64  # one 3×3-free unit: C² per position over 8×8
    # released: 66·C² per position (7 3×3 convs + 3 1×1), shared: 39·C² (4 3×3 + 3 1×1)
    assert paper - executed >= (66 - 39) * atrous
    assert all(b.share_branches for b in msc.modules() if isinstance(b, DenseAtrousBlock))


def test_ccfnet_r18_msc_matches_the_paper():
    c = measure(CCFNet(K, backbone="resnet18", msc=True), (512, 512))
    assert round(c.params_m, 2) == pytest.approx(4.83, rel=0.01)
    assert round(c.macs_g, 2) == pytest.approx(12.0, rel=0.01)


def test_local_weights_file_loads_into_the_backbones(tmp_path):
    import timm

    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    net = SCN(K, backbone="resnet18", pretrained_path=str(path))
    for trunk in (net.local.backbone, net.spatial.backbone):
        assert torch.equal(trunk.conv1.weight, source.conv1.weight)
        assert torch.equal(trunk.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match="not found"):
        CCFNet(K, pretrained_path=str(tmp_path / "missing.pth"))
