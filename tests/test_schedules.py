"""Learning-rate schedules: the report's CyclicLR, the epoch schedules and the per-batch bug."""

import math

import pytest
import torch
from torch.optim import lr_scheduler

from common.schedules import build_schedule, lr_trace

CYCLIC = {"name": "cyclic", "base_lr": 5e-5, "max_lr": 3e-3, "up_fraction": 0.26}


def torch_trace(make_scheduler, steps_per_epoch, epochs, unit, lr=1e-3):
    """The LR of every step with torch's own scheduler stepped once per `unit`."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(opt)
    trace = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            trace.append(opt.param_groups[0]["lr"])
            opt.step()
            if unit == "batch":
                scheduler.step()
        if unit == "epoch":
            scheduler.step()
    return trace


def triangular2(step, base, peak, up):
    """CyclicLR triangular2 written out: a triangle of half-period `up` whose height halves every cycle."""
    cycle = step // (2 * up)
    x = abs(step / up - 2 * cycle - 1)
    return base + (peak - base) * max(0.0, 1 - x) / 2 ** cycle


@pytest.fixture(scope="module")
def report_cyclic():
    return lr_trace(CYCLIC, steps_per_epoch=500, epochs=30)


def test_cyclic_matches_torch_cycliclr_stepped_every_batch(report_cyclic):
    expected = torch_trace(lambda opt: lr_scheduler.CyclicLR(
        opt, base_lr=5e-5, max_lr=3e-3, step_size_up=3900, mode="triangular2", cycle_momentum=False),
        500, 30, "batch")
    assert len(report_cyclic) == 15_000
    assert report_cyclic == pytest.approx(expected, rel=1e-12, abs=0)


def test_cyclic_has_the_reports_shape(report_cyclic):
    trace = report_cyclic
    assert trace[0] == pytest.approx(5e-5)
    assert max(trace) == pytest.approx(3e-3) and trace.index(max(trace)) == 3900
    assert trace[3900] == pytest.approx(3e-3)
    assert trace[7800] == pytest.approx(5e-5)
    assert trace[11_700] == pytest.approx(5e-5 + (3e-3 - 5e-5) / 2)  # about 1.5e-3
    assert trace[-1] == pytest.approx(2.8e-4, rel=0.02)  # "training stops at step 15,000 (LR about 2.8e-4)"
    for step in range(0, 15_000, 37):
        assert trace[step] == pytest.approx(triangular2(step, 5e-5, 3e-3, 3900), rel=1e-9, abs=1e-15)


def test_cyclic_up_fraction_scales_with_run_length():
    trace = lr_trace(CYCLIC, steps_per_epoch=10, epochs=5)  # 50 steps: up for round(13) steps
    assert trace.index(max(trace)) == 13 and max(trace) == pytest.approx(3e-3)
    explicit = lr_trace({**{k: v for k, v in CYCLIC.items() if k != "up_fraction"}, "step_size_up": 7}, 10, 5)
    assert explicit.index(max(explicit)) == 7


EPOCH_SCHEDULES = {
    "cosine": ({"name": "cosine"},
               lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=30),
               lambda e: 1e-3 * (1 + math.cos(math.pi * e / 30)) / 2),
    "warmup_cosine": ({"name": "warmup_cosine", "warmup": 5},
                      lambda opt: lr_scheduler.SequentialLR(opt, [
                          lr_scheduler.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=5),
                          lr_scheduler.CosineAnnealingLR(opt, T_max=25)], milestones=[5]),
                      lambda e: 1e-3 * (0.01 + 0.99 * e / 5) if e < 5
                      else 1e-3 * (1 + math.cos(math.pi * (e - 5) / 25)) / 2),
    "step": ({"name": "step", "step_size": 10, "gamma": 0.1},
             lambda opt: lr_scheduler.StepLR(opt, step_size=10, gamma=0.1),
             lambda e: 1e-3 * 0.1 ** (e // 10)),
    "cosine_restarts": ({"name": "cosine_restarts", "T_0": 10, "T_mult": 1},
                        lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=1),
                        lambda e: 1e-3 * (1 + math.cos(math.pi * (e % 10) / 10)) / 2),
}


@pytest.mark.parametrize("name", list(EPOCH_SCHEDULES))
def test_epoch_schedules_step_once_per_epoch_like_torch(name):
    spec, make, formula = EPOCH_SCHEDULES[name]
    steps, epochs = 7, 30
    trace = lr_trace(spec, steps, epochs, lr=1e-3)
    assert len(trace) == steps * epochs
    per_epoch = [trace[e * steps:(e + 1) * steps] for e in range(epochs)]
    assert all(len(set(lrs)) == 1 for lrs in per_epoch)  # constant within every epoch
    expected = torch_trace(make, steps, epochs, "epoch")
    assert trace == pytest.approx(expected, rel=1e-12, abs=1e-18)
    for e in range(epochs):  # and the closed form, epoch by epoch
        assert per_epoch[e][0] == pytest.approx(formula(e), rel=1e-9, abs=1e-15)


def test_epoch_schedules_declare_their_unit():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    assert build_schedule(opt, CYCLIC, 10, 3).unit == "batch"
    for name, (spec, _, _) in EPOCH_SCHEDULES.items():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
        assert build_schedule(opt, spec, 10, 30).unit == "epoch", name


def test_no_schedule_is_constant():
    assert lr_trace(None, 5, 4, lr=2e-3) == [2e-3] * 20
    assert lr_trace({"name": "constant"}, 5, 4, lr=2e-3) == [2e-3] * 20


def test_step_decay_stepped_every_batch_reproduces_the_reports_bug():
    trace = lr_trace({"name": "step", "step_size": 10, "gamma": 0.1, "stepped_every": "batch"}, 500, 1, lr=1e-3)
    assert trace[:10] == pytest.approx([1e-3] * 10)
    assert trace[10] == pytest.approx(1e-4)
    assert trace[20] == pytest.approx(1e-5)
    assert trace[499] < 1e-40  # learning has stopped inside the first epoch


def test_warm_restarts_stepped_every_batch_restart_every_ten_steps():
    trace = lr_trace({"name": "cosine_restarts", "T_0": 10, "stepped_every": "batch"}, 50, 1, lr=1e-3)
    assert trace[0] == trace[10] == trace[20] == pytest.approx(1e-3)
    assert trace[5] == pytest.approx(0.5e-3)


def test_warmup_stepped_every_batch_lasts_five_steps():
    trace = lr_trace({"name": "warmup_cosine", "warmup": 5, "stepped_every": "batch"}, 100, 1, lr=1e-3)
    assert trace[0] == pytest.approx(1e-5)
    assert trace[5] == pytest.approx(1e-3)
    assert trace[4] < trace[5]


def test_unknown_schedule_and_bad_options_are_refused():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    with pytest.raises(ValueError) as err:
        build_schedule(opt, {"name": "onecycle"}, 10, 3)
    assert "onecycle" in str(err.value)
    for known in ("cyclic", "cosine", "warmup_cosine", "step", "cosine_restarts"):
        assert known in str(err.value)
    with pytest.raises(ValueError, match="step"):
        build_schedule(opt, {"name": "step", "step_sise": 10}, 10, 3)
    with pytest.raises(ValueError, match="stepped_every"):
        build_schedule(opt, {"name": "step", "stepped_every": "week"}, 10, 3)


def test_table4_warmup_follows_the_reports_factors_then_cosine():
    from common.recipes import WARMUP_COSINE
    trace = lr_trace(WARMUP_COSINE, 1, 30, lr=1.0)  # one step an epoch: the rate each epoch trains with
    assert trace[:6] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert trace[17] == pytest.approx(0.5 * (1 + math.cos(math.pi * 12 / 25)))
