"""Co-teaching: the small-loss selection, its crossing between the networks, the forget-rate schedule, and
that on noisy synthetic labels it keeps mostly clean samples."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common import recipes
from common.coteaching import CoTeachingPair, coteaching_step, forget_rate, small_loss_selection
from common.experiment import build_for, load_split, run_experiment


class LogitTable(nn.Module):
    """A 'network' whose logits for sample i are row i of a parameter: its per-sample losses are set by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits[x.long().view(-1)]


def hand_made_pair():
    labels = torch.zeros(6, dtype=torch.long)
    # the logit of class 0 sets each sample's loss: higher logit, smaller loss; the two networks rank differently
    net1 = LogitTable([[s, 0.0] for s in (5.0, 4.0, 3.0, 2.0, 1.0, 0.0)])  # net 1: sample 0 easiest
    net2 = LogitTable([[s, 0.0] for s in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)])  # net 2: sample 5 easiest
    return CoTeachingPair(net1, net2), torch.arange(6.0), labels


def test_selection_keeps_the_intended_count_of_smallest_losses():
    losses = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])
    assert small_loss_selection(losses, 2).tolist() == [1, 3]
    assert sorted(small_loss_selection(losses, 5).tolist()) == [0, 1, 2, 3, 4]


def test_each_network_is_updated_on_the_other_networks_picks():
    pair, x, labels = hand_made_pair()
    loss, _, picks1, picks2 = coteaching_step(pair, x, labels, rate=0.5)
    assert sorted(picks1.tolist()) == [0, 1, 2] and sorted(picks2.tolist()) == [3, 4, 5]
    loss.backward()
    rows1 = pair.net1.logits.grad.abs().sum(1).nonzero().view(-1).tolist()
    rows2 = pair.net2.logits.grad.abs().sum(1).nonzero().view(-1).tolist()
    assert rows1 == [3, 4, 5] and rows2 == [0, 1, 2]  # crossed: net 1 learns from net 2's picks
    per_sample1 = F.cross_entropy(pair.net1.logits.detach(), labels, reduction="none")
    per_sample2 = F.cross_entropy(pair.net2.logits.detach(), labels, reduction="none")
    assert loss.item() == pytest.approx(per_sample1[[3, 4, 5]].mean() + per_sample2[[0, 1, 2]].mean())


def test_forget_rate_zero_trains_each_network_on_the_full_batch():
    pair, x, labels = hand_made_pair()
    loss, _, picks1, picks2 = coteaching_step(pair, x, labels, rate=0.0, label_smoothing=0.1)
    assert len(picks1) == len(picks2) == 6
    expected = sum(F.cross_entropy(net.logits, labels, label_smoothing=0.1) for net in (pair.net1, pair.net2))
    assert loss.item() == pytest.approx(expected.item())


def test_forget_rate_is_constant_or_ramps_linearly_over_the_first_epochs():
    assert [forget_rate(e, 0.3) for e in (1, 2, 30)] == [0.3, 0.3, 0.3]  # the report: from the first epoch
    ramp = [forget_rate(e, 0.4, ramp_epochs=10) for e in range(1, 13)]
    assert ramp[0] == 0 and ramp[5] == pytest.approx(0.2) and ramp[10:] == [0.4, 0.4]


def test_pair_evaluates_network_one_and_has_two_differently_initialised_networks():
    cfg = recipes.noisy_labels("cifar10", coteaching=True, profile="smoke").replace(model="vgg_basic")
    pair = build_for(cfg)
    assert isinstance(pair, CoTeachingPair)
    assert not torch.equal(pair.net1[0].weight, pair.net2[0].weight)
    x = torch.randn(2, 3, 32, 32)
    pair.eval()
    torch.testing.assert_close(pair(x), pair.net1(x))


def test_noise_touches_training_labels_only():
    clean = recipes.noisy_labels("cifar10", rate=0.0, profile="smoke")
    noisy = recipes.noisy_labels("cifar10", kind="pair", rate=0.45, profile="smoke")
    a, b = load_split(clean), load_split(noisy)
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.test_y, b.test_y)
    assert a.train_clean_y is None and torch.equal(b.train_clean_y, a.train_y)  # the true labels, as their own field
    changed = b.train_y != b.train_clean_y
    assert torch.equal(b.train_y[changed], (a.train_y[changed] + 1) % 10)
    assert 0.2 < changed.float().mean() < 0.7  # 45 % of 96 labels, within sampling error


def test_coteaching_keeps_mostly_clean_samples_on_noisy_synthetic_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    cfg = recipes.noisy_labels("cifar10", "symmetric", 0.4, coteaching=True, profile="smoke").replace(
        model="vgg_basic", synthetic_sizes=(1024, 128), val_size=64, batch_size=64, epochs=4, augment=())
    result = run_experiment(cfg, notebook="06_test", progress=False, allow_cpu=True)
    history, row = result.history, result.row
    assert 0.28 < row["noise_changed"] < 0.45  # 40 % drawn uniformly over 10 classes: about 36 % change
    clean_share = 1 - row["noise_changed"]
    # both networks' picks are far cleaner than the labels they are drawn from
    assert history["label_precision_1"].iloc[-1] > max(0.8, clean_share + 0.1)
    assert history["label_precision_2"].iloc[-1] > max(0.8, clean_share + 0.1)
    # and network 1 fits the true labels better than the noisy ones it was given
    assert history["train_acc_clean"].iloc[-1] > history["train_acc"].iloc[-1]


def random_pair(batch, seed=0):
    """A pair of logit tables over `batch` samples with random per-sample losses."""
    gen = torch.Generator().manual_seed(seed)
    nets = [LogitTable(torch.randn(batch, 3, generator=gen)) for _ in range(2)]
    return CoTeachingPair(*nets), torch.arange(float(batch)), torch.randint(0, 3, (batch,), generator=gen)


@pytest.mark.parametrize("batch,rate,kept", [(256, 0.45, 140), (256, 0.3, 179), (90, 0.3, 63), (10, 0.0, 10),
                                             (4, 0.99, 1)])
def test_each_network_keeps_the_floor_of_the_remembered_share_as_the_papers_code_does(batch, rate, kept):
    pair, x, labels = random_pair(batch)
    _, _, picks1, picks2 = coteaching_step(pair, x, labels, rate=rate)
    assert len(picks1) == len(picks2) == kept


def test_the_recorded_loss_is_the_mean_of_the_two_networks_and_the_backward_loss_their_sum():
    pair, x, labels = hand_made_pair()
    step = coteaching_step(pair, x, labels, rate=0.5)
    per_sample1 = F.cross_entropy(pair.net1.logits.detach(), labels, reduction="none")
    per_sample2 = F.cross_entropy(pair.net2.logits.detach(), labels, reduction="none")
    loss1, loss2 = per_sample1[[3, 4, 5]].mean(), per_sample2[[0, 1, 2]].mean()
    assert step.loss.item() == pytest.approx((loss1 + loss2).item())  # each network's gradient is its own loss's
    assert step.per_network_loss.item() == pytest.approx(((loss1 + loss2) / 2).item())
    assert not step.per_network_loss.requires_grad
