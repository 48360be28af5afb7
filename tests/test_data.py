"""Datasets on disk in their real formats, the on-device augmentation, and bad data as one clear error."""

import pickle

import numpy as np
import pytest
import torch

from scaler.augment import channel_stats, normalize, random_crop_flip, resize
from scaler.data import load_data, parse_data
from scaler.errors import ScalerError


def write_cifar(root, kind="cifar10", train_per_batch=40, test=30, seed=0):
    """A small CIFAR folder in the real python-pickle format, labels drawn from the real label range."""
    rng = np.random.default_rng(seed)
    classes, folder, key = (10, "cifar-10-batches-py", "labels") if kind == "cifar10" else \
        (100, "cifar-100-python", "fine_labels")
    path = root / folder
    path.mkdir(parents=True)

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: rng.integers(0, classes, n).tolist()}

    names = [f"data_batch_{i}" for i in range(1, 6)] if kind == "cifar10" else ["train"]
    for name in names:
        with open(path / name, "wb") as handle:
            pickle.dump(batch(train_per_batch), handle)
    with open(path / ("test_batch" if kind == "cifar10" else "test"), "wb") as handle:
        pickle.dump(batch(test), handle)
    return path


def write_image_folder(root, classes=("cat", "dog", "eel"), per_class=6, size=(20, 28)):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("kind, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_in_the_real_format(tmp_path, kind, classes):
    write_cifar(tmp_path, kind)
    data = load_data(f"{kind}:{tmp_path}")
    train_count = 200 if kind == "cifar10" else 40
    assert data.num_classes == classes
    assert data.train_images.shape == (train_count, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.val_images.shape == (30, 3, 32, 32)
    assert data.train_labels.dtype == torch.int64 and int(data.train_labels.max()) < classes
    assert data.train_easy is None  # no image is marked easy: every epoch draws from all of them


def test_the_synthetic_set_marks_its_easy_images():
    data = load_data("synthetic", train_size=9, val_size=4)
    assert data.train_easy.tolist() == [True, False] * 4 + [True]


def test_cifar_images_keep_their_pixels(tmp_path):
    path = write_cifar(tmp_path)
    with open(path / "test_batch", "rb") as handle:
        raw = pickle.load(handle)
    data = load_data(f"cifar10:{path}")  # the batches folder itself works too
    first = torch.from_numpy(raw["data"][0].reshape(3, 32, 32))
    assert torch.equal(data.val_images[0], first)
    assert data.val_labels[0] == raw["labels"][0]


def test_cifar_subsets_are_seeded(tmp_path):
    write_cifar(tmp_path)
    a = load_data(f"cifar10:{tmp_path}", train_size=50, val_size=10, seed=3)
    b = load_data(f"cifar10:{tmp_path}", train_size=50, val_size=10, seed=3)
    c = load_data(f"cifar10:{tmp_path}", train_size=50, val_size=10, seed=4)
    assert len(a.train_labels) == 50 and len(a.val_labels) == 10
    assert torch.equal(a.train_images, b.train_images)
    assert not torch.equal(a.train_images, c.train_images)


def test_image_folder_split_here(tmp_path):
    write_image_folder(tmp_path)
    data = load_data(f"imagefolder:{tmp_path}", image_size=24)
    assert data.num_classes == 3
    assert len(data.train_labels) + len(data.val_labels) == 18 and len(data.val_labels) == 3
    assert data.train_images.shape[1:] == (3, 24, 24)


def test_image_folder_with_train_and_val(tmp_path):
    write_image_folder(tmp_path / "train", per_class=4)
    write_image_folder(tmp_path / "val", per_class=2)
    data = load_data(f"imagefolder:{tmp_path}", image_size=16)
    assert len(data.train_labels) == 12 and len(data.val_labels) == 6
    assert sorted(data.val_labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_image_folder_grayscale_and_rgba_become_rgb(tmp_path):
    from PIL import Image

    for c, mode in (("a", "L"), ("b", "RGBA")):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new(mode, (10, 12)).save(tmp_path / c / f"{i}.png")
    data = load_data(f"imagefolder:{tmp_path}", image_size=8, val_size=2)
    assert data.train_images.shape[1] == 3


@pytest.mark.parametrize("text, message", [
    ("mnist", "unknown kind 'mnist'"),
    ("cifar10", "cifar10 needs a folder"),
    ("synthetic:/tmp", "synthetic takes no path"),
    ("cifar10:/nonexistent/folder", "is not a folder"),
])
def test_bad_data_strings(text, message):
    with pytest.raises(ScalerError, match=message):
        parse_data(text)


def test_missing_cifar_batch(tmp_path):
    path = write_cifar(tmp_path)
    (path / "data_batch_3").unlink()
    with pytest.raises(ScalerError, match="data_batch_3 is missing"):
        load_data(f"cifar10:{tmp_path}")


def test_malformed_cifar_batch(tmp_path):
    path = write_cifar(tmp_path)
    (path / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(ScalerError, match="not a CIFAR python-pickle batch"):
        load_data(f"cifar10:{tmp_path}")


def test_empty_image_folder(tmp_path):
    with pytest.raises(ScalerError, match="no class folders with images"):
        load_data(f"imagefolder:{tmp_path}")


def test_undecodable_image(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ScalerError, match="cannot decode .*broken.png"):
        load_data(f"imagefolder:{tmp_path}")


@pytest.mark.parametrize("size", [0, -1, 2.5])
def test_bad_sizes(tmp_path, size):
    write_cifar(tmp_path)
    with pytest.raises(ScalerError, match="train size"):
        load_data(f"cifar10:{tmp_path}", train_size=size)


def test_random_crop_flip_moves_and_mirrors_whole_images():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8).to(torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(0), pad=0)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(2):  # without padding, each image is itself or its mirror image
        assert torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(-1))


def test_random_crop_flip_translates_within_the_padding():
    images = torch.full((64, 3, 8, 8), 200, dtype=torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(0), pad=2)
    zeros = (out[:, 0] == 0).float().mean(dim=(1, 2))
    assert zeros.max() > 0 and zeros.max() <= (1 - (6 / 8) ** 2) + 1e-6  # at most 2 rows and 2 columns of fill
    again = random_crop_flip(images, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)  # the generator decides everything


def test_random_crop_flip_is_a_padded_crop_then_a_mirror_image_per_image():
    """The batched gather gives, image by image, what RandomCrop(padding) and a horizontal flip define: the crop
    of the zero-padded image at the drawn offset, mirrored when the draw says so (the draws replayed here)."""
    images = torch.randint(0, 256, (16, 3, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pad = 3
    out = random_crop_flip(images, torch.Generator().manual_seed(5), pad=pad)
    draws = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 2 * pad + 1, (16, 1), generator=draws)
    dx = torch.randint(0, 2 * pad + 1, (16, 1), generator=draws)
    flip = torch.rand(16, 1, generator=draws) < 0.5
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    for i in range(16):
        crop = padded[i, :, dy[i, 0]:dy[i, 0] + 9, dx[i, 0]:dx[i, 0] + 7]
        assert torch.equal(out[i], crop.flip(-1) if flip[i, 0] else crop), i


def test_resize_and_normalize():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    small = resize(images, 16)
    assert small.shape == (5, 3, 16, 16) and small.dtype == torch.uint8
    assert resize(images, 32) is images
    mean, std = channel_stats(images)
    x = normalize(images, mean, std)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
