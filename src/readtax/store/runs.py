"""Pack, pass 1: parse, label and 2-bit encode reads into temporary *run* files by bucket.

Each unit of input (:func:`pack_unit`, one per worker task) hashes its reads into buckets and
flushes them, a run buffer at a time, to run files grouped by bucket, the last bucket first,
each batch's part of a bucket in class order. :class:`Pass1` folds the units' results in as
they finish and leaves, for pass 2 (:mod:`readtax.store.buckets`), the runs' bucket tables
(bucket-major) and, without a mapping, each unit's class lookup table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _native
from ..errors import StoreError
from ..hashing import TAG_BUCKET, hash64
from ..labels import Labeler, LabelMap, LabelScheme
from ..parallel import Unit
from ..stats import MAX_LEN_BIN
from .codecs import N_ASCII

COLS = 5  # reads, n-runs, packed bytes, header bytes, bases
F_TABLE = "table.i64"  # the runs' bucket tables, bucket-major (see transpose_table)
TABLE_BLOCK = 4 << 20  # bytes of run tables transposed at a time


@dataclass(frozen=True, eq=False)
class Pass1Context:
    """What every pass-1 worker needs: the same for all units (see :mod:`readtax.parallel`
    for how it reaches forked workers)."""

    scheme: LabelScheme
    label_map: LabelMap | None  # the mapping; None: classes are discovered
    skip_unknown: bool
    skip_bad: bool
    seed: int
    n_buckets: int
    runs_dir: Path
    run_bytes: int


@dataclass
class RunInfo:
    """A pass-1 run file, bucket-major with the last bucket first: bucket b's section holds
    its class keys, lengths and header lengths (uint32), N-run reads, starts and lengths
    (uint32), packed bases and headers, in that order. ``cum[b]`` sums, over the buckets
    before b, its reads, N runs, packed bytes, header bytes and bases (shape (B + 1, 5)).

    Pass 2 builds buckets first to last, so the sections it has read are always the tail of
    the file: truncating it there hands their pages back while pass 2 writes the store (see
    :func:`section_bytes`)."""

    path: str
    unit: int
    cum: np.ndarray


@dataclass
class UnitResult:
    runs: list[RunInfo]
    keys: tuple[np.ndarray, np.ndarray] | None  # this unit's classes: keys, tax ids (local order)
    counts: np.ndarray  # reads per local class index
    skipped: int
    skipped_keys: dict
    reads: int = 0
    bases: int = 0
    non_acgt: int = 0
    skipped_bad: dict = field(default_factory=dict)
    min_len: int = 0
    max_len: int = 0
    length_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def n_runs(seq: np.ndarray, seq_offsets: np.ndarray):
    """(read, start within read, length) of every run of N bases of a batch."""
    npos = np.flatnonzero(seq == N_ASCII)
    if not len(npos):
        z = np.zeros(0, np.uint32)
        return z, z, z, 0
    read = np.searchsorted(seq_offsets, npos, side="right") - 1
    brk = np.ones(len(npos), bool)
    brk[1:] = (np.diff(npos) != 1) | (np.diff(read) != 0)
    first = np.flatnonzero(brk)
    run_len = np.diff(np.append(first, len(npos)))
    run_read = read[first]
    run_start = npos[first] - seq_offsets[run_read]
    return (run_read.astype(np.uint32), run_start.astype(np.uint32), run_len.astype(np.uint32),
            len(npos))


class RunBuffer:
    """Pass-1 reads of one unit, flushed to a run file grouped by bucket.

    Each batch is sorted by bucket, and by class within a bucket, as it arrives (a small,
    cache-resident sort: ``_native.split_batch``) and kept whole with the offsets of its
    buckets' parts; a flush writes the bucket-major file with gathered writes straight from
    the parts (``_native.write_parts``). No Python work per bucket: a full-size input has
    about a thousand buckets.
    """

    FIELDS = ("cls", "len", "hlen", "rr", "rs", "rl", "packed", "hdr")

    def __init__(self, unit: int, tmp: Path, n_buckets: int) -> None:
        self.unit = unit
        self.tmp = tmp
        self.n_buckets = n_buckets
        self.runs: list[RunInfo] = []
        self._reset()

    def _reset(self) -> None:
        # field -> batch -> data, and field -> batch -> byte offsets of the buckets' parts
        self.parts: list[list[np.ndarray]] = [[] for _ in self.FIELDS]
        self.bounds: list[list[np.ndarray]] = [[] for _ in self.FIELDS]
        # table[b] = reads, N runs, packed bytes, header bytes, bases of bucket b in this run
        self.table = np.zeros((self.n_buckets, COLS), np.int64)
        self.nbytes = 0

    def add(self, cls: np.ndarray, lengths: np.ndarray, packed: np.ndarray,
            headers: np.ndarray, header_offsets: np.ndarray, runs, bucket_key: int, first: int,
            class_rank: np.ndarray | None, class_counts: np.ndarray,
            length_hist: np.ndarray) -> tuple[int, int]:
        """Add a batch: its class keys, lengths, 2-bit rows (one per read, back to back),
        headers, N runs and (``bucket_key``, ``first``) the hash of its unit and the number
        of its first read there, which place each read in a bucket. ``class_rank[key]``
        orders the class keys as the final label map will (None: the keys are final class
        indices already). Counts the reads into ``class_counts`` (by key) and
        ``length_hist`` (by length, the last bin for longer) and returns the shortest and
        longest length."""
        nbk = self.n_buckets
        m = len(cls)
        order = np.empty(m, np.int64)
        u32 = np.empty((3, m), np.uint32)  # class keys, lengths, header lengths
        rows = np.empty(len(packed), np.uint8)
        hdr = np.empty(len(headers), np.uint8)
        bounds = np.empty((4, nbk + 1), np.int64)  # reads, row bytes, header bytes, bases
        rank = np.zeros(0, np.int64) if class_rank is None or nbk == 1 else class_rank
        span = _native.split_batch(
            h0=bucket_key, k0=first, n_buckets=nbk, cls=np.ascontiguousarray(cls, np.int64),
            rank=rank, lengths=np.ascontiguousarray(lengths, np.int64), packed=packed,
            hdr=headers, hdr_off=np.ascontiguousarray(header_offsets, np.int64), order=order,
            out_cls=u32[0], out_len=u32[1], out_hlen=u32[2], out_packed=rows, out_hdr=hdr,
            bounds=bounds, class_counts=class_counts, length_hist=length_hist)
        rr, rs, rl = runs
        if len(rr):
            # N runs follow their reads to their new positions, in that order (which groups
            # them by bucket; a stable sort keeps each read's runs in order), and a run's read
            # number counts from the first read of its bucket's section.
            pos = np.empty(m, np.int64)
            pos[order] = np.arange(m)
            rr = pos[np.asarray(rr, np.int64)]
            rorder = np.argsort(rr, kind="stable")
            rr, rs, rl = rr[rorder], rs[rorder], rl[rorder]
            run_bucket = np.searchsorted(bounds[0], rr, side="right") - 1
            rr = rr - bounds[0][run_bucket] + self.table[run_bucket, 0]
        else:
            run_bucket = np.zeros(0, np.int64)
        run_bounds = np.searchsorted(run_bucket, np.arange(nbk + 1))
        rec, run = 4 * bounds[0], 4 * run_bounds
        data = (u32[0], u32[1], u32[2], np.asarray(rr, np.uint32), np.asarray(rs, np.uint32),
                np.asarray(rl, np.uint32), rows, hdr)
        for f, (arr, off) in enumerate(zip(data, (rec, rec, rec, run, run, run, bounds[1],
                                                  bounds[2]))):
            self.parts[f].append(arr)
            self.bounds[f].append(np.ascontiguousarray(off))
        self.table[:, 0] += np.diff(bounds[0])
        self.table[:, 1] += np.diff(run_bounds)
        self.table[:, 2:] += np.diff(bounds[1:], axis=1).T
        self.nbytes += int(bounds[3, -1] + bounds[2, -1])
        return span

    def flush(self) -> None:
        if not self.table[:, 0].any():
            return
        path = self.tmp / f"u{self.unit:06d}-{len(self.runs):04d}.run"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:  # gathered writes straight from the batches' parts, the last bucket first
            _native.write_parts(fd, self.parts, self.bounds, self.n_buckets)
        finally:
            os.close(fd)
        cum = np.zeros((self.n_buckets + 1, COLS), np.int64)
        np.cumsum(self.table, axis=0, out=cum[1:])
        self.runs.append(RunInfo(str(path), self.unit, cum))
        self._reset()


def section_bytes(cum: np.ndarray) -> np.ndarray:
    """Bytes of a run file's sections from the ``cum`` columns (reads, N runs, packed bytes,
    header bytes): 12 per read and per N run (three uint32 each) plus the data."""
    return 12 * cum[..., 0] + 12 * cum[..., 1] + cum[..., 2] + cum[..., 3]


def section_start(total: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Where a bucket's section starts in run files, from the runs' ``cum`` rows for all
    buckets (``total``) and for the buckets up to and including it (``above``): after the
    sections of the buckets above it."""
    return section_bytes(total) - section_bytes(above)


def advance(bufs: list[memoryview], n: int) -> None:
    """Drop the first ``n`` bytes of a list of buffers (after a gathered read or write)."""
    while n and bufs:
        if n >= len(bufs[0]):
            n -= len(bufs[0])
            bufs.pop(0)
        else:
            bufs[0] = bufs[0][n:]
            n = 0


def pack_unit(item: tuple[int, Unit], ctx: Pass1Context) -> UnitResult:
    """Pass 1 over one unit of input: its reads into run files by bucket, and its counts."""
    unit_no, unit = item
    labeler = Labeler(ctx.scheme, ctx.label_map, skip_unknown=ctx.skip_unknown,
                      skip_bad=ctx.skip_bad)
    reader = unit.reader(skip_bad=ctx.skip_bad, two_bit=True)
    buf = RunBuffer(unit_no, ctx.runs_dir, ctx.n_buckets)
    # Read k of the unit goes to bucket hash64(seed, TAG_BUCKET, unit, k) % buckets.
    bucket_key = int(hash64(ctx.seed, TAG_BUCKET, unit_no)[0])
    res = UnitResult([], None, np.zeros(0, np.int64), 0, {})
    kept = 0
    hist = np.zeros(MAX_LEN_BIN + 1, np.int64)  # the length histogram of readtax.stats
    class_counts = np.zeros(0 if ctx.label_map is None else len(ctx.label_map), np.int64)
    for batch in reader:
        cls = labeler.classes(batch)
        if (cls < 0).any():
            batch = batch.take(np.flatnonzero(cls >= 0))
            cls = cls[cls >= 0]
        m = len(batch)
        if not m:
            continue
        lengths = batch.lengths
        if batch.non_acgt == 0:  # the reader proved the batch is pure ACGT
            rr = rs = rl = np.zeros(0, np.uint32)
            n_count = 0
        else:
            rr, rs, rl, n_count = n_runs(batch.seq, batch.seq_offsets)
        rank = labeler.class_rank()
        if rank is not None and len(rank) > len(class_counts):  # classes found: room for them
            class_counts = np.concatenate([class_counts,
                                           np.zeros(2 * len(rank) - len(class_counts), np.int64)])
        lo, hi = buf.add(cls, lengths, batch.two_bit(), batch.headers, batch.header_offsets,
                         (rr, rs, rl), bucket_key, kept, rank, class_counts, hist)
        res.min_len = lo if res.reads == 0 else min(res.min_len, lo)
        res.max_len = max(res.max_len, hi)
        res.reads += m
        res.bases += int(lengths.sum())
        res.non_acgt += n_count
        kept += m
        if buf.nbytes >= ctx.run_bytes:
            buf.flush()
    buf.flush()
    res.runs = buf.runs
    res.skipped = labeler.skipped
    res.skipped_keys = dict(labeler.skipped_keys)
    res.skipped_bad = dict(reader.skipped)
    if labeler.skipped_bad:
        res.skipped_bad["header does not fit the label scheme"] = labeler.skipped_bad
    res.length_counts = hist[: res.max_len + 1] if res.reads else np.zeros(0, np.int64)
    if ctx.label_map is None:
        res.keys = labeler.discovered()
        class_counts = class_counts[: len(res.keys[0])]
    res.counts = class_counts
    return res


def transpose_table(src: Path, dst: Path, runs: int, rows: int) -> None:
    """Rewrite the runs' bucket tables from run-major ``src`` (runs, rows, COLS), as pass 1
    appends them, to bucket-major ``dst`` (rows, runs, COLS), where one bucket's row of every
    run is contiguous. Pass 2 reads one or two such rows per bucket; read run-major they are
    strided over the whole table, which is runs x buckets x 40 bytes (quadratic in the
    input): a process mapping it would end up holding all of it. Done a block of rows at a
    time, in memory bounded by ``TABLE_BLOCK`` bytes, with one pread per run per block."""
    row_bytes = COLS * 8
    step = max(1, TABLE_BLOCK // max(1, runs * row_bytes))
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for lo in range(0, rows, step):
            hi = min(rows, lo + step)
            block = np.empty((runs, hi - lo, COLS), np.int64)
            for r in range(runs):
                read_exact(fin.fileno(), [memoryview(block[r]).cast("B")],
                           (r * rows + lo) * row_bytes, str(src))
            fout.write(np.ascontiguousarray(block.transpose(1, 0, 2)).tobytes())


def read_exact(fd: int, views: list[memoryview], offset: int, path: str) -> None:
    """Fill the buffers in order from ``offset`` (scattered reads)."""
    views = [v for v in views if len(v)]
    while views:
        got = os.preadv(fd, views[:1024], offset)
        if got <= 0:
            raise StoreError(f"temporary run file {path} is shorter than recorded", path)
        offset += got
        advance(views, got)


class Pass1:
    """Pass-1 results folded in as units finish, in memory O(classes + buckets).

    What grows with the input goes to the run directory instead: each run's bucket table is
    appended to ``cum.i64`` (which :meth:`finish` rewrites bucket-major) and each unit's
    discovered class keys to a file of its own, from which :meth:`finish` writes the units'
    class lookup tables (``luts.i32``) for pass 2.
    """

    def __init__(self, runs_dir: Path, scheme: LabelScheme, mapping: LabelMap | None,
                 n_buckets: int) -> None:
        self.dir = runs_dir
        self.scheme = scheme
        self.mapping = mapping
        self.n_buckets = n_buckets
        self.runs: list[tuple[str, int]] = []  # (path, unit) per run
        self.cum_file = open(runs_dir / "cum.i64", "wb")  # noqa: SIM115 - closed in finish()
        self.sizes = np.zeros((n_buckets, COLS), np.int64)  # per bucket (or per run, see below)
        # Without a mapping: the classes found so far (sorted), their tax ids (as first seen)
        # and reads; kept as arrays, since every unit of a full-size input finds thousands.
        self.keys = np.zeros(0, np.int64 if scheme.numeric else object)
        self.key_tax = np.zeros(0, np.int64)
        self.key_counts = np.zeros(0, np.int64)
        self.class_counts = np.zeros(0 if mapping is None else len(mapping), np.int64)
        self.units = 0
        self.reads = self.bases = self.non_acgt = self.skipped = 0
        self.min_len, self.max_len = None, 0
        self.hist = np.zeros(0, np.int64)
        self.skipped_keys: dict = {}
        self.skipped_bad: dict = {}

    def add(self, unit: int, res: UnitResult) -> None:
        for run in res.runs:
            self.runs.append((run.path, run.unit))
            self.cum_file.write(np.ascontiguousarray(run.cum, np.int64).tobytes())
            self.sizes += np.diff(run.cum, axis=0)
        if res.keys is not None:
            keys, tax = res.keys
            self._merge_keys(keys, tax, res.counts)
            if self.scheme.numeric:
                np.save(self.dir / f"u{unit:06d}.keys.npy", keys)
            else:
                (self.dir / f"u{unit:06d}.keys.json").write_text(json.dumps(keys.tolist()),
                                                                  "utf-8")
        elif len(res.counts):
            self.class_counts[: len(res.counts)] += res.counts
        self.units = max(self.units, unit + 1)
        if res.reads:
            self.min_len = res.min_len if self.min_len is None else min(self.min_len, res.min_len)
            self.max_len = max(self.max_len, res.max_len)
        self.reads += res.reads
        self.bases += res.bases
        self.non_acgt += res.non_acgt
        self.skipped += res.skipped
        self.hist = merge_hist(self.hist, res.length_counts)
        for k, v in res.skipped_keys.items():
            self.skipped_keys[str(k)] = self.skipped_keys.get(str(k), 0) + v
        for k, v in res.skipped_bad.items():
            self.skipped_bad[k] = self.skipped_bad.get(k, 0) + v

    def _merge_keys(self, found: np.ndarray, found_tax: np.ndarray, counts: np.ndarray) -> None:
        """Fold a unit's classes in: the tax id first seen for a class stays (earlier units
        come first in the concatenation), reads add up."""
        keys = np.concatenate([self.keys, found])
        tax = np.concatenate([self.key_tax, found_tax])
        c = np.concatenate([self.key_counts, np.asarray(counts, np.int64)[: len(found)]])
        self.keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        self.key_tax = tax[first]
        self.key_counts = np.zeros(len(self.keys), np.int64)
        np.add.at(self.key_counts, inverse, c)

    def label_map(self) -> LabelMap:
        """The mapping, or the classes discovered by all units, sorted by class id (or by name
        for named labels)."""
        if self.mapping is not None:
            return self.mapping
        if self.scheme.numeric:
            return LabelMap(self.keys, [str(i) for i in self.keys.tolist()], self.key_tax)
        return LabelMap(np.arange(len(self.keys), dtype=np.int64), list(self.keys),
                        np.full(len(self.keys), -1, np.int64))

    def finish(self, label_map: LabelMap) -> tuple[np.ndarray, np.ndarray]:
        """Class counts in ``label_map`` order; writes ``luts.i32`` and returns its offsets."""
        self.cum_file.close()
        src = self.dir / "cum.i64"
        transpose_table(src, self.dir / F_TABLE, len(self.runs), self.n_buckets + 1)
        src.unlink()
        offsets = np.zeros(self.units + 1, np.int64)
        if self.mapping is not None:
            return self.class_counts, offsets
        counts = np.zeros(len(label_map), np.int64)
        counts[label_map.index(self.keys)] = self.key_counts
        with open(self.dir / "luts.i32", "wb") as out:
            for u in range(self.units):
                lut = np.zeros(0, np.int32)
                path = self.dir / f"u{u:06d}.keys.npy"
                if path.exists():
                    lut = label_map.index(np.load(path)).astype(np.int32)
                    path.unlink()
                path = self.dir / f"u{u:06d}.keys.json"
                if path.exists():
                    names = np.array(json.loads(path.read_text("utf-8")), dtype=object)
                    lut = label_map.index(names).astype(np.int32)
                    path.unlink()
                out.write(lut.tobytes())
                offsets[u + 1] = offsets[u] + len(lut)
        return counts, offsets


def merge_hist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sum of two length histograms of any lengths (may reuse either array)."""
    if len(b) > len(a):
        a, b = b.copy(), a
    a[: len(b)] += b
    return a


