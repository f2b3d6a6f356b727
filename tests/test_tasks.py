import json

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from conftest import run_cli
from diffrep import cli
from diffrep.errors import UserError
from diffrep.tasks import (STEMS, build_student, default_tap, feature_channels, feature_shape, load_backbone,
                           save_backbone, student_features)

TINY_FINETUNE = ["--data", "digits", "--data.resolution", "16", "--data.train_size", "100", "--data.test_size", "50",
                 "--optim.batch_size", "8", "--optim.warmup_steps", "1", "--optim.lr", "0.01",
                 "--trainer.log_every_n_steps", "1", "--trainer.progress_bar", "false"]


@pytest.mark.parametrize("arch, channels", [("resnet18", 512), ("resnet50", 2048), ("mobilenet_v2", 1280)])
def test_every_student_takes_any_channels_with_both_stems(arch, channels):
    tap = default_tap(arch)
    for stem in STEMS:
        for in_channels in (1, 3):
            model = build_student(arch, in_channels, stem)
            with torch.no_grad():
                assert model.eval()(torch.zeros(2, in_channels, 16, 16)).shape == (2, 1000)
            model.train()
            # The default tap is the last stage; the small (CIFAR) stem keeps 32x32 images at 4x4 there,
            # torchvision's stem divides them by 32
            side = 4 if stem == "small" else 1
            assert feature_shape(model, tap, in_channels, 32) == (channels, side, side)
            assert model.training, "the dry run must restore train mode"
    assert feature_channels(model, tap, 3, 32) == channels


@pytest.mark.parametrize("arch, head", [("resnet18", "fc"), ("mobilenet_v2", "classifier.1")])
def test_backbone_round_trip_and_plain_torchvision_load(tmp_path, arch, head):
    torch.manual_seed(0)
    model = build_student(arch, 1, "small").eval()
    path = save_backbone(model, tmp_path / "backbone.safetensors", arch, 1, "small")
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file must be renamed away"
    loaded, meta = load_backbone(path)
    assert meta == {"arch": arch, "in_channels": 1, "stem": "small", "format": "diffrep-student-v1"}
    x = torch.randn(3, 1, 32, 32)
    tap = default_tap(arch)
    with torch.no_grad():
        torch.testing.assert_close(student_features(loaded.eval(), tap)(x)[tap], student_features(model, tap)(x)[tap],
                                   rtol=0, atol=0)
    # What the docstring of save_backbone tells a user who has no diffrep
    plain = getattr(torchvision.models, arch)()
    if arch == "resnet18":
        plain.conv1, plain.maxpool = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False), torch.nn.Identity()
    else:
        plain.features[0][0] = torch.nn.Conv2d(1, 32, 3, 1, 1, bias=False)
        plain.features[4].conv[1][0].stride = (1, 1)
    result = plain.load_state_dict(load_file(path), strict=False)
    assert sorted(result.missing_keys) == [f"{head}.bias", f"{head}.weight"] and not result.unexpected_keys
    with torch.no_grad():
        torch.testing.assert_close(student_features(plain.eval(), tap)(x)[tap], student_features(model, tap)(x)[tap],
                                   rtol=0, atol=0)


def test_clear_errors(tmp_path):
    model = build_student("resnet18")
    with pytest.raises(UserError, match=r"unknown student tap 'layer5'; valid taps: conv1, .*layer4\.1, .*avgpool"):
        student_features(model, ["layer4", "layer5"])
    with pytest.raises(UserError, match="valid students: resnet18, resnet50, mobilenet_v2"):
        build_student("vit")
    with pytest.raises(UserError, match="valid stems: small, imagenet"):
        build_student("resnet18", stem="tiny")
    with pytest.raises(UserError, match="backbone not found"):
        load_backbone(tmp_path / "none.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="not a safetensors file"):
        load_backbone(tmp_path / "corrupt.safetensors")
    save_file({"conv1.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "bare.safetensors")
    with pytest.raises(UserError, match="no diffrep student metadata"):
        load_backbone(tmp_path / "bare.safetensors")
    path = save_backbone(model, tmp_path / "b.safetensors", "resnet18", 1, "small")
    meta = {"arch": "resnet18", "in_channels": "3", "stem": "small", "format": "diffrep-student-v1"}
    save_file(load_file(path), tmp_path / "liar.safetensors", metadata=meta)
    with pytest.raises(UserError, match=r"shape mismatch for 'conv1.weight': \(64, 1, 3, 3\) in the file"):
        load_backbone(tmp_path / "liar.safetensors")


def test_finetune_runs_and_resumes(tmp_path):
    out = tmp_path / "ft"
    steps = ["--trainer.checkpoint_every_n_steps", "2", "--out", str(out)]
    run_cli("finetune", *TINY_FINETUNE, *steps, "--trainer.max_steps", "4")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and 0 <= metrics["test_accuracy"] <= 1 and metrics["train_images"] == 100
    assert metrics["test_images"] == 50 and metrics["train_seconds"] > 0
    proc = run_cli("finetune", *TINY_FINETUNE, *steps, "--trainer.max_steps", "6", "--resume")
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6 and "test accuracy" in proc.stdout
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6


def test_finetune_from_a_backbone(tmp_path, capsys):
    torch.manual_seed(0)
    backbone = save_backbone(build_student("mobilenet_v2", 3, "small"), tmp_path / "mb.safetensors",
                             "mobilenet_v2", 3, "small")
    # arch, stem and channels come from the file; a contradicting option is one clear line
    assert cli.main(["finetune", "--init", str(backbone), "--student.arch", "resnet18", "--out", str(tmp_path)]) == 2
    assert "student.arch is resnet18 but the backbone" in capsys.readouterr().err
    assert cli.main(["finetune", "--task", "segment", "--data", "digits", "--out", str(tmp_path)]) == 2
    assert "task segment needs a dataset with masks" in capsys.readouterr().err

    out = tmp_path / "ft"
    proc = run_cli("finetune", *TINY_FINETUNE, "--init", str(backbone), "--data.labels", "0.5", "--optim.ema_decay",
                   "0.9", "--epochs", "1", "--data.val", "20", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 50 and metrics["steps"] == 50 // 8 and "test_accuracy" in metrics
    assert metrics["val_images"] == 20 and 0 <= metrics["val_accuracy"] <= 1 and "validation" in proc.stdout
    config = (out / "config.yaml").read_text()
    assert "arch: mobilenet_v2" in config and "channels: 3" in config
    # The classifier loads into plain torchvision with the stem change, strictly
    plain = torchvision.models.mobilenet_v2(num_classes=10)
    plain.features[0][0] = torch.nn.Conv2d(3, 32, 3, 1, 1, bias=False)
    plain.load_state_dict(load_file(out / "model.safetensors"))


def test_backbone_lr_ratio_splits_the_rate_between_backbone_and_fresh_head():
    from diffrep.options.blocks import AUGMENT, HEAD
    from diffrep.tasks.classify import ClassifierModule
    from diffrep.tasks.finetune import DEFAULTS
    from diffrep.tasks.finetune_module import configure_optimizer
    from diffrep.tasks.segment import SegmentModule
    optim = {**DEFAULTS["optim"], "name": "sgd", "lr": 0.05, "warmup_steps": 0}
    student = build_student("resnet18", 1, "small")
    assert configure_optimizer(ClassifierModule(student, "resnet18", 10, optim, None, 0, False).parameter_groups(),
                               optim, 10)["optimizer"].param_groups[0]["lr"] == 0.05  # the reference: one group
    slow = {**optim, "backbone_lr_ratio": 0.1}
    classify = ClassifierModule(build_student("resnet18", 1, "small"), "resnet18", 10, slow, None, 0, False)
    segment = SegmentModule(build_student("resnet18", 1, "small"), "resnet18", 1, 11, {**HEAD, "width": 8}, slow,
                            AUGMENT, None, 0, False)
    for module, head in ((classify, classify.net.fc), (segment, segment.net.decoder)):
        backbone_group, head_group = configure_optimizer(module.parameter_groups(), slow, 10)["optimizer"].param_groups
        assert backbone_group["lr"] == pytest.approx(0.005) and head_group["lr"] == 0.05
        assert "lr_scale" not in backbone_group
        assert {id(p) for p in head_group["params"]} == {id(p) for p in head.parameters()}
        assert len(backbone_group["params"]) + len(head_group["params"]) == len(list(module.net.parameters()))
    assert cli.main(["finetune", "--optim.backbone_lr_ratio", "0", "--out", "unused"]) == 2
