"""Exact per-class random subsets of read sets, in two streaming passes (``readtax subset``).

How reads are chosen (memory O(classes x work units), never O(reads)):

1. The inputs are cut into *work units*: byte ranges of a fixed size for plain files (64 MB,
   or more for inputs over 32 GB so that there are at most 512 units), whole files for gzip.
   Units depend on the inputs only, never on the number of workers, so the result for a seed
   is the same byte for byte with any ``--workers``.
2. Pass 1 counts reads per class in every unit, in parallel.
3. Per class, the train quota ``min(N, available)`` is split over the units with a sequential
   (multivariate) hypergeometric draw, then the validation quota over the reads each unit has
   left. Train is filled first: a class with fewer than N + M reads gives ``min(N, available)``
   reads to train and the rest (at most M) to validation.
4. Pass 2 reads every unit again. For each batch the number of train and validation reads of
   each class is drawn hypergeometrically from (reads of the class in this batch, reads of the
   class left in the unit, quota left), and that many reads of the class in the batch are
   picked uniformly (random keys, ranked within the class). All of it is whole-array numpy
   work per batch; each unit has its own generator keyed by (seed, unit).

Every step draws a uniformly random subset given the previous one, so the union is a uniform
random subset of exactly the quota for every class, and train and validation are disjoint.

Records are written as the reader parsed them: one sequence line, bases upper-cased with IUPAC
codes other than ACGT as N (the form every readtax tool sees), headers and qualities unchanged.
Output keeps input order (each unit appends its records in unit order) unless ``shuffle``:
then a bucket shuffle through temporary files gives a uniformly random order with bounded
memory. Output names ending in ``.gz`` are gzip (one member per unit or bucket, compressed in
parallel; any gzip reader reads multi-member files). Outputs appear under their final name only
when complete.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np

from . import _native
from .errors import InputError, UsageError
from .fastx import ReadBatch, gather_ragged, sniff_format
from .labels import Labeler, LabelMap, LabelScheme, load_mapping, make_scheme, report_skipped
from .outputs import atomic_path, check_output_path, clean_stale, temp_name
from .parallel import (
    UNIT_BYTES,
    Unit,
    check_inputs,
    default_workers,
    fixed_units,
    map_units,
    map_units_progress,
)

log = logging.getLogger(__name__)

MAX_UNITS = 512  # bounds the units x classes count matrices (512 x 3,507 x 8 B = 14 MB)
READ_CHUNK = 4 << 20  # fixed so that batch boundaries (and so the draws) never change
SHUFFLE_BUCKET_BYTES = 32 << 20  # target bucket size (grows past MAX_BUCKETS x this)
MAX_BUCKETS = 1024
RUN_BYTES = 32 << 20  # a shuffling worker buffers at most this much per side
GZIP_LEVEL = 2
STRATIFIED_CHUNK = 1 << 20
_HG_LIMIT = 10**9  # numpy's hypergeometric needs ngood, nbad below this

# Keys mixed into the seed so that independent decisions draw from independent streams.
_TAG_QUOTA = 0
_TAG_SELECT = 1
_TAG_BUCKET = 2
_TAG_SHUFFLE = 3

_GT, _AT, _NL, _PLUS = ord(">"), ord("@"), 10, ord("+")


# -- the exact selection core --------------------------------------------------------------------


def _hypergeometric(rng: np.random.Generator, good: np.ndarray, bad: np.ndarray,
                    nsample: np.ndarray) -> np.ndarray:
    """Good items in ``nsample`` draws without replacement, elementwise."""
    good = np.asarray(good, dtype=np.int64)
    bad = np.asarray(bad, dtype=np.int64)
    if len(good) and (good.max() >= _HG_LIMIT or bad.max() >= _HG_LIMIT):
        raise UsageError("a class holds 10^9 reads or more; exact subsets support fewer per class")
    return rng.hypergeometric(good, bad, np.asarray(nsample, dtype=np.int64)).astype(np.int64)


def split_quota(counts: np.ndarray, quota: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spread ``quota[c]`` draws without replacement over blocks holding ``counts[b, c]`` reads.

    Returns ``take[b, c]``: a multivariate hypergeometric draw per class (block by block, each a
    hypergeometric of this block against the blocks after it), vectorised over classes, in the
    integer type of ``counts`` (blocks x classes is the one table of subset that grows with the
    input, so callers keep it in int32 where that holds every count).
    """
    counts = np.asarray(counts)
    if counts.dtype.kind not in "iu":
        counts = counts.astype(np.int64)
    left = counts.sum(axis=0, dtype=np.int64)
    need = np.minimum(np.asarray(quota, dtype=np.int64), left)
    take = np.zeros_like(counts)
    for b in range(len(counts)):
        have = counts[b]
        act = np.flatnonzero((need > 0) & (have > 0))
        if len(act):
            take[b, act] = _hypergeometric(rng, have[act], left[act] - have[act], need[act])
        need -= take[b]
        left -= have
    return take


class BlockSelector:
    """Picks exactly the planned train and validation reads of one block, batch by batch.

    ``available[c]`` reads of class c will arrive in total; ``train[c]`` and ``val[c]`` of them
    are to be chosen (disjoint, uniformly). :meth:`select` takes the class index of every read
    of the next batch (-1 = not eligible) and returns the train and validation masks.

    Sequential selection sampling (Knuth's Algorithm S, in the compiled core): a read goes to
    train with probability (train still needed) / (reads of its class still to come), else to
    validation with probability (validation still needed) / (still to come). Every subset of
    the exact sizes is equally likely, and the draw depends on ``rng`` only, not on how the
    block is cut into batches.
    """

    def __init__(self, available: np.ndarray, train: np.ndarray, val: np.ndarray | None,
                 rng: np.random.Generator) -> None:
        self.left = np.array(available, dtype=np.int64)
        self.train = np.array(train, dtype=np.int64)
        self.val = np.zeros_like(self.train) if val is None else np.array(val, dtype=np.int64)
        self.state = rng.integers(0, 2**63, size=1, dtype=np.int64).view(np.uint64)
        self.n_classes = len(self.left)

    def select(self, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty(len(cls), np.uint8)
        bad = _native.select_reads(np.ascontiguousarray(cls, dtype=np.int64), self.left,
                                   self.train, self.val, self.state, out)
        if bad >= 0:
            raise _CountMismatch
        return out == 1, out == 2

    def done(self) -> bool:
        """True when every planned read was seen and chosen."""
        return not (self.left.any() or self.train.any() or self.val.any())


class _CountMismatch(Exception):
    """A block holds more reads of a class than its count said (the input changed)."""


def stratified_indices(classes, per_class: int | np.ndarray, seed: int = 0, *,
                       num_classes: int | None = None,
                       chunk_size: int = STRATIFIED_CHUNK) -> np.ndarray:
    """Sorted indices of exactly ``min(per_class, available)`` reads of every class.

    ``classes`` is the class index of every read (negative = never chosen); any sliceable
    array works, including a ``np.memmap`` of a packed store: it is read in chunks twice
    (count, then select), so memory is O(classes x chunks + result), not O(reads).
    ``per_class`` may be one number or one per class. Each class's subset is uniformly random;
    the result depends on ``seed`` and ``chunk_size`` only.
    """
    n = len(classes)
    if seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed}")
    chunk = max(int(chunk_size), -(-n // MAX_UNITS), 1)
    starts = list(range(0, n, chunk))
    per_chunk = []
    width = int(num_classes or 0)
    for s in starts:
        c = np.asarray(classes[s : s + chunk]).astype(np.int64, copy=False)
        counts = np.bincount(c[c >= 0])
        width = max(width, len(counts))
        per_chunk.append(counts)
    counts = np.zeros((len(starts), width), dtype=np.int64)
    for i, c in enumerate(per_chunk):
        counts[i, : len(c)] = c
    quota = np.broadcast_to(np.asarray(per_class, dtype=np.int64), (width,))
    if (quota < 0).any():
        raise UsageError("per_class must not be negative")
    take = split_quota(counts, quota, np.random.default_rng([seed, _TAG_QUOTA]))
    out = [np.zeros(0, dtype=np.int64)]
    for i, s in enumerate(starts):
        if not take[i].any():
            continue
        c = np.asarray(classes[s : s + chunk]).astype(np.int64, copy=False)
        sel = BlockSelector(counts[i], take[i], None, np.random.default_rng([seed, _TAG_SELECT, i]))
        chosen, _ = sel.select(c)
        out.append(s + np.flatnonzero(chosen))
    return np.concatenate(out)


# -- work units and record output ----------------------------------------------------------------


def plan_units(paths: Iterable[str | os.PathLike[str]], unit_bytes: int | None = None) -> list[Unit]:
    """Fixed-size byte ranges of plain files, whole gzip files; independent of worker count."""
    paths = check_inputs(paths)
    if unit_bytes is None:
        unit_bytes = max(UNIT_BYTES, -(-sum(os.path.getsize(p) for p in paths) // MAX_UNITS))
    return fixed_units(paths, unit_bytes)


def format_records(batch: ReadBatch, rows: np.ndarray) -> np.ndarray:
    """FASTA (or FASTQ when the batch has qualities) bytes of the selected reads.

    ``rows`` is a boolean mask (records in batch order; the fast path) or an index array.
    """
    raw = batch.raw_records()
    if raw is not None:  # records already in output form: copy their bytes as they are
        buf, rec_bytes = raw
        index = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, dtype=np.int64)
        starts = np.zeros(len(rec_bytes) + 1, dtype=np.int64)
        np.cumsum(rec_bytes, out=starts[1:])
        return gather_ragged(buf, starts, index)[0]
    h_len = np.diff(batch.header_offsets)
    s_len = np.diff(batch.seq_offsets)
    fastq = batch.qual is not None
    if rows.dtype == bool:
        heads = batch.headers[np.repeat(rows, h_len)]
        s_mask = np.repeat(rows, s_len)
        seqs = batch.seq[s_mask]
        quals = batch.qual[s_mask] if fastq else None
        h_len, s_len = h_len[rows], s_len[rows]
    else:
        heads = gather_ragged(batch.headers, batch.header_offsets, rows)[0]
        seqs = gather_ragged(batch.seq, batch.seq_offsets, rows)[0]
        quals = gather_ragged(batch.qual, batch.seq_offsets, rows)[0] if fastq else None
        h_len, s_len = h_len[rows], s_len[rows]
    n = len(h_len)
    one = np.ones(n, dtype=np.int64)
    if fastq:
        # @ H \n S \n + \n Q \n
        runs = np.stack([one, h_len, one, s_len, one, one, one, s_len, one], axis=1)
        const = np.array([_AT, 0, _NL, 0, _NL, _PLUS, _NL, 0, _NL], dtype=np.uint8)
        parts = {1: heads, 3: seqs, 7: quals}
    else:
        runs = np.stack([one, h_len, one, s_len, one], axis=1)
        const = np.array([_GT, 0, _NL, 0, _NL], dtype=np.uint8)
        parts = {1: heads, 3: seqs}
    counts = runs.ravel()
    out = np.repeat(np.tile(const, n), counts)
    for col, data in parts.items():
        pattern = np.zeros(len(const), dtype=bool)
        pattern[col] = True
        out[np.repeat(np.tile(pattern, n), counts)] = data
    return out


def record_sizes(batch: ReadBatch) -> np.ndarray:
    """Bytes of every record of the batch as :func:`format_records` writes it."""
    h_len = np.diff(batch.header_offsets)
    s_len = np.diff(batch.seq_offsets)
    if batch.qual is not None:
        return h_len + 2 * s_len + 6  # '@', '\n', '\n+\n', '\n'
    return h_len + s_len + 3  # '>', '\n', '\n'


class _Piece:
    """A temporary output piece, gzip-compressed as its own member when asked."""

    def __init__(self, path: Path, compress: bool) -> None:
        self.path = path
        self.raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.fh = self.raw
        if compress:
            from isal import igzip

            # filename="" and mtime=0 keep the member independent of the temporary name.
            self.fh = igzip.IGzipFile(filename="", mode="wb", fileobj=self.raw,
                                      compresslevel=GZIP_LEVEL, mtime=0)
        self.bytes = 0

    def write(self, data: np.ndarray) -> None:
        if len(data):
            self.fh.write(memoryview(data))
            self.bytes += len(data)

    def close(self) -> None:
        if self.fh is not self.raw:
            self.fh.close()
        self.raw.close()


class _HeldOutput:
    """A unit's records for one output, kept in memory until the units before it are written.

    Bounded by the unit's size (gzip output compressed as it comes, as its own member); writing
    straight into the final file saves copying every output byte once more.
    """

    def __init__(self, compress: bool) -> None:
        self.parts: list = []
        self.gz = None
        if compress:
            from isal import igzip

            self.sink = io.BytesIO()
            self.gz = igzip.IGzipFile(filename="", mode="wb", fileobj=self.sink,
                                      compresslevel=GZIP_LEVEL, mtime=0)

    def write(self, data: np.ndarray) -> None:
        if not len(data):
            return
        if self.gz is None:
            self.parts.append(data)
        else:
            self.gz.write(memoryview(data))

    def append_to(self, path: str) -> None:
        if self.gz is not None:
            self.gz.close()
            self.parts = [self.sink.getbuffer()] if self.sink.tell() else []
        if self.parts:
            with open(path, "ab") as fh:
                for part in self.parts:
                    fh.write(memoryview(part))
        self.parts = []


# Set before pass 2 starts its (forked) workers: the number of the next unit whose output goes
# to the files, and a condition to wait on. None when units run in this process, in order.
_TURN = None


@contextlib.contextmanager
def _turn(u: int):
    """Hold the output files while writing unit ``u`` (after every unit before it)."""
    if _TURN is None:
        yield
        return
    value, cond = _TURN
    with cond:
        cond.wait_for(lambda: value.value == u)
    try:
        yield
    finally:
        with cond:
            value.value = u + 1
            cond.notify_all()


# -- pass 1: counting ----------------------------------------------------------------------------


@dataclass
class _UnitCounts:
    counts: np.ndarray
    keys: list | None  # class keys of ``counts`` when classes are discovered (no mapping)
    tax: list | None
    skipped: int
    skipped_bad: dict  # reason -> malformed records skipped (skip_bad)
    reads: int
    out_bytes: int


def _count_unit(unit: Unit, scheme: LabelScheme, label_map: LabelMap | None,
                skip_unknown: bool, skip_bad: bool) -> _UnitCounts:
    labeler = Labeler(scheme, label_map, skip_unknown=skip_unknown, skip_bad=skip_bad)
    counts = np.zeros(len(label_map) if label_map is not None else 0, dtype=np.int64)
    reads = out_bytes = 0
    reader = unit.reader(READ_CHUNK, skip_bad=skip_bad)
    for batch in reader:
        cls = labeler.classes(batch)
        bc = np.bincount(cls[cls >= 0], minlength=len(counts))
        if len(bc) > len(counts):
            bc[: len(counts)] += counts
            counts = bc
        else:
            counts += bc
        reads += len(batch)
        out_bytes += int(record_sizes(batch).sum())
    keys = tax = None
    if label_map is None:
        found = labeler.discovered_map()
        keys = found.class_ids.tolist() if scheme.numeric else list(found.names)
        tax = found.tax_ids.tolist()
        counts = np.concatenate([counts, np.zeros(len(keys) - len(counts), np.int64)])
    bad = dict(reader.skipped)
    if labeler.skipped_bad:
        bad["header does not fit the label scheme"] = labeler.skipped_bad
    return _UnitCounts(counts, keys, tax, labeler.skipped, bad, reads, out_bytes)


class _CountMerger:
    """Folds each unit's class counts in as it arrives (pass 1), in O(units x classes) int32.

    Units come in input order. Without a mapping a class key gets a column when first seen
    (its first-seen tax id stays); :meth:`finish` orders the columns as the label map. The
    units' own key and count lists are dropped as soon as they are folded in: held for every
    unit until the end, their Python objects took ~100 MB at 150M reads.
    """

    def __init__(self, scheme: LabelScheme, label_map: LabelMap | None) -> None:
        self.scheme = scheme
        self.label_map = label_map
        self.column: dict = {}  # class key -> column, in order of discovery
        self.tax: list = []
        self.rows: list[np.ndarray] = []

    def add(self, p: _UnitCounts) -> None:
        # A unit's reads bound each of its counts: int32 unless one (gzip) unit has 2^31 reads.
        dtype = np.int32 if p.reads < 2**31 else np.int64
        if p.keys is None:
            row = np.asarray(p.counts).astype(dtype)
        else:
            cols = np.empty(len(p.keys), np.int64)
            for i, (k, t) in enumerate(zip(p.keys, p.tax)):
                c = self.column.get(k)
                if c is None:
                    c = self.column[k] = len(self.tax)
                    self.tax.append(t)
                cols[i] = c
            row = np.zeros(len(self.tax), dtype)
            row[cols] = p.counts
        self.rows.append(row)
        p.counts = p.keys = p.tax = None

    def finish(self) -> tuple[LabelMap, np.ndarray]:
        """The class order (mapping, or discovered keys sorted) and the units x classes counts."""
        label_map, order = self.label_map, None
        if label_map is None:
            keys = sorted(self.column)
            tax = [self.tax[self.column[k]] for k in keys]
            if self.scheme.numeric:
                label_map = LabelMap.from_ids(keys, [str(k) for k in keys], tax)
            else:
                label_map = LabelMap.from_ids(np.arange(len(keys)), keys, tax)
            order = np.empty(len(keys), np.int64)  # column -> class index
            order[[self.column[k] for k in keys]] = np.arange(len(keys))
        wide = any(r.dtype == np.int64 for r in self.rows)
        counts = np.zeros((len(self.rows), len(label_map)), np.int64 if wide else np.int32)
        for u, row in enumerate(self.rows):
            if order is None:
                counts[u] = row
            else:
                counts[u, order[: len(row)]] = row
        self.rows = []
        return label_map, counts


# -- pass 2: selecting and writing ---------------------------------------------------------------


@dataclass
class _Plan:
    """What every pass-2 worker needs besides its own unit."""

    scheme: LabelScheme
    label_map: LabelMap
    skip_unknown: bool
    skip_bad: bool
    tmpdir: str
    seed: int
    compress: dict  # side ("train"/"val") -> gzip the pieces
    buckets: int  # 0 = keep input order
    targets: dict = field(default_factory=dict)  # side -> file the units append to in order


@dataclass
class _UnitResult:
    written_train: np.ndarray
    written_val: np.ndarray
    pieces: dict  # side -> piece path (input order) or (path, bucket offsets) when shuffling


def _select_unit(item: tuple, plan: _Plan) -> _UnitResult:
    u, unit, available, train, val = item
    n_classes = len(plan.label_map)
    labeler = Labeler(plan.scheme, plan.label_map, skip_unknown=plan.skip_unknown,
                      skip_bad=plan.skip_bad)
    selector = BlockSelector(available, train, val, np.random.default_rng([plan.seed, _TAG_SELECT, u]))
    sides = list(plan.compress)
    written = {s: np.zeros(n_classes, dtype=np.int64) for s in ("train", "val")}
    if plan.buckets:
        writer = _BucketWriter(plan, u, sides)
    else:
        held = {s: _HeldOutput(plan.compress[s]) for s in sides}
    try:
        for batch in unit.reader(READ_CHUNK, skip_bad=plan.skip_bad):
            cls = labeler.classes(batch)
            try:
                masks = dict(zip(("train", "val"), selector.select(cls)))
            except _CountMismatch:
                raise InputError("input changed between the two passes (class counts differ)",
                                 unit.path) from None
            for s in sides:
                mask = masks[s]
                if not mask.any():
                    continue
                written[s] += np.bincount(cls[mask], minlength=n_classes)
                if plan.buckets:
                    writer.write(s, batch, mask)
                else:
                    held[s].write(format_records(batch, _rows(mask)))
        if not selector.done():
            raise InputError("input changed between the two passes (class counts differ)",
                             unit.path)
    except BaseException:
        if plan.buckets:
            writer.close()
        raise
    if plan.buckets:
        return _UnitResult(written["train"], written["val"], writer.finish())
    with _turn(u):
        for s in sides:
            held[s].append_to(plan.targets[s])
    return _UnitResult(written["train"], written["val"], {})


def _rows(mask: np.ndarray) -> np.ndarray:
    """The mask itself when many reads are chosen (byte masks are cheapest), else indices
    (whose cost grows with the chosen reads only)."""
    return mask if 4 * np.count_nonzero(mask) >= len(mask) else np.flatnonzero(mask)


class _BucketWriter:
    """Writes a unit's chosen reads grouped by random bucket, in bounded runs.

    Records are buffered (at most ``RUN_BYTES`` per side), then written as one *run*: bucket 0's
    records, bucket 1's, ... with the run's bucket offsets kept. Memory stays bounded and only
    one file per side and unit is open.
    """

    def __init__(self, plan: _Plan, u: int, sides: list[str]) -> None:
        self.plan = plan
        self.sides = sides
        self.rngs = {s: np.random.default_rng([plan.seed, _TAG_BUCKET, i, u])
                     for i, s in enumerate(("train", "val"))}
        self.paths = {s: Path(plan.tmpdir) / f"{s}-{u:06d}" for s in sides}
        self.files = {s: open(self.paths[s], "wb") for s in sides}  # noqa: SIM115
        self.pending: dict[str, dict[int, list[np.ndarray]]] = {s: {} for s in sides}
        self.pending_bytes = dict.fromkeys(sides, 0)
        self.runs: dict[str, list[tuple[int, np.ndarray]]] = {s: [] for s in sides}
        self.pos = dict.fromkeys(sides, 0)

    def write(self, side: str, batch: ReadBatch, mask: np.ndarray) -> None:
        rows = np.flatnonzero(mask)
        bucket = self.rngs[side].integers(0, self.plan.buckets, size=len(rows))
        order = np.argsort(bucket, kind="stable")
        rows, bucket = rows[order], bucket[order]
        data = format_records(batch, rows)
        # Record sizes give the byte boundaries between buckets in ``data``.
        ends = np.cumsum(record_sizes(batch)[rows])
        present, first = np.unique(bucket, return_index=True)
        bounds = np.concatenate([[0], ends[first[1:] - 1], [ends[-1]]])
        pending = self.pending[side]
        for j, b in enumerate(present.tolist()):
            pending.setdefault(b, []).append(data[bounds[j] : bounds[j + 1]])
        self.pending_bytes[side] += len(data)
        if self.pending_bytes[side] >= RUN_BYTES:
            self._flush(side)

    def _flush(self, side: str) -> None:
        sizes = np.zeros(self.plan.buckets, dtype=np.int64)
        fh = self.files[side]
        for b in sorted(self.pending[side]):
            for part in self.pending[side][b]:
                fh.write(memoryview(part))
                sizes[b] += len(part)
        if sizes.any():
            offsets = np.zeros(self.plan.buckets + 1, dtype=np.int64)
            np.cumsum(sizes, out=offsets[1:])
            self.runs[side].append((self.pos[side], offsets))
            self.pos[side] += int(offsets[-1])
        self.pending[side] = {}
        self.pending_bytes[side] = 0

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()

    def finish(self) -> dict:
        """Per side: (unit file, [(run start, run bucket offsets), ...])."""
        for s in self.sides:
            self._flush(s)
        self.close()
        return {s: (str(self.paths[s]), self.runs[s]) for s in self.sides}


def _shuffle_bucket(item: tuple, plan: _Plan, fastq: bool) -> str:
    """Read bucket ``b`` of every unit file, permute its records, write one piece."""
    side, b, segments = item
    chunks = []
    for path, start, end in segments:
        with open(path, "rb") as fh:
            fh.seek(start)
            chunks.append(fh.read(end - start))
    buf = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    del chunks
    lines = 4 if fastq else 2
    ends = np.flatnonzero(buf == _NL)[lines - 1 :: lines] + 1
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    side_no = 0 if side == "train" else 1
    perm = np.random.default_rng([plan.seed, _TAG_SHUFFLE, side_no, b]).permutation(len(ends))
    piece = _Piece(Path(plan.tmpdir) / f"shuffled-{side}-{b:05d}", plan.compress[side])
    try:
        step = 1 << 13  # bounded gather: index arrays for this many records at a time
        for i in range(0, len(perm), step):
            piece.write(gather_ragged(buf, offsets, perm[i : i + step])[0])
    finally:
        piece.close()
    return str(piece.path)


def _append(dst, piece: str) -> None:
    """Append a piece file to ``dst`` and delete it (copied inside the kernel where possible)."""
    with open(piece, "rb") as src:
        dst.flush()
        size = os.fstat(src.fileno()).st_size
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - done)
                if n == 0:
                    break
                done += n
        except (AttributeError, OSError):
            pass  # no copy_file_range here (or not between these files): copy in user space
        if done < size:
            src.seek(done)
            shutil.copyfileobj(src, dst, 1 << 22)
    os.unlink(piece)


# -- the verb --------------------------------------------------------------------------------------


@dataclass
class SubsetSummary:
    """Per-class outcome of :func:`subset` (arrays follow ``label_map`` order)."""

    label_map: LabelMap
    available: np.ndarray
    requested: np.ndarray
    requested_val: np.ndarray
    written_train: np.ndarray
    written_val: np.ndarray
    status: list[str]
    numeric_ids: bool = True
    unknown_classes: list[str] = field(default_factory=list)
    below_min_reads: list[str] = field(default_factory=list)
    skipped_unknown: int = 0
    skipped_bad: dict = field(default_factory=dict)  # reason -> malformed records skipped
    output: str = ""
    val_output: str | None = None
    seed: int = 0

    @property
    def total_train(self) -> int:
        return int(self.written_train.sum())

    @property
    def total_val(self) -> int:
        return int(self.written_val.sum())

    def rows(self) -> list[dict]:
        lm = self.label_map
        return [
            {
                "class_id": int(lm.class_ids[i]) if self.numeric_ids else None,
                "label_name": lm.names[i],
                "available": int(self.available[i]),
                "requested": int(self.requested[i]),
                "written_train": int(self.written_train[i]),
                "written_val": int(self.written_val[i]),
                "requested_val": int(self.requested_val[i]),
                "status": self.status[i],
            }
            for i in range(len(lm))
        ]

    def write_tsv(self, path: str | os.PathLike[str]) -> None:
        from .outputs import atomic_open

        cols = ["class_id", "label_name", "available", "requested", "written_train",
                "written_val", "requested_val", "status"]
        with atomic_open(path) as fh:
            fh.write("\t".join(cols) + "\n")
            for r in self.rows():
                fh.write("\t".join("" if r[c] is None else str(r[c]) for c in cols) + "\n")


def read_class_list(path: str | os.PathLike[str]) -> list[str]:
    """Class ids or names, one per line (first tab-separated column; '#' comments)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such class list")
    names = []
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            text = line.split("\t", 1)[0].strip()
            if text and not text.startswith("#"):
                names.append(text)
    if not names:
        raise InputError("class list names no classes", p)
    return names


def _match_classes(names: list[str], label_map: LabelMap, numeric: bool) -> tuple[np.ndarray, list[str]]:
    """Mask of the listed classes (by class id when numeric, else or also by label name)."""
    keep = np.zeros(len(label_map), dtype=bool)
    unknown = []
    by_name = {n: i for i, n in enumerate(label_map.names)}
    for name in names:
        idx = -1
        if numeric and name.lstrip("-").isdigit():
            idx = int(label_map.index(np.array([int(name)], dtype=np.int64))[0])
        if idx < 0:
            idx = by_name.get(name, -1)
        if idx < 0:
            unknown.append(name)
        else:
            keep[idx] = True
    return keep, unknown


def _quota(available: np.ndarray, per_species: int | None, fraction: float | None) -> np.ndarray:
    """Requested reads per class: N, round(F x available) (halves up), or the smaller of both."""
    req = np.full(len(available), np.iinfo(np.int64).max, dtype=np.int64)
    if per_species is not None:
        req[:] = per_species
    if fraction is not None:
        # Exact decimal arithmetic on F as written (0.3 x 5 is 1.5, which rounds to 2, not the
        # float 1.4999999999999998); one Python operation per class, not per read.
        f = Decimal(repr(float(fraction)))
        half = Decimal(1) / 2
        frac = [int((f * int(a) + half).to_integral_value(rounding=ROUND_FLOOR)) for a in available]
        req = np.minimum(req, np.array(frac, dtype=np.int64))
    return req


@dataclass
class _ClassPlan:
    status: np.ndarray  # object array of status words
    requested: np.ndarray
    requested_val: np.ndarray
    take_train: np.ndarray
    take_val: np.ndarray
    unknown: list[str]
    below: list[str]
    short: int


def _class_plan(label_map: LabelMap, available: np.ndarray, class_names: list[str] | None,
                has_mapping: bool, numeric_ids: bool, min_reads: int, per_species: int | None,
                fraction: float | None, val_per_species: int | None) -> _ClassPlan:
    """Which classes are kept and how many train and validation reads each gets."""
    status = np.array(["kept"] * len(label_map), dtype=object)
    keep = np.ones(len(label_map), dtype=bool)
    unknown: list[str] = []
    if class_names is not None:
        listed, unknown = _match_classes(class_names, label_map, numeric_ids)
        if unknown:
            where = "the mapping" if has_mapping else "the data"
            log.warning("--classes: %d name(s) not found in %s: %s", len(unknown), where,
                        _short_list(unknown))
        status[~listed] = "excluded"
        keep &= listed
    low = keep & (available < min_reads)
    below = [label_map.names[i] for i in np.flatnonzero(low)]
    if below:
        log.info("dropping %d class(es) with fewer than %d reads: %s", len(below), min_reads,
                 _short_list(below))
    status[low] = "below_min_reads"
    keep &= ~low
    requested = np.where(keep, _quota(available, per_species, fraction), 0)
    take_train = np.minimum(requested, available)
    requested_val = np.where(keep, val_per_species or 0, 0)
    # Train is filled first; validation gets what is left, up to its request.
    take_val = np.minimum(requested_val, available - take_train)
    short = keep & ((take_train < requested) | (take_val < requested_val))
    status[short] = "short"
    return _ClassPlan(status, requested, requested_val, take_train, take_val, unknown, below,
                      int(short.sum()))


def _check_args(per_species, fraction, val_output, val_per_species, min_reads, seed, workers,
                labels) -> None:
    def positive_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0

    if per_species is None and fraction is None:
        raise UsageError("give --per-species N and/or --fraction F")
    if per_species is not None and not positive_int(per_species):
        raise UsageError(f"--per-species must be a positive integer, got {per_species}")
    if fraction is not None and not (0 < fraction <= 1):
        raise UsageError(f"--fraction must be in (0, 1], got {fraction}")
    if (val_output is None) != (val_per_species is None):
        raise UsageError("--val-output and --val-per-species go together")
    if val_per_species is not None and not positive_int(val_per_species):
        raise UsageError(f"--val-per-species must be a positive integer, got {val_per_species}")
    if min_reads < 0:
        raise UsageError(f"--min-reads must not be negative, got {min_reads}")
    if seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if labels in (None, "none"):
        raise UsageError("subset needs class labels; choose a label scheme with --labels")


def _input_format(paths: list[str]) -> str:
    formats = {p: sniff_format(p) for p in paths if os.path.getsize(p) > 0}
    kinds = set(formats.values())
    if len(kinds) > 1:
        raise UsageError("inputs mix FASTA and FASTQ: " + ", ".join(
            f"{p} ({f})" for p, f in formats.items()))
    return kinds.pop() if kinds else "fasta"


def _short_list(names: list[str], limit: int = 50) -> str:
    text = ", ".join(names[:limit])
    return text + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def subset(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    per_species: int | None = None,
    fraction: float | None = None,
    val_output: str | os.PathLike[str] | None = None,
    val_per_species: int | None = None,
    classes: str | os.PathLike[str] | Iterable[str] | None = None,
    min_reads: int = 0,
    mapping: str | os.PathLike[str] | LabelMap | None = None,
    labels: str = "lbl",
    skip_unknown: bool = False,
    skip_bad: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    workers: int | None = None,
    summary: str | os.PathLike[str] | None = None,
    force: bool = False,
    unit_bytes: int | None = None,
    progress: bool | None = None,
) -> SubsetSummary:
    """Write exactly ``min(N, available)`` uniformly chosen reads of every class to ``out``.

    ``fraction`` asks for round(F x available) per class instead (halves rounded up; with both,
    the smaller). ``val_output`` gets a disjoint ``min(M, available - train)`` per class: train
    is filled first. ``classes`` (a file or names) keeps only the listed classes; ``min_reads``
    drops classes with fewer reads. Same inputs and seed give byte-identical outputs for any
    ``workers``; ``unit_bytes`` (tests only) changes the work units and so the draw.
    """
    _check_args(per_species, fraction, val_output, val_per_species, min_reads, seed, workers,
                labels)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = check_inputs(inputs)
    out = check_output_path(out, force=force, inputs=paths)
    if val_output is not None:
        val_output = check_output_path(val_output, force=force, inputs=paths)
    if summary is not None:
        summary = check_output_path(summary, force=force, inputs=paths)
    named = [p for p in (out, val_output, summary) if p is not None]
    for p in named:
        if Path(p).is_dir():
            raise UsageError(f"output {p} is a directory, expected a file name")
    if len({Path(p).resolve() for p in named}) < len(named):
        raise UsageError("the output, --val-output and --summary must be different files")
    class_names = None
    if classes is not None:
        class_names = (read_class_list(classes) if isinstance(classes, (str, os.PathLike))
                       else [str(c) for c in classes])
    fmt = _input_format(paths)
    scheme = make_scheme(labels)
    label_map = load_mapping(mapping) if isinstance(mapping, (str, os.PathLike)) else mapping
    workers = default_workers() if workers is None else workers
    units = plan_units(paths, unit_bytes)

    # Pass 1: reads per class per unit.
    t0 = time.monotonic()
    unit_sizes = [u.size for u in units]
    merger, parts = _CountMerger(scheme, label_map), []
    for p in map_units_progress(_count_unit, units, unit_sizes, workers, scheme, label_map,
                                skip_unknown, skip_bad, desc="subset: counting",
                                enabled=progress):
        merger.add(p)
        parts.append(p)
    log.debug("pass 1 (count): %.2f s over %d units", time.monotonic() - t0, len(units))
    label_map, counts = merger.finish()
    numeric_ids = mapping is not None or scheme.numeric
    available = counts.sum(axis=0, dtype=np.int64)
    skipped = sum(p.skipped for p in parts)
    skipped_bad: dict[str, int] = {}
    for p in parts:
        for reason, n in p.skipped_bad.items():
            skipped_bad[reason] = skipped_bad.get(reason, 0) + n

    plan_c = _class_plan(label_map, available, class_names, mapping is not None, numeric_ids,
                         min_reads, per_species, fraction, val_per_species)
    take_train, take_val = plan_c.take_train, plan_c.take_val
    rng = np.random.default_rng([seed, _TAG_QUOTA])
    train_units = split_quota(counts, take_train, rng)
    counts -= train_units  # what is left for validation, in place: no fourth units x classes table
    val_units = split_quota(counts, take_val, rng)
    counts += train_units

    buckets = 0
    if shuffle:
        reads = np.array([max(p.reads, 1) for p in parts], dtype=np.float64)
        chosen = (train_units.sum(axis=1) + val_units.sum(axis=1)).astype(np.float64)
        est = float((np.array([p.out_bytes for p in parts]) * chosen / reads).sum())
        buckets = int(min(MAX_BUCKETS, max(1, math.ceil(est / SHUFFLE_BUCKET_BYTES))))

    # Pass 2: choose, write pieces, join them in order.
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    tmpdir = temp_name(out, "tmp")
    compress = {"train": str(out).endswith(".gz")}
    if val_output is not None:
        compress["val"] = str(val_output).endswith(".gz")
    items = [(u, unit, counts[u], train_units[u], val_units[u]) for u, unit in enumerate(units)]
    written_t = np.zeros(len(label_map), dtype=np.int64)
    written_v = np.zeros(len(label_map), dtype=np.int64)
    global _TURN
    try:
        tmpdir.mkdir()  # inside the try: a Ctrl-C right after mkdir still removes it
        with contextlib.ExitStack() as stack:
            targets = {"train": stack.enter_context(atomic_path(out))}
            if val_output is not None:
                targets["val"] = stack.enter_context(atomic_path(val_output))
            for p in targets.values():
                open(p, "wb").close()  # units append to these in order
            plan = _Plan(scheme, label_map, skip_unknown, skip_bad, str(tmpdir), seed, compress,
                         buckets, {s: str(p) for s, p in targets.items()})
            if workers > 1 and len(units) > 1 and not buckets:
                ctx = mp.get_context("fork")
                _TURN = (ctx.Value("q", 0, lock=False), ctx.Condition())
            t0 = time.monotonic()
            unit_pieces = []
            for res in map_units_progress(_select_unit, items, unit_sizes, workers, plan,
                                          desc="subset: selecting", enabled=progress):
                written_t += res.written_train
                written_v += res.written_val
                if buckets:
                    unit_pieces.append(res.pieces)
            _TURN = None
            log.debug("pass 2 (select, write): %.2f s", time.monotonic() - t0)
            if buckets:
                handles = {s: stack.enter_context(open(p, "ab", buffering=0))
                           for s, p in targets.items()}
                _shuffle_pieces(unit_pieces, plan, workers, handles, fmt == "fastq")
                log.debug("shuffle (%d buckets): %.2f s", buckets, time.monotonic() - t0)
            if not (np.array_equal(written_t, take_train) and np.array_equal(written_v, take_val)):
                raise RuntimeError("subset wrote other counts than planned")  # pragma: no cover
            if buckets:
                for fh in handles.values():
                    fh.close()
            for s, p in targets.items():
                if compress[s] and os.path.getsize(p) == 0:
                    import gzip

                    with open(p, "wb") as fh:
                        fh.write(gzip.compress(b"", mtime=0))  # a valid, empty gzip file
    finally:
        _TURN = None
        shutil.rmtree(tmpdir, ignore_errors=True)

    result = SubsetSummary(label_map, available, plan_c.requested, plan_c.requested_val,
                           written_t, written_v, plan_c.status.tolist(), numeric_ids,
                           plan_c.unknown, plan_c.below, skipped, skipped_bad, str(out),
                           None if val_output is None else str(val_output), seed)
    if summary is not None:
        result.write_tsv(summary)
    n_short = plan_c.short
    log.info("%s: %d reads of %d classes%s", out, result.total_train, int((written_t > 0).sum()),
             f"; {val_output}: {result.total_val} reads" if val_output is not None else "")
    if n_short:
        log.info("%d class(es) had fewer reads than requested (all of them were taken)", n_short)
    report_skipped(skipped, skipped_bad)
    return result


def _shuffle_pieces(unit_pieces: list[dict], plan: _Plan, workers: int, handles: dict,
                    fastq: bool) -> None:
    """Shuffle every side bucket by bucket (in parallel) and append the buckets in order."""
    for side, fh in handles.items():
        items = []
        for b in range(plan.buckets):
            segs = [(path, start + int(off[b]), start + int(off[b + 1]))
                    for path, runs in (p[side] for p in unit_pieces)
                    for start, off in runs if off[b + 1] > off[b]]
            items.append((side, b, segs))
        for piece in map_units(_shuffle_bucket, items, workers, plan, fastq):
            _append(fh, piece)
        for p in unit_pieces:  # this side's unit files are no longer needed
            os.unlink(p[side][0])
