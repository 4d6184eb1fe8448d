"""Level A: the ResNet18 / SE-ResNet18 / ConvNeXt models and the shared recipe."""

import math

import pytest
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation, StochasticDepth

from common import paths, recipes, summary
from common.config import CIFAR10_MEAN, CIFAR10_STD
from common.models import build_model, count_parameters

LEVEL_A_MODELS = ["resnet18", "se_resnet18", "convnext"]


@pytest.mark.parametrize("name", LEVEL_A_MODELS)
@pytest.mark.parametrize("classes", [10, 100])
def test_output_shape_at_both_class_counts(name, classes):
    model = build_model(name, classes).eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, classes)


def test_resnet18_is_torchvisions_with_the_cifar_stem_and_dropout_head():
    from torchvision.models import resnet18

    model = build_model("resnet18", 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    assert isinstance(model.fc[0], nn.Dropout) and model.fc[0].p == 0.5
    # the only parameter difference from torchvision's resnet18 is the smaller stem kernel
    reference = count_parameters(resnet18(num_classes=10))
    assert count_parameters(model) == reference - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    # stage 1 keeps 32x32: the final feature map is 4x4, not the ImageNet stem's 1x1
    features = nn.Sequential(*list(model.children())[:-2])
    assert features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)


def test_se_resnet18_adds_one_se_module_per_block_with_reduction_16():
    plain, se = build_model("resnet18", 10), build_model("se_resnet18", 10)
    modules = [m for m in se.modules() if isinstance(m, SqueezeExcitation)]
    assert len(modules) == 8
    expected = sum(2 * c * (c // 16) + c // 16 + c for c in (64, 64, 128, 128, 256, 256, 512, 512))
    assert count_parameters(se) - count_parameters(plain) == expected


def test_se_module_rescales_each_channel_by_its_gate():
    se = build_model("se_resnet18", 10).layer1[0].bn2[1]
    with torch.no_grad():  # first layer silent, so each channel's gate is sigmoid(its second-layer bias)
        se.fc1.weight.zero_(), se.fc1.bias.zero_(), se.fc2.weight.zero_()
        se.fc2.bias.copy_(torch.linspace(-3, 3, 64))
    x = torch.arange(64.0).view(1, 64, 1, 1).expand(2, 64, 5, 5)
    expected = x * torch.sigmoid(torch.linspace(-3, 3, 64)).view(1, 64, 1, 1)
    torch.testing.assert_close(se(x), expected)


def test_se_sits_after_the_second_batchnorm_before_the_residual_add():
    block = build_model("se_resnet18", 10).layer1[0].eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        block.bn2[1].fc2.weight.zero_()
        block.bn2[1].fc2.bias.fill_(-50.0)  # gate 0: the residual branch vanishes, the shortcut stays
        torch.testing.assert_close(block(x), torch.relu(x))
        block.bn2[1].fc2.bias.fill_(50.0)  # gate 1: exactly the plain block
        plain = build_model("resnet18", 10).layer1[0].eval()
        plain.load_state_dict({k.replace("bn2.0.", "bn2."): v for k, v in block.state_dict().items()
                               if "bn2.1." not in k})
        torch.testing.assert_close(block(x), plain(x))


def test_convnext_drop_path_rates_rise_linearly_over_its_18_blocks():
    model = build_model("convnext", 10)
    rates = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    assert len(rates) == 18
    assert rates == pytest.approx(torch.linspace(0, 0.15, 18).tolist())


def test_convnext_has_the_32x32_stem_layer_scale_and_init():
    model = build_model("convnext", 100)
    stem = model.features[0][0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert 0.015 < stem.weight.std().item() < 0.025 and stem.bias.abs().max() == 0  # trunc-normal 0.02, zero bias
    scales = [m.layer_scale for m in model.modules() if hasattr(m, "layer_scale")]
    assert len(scales) == 18 and all(torch.all(s == 1e-6) for s in scales)
    assert model.features[1][0].block[0].weight.shape[-2:] == (7, 7)  # depthwise 7x7 at stage 1


def test_stochastic_depth_drops_blocks_in_training_only():
    torch.manual_seed(0)
    block = build_model("convnext", 10).features[7][2]  # the last block: drop rate 0.15
    with torch.no_grad():
        block.layer_scale.fill_(1.0)  # make the residual branch visible
    x = torch.randn(1, 768, 2, 2).expand(200, -1, -1, -1).contiguous()
    block.train()
    out = block(x)
    dropped = torch.isclose(out, x).flatten(1).all(1)  # a dropped block passes its input through
    assert 10 < dropped.sum() < 60  # about 15% of 200
    block.eval()
    out = block(x)
    assert not torch.isclose(out, x).flatten(1).all(1).any()
    torch.testing.assert_close(out, block(x))
    assert torch.allclose(out, out[:1].expand_as(out))


@pytest.mark.parametrize("name", LEVEL_A_MODELS)
def test_each_model_takes_a_training_step_on_cpu(name):
    torch.manual_seed(0)
    model = build_model(name, 10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]  # three steps on one batch fit it a little
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed == len(before)


def test_level_a_recipe_is_the_reports():
    cfg = recipes.level_a("convnext", "cifar100")
    assert (cfg.experiment, cfg.model, cfg.source, cfg.dataset) == ("a_convnext", "convnext", "cifar100", "cifar100")
    assert cfg.num_classes == 100 and cfg.val_size == 500 and cfg.seed == 42
    assert cfg.mean == CIFAR10_MEAN and cfg.std == CIFAR10_STD  # CIFAR-10 statistics for CIFAR-100 too
    assert cfg.augment == recipes.LEVEL_A_AUGMENT and cfg.label_smoothing == 0.1
    assert (cfg.batch_size, cfg.epochs, cfg.optimizer, cfg.lr, cfg.weight_decay) == (256, 50, "adamw", 1e-3, 0.05)
    assert cfg.schedule == {"name": "cosine"}
    resnet = recipes.level_a("resnet18", "cifar10")
    assert (resnet.num_classes, resnet.weight_decay) == (10, 5e-4)


def test_level_a_smoke_profile_keeps_a_small_validation_split():
    cfg = recipes.level_a("resnet18", "cifar100", profile="smoke")
    assert cfg.source == "synthetic" and cfg.dataset == "cifar100" and cfg.num_classes == 100
    assert 0 < cfg.val_size < cfg.synthetic_sizes[0] // 2
    # both stand-ins are synthetic data, yet they are different runs with their own checkpoints
    assert cfg.run_id != recipes.level_a("resnet18", "cifar10", profile="smoke").run_id


def test_level_a_rejects_unknown_names():
    with pytest.raises(ValueError, match="Unknown Level A model 'densenet'.*resnet18"):
        recipes.level_a("densenet")
    with pytest.raises(ValueError, match="cifar10 or cifar100"):
        recipes.level_a("resnet18", "imagenet")


def test_level_a_run_records_both_tests_and_its_training_throughput(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))  # its own checkpoints: never those of the notebooks' runs
    from common.experiment import run_experiment
    from common.results import read_results

    cfg = recipes.level_a("resnet18", "cifar100", profile="smoke").replace(
        synthetic_sizes=(160, 64), val_size=32, batch_size=32)
    result = run_experiment(cfg, notebook="03_test", progress=False, allow_cpu=True)
    row, history = result.row, result.history
    assert row["experiment"] == "a_resnet18" and row["dataset"] == "cifar100" and row["source"] == "synthetic"
    assert 1 <= row["best_epoch"] <= cfg.epochs and len(history) == cfg.epochs
    for key in ("test_acc_best", "test_acc_final"):
        assert 0 <= row[key] <= 1
    # throughput counts training time only: each epoch's training part is shorter than the whole epoch
    assert (history["train_seconds"] < history["seconds"]).all()
    expected = 128 * cfg.epochs / history["train_seconds"].sum()
    assert row["train_images_per_s"] == pytest.approx(expected, abs=0.051)  # recorded to 0.1 image/s
    recorded = read_results(paths.results_dir("smoke") / "03_test.csv")
    assert recorded["train_images_per_s"].iloc[0] == pytest.approx(row["train_images_per_s"])
    # the run fills its Table 1 cell (CIFAR-100) and no other
    table1 = summary.report_tables(summary.collect_results("smoke"))["Table 1"].set_index(["row", "dataset"])
    assert table1.loc[("Baseline ResNet18", "cifar100"), "ours (final)"] == f"{row['test_acc_final']:.4f}"
    assert table1.loc[("Baseline ResNet18", "cifar10"), "ours (final)"] == summary.NOT_RUN
