"""Class heads (binary / multiclass): targets, probabilities, losses, every family × codec, flip pairs."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.codecs import ClassCodec, CoarseFineCodec, HeatmapCodec, IntegralCodec
from spinectx.data.landmarks import LandmarkSet
from spinectx.losses import CoarseFineLoss, HeatmapLoss, IntegralLoss

SIZE = 64


def landmark_set(name: str) -> LandmarkSet:
    return LandmarkSet.from_config(OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/data/landmarks/{name}.yaml")))


TIANCHI = landmark_set("tianchi")
SPINAL = landmark_set("rsna2024_spinal")
SUBARTICULAR = landmark_set("rsna2024_subarticular")
SETS = {"tianchi": TIANCHI, "spinal": SPINAL, "subarticular": SUBARTICULAR}


def tags_tensor(landmarks: LandmarkSet, per_study: list[list[str]]) -> torch.Tensor:
    """[B, K, C] multi-hot from tag strings ("" = unknown)."""
    rows = [[landmarks.encode_tags(n, landmarks.parse_tags(n, t))[1] for n, t in zip(landmarks.names, study)]
            for study in per_study]
    return torch.tensor([[list(v) for v in s] for s in rows])


def labels_tensor(landmarks: LandmarkSet, per_study: list[list[str]]) -> torch.Tensor:
    return torch.tensor([[landmarks.encode_tags(n, landmarks.parse_tags(n, t))[0] for n, t in zip(landmarks.names, s)]
                         for s in per_study])


# TianChi: L1..L5 vertebrae, then T12-L1 .. L5-S1 discs
TIANCHI_TAGS = [
    ["v1", "v2", "v2", "", "v1", "v3,v5", "v1", "v2", "v5", "v4", ""],
    ["v2", "v2", "v1", "v2", "v2", "v1", "v2,v5", "v3", "v1", "v2", "v1"],
]


# ---------------------------------------------------------------------------- the class codec


def test_logit_counts_per_head():
    assert ClassCodec(mode="binary").n_logits == 1
    assert ClassCodec(TIANCHI, "multiclass").n_logits == 5  # disc: v1..v4 exclusive + v5 flag
    assert ClassCodec(SPINAL, "multiclass").n_logits == 3
    assert ClassCodec(SUBARTICULAR.to_config(), "multiclass").n_logits == 3  # a config mapping works too
    with pytest.raises(ValueError, match="class head must be one of"):
        ClassCodec(TIANCHI, "ordinal")
    with pytest.raises(ValueError, match="needs the landmark set"):
        ClassCodec(None, "multiclass")


def test_targets_from_tags():
    codec = ClassCodec(TIANCHI, "multiclass")
    t = codec.encode(labels_tensor(TIANCHI, TIANCHI_TAGS), tags_tensor(TIANCHI, TIANCHI_TAGS))
    # vertebra logits: v1 v2; disc logits: v1 v2 v3 v4 | v5
    assert t.exclusive[0].tolist() == [0, 1, 1, -1, 0, 2, 0, 1, -1, 3, -1]  # lone "v5": no exclusive class
    assert t.exclusive[1].tolist() == [1, 1, 0, 1, 1, 0, 1, 2, 0, 1, 0]
    v5 = t.flags[..., 4]
    assert v5[0, 5:].tolist()[:4] == [1.0, 0.0, 0.0, 1.0]
    assert math.isnan(v5[0, 10]) and v5[1, 6] == 1.0  # untagged disc: flag unknown
    assert torch.isnan(v5[:, :5]).all() and torch.isnan(t.flags[..., :4]).all()  # no flag on vertebrae / exclusive logits
    assert torch.equal(t.labels.isnan(), labels_tensor(TIANCHI, TIANCHI_TAGS).isnan())
    with pytest.raises(ValueError, match="needs the batch's 'tags'"):
        codec.encode(t.labels)
    with pytest.raises(ValueError, match=r"tags must be \[B, 11, 5\]"):
        codec.encode(t.labels, torch.zeros(2, 11, 3))


def test_probabilities_on_known_logits():
    codec = ClassCodec(TIANCHI, "multiclass")
    logits = torch.zeros(1, 11, 5)
    logits[0, 0] = torch.tensor([0.0, math.log(3.0), 7.0, 7.0, 7.0])  # vertebra: p = (1/4, 3/4); trailing logits unused
    logits[0, 5] = torch.tensor([math.log(2.0), 0.0, 0.0, 0.0, 0.0])  # disc: v1 = 2/5, v2..v4 = 1/5, v5 = σ(0) = 1/2
    logits[0, 6] = torch.tensor([5.0, -5.0, -5.0, -5.0, math.log(1 / 3)])  # v5 = σ(ln 1/3) = 1/4
    prob, class_prob = codec.decode(logits)
    assert class_prob.shape == (1, 11, 5)
    assert class_prob[0, 0].tolist() == pytest.approx([0.25, 0.75, 0.0, 0.0, 0.0])  # padding 0
    assert class_prob[0, 5].tolist() == pytest.approx([0.4, 0.2, 0.2, 0.2, 0.5])
    assert prob[0, 0].item() == pytest.approx(0.75)
    assert prob[0, 5].item() == pytest.approx(1 - 0.4 * 0.5)  # 1 − P(v1)·(1 − P(v5))
    p_v1 = math.exp(5) / (math.exp(5) + 3 * math.exp(-5))
    assert prob[0, 6].item() == pytest.approx(1 - p_v1 * 0.75, rel=1e-5)
    # exclusive classes sum to 1, every probability in [0, 1], for random logits of every set
    for landmarks in SETS.values():
        codec = ClassCodec(landmarks, "multiclass")
        prob, class_prob = codec.decode(torch.randn(4, len(landmarks), codec.n_logits) * 3)
        exclusive = torch.tensor([[c in landmarks.groups[g].exclusive for c in landmarks.groups[g].classes]
                                  + [False] * (landmarks.max_classes - len(landmarks.groups[g].classes))
                                  for g in landmarks.group_of])
        assert torch.allclose((class_prob * exclusive).sum(-1), torch.ones(4, len(landmarks)))
        assert ((prob >= 0) & (prob <= 1)).all() and ((class_prob >= 0) & (class_prob <= 1)).all()
    binary_prob, none = ClassCodec(mode="binary").decode(torch.tensor([[[0.0], [2.0]]]))
    assert none is None and binary_prob[0].tolist() == pytest.approx([0.5, torch.sigmoid(torch.tensor(2.0)).item()])


CODECS = {"coarse_fine": (CoarseFineCodec, CoarseFineLoss, 16), "heatmap": (HeatmapCodec, HeatmapLoss, 4),
          "integral": (IntegralCodec, IntegralLoss, 4)}


def _points(b: int, k: int, stride: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    margin = 24.0 if stride == 4 else 2.0  # 3 σ of the dense codecs' Gaussian from the border
    return margin + torch.rand(b, k, 2, generator=g) * (SIZE - 1 - 2 * margin)


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_class_targets_round_trip_through_every_codec(codec_name):
    from spinectx.data.submission import tags_from_class_prob

    codec_cls, _, stride = CODECS[codec_name]
    classes = ClassCodec(TIANCHI, "multiclass")
    codec = codec_cls(stride=stride, classes=classes)
    assert codec.channels_per_landmark == codec_cls.loc_blocks + 5
    pts = _points(2, 11, stride)
    t = codec.encode(pts, torch.ones(2, 11, dtype=torch.bool), (SIZE, SIZE))
    targets = classes.encode(labels_tensor(TIANCHI, TIANCHI_TAGS), tags_tensor(TIANCHI, TIANCHI_TAGS))
    logits = classes.targets_as_logits(targets)  # [B, K, n]
    h, w = SIZE // stride, SIZE // stride
    maps = logits.permute(0, 2, 1)[..., None, None].expand(-1, -1, -1, h, w).reshape(2, 5 * 11, h, w)
    out = codec.targets_as_output(t, class_logit=maps)
    assert out.shape == (2, (codec_cls.loc_blocks + 5) * 11, h, w)
    decoded = codec.decode(out)
    assert (decoded.keypoints - pts).abs().max() < 0.05 * stride
    assert decoded.class_prob.shape == (2, 11, 5)
    # known classes come back; an unknown class has zero logits: uniform → the first class, and an
    # unknown flag σ(0) = 0.5 is set (the lone "v5" disc and the untagged disc)
    expected = [["v1", "v2", "v2", "v1", "v1", "v3,v5", "v1", "v2", "v1,v5", "v4", "v1,v5"], TIANCHI_TAGS[1]]
    assert [tags_from_class_prob(decoded.class_prob[i].numpy(), TIANCHI) for i in range(2)] == expected
    with pytest.raises(ValueError, match="needs 5·K = 55"):
        codec.targets_as_output(t, class_logit=maps[:, :11])


def test_binary_head_keeps_the_paper_layout():
    codec = CoarseFineCodec(stride=16)
    assert codec.channels_per_landmark == 4 and CoarseFineCodec.channels_per_landmark == 4
    out = torch.zeros(1, 44, 4, 4)
    out[:, 33:] = 2.0
    decoded = codec.decode(out)
    assert decoded.class_prob is None
    assert torch.allclose(decoded.prob, torch.sigmoid(torch.tensor(2.0)).expand(1, 11))


# ---------------------------------------------------------------------------- losses


def test_multiclass_loss_values():
    """Weighted CE (RSNA 1/2/4) and class-balanced CE (TianChi) against hand computation."""
    from spinectx.losses.classification import ClassLoss, balanced_bce

    codec = HeatmapCodec(stride=4, classes=ClassCodec(SPINAL, "multiclass"))
    tags = [["normal_mild", "moderate", "severe", "", "normal_mild"]]
    logits = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 0.0, 2.0], [9.0, 9.0, 9.0], [0.0, 1.0, 0.0]]])
    out = torch.cat([torch.zeros(1, 5, 4, 4), logits.permute(0, 2, 1).reshape(1, 15, 1, 1).expand(-1, -1, 4, 4)], 1)
    loss = ClassLoss(SPINAL.group_of)
    peak = torch.zeros(1, 5, dtype=torch.long)
    valid = torch.ones(1, 5, dtype=torch.bool)
    value = loss(out, codec, peak, labels_tensor(SPINAL, tags), valid, tags_tensor(SPINAL, tags))
    ce = -torch.log_softmax(logits[0], -1)
    expected = (1 * ce[0, 0] + 2 * ce[1, 1] + 4 * ce[2, 2] + 1 * ce[4, 0]) / (1 + 2 + 4 + 1)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    # an invalid (not annotated / out of frame) landmark adds nothing
    valid[0, 2] = False
    value = loss(out, codec, peak, labels_tensor(SPINAL, tags), valid, tags_tensor(SPINAL, tags))
    assert value.item() == pytest.approx(((ce[0, 0] + 2 * ce[1, 1] + ce[4, 0]) / 4).item(), rel=1e-6)

    # TianChi (no class weights): class-balanced CE per group + balanced BCE of v5, mean over groups
    codec = HeatmapCodec(stride=4, classes=ClassCodec(TIANCHI, "multiclass"))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 11, 5, generator=g)
    out = torch.cat([torch.zeros(2, 11, 2, 2), logits.permute(0, 2, 1).reshape(2, 55, 1, 1).expand(-1, -1, 2, 2)], 1)
    valid = torch.ones(2, 11, dtype=torch.bool)
    value = ClassLoss(TIANCHI.group_of)(out, codec, torch.zeros(2, 11, dtype=torch.long),
                                        labels_tensor(TIANCHI, TIANCHI_TAGS), valid, tags_tensor(TIANCHI, TIANCHI_TAGS))
    t = codec.classes.encode(labels_tensor(TIANCHI, TIANCHI_TAGS), tags_tensor(TIANCHI, TIANCHI_TAGS))

    def balanced(rows):  # rows: (logits of the exclusive classes, target) → mean over present classes
        by_class: dict[int, list[float]] = {}
        for lg, y in rows:
            by_class.setdefault(y, []).append(float(-torch.log_softmax(lg, -1)[y]))
        return sum(sum(v) / len(v) for v in by_class.values()) / len(by_class)

    vert = balanced([(logits[b, k, :2], int(t.exclusive[b, k])) for b in range(2) for k in range(5) if t.exclusive[b, k] >= 0])
    disc = balanced([(logits[b, k, :4], int(t.exclusive[b, k])) for b in range(2) for k in range(5, 11) if t.exclusive[b, k] >= 0])
    v5 = balanced_bce(logits[..., 4], t.flags[..., 4], valid)
    assert value.item() == pytest.approx((vert + (disc + v5.item())) / 2, rel=1e-5)


@pytest.mark.parametrize("set_name", list(SETS))
@pytest.mark.parametrize("head", ["binary", "multiclass"])
@pytest.mark.parametrize("codec_name", list(CODECS))
def test_losses_are_finite_and_fall(codec_name, head, set_name):
    """A few optimisation steps on a free output tensor: finite losses that fall; unused class
    logits (a vertebra's 3 trailing TianChi logits) get no gradient."""
    landmarks = SETS[set_name]
    codec_cls, loss_cls, stride = CODECS[codec_name]
    codec = codec_cls(stride=stride, classes=ClassCodec(landmarks, head))
    k = len(landmarks)
    study_tags = {"tianchi": TIANCHI_TAGS, "spinal": [["normal_mild", "severe", "moderate", "", "normal_mild"]] * 2,
                  "subarticular": [["moderate", "normal_mild"], ["severe", ""]]}[set_name]
    labels, tags = labels_tensor(landmarks, study_tags), tags_tensor(landmarks, study_tags)
    t = codec.encode(_points(2, k, stride, seed=1), torch.ones(2, k, dtype=torch.bool), (SIZE, SIZE))
    loss_fn = loss_cls(landmarks.group_of, class_weight=1.0)
    g = torch.Generator().manual_seed(0)
    out = (0.1 * torch.randn(2, codec.channels_per_landmark * k, SIZE // stride, SIZE // stride, generator=g)).requires_grad_()
    opt = torch.optim.Adam([out], lr=0.05)
    history = []
    for step in range(8):
        losses = loss_fn(out, t, labels, codec, tags)
        assert all(torch.isfinite(v) for v in losses.values())
        opt.zero_grad()
        losses["loss"].backward()
        if step == 0 and head == "multiclass" and set_name == "tianchi":
            grad = out.grad.view(2, codec.channels_per_landmark, k, -1)[:, codec.loc_blocks:]  # [B, n, K, h·w]
            assert grad[:, 2:, :5].abs().sum() == 0 and grad[:, :2, :5].abs().sum() > 0
        opt.step()
        history.append((losses["loss"].item(), losses["class"].item()))
    assert history[-1][0] < history[0][0] and history[-1][1] < history[0][1], history


# ---------------------------------------------------------------------------- every family × codec × head


def _module(model: str, codec: str, head: str, landmarks: str, tta: bool = False):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", f"model/codec={codec}", f"model.class_head={head}",
                                          f"data/landmarks={landmarks}", f"model.tta={str(tta).lower()}",
                                          "model.channels_last=false"])
    return instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks)).eval()


LOC_BLOCKS = {"coarse_fine": 3, "heatmap": 1, "integral": 1}
STRIDES = {"ccfnet": 16, "simplebaseline": 4, "scn": 4, "hrnet": 4}


def _check_outputs(module, codec: str, head: str, landmarks: LandmarkSet, model: str):
    k, n = len(landmarks), (1 if head == "binary" else ClassCodec(landmarks, "multiclass").n_logits)
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        out = module(image)
        decoded = module.predict_keypoints(image, out)
    s = STRIDES[model]
    assert out.shape == (1, (LOC_BLOCKS[codec] + n) * k, SIZE // s, SIZE // s)
    assert decoded.keypoints.shape == (1, k, 2) and decoded.prob.shape == (1, k)
    assert ((decoded.prob >= 0) & (decoded.prob <= 1)).all()
    if head == "binary":
        assert decoded.class_prob is None
        return
    assert decoded.class_prob.shape == (1, k, landmarks.max_classes)
    # P(abnormal) is 1 − P(normal) · Π (1 − P(flag)) of the decoded class probabilities
    normal = [landmarks.groups[g].classes.index(landmarks.groups[g].normal) for g in landmarks.group_of]
    p_normal = decoded.class_prob[0, torch.arange(k), normal]
    flags = torch.tensor([[c in landmarks.groups[g].flags for c in landmarks.groups[g].classes]
                          + [False] * (landmarks.max_classes - len(landmarks.groups[g].classes)) for g in landmarks.group_of])
    no_flag = torch.where(flags, 1 - decoded.class_prob[0], torch.ones_like(decoded.class_prob[0])).prod(-1)
    assert torch.allclose(decoded.prob[0], 1 - p_normal * no_flag, atol=1e-6)


@pytest.mark.parametrize("head", ["binary", "multiclass"])
@pytest.mark.parametrize("codec", list(LOC_BLOCKS))
@pytest.mark.parametrize("model", list(STRIDES))
def test_every_family_and_codec_on_tianchi(model, codec, head):
    _check_outputs(_module(model, codec, head, "tianchi"), codec, head, TIANCHI, model)


@pytest.mark.parametrize("head", ["binary", "multiclass"])
@pytest.mark.parametrize("codec", list(LOC_BLOCKS))
@pytest.mark.parametrize("set_name", ["spinal", "subarticular"])
def test_rsna_landmark_sets(set_name, codec, head):
    model = "ccfnet" if codec == "coarse_fine" else "simplebaseline"
    module = _module(model, codec, head, f"rsna2024_{set_name}")
    _check_outputs(module, codec, head, SETS[set_name], model)


# ---------------------------------------------------------------------------- flip pairs


def test_flip_averaging_swaps_left_and_right_back():
    """A stand-in network that, like a trained one, finds "left" on the image's right half (the
    patient's left, radiological convention) and reads its class from the blob's brightness. On the
    mirrored image its "left" channel finds the patient's right recess: without the permutation the
    averaged points would fall between the two recesses and the classes would mix."""
    module = _module("simplebaseline", "heatmap", "multiclass", "rsna2024_subarticular", tta=True)
    assert module.landmarks.flip_permutation == (1, 0)

    def fake_net(image):
        b, _, h, w = image.shape
        out = torch.zeros(b, 4 * 2, h // 4, w // 4)
        for i in range(b):
            frame = image[i, 0]
            for k, half in enumerate((slice(w // 2, w), slice(0, w // 2))):  # k 0 = left: image right half
                flat = frame[:, half].argmax()
                row, col = int(flat // (w // 2)), int(flat % (w // 2)) + half.start
                out[i, k, row // 4, col // 4] = 1.0
                brightness = float(frame[row, col])
                severity = 0 if brightness < 0.4 else (1 if brightness < 0.7 else 2)
                out[i, 2 + 2 * severity + k] = 4.0  # class block `severity`, landmark k
        return out

    object.__setattr__(module, "_net_forward", fake_net)
    image = torch.zeros(1, 1, SIZE, SIZE)
    image[0, 0, 30, 50] = 0.9  # patient's left recess (image right): severe
    image[0, 0, 34, 10] = 0.3  # patient's right recess: normal/mild
    decoded = module.predict_keypoints(image)
    assert decoded.keypoints[0, 0].tolist() == pytest.approx([49.5, 29.5])  # centre of cell (7, 12)
    assert decoded.keypoints[0, 1].tolist() == pytest.approx([9.5, 33.5])
    assert decoded.class_prob[0, 0].argmax().item() == 2 and decoded.class_prob[0, 1].argmax().item() == 0
    plain = module.codec.decode(fake_net(image))
    assert torch.allclose(decoded.class_prob, plain.class_prob) and torch.allclose(decoded.prob, plain.prob)


def test_old_checkpoints_load_as_binary(tmp_path):
    import lightning

    from spinectx.lit import LandmarkModule

    module = _module("ccfnet", "coarse_fine", "binary", "tianchi")
    hparams = dict(module.hparams)
    assert hparams.pop("class_head") == "binary"
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": lightning.__version__}, path)
    loaded = LandmarkModule.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams.class_head == "binary" and loaded.net.head.out_channels == 44
    assert torch.equal(loaded.net.head.weight, module.net.head.weight)
    multi = _module("ccfnet", "coarse_fine", "multiclass", "tianchi")
    path = tmp_path / "new.ckpt"
    torch.save({"state_dict": multi.state_dict(), "hyper_parameters": dict(multi.hparams),
                "pytorch-lightning_version": lightning.__version__}, path)
    assert LandmarkModule.load_from_checkpoint(path, map_location="cpu").hparams.class_head == "multiclass"


def test_profile_counts_the_extra_class_channels():
    """The multiclass head only widens the 1×1 output conv: (n − 1)·K more outputs on its input
    channels (CCF-Net R18+MSC: 256 channels on a 32×32 grid at 512²)."""
    from hydra import initialize_config_dir

    from spinectx.cli.profile import build_net, multiclass_table
    from spinectx.models.complexity import measure

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        nets = {(name, head): build_net("ccfnet", "resnet18", True, name, head)
                for name, head in (("tianchi", "binary"), ("tianchi", "multiclass"), ("rsna2024_spinal", "multiclass"))}
    c = {key: measure(net, (512, 512)) for key, net in nets.items()}
    binary = c["tianchi", "binary"]
    assert round(binary.params_m, 2) == 4.83  # the paper's row
    assert c["tianchi", "multiclass"].params - binary.params == 4 * 11 * (256 + 1)  # weights + bias
    assert c["tianchi", "multiclass"].macs - binary.macs == 4 * 11 * 256 * 32 * 32
    # RSNA: (3 + 3) blocks × 5 levels = 30 output channels instead of 4 × 11 = 44
    assert c["rsna2024_spinal", "multiclass"].params - binary.params == (30 - 44) * 257
    row = {"method": "CCF-Net", "backbone": "resnet18", "msc": "true", "params_M": 4.834, "flops_G": 12.0,
           "tianchi_multiclass_params_M": 4.845, "tianchi_multiclass_flops_G": 12.01}
    table = multiclass_table([row], ["tianchi"], 512)
    assert "| CCF-Net resnet18 + MSC | 4.834 M / 12.00 G | 4.845 M / 12.01 G |" in table
