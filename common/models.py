"""Model registry: build_model(name, num_classes, **options) for every network of the report."""

import torch
from torch import nn
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models.convnext import CNBlockConfig, ConvNeXt, LayerNorm2d
from torchvision.ops import SqueezeExcitation

from .supcon import FrozenEncoderClassifier, MLPClassifier, ProjectionHead, SupConModel, encoder_features

MODELS = {}


def register(name):
    """Add a builder to the registry under `name`."""
    def add(builder):
        MODELS[name] = builder
        return builder
    return add


def build_model(name: str, num_classes: int = 10, **options) -> nn.Module:
    """Build a registered model; an unknown name lists the known ones."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}: known models are {', '.join(sorted(MODELS))}.")
    return MODELS[name](num_classes=num_classes, **options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_bn_relu(c_in, c_out, kernel=3, stride=1, padding=1, batchnorm=True):
    norm = [nn.BatchNorm2d(c_out)] if batchnorm else []
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding), *norm, nn.ReLU(inplace=True)]


@register("vgg_basic")
def vgg_basic(num_classes=10, head="fc", downsample="maxpool", blocks=(64, 64, "M", 128, 128, "M", 256, 256, "M"),
              batchnorm=True, dropout=0.5):
    """The report's basic VGG (Level E, about 1.3 M parameters): patchify stem, VGG blocks, FC head with dropout."""
    # the explorations' options: downsample="stride" strides the conv before each "M" instead of pooling;
    # head="gap" pools globally under a linear layer; batchnorm=False tests the report's claim (then at chance);
    # dropout=0 removes the head's dropout (an ablation)
    if head not in ("fc", "gap") or downsample not in ("maxpool", "stride"):
        raise ValueError(f"vgg_basic: head must be 'fc' or 'gap' (got {head!r}), "
                         f"downsample 'maxpool' or 'stride' (got {downsample!r}).")
    layers = conv_bn_relu(3, 64, kernel=2, stride=2, padding=0, batchnorm=batchnorm)
    channels = 64
    for i, item in enumerate(blocks):
        if item == "M":
            if downsample == "maxpool":
                layers.append(nn.MaxPool2d(2))
            continue
        stride = 2 if downsample == "stride" and i + 1 < len(blocks) and blocks[i + 1] == "M" else 1
        layers += conv_bn_relu(channels, item, stride=stride, batchnorm=batchnorm)
        channels = item
    if head == "fc":
        tail = [nn.Flatten(), nn.Linear(channels * 2 * 2, 128), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(128, num_classes)]
    else:
        tail = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers, *tail)


# Level A networks: torchvision's own building blocks, with the report's changes for 32x32 images.

@register("resnet18")
def resnet18(num_classes=10, dropout=0.5, stem="cifar"):
    """ResNet18 with the CIFAR stem and the report's head: dropout 0.5 + linear (torchvision: linear only)."""
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"resnet18: stem must be 'cifar' or 'imagenet' (got {stem!r}).")
    model = tv_resnet18(num_classes=num_classes)
    # a 3x3 stride-1 stem and no max-pool, so stage 1 runs at 32x32 (the ImageNet stem's 7x7 stride-2 conv +
    # max-pool, kept by stem="imagenet" to test the report's claim, shrinks a CIFAR image to 8x8 at once)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes))
    return model


@register("se_resnet18")
def se_resnet18(num_classes=10, dropout=0.5, reduction=16):
    """ResNet18 with Squeeze-and-Excitation (Hu et al. 2018) in every basic block, after its second BatchNorm and before
    the residual add; torchvision's SqueezeExcitation (1x1 convolutions) is the report's pair of linear layers."""
    model = resnet18(num_classes, dropout)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            channels = block.bn2.num_features
            # BasicBlock.forward runs bn2 right before adding the shortcut, so SE goes exactly there
            block.bn2 = nn.Sequential(block.bn2, SqueezeExcitation(channels, channels // reduction))
    return model


@register("convnext")
def convnext(num_classes=10, depths=(3, 3, 9, 3), widths=(96, 192, 384, 768), drop_path=0.15,
             layer_scale=1e-6):
    """ConvNeXt (Liu et al. 2022) as torchvision builds it, with the report's one change for 32x32 images."""
    stages = [CNBlockConfig(c, c_next, d) for c, c_next, d in zip(widths, (*widths[1:], None), depths)]
    model = ConvNeXt(stages, stochastic_depth_prob=drop_path, layer_scale=layer_scale, num_classes=num_classes)
    # the stem is a 3x3 stride-1 conv + LayerNorm instead of the 4x4 stride-4 patchify, so stage 1 runs at 32x32
    stem = nn.Sequential(nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1),
                         LayerNorm2d(widths[0], eps=1e-6))  # the eps torchvision uses for its stem
    nn.init.trunc_normal_(stem[0].weight, std=0.02)  # torchvision's init of every other conv
    nn.init.zeros_(stem[0].bias)
    model.features[0] = stem
    return model


@register("supcon_resnet18")
def supcon_resnet18(num_classes=100):
    """The ResNet18 encoder (512-d features, no classifier) under SupCon's projection head (512 -> 128)."""
    return SupConModel(encoder_features(resnet18(num_classes)), ProjectionHead())


@register("supcon_mlp")
def supcon_mlp(num_classes=100):
    """Stage 2 as the report ran it: an MLP classifier on the frozen SupCon encoder (weights: the run's `encoder`)."""
    return FrozenEncoderClassifier(supcon_resnet18().encoder, MLPClassifier(num_classes=num_classes))


@register("supcon_linear")
def supcon_linear(num_classes=100):
    """A linear classifier on the frozen SupCon encoder."""
    return FrozenEncoderClassifier(supcon_resnet18().encoder, nn.Linear(512, num_classes))


@register("resnet18_imagenet")
def resnet18_imagenet(num_classes=10):
    """torchvision's resnet18 unchanged (7x7 stride-2 stem + max-pool, linear head): the report's ImageNette model."""
    return tv_resnet18(num_classes=num_classes)


class ViT(nn.Module):
    """The report's Vision Transformer for 32x32 images, built from torch's pre-LayerNorm encoder layers.

    Patch 4 (a 4x4 stride-4 conv: 64 patches of width 256), a learnable CLS token and positional embedding
    (truncated normal, std 0.02), dropout 0.1 on the embeddings, 6 encoder layers (8 heads, MLP 1024, GELU, dropout
    0.1, LayerNorm first), a final LayerNorm and a linear head on the CLS token. torchvision's VisionTransformer has
    the same blocks but zero-initialises the CLS token and the head, so it is not used. The attention runs through
    torch's fused scaled-dot-product kernels (flash / memory-efficient on a GPU)."""

    def __init__(self, num_classes=100, image_size=32, patch=4, width=256, depth=6, heads=8, mlp=1024, dropout=0.1):
        super().__init__()
        self.patchify = nn.Conv2d(3, width, kernel_size=patch, stride=patch)
        patches = (image_size // patch) ** 2
        self.cls_token = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, 1, width), std=0.02))
        self.pos_embedding = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, patches + 1, width), std=0.02))
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(width, heads, mlp, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        # nested tensors only help with padding masks, which a fixed 64-patch image never has
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        tokens = self.patchify(x).flatten(2).transpose(1, 2)  # N x 64 x width, patches in row-major order
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embedding
        return self.head(self.encoder(self.dropout(tokens))[:, 0])


@register("vit")
def vit(num_classes=100, **options):
    """The report's ViT (about 4.8 M parameters at 100 classes)."""
    return ViT(num_classes, **options)
