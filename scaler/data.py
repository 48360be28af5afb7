"""Datasets for proxy training, decoded once into uint8 tensors that stay on the training device.

`--data` takes `synthetic` (the embedded procedural set, see scaler.synthetic), `cifar10:PATH`,
`cifar100:PATH` (the standard python-pickle folders) or `imagefolder:PATH` (a class-per-folder tree,
with `train/` and `val/` subfolders or split here). Augmentation and resizing happen batched on the
device (scaler.augment), so a training step never touches Python per sample.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from scaler.errors import ScalerError, check_int

DATA_KINDS = ("synthetic", "cifar10", "cifar100", "imagefolder")
# The synthetic validation images come from far along the stream, so they never overlap any training set.
SYNTHETIC_VAL_START = 10_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class Dataset:
    """Train and validation images (uint8, N x 3 x S x S) and labels (int64), all on one device. `train_easy`
    (bool, N) marks the training images a first epoch learns from alone, where a set has them (scaler.synthetic):
    a start on easy images makes every seed find a hard attribute at the same time, not in some seeds early and
    in others late (benchmarks/RESULTS.md)."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    num_classes: int
    train_easy: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]


def parse_data(text: str) -> tuple[str, Path | None]:
    """'synthetic' or 'KIND:PATH' -> (kind, path); a wrong form is one clear error."""
    kind, _, path = str(text).partition(":")
    if kind not in DATA_KINDS:
        raise ScalerError(f"data: unknown kind {kind!r} in {text!r}; use synthetic, cifar10:PATH, cifar100:PATH "
                          f"or imagefolder:PATH")
    if kind == "synthetic":
        if path:
            raise ScalerError(f"data: synthetic takes no path, got {text!r}")
        return kind, None
    if not path:
        raise ScalerError(f"data: {kind} needs a folder, as {kind}:PATH")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ScalerError(f"data: {folder} is not a folder")
    return kind, folder


def _subset(images: torch.Tensor, labels: torch.Tensor, size: int | None, seed: int):
    """A seeded random subset of `size` samples (all of them if size is None or larger)."""
    if size is None or size >= len(labels):
        return images, labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:size]
    return images[order], labels[order]


def _read_cifar_pickles(folder: Path, names: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The python-pickle CIFAR format: dicts with 'data' (N x 3072 uint8) and labels. torchvision's CIFAR classes
    check the MD5 of the official files and so refuse any other copy in this format; it is read here directly."""
    images, labels = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = np.asarray(entry[label_key], dtype=np.int64)
        except FileNotFoundError:
            raise ScalerError(f"data: {path} is missing") from None
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise ScalerError(f"data: {path} is not a CIFAR python-pickle batch ({type(error).__name__})") from None
        if len(batch_labels) != len(data):
            raise ScalerError(f"data: {path} has {len(data)} images but {len(batch_labels)} labels")
        images.append(torch.from_numpy(data.copy()))
        labels.append(torch.from_numpy(batch_labels))
    return torch.cat(images), torch.cat(labels)


def _load_cifar(kind: str, folder: Path, seed: int, train_size, val_size):
    base, train_names, val_names, key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
        "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
    }[kind]
    if (folder / base).is_dir():
        folder = folder / base
    train = _subset(*_read_cifar_pickles(folder, train_names, key), train_size, seed)
    val = _subset(*_read_cifar_pickles(folder, val_names, key), val_size, seed + 1)
    for labels in (train[1], val[1]):
        if len(labels) == 0:
            raise ScalerError(f"data: {folder} holds no images")
        if labels.min() < 0 or labels.max() >= classes:
            raise ScalerError(f"data: {folder} has labels outside 0..{classes - 1}")
    return train, val, classes


def _decode_folder(samples: list[tuple[str, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image once (torchvision's ImageFolder loader, RGB), shorter side resized to `size`
    (antialiased) and centre-cropped to size x size."""
    from torchvision.datasets.folder import pil_loader
    from torchvision.transforms.functional import pil_to_tensor

    images = torch.empty(len(samples), 3, size, size, dtype=torch.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            image = pil_to_tensor(pil_loader(path))
        except (OSError, ValueError) as error:
            raise ScalerError(f"data: cannot decode {path}: {str(error).splitlines()[0]}") from None
        height, width = image.shape[-2:]
        scale = size / min(height, width)
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        image = F.interpolate(image[None].float(), size=new, mode="bilinear", antialias=True, align_corners=False)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        images[i] = image[0, :, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return images, labels


def _image_folder(folder: Path):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(folder), is_valid_file=lambda p: p.lower().endswith(IMAGE_SUFFIXES))
    except (FileNotFoundError, RuntimeError) as error:
        raise ScalerError(f"data: {folder} has no class folders with images ({str(error).splitlines()[0]})") from None


def _load_imagefolder(folder: Path, seed: int, train_size, val_size, image_size: int):
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        train_set, val_set = _image_folder(folder / "train"), _image_folder(folder / "val")
        if train_set.classes != val_set.classes:
            raise ScalerError(f"data: {folder}/train and {folder}/val have different class folders")
        train = _subset(*_decode_folder(train_set.samples, image_size), train_size, seed)
        val = _subset(*_decode_folder(val_set.samples, image_size), val_size, seed + 1)
        return train, val, len(train_set.classes)
    dataset = _image_folder(folder)
    images, labels = _decode_folder(dataset.samples, image_size)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = val_size if val_size is not None else max(1, len(labels) // 5)
    if n_val >= len(labels):
        raise ScalerError(f"data: {folder} has {len(labels)} images, too few to hold out {n_val} for validation")
    val_index, train_index = order[:n_val], order[n_val:]
    train = _subset(images[train_index], labels[train_index], train_size, seed)
    return train, (images[val_index], labels[val_index]), len(dataset.classes)


def load_data(
    data: str = "synthetic",
    train_size: int | None = None,
    val_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    image_size: int = 64,
) -> Dataset:
    """Load a dataset onto `device`. Sizes cap the number of images (synthetic: 5000 and 1000 by default);
    `image_size` is the stored size of ImageFolder images (CIFAR is 32 px, synthetic its native size)."""
    kind, folder = parse_data(data)
    easy = None  # only the synthetic set marks easy images
    for name, value in (("train size", train_size), ("val size", val_size)):
        if value is not None:
            check_int(name, value)
    if kind == "synthetic":
        from scaler import synthetic

        train = synthetic.generate(0, train_size or 5000, seed=seed)
        val = synthetic.generate(SYNTHETIC_VAL_START, val_size or 1000, seed=seed)
        classes = synthetic.NUM_CLASSES
        easy = synthetic.easy(0, len(train[1]))
    elif kind in ("cifar10", "cifar100"):
        train, val, classes = _load_cifar(kind, folder, seed, train_size, val_size)
    else:
        train, val, classes = _load_imagefolder(folder, seed, train_size, val_size, image_size)
    if len(train[1]) == 0 or len(val[1]) == 0:
        raise ScalerError(f"data: {data} has no images to train or validate on")
    return Dataset(
        name=str(data),
        train_images=train[0].to(device).contiguous(),
        train_labels=train[1].to(device),
        val_images=val[0].to(device).contiguous(),
        val_labels=val[1].to(device),
        num_classes=classes,
        train_easy=None if easy is None else easy.to(device),
    )
