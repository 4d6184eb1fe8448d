"""Batched augmentation on the training device, with per-sample random parameters.

Every op takes float images N x 3 x H x W in [0, 1] and a torch.Generator on the same
device, so a whole batch is augmented in a few tensor ops and an epoch's randomness is
fixed by its seed (which makes resumed runs exact). That is also why these are written
here and not taken from kornia, whose random ops draw from torch's global RNG. Crop,
flip, translate and Cutout are plain indexing, faster and simpler than an affine warp;
nothing reads a value back to Python, so no op waits on the GPU.
"""

import inspect
import math

import torch
import torch.nn.functional as F

LEVEL_A_AUGMENT = ("crop=4", "flip", "translate=0.1", "jitter=0.4,0.4,0.4,0.1", "rotate=15", "cutout=8")


def shift(x, dy, dx, limit: int):
    """out[i, :, y, x] = x[i, :, y - dy[i], x - dx[i]], zero outside; needs |dy|, |dx| <= limit."""
    n, c, h, w = x.shape
    padded = F.pad(x, (limit, limit, limit, limit))
    wide = w + 2 * limit
    # one flat index per pixel, shifted per sample, then a single gather (about 4x faster on a
    # CPU than indexing rows and columns separately)
    ys = (torch.arange(h, device=x.device) + limit).view(h, 1)
    xs = torch.arange(w, device=x.device) + limit
    index = (ys * wide + xs).view(1, h * w) - (dy * wide + dx).view(n, 1)
    return padded.flatten(2).gather(2, index.unsqueeze(1).expand(n, c, h * w)).view(n, c, h, w)


def _per_sample(factor):
    return factor.view(-1, 1, 1, 1)


def grayscale(x):
    """N x 1 x H x W luma with torchvision's (ITU-R 601-2) weights, so contrast and saturation match it."""
    r, g, b = x.split(1, dim=1)
    return r * 0.2989 + g * 0.587 + b * 0.114


def blend(x, other, factor):
    """factor * x + (1 - factor) * other per sample, clamped to [0, 1] (torchvision's _blend)."""
    # gives x itself for a factor of exactly 1 (x * 1 + other * 0), which the random order relies on
    f = _per_sample(factor)
    return (x * f).add_(other * (1 - f)).clamp_(0, 1)


def adjust_brightness(x, factor):
    return (x * _per_sample(factor)).clamp_(0, 1)


def adjust_contrast(x, factor):
    return blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x, factor):
    return blend(x, grayscale(x), factor)


def rgb_to_hsv(x):
    """Hue, saturation and value of N x 3 x H x W RGB in [0, 1], each N x 1 x H x W in [0, 1]."""
    r, g, b = x.split(1, dim=1)
    value = x.amax(1, keepdim=True)
    chroma = value - x.amin(1, keepdim=True)
    c = chroma.clamp_min(1e-12)  # grey pixels: all differences below are exactly 0, so hue 0
    # 1 where the channel is the largest, else 0 ((value - channel) / c is in (0, 1] elsewhere): float
    # arithmetic is several times faster on a CPU than torch.where on per-pixel masks; ties give one hue
    is_r = 1 - ((value - r) / c).ceil_()
    is_g = (1 - ((value - g) / c).ceil_()) * (1 - is_r)
    # hue in sixths of the circle, measured from the largest channel
    sixths = (g - b) * is_r + (b - r + 2 * c) * is_g + (r - g + 4 * c) * (1 - is_r - is_g)
    hue = sixths / (6 * c)
    return hue - hue.floor(), chroma / value.clamp_min(1e-12), value


def hsv_to_rgb(hue, saturation, value):
    """N x 3 x H x W RGB from the three N x 1 x H x W parts; the inverse of rgb_to_hsv."""
    # the fully saturated colour is piecewise linear in 6 * hue: red is 1 below 1 and above 5, 0 from 2 to 4,
    # green and blue are tents centred on 2 and 4 (Python numbers: copying constants to a GPU waits for it)
    h6 = 6 * hue
    pure = torch.cat(((h6 - 3).abs_() - 1, 2 - (h6 - 2).abs_(), 2 - (h6 - 4).abs_()), 1).clamp_(0, 1)
    chroma = value * saturation  # V (1 - S (1 - pure)) = V - C + C pure, in one fused pass
    return torch.addcmul(value - chroma, chroma, pure).clamp_(0, 1)  # clamp: rounding


def adjust_hue(x, shift_by):
    """Rotate the hue by shift_by (a fraction of the circle, per sample), as torchvision does."""
    hue, saturation, value = rgb_to_hsv(x)
    hue = hue + _per_sample(shift_by)
    return hsv_to_rgb(hue - hue.floor(), saturation, value)


def rotate(x, degrees):
    """Rotate each image by its angle (counter-clockwise) about the centre; nearest, zero fill."""
    n, _, h, w = x.shape
    angle = torch.deg2rad(degrees.to(x.dtype))
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    # output pixel -> input pixel is the inverse rotation; affine_grid works in coordinates
    # normalised by half the width and height, hence the aspect ratios on the cross terms
    theta = torch.stack((cos, -sin * (h / w), zero, sin * (w / h), cos, zero), 1).view(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class RandomCrop:
    """torchvision's RandomCrop(size of the image, padding): a uniform integer shift in [-padding, padding]."""

    def __init__(self, padding: int = 4):
        _check(float(padding).is_integer() and padding >= 0,
               f"crop padding must be a whole number >= 0, not {padding}.")
        self.padding = int(padding)

    def __call__(self, x, gen):
        p = self.padding
        offsets = torch.randint(-p, p + 1, (2, len(x)), device=x.device, generator=gen)
        return shift(x, offsets[0], offsets[1], p)


class RandomFlip:
    """Horizontal flip with probability p, drawn per sample."""

    def __init__(self, p: float = 0.5):
        _check(0 <= p <= 1, f"flip probability must be in [0, 1], not {p}.")
        self.p = p

    def __call__(self, x, gen):
        flip = torch.rand(len(x), device=x.device, generator=gen) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


class RandomTranslate:
    """torchvision's RandomAffine(0, translate=(f, f)): integer shifts round(uniform(-f*W, f*W)), zero fill."""

    def __init__(self, fraction: float = 0.1):
        _check(0 <= fraction < 1, f"translate fraction must be in [0, 1), not {fraction}.")
        self.fraction = fraction

    def __call__(self, x, gen):
        n, _, h, w = x.shape
        max_dy, max_dx = self.fraction * h, self.fraction * w
        uniform = torch.rand(2, n, device=x.device, generator=gen) * 2 - 1
        dy = (uniform[0] * max_dy).round().long()
        dx = (uniform[1] * max_dx).round().long()
        return shift(x, dy, dx, int(max(max_dy, max_dx)) + 1)


class ColorJitter:
    """torchvision's ColorJitter(brightness, contrast, saturation, hue), the four in a random order per sample."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1):
        _check(min(brightness, contrast, saturation, hue) >= 0 and hue <= 0.5,
               f"jitter strengths must be >= 0 and hue <= 0.5, not {brightness}, {contrast}, {saturation}, {hue}.")
        # (op, lowest, highest factor); a zero strength leaves its op out, as torchvision does
        ranges = [(adjust_brightness, brightness), (adjust_contrast, contrast), (adjust_saturation, saturation)]
        self.ops = [(op, max(0.0, 1 - s), 1 + s) for op, s in ranges if s > 0]
        self.ops += [(adjust_hue, -hue, hue)] if hue > 0 else []

    def draw(self, n: int, gen, device=None, dtype=torch.float32):
        """Per-sample factors (k x n, one row per op kept) and order (n x k, op indices by step)."""
        k = len(self.ops)
        uniform = torch.rand(k, n, device=device, dtype=dtype, generator=gen)
        factors = torch.stack([low + (high - low) * u for (_, low, high), u in zip(self.ops, uniform)])
        return factors, torch.rand(n, k, device=device, generator=gen).argsort(1)

    def apply(self, x, factors, order):
        """The ops in each sample's own order with its own factors."""
        # every op runs on the whole batch at every step, each sample taking its factor only at its
        # op's step: k*k whole-batch ops, but no per-sample indexing and so nothing that syncs a GPU;
        # neutral factors and lerp by exactly 0 or 1 select exactly, several times faster than
        # torch.where on a CPU
        for step in range(len(self.ops)):
            for j, (op, _, _) in enumerate(self.ops):
                here = order[:, step] == j
                if op is adjust_hue:  # a shift of 0 is only nearly the identity, so keep x itself
                    x = torch.lerp(x, op(x, factors[j]), _per_sample(here.to(x.dtype)))
                else:  # a factor of 1 gives x itself
                    x = op(x, torch.where(here, factors[j], torch.ones_like(factors[j])))
        return x

    def __call__(self, x, gen):
        return self.apply(x, *self.draw(len(x), gen, x.device, x.dtype)) if self.ops else x


class RandomRotation:
    """torchvision's RandomRotation(degrees): an angle uniform in [-degrees, degrees], nearest, zero fill."""

    def __init__(self, degrees: float = 15):
        _check(degrees >= 0, f"rotate degrees must be >= 0, not {degrees}.")
        self.degrees = degrees

    def __call__(self, x, gen):
        uniform = torch.rand(len(x), device=x.device, generator=gen) * 2 - 1
        return rotate(x, uniform * self.degrees)


class Cutout:
    """One size x size hole per image, fully inside it, filled with 0 (before normalisation)."""

    def __init__(self, size: int = 8):
        _check(float(size).is_integer() and size >= 1, f"cutout size must be a whole number >= 1, not {size}.")
        self.size = int(size)

    def __call__(self, x, gen):
        n, _, h, w = x.shape
        top = torch.randint(0, h - self.size + 1, (n, 1, 1), device=x.device, generator=gen)
        left = torch.randint(0, w - self.size + 1, (n, 1, 1), device=x.device, generator=gen)
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        hole = (ys >= top) & (ys < top + self.size) & (xs >= left) & (xs < left + self.size)
        return x * (~hole).unsqueeze(1)


class Compose:
    """Apply ops in order."""

    def __init__(self, ops):
        self.ops = list(ops)

    def __call__(self, x, gen):
        for op in self.ops:
            x = op(x, gen)
        return x

    def __repr__(self):
        return f"Compose({[type(op).__name__ for op in self.ops]})"


OPS = {"crop": RandomCrop, "flip": RandomFlip, "translate": RandomTranslate, "jitter": ColorJitter,
       "rotate": RandomRotation, "cutout": Cutout}


def _usage() -> str:
    return ", ".join(f"{name}[={','.join(inspect.signature(cls).parameters)}]" for name, cls in OPS.items())


def build_augment(spec):
    """An op chain from a spec such as LEVEL_A_AUGMENT or ("flip", "translate=0.1"); None for none."""
    if not spec:
        return None
    ops = []
    for item in spec:
        name, equals, arg = str(item).partition("=")
        _check(name in OPS, f"Unknown augmentation {name!r} in {item!r}: known are {_usage()}.")
        try:
            args = [float(a) for a in arg.split(",")] if equals else []
        except ValueError:
            args = [math.nan]
        _check(all(map(math.isfinite, args)),
               f"Malformed augmentation {item!r}: write name or name=comma-separated numbers, one of {_usage()}.")
        params = inspect.signature(OPS[name]).parameters
        _check(len(args) <= len(params), f"Augmentation {item!r} has {len(args)} numbers but {name} takes at "
                                         f"most {len(params)} ({', '.join(params)}).")
        ops.append(OPS[name](*(int(a) if a.is_integer() else a for a in args)))
    return Compose(ops)


def normalize(x, mean, std):
    """(x - mean) / std per channel."""
    # filled on the device from Python numbers: copying a tensor there from the CPU waits for the GPU
    def column(values):
        return torch.stack([torch.full((), float(v), device=x.device, dtype=x.dtype) for v in values]).view(1, -1, 1, 1)
    return (x - column(mean)) / column(std)
