"""One training run of fit(), for tests/test_distributed.py: alone, or as one of torchrun's processes.

    python tests/scripts/ddp_fit.py OUT [--stop-after K] [--supcon]
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/scripts/ddp_fit.py OUT [--stop-after K]

Writes OUT/indices-<rank>.pt (the sample indices this process trained on, per epoch) and, from the main
process, OUT/final.pt (weights and history). With --stop-after K the run is first interrupted after K epochs and is
then resumed from its checkpoint by a fresh model, as an interrupted run would be. With --supcon the run
is supervised contrastive pretraining on two (identical) views, whose loss contrasts the whole batch.
"""

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for `common`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `helpers`

from common import distributed  # noqa: E402
from common.augment import build_augment  # noqa: E402
from common.config import RunConfig  # noqa: E402
from common.loader import DeviceLoader  # noqa: E402
from common.train import Loaders, fit  # noqa: E402

from helpers import fit_until  # noqa: E402

IMAGES, BATCH = 101, 16  # the last batch (5) splits unevenly: 3 + 2


class RecordingLoader(DeviceLoader):
    """A DeviceLoader that keeps the indices of every batch it served."""

    seen = {}

    def batch_indices(self, gen=None):
        batches = super().batch_indices(gen)
        self.seen[self.epoch] = torch.cat(batches).tolist()
        return batches


class Normalised(nn.Module):
    """Unit-length rows, as the SupCon projection head gives."""

    def forward(self, x):
        return nn.functional.normalize(x, dim=1)


def network(supcon=False):
    """No BatchNorm or dropout: statistics over a share of a batch would differ from the whole batch's."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4)]
    return nn.Sequential(*layers, *([Normalised()] if supcon else []))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("--supcon", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = distributed.setup()
    # exact fp32 on a GPU too (cuDNN would use TF32): the shares and the whole batch must round alike
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (IMAGES, 3, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 4, (IMAGES,), generator=gen)
    cfg = RunConfig(dataset="cifar10", mean=(0.5,) * 3, std=(0.5,) * 3, schedule={"name": "constant"},
                    experiment="ddp", model="tiny", source="synthetic", num_classes=4, epochs=3, batch_size=BATCH,
                    optimizer="sgd", lr=0.2, augment=(), precision="fp32", channels_last="off", seed=3,
                    loss="supcon" if args.supcon else "cross_entropy", temperature=0.5)
    views = build_augment(((), ())) if args.supcon else None  # two views, both the image itself
    loader = RecordingLoader(x, y, BATCH, (0.5,) * 3, (0.5,) * 3, device=device, seed=cfg.seed, augment=views,
                             rank=distributed.rank(), world_size=distributed.world_size())
    checkpoints = args.out / "checkpoints"
    if args.stop_after:
        fit_until(args.stop_after, network(args.supcon).to(device), Loaders(loader), cfg, checkpoints, progress=False)
        distributed.barrier()
    model = network(args.supcon).to(device)  # this process's GPU under NCCL, where its loader's batches are
    outcome = fit(model, Loaders(loader), cfg, checkpoints, progress=False)
    torch.save(RecordingLoader.seen, args.out / f"indices-{distributed.rank()}.pt")
    if distributed.is_main():
        weights = {k: v.cpu() for k, v in model.state_dict().items()}  # readable by the test, GPU or not
        torch.save({"model": weights, "history": outcome.history}, args.out / "final.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main()
