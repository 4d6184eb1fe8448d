"""Learning-rate schedules, each declaring the unit it steps in (batch or epoch).

The report's scripts wrote warm-up, step decay and warm restarts in epochs and then stepped them every batch.
Here the trainer steps a schedule only at its unit, so that cannot happen by accident (`stepped_every` does it).
"""

from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler


@dataclass
class Schedule:
    """A torch scheduler and the unit the trainer must step it in."""
    scheduler: object
    unit: str  # "batch" or "epoch"


def _cyclic(opt, steps_per_epoch, epochs, base_lr, max_lr, step_size_up=None, up_fraction=None,
            mode="triangular2"):
    # the report's 3,900 steps are 26% of its 15,000: up_fraction keeps that shape at any length
    if step_size_up is None:
        step_size_up = max(1, round(up_fraction * steps_per_epoch * epochs))
    return lr_scheduler.CyclicLR(opt, base_lr=base_lr, max_lr=max_lr, step_size_up=int(step_size_up),
                                 mode=mode, cycle_momentum=False), "batch"


def _cosine(opt, steps_per_epoch, epochs, eta_min=0.0):
    return lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=eta_min), "epoch"


def _warmup_cosine(opt, steps_per_epoch, epochs, warmup=5, start_factor=0.01, eta_min=0.0, ramp=None):
    """`warmup` steps of linear warm-up from start_factor, reaching the full rate after `ramp` of them (default:
    all, so the rate is full only when the cosine starts), then cosine annealing over the rest."""
    warm = lr_scheduler.LinearLR(opt, start_factor=start_factor, end_factor=1.0, total_iters=ramp or warmup)
    cosine = lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs - warmup), eta_min=eta_min)
    return lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[warmup]), "epoch"


def _step(opt, steps_per_epoch, epochs, step_size=10, gamma=0.1):
    return lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma), "epoch"


def _cosine_restarts(opt, steps_per_epoch, epochs, T_0=10, T_mult=1, eta_min=0.0):
    return lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=T_0, T_mult=T_mult, eta_min=eta_min), "epoch"


def _constant(opt, steps_per_epoch, epochs):
    return lr_scheduler.LambdaLR(opt, lambda _: 1.0), "epoch"


SCHEDULES = {"cyclic": _cyclic, "cosine": _cosine, "warmup_cosine": _warmup_cosine,
             "step": _step, "cosine_restarts": _cosine_restarts, "constant": _constant}


def build_schedule(optimizer, spec: dict, steps_per_epoch: int, epochs: int) -> Schedule:
    """A Schedule from a spec like {"name": "step", "step_size": 10}; "stepped_every" overrides its unit (see above)."""
    spec = dict(spec or {"name": "constant"})
    name = spec.pop("name", None)
    stepped_every = spec.pop("stepped_every", None)
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}: known are {', '.join(SCHEDULES)}.")
    try:
        scheduler, unit = SCHEDULES[name](optimizer, steps_per_epoch, epochs, **spec)
    except TypeError as err:
        raise ValueError(f"Schedule {name!r}: {err}.") from None
    if stepped_every not in (None, "batch", "epoch"):
        raise ValueError(f"stepped_every must be 'batch' or 'epoch', not {stepped_every!r}.")
    return Schedule(scheduler, stepped_every or unit)


def lr_trace(spec: dict, steps_per_epoch: int, epochs: int, lr: float = 1e-3) -> list:
    """The learning rate used at every training step, as the trainer would step the schedule."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = build_schedule(opt, spec, steps_per_epoch, epochs)
    trace = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            trace.append(opt.param_groups[0]["lr"])
            opt.step()
            if schedule.unit == "batch":
                schedule.scheduler.step()
        if schedule.unit == "epoch":
            schedule.scheduler.step()
    return trace
