"""The report's ViT: shapes, parameter count, gradients to its tokens, and attention over every patch."""

import pytest
import torch

from common import recipes
from common.models import build_model, count_parameters


@pytest.mark.parametrize("classes", [10, 100])
def test_vit_output_shape_and_parameter_count(classes):
    model = build_model("vit", classes).eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, classes)
    width, mlp, layers = 256, 1024, 6
    per_layer = (3 * width * width + 3 * width) + (width * width + width) + 2 * 2 * width \
        + (width * mlp + mlp) + (mlp * width + width)
    expected = (3 * 16 * width + width) + width + 65 * width + layers * per_layer + 2 * width \
        + width * classes + classes
    assert count_parameters(model) == expected


def test_cls_token_and_position_embedding_receive_gradients():
    model = build_model("vit", 100)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert model.cls_token.grad.abs().sum() > 0
    assert (model.pos_embedding.grad.abs().sum(-1) > 0).all()  # every position, CLS included


def test_attention_masks_nothing_every_patch_reaches_the_cls_output():
    torch.manual_seed(0)
    model = build_model("vit", 10).eval()
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    model(x)[0, 3].backward()
    per_patch = x.grad.abs().sum(1)[0].view(8, 4, 8, 4).sum((1, 3))  # 8 x 8 patches of 4 x 4 pixels
    assert (per_patch > 0).all()


def test_vit_is_initialised_as_the_report_says():
    torch.manual_seed(0)
    model = build_model("vit", 100)
    for tensor in (model.cls_token, model.pos_embedding):  # trunc_normal_(std=0.02), as the report's code
        assert tensor.abs().max() < 0.12 and 0.015 < tensor.std() < 0.025 and tensor.abs().sum() > 0
    layer = model.encoder.layers[0]
    assert layer.norm_first and layer.self_attn.num_heads == 8 and layer.linear1.out_features == 1024
    assert len(model.encoder.layers) == 6 and model.patchify.stride == (4, 4)


def test_vit_recipe_is_the_reports():
    cfg = recipes.level_a("vit", "cifar100")
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.num_classes) == ("adamw", 1e-4, 5e-4, 100, 100)
    assert cfg.schedule == {"name": "cosine"} and cfg.val_size == 500 and cfg.label_smoothing == 0.1
