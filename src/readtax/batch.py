"""The batch that every loader yields and every model collator consumes.

Loaders (packed store, streaming reader) produce :class:`SeqBatch`: the bases of a whole batch in
one flat ``uint8`` buffer (upper-case ASCII ``ACGTN``) with offsets, plus class indices. A model's
collator turns a ``SeqBatch`` into tensors. Keeping this one shape means training and prediction
accept a store or a reads path interchangeably.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bases import BASE_NORM, COMPLEMENT
from .fastx import ReadBatch, concat_offsets, gather_ragged, ragged_index


@dataclass
class SeqBatch:
    """``seq[offsets[i]:offsets[i+1]]`` are the bases of read i; ``labels[i]`` its class (-1: none).

    ``index`` holds global read numbers where the loader knows them (store), ``ids`` read ids
    where the consumer asked for them (prediction).
    """

    seq: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    index: np.ndarray | None = None
    ids: list[str] | None = None
    meta: dict | None = None  # loader position (epoch, batch, byte offset...) for resumption

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequences(self) -> list[str]:
        """Reads as Python strings (what Hugging Face tokenizers take)."""
        text = self.seq.tobytes().decode("ascii")
        o = self.offsets.tolist()
        return [text[o[i] : o[i + 1]] for i in range(len(o) - 1)]

    def padded(self, max_len: int | None = None, pad: int = 0, lut: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``[n, L]`` array of bases (through ``lut`` if given), truncated to ``max_len``; lengths."""
        lengths = self.lengths
        if max_len is not None:
            lengths = np.minimum(lengths, max_len)
        width = int(lengths.max(initial=0))
        out = np.full((len(self), width), pad, dtype=np.uint8)
        idx, _ = ragged_index(self.offsets[:-1], lengths)
        rows = np.repeat(np.arange(len(self)), lengths)
        cols = np.arange(len(idx)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        vals = self.seq[idx]
        out[rows, cols] = vals if lut is None else lut[vals]
        return out, lengths

    def take(self, rows: np.ndarray) -> SeqBatch:
        rows = np.asarray(rows, dtype=np.int64)
        seq, off = gather_ragged(self.seq, self.offsets, rows)
        return SeqBatch(
            seq, off, self.labels[rows],
            None if self.index is None else self.index[rows],
            None if self.ids is None else [self.ids[i] for i in rows.tolist()],
        )

    def slice(self, a: int, b: int) -> SeqBatch:
        """Reads ``a:b`` as views into this batch (no loader position: it is no whole batch)."""
        o = self.offsets
        return SeqBatch(
            self.seq[o[a]:o[b]], o[a:b + 1] - o[a], self.labels[a:b],
            None if self.index is None else self.index[a:b],
            None if self.ids is None else self.ids[a:b],
        )

    @classmethod
    def concat(cls, batches: Sequence[SeqBatch]) -> SeqBatch:
        """The reads of ``batches`` in order, as one batch (a single batch is returned as is).

        ``index`` and ``ids`` are kept when every batch has them; ``meta`` is the last batch's
        (the loader position after all of them).
        """
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return cls(np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros(0, np.int64))
        index = None
        if all(b.index is not None for b in batches):
            index = np.concatenate([b.index for b in batches])
        ids = None
        if all(b.ids is not None for b in batches):
            ids = [i for b in batches for i in b.ids]
        return cls(np.concatenate([b.seq for b in batches]),
                   concat_offsets([b.offsets for b in batches]),
                   np.concatenate([b.labels for b in batches]), index, ids, batches[-1].meta)

    @classmethod
    def from_reads(cls, batch: ReadBatch, labels: np.ndarray | None = None,
                   with_ids: bool = False) -> SeqBatch:
        n = len(batch)
        lab = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
        return cls(batch.seq, batch.seq_offsets, lab, None, batch.read_ids() if with_ids else None)

    @classmethod
    def from_strings(cls, seqs: list[str], labels=None) -> SeqBatch:
        """For in-memory use (API, tests): upper-cases and maps non-ACGT letters to N."""

        raw = np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)
        seq = BASE_NORM[raw]
        seq[seq == 0] = ord("N")
        off = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in seqs], out=off[1:])
        lab = np.full(len(seqs), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        return cls(seq, off, lab)


def reverse_complement(batch: SeqBatch, flip: np.ndarray) -> SeqBatch:
    """Reverse-complement the reads where ``flip`` is true (vectorised over the whole batch)."""
    flip = np.asarray(flip, dtype=bool)
    if not flip.any():
        return batch
    lengths = batch.lengths
    starts = batch.offsets[:-1]
    # For position p of read i: source = start + (len-1 - (p-start)) if flipped else p.
    within = np.arange(len(batch.seq)) - np.repeat(starts, lengths)
    rev = np.repeat(starts + lengths - 1, lengths) - within
    src = np.where(np.repeat(flip, lengths), rev, np.arange(len(batch.seq)))
    seq = batch.seq[src]
    mask = np.repeat(flip, lengths)
    seq[mask] = COMPLEMENT[seq[mask]]
    return SeqBatch(seq, batch.offsets, batch.labels, batch.index, batch.ids, batch.meta)
