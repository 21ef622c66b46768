"""Training data plumbing: the loader wrapper that reports consumed batches, and the size
probes (read count, read length, tokens per read) the recipe sizes its schedule and memory by."""

from __future__ import annotations

import os

import numpy as np

from ..batch import SeqBatch
from ..sources import BATCH_KEY, data_paths, store_path


class ObservedLoader:
    """Iterates a DataLoader; reports each batch the training loop takes to the dataset.

    Deliberately has no ``__len__``: the Trainer then runs one endless pass bounded by
    ``max_steps`` instead of re-creating the iterator every "epoch".
    """

    def __init__(self, loader, dataset, *, world_size: int = 1, record=None) -> None:
        self.loader = loader
        self.dataset = dataset
        self.world_size = world_size
        self.record = record
        self.reads = 0  # reads this process consumed in this session

    def __iter__(self):
        observe = getattr(self.dataset, "observe", None)
        for out in self.loader:
            batch = out.pop(BATCH_KEY, None)
            if batch is not None:
                if observe is not None:
                    observe(batch)
                self.reads += len(batch)
                if self.record is not None:
                    self.record(batch)
            yield out


def estimate_train_reads(paths: list[str]) -> tuple[int, bool]:
    """(reads in the training data, exact?): store manifests are exact, files are estimated
    from their size and the records of their first megabyte (gzip: x4 compression assumed)."""
    store = store_path(data_paths(paths))
    if store is not None:
        from ..store import load_manifest

        return int(load_manifest(store)["read_count"]), True
    from ..fastx import FastxReader, is_gzip

    total = 0.0
    for p in paths:
        size = os.path.getsize(p)
        if size == 0:
            continue
        first = next(iter(FastxReader(p, chunk_size=1 << 20)), None)
        if first is None or len(first) == 0:
            continue
        nbytes = float(first.byte_offsets[-1] - first.byte_offsets[0]) if getattr(
            first, "byte_offsets", None) is not None and len(first.byte_offsets) > 1 else 0.0
        per_read = nbytes / max(len(first) - 1, 1) if nbytes > 0 else (
            len(first.seq) + len(first.headers) + 4) / len(first)
        raw = size * (4.0 if is_gzip(p) else 1.0)
        total += raw / max(per_read, 1.0)
    return int(total), False


def probe_read_length(paths: list[str]) -> int:
    """The longest training read: a store's manifest, else the first megabyte of the data."""
    store = store_path(data_paths(paths))
    if store is not None:
        from ..store import load_manifest

        return int(load_manifest(store)["max_length"])
    from ..fastx import FastxReader

    first = next(iter(FastxReader(paths[0], chunk_size=1 << 20)), None)
    return int(first.lengths.max()) if first is not None and len(first) else 1


def probe_tokens(model, read_length: int) -> int:
    """Tokens (specials included) the model's collator makes of a read of ``read_length``."""
    seq = np.frombuffer(b"ACGT" * (read_length // 4 + 1), dtype=np.uint8)[:read_length].copy()
    batch = SeqBatch(seq=seq, offsets=np.array([0, read_length], dtype=np.int64),
                     labels=np.zeros(1, dtype=np.int64))
    return int(model.collator(batch)["input_ids"].shape[1])
