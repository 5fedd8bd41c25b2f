"""Training through the Hydra config: fast_dev_run, metrics.json, overrides, loss falls."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from spinectx.cli import CONF_DIR
from spinectx.cli.train import train


def make_cfg(tmp_path, synthetic_root, overrides=()):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "logger=none", "trainer=cpu", f"data.root={synthetic_root}", "data.synthetic=null",
            "data.image_size=64", "data.batch_size=4", "data.num_workers=0", "data.num_rep=1",
            f"paths.root_dir={tmp_path}", "callbacks.progress_bar=null", "overlay_studies=2", *overrides,
        ])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


def test_config_composes_with_issue_overrides(tmp_path, synthetic_root):
    cfg = make_cfg(tmp_path, synthetic_root, ["model=ccfnet", "model.backbone=resnet50", "model.msc=false",
                                              "data.fold=2", "data.fraction=0.5", "trainer.max_epochs=3", "seed=7"])
    assert cfg.model.net.backbone == "resnet50" and cfg.model.net.msc is False
    assert cfg.data.fold == 2 and cfg.data.fraction == 0.5 and cfg.trainer.max_epochs == 3 and cfg.seed == 7
    for logger in ("wandb", "csv", "none"):
        make_cfg(tmp_path, synthetic_root, [f"logger={logger}"])
    gpu = make_cfg(tmp_path, synthetic_root, ["trainer=gpu"]).trainer
    assert gpu.accelerator == "gpu" and gpu.precision == "bf16-mixed"
    ddp = make_cfg(tmp_path, synthetic_root, ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]).trainer
    assert (ddp.strategy, ddp.devices, ddp.num_nodes, ddp.sync_batchnorm) == ("ddp", 4, 2, True)


def test_models_default_to_multiclass_and_the_paper_cells_to_binary(tmp_path, synthetic_root):
    for model in ("ccfnet", "simplebaseline", "scn", "hrnet"):
        assert make_cfg(tmp_path, synthetic_root, [f"model={model}"]).model.class_head == "multiclass"
    not_cells = {"qin2020", "deepscorenet_seed"}  # the other seed systems, not cells of the paper's tables
    methods = sorted(p.stem for p in (Path(CONF_DIR) / "method").glob("*.yaml") if p.stem not in not_cells)
    assert len(methods) == 11
    for method in methods:  # the paper's table cells keep the paper's head
        assert make_cfg(tmp_path, synthetic_root, [f"method={method}"]).model.class_head == "binary", method


@pytest.mark.parametrize("overrides", [  # the models' default head is multiclass
    ["model=ccfnet"],
    ["model=ccfnet", "model.msc=false", "model/codec=integral"],
    ["model=simplebaseline", "model.msc=true", "model.class_head=binary"],
    ["model=simplebaseline", "model/codec=integral"],
    ["model=scn"],
    ["model=scn", "model/codec=coarse_fine", "model.class_head=binary"],
    ["model=hrnet"],
], ids=lambda o: "-".join(x.split("=")[-1] for x in o))
def test_fast_dev_run_every_family(tmp_path, synthetic_root, overrides):
    cfg = make_cfg(tmp_path, synthetic_root, ["+trainer.fast_dev_run=true", "evaluate=false", *overrides])
    result = train(cfg)
    # every run records its network's size and cost at the paper's 512² input
    assert result["complexity"]["params_M"] > 1 and result["complexity"]["flops_G"] > 1
    assert result["complexity"]["train_input_size"] == 64


def test_codec_and_loss_must_match(tmp_path, synthetic_root):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = make_cfg(tmp_path, synthetic_root, ["model=simplebaseline",
                                              "model.loss._target_=spinectx.losses.IntegralLoss", "~model.loss.heatmap_weight"])
    with pytest.raises(Exception, match="IntegralLoss trains a IntegralCodec"):  # wrapped by Hydra
        instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks))


def test_short_fit_writes_metrics_checkpoints_and_overlay(tmp_path, synthetic_root):
    cfg = make_cfg(tmp_path, synthetic_root, ["trainer.max_epochs=2", "logger=csv"])
    result = train(cfg)
    run = Path(cfg.paths.output_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("L-Disc", "L-Vertebra", "Score"):
        assert 0.0 <= metrics[key] <= 1.0
    for key in ("C-Disc", "C-Vertebra"):  # null: undefined AUC (one class among the located points)
        assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
    assert metrics["epoch"] in (0, 1) and len(metrics["history"]) == 2
    assert metrics["Score"] == max(h["Score"] for h in metrics["history"])
    # the final evaluation of the best checkpoint reproduces the best epoch's numbers
    assert metrics["evaluation"]["Score"] == pytest.approx(metrics["Score"], abs=1e-6)
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "predictions.png").stat().st_size > 10_000
    assert result["Score"] == metrics["Score"]
    # CCF-Net R18+MSC is 4.834 M with the paper's binary head; the default multiclass head adds
    # 4 logits × 11 landmarks to its 1×1 output conv on 256 channels (+ bias)
    assert metrics["complexity"]["params_M"] == pytest.approx(4.834 + 4 * 11 * 257 / 1e6, abs=0.001)
    # the checkpoint rebuilds the model without any config file
    from spinectx.lit import LandmarkModule

    module = LandmarkModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    out = module(torch.zeros(1, 1, 64, 64))
    assert module.hparams.class_head == "multiclass" and out.shape == (1, (3 + 5) * 11, 4, 4)
    assert module.predict_keypoints(torch.zeros(1, 1, 64, 64)).class_prob.shape == (1, 11, 5)


def test_loss_falls_on_tiny_data(tmp_path, synthetic_root):
    """A few dozen steps on 4 studies without augmentation: the training loss must drop a lot."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = make_cfg(tmp_path, synthetic_root, ["data.augment.p=0", "data.augment.flip=0", "data.augment.jitter_mm=0",
                                              "data.augment.neighbour_p=0", "data.fraction=0.5"])
    torch.manual_seed(0)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    module = instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks))
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    batch = next(iter(dm.train_dataloader()))
    losses = []
    module.train()
    for _ in range(40):
        loss = module._losses(batch, module(batch["image"]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0], losses[::8]


def test_wandb_logger_writes_offline_run_in_run_dir(tmp_path, synthetic_root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg(tmp_path, synthetic_root, ["logger=wandb", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                                              "overlay_studies=0", "logger.wandb.group=g1", "logger.wandb.job_type=j1",
                                              "tags=[t1]"])
    train(cfg)
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    media = runs[0] / "files" / "media"
    assert list(media.glob("images/val/overlays_*.png")), "overlays of the validation epoch"
    assert list(media.glob("table/summary_*.table.json")), "end-of-run summary table"
    # offline, config and summary live in the run's record file (synced later by `wandb sync`)
    record = next(runs[0].glob("*.wandb")).read_bytes()
    for key in (b"complexity/params_M", b"best/Score", b"lr-AdamW", b"val/Score", b"g1", b"j1", b"t1", b"train/loss"):
        assert key in record, key


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_runs(tmp_path, synthetic_root, precision):
    cfg = make_cfg(tmp_path, synthetic_root, [f"trainer.precision={precision}", "+trainer.fast_dev_run=true", "evaluate=false",
                                              "model.channels_last=true"])
    train(cfg)


def test_flip_tta_unflips_x(tmp_path, synthetic_root):
    """On a mirror-symmetric image both passes agree, so the averaged x must be the centre column."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = make_cfg(tmp_path, synthetic_root, ["model.tta=true"])
    module = instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks)).eval()
    half = torch.rand(2, 1, 64, 32)
    image = torch.cat([half, half.flip(-1)], dim=-1)  # symmetric about x = 31.5
    decoded = module.predict_keypoints(image)
    assert torch.allclose(decoded.keypoints[..., 0], torch.full((2, 11), 31.5), atol=1e-4)
    module.hparams.tta = False
    plain = module.predict_keypoints(image)
    assert not torch.allclose(plain.keypoints[..., 0], torch.full((2, 11), 31.5), atol=1e-2)
