"""The two batch shapes that every layer passes along, and the ragged-buffer helpers they share.

:class:`ReadBatch` is what the FASTA/FASTQ readers yield: bases, headers (and qualities) of many
records in flat ``uint8`` buffers with offsets. :class:`SeqBatch` is what every loader (packed
store, streaming reader) yields and every model collator consumes: the bases of a whole batch in
one flat buffer (upper-case ASCII ``ACGTN``) with offsets, plus class indices. Keeping these
shapes means training and prediction accept a store or a reads path interchangeably, and no
Python object is made per read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import _native
from .bases import BASE_NORM, COMPLEMENT


class ReadBatch:
    """A batch of reads as flat buffers.

    ``seq[seq_offsets[i]:seq_offsets[i+1]]`` are the bases of read i (upper-case ACGTN);
    ``headers[header_offsets[i]:header_offsets[i+1]]`` its header without ``>``/``@``;
    ``qual`` (FASTQ only) shares ``seq_offsets``. ``first_record`` is the 0-based number of the
    batch's first read in its source file when known (sequential reading), else -1.
    ``byte_offsets`` are the file offsets of the records' first bytes (plain files);
    ``non_acgt`` counts bases stored as N.

    ``seq`` may be given as a zero-argument callable that builds it on first access: consumers
    that only need lengths and headers (statistics, counting passes) never pay for the bases.
    """

    def __init__(self, seq, seq_offsets: np.ndarray, headers: np.ndarray,
                 header_offsets: np.ndarray, qual: np.ndarray | None = None, source: str = "",
                 first_record: int = -1, byte_offsets: np.ndarray | None = None,
                 non_acgt: int = -1) -> None:
        self._seq = seq
        self._non_acgt = non_acgt
        self.seq_offsets = seq_offsets
        self.headers = headers
        self.header_offsets = header_offsets
        self.qual = qual
        self.source = source
        self.first_record = first_record
        self.byte_offsets = byte_offsets

    @property
    def seq(self) -> np.ndarray:
        if callable(self._seq):
            # A lazy builder returns (bases, non_acgt), or the bases alone (count unknown).
            built = self._seq()
            if isinstance(built, tuple):
                self._seq, self._non_acgt = built
            else:
                self._seq = built
        return self._seq

    def raw_records(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(buffer, bytes per record) when the records, back to back, are exactly canonical FASTA
        (``>header``, one line of upper-case ACGT, LF); else None. Readers set this per chunk."""
        return None

    def two_bit(self) -> np.ndarray:
        """The reads 2-bit encoded (code ``(ascii >> 1) & 3``, 4 bases per byte from the low
        bits up), each starting on a byte: the packed store's pass-1 form. Readers may
        override it to encode without building the ASCII bases."""
        return two_bit_rows(self.seq, self.seq_offsets)

    @property
    def non_acgt(self) -> int:
        """Bases stored as N (readers know it without building the bases)."""
        if self._non_acgt < 0 and callable(self._seq):
            _ = self.seq  # builds and counts the bases
        return self._non_acgt

    @non_acgt.setter
    def non_acgt(self, value: int) -> None:
        self._non_acgt = value

    @seq.setter
    def seq(self, value: np.ndarray) -> None:
        self._seq = value

    def __len__(self) -> int:
        return len(self.seq_offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.seq_offsets)

    def sequence(self, i: int) -> bytes:
        return self.seq[self.seq_offsets[i] : self.seq_offsets[i + 1]].tobytes()

    def header(self, i: int) -> str:
        return self.headers[self.header_offsets[i] : self.header_offsets[i + 1]].tobytes().decode(
            "utf-8", "replace"
        )

    def read_id(self, i: int) -> str:
        """The header's first word, as Kraken2 and most tools use it."""
        return self.header(i).split(None, 1)[0] if self.header_offsets[i + 1] > self.header_offsets[i] else ""

    def read_ids(self) -> list[str]:
        text = self.headers.tobytes().decode("utf-8", "replace")
        offs = self.header_offsets
        if offs[-1] == len(self.headers) and len(text) == len(self.headers):
            return [text[offs[i] : offs[i + 1]].split(" ", 1)[0].split("\t", 1)[0] for i in range(len(self))]
        return [self.read_id(i) for i in range(len(self))]

    def sequences(self) -> list[str]:
        text = self.seq.tobytes().decode("ascii")
        o = self.seq_offsets
        return [text[o[i] : o[i + 1]] for i in range(len(self))]

    def take(self, index: np.ndarray) -> ReadBatch:
        """A new batch holding the reads at ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        seq, seq_off = gather_ragged(self.seq, self.seq_offsets, index)
        hdr, hdr_off = gather_ragged(self.headers, self.header_offsets, index)
        qual = None if self.qual is None else gather_ragged(self.qual, self.seq_offsets, index)[0]
        return ReadBatch(seq, seq_off, hdr, hdr_off, qual, self.source, -1)

    def slice(self, a: int, b: int, *, copy: bool = False) -> ReadBatch:
        """Records ``a:b`` as a new batch, with their qualities and byte offsets.

        The new batch's buffers are views into this one's, and bases that this batch has not
        built yet are built for the slice only when it needs them. ``copy`` gives compact copies
        instead (building the bases now), so that this batch's buffers can be freed.
        """
        so, ho = self.seq_offsets, self.header_offsets
        s0, s1, h0, h1 = int(so[a]), int(so[b]), int(ho[a]), int(ho[b])
        seq: np.ndarray | Callable[[], np.ndarray]
        if callable(self._seq) and not copy:
            def seq() -> np.ndarray:
                return self.seq[s0:s1]
        else:
            seq = self.seq[s0:s1]
        qual = None if self.qual is None else self.qual[s0:s1]
        byte_offsets = None if self.byte_offsets is None else self.byte_offsets[a:b]
        headers = self.headers[h0:h1]
        if copy:
            seq, headers = np.array(seq), headers.copy()
            qual = None if qual is None else qual.copy()
            byte_offsets = None if byte_offsets is None else byte_offsets.copy()
        first = -1 if self.first_record < 0 else self.first_record + a
        return ReadBatch(seq, so[a:b + 1] - s0, headers, ho[a:b + 1] - h0, qual, self.source,
                         first, byte_offsets)

    @classmethod
    def concat(cls, batches: Sequence[ReadBatch]) -> ReadBatch:
        """The records of ``batches`` in order, as one batch (a single batch is returned as is).

        Qualities and byte offsets (each in its own file) are kept when every batch has them;
        source and first record number are the first batch's. Bases are joined when first
        needed if any batch has not built its own yet.
        """
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return empty_batch()
        seq: np.ndarray | Callable[[], np.ndarray]
        if any(callable(b._seq) for b in batches):
            def seq() -> np.ndarray:
                return np.concatenate([b.seq for b in batches])
        else:
            seq = np.concatenate([b.seq for b in batches])
        quals = [b.qual for b in batches]
        qual = None if any(q is None for q in quals) else np.concatenate(quals)
        positions = [b.byte_offsets for b in batches]
        byte_offsets = None if any(p is None for p in positions) else np.concatenate(positions)
        return cls(seq, concat_offsets([b.seq_offsets for b in batches]),
                   np.concatenate([b.headers for b in batches]),
                   concat_offsets([b.header_offsets for b in batches]), qual,
                   batches[0].source, batches[0].first_record, byte_offsets)


def ragged_index(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the slices ``[starts[i], starts[i]+lengths[i])`` and output offsets."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = exclusive_cumsum(lengths)
    total = int(offsets[-1])
    if total == 0:
        return np.zeros(0, dtype=np.int64), offsets
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - offsets[:-1], lengths)
    idx = np.arange(total, dtype=np.int64)
    idx += shift
    return idx, offsets


def exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    """Offsets of consecutive pieces of lengths ``x``: ``[0, x0, x0+x1, ...]`` (int64)."""
    out = np.zeros(len(x) + 1, np.int64)
    np.cumsum(x, out=out[1:])
    return out


def two_bit_rows(seq: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Reads ``seq[offsets[i]:offsets[i+1]]`` 2-bit encoded, each starting on a byte."""
    offsets = np.ascontiguousarray(offsets, np.int64)
    out = np.empty(int(((np.diff(offsets) + 3) >> 2).sum()), np.uint8)
    _native.pack_2bit(np.ascontiguousarray(seq, np.uint8), offsets, out)
    return out


def gather_ragged(
    data: np.ndarray, offsets: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the slices ``data[offsets[i]:offsets[i+1]]`` for ``i`` in ``index``."""
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    if data.dtype == np.uint8 and data.flags.c_contiguous:
        out = np.empty(int(lengths.sum()), np.uint8)
        _native.gather(data, starts.astype(np.int64, copy=False),
                       lengths.astype(np.int64, copy=False), out)
        return out, exclusive_cumsum(lengths)
    idx, out_off = ragged_index(starts, lengths)
    return data[idx], out_off


def concat_offsets(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Offsets into the concatenation of ragged buffers, each given by its own offsets (which
    need not start at 0: ``offsets[lo:hi + 1]`` of a larger buffer describes its slice)."""
    out = [np.zeros(1, np.int64)]
    base = 0
    for o in parts:
        o = np.asarray(o, dtype=np.int64)
        out.append(o[1:] - o[0] + base)
        base += int(o[-1] - o[0])
    return np.concatenate(out)


def empty_batch(source: str = "") -> ReadBatch:
    z = np.zeros(1, np.int64)
    return ReadBatch(np.zeros(0, np.uint8), z, np.zeros(0, np.uint8), z.copy(), None, source, -1)


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
