"""The level-context head (``model/context=bilstm|transformer``, SPEC §8) wired into every model
family, codec and class head, on both datasets; ``model/context=none`` leaves today's models as
they were."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from spinectx.lit import LandmarkModule
from spinectx.models.context import ContextHead
from tests.test_train import make_cfg

FAMILIES = ["ccfnet", "simplebaseline", "scn", "hrnet"]
TIANCHI_ORDER = [5, 0, 6, 1, 7, 2, 8, 3, 9, 4, 10]  # T12-L1, L1, L1-L2, L2, … L5, L5-S1


def _module(cfg) -> LandmarkModule:
    return instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks, resolve=True))


def _batch(cfg) -> dict:
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


# ---------------------------------------------------------------------------- every family × kind


@pytest.mark.parametrize("kind", ["bilstm", "transformer"])
@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in ("scn", "hrnet") else f
                                    for f in FAMILIES])  # scn, hrnet: ~30 s and more on 2 busy cores
def test_one_step_fit_reloads_and_predicts(tmp_path, synthetic_root, family, kind):
    from spinectx.cli.train import train
    from spinectx.inference import load_module

    cfg = make_cfg(tmp_path, synthetic_root, [f"model={family}", f"model/context={kind}", "trainer.max_epochs=1",
                                              "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1",
                                              "evaluate=false", "overlay_studies=0"])
    train(cfg)
    module = load_module(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", "cpu", tta=False)
    head = module.context_head
    assert isinstance(head, ContextHead) and head.context.kind == kind
    complexity = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["complexity"]
    assert complexity["context_params_M"] == round(sum(p.numel() for p in head.parameters()) / 1e6, 4) > 0
    assert head.context.order.tolist() == TIANCHI_ORDER  # TianChi's set order is not the spine's
    assert head.context.in_channels == module.net.feature_channels
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        output, features = module.forward_with_features(image)
        decoded = module.predict_keypoints(image)
    assert features.shape[:2] == (2, module.net.feature_channels)
    assert decoded.class_prob.shape == (2, 11, 5) and torch.isfinite(decoded.prob).all()
    # the probabilities are the head's at the decoded points, not the output's cell read-out
    cell = module.codec.decode(output)
    torch.testing.assert_close(decoded.keypoints, cell.keypoints)
    expected = module.classes.decode(head(features, cell.keypoints, (64, 64)))
    torch.testing.assert_close(decoded.prob, expected[0])
    torch.testing.assert_close(decoded.class_prob, expected[1])
    assert not torch.allclose(decoded.prob, cell.prob)
    # flip TTA: each pass classifies through the head at its own points, the mirror's rows permuted back
    mirrored = module.predict_keypoints(image.flip(-1))
    module.hparams.tta = True
    averaged = module.predict_keypoints(image)
    perm = module.flip_permutation
    torch.testing.assert_close(averaged.class_prob, (decoded.class_prob + mirrored.class_prob[:, perm]) / 2)


# ---------------------------------------------------------------------------- codecs × heads × datasets


@pytest.mark.parametrize("head", ["binary", "multiclass"])
@pytest.mark.parametrize("codec", ["coarse_fine", "heatmap", "integral"])
def test_class_loss_trains_the_context_head_not_the_cell_logits(tmp_path, synthetic_root, codec, head):
    """The class term reads the context head's logits: its gradient reaches the head and the shared
    features, never the output's class-logit channels (which the cell read-out would train)."""
    model = "ccfnet" if codec == "coarse_fine" else "simplebaseline"
    cfg = make_cfg(tmp_path, synthetic_root, [f"model={model}", f"model/codec={codec}", f"model.class_head={head}",
                                              "model/context=bilstm", "model.context.dropout=0", "data.augment.p=0"])
    torch.manual_seed(0)
    module = _module(cfg).train()
    batch = _batch(cfg)
    output, features = module.forward_with_features(batch["image"])
    losses = module._losses(batch, output, features)
    assert torch.isfinite(losses["loss"]) and losses["class"] > 0
    with torch.no_grad():  # the class term is that of the head's logits at the true points
        targets = module.codec.encode(batch["keypoints"], batch["visible"], (64, 64))
        logits = module.context_head(features, batch["keypoints"], (64, 64), mask=targets.valid)
        class_term = module.loss_fn.classification(output, module.codec, targets.peak_index, batch["labels"],
                                                   targets.valid, batch.get("tags"), logits)
    torch.testing.assert_close(class_term, losses["class"])
    module.zero_grad()
    losses["loss"].backward()
    for name, p in module.context_head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    k, n_loc = len(module.landmarks), module.codec.loc_blocks
    grad = module.net.head.weight.grad  # the 1×1 output conv: block b of landmark j is channel b·K + j
    assert grad[:n_loc * k].abs().sum() > 0 and grad[n_loc * k:].abs().sum() == 0
    with pytest.raises(ValueError, match="forward_with_features"):
        module._losses(batch, output)


@pytest.mark.parametrize("view", ["spinal", pytest.param("foraminal", marks=pytest.mark.slow), "subarticular"])
def test_rsna_views_fast_dev_run_with_bilstm(tmp_path, synthetic_rsna_root, view):
    from spinectx.cli.train import train

    cfg = make_cfg(tmp_path, synthetic_rsna_root, ["data=rsna2024", f"data.view={view}", "data.num_folds=3",
                                                   "model=simplebaseline", "model/context=bilstm",
                                                   "+trainer.fast_dev_run=true", "evaluate=false"])
    train(cfg)
    module = _module(cfg)
    # the RSNA levels are already top to bottom; the axial view's left/right have no vertical order
    expected = None if view == "subarticular" else list(range(5))
    order = module.context_head.context.order
    assert (order.tolist() if order is not None else None) == expected
    assert module.context_head.context.num_classes == 3


def test_qin2020_method_is_integral_regression_with_a_bilstm(tmp_path, synthetic_root):
    cfg = make_cfg(tmp_path, synthetic_root, ["method=qin2020"])
    assert cfg.model.name == "qin2020" and cfg.model.codec._target_.endswith("IntegralCodec")
    assert cfg.model.context.kind == "bilstm" and cfg.model.net._target_.endswith("SimpleBaseline")
    assert make_cfg(tmp_path, synthetic_root, ["method=qin2020", "model=hrnet"]).model.net._target_.endswith("HRNet")


# ---------------------------------------------------------------------------- none = today's model


@pytest.mark.parametrize("family", ["ccfnet", "scn"])
def test_context_none_is_todays_model(tmp_path, synthetic_root, family):
    """Same seed → the same weights and outputs with ``context: {kind: none}`` as with no context key
    (a config or checkpoint from before the key existed)."""
    cfg = make_cfg(tmp_path, synthetic_root, [f"model={family}", "model.tta=true"])
    assert cfg.model.context.kind == "none"
    torch.manual_seed(0)
    with_key = _module(cfg).eval()
    old = cfg.copy()
    with open_dict(old):
        del old.model.context
    torch.manual_seed(0)
    without = _module(old).eval()
    assert with_key.context_head is None and without.context_head is None
    state, old_state = with_key.state_dict(), without.state_dict()
    assert state.keys() == old_state.keys() and all(torch.equal(state[k], old_state[k]) for k in state)
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(with_key(image), without(image))
        a, b = with_key.predict_keypoints(image), without.predict_keypoints(image)
    for field in ("keypoints", "score", "prob", "class_prob"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_unknown_context_kind_is_refused(tmp_path, synthetic_root):
    cfg = make_cfg(tmp_path, synthetic_root, ["model=simplebaseline", "model/context=bilstm", "model.context.kind=gru"])
    with pytest.raises(Exception, match="bilstm"):  # wrapped by Hydra
        _module(cfg)


# ---------------------------------------------------------------------------- context flows


def test_a_neighbours_image_region_changes_the_class_only_with_context(tmp_path, synthetic_root):
    """A stand-in network whose output puts every landmark at a fixed spot and whose features are
    the image itself (pooled to stride 4): changing the image around one landmark changes the
    features read at that landmark only. With the Bi-LSTM the class probabilities of its spinal
    neighbours change too; with a per-landmark classifier on the same sampled features they do not."""
    cfg = make_cfg(tmp_path, synthetic_root, ["model=simplebaseline", "model/context=bilstm", "model.tta=false"])
    torch.manual_seed(0)
    module = _module(cfg).eval()
    k, channels = len(module.landmarks), module.net.feature_channels
    # landmark j at stride-4 cell (row, 8), rows 2..12 top to bottom in spinal order
    rows = (torch.arange(k) + 2)[torch.argsort(torch.tensor(TIANCHI_ORDER))]

    def fake_net(image, return_features=False):
        output = torch.zeros(image.shape[0], module.codec.channels_per_landmark * k, 16, 16)
        output[:, torch.arange(k), rows, 8] = 1.0  # heatmap block: one peak per landmark
        features = F.avg_pool2d(image, 4).expand(-1, channels, -1, -1)
        return (output, features) if return_features else output

    object.__setattr__(module, "_net_forward", fake_net)
    image = torch.rand(1, 1, 64, 64)
    before = module.predict_keypoints(image)
    assert torch.allclose(before.keypoints[0, :, 1], rows.float() * 4 + 1.5, atol=0.5)
    target = TIANCHI_ORDER[5]  # L3 (6th from the top)
    changed = image.clone()
    row = int(rows[target])
    changed[..., 4 * row:4 * row + 4, 32:36] += 2.0  # the cell landmark `target` reads
    after = module.predict_keypoints(changed)
    neighbours = [TIANCHI_ORDER[4], TIANCHI_ORDER[6]]
    assert not torch.allclose(after.prob[0, target], before.prob[0, target])
    for n in neighbours:  # context flows along the spine
        assert (after.class_prob[0, n] - before.class_prob[0, n]).abs().max() > 1e-4, n

    local = ContextHead(channels, module.classes.n_logits, "none", order=TIANCHI_ORDER)
    module.context_head = local.eval()
    before, after = module.predict_keypoints(image), module.predict_keypoints(changed)
    others = [i for i in range(k) if i != target]
    assert not torch.allclose(after.prob[0, target], before.prob[0, target])
    torch.testing.assert_close(after.class_prob[0, others], before.class_prob[0, others])
