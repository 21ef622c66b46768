"""Batches from a packed store (plan C), and the plain base collator.

:class:`StoreDataset` is a ``torch.utils.data.IterableDataset`` over a :class:`ReadStore` that
yields whole :class:`SeqBatch` objects (use ``DataLoader(ds, batch_size=None, ...)``). Every
batch is one vectorised gather of the read indices that :class:`BatchSampler` computes by
arithmetic: an epoch is a keyed permutation of the reads (or class-balanced draws), rank r of R
takes its share of every global batch, and DataLoader worker w of W produces the batches
k = w (mod W) of the rank's sequence, so the DataLoader's round-robin returns one fixed order for
any W. The position is (seed, epoch, global batches consumed): :meth:`StoreDataset.state_dict`
after the last :meth:`~StoreDataset.observe`-d batch resumes exactly, also on another number of
ranks with the same global batch size.

:func:`readtax.sources.open_data` turns a DATA argument into a dataset (this one for a store).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from .batch import SeqBatch, reverse_complement
from .errors import UsageError, require
from .hashing import rc_flags
from .labels import LabelMap
from .sampler import BatchSampler, ClassBalance, Position
from .store import ReadStore, check_label_map

torch_data = require("torch.utils.data")

STATE_FORMAT = "readtax.store/1"


class StoreDataset(torch_data.IterableDataset):
    """Batches of a packed store; see the module docstring.

    ``balance_temperature`` switches from a permutation of the reads to class-balanced draws
    (0: every class equally often, 1: natural frequencies); ``indices`` restricts the dataset to
    a subset of reads (e.g. a validation sample); ``epochs=None`` repeats without end;
    ``label_map``, when given, must agree with the store's (StoreError otherwise).
    """

    def __init__(self, store: str | os.PathLike[str] | ReadStore, *, batch_size: int,
                 seed: int = 0, shuffle: bool = True, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, balance_temperature: float | None = None,
                 augment_rc: bool = False, epochs: int | None = 1, with_ids: bool = False,
                 indices: np.ndarray | None = None, label_map: LabelMap | None = None) -> None:
        super().__init__()
        self.store = store if isinstance(store, ReadStore) else ReadStore(store)
        self.label_map = self.store.label_map
        if label_map is not None:
            check_label_map(self.label_map, label_map, self.store.path)
        if epochs is not None and int(epochs) < 1:
            raise UsageError(f"epochs must be >= 1 or None (endless), got {epochs}")
        if indices is not None:
            indices = np.asarray(indices, dtype=np.int64).ravel()
            if len(indices) and (indices.min() < 0 or indices.max() >= len(self.store)):
                raise UsageError(f"indices must lie in [0, {len(self.store)})")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.augment_rc = bool(augment_rc)
        self.epochs = None if epochs is None else int(epochs)
        self.with_ids = bool(with_ids)
        self.balance_temperature = balance_temperature
        self.indices = indices
        balance = None
        if balance_temperature is not None:
            balance = self._balance(float(balance_temperature), indices)
        self.sampler = BatchSampler(len(self.store), batch_size, seed=seed, shuffle=shuffle,
                                    drop_last=drop_last, rank=rank, world_size=world_size,
                                    indices=indices, balance=balance)
        self._next = Position(self.seed, 0, 0)  # the next global batch to produce

    def _balance(self, temperature: float, indices: np.ndarray | None) -> ClassBalance:
        if indices is None:
            self.store._tables()  # built once here, shared with forked workers
            return ClassBalance(self.store.class_counts, temperature, self.store.class_select)
        # A subset: per-class lists of the subset itself (O(subset) memory).
        cls = self.store.labels(indices)
        order = np.argsort(cls, kind="stable")
        counts = np.bincount(cls, minlength=len(self.label_map))
        first = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=first[1:])
        members = indices[order]

        def select(c: np.ndarray, k: np.ndarray) -> np.ndarray:
            return members[first[c] + k]

        return ClassBalance(counts, temperature, select)

    # -- the dataset protocol --

    def __len__(self) -> int:
        """Batches of this rank per epoch."""
        return len(self.sampler)

    def __iter__(self) -> Iterator[SeqBatch]:
        info = torch_data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for epoch, t, idx in self.sampler.iter_batches(self._next, self.epochs, worker, workers):
            yield self._make_batch(epoch, t, idx)

    def _make_batch(self, epoch: int, t: int, idx: np.ndarray) -> SeqBatch:
        batch = self.store.batch(idx, with_ids=self.with_ids)
        if self.augment_rc:
            batch = reverse_complement(batch, rc_flags(self.seed, epoch, idx))
        batch.meta = {"loader": "store", "epoch": epoch, "batch": t,
                      "rank": self.sampler.rank}
        return batch

    # -- position --

    def observe(self, batch: SeqBatch) -> None:
        """Record that the consumer has used ``batch`` (call it in the main process)."""
        meta = batch.meta
        if not meta or meta.get("loader") != "store":
            raise UsageError("observe() needs a batch yielded by this StoreDataset "
                             "(its meta holds the position)")
        self._next = Position(self.seed, int(meta["epoch"]), int(meta["batch"]) + 1)

    def state_dict(self) -> dict:
        """JSON-serialisable position right after the last observed batch."""
        return {"format": STATE_FORMAT, "seed": self.seed, "epoch": self._next.epoch,
                "batch": self._next.batch, **self._identity()}

    def load_state_dict(self, state: dict) -> None:
        """Continue right after the position ``state`` records (call before iterating)."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UsageError(f"not a store loader state (expected format {STATE_FORMAT!r})")
        problems = [f"{k} is {state.get(k)!r} in the checkpoint but {v!r} now"
                    for k, v in {"seed": self.seed, **self._identity()}.items()
                    if state.get(k) != v]
        if problems:
            raise UsageError("cannot resume the store loader: " + "; ".join(problems))
        self._next = Position(self.seed, int(state["epoch"]), int(state["batch"]))

    def _identity(self) -> dict:
        """What a position depends on; the rank and world size may change between runs."""
        return {"reads": len(self.store), "global_batch_size": self.sampler.global_batch_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last,
                "balance_temperature": self.balance_temperature,
                "subset": None if self.indices is None else len(self.indices)}


class TwoBitCollator:
    """A plain base encoding for tests and baselines: A,C,G,T -> 0..3, N -> 4, padding -> 5.

    Models bring their own tokenizers; this shows the collate contract (SeqBatch -> tensors).
    ``one_hot`` returns a float ``[n, L, 4]`` tensor (N and padding all zero) instead of ids.
    """

    PAD = 5

    def __init__(self, max_length: int | None = None, one_hot: bool = False) -> None:
        from .bases import CODE

        self.max_length = max_length
        self.one_hot = one_hot
        self.lut = CODE

    def __call__(self, batch: SeqBatch) -> dict:
        torch = require("torch")
        lengths = batch.lengths
        n = len(lengths)
        if n and int(lengths.min()) == int(lengths.max()):
            # Equal lengths (the usual case): a reshape instead of a ragged scatter.
            width = int(lengths[0]) if self.max_length is None else min(int(lengths[0]),
                                                                        self.max_length)
            ids = self.lut[batch.seq.reshape(n, -1)[:, :width]]
            lengths = np.full(n, width, np.int64)
        else:
            ids, lengths = batch.padded(self.max_length, pad=self.PAD, lut=self.lut)
        mask = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        labels = np.where(batch.labels >= 0, batch.labels, -100)
        out = {"attention_mask": torch.from_numpy(mask.astype(np.int64)),
               "labels": torch.from_numpy(labels.astype(np.int64))}
        if self.one_hot:
            eye = np.zeros((6, 4), np.float32)
            eye[np.arange(4), np.arange(4)] = 1.0
            out["inputs"] = torch.from_numpy(eye[ids])
        else:
            out["input_ids"] = torch.from_numpy(ids.astype(np.int64))
        return out
