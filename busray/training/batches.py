"""Device-resident splits and batch construction without a DataLoader.

The decoded dataset is small (BUSI at 224²: ~40 MB of uint8), so each split is moved to the training
device once and batches are gathered by index there. Augmentation (``busray.data.augment_batch``) and
normalisation then run as batched tensor ops on the device: at the paper's batch of 24 a GPU step is
launch-bound, and per-sample CPU work in a DataLoader would starve it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch


@dataclass
class DeviceSplit:
    """One split of the dataset on the training device (uint8 images/masks, int64 labels)."""

    images: torch.Tensor  # (N, 1, S, S) uint8
    masks: torch.Tensor  # (N, 1, S, S) uint8 in {0, 1}
    labels: torch.Tensor  # (N,) int64
    names: list[str]

    @classmethod
    def from_dataset(cls, ds, indices: Sequence[int], device: torch.device) -> "DeviceSplit":
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return cls(images=ds.images[idx].to(device), masks=ds.masks[idx].to(device),
                   labels=ds.labels[idx].to(device), names=[ds.names[i] for i in idx.tolist()])

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def to_model_input(images_u8_or_float: torch.Tensor, in_chans: int, mean: Sequence[float],
                   std: Sequence[float]) -> torch.Tensor:
    """(B, 1, H, W) grayscale in [0, 255] (uint8 or float) -> (B, in_chans, H, W) normalised float.

    Grayscale is repeated to the encoder's channel count, then normalised with the model's own
    per-channel ``input_mean``/``input_std`` (the statistics its weights expect).
    """
    x = (images_u8_or_float.float() / 255.0).expand(-1, in_chans, -1, -1)
    m = torch.tensor(list(mean), device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(list(std), device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1,
                  max_steps: int = 0) -> list[torch.Tensor]:
    """Index batches for one training epoch, sharded across DDP ranks.

    Every rank draws the same permutation (same generator state) and keeps every ``world``-th index,
    truncated to a common length so all ranks take the same number of steps (DDP all-reduces each step).
    Rank r's step s holds ``perm[world*b*s + r + world*k]`` (k < b): the ranks' step-s batches together
    are the single-process step-s batch at batch ``world * b`` (the ``n % world`` last images excepted).
    The last partial batch is dropped when it would hold a single image (BatchNorm needs two).
    """
    perm = torch.randperm(n, generator=generator)
    per_rank = n // world
    mine = perm[rank::world][:per_rank]
    batches = list(torch.split(mine, batch_size))
    if batches and len(batches[-1]) < 2 and len(batches) > 1:
        batches = batches[:-1]
    if max_steps:
        batches = batches[:max_steps]
    return batches


def eval_batches(n: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Sequential index batches covering the whole split once."""
    for start in range(0, n, batch_size):
        yield torch.arange(start, min(n, start + batch_size))
