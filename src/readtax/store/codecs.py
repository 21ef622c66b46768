"""The store's codecs: 2-bit bases (encode, repack, unpack) and front-coded read ids.

Bases are 2-bit codes A=0 C=1 T=2 G=3 (``(ascii >> 1) & 3``), four to a byte, low bits first.
Pass 1 of ``pack`` keeps every read byte-aligned (:func:`encode_reads`); the store holds one
continuous stream (:func:`repack`); readers gather and expand it (:func:`unpack_bases`), from
an array or straight from the file (:class:`FileRanges`). Ids are front-coded and compressed a
block at a time (:func:`encode_ids`, :func:`decode_ids`).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from isal import isal_zlib
from numpy.lib.stride_tricks import sliding_window_view

from .. import _native
from ..batch import exclusive_cumsum, ragged_index, two_bit_rows

ID_LEVEL = 1  # front-coded ids compress nearly as well at level 1 as at 9, in far less time
ID_PREFIX = 127  # longest shared prefix front coding records (bounds decoding memory)
N_ASCII = ord("N")  # N bases are stored as any code and restored from the N runs

# byte of 2-bit codes -> 4 ASCII letters (as one little-endian uint32).
_LETTERS = np.frombuffer(b"ACTG", dtype=np.uint8)
_b = np.arange(256, dtype=np.uint32)
_codes4 = np.stack([(_b >> (2 * t)) & 3 for t in range(4)], axis=1).astype(np.uint8)
DEC_ASCII4 = np.ascontiguousarray(_LETTERS[_codes4]).view("<u4").ravel()
# 16 bits (8 bases) -> 8 ASCII letters as one little-endian uint64 (512 KB table).
_w = np.arange(65536, dtype=np.uint32)
DEC_ASCII16 = np.ascontiguousarray(
    _LETTERS[np.stack([(_w >> (2 * t)) & 3 for t in range(8)], axis=1)]).view("<u8").ravel()
del _b, _codes4, _w


# -- 2-bit packing helpers ------------------------------------------------------------------


def encode_reads(seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """ASCII bases -> 2-bit bytes with every read starting at a byte boundary (pass-1 format)."""
    return two_bit_rows(seq, exclusive_cumsum(np.asarray(lengths, np.int64)))


def repack(reads: Records, order: np.ndarray, lead: int, *,
           lengths: np.ndarray | None = None, fixed: int | None = None) -> np.ndarray:
    """Byte-aligned 2-bit reads (``reads`` taken in ``order``; their ``lengths`` are bases) ->
    one continuous 2-bit stream starting ``lead`` bases into its first byte. ``lengths``:
    the lengths in ``order``, when the caller has them; ``fixed``: every read has that many
    bases (rows are then found by arithmetic, not looked up)."""
    order = np.ascontiguousarray(order, np.int64)
    if fixed is not None:
        total = fixed * len(order)
    else:
        if lengths is None:
            lengths = reads.lengths[order]
        total = int(lengths.sum()) if len(order) else 0
    nbytes = -(-(lead + total) // 4)
    out = np.empty(nbytes + 1, np.uint8)  # one byte of slack for the shifted copy
    out[0] = 0  # the only byte the kernel reads before writing it
    _native.repack_2bit(src=reads.flat, row_off=reads.starts, lengths=reads.lengths, order=order,
                        lead=lead, out=out, fixed=-1 if fixed is None else fixed)
    return out[:nbytes]


def _windows(bases: np.ndarray, first: np.ndarray, width: int) -> np.ndarray:
    """``bases[first[i] : first[i] + width]`` for every i as rows (zero past the end)."""
    n = len(bases)
    if n >= width and int(first.max()) <= n - width:
        # Row gathers from a sliding-window view copy whole rows; no per-byte index array.
        return sliding_window_view(bases, width)[first]
    return np.take(bases, first[:, None] + np.arange(width), mode="clip")


class FileRanges:
    """Byte ranges of one store file read with ``pread`` into the caller's arrays.

    The batch gather's source by default (see :class:`ReadStore`): a shuffled epoch touches
    every page of the store, and pages read through a mapping stay in the process's resident
    set until unmapped, so a mapping grows a loader worker's RSS to the store's size (page
    cache, but counted against the process by ``ps``, schedulers and memory limits). Read
    this way the pages stay page cache only. The descriptor is opened on first use; forked
    workers share it (``pread`` has no file position).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = os.path.getsize(path)
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.size

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def into(self, out: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
             out_offsets: np.ndarray) -> np.ndarray:
        """``out`` (contiguous) with ``sizes[i]`` bytes from ``offsets[i]`` at byte
        ``out_offsets[i]`` of it; bytes past the end of the file read as zero."""
        def i64(a):
            return np.ascontiguousarray(a, np.int64)

        if out.size and len(offsets):
            _native.pread_ranges(self.fd(), i64(offsets), i64(sizes),
                                 memoryview(out).cast("B"), i64(out_offsets))
        return out

    def items(self, idx: np.ndarray, dtype) -> np.ndarray:
        """Elements ``idx`` of the file read as a flat array of ``dtype``."""
        dtype = np.dtype(dtype)
        m, k = len(idx), dtype.itemsize
        out = np.empty(m, dtype)
        return self.into(out, idx * k, np.full(m, k, np.int64), np.arange(m, dtype=np.int64) * k)


def unpack_bases(bases: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """ASCII bases of the reads at base ``offsets`` of a 2-bit stream (an array, or a
    :class:`FileRanges` of the file holding it), concatenated.

    One vectorised gather for the whole batch: a row of bytes per read, shifted per row (as
    64-bit words) so that every read starts at bit 0, expanded 8 bases at a time through a
    16-bit lookup table, then cut to length. Batches of very uneven lengths use a ragged gather
    instead, so the work stays proportional to the bases.
    """
    m = len(lengths)
    if m == 0:
        return np.zeros(0, np.uint8)
    offsets = np.asarray(offsets, np.int64)
    lengths = np.asarray(lengths, np.int64)
    shift = offsets & 3
    first = offsets >> 2
    lo, hi = int(lengths.min()), int(lengths.max())
    if hi * m > 2 * int(lengths.sum()) + 64:
        nb = (shift + lengths + 3) >> 2
        if isinstance(bases, FileRanges):
            boff = np.zeros(m + 1, np.int64)
            np.cumsum(nb, out=boff[1:])
            raw = bases.into(np.empty(int(boff[-1]), np.uint8), first, nb, boff[:-1])
        else:
            idx, boff = ragged_index(first, nb)
            raw = np.take(bases, idx, mode="clip")
        text = DEC_ASCII4[raw].view(np.uint8)
        pos, _ = ragged_index(boff[:-1] * 4 + shift, lengths)
        return text[pos]
    width = (hi + 6) >> 2  # bytes covering a read that starts up to 3 bases into a byte
    words = -(-(width + 1) // 8)
    rows = np.zeros((m, 8 * words), np.uint8)
    if isinstance(bases, FileRanges):
        bases.into(rows, first, np.full(m, width, np.int64),
                   np.arange(m, dtype=np.int64) * rows.shape[1])
    else:
        rows[:, :width] = _windows(bases, first, width)
    x = rows.view("<u8")
    if shift.any():
        s2 = (2 * shift).astype(np.uint64)[:, None]
        nxt = np.zeros_like(x)
        nxt[:, :-1] = x[:, 1:]
        x = (x >> s2) | ((nxt << (np.uint64(63) - s2)) << np.uint64(1))
    text = DEC_ASCII16[x.view("<u2").astype(np.intp)].view(np.uint8).reshape(m, 32 * words)
    if lo == hi:
        return np.ascontiguousarray(text[:, :hi]).ravel()
    return text[np.arange(32 * words)[None, :] < lengths[:, None]]


# -- read ids: front coding + zlib --------------------------------------------------------


@dataclass
class Records:
    """Variable-length byte records stored back to back: record i is
    ``flat[starts[i] : starts[i] + row_bytes[i]]``. For packed bases ``lengths`` counts bases
    and a record takes ``(length + 3) // 4`` bytes; for ids it is the byte length."""

    lengths: np.ndarray
    flat: np.ndarray
    packed: bool = False

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths, np.int64)
        self.offsets = exclusive_cumsum(self.row_bytes())  # n + 1: starts, then the end
        self.starts = self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.lengths)

    def row_bytes(self) -> np.ndarray:
        return (self.lengths + 3) >> 2 if self.packed else self.lengths


def encode_ids(ids: Records, order: np.ndarray | None = None, *,
               out: np.ndarray | None = None) -> bytes:
    """Compress a block of ids (header lines without newlines), taken in ``order``.

    Front coding: the block holds one byte per id with the length of the prefix it shares with
    the previous id (at most ``ID_PREFIX``), then each id's remaining suffix ended by a newline;
    zlib compresses the whole. Neighbouring ids in the id order share most of their prefix.
    ``out``: a scratch buffer of at least two bytes per id plus the ids' bytes, reused by a
    caller that encodes many blocks.
    """
    order = np.arange(len(ids), dtype=np.int64) if order is None else np.asarray(order, np.int64)
    if out is None:
        out = np.empty(2 * len(order) + int(ids.lengths[order].sum()), np.uint8)
    size = _native.front_code(ids.flat, ids.offsets, order, ID_PREFIX, out)
    # ISA-L writes the same zlib format as zlib at level 1, several times faster.
    return isal_zlib.compress(out[:size], ID_LEVEL)


def decode_ids(blob: bytes, k: int) -> tuple[bytes, np.ndarray]:
    """Inverse of :func:`encode_ids`: newline-joined ids and their (start, end) bounds.

    A prefix byte at position j of id i comes from the latest id at or before i whose own
    suffix starts at or before j; a running maximum down the columns finds it for all ids at
    once.
    """
    data = np.frombuffer(zlib.decompress(blob), np.uint8)
    lcp = data[:k].astype(np.int64)
    body = data[k:]
    nl = np.flatnonzero(body == 10)
    if len(nl) != k:
        raise ValueError(f"id block holds {len(nl)} ids, expected {k}")
    suf_start = np.concatenate([[0], nl[:-1] + 1]).astype(np.int64)
    suf = nl - suf_start
    lengths = lcp + suf
    out_start = exclusive_cumsum(lengths + 1)
    out = np.full(int(out_start[-1]), 10, np.uint8)
    dest, _ = ragged_index(out_start[:-1] + lcp, suf)
    src, _ = ragged_index(suf_start, suf)
    out[dest] = body[src]
    w = int(lcp.max(initial=0))
    if w > 0:
        rows = np.arange(k, dtype=np.int32)
        latest = np.where(lcp[:, None] <= np.arange(w)[None, :], rows[:, None], np.int32(-1))
        np.maximum.accumulate(latest, axis=0, out=latest)
        flat, _ = ragged_index(rows.astype(np.int64) * w, lcp)
        row = np.repeat(rows.astype(np.int64), lcp)
        j = flat - row * w
        r = latest.ravel()[flat].astype(np.int64)
        out[out_start[row] + j] = body[suf_start[r] + j - lcp[r]]
    bounds = np.stack([out_start[:-1], out_start[:-1] + lengths], axis=1)
    return out.tobytes(), bounds
