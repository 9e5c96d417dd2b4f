"""Batches bucketed by length, padded only to the longest pair in the batch.

A model family turns each pair into an *example*: a dict whose list-valued
fields are token sequences (``a_ids``, ``input_ids``, ...) and whose int fields
are scalars (``label``, ``index``). ``collate`` pads every list field with 0 and
adds a ``<field>_mask``; tensor fields (stage two's cached V1/V2) are stacked.
Nothing here knows which model it is feeding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

Example = dict[str, "list[int] | int | torch.Tensor"]
Batch = dict[str, torch.Tensor]


def example_length(example: Example) -> int:
    """Longest sequence in the example (what bucketing sorts by)."""
    return max((len(v) for v in example.values() if isinstance(v, list)), default=0)


def collate(examples: Sequence[Example]) -> Batch:
    """Stack examples into tensors, padding list fields to the batch maximum."""
    batch: Batch = {}
    for key, first in examples[0].items():
        if isinstance(first, list):
            longest = max(len(e[key]) for e in examples)  # type: ignore[arg-type]
            # built on the CPU (explicitly: never on a default device), moved to the run's device by the caller
            values = torch.zeros(len(examples), longest, dtype=torch.long, device="cpu")
            mask = torch.zeros(len(examples), longest, dtype=torch.bool, device="cpu")
            for i, e in enumerate(examples):
                seq = e[key]
                values[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long, device="cpu")  # type: ignore[arg-type]
                mask[i, : len(seq)] = True  # type: ignore[arg-type]
            batch[key] = values
            batch[key + "_mask"] = mask
        elif isinstance(first, torch.Tensor):
            tensors = [e[key] for e in examples]
            if first.ndim == 1 and len({t.shape for t in tensors}) > 1:  # per-token values (saliency): pad with zeros
                longest = max(t.shape[0] for t in tensors)  # type: ignore[union-attr]
                batch[key] = torch.stack([torch.nn.functional.pad(t, (0, longest - t.shape[0])) for t in tensors])  # type: ignore[union-attr,arg-type]
            else:
                batch[key] = torch.stack(tensors)  # type: ignore[arg-type]
        else:
            batch[key] = torch.as_tensor([e[key] for e in examples], dtype=torch.long, device="cpu")
    return batch


def bucket_batches(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    """Index lists for one epoch.

    Examples are sorted by length (with a little noise when shuffling, so the
    same pairs do not always meet), cut into batches, and the batch order is
    shuffled. The result depends only on (lengths, batch_size, seed, epoch), so
    an interrupted epoch can be replayed exactly on resume."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    lengths_arr = np.asarray(lengths, dtype=np.float64)
    if not shuffle:
        order = np.argsort(lengths_arr, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch])
    noisy = lengths_arr + rng.uniform(-1.0, 1.0, size=len(lengths_arr))
    order = np.argsort(noisy, kind="stable")
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


class BatchIterator:
    """Iterate over the batches of one epoch, optionally starting part-way
    through (``skip`` batches) when resuming."""

    def __init__(self, examples: Sequence[Example], batch_size: int, shuffle: bool, seed: int = 0):
        self.examples = examples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.lengths = [example_length(e) for e in examples]

    def num_batches(self) -> int:
        return (len(self.examples) + self.batch_size - 1) // self.batch_size

    def epoch(self, epoch: int = 0, skip: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """The batches of ``epoch`` after the first ``skip``. ``shard=(rank,
        world)`` keeps every ``world``-th batch from the ``rank``-th: whole
        batches of the single-process order, so per-pair results gathered
        from all shards equal a single process's (evaluation, V1/V2)."""
        rank, world = shard
        for k, indices in enumerate(bucket_batches(self.lengths, self.batch_size, self.shuffle, self.seed, epoch)[skip:]):
            if k % world == rank:
                yield collate([self.examples[i] for i in indices])

    def shard_size(self, shard: tuple[int, int] = (0, 1)) -> int:
        """Batches ``epoch(shard=shard)`` yields."""
        rank, world = shard
        return len(range(rank, self.num_batches(), world))

    def global_batches(self, epoch: int = 0, skip: int = 0) -> list[list[int]]:
        """The index lists of one epoch (the same for any number of processes)."""
        return bucket_batches(self.lengths, self.batch_size, self.shuffle, self.seed, epoch)[skip:]

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)


def split_batch(indices: Sequence[int], rank: int, world: int) -> list[int]:
    """Rank ``rank``'s contiguous part of one global batch (a length bucket),
    sizes differing by at most one; empty when the batch has fewer pairs
    than there are ranks."""
    size, extra = divmod(len(indices), world)
    start = rank * size + min(rank, extra)
    return list(indices[start : start + size + (1 if rank < extra else 0)])
