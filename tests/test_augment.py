"""The Level A augmentation chain: crop, flip, translate, colour jitter, rotation, Cutout, and its spec."""

import colorsys
import math

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torchvision.transforms.v2 import functional as TF

from common.augment import (
    ColorJitter,
    Compose,
    Cutout,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslate,
    build_augment,
    normalize,
    op,
)
from common.imageops import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    hsv_to_rgb,
    rgb_to_hsv,
    rotate,
)
from common.loader import DeviceLoader
from common.recipes import LEVEL_A_AUGMENT

TV_OPS = {adjust_brightness: TF.adjust_brightness, adjust_contrast: TF.adjust_contrast,
          adjust_saturation: TF.adjust_saturation, adjust_hue: TF.adjust_hue}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n, h=32, w=32, seed=0):
    """Random colour images with some pixels at 0 and 1, so clamping matters."""
    return (torch.rand(n, 3, h, w, generator=gen(seed)) * 1.4 - 0.2).clamp(0, 1)


def shifted(image, dy, dx):
    """Independent reference: out[y, x] = in[y - dy, x - dx], zero where that falls outside."""
    h, w = image.shape[-2:]
    out = torch.zeros_like(image)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


# ----------------------------------------------------------------------------- the whole chain

def test_level_a_chain_keeps_shape_dtype_and_range():
    chain = build_augment(LEVEL_A_AUGMENT)
    x = torch.cat([images(60), torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32)])
    for dtype in (torch.float32, torch.float64):
        out = chain(x.to(dtype), gen(1))
        assert out.shape == x.shape and out.dtype == dtype
        assert out.min() >= 0 and out.max() <= 1
        assert not torch.equal(out, x.to(dtype))


def test_each_sample_gets_its_own_parameters():
    image = images(1, seed=3)
    batch = image.expand(64, -1, -1, -1).contiguous()
    for spec in (LEVEL_A_AUGMENT, (op("crop", padding=4),),
                 (op("jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),), (op("rotate", degrees=15),)):
        out = build_augment(spec)(batch, gen(2))
        distinct = torch.unique(out.flatten(1), dim=0)
        assert len(distinct) >= (60 if spec == LEVEL_A_AUGMENT or spec[0]["op"] == "jitter" else 30), spec


def test_same_seed_same_output_different_seed_different():
    chain = build_augment(LEVEL_A_AUGMENT)
    x = images(32)
    assert torch.equal(chain(x, gen(7)), chain(x, gen(7)))
    assert not torch.equal(chain(x, gen(7)), chain(x, gen(8)))


def count_torch_calls(fn, *args):
    """How many torch functions and tensor methods fn calls: a loop over samples would scale with N."""
    class Count(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn(*args)
    return Count.calls


@pytest.mark.parametrize("n", [1, 300])
def test_chain_runs_on_a_whole_batch_without_a_loop_over_samples(n):
    chain = build_augment(LEVEL_A_AUGMENT)
    out = chain(images(n), gen(0))
    assert out.shape == (n, 3, 32, 32) and 0 <= out.min() <= out.max() <= 1
    assert count_torch_calls(chain, images(n), gen(0)) == count_torch_calls(chain, images(2), gen(0))


def test_device_loader_with_level_a_augment():
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=gen(0))
    loader = DeviceLoader(x, torch.arange(40), 16, (0.5,) * 3, (0.5,) * 3, augment=build_augment(LEVEL_A_AUGMENT))
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    assert all(b[0].shape[1:] == (3, 32, 32) and b[0].abs().max() <= 1 for b in batches)


# ----------------------------------------------------------------------------- crop

def test_crop_shifts_by_an_integer_offset_within_padding_and_fills_zeros():
    n = 400
    dot = torch.zeros(n, 3, 32, 32)
    dot[:, :, 16, 16] = 1.0
    out = RandomCrop(4)(dot, gen(5))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.full((n,), 3.0))  # the dot is moved, never lost
    where = out[:, 0].flatten(1).argmax(1)
    dys, dxs = (where // 32 - 16).tolist(), (where % 32 - 16).tolist()
    assert set(dys) == set(range(-4, 5)) and set(dxs) == set(range(-4, 5))  # uniform over [-4, 4]
    # the offsets come from the generator alone, so the same seed moves real images the same way
    x = images(n, seed=6) + 0.01  # no zeros of their own
    out = RandomCrop(4)(x, gen(5))
    for i in range(0, n, 7):
        assert torch.equal(out[i], shifted(x[i], dys[i], dxs[i])), (i, dys[i], dxs[i])
    assert RandomCrop(0)(x, gen(5)).equal(x)


def test_translate_still_shifts_as_before():
    dot = torch.zeros(200, 3, 32, 32)
    dot[:, :, 16, 16] = 1.0
    where = RandomTranslate(0.1)(dot, gen(9))[:, 0].flatten(1).argmax(1)
    dys, dxs = where // 32 - 16, where % 32 - 16
    assert set(dys.tolist()) == set(range(-3, 4)) and set(dxs.tolist()) == set(range(-3, 4))


# ----------------------------------------------------------------------------- colour jitter

def colours():
    """Primaries, greys, black, white and random colours: every branch of the hue formula."""
    fixed = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0],
                          [1, 1, 1], [0.5, 0.5, 0.5], [0.2, 0.7, 0.7], [0.9, 0.9, 0.1], [0.3, 0.1, 0.3]])
    return torch.cat([fixed, torch.rand(500, 3, generator=gen(4))]).T.reshape(1, 3, 4, -1)


def test_hsv_matches_colorsys_and_round_trips():
    x = colours()
    hsv = rgb_to_hsv(x)
    assert all(part.shape == (1, 1, 4, 128) for part in hsv)
    for rgb, ours in list(zip(x[0].flatten(1).T.tolist(), torch.cat(hsv, 1)[0].flatten(1).T.tolist())):
        assert ours == pytest.approx(colorsys.rgb_to_hsv(*rgb), abs=1e-6), rgb
    assert min(part.min() for part in hsv) >= 0 and max(part.max() for part in hsv) <= 1
    assert torch.allclose(hsv_to_rgb(*hsv), x, atol=1e-6)
    assert torch.allclose(adjust_hue(x, torch.zeros(1)), x, atol=1e-6)


def test_a_third_hue_turn_maps_red_to_green_to_blue():
    rgb = torch.eye(3).view(3, 3, 1, 1)  # red, green, blue
    out = adjust_hue(rgb, torch.full((3,), 1 / 3))
    assert torch.allclose(out, rgb.roll(1, dims=1), atol=1e-6)  # red -> green, green -> blue, blue -> red
    assert torch.allclose(adjust_hue(rgb, torch.full((3,), -1 / 3)), rgb.roll(-1, dims=1), atol=1e-6)


@pytest.mark.parametrize("ours", list(TV_OPS), ids=lambda op: op.__name__)
def test_each_colour_op_matches_torchvision(ours):
    factors = [-0.5, -0.1, 0.03, 0.25, 0.5] if ours is adjust_hue else [0.0, 0.6, 0.93, 1.0, 1.4, 2.5]
    x = images(1, seed=1).expand(len(factors), -1, -1, -1)
    out = ours(x, torch.tensor(factors))
    for i, factor in enumerate(factors):
        assert torch.allclose(out[i], TV_OPS[ours](x[i], factor), atol=2e-6), factor


def test_jitter_with_zero_strengths_is_the_identity():
    x = images(16)
    assert torch.equal(ColorJitter(0, 0, 0, 0)(x, gen(0)), x)
    assert ColorJitter(0.4, 0, 0, 0).ops[0][0] is adjust_brightness and len(ColorJitter(0.4, 0, 0, 0).ops) == 1
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)
    neutral = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(4, 1).expand(4, 16)  # the factors that change nothing
    _, order = jitter.draw(16, gen(1))
    assert torch.allclose(jitter.apply(x, neutral, order), x, atol=1e-6)


def test_jitter_applies_the_four_ops_in_each_samples_own_random_order_as_torchvision():
    n = 200
    x = images(n, seed=2)
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)
    factors, order = jitter.draw(n, gen(3))
    assert torch.equal(jitter(x, gen(3)), jitter.apply(x, factors, order))  # __call__ draws just these
    assert len({tuple(o) for o in order.tolist()}) >= 20  # most of the 24 orders occur
    for j, (_, low, high) in enumerate(jitter.ops):
        assert low <= factors[j].min() and factors[j].max() <= high
        assert factors[j].max() - factors[j].min() > 0.8 * (high - low)
    out = jitter.apply(x, factors, order)
    for i in range(n):
        reference = x[i]
        for j in order[i].tolist():
            reference = TV_OPS[jitter.ops[j][0]](reference, float(factors[j, i]))
        assert torch.allclose(out[i], reference, atol=1e-5), (i, order[i].tolist())
    # the order matters on these images, so a single order for all would fail the check above
    one_order = jitter.apply(x, factors, torch.arange(4).repeat(n, 1))
    assert ((one_order - out).flatten(1).abs().amax(1) > 1e-3).sum() > n // 2


# ----------------------------------------------------------------------------- rotation

def test_rotate_by_0_is_identity_and_by_90_is_rot90_counter_clockwise():
    x = images(4, h=9, w=9)
    assert torch.equal(rotate(x, torch.zeros(4)), x)
    assert torch.equal(rotate(x, torch.full((4,), 90.0)), torch.rot90(x, 1, dims=(2, 3)))
    assert torch.equal(rotate(x, torch.full((4,), -90.0)), torch.rot90(x, -1, dims=(2, 3)))
    assert torch.equal(TF.rotate(x[0], 90.0), torch.rot90(x[0], 1, dims=(1, 2)))  # torchvision's direction


@pytest.mark.parametrize("h,w", [(32, 32), (20, 40)])
def test_rotate_matches_torchvision_per_sample(h, w):
    angles = [-15.0, -7.3, 3.0, 10.0, 14.9, 33.0]
    x = images(len(angles), h=h, w=w)
    out = rotate(x, torch.tensor(angles))
    for i, angle in enumerate(angles):
        reference = TF.rotate(x[i], angle)  # nearest, zero fill, about the centre
        assert (out[i] != reference).float().mean() < 0.01, angle  # at most a few rounding ties


def test_random_rotation_stays_within_its_degrees():
    n, size, radius = 300, 65, 28
    blob = torch.zeros(n, 3, size, size)
    blob[:, :, 32 - 1:32 + 2, 32 + radius - 1:32 + radius + 2] = 1.0  # right of the centre
    out = RandomRotation(15)(blob, gen(1))[:, 0]
    ys, xs = torch.meshgrid(torch.arange(size) - 32.0, torch.arange(size) - 32.0, indexing="ij")
    mass = out.sum(dim=(1, 2))
    angle = torch.rad2deg(torch.atan2(-(out * ys).sum(dim=(1, 2)) / mass, (out * xs).sum(dim=(1, 2)) / mass))
    assert angle.abs().max() <= 16.5  # 15 and a pixel's worth at this radius
    assert angle.max() > 12 and angle.min() < -12 and (angle > 0).float().mean() == pytest.approx(0.5, abs=0.1)
    assert torch.equal(RandomRotation(0)(blob, gen(1)), blob)


# ----------------------------------------------------------------------------- the spec

def test_build_augment_parses_the_level_a_spec():
    chain = build_augment(LEVEL_A_AUGMENT)
    assert isinstance(chain, Compose)
    assert [type(op) for op in chain.ops] == [RandomCrop, RandomFlip, RandomTranslate, ColorJitter,
                                              RandomRotation, Cutout]
    crop, flip, translate, jitter, rotation, cutout = chain.ops
    assert crop.padding == 4 and flip.p == 0.5 and translate.fraction == 0.1
    assert rotation.degrees == 15 and cutout.size == 8
    assert [op for op, _, _ in jitter.ops] == [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
    assert [bound for _, low, high in jitter.ops for bound in (low, high)] == pytest.approx(
        [0.6, 1.4, 0.6, 1.4, 0.6, 1.4, -0.1, 0.1])
    assert LEVEL_A_AUGMENT == (op("crop", padding=4), op("flip"), op("translate", fraction=0.1),
                               op("jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
                               op("rotate", degrees=15), op("cutout", size=8))


@pytest.mark.parametrize("name,params,words", [
    ("blur", {}, ["'blur'", "crop(padding)", "flip(p)", "translate", "jitter", "rotate", "cutout"]),
    ("jitter", {"strength": 0.4}, ["'jitter'", "no parameter strength", "brightness, contrast, saturation, hue"]),
    ("rotate", {"degrees": float("nan")}, ["'rotate'", "finite numbers"]),
    ("crop", {"padding": "4"}, ["'crop'", "finite numbers"]),
    ("crop", {"padding": 4.5}, ["crop padding", "whole number", "4.5"]),
    ("cutout", {"size": 0}, ["cutout size", ">= 1"]),
    ("rotate", {"degrees": -5}, ["rotate degrees", ">= 0"]),
    ("flip", {"p": 1.5}, ["flip probability", "[0, 1]"]),
    ("jitter", {"hue": 0.7}, ["hue <= 0.5"]),
])
def test_build_augment_rejects_bad_specs_with_one_clear_sentence(name, params, words):
    with pytest.raises(ValueError) as err:
        build_augment((op("flip"), {"op": name, **params}))
    message = str(err.value)
    assert "\n" not in message and message.endswith(".")
    for word in words:
        assert word in message, (word, message)


def test_a_recipe_step_writes_out_every_parameter():
    assert op("jitter", hue=0.05) == {"op": "jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4,
                                      "hue": 0.05}
    with pytest.raises(ValueError, match="no parameter size"):
        op("flip", size=3)


def test_build_augment_refuses_the_old_string_specs():
    with pytest.raises(ValueError, match="op\\(name, \\*\\*params\\)"):
        build_augment(("flip", "translate=0.1"))


def test_build_augment_reads_whole_numbers_as_ints():
    assert build_augment((op("crop", padding=2),)).ops[0].padding == 2
    assert isinstance(build_augment((op("cutout", size=8),)).ops[0].size, int)
    assert build_augment((op("flip", p=0.25),)).ops[0].p == 0.25 and build_augment(None) is None
    assert math.isclose(build_augment((op("jitter", brightness=0.2),)).ops[0].ops[0][1], 0.8)


# ----------------------------------------------------------------------------- on a GPU

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_chain_on_the_gpu_matches_the_cpu_and_never_waits_for_the_gpu():
    x, chain = images(64), build_augment(LEVEL_A_AUGMENT)
    jitter = chain.ops[3]
    factors, order = jitter.draw(64, gen(1))
    on_gpu = torch.Generator(device="cuda").manual_seed(0)
    xg, factors_g, order_g = x.cuda(), factors.cuda(), order.cuda()  # copies from the CPU wait: done first
    chain(xg, on_gpu)  # the first calls load kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # from here any op that waits for the GPU raises
    try:
        out = chain(xg, on_gpu)
        jittered = jitter.apply(xg, factors_g, order_g)
        rotated = rotate(xg, torch.linspace(-15, 15, 64, device="cuda"))
        normalized = normalize(xg, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.shape == x.shape and 0 <= out.min() <= out.max() <= 1
    assert torch.allclose(jittered.cpu(), jitter.apply(x, factors, order), atol=1e-5)
    assert (rotated.cpu() != rotate(x, torch.linspace(-15, 15, 64))).float().mean() < 0.01
    assert torch.allclose(normalized.cpu(), normalize(x, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
