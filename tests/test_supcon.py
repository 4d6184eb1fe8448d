"""Supervised contrastive pretraining: the loss, the heads, and the two views' augmentation ops."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from common.augment import (
    ColorJitter,
    Compose,
    Cutout,
    GaussianBlur,
    RandomApply,
    RandomColorJitter,
    RandomFlip,
    RandomGrayscale,
    RandomResizedCrop,
    build_augment,
)
from common.imageops import gaussian_blur
from common.models import build_model
from common.recipes import SUPCON_VIEW1, SUPCON_VIEW2
from common.supcon import MLPClassifier, ProjectionHead, SupConModel, encoder_features, supcon_loss, supcon_loss_fp32

from test_augment import count_torch_calls  # the same no-loop-over-samples check as the Level A chain


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n, h=32, w=32, seed=0):
    """Random colour images with some pixels at 0 and 1."""
    return (torch.rand(n, 3, h, w, generator=gen(seed)) * 1.4 - 0.2).clamp(0, 1)


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=gen(seed)), dim=-1)


def two_views(b=12, d=16, classes=4, seed=0):
    """Two views' projections (B x D each) and B labels with repeated classes."""
    labels = torch.randint(0, classes, (b,), generator=gen(seed + 100))
    return unit(b, d, seed=seed), unit(b, d, seed=seed + 1), labels


# ----------------------------------------------------------------------------- the loss

def reference_loss(views, labels, temperature, base_temperature, include_self):
    """Slow, direct SupCon out: a list of (vector, label) anchors, Python loops, float64 math."""
    rows = [(v[i].double(), int(labels[i])) for v in views for i in range(len(labels))]
    total, anchors = 0.0, 0
    for a, (za, ya) in enumerate(rows):
        positives = [p for p, (_, yp) in enumerate(rows) if p != a and yp == ya]
        if not positives:  # Khosla et al.'s SupConLoss (mask_pos_pairs guard): adds 0 and still counts
            anchors += 1
            continue
        denominator = sum(math.exp(float(za @ zk) / temperature) for k, (zk, _) in enumerate(rows)
                          if k != a or include_self)
        terms = [float(za @ rows[p][0]) / temperature - math.log(denominator) for p in positives]
        total += -(temperature / base_temperature) * sum(terms) / len(terms)
        anchors += 1
    return total / anchors if anchors else 0.0


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("temperature,base", [(0.07, 0.07), (0.5, 0.07), (0.1, 1.0)])
def test_loss_matches_a_direct_reference(include_self, temperature, base):
    z1, z2, labels = two_views()
    ours = supcon_loss(torch.cat([z1, z2]), labels, temperature, base, include_self=include_self)
    assert float(ours) == pytest.approx(reference_loss([z1, z2], labels, temperature, base, include_self),
                                        rel=1e-5, abs=1e-5)


def test_the_two_variants_differ_and_self_in_the_denominator_raises_the_loss():
    z1, z2, labels = two_views()
    out = supcon_loss(torch.cat([z1, z2]), labels)
    with_self = supcon_loss(torch.cat([z1, z2]), labels, include_self=True)
    assert with_self > out + 1e-3  # exp(1 / T) added to every denominator


def test_loss_is_stable_at_a_tiny_temperature():
    # exp(1 / 0.004) overflows float32: only the row-max subtraction keeps this finite
    z1, z2, labels = two_views(b=8, d=4, classes=3, seed=5)
    for include_self in (False, True):
        ours = supcon_loss(torch.cat([z1, z2]), labels, 0.004, 0.07, include_self)
        assert torch.isfinite(ours)
        with torch.no_grad():  # the reference in float64 with the max taken out by hand
            rows = torch.cat([z1, z2]).double()
            lab = labels.repeat(2)
            logits = rows @ rows.T / 0.004
            n = len(rows)
            expected, count = 0.0, 0
            for a in range(n):
                keep = [k for k in range(n) if k != a or include_self]
                top = max(float(logits[a, k]) for k in keep)
                log_den = top + math.log(sum(math.exp(float(logits[a, k]) - top) for k in keep))
                pos = [p for p in range(n) if p != a and lab[p] == lab[a]]
                expected += -(0.004 / 0.07) * sum(float(logits[a, p]) - log_den for p in pos) / len(pos)
                count += 1
        assert float(ours) == pytest.approx(expected / count, rel=1e-4)


def test_loss_is_invariant_to_permuting_the_batch_and_swapping_views():
    z1, z2, labels = two_views(b=16, seed=2)
    perm = torch.randperm(16, generator=gen(3))
    for include_self in (False, True):
        base = supcon_loss(torch.cat([z1, z2]), labels, include_self=include_self)
        permuted = supcon_loss(torch.cat([z1[perm], z2[perm]]), labels[perm], include_self=include_self)
        swapped = supcon_loss(torch.cat([z2, z1]), labels, include_self=include_self)
        assert torch.allclose(base, permuted, atol=1e-6) and torch.allclose(base, swapped, atol=1e-6)
    # but permuting the labels alone changes it: the rows really are paired with their labels
    other = supcon_loss(torch.cat([z1, z2]), labels[perm])
    assert not torch.allclose(base, other, atol=1e-4)


def test_gradient_reaches_the_features():
    z1, z2, labels = two_views()
    raw = torch.cat([z1, z2]).clone().requires_grad_(True)
    supcon_loss(F.normalize(raw, dim=1), labels).backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    assert (raw.grad.norm(dim=1) > 0).all()  # every row, anchor or key, gets a gradient


def test_loss_falls_when_classes_cluster():
    b, d, classes = 32, 32, 4
    labels = torch.arange(b) % classes
    centres = unit(classes, d, seed=7)
    clustered = [F.normalize(centres[labels] + 0.1 * torch.randn(b, d, generator=gen(s)), dim=1) for s in (1, 2)]
    scattered = [unit(b, d, seed=s) for s in (3, 4)]
    for include_self in (False, True):
        tight = supcon_loss(torch.cat(clustered), labels, include_self=include_self)
        loose = supcon_loss(torch.cat(scattered), labels, include_self=include_self)
        assert tight < loose - 1.0, (tight, loose)


def test_a_label_seen_once_still_gives_the_reference_loss():
    z1, z2, _ = two_views(b=6)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # class 2 once: its only positive is its other view
    for include_self in (False, True):
        ours = supcon_loss(torch.cat([z1, z2]), labels, include_self=include_self)
        assert torch.isfinite(ours)
        assert float(ours) == pytest.approx(reference_loss([z1, z2], labels, 0.07, 0.07, include_self), rel=1e-5)


def test_anchors_without_a_positive_count_as_zero_in_the_mean_and_none_gives_zero_with_a_gradient():
    z = unit(6, 8, seed=4)
    labels = torch.tensor([0, 0, 1, 2, 3, 3])  # one view: rows 2 and 3 have no positive
    ours = supcon_loss(z, labels)
    assert float(ours) == pytest.approx(reference_loss([z], labels, 0.07, 0.07, False), rel=1e-5)
    # as HobbitLong/SupContrast's SupConLoss computes it: a positive count below 1e-6 becomes 1, then the mean
    # over every anchor, so the two without a positive add 0 and still count
    logits = z.double() @ z.double().T / 0.07
    itself = torch.eye(6, dtype=torch.bool)
    log_prob = logits - logits.masked_fill(itself, float("-inf")).logsumexp(1, keepdim=True)
    positive = ((labels.view(-1, 1) == labels.view(1, -1)) & ~itself).double()
    pairs = positive.sum(1)
    pairs = torch.where(pairs < 1e-6, torch.ones_like(pairs), pairs)
    assert float(ours) == pytest.approx(float(-((positive * log_prob).sum(1) / pairs).mean()), rel=1e-5)
    raw = z.clone().requires_grad_(True)
    none = supcon_loss(F.normalize(raw, dim=1), torch.arange(6))
    assert float(none.detach()) == 0.0 and none.requires_grad
    none.backward()
    assert torch.isfinite(raw.grad).all()


def test_loss_rejects_rows_that_are_not_whole_views():
    with pytest.raises(ValueError, match="whole number of views"):
        supcon_loss(unit(7, 4), torch.zeros(3, dtype=torch.long))


def test_loss_under_bf16_autocast_is_computed_in_fp32():
    # a recipe-sized batch: two views of 256 images, 128-d projections, T = 0.07
    z1, z2, labels = two_views(b=256, d=128, classes=100, seed=7)
    features = torch.cat([z1, z2]).requires_grad_(True)
    fp32 = supcon_loss(features, labels)
    expected_grad, = torch.autograd.grad(fp32, features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = supcon_loss(features, labels)
        naive = supcon_loss_fp32(features, labels)  # the same math with autocast left on: its matmul runs in bf16
    grad, = torch.autograd.grad(ours, features)
    assert ours.dtype == torch.float32 and ours.item() == pytest.approx(fp32.item(), abs=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)
    assert abs(naive.item() - fp32.item()) > 1e-4


# ----------------------------------------------------------------------------- the heads

def test_projection_head_gives_unit_vectors_of_128():
    head = ProjectionHead()
    out = head(torch.randn(10, 512, generator=gen(0)) * 5)
    assert out.shape == (10, 128) and torch.allclose(out.norm(dim=1), torch.ones(10), atol=1e-5)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 128)]
    assert linears[1].bias is None and any(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())


def test_resnet18_encoder_gives_512_features_and_the_model_unit_projections():
    encoder = encoder_features(build_model("resnet18", num_classes=100))
    model = SupConModel(encoder, ProjectionHead()).eval()
    x = images(2)
    with torch.no_grad():
        features, projections = model.features(x), model(x)
    assert features.shape == (2, 512) and projections.shape == (2, 128)
    assert torch.allclose(projections.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="fc"):
        encoder_features(build_model("vgg_basic"))


def test_mlp_classifier_shape_and_layers():
    clf = MLPClassifier()
    assert clf(torch.randn(5, 512, generator=gen(0))).shape == (5, 100)
    assert [type(m).__name__ for m in clf] == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert clf[3].p == 0.3 and MLPClassifier(num_classes=10).eval()(torch.randn(3, 512)).shape == (3, 10)


# ----------------------------------------------------------------------------- the two views

def test_the_two_view_specs_parse_to_the_recipe():
    one, two = build_augment(SUPCON_VIEW1), build_augment(SUPCON_VIEW2)
    assert [type(op) for op in one.ops] == [RandomResizedCrop, RandomFlip, RandomColorJitter, RandomGrayscale,
                                            GaussianBlur]
    assert [type(op) for op in two.ops] == [RandomResizedCrop, RandomFlip, RandomColorJitter, RandomGrayscale, Cutout]
    assert one.ops[0].scale == (0.08, 1) and two.ops[0].scale == (0.2, 1)
    assert one.ops[0].ratio == pytest.approx((3 / 4, 4 / 3))
    for chain, strength, gray in ((one, (0.8, 0.8, 0.8, 0.2), 0.2), (two, (0.4, 0.4, 0.4, 0.1), 0.1)):
        jitter = chain.ops[2]
        assert jitter.p == 0.8 and isinstance(jitter.op, ColorJitter)
        assert [high - 1 for _, _, high in jitter.op.ops[:3]] == pytest.approx(strength[:3])
        assert jitter.op.ops[3][2] == pytest.approx(strength[3]) and chain.ops[3].p == gray
    assert one.ops[4].kernel == 3 and one.ops[4].sigma == (0.1, 2) and two.ops[4].size == 8


def test_the_two_views_of_a_batch_differ_and_stay_in_range():
    x = torch.cat([images(62), torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)])
    g = gen(0)
    v1, v2 = build_augment(SUPCON_VIEW1)(x, g), build_augment(SUPCON_VIEW2)(x, g)
    for v in (v1, v2):
        assert v.shape == x.shape and v.dtype == x.dtype and 0 <= v.min() and v.max() <= 1
    differ = (v1 - v2).flatten(1).abs().amax(1) > 1e-3
    assert differ[:62].all()  # the blank images may coincide
    # the same spec with the same seed is reproducible, with another seed not
    assert torch.equal(build_augment(SUPCON_VIEW1)(x, gen(4)), build_augment(SUPCON_VIEW1)(x, gen(4)))
    assert not torch.equal(build_augment(SUPCON_VIEW1)(x, gen(4)), build_augment(SUPCON_VIEW1)(x, gen(5)))
    assert build_augment(SUPCON_VIEW1)(x.double(), gen(1)).dtype == torch.float64


@pytest.mark.parametrize("spec", [SUPCON_VIEW1, SUPCON_VIEW2])
def test_views_run_on_a_whole_batch_without_a_loop_over_samples(spec):
    chain = build_augment(spec)
    assert count_torch_calls(chain, images(300), gen(0)) == count_torch_calls(chain, images(2), gen(0))


@pytest.mark.parametrize("name,params,words", [
    ("resized_crop", {"scale_low": 0.5, "scale_high": 0.2}, ["resized_crop scale", "0.5, 0.2"]),
    ("resized_crop", {"scale_low": 0.2, "scale_high": 1, "ratio_low": 2, "ratio_high": 1}, ["resized_crop ratio"]),
    ("grayscale", {"p": 1.5}, ["grayscale probability", "[0, 1]"]),
    ("gaussian_blur", {"kernel": 4}, ["gaussian_blur kernel", "odd"]),
    ("gaussian_blur", {"kernel": 3, "sigma_low": 0, "sigma_high": 2}, ["gaussian_blur sigma"]),
    ("jitter_p", {"p": 1.5}, ["jitter_p probability"]),
    ("jitter_p", {"q": 3}, ["no parameter q", "p, brightness, contrast, saturation, hue"]),
])
def test_new_ops_reject_bad_specs_with_one_clear_sentence(name, params, words):
    with pytest.raises(ValueError) as err:
        build_augment(({"op": "flip", "p": 0.5}, {"op": name, **params}))
    message = str(err.value)
    assert "\n" not in message and message.endswith(".")
    for word in words:
        assert word in message, (word, message)


# ----------------------------------------------------------------------------- resized crop

@pytest.mark.parametrize("h,w", [(32, 32), (20, 40)])
def test_resized_crop_of_the_whole_image_is_the_identity(h, w):
    x = images(8, h=h, w=w)
    out = RandomResizedCrop(1, 1, w / h, w / h)(x, gen(0))
    assert torch.allclose(out, x, atol=1e-5)


def test_resized_crop_matches_torchvision_on_the_drawn_boxes():
    x = images(40, h=32, w=24, seed=3)
    crop = RandomResizedCrop(0.08, 1)
    boxes = crop.draw(40, 32, 24, gen(1))
    out = crop.apply(x, *boxes)
    assert len({tuple(b) for b in torch.stack(boxes, 1).tolist()}) > 30
    for i, (top, left, bh, bw) in enumerate(torch.stack(boxes, 1).tolist()):
        assert 0 <= top <= 32 - bh and 0 <= left <= 24 - bw and bh >= 1 and bw >= 1
        reference = TF.resized_crop(x[i], top, left, bh, bw, [32, 24], antialias=False)
        assert torch.allclose(out[i], reference, atol=1e-5), (top, left, bh, bw)
        # the default antialias only matters when shrinking, and a box is never larger than the image
        assert torch.allclose(reference, TF.resized_crop(x[i], top, left, bh, bw, [32, 24]), atol=1e-5)


@pytest.mark.parametrize("scale,ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.4, 0.8), (2.0, 3.0))])
def test_resized_crop_draws_boxes_as_torchvision_does(scale, ratio):
    n = 3000
    top, left, bh, bw = (v.double() for v in RandomResizedCrop(*scale, *ratio).draw(n, 32, 32, gen(2)))
    image = torch.zeros(3, 32, 32)
    with torch.random.fork_rng():  # torchvision draws from the global generator: leave it as it was
        torch.manual_seed(0)
        theirs = torch.tensor([T.RandomResizedCrop.get_params(image, list(scale), list(ratio))
                               for _ in range(n)]).double()
    for ours, their in zip((top, left, bh, bw), theirs.T):
        assert float(ours.mean()) == pytest.approx(float(their.mean()), abs=0.5)
        assert float(ours.std()) == pytest.approx(float(their.std()), rel=0.08, abs=0.3)
    area = bh * bw / 1024
    assert area.min() >= scale[0] * 0.8 and area.max() <= 1
    # the centre crop fallback (32 wide, 16 high, at row 8 for ratios 2 to 3) as often as torchvision's
    centre = ((bh == 16) & (bw == 32) & (top == 8)).double().mean()
    their_centre = ((theirs[:, 2] == 16) & (theirs[:, 3] == 32) & (theirs[:, 0] == 8)).double().mean()
    assert float(centre) == pytest.approx(float(their_centre), abs=0.03)
    if ratio[0] >= 2:  # about 0.9 ** 10 of the samples find no box in 10 tries
        assert 0.2 < centre < 0.6


def test_resized_crop_area_is_uniform_in_scale_and_aspect_log_uniform_in_ratio():
    # a large image, so rounding the box to whole pixels hardly moves its area or aspect
    top, left, bh, bw = (v.double() for v in RandomResizedCrop(0.08, 0.5).draw(4000, 256, 256, gen(3)))
    area, log_aspect = bh * bw / 256 ** 2, (bw / bh).log()
    assert float(area.mean()) == pytest.approx(0.29, abs=0.01) and float(area.std()) == pytest.approx(
        0.42 / 12 ** 0.5, rel=0.05)
    # log-uniform in [3/4, 4/3] is symmetric about 0; uniform in the ratio itself would have mean 0.028
    assert abs(float(log_aspect.mean())) < 0.01
    assert float(log_aspect.std()) == pytest.approx(math.log(16 / 9) / 12 ** 0.5, rel=0.05)
    assert (top + bh).max() <= 256 and (left + bw).max() <= 256 and top.min() >= 0 and left.min() >= 0


def test_resized_crop_falls_back_to_a_centre_crop_when_no_box_fits():
    crop = RandomResizedCrop(1, 1, 2, 3)  # a whole-image box can't be 2 to 3 times wider than high
    top, left, bh, bw = crop.draw(50, 32, 32, gen(0))
    assert set(zip(top.tolist(), left.tolist(), bh.tolist(), bw.tolist())) == {(8, 0, 16, 32)}
    assert RandomResizedCrop(1, 1, 0.25, 0.3).centre_box(32, 32) == (0, 11, 32, 10)  # too wide: full height
    assert RandomResizedCrop(1, 1, 0.5, 0.75).centre_box(40, 20) == (0, 0, 40, 20)  # 20 / 40 is within range


# ----------------------------------------------------------------------------- grayscale, blur, apply with p

def test_grayscale_with_p_1_matches_torchvision_and_p_0_is_the_identity():
    x = images(6, seed=2)
    out = RandomGrayscale(1)(x, gen(0))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert torch.allclose(out, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-6)
    assert torch.equal(RandomGrayscale(0)(x, gen(0)), x)


def test_grayscale_picks_each_sample_with_probability_p():
    x = images(400, seed=3)
    out = RandomGrayscale(0.3)(x, gen(1))
    grey = (out[:, 0] == out[:, 2]).flatten(1).all(1)
    untouched = (out == x).flatten(1).all(1)
    assert (grey ^ untouched).all()  # each sample is either fully grey or exactly its input
    assert grey.float().mean() == pytest.approx(0.3, abs=0.06)


@pytest.mark.parametrize("kernel", [3, 5])
def test_blur_matches_torchvision_for_each_samples_sigma(kernel):
    sigmas = [0.1, 0.5, 1.0, 1.7, 2.0]
    x = images(len(sigmas), h=12, w=10, seed=4)
    out = gaussian_blur(x, kernel, torch.tensor(sigmas))
    for i, sigma in enumerate(sigmas):
        reference = TF.gaussian_blur(x[i], [kernel, kernel], [sigma, sigma])
        assert torch.allclose(out[i], reference, atol=1e-6), sigma
    assert not torch.allclose(out[1], out[3], atol=1e-3)  # sigmas really are per sample


def test_random_blur_draws_sigma_in_its_range():
    x = images(200, seed=5)
    out = GaussianBlur(3, 0.1, 2.0)(x, gen(0))
    assert torch.allclose(GaussianBlur(3, 0.8, 0.8)(x, gen(0)), gaussian_blur(x, 3, torch.full((200,), 0.8)))
    # blur strength per sample lies between the weakest and strongest sigma's
    weakest = (gaussian_blur(x, 3, torch.full((200,), 0.1)) - x).flatten(1).norm(dim=1)
    strongest = (gaussian_blur(x, 3, torch.full((200,), 2.0)) - x).flatten(1).norm(dim=1)
    ours = (out - x).flatten(1).norm(dim=1)
    assert (ours >= weakest - 1e-4).all() and (ours <= strongest + 1e-4).all()
    assert (ours > (weakest + strongest) / 2).float().mean() > 0.3  # spread over the range, not stuck low


def test_random_apply_keeps_each_sample_or_applies_the_op():
    x = images(400, seed=6)
    out = RandomColorJitter(0.8, 0.4, 0.4, 0.4, 0.1)(x, gen(2))
    untouched = (out == x).flatten(1).all(1)
    assert untouched.float().mean() == pytest.approx(0.2, abs=0.06)
    assert torch.equal(RandomApply(Compose([RandomGrayscale(1)]), 0)(x, gen(0)), x)
    always = RandomApply(RandomGrayscale(1), 1)(x, gen(0))
    assert torch.allclose(always, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-6)


# ----------------------------------------------------------------------------- on a GPU

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_views_and_loss_on_the_gpu_never_wait_for_it():
    x, (z1, z2, labels) = images(64).cuda(), two_views()
    features, labels = torch.cat([z1, z2]).cuda().requires_grad_(True), labels.cuda()
    views = build_augment(SUPCON_VIEW1), build_augment(SUPCON_VIEW2)
    on_gpu = torch.Generator(device="cuda").manual_seed(0)
    for view in views:  # the first calls load kernels
        view(x, on_gpu)
    supcon_loss(features, labels).backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # from here any op that waits for the GPU raises
    try:
        outs = [view(x, on_gpu) for view in views]
        losses = [supcon_loss(features, labels, include_self=flag) for flag in (False, True)]
        losses[0].backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(o.shape == x.shape and 0 <= o.min() <= o.max() <= 1 for o in outs)
    for flag, loss in zip((False, True), losses):
        assert float(loss) == pytest.approx(reference_loss([z1, z2], labels.cpu(), 0.07, 0.07, flag), rel=1e-4)


def test_stage_two_never_changes_the_frozen_encoder(tmp_path, monkeypatch):
    from common import contrastive, experiment, recipes

    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    pretrain = recipes.supcon_pretrain(profile="smoke", epochs=1).replace(synthetic_sizes=(64, 32), val_size=16,
                                                                          batch_size=24)
    result = experiment.run_experiment(pretrain, notebook="05_test", progress=False, allow_cpu=True)
    assert result.history["train_loss"].notna().all() and result.history["train_acc"].isna().all()
    before = {k: v.clone() for k, v in contrastive.load_encoder(pretrain).state_dict().items()}
    assert any("running_mean" in k for k in before)

    trained = {}
    build_for = experiment.build_for

    def build(cfg, device="cpu"):  # keep the model run_experiment trains, to read its encoder afterwards
        trained["model"] = build_for(cfg, device)
        return trained["model"]

    monkeypatch.setattr(experiment, "build_for", build)
    cfg = recipes.supcon_classifier(pretrain).replace(batch_size=24)
    row = experiment.run_experiment(cfg, notebook="05_test", progress=False, allow_cpu=True).row
    assert 0 <= row["test_acc_final"] <= 1
    after = trained["model"].encoder.state_dict()
    for key, value in before.items():  # weights, BatchNorm running statistics and their counters
        assert torch.equal(value, after[key].cpu()), key
    head = trained["model"].head.state_dict()
    assert not torch.equal(head["0.weight"], MLPClassifier(num_classes=100).state_dict()["0.weight"])


def test_linear_probe_learns_from_cached_features(tmp_path, monkeypatch):
    from common import contrastive, experiment, recipes

    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    pretrain = recipes.supcon_pretrain(profile="smoke", epochs=1).replace(synthetic_sizes=(64, 32), val_size=16,
                                                                          batch_size=24, num_classes=10)
    experiment.run_experiment(pretrain, notebook="05_test", progress=False, allow_cpu=True)
    row = contrastive.linear_probe(pretrain, notebook="05_test", epochs=30, allow_cpu=True)
    # even a barely trained encoder's features separate the synthetic classes above chance (0.1)
    assert row["test_acc_best"] > 0.3 and 1 <= row["best_epoch"] <= 30


def test_stage_two_without_a_pretrained_encoder_says_so(tmp_path, monkeypatch):
    from common import contrastive, recipes

    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    with pytest.raises(contrastive.EncoderMissing, match="run the pretraining"):
        contrastive.load_encoder(recipes.supcon_pretrain(profile="smoke"))


def test_two_view_loader_stacks_the_views_and_gives_labels_once():
    from common.loader import DeviceLoader

    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    loader = DeviceLoader(x, torch.arange(10), 4, (0.5,) * 3, (0.5,) * 3,
                          augment=build_augment((SUPCON_VIEW1, SUPCON_VIEW2)), shuffle=False)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3]
    assert not torch.allclose(images[:4], images[4:])  # view 1 and view 2 of the same four images


@pytest.mark.parametrize("loss", ["supcon", "supcon_with_self"])
def test_trainer_uses_the_configured_contrastive_loss(loss):
    from common import recipes
    from common.config import Execution
    from common.train import Trainer

    torch.manual_seed(0)
    cfg = recipes.supcon_pretrain(profile="smoke", loss=loss)
    model = build_model(cfg.model, cfg.num_classes)
    images, labels = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 0, 2])
    loss_value, counts, recorded = Trainer(model, cfg, 1, None, Execution()).loss(images, labels, None, epoch=1)
    expected = supcon_loss(model(images), labels, 0.07, include_self=loss == "supcon_with_self")
    torch.testing.assert_close(loss_value, expected)
    assert counts == {}  # no classes, so no accuracy


def test_supcon_recipes_are_the_reports():
    from common import recipes
    from common.config import IMAGENET_MEAN, IMAGENET_STD

    pre = recipes.supcon_pretrain()
    assert (pre.source, pre.num_classes, pre.val_size, pre.seed, pre.batch_size) == ("cifar100", 100, 500, 42, 256)
    assert (pre.mean, pre.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert pre.augment == (SUPCON_VIEW1, SUPCON_VIEW2) and (pre.loss, pre.temperature) == ("supcon", 0.07)
    assert (pre.optimizer, pre.lr, pre.weight_decay, pre.epochs) == ("adamw", 1e-3, 1e-4, 100)
    assert pre.schedule == {"name": "warmup_cosine", "warmup": 5, "start_factor": 0.01}
    assert recipes.supcon_pretrain(loss="supcon_with_self").run_id != pre.run_id
    cls = recipes.supcon_classifier(pre)
    assert (cls.experiment, cls.augment, cls.label_smoothing, cls.weight_decay, cls.epochs) == (
        "a_supcon", SUPCON_VIEW1, 0.1, 5e-4, 100)
    assert cls.encoder == f"{pre.run_id}@{pre.fingerprint()}"  # another encoder makes another run
    assert recipes.supcon_classifier(pre.replace(lr=2e-3)).fingerprint() != cls.fingerprint()
    with pytest.raises(ValueError, match="mlp .*or linear"):
        recipes.supcon_classifier(pre, head="transformer")


def test_the_two_pretraining_losses_give_their_stage_two_runs_their_own_ids():
    from common import contrastive, recipes

    khosla, report = recipes.supcon_pretrain(), recipes.supcon_pretrain(loss="supcon_with_self")
    for head in ("mlp", "linear"):  # one checkpoint folder and one results row per encoder, never shared
        ids = {recipes.supcon_classifier(pretrain, head).run_id for pretrain in (khosla, report)}
        assert len(ids) == 2
    assert recipes.supcon_classifier(khosla).experiment == "a_supcon"  # the report's row keeps its name
    assert recipes.supcon_classifier(report).experiment == "a_supcon_with_self"
    assert [contrastive.probe_experiment(p) for p in (khosla, report)] == ["a_supcon_linear_probe",
                                                                          "a_supcon_with_self_linear_probe"]
