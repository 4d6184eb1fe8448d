"""Batched augmentation on the training device, with per-sample random parameters.

Every op takes float images N x 3 x H x W in [0, 1] and a torch.Generator on the same device, so a whole batch
is augmented in a few tensor ops and an epoch's randomness is fixed by its seed (which makes resumed runs exact;
kornia's random ops draw from torch's global RNG instead). Crop, flip, translate and Cutout are plain indexing,
faster and simpler than an affine warp; nothing reads a value back to Python, so no op waits on the GPU.
"""

import inspect
import math

import torch
import torch.nn.functional as F

from .imageops import (
    _per_sample,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    grayscale,
    rotate,
    shift,
)


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


class RandomResizedCrop:
    """torchvision's RandomResizedCrop(size of the image, scale, ratio): a random box resized back, bilinear."""

    tries = 10  # torchvision's attempts before it falls back to a centre crop

    def __init__(self, scale_low: float = 0.08, scale_high: float = 1.0, ratio_low: float = 3 / 4,
                 ratio_high: float = 4 / 3):
        _check(0 < scale_low <= scale_high <= 1,
               f"resized_crop scale must satisfy 0 < low <= high <= 1, not {scale_low}, {scale_high}.")
        _check(0 < ratio_low <= ratio_high,
               f"resized_crop ratio must satisfy 0 < low <= high, not {ratio_low}, {ratio_high}.")
        self.scale, self.ratio = (scale_low, scale_high), (ratio_low, ratio_high)

    def centre_box(self, h: int, w: int):
        """torchvision's fallback: the largest centred box whose aspect ratio is within range."""
        if w / h < self.ratio[0]:
            bh, bw = int(round(w / self.ratio[0])), w
        elif w / h > self.ratio[1]:
            bh, bw = h, int(round(h * self.ratio[1]))
        else:
            bh, bw = h, w
        return (h - bh) // 2, (w - bw) // 2, bh, bw

    def draw(self, n: int, h: int, w: int, gen, device=None):
        """Per-sample boxes (top, left, height, width), four int64 tensors of n, drawn as torchvision does."""
        # all tries at once for every sample, then each sample's first box that fits, as torchvision's loop
        (s_low, s_high), (r_low, r_high) = self.scale, self.ratio
        area = h * w * (s_low + (s_high - s_low) * torch.rand(n, self.tries, device=device, generator=gen))
        log_low, log_high = math.log(r_low), math.log(r_high)
        aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(n, self.tries, device=device, generator=gen))
        bw, bh = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
        fits = (bw >= 1) & (bw <= w) & (bh >= 1) & (bh <= h)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)  # argmax returns the first of equal maxima
        found = fits.any(1)
        c_top, c_left, c_h, c_w = self.centre_box(h, w)
        bh = torch.where(found, bh.gather(1, first).squeeze(1), c_h)
        bw = torch.where(found, bw.gather(1, first).squeeze(1), c_w)
        # uniform integer offsets; the minimum guards against float rounding of u * range up to range itself
        u = torch.rand(2, n, device=device, generator=gen)
        top = torch.where(found, (u[0] * (h - bh + 1)).floor().minimum(h - bh), c_top)
        left = torch.where(found, (u[1] * (w - bw + 1)).floor().minimum(w - bw), c_left)
        return top.long(), left.long(), bh.long(), bw.long()

    @staticmethod
    def apply(x, top, left, bh, bw):
        """Crop each box and resize it to the image size, bilinear (torchvision's resized_crop)."""
        n, _, h, w = x.shape
        top, left, bh, bw = (v.to(x.dtype) for v in (top, left, bh, bw))
        zero = torch.zeros_like(top)
        # output pixel centres map linearly onto the box, in affine_grid's coordinates (-1 and 1 at the image's
        # outer edges, align_corners=False)
        theta = torch.stack((bw / w, zero, (2 * left + bw) / w - 1, zero, bh / h, (2 * top + bh) / h - 1), 1)
        grid = F.affine_grid(theta.view(n, 2, 3), list(x.shape), align_corners=False)
        # torchvision crops first, so its resize never reads outside the box: clamp to the box's edge pixel centres
        low = torch.stack(((2 * left + 1) / w - 1, (2 * top + 1) / h - 1), 1).view(n, 1, 1, 2)
        high = torch.stack(((2 * (left + bw) - 1) / w - 1, (2 * (top + bh) - 1) / h - 1), 1).view(n, 1, 1, 2)
        grid = torch.maximum(torch.minimum(grid, high), low)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.clamp_(0, 1)  # clamp: rounding of the bilinear weights

    def __call__(self, x, gen):
        return self.apply(x, *self.draw(len(x), x.shape[2], x.shape[3], gen, x.device))


class RandomGrayscale:
    """torchvision's RandomGrayscale(p): the luma in all three channels, with probability p per sample."""

    def __init__(self, p: float = 0.1):
        _check(0 <= p <= 1, f"grayscale probability must be in [0, 1], not {p}.")
        self.p = p

    def __call__(self, x, gen):
        pick = torch.rand(len(x), device=x.device, generator=gen) < self.p
        return torch.where(pick.view(-1, 1, 1, 1), grayscale(x), x)


class GaussianBlur:
    """torchvision's GaussianBlur(kernel, sigma=(low, high)): sigma uniform in [low, high] per sample."""

    def __init__(self, kernel: int = 3, sigma_low: float = 0.1, sigma_high: float = 2.0):
        _check(float(kernel).is_integer() and kernel >= 1 and kernel % 2 == 1,
               f"gaussian_blur kernel must be an odd whole number >= 1, not {kernel}.")
        _check(0 < sigma_low <= sigma_high,
               f"gaussian_blur sigma must satisfy 0 < low <= high, not {sigma_low}, {sigma_high}.")
        self.kernel, self.sigma = int(kernel), (sigma_low, sigma_high)

    def __call__(self, x, gen):
        low, high = self.sigma
        return gaussian_blur(x, self.kernel, low + (high - low) * torch.rand(len(x), device=x.device, generator=gen))


class RandomApply:
    """Apply op with probability p, drawn per sample (torchvision's RandomApply([op], p), but per sample)."""

    def __init__(self, op, p: float = 0.5):
        _check(0 <= p <= 1, f"apply probability must be in [0, 1], not {p}.")
        self.op, self.p = op, p

    def __call__(self, x, gen):
        pick = torch.rand(len(x), device=x.device, generator=gen) < self.p
        # the op runs on the whole batch: selecting the picked samples first would read their count back
        return torch.where(pick.view(-1, 1, 1, 1), self.op(x, gen), x)


class RandomColorJitter(RandomApply):
    """ColorJitter(brightness, contrast, saturation, hue) applied with probability p per sample (SimCLR's)."""

    def __init__(self, p: float = 0.8, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1):
        _check(0 <= p <= 1, f"jitter_p probability must be in [0, 1], not {p}.")
        super().__init__(ColorJitter(brightness, contrast, saturation, hue), p)


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


class Views:
    """Several augmented views of one batch, stacked view by view: [view 1 of all images; view 2; ...]."""

    def __init__(self, chains):
        self.chains = list(chains)

    def __call__(self, x, gen):
        return torch.cat([chain(x, gen) if chain else x for chain in self.chains])

    def __repr__(self):
        return f"Views({self.chains})"


OPS = {"crop": RandomCrop, "flip": RandomFlip, "translate": RandomTranslate, "jitter": ColorJitter,
       "rotate": RandomRotation, "cutout": Cutout, "resized_crop": RandomResizedCrop, "grayscale": RandomGrayscale,
       "gaussian_blur": GaussianBlur, "jitter_p": RandomColorJitter}


def op(name: str, **params) -> dict:
    """One augmentation step of a recipe, by name with keyword parameters: op("translate", fraction=0.1)."""
    if name not in OPS:
        usage = ", ".join(f"{known}({', '.join(inspect.signature(cls).parameters)})" for known, cls in OPS.items())
        raise ValueError(f"Unknown augmentation {name!r}: known are {usage}.")
    known = inspect.signature(OPS[name]).parameters
    unknown = [key for key in params if key not in known]
    _check(not unknown, f"Augmentation {name!r} has no parameter {', '.join(unknown)}: it takes {', '.join(known)}.")
    _check(all(isinstance(v, (int, float)) and math.isfinite(v) for v in params.values()),
           f"Augmentation {name!r} takes finite numbers, not {params}.")
    # every parameter is written out, so a recipe (and its fingerprint) never depends on a default here
    return {"op": name, **{key: p.default for key, p in known.items()}, **params}


def build_augment(spec):
    """An op chain from a sequence of op(...) steps, Views from a sequence of such sequences; None for none."""
    if not spec:
        return None
    if all(isinstance(item, (list, tuple)) for item in spec):
        return Views(build_augment(view) for view in spec)
    _check(all(isinstance(item, dict) and "op" in item for item in spec),
           f"Augmentation {spec!r} is not a sequence of steps: write each as op(name, **params), e.g. "
           "op('translate', fraction=0.1).")
    chain = []
    for step in spec:
        params = {key: value for key, value in step.items() if key != "op"}
        op(step["op"], **params)  # the same checks as a recipe's own op() call
        chain.append(OPS[step["op"]](**params))
    return Compose(chain)


def normalize(x, mean, std):
    """(x - mean) / std per channel."""
    # filled on the device from Python numbers: copying a tensor there from the CPU waits for the GPU
    def column(values):
        return torch.stack([torch.full((), float(v), device=x.device, dtype=x.dtype) for v in values]).view(1, -1, 1, 1)
    return (x - column(mean)) / column(std)
