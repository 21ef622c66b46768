"""Random access to a packed store: :class:`ReadStore` and the statistics in its manifest."""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..batch import SeqBatch, ragged_index
from ..errors import StoreError, UsageError
from ..hashing import TAG_LAYOUT, hash64
from ..labels import LabelMap
from ..sampler import permute
from .codecs import N_ASCII, FileRanges, decode_ids, unpack_bases
from .consistency import Consistency
from .format import (
    F_BASES,
    F_BCLASS,
    F_BUCKETS,
    F_IDINDEX,
    F_IDS,
    F_NFLAGS,
    F_NLEN,
    F_NSTART,
    F_OFFSETS,
    F_ORDER,
    check_checksum_names,
    check_class_file,
    check_label_map,
    check_sizes,
    class_file_name,
    expected_files,
    load_manifest,
)


class ReadStore:
    """Random access to a packed store (memory-mapped; opening checks file sizes only).

    ``read(i)`` returns one read; ``batch(indices)`` a whole :class:`SeqBatch` through one
    vectorised gather. Read indices are physical positions ``0 .. len-1``.

    ``gather`` picks how :meth:`batch` and :meth:`sequences` read bases, classes, N flags and
    offsets: ``"pread"`` (default) reads each read's bytes with one system call per file, so
    the process's RSS stays flat however much of the store an epoch touches (the pages stay
    page cache); ``"mmap"`` gathers from the mappings, faster while the touched part of the
    store is small, but every page touched stays in the RSS of the process until it exits.
    """

    def __init__(self, path: str | os.PathLike[str], *, mapping: LabelMap | None = None,
                 id_cache_blocks: int = 32, gather: str = "pread") -> None:
        if gather not in ("pread", "mmap"):
            raise UsageError(f"gather must be 'pread' or 'mmap', got {gather!r}")
        self.gather = gather
        self.path = Path(path)
        self.manifest = m = load_manifest(self.path)
        missing = sorted(expected_files(m) - set(m["files"]))
        if missing:
            raise StoreError(f"manifest.json does not list {', '.join(missing)}", self.path)
        check_sizes(self.path, m)
        check_checksum_names(self.path, m)
        self.n = int(m["read_count"])
        self.total_bases = int(m["total_bases"])
        self.label_map = LabelMap.from_rows(m["label_map"])
        if mapping is not None:
            check_label_map(self.label_map, mapping, self.path)
        self.class_counts = np.asarray(m["class_counts"], dtype=np.int64)
        self.fixed_length = m.get("fixed_length")
        self.max_length = int(m["max_length"])
        self.shuffled = bool(m["shuffled"])
        self.seed = int(m["seed"])
        self.class_file = class_file_name(m)
        check_class_file(self.path, m, self.class_file)
        self.bases = self._array(F_BASES, np.uint8)
        self.offsets_ = None if self.fixed_length else self._array(F_OFFSETS, np.uint64)
        self.classes = self._array(self.class_file, np.dtype(m["class_dtype"]))
        self.nflags = self._array(F_NFLAGS, np.uint8)
        self.nstart = self._array(F_NSTART, np.uint64)
        self.nlen = self._array(F_NLEN, np.uint32)
        self.bucket_starts = self._array(F_BUCKETS, np.uint64).astype(np.int64)
        self.n_buckets = len(self.bucket_starts) - 1
        index, table = self._array(F_IDINDEX, np.uint64), self._array(F_BCLASS, np.uint32)
        if len(index) % 2 or len(table) != self.n_buckets * len(self.label_map):
            raise StoreError(f"inconsistent store: {F_IDINDEX} or {F_BCLASS} has the wrong "
                             "size", self.path)
        self.id_index = index.reshape(-1, 2)
        self.bucket_classes = table.reshape(self.n_buckets, len(self.label_map))
        self.order = None if self.shuffled else self._array(F_ORDER, np.uint32)
        self._ranges: dict[str, FileRanges] = {}
        self._id_cache: OrderedDict[int, tuple[bytes, np.ndarray]] = OrderedDict()
        self._id_cache_blocks = id_cache_blocks
        self._select_tables: tuple[np.ndarray, np.ndarray] | None = None
        self._keys: np.ndarray | None = None
        Consistency(self).shapes()  # cheap: array lengths and the class table's sums

    def _array(self, name: str, dtype) -> np.ndarray:
        f = self.path / name
        if self.manifest["files"][name]["size"] == 0:
            return np.zeros(0, dtype)
        return np.memmap(f, dtype=dtype, mode="r")

    def __reduce__(self):
        # DataLoader workers started by spawn reopen the store instead of pickling maps.
        return (reopen, (str(self.path), self._id_cache_blocks, self.gather))

    def _source(self, name: str, mapped: np.ndarray):
        """What the batch gather reads file ``name`` from: the mapping or a FileRanges."""
        if self.gather == "mmap" or not len(mapped):
            return mapped
        if name not in self._ranges:
            self._ranges[name] = FileRanges(self.path / name)
        return self._ranges[name]

    def _geometry(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base offsets and lengths of the reads ``idx`` (one offsets read per read)."""
        if self.fixed_length:
            return idx * int(self.fixed_length), np.full(idx.shape, int(self.fixed_length),
                                                         np.int64)
        src = self._source(F_OFFSETS, self.offsets_)
        if isinstance(src, FileRanges):
            m = len(idx)
            pair = src.into(np.empty((m, 2), np.uint64), idx * 8, np.full(m, 16, np.int64),
                            np.arange(m, dtype=np.int64) * 16).astype(np.int64)
            return pair[:, 0], pair[:, 1] - pair[:, 0]
        return self.base_offsets(idx), self.lengths(idx)

    def _batch_labels(self, idx: np.ndarray) -> np.ndarray:
        src = self._source(self.class_file, self.classes)
        if isinstance(src, FileRanges):
            return self._check_labels(src.items(idx, self.classes.dtype).astype(np.int64))
        return self.labels(idx)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"ReadStore({str(self.path)!r}, reads={self.n}, classes={len(self.label_map)})"

    # -- per-read geometry --

    def lengths(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if self.fixed_length:
            return np.full(idx.shape, int(self.fixed_length), np.int64)
        return (self.offsets_[idx + 1] - self.offsets_[idx]).astype(np.int64)

    def base_offsets(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if self.fixed_length:
            return idx * int(self.fixed_length)
        return self.offsets_[idx].astype(np.int64)

    def labels(self, indices) -> np.ndarray:
        """Class indices of the reads ``indices``; StoreError for one outside the label map
        (a class file changed after the open-time check must not become a wrong label)."""
        return self._check_labels(self.classes[np.asarray(indices, dtype=np.int64)].astype(np.int64))

    def _check_labels(self, cls: np.ndarray) -> np.ndarray:
        if cls.size and int(cls.max()) >= len(self.label_map):
            raise StoreError(f"{self.class_file} holds class index {int(cls.max())} but the "
                             f"store has {len(self.label_map)} classes: the store is corrupt "
                             "(run 'readtax verify')", self.path)
        return cls

    def _check_indices(self, idx: np.ndarray) -> None:
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise IndexError(f"read index {bad} out of range for a store of {self.n} reads")

    # -- bases --

    def sequences(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Flat ASCII bases and offsets of the reads ``indices`` (one gather)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        self._check_indices(idx)
        off, lengths = self._geometry(idx)
        seq = unpack_bases(self._source(F_BASES, self.bases), off, lengths)
        out_off = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(lengths, out=out_off[1:])
        if len(self.nstart) and len(idx):
            self._restore_n(seq, idx, off, lengths, out_off)
        return seq, out_off

    def _restore_n(self, seq, idx, off, lengths, out_off) -> None:
        src = self._source(F_NFLAGS, self.nflags)
        got = src.items(idx >> 3, np.uint8) if isinstance(src, FileRanges) else src[idx >> 3]
        flags = (got >> (idx & 7).astype(np.uint8)) & 1
        sel = np.flatnonzero(flags)
        if not len(sel):
            return
        lo = np.searchsorted(self.nstart, off[sel].astype(np.uint64), side="left")
        hi = np.searchsorted(self.nstart, (off[sel] + lengths[sel]).astype(np.uint64), side="left")
        cnt = (hi - lo).astype(np.int64)
        runs, _ = ragged_index(lo.astype(np.int64), cnt)
        owner = np.repeat(sel, cnt)
        local = self.nstart[runs].astype(np.int64) - off[owner] + out_off[owner]
        pos, _ = ragged_index(local, self.nlen[runs].astype(np.int64))
        seq[pos] = N_ASCII

    def batch(self, indices, *, with_ids: bool = False) -> SeqBatch:
        """A :class:`SeqBatch` of the reads ``indices`` (labels = class indices)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        self.check_unchanged()
        seq, off = self.sequences(idx)
        ids = self.ids(idx) if with_ids else None
        return SeqBatch(seq, off, self._batch_labels(idx), idx, ids)

    def check_unchanged(self) -> None:
        """StoreError if the bases or class file shrank since the store was opened.

        Reading a memory-mapped page past a file's new end kills the process with SIGBUS;
        two stat calls per batch turn a store truncated during a run into an error instead.
        """
        for name in (F_BASES, self.class_file):
            want = self.manifest["files"][name]["size"]
            try:
                size = os.stat(self.path / name).st_size
            except OSError:
                size = -1
            if size != want:
                raise StoreError(f"file {name} changed while in use ({size} bytes, expected "
                                 f"{want}): the store was modified during this run", self.path)

    def read(self, i: int) -> tuple[str, str, int]:
        """(id, sequence, class index) of read ``i``; the id is the header's first word."""
        seq, _ = self.sequences([int(i)])
        return self.ids([int(i)])[0], seq.tobytes().decode("ascii"), int(self.classes[int(i)])

    # -- buckets, id order and class selection --

    def bucket_of(self, indices: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bucket_starts, indices, side="right") - 1

    def _layout_keys(self, buckets: np.ndarray) -> np.ndarray:
        if self._keys is None:
            self._keys = hash64(self.seed, TAG_LAYOUT, np.arange(self.n_buckets, dtype=np.uint64))
        return self._keys[buckets]

    def id_rank(self, indices) -> np.ndarray:
        """Id-order position of the reads at physical ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if not self.shuffled:
            return idx
        b = self.bucket_of(idx)
        start = self.bucket_starts[b]
        size = self.bucket_starts[b + 1] - start
        return start + permute(idx - start, size, self._layout_keys(b), inverse=True)

    def physical(self, id_ranks) -> np.ndarray:
        """Physical index of the reads at id-order positions ``id_ranks``."""
        q = np.asarray(id_ranks, dtype=np.int64).ravel()
        if not self.shuffled:
            return q
        b = self.bucket_of(q)
        start = self.bucket_starts[b]
        size = self.bucket_starts[b + 1] - start
        return start + permute(q - start, size, self._layout_keys(b))

    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        if self._select_tables is None:
            bc = np.asarray(self.bucket_classes, dtype=np.int64)
            nb, nc = bc.shape
            # g[c, b] = class-sorted index of the first class-c read of bucket b (monotone
            # when flattened), within[b, c] = class-order rank of that read inside bucket b.
            cum = np.zeros((nc, nb + 1), np.int64)
            np.cumsum(bc.T, axis=1, out=cum[:, 1:])
            class_start = np.zeros(nc, np.int64)
            np.cumsum(self.class_counts[:-1], out=class_start[1:])
            g = (cum + class_start[:, None]).ravel()
            small = int(bc.sum(axis=1).max(initial=0)) < 2**31
            within = np.zeros((nb, nc), np.int32 if small else np.int64)
            np.cumsum(bc[:, :-1], axis=1, out=within[:, 1:])
            self._select_tables = (g, within)
        return self._select_tables

    def class_select(self, classes, ranks) -> np.ndarray:
        """Physical index of the ``ranks[i]``-th read (0-based) of class ``classes[i]``."""
        c = np.asarray(classes, dtype=np.int64).ravel()
        k = np.asarray(ranks, dtype=np.int64).ravel()
        if len(c) and ((k < 0).any() or (k >= self.class_counts[c]).any()):
            raise IndexError("class_select: rank outside the class")
        g, within = self._tables()
        nb = self.n_buckets
        class_start = g[np.arange(len(self.label_map)) * (nb + 1)]
        j = class_start[c] + k
        row = np.searchsorted(g, j, side="right") - 1
        b = row % (nb + 1)
        r = within[b, c] + (j - g[row])
        start = self.bucket_starts[b]
        if self.shuffled:
            size = self.bucket_starts[b + 1] - start
            return start + permute(r, size, self._layout_keys(b))
        return start + self.order[start + r].astype(np.int64)

    # -- ids --

    def id_block(self, k: int) -> tuple[bytes, np.ndarray]:
        """Id block ``k``: its newline-joined headers and their (start, end) bounds (cached)."""
        hit = self._id_cache.get(k)
        if hit is not None:
            self._id_cache.move_to_end(k)
            return hit
        lo, hi = int(self.id_index[k, 1]), int(self.id_index[k + 1, 1])
        count = int(self.id_index[k + 1, 0] - self.id_index[k, 0])
        with open(self.path / F_IDS, "rb") as fh:
            fh.seek(lo)
            blob = fh.read(hi - lo)
        try:
            entry = decode_ids(blob, count)
        except (zlib.error, ValueError) as exc:
            raise StoreError(f"id block {k} is corrupt ({exc}); run 'readtax verify'",
                             self.path) from None
        self._id_cache[k] = entry
        if len(self._id_cache) > self._id_cache_blocks:
            self._id_cache.popitem(last=False)
        return entry

    def headers_by_rank(self, id_ranks) -> list[str]:
        """Full header lines of the reads at id-order positions ``id_ranks``."""
        q = np.asarray(id_ranks, dtype=np.int64).ravel()
        blocks = np.searchsorted(self.id_index[:, 0].astype(np.int64), q, side="right") - 1
        order = np.argsort(blocks, kind="stable")
        parts = []
        for k in np.unique(blocks).tolist():
            raw, bounds = self.id_block(k)
            rows = q[order[np.searchsorted(blocks[order], k):
                           np.searchsorted(blocks[order], k, side="right")]]
            b = bounds[rows - int(self.id_index[k, 0])]
            # One ragged copy and one decode per block, newline-separated, then split in C.
            idx, _ = ragged_index(b[:, 0], b[:, 1] - b[:, 0] + 1)
            parts.append(np.frombuffer(raw, np.uint8)[idx])
        if not parts:
            return []
        text = np.concatenate(parts).tobytes().decode("utf-8", "replace")
        grouped = text.split("\n")[:-1]
        out: list[str] = [""] * len(q)
        for pos, h in zip(order.tolist(), grouped):
            out[pos] = h
        return out

    def headers(self, indices) -> list[str]:
        """Full header lines of the reads at physical ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        self._check_indices(idx)
        return self.headers_by_rank(self.id_rank(idx))

    def ids(self, indices) -> list[str]:
        """Read ids (first word of each header, as Kraken2 writes them)."""
        return [h.split(None, 1)[0] if h.strip() else "" for h in self.headers(indices)]


def reopen(path: str, cache: int, gather: str = "pread") -> ReadStore:
    """A store opened again by path (how a pickled :class:`ReadStore` comes back)."""
    return ReadStore(path, id_cache_blocks=cache, gather=gather)


def store_stats(store: ReadStore):
    """:class:`readtax.stats.ReadStats` of a store, from its manifest (instant)."""
    from ..stats import ReadStats

    m = store.manifest
    st = m.get("stats", {})
    hist = {int(k): int(v) for k, v in st.get("length_histogram", {}).items()}
    counts = np.zeros(max(hist, default=-1) + 1, np.int64)
    for k, v in hist.items():
        counts[k] = v
    return ReadStats(
        reads=store.n, bases=store.total_bases, non_acgt=int(st.get("non_acgt", 0)),
        min_len=int(m.get("min_length", 0)),
        max_len=int(m["max_length"]), length_counts=counts,
        class_counts={i: int(c) for i, c in enumerate(store.class_counts) if c},
        skipped_unknown=int(m.get("skipped_unknown", 0)),
        skipped_bad=dict(m.get("skipped_bad", {})), files=[str(store.path)],
    )
