"""Model registry: build_model(name, num_classes, **options) for every network of the report."""

import torch
from torch import nn

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


def conv_bn_relu(c_in, c_out, kernel=3, stride=1, padding=1):
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@register("vgg_basic")
def vgg_basic(num_classes=10, head="fc", downsample="maxpool", blocks=(64, 64, "M", 128, 128, "M", 256, 256, "M")):
    """The report's basic VGG network (Level E), about 1.3 M parameters.

    Patchify stem (2x2 stride-2 conv, 32 -> 16), VGG blocks of 3x3 conv + BN + ReLU with 2x2
    max-pools (16 -> 8 -> 4 -> 2), then an FC head 1024 -> 128 -> classes with dropout 0.5.
    Options of the explorations: downsample="stride" makes the conv before each "M" stride 2
    instead of pooling; head="gap" replaces the FC head with global average pooling + linear.
    """
    if head not in ("fc", "gap") or downsample not in ("maxpool", "stride"):
        raise ValueError(f"vgg_basic: head must be 'fc' or 'gap' (got {head!r}), "
                         f"downsample 'maxpool' or 'stride' (got {downsample!r}).")
    layers = conv_bn_relu(3, 64, kernel=2, stride=2, padding=0)
    channels = 64
    for i, item in enumerate(blocks):
        if item == "M":
            if downsample == "maxpool":
                layers.append(nn.MaxPool2d(2))
            continue
        stride = 2 if downsample == "stride" and i + 1 < len(blocks) and blocks[i + 1] == "M" else 1
        layers += conv_bn_relu(channels, item, stride=stride)
        channels = item
    if head == "fc":
        tail = [nn.Flatten(), nn.Linear(channels * 2 * 2, 128), nn.ReLU(inplace=True),
                nn.Dropout(0.5), nn.Linear(128, num_classes)]
    else:
        tail = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers, *tail)
