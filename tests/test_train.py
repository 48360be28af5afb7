"""Proxy training on the CPU: learns, is deterministic, fails in the ways a search can survive."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import scaler
from scaler import synthetic
from scaler import training
from scaler.augment import random_crop_flip, resize
from scaler.cli import main
from scaler.data import Dataset, load_data
from scaler.errors import ScalerError
from scaler.blocks import BasicBlock, Bottleneck, FusedMBConv, InvertedResidual, MBConv
from scaler.build import build_model
from scaler.device import resolve_device
from scaler.errors import NonFiniteLoss, OutOfMemory, TrainingFailed
from scaler.training import (ProgressiveStage, _zero_residual_branches, evaluate, learning_rate_factor,
                             progressive_schedule, train)
from test_data import write_cifar

TINY = scaler.scale(scaler.get_baseline("efficientnet-b0"), width=0.25, depth=0.34, resolution=32)


@pytest.fixture(scope="module")
def synthetic_data():
    return load_data("synthetic", train_size=1500, val_size=500, seed=0)


@pytest.fixture
def cifar(tmp_path):
    write_cifar(tmp_path, train_per_batch=40, test=40)
    return load_data(f"cifar10:{tmp_path}")


@pytest.mark.slow
def test_a_small_network_learns_the_synthetic_set(synthetic_data):
    # At the default proxy's 48 px: at 32 px the set's smallest objects and finest gratings are a pixel or two
    result = train(TINY, synthetic_data, epochs=6, batch_size=32, resolution=48, device="cpu", seed=0)
    chance = 1 / synthetic.NUM_CLASSES
    assert result.top1 > 4 * chance, result.top1_per_epoch
    assert result.num_classes == synthetic.NUM_CLASSES


def test_the_first_epoch_learns_from_the_easy_images_alone(monkeypatch):
    """Every training image carries its index in a corner pixel; the batches the trainer augments show which images
    each epoch drew: the first, each easy image twice (as many steps as any epoch) and no other; the next, every
    image once."""
    count, batch = 256, 32
    labels = torch.arange(count) % 2
    images = torch.randint(0, 256, (count, 3, 32, 32), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    images[:, 0, 0, 0] = torch.arange(count)  # count <= 256: the index fits the pixel
    easy = (torch.arange(count) % 4 == 1) | (torch.arange(count) % 4 == 2)  # half of each class
    data = Dataset("marked", images, labels, images[:64], labels[:64], 2, train_easy=easy)
    drawn = []

    def spy(x, generator, pad):
        drawn.append(x[:, 0, 0, 0].long())
        return random_crop_flip(x, generator, pad)

    monkeypatch.setattr(training, "random_crop_flip", spy)
    train(TINY, data, epochs=2, batch_size=batch, device="cpu")
    steps = count // batch
    first, second = torch.cat(drawn[:steps]), torch.cat(drawn[steps:])
    assert len(drawn) == 2 * steps
    assert torch.bincount(first, minlength=count).tolist() == (2 * easy.long()).tolist()
    assert torch.bincount(second, minlength=count).tolist() == [1] * count


def test_same_seed_same_result(cifar):
    a = train(TINY, cifar, epochs=2, batch_size=32, device="cpu", seed=7)
    b = train(TINY, cifar, epochs=2, batch_size=32, device="cpu", seed=7)
    c = train(TINY, cifar, epochs=2, batch_size=32, device="cpu", seed=8)
    assert a.top1_per_epoch == b.top1_per_epoch and a.loss_per_epoch == b.loss_per_epoch
    assert a.loss_per_epoch != c.loss_per_epoch


def test_result_fields(cifar):
    seen = []
    result = train(TINY, cifar, epochs=2, batch_size=64, resolution=40, device="cpu",
                   on_epoch=lambda epoch, top1: seen.append((epoch, top1)))
    assert seen == list(enumerate(result.top1_per_epoch))
    assert len(result.top1_per_epoch) == 2 and 0 <= result.top1 <= 1
    assert result.resolution == 40 and result.batch_size == 64 and result.train_size == 200
    assert result.images_per_second > 0 and result.wall_seconds > 0 and result.peak_memory_bytes > 0
    assert result.device == "cpu" and result.num_classes == 10
    assert len(result.val_loss_per_epoch) == 2 and result.val_loss == result.val_loss_per_epoch[-1] > 0
    json.dumps(result.to_dict())


def test_evaluation_gives_top1_and_the_cross_entropy_without_smoothing():
    """Three images, logits fixed: the first two right (probabilities 1/2 and 0.6 on their class), the third
    wrong, so top-1 is 2/3 and the loss the mean of -ln 1/2, -ln 0.6 and -ln 1/8 (across two batches)."""
    import math

    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.125, 0.5, 0.375]]))

    class Fixed(nn.Module):
        def forward(self, x):  # one row per image, in order: the images' first pixel holds their index
            return logits[x[:, 0, 0, 0].round().long()]

    images = torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 2, 2).contiguous()
    labels = torch.tensor([0, 2, 0])
    mean, std = torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 1 / 255)
    top1, loss = evaluate(Fixed(), images, labels, mean, std, batch_size=2, device=torch.device("cpu"))
    assert top1 == pytest.approx(2 / 3)
    assert loss == pytest.approx((math.log(2) - math.log(0.6) + math.log(8)) / 3)


def test_batch_larger_than_the_data_uses_all_of_it(cifar):
    result = train(TINY, cifar, epochs=1, batch_size=1000, device="cpu")
    assert result.batch_size == 200


def test_a_callback_exception_passes_through(cifar):
    class Pruned(Exception):
        pass

    def prune(epoch, top1):
        raise Pruned

    with pytest.raises(Pruned):
        train(TINY, cifar, epochs=3, device="cpu", on_epoch=prune)


def test_out_of_memory_is_its_own_error(cifar, monkeypatch):
    def exhausted(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(scaler.build.Network, "forward", exhausted)
    with pytest.raises(OutOfMemory, match="out of memory at batch size 32") as caught:
        train(TINY, cifar, epochs=1, batch_size=32, device="cpu")
    assert "Tried to allocate" in caught.value.reason


def test_non_finite_loss_is_its_own_error(cifar, monkeypatch):
    original = scaler.build.Network.forward

    def diverged(self, x):
        return original(self, x) * float("nan")

    monkeypatch.setattr(scaler.build.Network, "forward", diverged)
    with pytest.raises(NonFiniteLoss, match="loss became nan in epoch 1"):
        train(TINY, cifar, epochs=1, batch_size=32, device="cpu")


def test_any_other_failure_is_training_failed(cifar, monkeypatch):
    def broken(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied\nmore detail")

    monkeypatch.setattr(scaler.build.Network, "forward", broken)
    with pytest.raises(TrainingFailed, match="RuntimeError: mat1 and mat2 shapes cannot be multiplied$"):
        train(TINY, cifar, epochs=1, device="cpu")


@pytest.mark.parametrize("name, kinds", [
    ("efficientnet-b0", {MBConv}), ("efficientnetv2-b0", {FusedMBConv, MBConv}), ("mobilenetv2", {InvertedResidual}),
    ("resnet18", {BasicBlock}), ("resnet50", {Bottleneck}),
])
def test_zeroed_residual_branches_make_every_residual_block_the_identity(name, kinds):
    model = build_model(scaler.scale(scaler.get_baseline(name), width=0.25, resolution=64)).eval()
    _zero_residual_branches(model)
    blocks = [m for m in model.modules() if type(m) in kinds]
    assert {type(m) for m in blocks} == kinds
    inputs = {}
    hooks = [b.register_forward_hook(lambda m, args, out: inputs.__setitem__(m, (args[0], out))) for b in blocks]
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    checked = 0
    for block, (x, out) in inputs.items():
        shortcut = getattr(block, "use_res_connect", getattr(block, "downsample", None) is None)
        if shortcut:  # the whole block is its input (ResNet's input is already past a ReLU)
            torch.testing.assert_close(out, x, rtol=0, atol=0)
            checked += 1
        elif hasattr(block, "use_res_connect"):  # no shortcut: nothing zeroed, the branch is the output
            assert block.residual_norm() is None and out.abs().sum() > 0
    assert checked >= 2


def test_residual_branches_start_at_zero_unless_asked_not_to(cifar, monkeypatch):
    built = []

    def recorded_build(spec):
        built.append(build_model(spec))
        return built[-1]
    monkeypatch.setattr(sys.modules["scaler.training"], "build_model", recorded_build)
    zeroed = train(TINY, cifar, epochs=1, batch_size=16, device="cpu", seed=0)
    kept = train(TINY, cifar, epochs=1, batch_size=16, device="cpu", seed=0, zero_init_residual=False)
    assert zeroed.loss_per_epoch != kept.loss_per_epoch
    norms = [[m.residual_norm() for m in model.modules() if isinstance(m, MBConv) and m.use_res_connect]
             for model in built]
    assert norms[0] and len(norms[0]) == len(norms[1])
    # after one epoch of training, the zero-started scales are still far below torchvision's ones
    assert max(n.weight.abs().max() for n in norms[0]) < min(n.weight.abs().mean() for n in norms[1])


def test_learning_rate_schedule():
    factors = [learning_rate_factor(step, 100, 10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] < 0.01


@pytest.mark.parametrize("resolution, stages, epochs", [(48, 2, 4), (48, 4, 4), (64, 4, 8), (64, 3, 7),
                                                       (224, 4, 350), (50, 3, 6)])
def test_progressive_schedule_rises_to_the_target(resolution, stages, epochs):
    schedule = progressive_schedule(resolution, 0.2, stages, epochs, min_resolution=32)
    assert len(schedule) == epochs
    assert len(set(schedule)) == stages  # dropout rises every stage, so stages are distinct
    assert schedule[-1] == ProgressiveStage(resolution, 0.2, resolution // 8)  # the last stage is plain training
    assert schedule[0].dropout == pytest.approx(0.1) and schedule[0].pad < resolution // 8
    first = schedule[0].resolution
    assert first % 8 == 0 and 32 <= first < resolution and first == pytest.approx(0.6 * resolution, abs=4)
    for field in ("resolution", "dropout", "pad"):
        values = [getattr(stage, field) for stage in schedule]
        assert values == sorted(values), field
    assert all(stage.resolution % 8 == 0 for stage in schedule if stage.resolution != resolution)
    epochs_per_stage = [schedule.count(stage) for stage in dict.fromkeys(schedule)]
    assert max(epochs_per_stage) - min(epochs_per_stage) <= 1


def test_progressive_schedule_with_more_stages_than_epochs():
    schedule = progressive_schedule(64, 0.3, 5, 3, min_resolution=32)
    assert [stage.resolution for stage in schedule] == [40, 48, 64]
    assert [stage.dropout for stage in schedule] == pytest.approx([0.1, 0.2, 0.3])
    assert progressive_schedule(64, 0.3, 5, 1) == (ProgressiveStage(64, 0.3, 8),)


def test_progressive_schedule_bounds():
    # 0.6 of 32 px is below the network's total stride: the size stays at the target, the rest still ramps.
    assert [s.resolution for s in progressive_schedule(32, 0.2, 3, 3, min_resolution=32)] == [32, 32, 32]
    assert [s.pad for s in progressive_schedule(32, 0.2, 3, 3, min_resolution=32)] == [2, 3, 4]
    # Dropout starts at 0.1, or at the spec's own if lower; none stays none.
    assert {s.dropout for s in progressive_schedule(64, 0.05, 4, 4)} == {0.05}
    assert {s.dropout for s in progressive_schedule(64, 0.0, 4, 4)} == {0.0}
    # One stage is the plain recipe.
    assert progressive_schedule(48, 0.2, 1, 3) == (ProgressiveStage(48, 0.2, 6),) * 3


@pytest.fixture
def recorded_forwards(monkeypatch):
    """(training?, image size, dropout p's) for every forward pass of the network."""
    seen = []
    original = scaler.build.Network.forward

    def recording(self, x):
        seen.append((self.training, x.shape[-1], [m.p for m in self.modules() if isinstance(m, nn.Dropout)]))
        return original(self, x)

    monkeypatch.setattr(scaler.build.Network, "forward", recording)
    return seen


# resizes: train and validation images to the target once, then (progressive) the training images once a stage
@pytest.mark.parametrize("progressive, sizes, dropouts, resizes", [(0, [48, 48, 48, 48], [0.2] * 4, 2),
                                                                   (2, [32, 32, 48, 48], [0.1, 0.1, 0.2, 0.2], 4)])
def test_progressive_training_follows_the_schedule(cifar, recorded_forwards, monkeypatch, progressive, sizes,
                                                   dropouts, resizes):
    resized = []
    monkeypatch.setattr(sys.modules["scaler.training"], "resize",
                        lambda images, size: resized.append(size) or resize(images, size))
    result = train(TINY, cifar, epochs=4, batch_size=64, resolution=48, device="cpu", progressive=progressive)
    steps = 200 // 64
    trained = [(size, p) for training, size, p in recorded_forwards if training]
    assert trained == [(size, [p]) for size, p in zip(sizes, dropouts) for _ in range(steps)]
    assert {size for training, size, _ in recorded_forwards if not training} == {48}  # validated at the target
    assert result.resolution == 48 and result.progressive == progressive and len(result.top1_per_epoch) == 4
    assert len(resized) == resizes


def test_progressive_training_is_deterministic(cifar):
    a = train(TINY, cifar, epochs=2, batch_size=32, resolution=48, device="cpu", seed=7, progressive=2)
    b = train(TINY, cifar, epochs=2, batch_size=32, resolution=48, device="cpu", seed=7, progressive=2)
    fixed = train(TINY, cifar, epochs=2, batch_size=32, resolution=48, device="cpu", seed=7)
    assert a.top1_per_epoch == b.top1_per_epoch and a.loss_per_epoch == b.loss_per_epoch
    assert a.loss_per_epoch[0] != fixed.loss_per_epoch[0]
    json.dumps(a.to_dict())


@pytest.mark.parametrize("value, message", [(-1, "at least 0"), (1, "at least 2 stages"), (2.0, "integer"),
                                            (True, "integer"), ("4", "integer")])
def test_bad_progressive(cifar, value, message):
    with pytest.raises(ScalerError, match=f"^progressive: .*{message}"):
        train(TINY, cifar, device="cpu", progressive=value)


ONE_PAST_THE_LAST_GPU = f"cuda:{torch.cuda.device_count()}"  # never exists, on any machine


@pytest.mark.parametrize("device, message", [
    ("tpu", "unknown device 'tpu'"),
    ("mps", "not supported"),
    (ONE_PAST_THE_LAST_GPU, ONE_PAST_THE_LAST_GPU),
])
def test_bad_devices(device, message):
    with pytest.raises(ScalerError, match=message):
        resolve_device(device)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": -4}, "batch size"),
    ({"lr": float("nan")}, "learning rate"),
    ({"resolution": 0}, "resolution"),
    ({"resolution": 16}, "total stride"),
    ({"label_smoothing": 1.0}, "label smoothing"),
])
def test_bad_training_arguments(cifar, kwargs, message):
    with pytest.raises(ScalerError, match=message):
        train(TINY, cifar, device="cpu", **kwargs)


def run_cli(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_train_json(tmp_path, capsys):
    write_cifar(tmp_path)
    spec_file = tmp_path / "tiny.json"
    scaler.save_spec(TINY, spec_file)
    code, out, err = run_cli(capsys, "train", str(spec_file), "--data", f"cifar10:{tmp_path}", "--epochs", "2",
                             "--batch-size", "32", "--device", "cpu", "--json")
    assert code == 0
    result = json.loads(out)
    for key in ("top1", "top1_per_epoch", "val_loss", "val_loss_per_epoch", "images_per_second", "wall_seconds",
                "num_classes"):
        assert key in result
    assert len(result["top1_per_epoch"]) == 2 and result["num_classes"] == 10
    assert "ETA" in err and "img/s" in err  # progress on stderr, never in the JSON
    assert result["progressive"] == 0
    code, out, _ = run_cli(capsys, "train", str(spec_file), "--data", f"cifar10:{tmp_path}", "--epochs", "2",
                           "--batch-size", "32", "--device", "cpu")
    assert code == 0 and f"validation loss {result['val_loss']:.4f}" in out.splitlines()[0]


@pytest.mark.parametrize("args, stages", [(["--progressive"], 4), (["--progressive", "2"], 2), ([], 0)])
def test_cli_train_progressive(tmp_path, capsys, args, stages):
    write_cifar(tmp_path)
    spec_file = scaler.save_spec(TINY, tmp_path / "tiny.json")
    code, out, err = run_cli(capsys, "train", str(spec_file), "--data", f"cifar10:{tmp_path}", "--epochs", "2",
                             "--batch-size", "32", "--device", "cpu", *args, "--json")
    assert code == 0, err
    assert json.loads(out)["progressive"] == stages


@pytest.mark.parametrize("args, message", [
    (["--data", "nope"], "unknown kind"),
    (["--data", "cifar10:/no/such/folder"], "is not a folder"),
    (["--device", "cuda:9"], "cuda:9"),
    (["--device", "gpu0"], "device"),
    (["--epochs", "0"], "epochs"),
    (["--batch-size", "x"], "--batch-size"),
    (["--progressive", "1"], "progressive: expected 0 (off) or at least 2 stages"),
    (["--progressive=-2"], "-2"),  # click reads a negative after an optional-value option as an option
    (["--progressive", "x"], "--progressive"),
])
def test_cli_train_bad_input_is_one_line(capsys, args, message):
    code, out, err = run_cli(capsys, "train", "resnet18", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in out + err


def test_cli_train_missing_cifar_file_is_one_line(tmp_path, capsys):
    path = write_cifar(tmp_path)
    (path / "test_batch").unlink()
    code, out, err = run_cli(capsys, "train", "resnet18", "--data", f"cifar10:{tmp_path}")
    assert code == 2 and err.strip().endswith("test_batch is missing")


def test_cli_training_failure_is_one_line_exit_1(tmp_path):
    """A non-finite loss (an absurd learning rate) is a failed run, not bad input: one line, exit status 1."""
    write_cifar(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "scaler", "train", "resnet18", "--data", f"cifar10:{tmp_path}", "--resolution", "32",
         "--epochs", "1", "--batch-size", "40", "--lr", "1e12", "--device", "cpu"],
        capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("scaler: training failed: loss became")
    assert "Traceback" not in result.stderr


def test_repeat_k_of_two_candidates_shares_data_order_augmentation_and_initial_weights(monkeypatch):
    """Common random numbers: the same seed gives two different candidates (here one deeper and at a larger
    resolution) the same random stream before every batch (order, crop and flip draws) and the same initial
    weights wherever their layers have the same shape, so that their scores are compared pair by pair."""
    import scaler.training as module

    streams, stems, original_crop, original_build = {}, {}, module.random_crop_flip, module.build_model

    def recorded_crop(images, generator, pad):
        streams.setdefault(images.shape[-1], []).append(generator.get_state().clone())
        return original_crop(images, generator, pad)

    def recorded_build(spec):
        model = original_build(spec)
        stems[spec.resolution] = [p.detach().clone() for p in model.features[:2].parameters()]
        return model

    monkeypatch.setattr(module, "random_crop_flip", recorded_crop)
    monkeypatch.setattr(module, "build_model", recorded_build)
    data = load_data("synthetic", 96, 32, 0, torch.device("cpu"))
    deeper = scaler.scale(TINY, depth=2.0, resolution=40)
    for network in (TINY, deeper):
        train(network, data, epochs=2, batch_size=32, device="cpu", seed=3)
    small, large = streams[32], streams[40]
    assert len(small) == len(large) == 6 and all(torch.equal(a, b) for a, b in zip(small, large))
    assert all(torch.equal(a, b) for a, b in zip(stems[32], stems[40]))  # stem and first block: same shapes
    train(TINY, data, epochs=1, batch_size=32, device="cpu", seed=4)
    assert not torch.equal(streams[32][-1], small[0])  # another seed, another stream
