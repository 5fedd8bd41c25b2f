"""The two-stage pipeline (SPEC §7): stage-2 crop classifier, its recipes, and the stage-1 + stage-2 pair
in training, prediction and evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.cli.train import train
from spinectx.lit import CropClassifierModule, LandmarkModule, load_two_stage
from spinectx.losses.focal import seed_class_weights
from spinectx.models.crop_net import CropNet
from test_train import make_cfg
from test_workflow import data_args, run


def build(overrides, tmp_path):
    import hydra

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.root_dir={tmp_path}"])
    return cfg, hydra.utils.instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks, resolve=True),
                                        input_size=64, input_slices=int(cfg.data.get("slices") or 1))


# ------------------------------------------------------------------------------------------ units
@pytest.mark.parametrize("kind", ["none", "bilstm", "transformer"])
def test_crop_net_shapes_and_whether_a_neighbour_crop_matters(kind):
    torch.manual_seed(0)
    net = CropNet(num_landmarks=5, num_classes=3, in_chans=1, context={"kind": kind, "hidden": 16, "heads": 2}).eval()
    crops = torch.rand(2, 5, 1, 32, 32)
    out = net(crops)
    assert out.shape == (2, 5, 3)
    changed = crops.clone()
    changed[:, 4] = torch.rand(2, 1, 32, 32)  # only landmark 4's crop
    diff = (net(changed) - out).abs().amax(-1)  # [B, K]
    assert (diff[:, 4] > 0).all()
    if kind == "none":  # each crop on its own: the others do not move
        assert diff[:, :4].max() == 0
    else:  # context: landmark 0 hears about landmark 4
        assert (diff[:, 0] > 1e-6).all()


def test_crop_net_and_module_refuse_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="neither 'deepscorenet' nor a timm model"):
        CropNet(3, 3, arch="no_such_net")
    with pytest.raises(ValueError, match="crops \\[B, 3, 1, S, S\\]"):
        CropNet(3, 3)(torch.rand(1, 4, 1, 32, 32))
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="size_px or size_mm, exactly one"):
        build(["model=two_stage", "model.crop.size_mm=20"], tmp_path)
    with pytest.raises(InstantiationException, match="focal loss .* needs model.class_head=multiclass"):
        build(["method=deepscorenet_seed", "model.class_head=binary"], tmp_path)
    _, module = build(["model=two_stage", "model.crop.size_px=null", "model.crop.size_mm=24"], tmp_path)
    with pytest.raises(ValueError, match="need the pixel spacing"):
        module.crops(torch.rand(1, 1, 64, 64), torch.full((1, 11, 2), 30.0))
    with pytest.raises(RuntimeError, match="localiser's points"):
        module.predict_keypoints(torch.rand(1, 1, 64, 64))


def test_mm_crops_follow_the_spacing(tmp_path):
    """24 mm at (dy, dx) = (0.5, 1.0) mm/px: a 48-row × 24-column window resampled to 32 × 32, so samples
    are 1.5 rows and 0.75 columns apart; a 24 px window is 0.75 px apart both ways."""
    _, module = build(["model=two_stage", "model.crop.size_px=null", "model.crop.size_mm=24"], tmp_path)
    image = torch.zeros(1, 1, 100, 100)
    image[0, 0, :, 59] = 1.0  # 9 px right of the centre: 9 / 0.75 = sample column 16 + 12 = 28
    image[0, 0, 68, :] = 2.0  # 18 px below: 18 / 1.5 = sample row 28 (mm window); 18 / 0.75 = 40 (outside 24 px)
    centers = torch.tensor([[[50.0, 50.0]] * 11])
    crop = module.crops(image, centers, spacing=torch.tensor([[0.5, 1.0]]))[0, 0, 0]
    assert crop.shape == (32, 32)
    assert (crop[28] == 2.0).all() and (crop[:, 28] > 0).all() and (crop[:28, 28] == 1.0).all()
    assert crop[:28, :27].abs().max() == 0 and crop[29:, 30:].abs().max() == 0  # columns 27, 29: bilinear 0.25
    module_px = build(["model=two_stage", "model.crop.size_px=24"], tmp_path)[1]
    crop_px = module_px.crops(image, centers)[0, 0, 0]
    assert not (crop_px == 2.0).any() and (crop_px[:, 28] == 1.0).all()


def test_seed_recipe_composes_to_focal_sgd_and_weights_from_the_training_frequencies(tmp_path):
    cfg, module = build(["method=deepscorenet_seed"], tmp_path)
    assert cfg.model.optimizer._target_ == "torch.optim.SGD" and cfg.model.optimizer.lr == 1e-3
    assert cfg.data.sampler.kind == "class_balanced" and cfg.data.sampler.seed == cfg.seed  # the seed's oversampling
    assert build(["model=two_stage"], tmp_path)[0].data.sampler.kind == "none"
    assert cfg.model.optimizer.momentum == 0.9 and cfg.model.scheduler is None
    assert module.loss_kind == "focal" and module.gamma == 3.0
    assert type(module.net.crop_model).__name__ == "DeepScoreNet"
    # frequencies: vertebra v1 0.7 / v2 0.3 on every vertebra; discs uniform over v1..v4 (+ flag v5)
    prior = []
    for k, g in enumerate(module.landmarks.group_of):
        prior.append([0.7, 0.3, 0, 0, 0] if g == 0 else [0.2] * 5)
    module.class_prior = prior
    focal = module._focal_losses()
    alpha, weight = seed_class_weights([0.7, 0.3])
    expected = torch.tensor(alpha) * torch.tensor(weight)
    torch.testing.assert_close(focal[0].class_factor, expected.float())
    torch.testing.assert_close(focal[1].class_factor, torch.full((4,), 0.25 * 1.0))  # 4 exclusive, uniform
    cfg, module = build(["model=two_stage", "model/crop_net=timm", "model/context=bilstm"], tmp_path)
    assert type(module.net.crop_model).__name__ == "ResNet" and module.net.context is not None


# ------------------------------------------------------------------------- trained stage 1 + stage 2
@pytest.fixture(scope="module")
def stages(tmp_path_factory, synthetic_root):
    """A CCF-Net localiser and a DeepScoreNet stage 2 on its points, each 1 short epoch at 64 px."""
    tmp = tmp_path_factory.mktemp("two_stage")
    cfg1 = make_cfg(tmp / "s1", synthetic_root, ["trainer.max_epochs=1", "overlay_studies=0"])
    train(cfg1)
    stage1 = json.loads((Path(cfg1.paths.output_dir) / "metrics.json").read_text())["evaluation"]["checkpoint"]
    cfg2 = make_cfg(tmp / "s2", synthetic_root, ["model=two_stage", f"model.stage1_ckpt={stage1}",
                                                  "trainer.max_epochs=1", "overlay_studies=0"])
    train(cfg2)
    metrics2 = json.loads((Path(cfg2.paths.output_dir) / "metrics.json").read_text())
    return stage1, metrics2["evaluation"]["checkpoint"], metrics2


@pytest.fixture(scope="module")
def mm_classifier(stages, tmp_path_factory, synthetic_root):
    """A DeepScoreNet stage 2 with 24 mm crops, trained by the seed's recipe (oversampling on) for a
    few steps on the ``stages`` localiser's points."""
    tmp = tmp_path_factory.mktemp("two_stage_mm")
    cfg = make_cfg(tmp, synthetic_root, ["method=deepscorenet_seed", f"model.stage1_ckpt={stages[0]}",
                                         "model.crop.size_px=null", "model.crop.size_mm=24", "trainer.max_epochs=1",
                                         "+trainer.limit_train_batches=2", "overlay_studies=0"])
    train(cfg)
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["evaluation"]["checkpoint"]


def test_input_spacing_is_the_frame_spacing_through_the_resize():
    from spinectx.data.errors import DataError
    from spinectx.inference import input_spacing

    torch.testing.assert_close(input_spacing((0.5, 0.8), (100, 80), 64), torch.tensor([0.5 * 100 / 64, 0.8 * 80 / 64]))
    for bad in (None, (0.5,), (0.0, 1.0), (float("nan"), 1.0)):
        with pytest.raises(DataError, match="a.dcm: PixelSpacing .* a classifier with crops in mm needs it"):
            input_spacing(bad, (100, 80), 64, "a.dcm")


def test_rsna_slices_hand_a_mm_classifier_their_spacing():
    """predict_slices gives a classifier with ``size_mm`` each slice's (dy, dx) mm per input pixel;
    a slice without PixelSpacing is a DataError naming its file."""
    import numpy as np

    from spinectx.codecs.base import Decoded
    from spinectx.data.dicom import SliceHeader
    from spinectx.data.errors import DataError
    from spinectx.rsna_inference import predict_slices

    class Pair:  # what predict_slices needs of a two-stage pair
        hparams = {"input_size": 32, "input_slices": 1}
        device = torch.device("cpu")
        size_mm = 24.0
        seen = []

        def predict_keypoints(self, image, spacing=None):
            self.seen.append(spacing)
            b = image.shape[0]
            return Decoded(torch.zeros(b, 5, 2), torch.zeros(b, 5), torch.zeros(b, 5), torch.full((b, 5, 3), 1 / 3))

    def header(i, spacing, rows=64, cols=48):
        return SliceHeader(f"s{i}.dcm", "1", "2", str(i), "Sagittal T1", 1, i, None, None, None, None, spacing,
                           rows, cols)

    slices = [header(0, (0.5, 0.75)), header(1, (0.6, 0.9))]
    pair = Pair()
    predict_slices(pair, slices, [1, 0], read=lambda ref: np.zeros((64, 48), np.float32))
    torch.testing.assert_close(pair.seen[0], torch.tensor([[0.6 * 2, 0.9 * 1.5], [0.5 * 2, 0.75 * 1.5]]))
    with pytest.raises(DataError, match="s2.dcm: PixelSpacing"):
        predict_slices(pair, [header(2, None)], [0], read=lambda ref: np.zeros((64, 48), np.float32))
    Pair.size_mm = None  # crops in px: no spacing
    predict_slices(pair, slices, [0], read=lambda ref: np.zeros((64, 48), np.float32))
    assert pair.seen[-1] is None


def test_predict_with_a_mm_classifier_is_stage_1_then_stage_2_at_the_input_spacing(stages, mm_classifier,
                                                                                  synthetic_root, tmp_path):
    """spinectx-predict (no longer refusing mm crops) = stage 1, then stage 2 with the frame's
    PixelSpacing scaled to the 64 px input, by hand; another spacing gives other probabilities."""
    from spinectx.inference import find_targets, frame_to_input, read_target

    stage1_ckpt = stages[0]
    study = next(p for p in Path(synthetic_root, "lumbar_train").iterdir() if p.is_dir())
    out = tmp_path / "mm.json"
    run("spinectx.cli.predict", f"ckpt_path={stage1_ckpt}", f"classifier_ckpt={mm_classifier}", f"input={study}",
        f"output={out}", cwd=tmp_path)
    points = json.loads(out.read_text())[0]["data"][0]["annotation"][0]["data"]["point"]

    stage1 = LandmarkModule.load_from_checkpoint(stage1_ckpt, map_location="cpu").eval()
    stage2 = CropClassifierModule.load_from_checkpoint(mm_classifier, map_location="cpu").eval()
    assert stage2.size_mm == 24
    (target,), _ = find_targets(study)
    frame, _ = read_target(target)
    image = frame_to_input(frame, 64)[None]
    h, w = frame.shape
    spacing = torch.tensor([[target.pixel_spacing[0] * h / 64, target.pixel_spacing[1] * w / 64]])
    with torch.no_grad():
        located = stage1.predict_keypoints(image)
        prob, class_prob = stage2.classify(image, located.keypoints, spacing)
        other, _ = stage2.classify(image, located.keypoints, spacing * 2)
    by_name = {p["tag"]["identification"]: p for p in points}
    got = torch.tensor([by_name[name]["prob"] for name in stage2.landmarks.names])
    torch.testing.assert_close(got, prob[0], atol=1e-5, rtol=0)
    for k, name in enumerate(stage2.landmarks.names):
        classes = stage2.landmarks.group(name).classes
        torch.testing.assert_close(torch.tensor([by_name[name]["probs"][c] for c in classes]),
                                   class_prob[0, k, :len(classes)], atol=1e-5, rtol=0)
    assert (other - prob).abs().max() > 1e-4  # the spacing matters: a wrong one is caught


def test_two_stage_prediction_is_stage_1_then_stage_2(stages, synthetic_root):
    stage1_ckpt, classifier_ckpt, metrics = stages
    assert metrics["complexity"]["crops_per_image"] == 11 and metrics["complexity"]["keras_params_M"] > 2.78
    pair = load_two_stage(stage1_ckpt, classifier_ckpt)
    stage1 = LandmarkModule.load_from_checkpoint(stage1_ckpt, map_location="cpu").eval()
    stage2 = CropClassifierModule.load_from_checkpoint(classifier_ckpt, map_location="cpu").eval()
    image = torch.rand(2, 1, 64, 64)
    got = pair.predict_keypoints(image)
    located = stage1.predict_keypoints(image)
    with torch.no_grad():
        prob, class_prob = stage2.classify(image, located.keypoints)
    torch.testing.assert_close(got.keypoints, located.keypoints)
    torch.testing.assert_close(got.prob, prob)
    torch.testing.assert_close(got.class_prob, class_prob)
    assert not torch.allclose(got.prob, located.prob)  # the classes are stage 2's, not stage 1's
    # a stage-1 checkpoint given as the classifier is refused by name
    with pytest.raises(ValueError, match="not a crop-classifier checkpoint"):
        load_two_stage(stage1_ckpt, stage1_ckpt)


def test_predict_and_eval_take_the_pair(stages, synthetic_root, tmp_path):
    stage1_ckpt, classifier_ckpt, _ = stages
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    study = next(p for p in Path(synthetic_root, "lumbar_train").iterdir() if p.is_dir())
    run("spinectx.cli.predict", f"ckpt_path={stage1_ckpt}", f"input={study}", f"output={one}", cwd=tmp_path)
    run("spinectx.cli.predict", f"ckpt_path={stage1_ckpt}", f"classifier_ckpt={classifier_ckpt}", f"input={study}",
        f"output={two}", cwd=tmp_path)

    def points(path):
        study = json.loads(path.read_text())[0]
        return [(p["coord"], p["prob"]) for p in study["data"][0]["annotation"][0]["data"]["point"]]

    a, b = points(one), points(two)
    assert [c for c, _ in a] == [c for c, _ in b] and len(a) == 11  # stage 1's points …
    assert [p for _, p in a] != [p for _, p in b]  # … with stage 2's probabilities
    results = {}
    for name, extra in (("one", []), ("two", [f"classifier_ckpt={classifier_ckpt}"])):
        run("spinectx.cli.eval", f"ckpt_path={stage1_ckpt}", *extra, *data_args(synthetic_root), "trainer=cpu",
            f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path / name}", "overlay_studies=0", cwd=tmp_path)
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    for k in ("L-Disc", "L-Vertebra", "box16_rate"):
        assert results["two"][k] == pytest.approx(results["one"][k], abs=1e-9)
    assert 0.0 <= results["one"]["box16_rate"] <= 1.0
    assert results["one"]["classifier_checkpoint"] is None
    assert results["two"]["classifier_checkpoint"] == str(classifier_ckpt)  # which stage 2 was evaluated
    rows = (tmp_path / "two" / "per_landmark.csv").read_text().splitlines()
    assert "box16_rate" in rows[0].split(",") and len(rows) == 12


def test_swapped_or_mapped_checkpoints_are_refused_by_name(stages, synthetic_root, tmp_path):
    from spinectx.data.errors import ConfigError
    from spinectx.inference import load_module

    stage1_ckpt, classifier_ckpt, _ = stages
    with pytest.raises(ConfigError, match="stage-2 crop classifier .* give it as classifier_ckpt="):
        load_module(classifier_ckpt)
    study = next(p for p in Path(synthetic_root, "lumbar_train").iterdir() if p.is_dir())
    proc = subprocess.run([sys.executable, "-m", "spinectx.cli.predict", f"ckpt_path={stage1_ckpt}",
                           f"classifier_ckpt={{spinal: {classifier_ckpt}}}", f"input={study}",
                           f"output={tmp_path / 'p.json'}"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "a per-view mapping is for RSNA 2024" in proc.stderr, proc.stderr[-2000:]


# ------------------------------------------------------------------------- experiment=classifiers
def test_stage1_lookup_names_what_is_missing(tmp_path):
    from spinectx.cli import stage1_checkpoint
    from spinectx.data.errors import ConfigError

    with pytest.raises(ConfigError, match="run classifier=cell first"):
        stage1_checkpoint(str(tmp_path), str(tmp_path / "data"), None, 0)
    # a finished cell job at 64 px: found at 64 px, not for a 128 px two-stage job, nor for a context job
    for name, kind in (("cell", "none"), ("lstm", "bilstm")):
        job = tmp_path / "sweep" / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(f"data:\n  image_size: 64\nmodel:\n  name: ccfnet\n  context:\n    kind: {kind}\n")
        (job / "split.json").write_text(json.dumps({"data_root": str(tmp_path / "data"), "view": None, "fold": 0}))
        (job / "last.ckpt").write_text("weights")
        (job / "metrics.json").write_text(json.dumps({"evaluation": {"checkpoint": str(job / "last.ckpt")}}))
    sweep = str(tmp_path / "sweep")
    assert stage1_checkpoint(sweep, str(tmp_path / "data"), None, 0, 64) == str((tmp_path / "sweep" / "cell" / "last.ckpt").resolve())
    with pytest.raises(ConfigError, match="at 128 px"):
        stage1_checkpoint(sweep, str(tmp_path / "data"), None, 0, 128)
    with pytest.raises(ConfigError):
        stage1_checkpoint(sweep, str(tmp_path / "data"), "spinal", 0, 64)


def test_tiny_classifiers_sweep_and_report(tmp_path, synthetic_root):
    """One-stage cell + Bi-LSTM heads, then the two-stage DeepScoreNet head at the cell job's points;
    spinectx-report writes classifiers.md with one row per head and nothing in the paper tables."""
    sweep = tmp_path / "sweep"
    common = ["experiment=classifiers", *data_args(synthetic_root), "data.image_size=64", "logger=none",
              "trainer.max_epochs=1", "data.num_rep=1", "overlay_studies=0", "callbacks.progress_bar=null",
              f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    run("spinectx.cli.train", "--multirun", *common, "classifier=cell,bilstm", cwd=tmp_path)
    run("spinectx.cli.train", "--multirun", *common, "classifier=deepscorenet", cwd=tmp_path)
    jobs = {p.parent.name: json.loads(p.read_text()) for p in sweep.rglob("metrics.json")}
    assert len(jobs) == 3 and all("evaluation" in m and m["train_seconds"] > 0 for m in jobs.values())
    stage2 = next(m for name, m in jobs.items() if "deepscorenet" in name)
    cell = next(m for name, m in jobs.items() if "cell" in name)
    ckpt = torch.load(stage2["evaluation"]["checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["stage1_ckpt"] == str(Path(cell["evaluation"]["checkpoint"]).resolve())
    out = tmp_path / "report"
    run("spinectx.cli.report", f"sweep={sweep}", f"out={out}", cwd=tmp_path)
    md = (out / "classifiers.md").read_text()
    for head in ("| cell read-out |", "| bilstm |", "| two-stage deepscorenet |"):
        assert head in md, md
    assert not (out / "table1.md").exists()  # the classifiers' cell job is not a paper cell
    rows = (out / "classifiers.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("head,dataset,fold,C-Disc")


def test_deepscorenet_batchnorm_momentum_is_a_setting_not_a_parameter(tmp_path):
    from spinectx.models.deepscorenet import keras_parameter_count

    _, suite = build(["model=two_stage"], tmp_path)
    _, seed = build(["method=deepscorenet_seed"], tmp_path)
    momenta = {m.momentum for m in suite.net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1} and {m.momentum for m in seed.net.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.01}
    assert keras_parameter_count(suite.net) == keras_parameter_count(seed.net)
