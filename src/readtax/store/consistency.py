"""Internal consistency of a store: the checks ``verify`` runs after the checksums.

Opening a store runs the cheap part (:meth:`Consistency.shapes`: array lengths and the class
table's sums); ``verify`` runs all of it, reading every offset, class, N run and id block a
chunk at a time.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

from ..errors import StoreError
from .codecs import decode_ids
from .format import F_BASES, F_BCLASS, F_BUCKETS, F_IDINDEX, F_IDS, F_NFLAGS, F_OFFSETS, F_ORDER

if TYPE_CHECKING:
    from .reader import ReadStore

CHUNK = 1 << 20  # entries checked at a time, so verify's memory does not grow with the store


class Consistency:
    """Internal consistency of a store whose files have the recorded sizes and checksums."""

    def __init__(self, store: ReadStore) -> None:
        self.s = store

    def fail(self, what: str) -> None:
        raise StoreError(f"inconsistent store: {what}", self.s.path)

    def run(self) -> None:
        self.shapes()
        self.offsets()
        self.buckets()
        self.n_runs()
        self.ids()

    def shapes(self) -> None:
        s = self.s
        n, nc = s.n, len(s.label_map)
        if len(s.class_counts) != nc or int(s.class_counts.sum()) != n:
            self.fail("class_counts do not add up to read_count")
        if len(s.classes) != n:
            self.fail(f"{s.class_file} holds {len(s.classes)} reads, expected {n}")
        if len(s.bases) != -(-s.total_bases // 4):
            self.fail(f"{F_BASES} does not hold {s.total_bases} bases")
        if len(s.nflags) != -(-n // 8):
            self.fail(f"{F_NFLAGS} does not hold {n} flags")
        if len(s.nstart) != len(s.nlen):
            self.fail("N run starts and lengths differ in number")
        if s.n_buckets < 1 or int(s.bucket_starts[0]) != 0 or int(s.bucket_starts[-1]) != n \
                or (np.diff(s.bucket_starts) <= 0).any():
            self.fail(f"{F_BUCKETS} does not split the reads into non-empty buckets")
        if s.bucket_classes.shape != (s.n_buckets, nc):
            self.fail(f"{F_BCLASS} has the wrong shape")
        bc = np.asarray(s.bucket_classes, np.int64)
        if not np.array_equal(bc.sum(axis=0), s.class_counts) or \
                not np.array_equal(bc.sum(axis=1), np.diff(s.bucket_starts)):
            self.fail(f"{F_BCLASS} disagrees with class and bucket sizes")
        if s.order is not None and len(s.order) != n:
            self.fail(f"{F_ORDER} holds {len(s.order)} entries, expected {n}")
        rest = n % 8
        if rest and len(s.nflags) and int(s.nflags[-1]) >> rest:
            self.fail(f"{F_NFLAGS} has flags beyond the last read")

    def offsets(self) -> None:
        s = self.s
        if s.fixed_length:
            if s.total_bases != s.n * int(s.fixed_length):
                self.fail("total_bases is not read_count * fixed_length")
            return
        off = s.offsets_
        if len(off) != s.n + 1 or int(off[0]) != 0 or int(off[-1]) != s.total_bases:
            self.fail(f"{F_OFFSETS} does not span the bases")
        for a in range(0, s.n, CHUNK):
            d = np.diff(off[a : a + CHUNK + 1].astype(np.int64))
            if (d < 1).any() or (d > s.max_length).any():
                i = a + int(np.flatnonzero((d < 1) | (d > s.max_length))[0])
                self.fail(f"read {i} has length {int(d[i - a])} (expected 1..{s.max_length})")

    def buckets(self) -> None:
        s = self.s
        nc = len(s.label_map)
        for b in range(s.n_buckets):
            lo, hi = int(s.bucket_starts[b]), int(s.bucket_starts[b + 1])
            cls = np.asarray(s.classes[lo:hi], np.int64)
            if len(cls) and int(cls.max()) >= nc:
                self.fail(f"a class index in bucket {b} is >= the {nc} classes")
            if not np.array_equal(np.bincount(cls, minlength=nc), s.bucket_classes[b]):
                self.fail(f"{F_BCLASS} row {b} does not count the classes of bucket {b}")
            if s.shuffled:
                in_id_order = cls[s.physical(np.arange(lo, hi)) - lo]
            else:
                order = np.asarray(s.order[lo:hi], np.int64)
                if not np.array_equal(np.bincount(order, minlength=hi - lo), np.ones(hi - lo)):
                    self.fail(f"{F_ORDER} is not a permutation within bucket {b}")
                in_id_order = cls[order]
            if (np.diff(in_id_order) < 0).any():
                self.fail(f"the class order of bucket {b} is not sorted by class")

    def n_runs(self) -> None:
        s = self.s
        if len(s.nstart) == 0:
            if int(np.count_nonzero(s.nflags)):
                self.fail("reads are flagged as having N but there are no N runs")
            return
        n_total = 0
        prev_end = -1
        for a in range(0, len(s.nstart), CHUNK):
            st = s.nstart[a : a + CHUNK].astype(np.int64)
            ln = s.nlen[a : a + CHUNK].astype(np.int64)
            end = st + ln
            if (ln < 1).any() or st[0] < prev_end or (st[1:] < end[:-1]).any() \
                    or int(end[-1]) > s.total_bases:
                self.fail("N runs are not sorted, disjoint and inside the bases")
            prev_end = int(end[-1])
            n_total += int(ln.sum())
            first, last = self._read_of(st), self._read_of(end - 1)
            if (first != last).any():
                self.fail("an N run crosses the end of a read")
        if n_total != int(s.manifest.get("stats", {}).get("non_acgt", n_total)):
            self.fail("the N runs do not add up to the recorded N count")
        for a in range(0, s.n, CHUNK * 8):
            b = min(a + CHUNK * 8, s.n)
            lo_base = int(s.base_offsets([a])[0])
            hi_base = s.total_bases if b == s.n else int(s.base_offsets([b])[0])
            r0, r1 = np.searchsorted(s.nstart, np.array([lo_base, hi_base], np.uint64))
            has = np.zeros(b - a, bool)
            has[self._read_of(s.nstart[r0:r1].astype(np.int64)) - a] = True
            flags = np.unpackbits(np.asarray(s.nflags[a // 8 : -(-b // 8)]),
                                  bitorder="little")[: b - a].astype(bool)
            if not np.array_equal(has, flags):
                i = a + int(np.flatnonzero(has != flags)[0])
                self.fail(f"the N flag of read {i} disagrees with the N runs")

    def _read_of(self, base: np.ndarray) -> np.ndarray:
        s = self.s
        if s.fixed_length:
            return base // int(s.fixed_length)
        return np.searchsorted(s.offsets_, base.astype(np.uint64), side="right") - 1

    def ids(self) -> None:
        s = self.s
        idx = np.asarray(s.id_index, np.int64)
        size = s.manifest["files"][F_IDS]["size"]
        if len(idx) < 1 or idx[0, 0] != 0 or idx[-1, 0] != s.n or idx[0, 1] != 0 \
                or idx[-1, 1] != size or (np.diff(idx, axis=0) < 0).any():
            self.fail(f"{F_IDINDEX} does not cover the reads and {F_IDS}")
        bucket = s.bucket_of(idx[:-1, 0])
        if (idx[1:, 0] > s.bucket_starts[bucket + 1]).any():
            self.fail("an id block crosses a bucket boundary")
        with open(s.path / F_IDS, "rb") as fh:
            for k in range(len(idx) - 1):
                try:
                    decode_ids(fh.read(int(idx[k + 1, 1] - idx[k, 1])),
                               int(idx[k + 1, 0] - idx[k, 0]))
                except (zlib.error, ValueError) as exc:
                    self.fail(f"id block {k} does not decode ({exc})")


