"""Seeded label noise: rates, the three kinds, reproducibility and clear errors."""

import math

import pytest
import torch

from common.noise import KINDS, add_label_noise, noise_summary

N, C = 20_000, 10


def clean_labels(n=N, num_classes=C, seed=123):
    return torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed))


def within_sampling_error(observed, expected, n=N, sds=5):
    sd = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
    return abs(observed - expected) <= sds * sd + 1e-9


@pytest.mark.parametrize("num_classes", [10, 4])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("kind", KINDS)
def test_changed_fraction_matches_the_kind(kind, rate, num_classes):
    clean = clean_labels(num_classes=num_classes)
    noisy, changed = add_label_noise(clean, rate, kind, num_classes=num_classes, seed=1)
    # symmetric may redraw the true class, so only (C-1)/C of the chosen labels change
    expected = rate * (num_classes - 1) / num_classes if kind == "symmetric" else rate
    fraction = changed.float().mean().item()
    assert within_sampling_error(fraction, expected), (kind, rate, fraction, expected)
    assert noise_summary(clean, noisy)["rate"] == pytest.approx(fraction)


def test_the_report_setting_changes_about_27_percent():
    noisy, changed = add_label_noise(clean_labels(), 0.3, "symmetric", num_classes=10, seed=42)
    assert 0.26 < changed.float().mean() < 0.28


@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_exactly_where_labels_differ(kind):
    clean = clean_labels()
    noisy, changed = add_label_noise(clean, 0.4, kind, num_classes=C, seed=3)
    assert changed.dtype == torch.bool and changed.shape == clean.shape
    assert torch.equal(changed, noisy != clean)
    assert noisy.dtype == clean.dtype and noisy.shape == clean.shape
    assert noisy.min() >= 0 and noisy.max() < C


def test_pair_moves_changed_labels_to_the_next_class_and_keeps_the_rest():
    clean = clean_labels()
    noisy, changed = add_label_noise(clean, 0.3, "pair", num_classes=C, seed=0)
    assert torch.equal(noisy[changed], (clean[changed] + 1) % C)
    assert torch.equal(noisy[~changed], clean[~changed])
    assert ((clean == C - 1) & changed).any()  # the wrap-around happens: 9 -> 0
    assert (noisy[(clean == C - 1) & changed] == 0).all()


def test_exclusive_never_keeps_a_chosen_label_and_spreads_over_the_others():
    clean = clean_labels()
    noisy, changed = add_label_noise(clean, 1.0, "symmetric_exclusive", num_classes=C, seed=0)
    assert changed.all()  # every label was chosen and none kept its class
    # from class 0 the new labels spread evenly over 1..9
    targets = torch.bincount(noisy[clean == 0], minlength=C).float()
    assert targets[0] == 0
    share = targets[1:] / targets.sum()
    assert (share - 1 / (C - 1)).abs().max() < 0.03


def test_symmetric_draws_from_all_classes_including_the_true_one():
    clean = clean_labels()
    noisy, _ = add_label_noise(clean, 1.0, "symmetric", num_classes=C, seed=0)
    targets = torch.bincount(noisy[clean == 0], minlength=C).float()
    share = targets / targets.sum()
    assert (share - 1 / C).abs().max() < 0.03  # the true class too, about 1/C of the time


@pytest.mark.parametrize("kind", KINDS)
def test_reproducible_from_the_seed_and_independent_of_the_global_rng(kind):
    clean = clean_labels()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, mask_a = add_label_noise(clean, 0.3, kind, num_classes=C, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is neither used nor reseeded
    torch.manual_seed(999)
    b, mask_b = add_label_noise(clean, 0.3, kind, num_classes=C, seed=7)
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    c, _ = add_label_noise(clean, 0.3, kind, num_classes=C, seed=8)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_rate_zero_is_the_identity_and_a_copy(kind):
    clean = clean_labels(1000)
    noisy, changed = add_label_noise(clean, 0, kind, num_classes=C, seed=0)
    assert torch.equal(noisy, clean) and not changed.any() and changed.shape == clean.shape
    noisy[0] = (noisy[0] + 1) % C
    assert not torch.equal(noisy, clean)  # a copy: the caller's labels are untouched


def test_num_classes_defaults_to_the_largest_label_and_lists_are_accepted():
    noisy, changed = add_label_noise([0, 1, 2, 2, 1, 0] * 100, 1.0, "pair", seed=0)
    assert set(noisy.tolist()) == {0, 1, 2} and changed.all()


def test_input_int32_labels_keep_their_dtype():
    clean = clean_labels(500).to(torch.int32)
    noisy, _ = add_label_noise(clean, 0.5, "symmetric_exclusive", num_classes=C)
    assert noisy.dtype == torch.int32


@pytest.mark.parametrize("rate", [1.5, -0.1, float("nan"), "0.3", None, True])
def test_impossible_rate_is_refused_clearly(rate):
    with pytest.raises(ValueError) as err:
        add_label_noise(clean_labels(100), rate)
    assert "between 0 and 1" in str(err.value) and repr(rate) in str(err.value)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError) as err:
        add_label_noise(clean_labels(100), 0.3, kind="gaussian")
    assert "gaussian" in str(err.value)
    for kind in KINDS:
        assert kind in str(err.value)


@pytest.mark.parametrize("labels", [torch.rand(10), torch.zeros(4, 5, dtype=torch.int64),
                                    torch.ones(10, dtype=torch.bool), torch.tensor(3)])
def test_labels_must_be_one_dimensional_integers(labels):
    with pytest.raises(ValueError, match="1-D integer"):
        add_label_noise(labels, 0.3)


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match="num_classes"):
        add_label_noise(torch.tensor([0, 1, 12]), 0.3, num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        add_label_noise(torch.tensor([0, -1, 2]), 0.3, num_classes=10)


def test_noise_summary_counts_per_class():
    clean = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    noisy = torch.tensor([0, 1, 1, 0, 1, 1, 0, 1])
    summary = noise_summary(clean, noisy, num_classes=4)
    assert summary["n"] == 8 and summary["changed"] == 4 and summary["rate"] == 0.5
    assert summary["per_class"][:3] == [0.5, 0.0, 1.0] and math.isnan(summary["per_class"][3])
    with pytest.raises(ValueError, match="same length"):
        noise_summary(clean, noisy[:5])
