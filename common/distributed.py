"""Data-parallel training under torchrun: the process group, this process's rank, and rank-0-only writes; each
function is a no-op in a plain single process, so the same code runs both ways."""

import contextlib
import gc
import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True once this process has joined a group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Only the main process (rank 0) writes checkpoints, results and figures."""
    return rank() == 0


def check_gpus(n: int, visible: int = None) -> int:
    """n, the data-parallel processes asked for, if every one can have a GPU of its own; else a ValueError."""
    visible = torch.cuda.device_count() if visible is None else visible
    if n < 1:
        raise ValueError(f"--gpus {n} asks for no process: give at least 1.")
    # NCCL refuses two processes on one GPU; without GPUs the processes share the CPU over gloo (as the tests do)
    if visible and n > visible:
        raise ValueError(f"--gpus {n} asks for {n} data-parallel processes but {visible} GPU(s) are visible, and "
                         f"each process needs a GPU of its own: use --gpus {visible} or fewer (or --parallel spread, "
                         "whose workers may share a GPU).")
    return n


def setup() -> torch.device:
    """Join torchrun's process group (NCCL on GPUs, gloo on a CPU) if launched by it; this process's device."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu")
    if torch.cuda.is_available():
        if launched():  # before binding: a process without a GPU of its own would share one, which NCCL refuses
            check_gpus(int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ["WORLD_SIZE"]))
        torch.cuda.set_device(local % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    if launched() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """The main process runs the block first (a download, a cache, a corrupt checkpoint set aside), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def sum_across(values: dict) -> dict:
    """Each device tensor summed over every process, in one all-reduce (tensors of one dtype per call)."""
    if not active() or not values:
        return values
    keys = list(values)
    stacked = torch.stack([values[k].to(torch.float64) for k in keys])
    dist.all_reduce(stacked)
    return dict(zip(keys, stacked.unbind()))


def gather_batch(features: torch.Tensor, labels: torch.Tensor, sizes: list):
    """The whole batch from every process's share: (V * B, D) rows, views still stacked, with their gradient
    flowing back to each share; and the B labels. `sizes` gives each process's share of the batch."""
    from torch.distributed.nn.functional import all_gather  # deferred: torch builds without distributed lack it

    share = len(labels)
    views = len(features) // share
    most = max(sizes)  # all_gather wants equal shapes: pad each share to the largest, then cut the padding off
    # in fp32 whatever the caller's autocast: the gathered rows feed the contrastive loss, which needs fp32
    with torch.autocast(features.device.type, enabled=False):
        padded = torch.nn.functional.pad(features.float().view(views, share, -1), (0, 0, 0, most - share))
        gathered = all_gather(padded)
        label_parts = [torch.empty(most, dtype=labels.dtype, device=labels.device) for _ in sizes]
        dist.all_gather(label_parts, torch.nn.functional.pad(labels, (0, most - share)))
        features = torch.cat([part[:, :n] for part, n in zip(gathered, sizes)], 1).reshape(views * sum(sizes), -1)
    return features, torch.cat([part[:n] for part, n in zip(label_parts, sizes)])


def wrap(model: torch.nn.Module, sync_bn: bool = False) -> torch.nn.Module:
    """The module that trains: DistributedDataParallel over `model` when there are several processes."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel  # deferred, as all_gather above

    device = next(model.parameters()).device
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("Synchronised BatchNorm needs GPUs (torch's SyncBatchNorm has no CPU version): "
                             "leave sync_bn off for a CPU run.")
        # in place on the children, so the caller's model (and its state_dict keys) stays the same object
        for name, child in model.named_children():
            setattr(model, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shutdown() -> None:
    """Leave the process group once every process is done with it (one tearing it down early aborts another)."""
    if dist.is_available() and dist.is_initialized():
        # a DDP wrapper left in a reference cycle (e.g. a run resumed in the same process) holds the group's work
        # objects: freed only at interpreter exit, after the group, they abort the process (gloo's threads)
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
