import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

from conftest import killed_at_step, run_cli
from diffrep import cli, data
from diffrep.data import DENSE_DEFAULTS, DenseSet, scenes
from diffrep.errors import UserError
from diffrep.tasks import build_student, load_dense_net, save_backbone
from diffrep.tasks.augment import AUGMENT_DEFAULTS, DenseBatches, joint_augment
from diffrep.tasks.fpn import DenseNet, dense_taps
from diffrep.tasks.landmarks import box_diagonal, decode_heatmaps, gaussian_heatmaps, nme, normaliser
from diffrep.tasks.segment import SegmentModule, upsample

TINY_DENSE = ["--data.train_size", "64", "--data.test_size", "32", "--optim.batch_size", "16",
              "--optim.warmup_steps", "1", "--trainer.log_every_n_steps", "1", "--trainer.progress_bar", "false",
              "--overlays", "8"]
NO_AFFINE = {"degrees": 0.0, "scale": 0.0, "translate": 0.0}


@pytest.mark.parametrize("arch, stem, side", [("resnet18", "small", 32), ("resnet18", "imagenet", 16),
                                              ("mobilenet_v2", "small", 32), ("mobilenet_v2", "imagenet", 16)])
def test_fpn_head_shapes(arch, stem, side):
    torch.manual_seed(0)
    net = DenseNet(build_student(arch, 1, stem), dense_taps(arch, None), 1, 16, 7)
    assert net.training, "the dry run must restore train mode"
    out = net(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7, side, side)  # the finest tap's map: full size with the small stem, half otherwise
    keys = net.state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"backbone", "decoder"} and "backbone.fc.weight" not in keys
    # segmentation upsamples the logits to the input size
    module = SegmentModule(build_student(arch, 1, stem), arch=arch, in_channels=1, out_channels=7,
                           head={"taps": None, "width": 16}, optim={"name": "sgd", "ema_decay": None},
                           augment=NO_AFFINE, train_data=None, seed=0, hflip=True)
    pred = module.predict(torch.zeros(3, 1, 32, 32, dtype=torch.uint8))
    assert pred.shape == (3, 32, 32) and pred.dtype == torch.int64 and int(pred.max()) < 7


def test_taps_must_go_shallow_to_deep():
    with pytest.raises(UserError, match="shallow to deep"):
        DenseNet(build_student("resnet18"), dense_taps("resnet18", "layer3,layer1"), 1, 8, 2)
    with pytest.raises(UserError, match="unknown student tap 'layer9'"):
        DenseNet(build_student("resnet18"), dense_taps("resnet18", ["layer1", "layer9"]), 1, 8, 2)


def test_decoding_recovers_a_subpixel_point():
    points = torch.tensor([[[12.3, 7.8], [3.71, 20.05], [0.5, 0.5]]])  # heatmap coordinates, cell centres at u + .5
    for sigma in (1.0, 1.5, 2.0):
        decoded = decode_heatmaps(gaussian_heatmaps(points, (24, 16), sigma))
        assert (decoded - points).abs().max() < 0.1
    # in input pixels at stride 2 (imagenet stem), as LandmarkModule.loss builds targets and predict decodes them
    keypoints = torch.tensor([[[10.3, 21.7], [25.2, 4.9]]])
    heat = gaussian_heatmaps(keypoints / 2, (16, 16), 1.5)
    assert (decode_heatmaps(heat) * 2 - keypoints).abs().max() < 0.1
    # a noisy, flat or negative map still decodes to its argmax cell, within half a cell
    noisy = torch.full((1, 1, 8, 8), -0.2)
    noisy[0, 0, 3, 5] = 0.3
    assert torch.allclose(decode_heatmaps(noisy), torch.tensor([[[5.5, 3.5]]]))


def test_nme_and_normalisers():
    gt = torch.tensor([[[10.0, 2.0], [10.0, 22.0], [4.0, 12.0], [19.0, 12.0], [11.0, 12.0]]]).repeat(3, 1, 1)
    norm = normaliser("fmnist-scenes")(gt)
    assert torch.allclose(norm, torch.full((3,), 25.0))  # box 15 x 20
    assert torch.equal(nme(gt, gt, norm), torch.zeros(3))
    assert torch.allclose(nme(gt + torch.tensor([3.0, 4.0]), gt, norm), torch.full((3,), 5 / 25))
    assert normaliser("wflw:/some/folder") is data.interocular and normaliser("fmnist-scenes") is box_diagonal
    with pytest.raises(UserError, match="no NME normaliser for dataset 'celebamask-hq:x'"):
        normaliser("celebamask-hq:x")


def test_joint_flip_keeps_images_masks_and_keypoints_together():
    s = data.load_dense({**DENSE_DEFAULTS, "test_size": 48}, "test")
    generator = (lambda: torch.Generator().manual_seed(3))
    args = (NO_AFFINE, True, None, s.keypoint_flip)
    images, masks, points = joint_augment(s.images, s.masks, s.keypoints, generator(), *args)
    flipped = s.flipped()
    was_flipped = (images != s.images).flatten(1).any(1)
    assert 0 < int(was_flipped.sum()) < len(s)
    for new, old, mirrored in ((images, s.images, flipped.images), (masks, s.masks, flipped.masks),
                               (points, s.keypoints, flipped.keypoints)):
        assert torch.equal(new[was_flipped], mirrored[was_flipped]) and torch.equal(new[~was_flipped],
                                                                                    old[~was_flipped])
    # mirrored scenes are still scenes: the mask is where the image is bright, "left" is the leftmost point
    assert torch.equal(images[:, 0] > scenes.THRESHOLD, masks > 0)
    left, right = scenes.KEYPOINT_NAMES.index("left"), scenes.KEYPOINT_NAMES.index("right")
    assert (points[:, left, 0] < points[:, right, 0]).all()
    assert torch.equal(points[was_flipped][:, left, 0], 32 - s.keypoints[was_flipped][:, right, 0])
    # the same generator flips the same images: twice is the identity
    again = joint_augment(images, masks, points, generator(), *args)
    assert torch.equal(again[0], s.images) and torch.equal(again[1], s.masks)
    torch.testing.assert_close(again[2], s.keypoints, rtol=0, atol=1e-5)  # 32 - (32 - x) rounds in float32


def test_joint_flip_swaps_mirrored_classes():
    masks = torch.tensor([[[0, 1, 2, 3]]], dtype=torch.uint8).repeat(8, 1, 1)  # 0 bg, 1 l_eye, 2 r_eye, 3 nose
    images = torch.zeros(8, 1, 1, 4, dtype=torch.uint8)
    _, out, _ = joint_augment(images, masks, None, torch.Generator().manual_seed(0), NO_AFFINE, True, [0, 2, 1, 3])
    assert {tuple(m[0].tolist()) for m in out} == {(0, 1, 2, 3), (3, 1, 2, 0)}


def test_affine_moves_image_mask_and_keypoints_together():
    images = torch.zeros(16, 1, 32, 32, dtype=torch.uint8)
    images[:, 0, 12:16, 18:22] = 255  # a 4 x 4 square centred on (20, 14)
    masks = (images[:, 0] > 0).to(torch.uint8)
    points = torch.tensor([[[20.0, 14.0]]]).repeat(16, 1, 1)
    strong = {"degrees": 90.0, "scale": 0.3, "translate": 0.15}
    out_images, out_masks, out_points = joint_augment(images, masks, points, torch.Generator().manual_seed(1), strong)
    ys, xs = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    weight = out_images[:, 0].float()
    centre = torch.stack([(weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))], 1) / weight.sum((1, 2))[:, None]
    assert (centre - out_points[:, 0]).abs().max() < 0.2
    assert (out_masks.bool() == (out_images[:, 0] >= 128)).float().mean() > 0.98
    repeat = joint_augment(images, masks, points, torch.Generator().manual_seed(1), strong)
    assert all(torch.equal(a, b) for a, b in zip(repeat, (out_images, out_masks, out_points)))


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_finetune_segment_writes_miou_overlays_and_resumes_exactly(tmp_path, monkeypatch):
    args = ["finetune", "--task", "segment", *TINY_DENSE, "--student.stem", "imagenet", "--optim.ema_decay", "0.9",
            "--trainer.checkpoint_every_n_steps", "2", "--trainer.max_steps", "4"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli.main([*args, "--out", str(straight)]) == 0
    metrics = _metrics(straight)
    assert 0 <= metrics["test_miou"] <= 1 and 0 <= metrics["test_pixel_accuracy"] <= 1 and metrics["steps"] == 4
    assert metrics["train_images"] == 64 and metrics["test_images"] == 32 and metrics["train_seconds"] > 0
    with Image.open(straight / "overlays.png") as png:  # 8 triplets of 128 px panels, 4 triplets a row
        assert png.mode == "RGB" and png.size == (12 * 130 + 2, 2 * 130 + 2)
    assert "name: fmnist-scenes" in (straight / "config.yaml").read_text()
    # killed after step 2's checkpoint, then --resume: the same batches, augmentations and weights
    with killed_at_step(monkeypatch, SegmentModule):
        cli.main([*args, "--out", str(resumed)])
    assert cli.main([*args, "--out", str(resumed), "--resume"]) == 0
    assert _metrics(resumed)["test_miou"] == metrics["test_miou"]
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert "backbone.layer4.1.conv2.weight" in a and "decoder.classifier.weight" in a
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    with safe_open(str(straight / "model.safetensors"), "pt") as fh:
        assert fh.metadata()["format"] == "diffrep-dense-v1" and fh.metadata()["task"] == "segment"
    # the saved model loads back and scores the same mIoU on the same test scenes
    net, meta = load_dense_net(straight / "model.safetensors")
    assert meta["outputs"] == scenes.CLASSES and meta["taps"][-1] == "layer4" and not net.training
    test = data.load_dense({**DENSE_DEFAULTS, "test_size": 32}, "test")
    with torch.no_grad():
        pred = upsample(net(test.floats()), (32, 32)).argmax(1)
    miou = MulticlassJaccardIndex(num_classes=len(scenes.CLASSES), average="macro")(pred, test.masks.long())
    assert float(miou) == pytest.approx(metrics["test_miou"], abs=1e-6)
    backbone = save_backbone(build_student("resnet18", 1, "imagenet"), tmp_path / "backbone.safetensors",
                             "resnet18", 1, "imagenet")
    with pytest.raises(UserError, match="not a diffrep dense model"):
        load_dense_net(backbone)


def test_finetune_landmarks_from_a_backbone(tmp_path):
    torch.manual_seed(0)
    backbone = save_backbone(build_student("mobilenet_v2", 1, "small"), tmp_path / "mb.safetensors",
                             "mobilenet_v2", 1, "small")
    out = tmp_path / "lm"
    proc = run_cli("finetune", "--task", "landmarks", *TINY_DENSE, "--init", str(backbone), "--data.labels", "0.5",
                   "--trainer.max_steps", "3", "--data.val", "8", "--out", str(out))
    metrics = _metrics(out)
    assert metrics["test_nme"] > 0 and metrics["train_images"] == 32 and metrics["steps"] == 3
    assert metrics["val_nme"] > 0 and metrics["val_images"] == 8 and "validation NME" in proc.stdout
    assert {"test_pixel_error", "train_seconds", "final_loss"} <= metrics.keys() and "test NME" in proc.stdout
    assert (out / "overlays.png").stat().st_size > 1000
    config = (out / "config.yaml").read_text()
    assert "arch: mobilenet_v2" in config and "name: fmnist-scenes" in config and "name: adamw" in config


@pytest.mark.parametrize("options, message", [
    (["--task", "segment", "--data", "digits"], "task segment needs a dataset with masks: fmnist-scenes, "
                                                "celebamask-hq:PATH; got 'digits'"),
    (["--task", "landmarks", "--data", "celebamask-hq:{tmp}"], "task landmarks needs a dataset with landmarks"),
    (["--data", "wflw:{tmp}"], "is for --task segment or landmarks"),
    (["--task", "segment", "--data.labels", "1.5"], "--data.labels must be a fraction in (0, 1] (or null), got 1.5"),
    (["--task", "landmarks", "--augment.degrees", "-5"], "--augment.degrees must be a number in [0, 180]"),
    (["--task", "depth"], "--task must be one of classify, segment, landmarks, got 'depth'"),
    (["--task", "landmarks", "--data", "wflw:/nowhere"], "wflw folder not found: /nowhere"),
])
def test_user_errors_are_one_line(tmp_path, capsys, options, message):
    options = [option.format(tmp=tmp_path) for option in options]
    assert cli.main(["finetune", *options, "--data.train_size", "16", "--data.test_size", "8",
                     "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_dense_batches_are_seeded_by_step():
    s = DenseSet(torch.randint(0, 255, (10, 1, 8, 8), dtype=torch.uint8), None,
                 torch.rand(10, 5, 2) * 8, [], scenes.KEYPOINT_NAMES, keypoint_flip=scenes.KEYPOINT_FLIP)
    batches = DenseBatches(s, "keypoints", 4, lambda: 0, 0, True, AUGMENT_DEFAULTS)
    a, b = batches.batch(5), batches.batch(5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], batches.batch(6)[0])
    assert a[0].dtype == torch.float32 and a[1].shape == (4, 5, 2)
