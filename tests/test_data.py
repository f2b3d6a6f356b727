import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from diffrep import data
from diffrep.data import DATA_DEFAULTS
from diffrep.errors import UserError


def cfg(**kw):
    return {**DATA_DEFAULTS, **kw}


def test_fashion_mnist_is_padded_to_32_and_scaled():
    test = data.load(cfg(), "test")
    assert test.images.shape == (10000, 1, 32, 32) and test.images.dtype == torch.uint8
    assert test.labels.bincount().tolist() == [1000] * 10
    x = test.floats(slice(0, 64))
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1
    assert (test.images[:, :, :2] == 0).all()  # 2-pixel black border from padding 28 -> 32


def test_train_size_is_a_stratified_seeded_subset():
    a = data.load(cfg(train_size=1000, seed=1), "train")
    b = data.load(cfg(train_size=1000, seed=1), "train")
    c = data.load(cfg(train_size=1000, seed=2), "train")
    assert len(a) == 1000 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.labels.bincount().tolist() == [100] * 10


def test_label_fraction_keeps_one_percent_of_each_class():
    train = data.load(cfg(), "train")
    kept = data.labelled(train, 0.01, seed=0)
    assert kept.labels.bincount().tolist() == [60] * 10
    assert data.labelled(train, 0.00001, seed=0).labels.bincount().tolist() == [1] * 10  # every class kept
    assert len(data.labelled(train, 1, seed=0)) == len(train)  # an integer 1 means all labels, not one
    with pytest.raises(UserError, match="must be a fraction"):
        data.labelled(train, 1.5, seed=0)


def test_held_out_validation_images_are_disjoint_from_the_labelled_ones():
    n = 1000  # each image holds its own index, so subsets can be compared by value
    images = torch.arange(n).view(n, 1, 1, 1)
    imageset = data.ImageSet(images, torch.arange(n) % 10, [str(c) for c in range(10)])
    dense = data.DenseSet(images, None, None, [], [])
    for whole, labelled, held_out in ((imageset, data.labelled, data.held_out),
                                      (dense, data.labelled_dense, data.held_out_dense)):
        kept = set(labelled(whole, 0.1, seed=3).images.flatten().tolist())
        val = held_out(whole, 0.1, 3, 0.2)  # a fraction of the whole split
        assert len(val) == 200 and not kept & set(val.images.flatten().tolist())
        assert torch.equal(held_out(whole, 0.1, 3, 50).images, held_out(whole, 0.1, 3, 50).images)  # seeded
        with pytest.raises(UserError, match="data.val asks for 901 held-out images, but only 900"):
            held_out(whole, 0.1, 3, 901)
        with pytest.raises(UserError, match="only 0 train images are not labelled"):
            held_out(whole, 1.0, 3, 1)
    assert data.held_out(imageset, 0.1, 3, 100).labels.bincount().tolist() == [10] * 10  # stratified


def test_digits_are_resized_and_channels_converted():
    train = data.load(cfg(name="digits", channels=3), "train")
    test = data.load(cfg(name="digits", channels=3), "test")
    assert train.images.shape[1:] == (3, 32, 32) and len(train) + len(test) == 1797
    assert torch.equal(train.images[:, 0], train.images[:, 2])


def test_fit_image_pads_resizes_and_converts():
    img = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert data.fit_image(img, 32, 1, "pad").shape == (1, 32, 32)
    assert data.fit_image(img, 64, 3, "resize").shape == (3, 64, 64)
    with pytest.raises(UserError, match="cannot pad"):
        data.fit_image(img, 16, 3, "pad")


def _write_folder(root, classes=("cat", "dog"), per_class=5, size=(20, 24)):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_reads_classes_and_splits(tmp_path):
    _write_folder(tmp_path)
    train = data.load(cfg(name=f"imagefolder:{tmp_path}", resolution=16, channels=3), "train")
    test = data.load(cfg(name=f"imagefolder:{tmp_path}", resolution=16, channels=3), "test")
    assert train.classes == ["cat", "dog"] and train.images.shape[1:] == (3, 16, 16)
    assert len(train) == 8 and len(test) == 2 and test.labels.tolist() == [0, 1]


def test_image_folder_errors_name_the_path(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        data.load(cfg(name=f"imagefolder:{tmp_path / 'nope'}"), "train")
    with pytest.raises(UserError, match="no class sub-folders"):
        data.load(cfg(name=f"imagefolder:{tmp_path}"), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="class folder.s. without PNG or JPEG images in .*: empty"):
        data.load(cfg(name=f"imagefolder:{tmp_path}"), "train")
    _write_folder(tmp_path / "good")
    bad = tmp_path / "good" / "cat" / "broken.png"
    bad.write_bytes(b"not an image")
    errors = []
    for split in ("train", "test"):  # the split that holds the bad file names it
        try:
            data.load(cfg(name=f"imagefolder:{tmp_path / 'good'}"), split)
        except UserError as err:
            errors.append(str(err))
    assert len(errors) == 1 and errors[0].startswith(f"1 image(s) cannot be read: {bad} ("), errors


def _write_cifar(root, n=20, labels=None):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                 b"labels": labels if labels is not None else [i % 10 for i in range(n)]}
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_pickles(tmp_path):
    _write_cifar(tmp_path)
    train = data.load(cfg(name=f"cifar10:{tmp_path}", channels=3), "train")
    assert train.images.shape == (100, 3, 32, 32) and train.classes[0] == "airplane"
    gray = data.load(cfg(name=f"cifar10:{tmp_path}", channels=1, test_size=10), "test")
    assert gray.images.shape == (10, 1, 32, 32)


def test_cifar10_errors(tmp_path):
    with pytest.raises(UserError, match="missing CIFAR-10 batch file"):
        data.load(cfg(name=f"cifar10:{tmp_path}"), "train")
    _write_cifar(tmp_path, labels=[12] * 20)
    with pytest.raises(UserError, match="labels must lie in 0..9"):
        data.load(cfg(name=f"cifar10:{tmp_path}", channels=3), "test")
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(UserError, match="corrupt CIFAR-10 batch file"):
        data.load(cfg(name=f"cifar10:{tmp_path}", channels=3), "test")


def test_missing_fashion_mnist_root_and_unknown_name(tmp_path):
    with pytest.raises(UserError, match=f"Fashion-MNIST folder not found: {tmp_path / 'x'}"):
        data.load(cfg(root=str(tmp_path / "x")), "train")
    with pytest.raises(UserError, match="missing data file"):
        data.load(cfg(root=str(tmp_path)), "train")
    with pytest.raises(UserError, match="valid names: fashion-mnist, digits"):
        data.load(cfg(name="mnist"), "train")


def test_hflip_batch_is_reproducible():
    images = torch.arange(4 * 2 * 2, dtype=torch.uint8).view(4, 1, 2, 2)
    a = data.hflip_batch(images, torch.Generator().manual_seed(3))
    b = data.hflip_batch(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    flipped = [not torch.equal(a[i], images[i]) for i in range(4)]
    for i, f in enumerate(flipped):
        assert torch.equal(a[i], images[i].flip(-1) if f else images[i])
