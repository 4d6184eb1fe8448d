"""The deterministic half of common.augment: per-sample shifts, colour adjustments (torchvision's), rotation and
blur of N x C x H x W batches, in batched ops that never read a value back to Python (none waits on a GPU)."""

import torch
import torch.nn.functional as F


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


def gaussian_blur(x, kernel: int, sigma):
    """Blur each image with its own sigma: torchvision's kernel x kernel Gaussian, reflect padding."""
    n, c, h, w = x.shape
    half = (kernel - 1) / 2
    taps = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    weights = torch.softmax(-0.5 * (taps / sigma.to(x.dtype).view(-1, 1)) ** 2, dim=1)  # n x kernel, sums to 1
    weights = weights.view(n, 1, kernel).expand(n, c, kernel).reshape(n * c, kernel)  # one per (sample, channel)
    pad = kernel // 2
    # the 2-D Gaussian is the outer product of two 1-D ones, so rows then columns over one padded copy is
    # exactly torchvision's 2-D conv; all samples at once as one depthwise conv with n * c groups
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect").reshape(1, n * c, h + 2 * pad, w + 2 * pad)
    rows = F.conv2d(padded, weights.view(n * c, 1, 1, kernel), groups=n * c)
    out = F.conv2d(rows, weights.view(n * c, 1, kernel, 1), groups=n * c)
    return out.view(n, c, h, w).clamp_(0, 1)  # clamp: rounding of weights that sum to 1
