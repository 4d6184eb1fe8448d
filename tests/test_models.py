"""The model registry and the report's basic VGG network (Level E)."""

import pytest
import torch
from torch import nn

from common.models import MODELS, build_model, count_parameters


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: much faster for these small forward passes on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def conv_bn(c_in, c_out, k):
    """Parameters of a k x k conv with bias followed by BatchNorm (weight and bias)."""
    return c_in * c_out * k * k + c_out + 2 * c_out


def vgg_convs():
    # recipes.md, Level E: stem conv 3->64 kernel 2 + BN, then [64, 64, M, 128, 128, M, 256, 256, M] 3x3 + BN
    widths = [64, 64, 128, 128, 256, 256]
    total, c_in = conv_bn(3, 64, 2), 64
    for c_out in widths:
        total += conv_bn(c_in, c_out, 3)
        c_in = c_out
    return total


def test_basic_vgg_parameter_count_matches_the_report_architecture():
    fc_head = (1024 * 128 + 128) + (128 * 10 + 10)  # flatten 256x2x2 -> 128 -> 10
    expected = vgg_convs() + fc_head
    assert count_parameters(build_model("vgg_basic", 10)) == expected
    assert 1.25e6 < expected < 1.35e6  # "about 1.3 M parameters"


def test_basic_vgg_parameter_count_with_100_classes():
    expected = vgg_convs() + (1024 * 128 + 128) + (128 * 100 + 100)
    assert count_parameters(build_model("vgg_basic", 100)) == expected


def test_gap_head_has_no_hidden_layer():
    model = build_model("vgg_basic", 10, head="gap")
    assert count_parameters(model) == vgg_convs() + 256 * 10 + 10
    assert count_parameters(model) < count_parameters(build_model("vgg_basic", 10))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 10)]
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_fc_head_has_dropout_half():
    model = build_model("vgg_basic", 10)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == 0.5
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 128), (128, 10)]


def test_strided_variant_replaces_pooling_with_stride_two_convs():
    model = build_model("vgg_basic", 10, downsample="stride")
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    strides = [m.stride[0] for m in convs]
    # stem (k2 s2), then [64, 64/s2, 128, 128/s2, 256, 256/s2]
    assert strides == [2, 1, 2, 1, 2, 1, 2]
    assert count_parameters(model) == count_parameters(build_model("vgg_basic", 10))  # same weights


def test_maxpool_variant_has_three_pools():
    model = build_model("vgg_basic", 10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].kernel_size == (2, 2) and convs[0].stride == (2, 2)
    assert all(m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1) for m in convs[1:])


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("head", ["fc", "gap"])
@pytest.mark.parametrize("downsample", ["maxpool", "stride"])
def test_vgg_output_shapes(num_classes, head, downsample):
    torch.manual_seed(0)
    model = build_model("vgg_basic", num_classes, head=head, downsample=downsample)
    x = torch.randn(3, 3, 32, 32)
    model.train()
    assert model(x).shape == (3, num_classes)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, num_classes) and torch.isfinite(out).all()


def test_vgg_feature_map_before_the_head_is_256x2x2():
    model = build_model("vgg_basic", 10).eval()
    flatten = next(m for m in model.modules() if isinstance(m, nn.Flatten))
    shapes = []
    flatten.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(inp[0].shape)))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert shapes == [(2, 256, 2, 2)]


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        build_model("vgg_giant", 10)
    assert "vgg_giant" in str(err.value)
    assert "vgg_basic" in str(err.value)
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("options", [{"head": "mlp"}, {"downsample": "avgpool"}])
def test_vgg_rejects_unknown_options(options):
    with pytest.raises(ValueError) as err:
        build_model("vgg_basic", 10, **options)
    assert list(options.values())[0] in str(err.value)


def test_the_vgg_ablation_without_dropout_keeps_every_weight():
    plain, ablated = build_model("vgg_basic", 10), build_model("vgg_basic", 10, dropout=0.0)
    assert count_parameters(plain) == count_parameters(ablated)
    assert [m.p for m in ablated.modules() if isinstance(m, nn.Dropout)] == [0.0]


def test_resnet18_with_the_imagenet_stem_shrinks_a_cifar_image_before_its_first_stage():
    seen = {}
    for stem in ("cifar", "imagenet"):
        model = build_model("resnet18", 10, stem=stem).eval()
        model.layer1.register_forward_hook(lambda _m, _i, out, stem=stem: seen.__setitem__(stem, out.shape[-1]))
        model(torch.zeros(1, 3, 32, 32))
    assert seen == {"cifar": 32, "imagenet": 8}
    with pytest.raises(ValueError, match="stem must be 'cifar' or 'imagenet'"):
        build_model("resnet18", 10, stem="7x7")
