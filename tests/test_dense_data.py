import numpy as np
import pytest
import torch
from PIL import Image

from diffrep import data
from diffrep.data import DENSE_DEFAULTS, celebamask, scenes, sources, wflw
from diffrep.errors import UserError


def cfg(**kw):
    return {**DENSE_DEFAULTS, **kw}


# fmnist-scenes

def test_scenes_are_deterministic_prefix_stable_and_seeded():
    a = data.load_dense(cfg(train_size=300), "train")
    b = data.load_dense(cfg(train_size=300), "train")
    short = data.load_dense(cfg(train_size=40), "train")
    other = data.load_dense(cfg(train_size=300, scene_seed=1), "train")
    assert a.images.shape == (300, 1, 32, 32) and a.masks.shape == (300, 32, 32) and a.keypoints.shape == (300, 5, 2)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.keypoints, b.keypoints)
    assert torch.equal(short.images, a.images[:40]) and torch.equal(short.keypoints, a.keypoints[:40])
    assert not torch.equal(a.images, other.images)
    assert a.classes[0] == "background" and len(a.classes) == 11 and a.keypoint_names[-1] == "centroid"


def test_scene_masks_match_images():
    s = data.load_dense(cfg(test_size=400), "test")
    image = s.images[:, 0]
    assert torch.equal(image > scenes.THRESHOLD, s.masks > 0)
    assert (s.masks[image == 0] == 0).all() and int(s.masks.max()) <= 10
    kinds = [len(m.unique()) - 1 for m in s.masks]
    assert min(kinds) == 1 and max(kinds) == 2  # one- and two-item scenes
    assert (s.masks.flatten(1) == (s.labels + 1)[:, None]).any(1).all()  # the main item's class is in every mask


def _extremes(on: torch.Tensor) -> torch.Tensor:
    """The documented landmarks, recomputed: medians of the extreme row / column, then the centroid."""
    ys, xs = on.nonzero(as_tuple=True)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()

    def mid(v):
        return float(np.median(v.numpy()))

    points = [(mid(xs[ys == top]), top), (mid(xs[ys == bottom]), bottom),
              (left, mid(ys[xs == left])), (right, mid(ys[xs == right]))]
    return torch.tensor([[float(x) + 0.5, float(y) + 0.5] for x, y in points]
                        + [[xs.float().mean() + 0.5, ys.float().mean() + 0.5]])


def test_single_item_landmarks_are_the_extreme_pixels_and_centroid():
    s = data.load_dense(cfg(train_size=100, max_items=1, resolution=48), "train")
    assert s.images.shape[-1] == 48
    f = s.flipped()
    for mask, points, flipped_mask, flipped_points in zip(s.masks, s.keypoints, f.masks, f.keypoints):
        assert torch.allclose(points, _extremes(mask > 0), atol=1e-4)
        assert torch.allclose(flipped_points, _extremes(flipped_mask > 0), atol=1e-4)  # flips are exact


def test_multi_item_landmarks_lie_on_the_main_item():
    s = data.load_dense(cfg(train_size=200, max_items=3), "train")
    assert (s.keypoints >= 0).all() and (s.keypoints <= 32).all()
    for mask, label, points in zip(s.masks, s.labels, s.keypoints):
        main = mask == label + 1
        for k, (x, y) in enumerate(points[:4].tolist()):
            line = main[int(y)] if k < 2 else main[:, int(x)]  # the extreme row (top, bottom) or column
            along = line.nonzero().flatten().float() + 0.5
            assert along.min() <= (x if k < 2 else y) <= along.max()


def _fake_fashion_mnist(split, root):
    """Train items are classes 0-4 and 100 bright, test items classes 5-9 and 200 bright."""
    n = 50
    items = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    items[:, :, 4:24, 6:22] = 100 if split == "train" else 200
    labels = torch.arange(n) % 5 + (0 if split == "train" else 5)
    return items, labels, sources.FASHION_MNIST_CLASSES


def test_scene_splits_use_only_their_own_items(monkeypatch):
    monkeypatch.setattr(sources, "fashion_mnist", _fake_fashion_mnist)
    train = data.load_dense(cfg(train_size=100), "train")
    test = data.load_dense(cfg(test_size=100), "test")
    assert set(train.masks.unique().tolist()) <= {0, 1, 2, 3, 4, 5} and train.images.max() <= 100
    assert set(test.masks.unique().tolist()) <= {0, 6, 7, 8, 9, 10} and test.images.max() == 200
    with pytest.raises(UserError, match="train and a test split"):
        data.load_dense(cfg(), "val")


def test_dense_options_subsets_and_flips():
    s = data.load_dense(cfg(train_size=0.01, channels=3, resolution=64), "train")
    assert s.images.shape == (100, 3, 64, 64) and torch.equal(s.images[:, 0], s.images[:, 2])
    kept = data.labelled_dense(s, 0.1, seed=0)
    assert len(kept) == 10 and torch.equal(kept.keypoints, data.labelled_dense(s, 0.1, seed=0).keypoints)
    assert not torch.equal(kept.images, data.labelled_dense(s, 0.1, seed=1).images)
    part = s.subset(torch.tensor([3, 7]))
    assert torch.equal(part.masks, s.masks[[3, 7]]) and torch.equal(part.labels, s.labels[[3, 7]])
    f = s.flipped()
    assert torch.equal(f.masks, s.masks.flip(-1))
    assert torch.allclose(f.keypoints[:, 2, 0], 64 - s.keypoints[:, 3, 0])  # new left = mirrored old right
    assert torch.allclose(f.flipped().keypoints, s.keypoints)
    assert f.floats().min() == -1 and f.floats().max() <= 1
    with pytest.raises(UserError, match="must be a fraction"):
        data.labelled_dense(s, 0, seed=0)
    with pytest.raises(UserError, match="valid names: fmnist-scenes"):
        data.load_dense(cfg(name="scenes"), "train")
    with pytest.raises(UserError, match="at least 16"):
        data.load_dense(cfg(resolution=8), "train")
    with pytest.raises(UserError, match="needs a folder"):
        data.load_dense(cfg(name="wflw"), "train")


def test_scene_images_are_the_dense_scenes_labelled_by_their_main_item():
    dense = data.load_dense(cfg(train_size=50, resolution=48), "train")
    images = data.load({**data.DATA_DEFAULTS, "name": "fmnist-scenes", "train_size": 50, "resolution": 48,
                        "channels": 3}, "train")
    assert images.images.shape == (50, 3, 48, 48) and torch.equal(images.images[:, 1], dense.images[:, 0])
    assert torch.equal(images.labels, dense.labels) and images.classes == sources.FASHION_MNIST_CLASSES


# CelebAMask-HQ

FACES = {0: 100, 1: 162770, 2: 162771, 2000: 182637, 2001: 182638, 4001: 200000}  # face -> CelebA file number


def _write_celebamask(root, mapping=True):
    rng = np.random.default_rng(0)
    (root / celebamask.IMAGES).mkdir(parents=True)
    for i in FACES:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / celebamask.IMAGES / f"{i}.jpg")
        folder = root / celebamask.MASKS / str(i // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        parts = {"skin": (slice(1, 7), slice(1, 7)), "nose": (slice(3, 5), slice(3, 5)),
                 "hair": (slice(0, 2), slice(0, 8)), "eye_g": (slice(2, 3), slice(1, 4)),
                 "l_eye": (slice(2, 3), slice(2, 3)), "cloth": (slice(7, 8), slice(0, 8))}
        for part, box in parts.items():
            on = np.zeros((8, 8), np.uint8)
            on[box] = 255 if part != "nose" else 1  # any non-zero value marks the part
            img = Image.fromarray(on)
            (img.convert("RGB") if part == "skin" else img).save(folder / f"{i:05d}_{part}.png")
    if mapping:
        lines = ["idx         orig_idx    orig_file"] + [f"{i} {n - 1} {n:06d}.jpg" for i, n in FACES.items()]
        (root / celebamask.MAPPING).write_text("\n".join(lines) + "\n")


def test_celebamask_merges_parts_in_order_and_uses_the_celeba_split(tmp_path):
    _write_celebamask(tmp_path)
    name = f"celebamask-hq:{tmp_path}"
    train = data.load_dense(cfg(name=name, resolution=8, channels=3), "train")
    assert [len(data.load_dense(cfg(name=name, resolution=8), s)) for s in ("val", "test")] == [2, 2]
    assert train.images.shape == (2, 3, 8, 8) and train.masks.shape == (2, 8, 8) and train.keypoints is None
    c = {name: k for k, name in enumerate(train.classes)}
    m = train.masks[0]
    assert m[0, 3] == c["hair"] and m[1, 1] == c["hair"]  # hair overwrites skin
    assert m[4, 4] == c["nose"] and m[5, 5] == c["skin"] and m[6, 0] == 0
    assert m[2, 2] == c["l_eye"] and m[2, 3] == c["eye_g"]  # l_eye overwrites eye_g
    assert (m[7] == c["cloth"]).all() and len(train.classes) == 19
    small = data.load_dense(cfg(name=name, resolution=4), "train")
    assert set(small.masks.unique().tolist()) <= set(m.unique().tolist())  # nearest: no blended classes
    flipped = train.flipped().masks[0]
    assert flipped[2, 5] == c["r_eye"] and flipped[4, 3] == c["nose"]


def test_celebamask_seeded_split_without_mapping(tmp_path):
    _write_celebamask(tmp_path, mapping=False)
    splits = [celebamask.split_indices(tmp_path, s) for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [4, 1, 1] and sorted(sum(splits, [])) == sorted(FACES)
    assert celebamask.split_indices(tmp_path, "train") == splits[0]


def test_celebamask_missing_files_name_the_path(tmp_path):
    with pytest.raises(UserError, match=f"missing CelebAMask-HQ dataset folder: {tmp_path / 'x'}"):
        data.load_dense(cfg(name=f"celebamask-hq:{tmp_path / 'x'}"), "train")
    _write_celebamask(tmp_path)
    name = f"celebamask-hq:{tmp_path}"
    (tmp_path / celebamask.IMAGES / "1.jpg").unlink()
    with pytest.raises(UserError, match=f"missing image file: {tmp_path / celebamask.IMAGES / '1.jpg'}"):
        data.load_dense(cfg(name=name), "train")
    for path in (tmp_path / celebamask.MASKS / "1").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=f"no part masks for CelebAMask-HQ face 2001: expected {tmp_path}"):
        data.load_dense(cfg(name=name), "test")
    (tmp_path / celebamask.MASKS / "1").rmdir()
    with pytest.raises(UserError, match=f"missing CelebAMask-HQ mask folder: {tmp_path / celebamask.MASKS / '1'}"):
        data.load_dense(cfg(name=name), "test")


# WFLW

def _wflw_line(points, box, image):
    coords = " ".join(f"{v:.3f}" for v in points.flatten().tolist())
    return f"{coords} {' '.join(map(str, box))} 0 1 0 0 0 0 {image}"


def _write_wflw(root, faces):
    """faces: (photo size (w, h), keypoints (98, 2), box); each photo is black with 5x5 white squares at points
    60 and 72."""
    folder = root / wflw.ANNOTATIONS
    folder.mkdir(parents=True)
    (root / wflw.IMAGES / "1--Event").mkdir(parents=True)
    lines = []
    for k, (size, points, box) in enumerate(faces):
        photo = np.zeros((size[1], size[0], 3), np.uint8)
        for p in wflw.OUTER_EYE_CORNERS:
            x, y = points[p].round().astype(int)
            photo[y - 2:y + 3, x - 2:x + 3] = 255
        Image.fromarray(photo).save(root / wflw.IMAGES / "1--Event" / f"face_{k}.jpg", quality=95)
        lines.append(_wflw_line(points, box, f"1--Event/face_{k}.jpg"))
    for split in ("train", "test"):
        (folder / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")


def _points(centre, spread, rng):
    return (np.asarray(centre) + rng.uniform(-spread, spread, (98, 2))).round(2).astype(np.float32)


def test_wflw_crops_around_the_box_and_moves_keypoints(tmp_path):
    rng = np.random.default_rng(0)
    exact = _points((60, 60), 30, rng)
    large = _points((380, 280), 60, rng)
    _write_wflw(tmp_path, [((120, 120), exact, (20, 20, 100, 100)), ((800, 600), large, (300, 200, 460, 360))])
    s = data.load_dense(cfg(name=f"wflw:{tmp_path}", resolution=50, channels=3), "train")
    assert s.images.shape == (2, 3, 50, 50) and s.keypoints.shape == (2, 98, 2) and s.masks is None
    side = 1.25 * 80  # the first crop: left = top = 60 - side / 2 = 10, scale 50 / side = 0.5
    assert torch.allclose(s.keypoints[0], (torch.from_numpy(exact) - 10) * 50 / side, atol=1e-4)
    for image, points in zip(s.images, s.keypoints):  # the white squares are where the keypoints went
        for p in wflw.OUTER_EYE_CORNERS:
            x, y = points[p].round().long().tolist()
            assert image[0, y, x] > 100, (p, x, y)
    assert torch.allclose(data.interocular(s.keypoints), (s.keypoints[:, 60] - s.keypoints[:, 72]).norm(dim=-1))
    f = s.flipped()
    assert torch.allclose(f.keypoints[:, 60, 0], 50 - s.keypoints[:, 72, 0])
    assert torch.allclose(data.interocular(f.keypoints), data.interocular(s.keypoints))


def test_interocular_is_the_outer_eye_corner_distance():
    points = torch.zeros(2, 98, 2)
    points[:, 72] = torch.tensor([3.0, 4.0])
    assert data.interocular(points).tolist() == [5.0, 5.0]


def test_wflw_zero_pads_outside_the_photo(tmp_path):
    points = _points((20, 20), 10, np.random.default_rng(1))
    _write_wflw(tmp_path, [((40, 40), points, (0, 0, 40, 40))])
    (tmp_path / wflw.IMAGES / "1--Event" / "face_0.jpg").unlink()
    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(tmp_path / wflw.IMAGES / "1--Event" / "face_0.jpg")
    s = data.load_dense(cfg(name=f"wflw:{tmp_path}", resolution=50), "test")
    assert s.images.shape == (1, 1, 50, 50)  # crop (-5, -5) .. (45, 45): a 5 px black frame, scaled to 5 px
    assert (s.images[0, 0, :4] < 10).all() and (s.images[0, 0, 10:40, 10:40] > 245).all()


def test_wflw_missing_files_name_the_path(tmp_path):
    name = f"wflw:{tmp_path}"
    (tmp_path / wflw.IMAGES).mkdir()
    with pytest.raises(UserError, match=f"missing WFLW annotation file: {tmp_path / wflw.ANNOTATIONS}"):
        data.load_dense(cfg(name=name), "train")
    (tmp_path / wflw.IMAGES).rmdir()
    with pytest.raises(UserError, match=f"missing WFLW image folder: {tmp_path / wflw.IMAGES}"):
        data.load_dense(cfg(name=name), "train")
    _write_wflw(tmp_path, [((60, 60), _points((30, 30), 10, np.random.default_rng(2)), (10, 10, 50, 50))])
    photo = tmp_path / wflw.IMAGES / "1--Event" / "face_0.jpg"
    photo.unlink()
    with pytest.raises(UserError, match=f"missing image file: {photo}"):
        data.load_dense(cfg(name=name), "train")
    annotations = tmp_path / wflw.ANNOTATIONS / "list_98pt_rect_attr_test.txt"
    annotations.write_text("1 2 3 x.jpg\n")
    with pytest.raises(UserError, match=f"{annotations}:1: expected 207 fields"):
        data.load_dense(cfg(name=name), "test")
