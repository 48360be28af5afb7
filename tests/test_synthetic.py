"""The embedded synthetic dataset: a deterministic, balanced stream of images that needs no files."""

import torch
from torch.nn import functional as F

from scaler import synthetic


def test_shapes_types_and_names():
    images, labels = synthetic.generate(0, 2 * synthetic.CHUNK, seed=0)
    assert images.shape == (2 * synthetic.CHUNK, 3, synthetic.NATIVE_RESOLUTION, synthetic.NATIVE_RESOLUTION)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert len(synthetic.CLASS_NAMES) == synthetic.NUM_CLASSES == len(set(synthetic.CLASS_NAMES))
    assert int(labels.min()) >= 0 and int(labels.max()) < synthetic.NUM_CLASSES


def test_classes_are_balanced():
    _, labels = synthetic.generate(0, 4 * synthetic.CHUNK, seed=3)
    counts = torch.bincount(labels, minlength=synthetic.NUM_CLASSES)
    assert int(counts.min()) == int(counts.max())


def test_the_stream_is_the_same_however_it_is_cut():
    whole_images, whole_labels = synthetic.generate(0, 3 * synthetic.CHUNK, seed=5)
    start, count = synthetic.CHUNK - 7, synthetic.CHUNK + 11  # across chunk boundaries
    part_images, part_labels = synthetic.generate(start, count, seed=5)
    assert torch.equal(part_images, whole_images[start:start + count])
    assert torch.equal(part_labels, whole_labels[start:start + count])


def test_seed_decides_and_threads_do_not():
    a = synthetic.generate(0, 40, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        b = synthetic.generate(0, 40, seed=1)
    finally:
        torch.set_num_threads(threads)
    c = synthetic.generate(0, 40, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_images_are_not_blank_and_differ():
    images, _ = synthetic.generate(0, 64, seed=0)
    flat = images.float().flatten(1)
    assert float(flat.std(dim=1).min()) > 5  # every image has content
    assert len({bytes(image.numpy().tobytes()) for image in images}) == len(images)


def test_fine_texture_needs_resolution():
    """The texture attribute lives in fine detail: downsampling to 32 px removes much more of the images'
    high-frequency energy than downsampling to 48 px does (the reason resolution scaling pays off)."""
    images, _ = synthetic.generate(0, 160, seed=0)
    x = images.float()

    def detail_kept(size):
        small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        back = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return 1 - float((x - back).pow(2).mean()) / float((x - x.mean(dim=(2, 3), keepdim=True)).pow(2).mean())

    assert detail_kept(48) > detail_kept(32)


def test_other_sizes_render_the_same_scenes():
    native, labels = synthetic.generate(0, 32, seed=4)
    small, small_labels = synthetic.generate(0, 32, seed=4, size=32)
    assert small.shape[-1] == 32 and torch.equal(labels, small_labels)
    down = F.interpolate(native.float(), size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert float((down - small.float()).abs().mean()) < 8


def test_gratings_fill_the_squares_and_never_the_disc():
    """The texture attribute lives on the squares; the disc stays a clean plain shape to find (its interior moves
    only by pixel noise and shading), and a grating square's interior swings by its contrast."""
    scene = synthetic._draw_chunk(0, 0)
    images, labels = synthetic._render_chunk(0, 0, synthetic.NATIVE_RESOLUTION)
    coords = (torch.arange(synthetic.NATIVE_RESOLUTION) + 0.5) / synthetic.NATIVE_RESOLUTION

    def interior_std(i, k):
        inside = ((coords[None, :] - scene.cx[i, k]).abs() < 0.5 * scene.radius[i, k]) & \
                 ((coords[:, None] - scene.cy[i, k]).abs() < 0.5 * scene.radius[i, k])
        return float(images[i][:, inside].std(dim=1).mean())

    easy = synthetic.easy(0, len(labels))
    grating = [i for i in range(len(labels)) if not scene.plain[i] and easy[i]]
    plain = [i for i in range(len(labels)) if scene.plain[i]]
    assert grating and plain
    assert max(interior_std(i, 0) for i in range(len(labels))) < 0.05
    assert min(interior_std(i, 1) for i in grating) > 0.08
    assert max(interior_std(i, 1) for i in plain) < 0.05


def test_half_the_images_are_easy_with_strong_gratings():
    """The even images' gratings have the strong contrast every training finds; the odd images' are faint, spread
    log-uniformly down to where a short training cannot see them: what a longer one still has to learn."""
    scene = synthetic._draw_chunk(3, 1)
    contrast = scene.object_delta.norm(dim=-1) / 3 ** 0.5  # per image and object
    easy = synthetic.easy(3 * synthetic.CHUNK, synthetic.CHUNK)
    assert easy.tolist() == [i % 2 == 0 for i in range(synthetic.CHUNK)]
    low, high = synthetic.CONTRAST
    assert float(contrast[easy].min()) >= low - 1e-6 and float(contrast[easy].max()) <= high + 1e-6
    low, high = synthetic.FAINT_CONTRAST
    faint = contrast[~easy]
    assert float(faint.min()) >= low - 1e-6 and float(faint.max()) <= high + 1e-6
    assert float(faint.log().median()) < (torch.tensor(low).log() + torch.tensor(high).log()) / 2 + 0.1
