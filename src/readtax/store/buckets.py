"""Pack, pass 2: one bucket at a time, from every run into its place in the store's files.

A bucket's records are read from every run file (:func:`load_sections`), their class keys
mapped to the final label map, laid out (shuffled or in input order) and written in place
(:func:`build_bucket`): every file offset follows from counts known after pass 1, so any
worker can build any bucket. The main process folds the results in bucket order and cuts the
spent sections off the run files (:class:`SpentRuns`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _native
from ..batch import ragged_index
from ..hashing import TAG_LAYOUT, hash64
from ..parallel import release_memory
from ..sampler import feistel_params
from .codecs import Records, encode_ids, repack
from .format import F_BASES, F_NFLAGS, F_NLEN, F_NSTART, F_OFFSETS, F_ORDER, ID_BLOCK
from .runs import COLS, F_TABLE, read_exact, section_bytes, section_start

LUT_BLOCK = 256 << 10  # bytes of the units' class lookup tables read at a time in pass 2
TRIM_BUCKETS = 16  # buckets a worker builds between giving free heap pages back


@dataclass(eq=False)
class WorkerFiles:
    """Descriptors one pass-2 process keeps open from bucket to bucket, and its bucket count.

    Each forked worker has its own (inherited empty with the context); with one worker it is
    the main process's, which also writes the edge bytes through it. :meth:`close` releases
    them all.
    """

    runs: dict[int, int] = field(default_factory=dict)  # run number -> descriptor
    spare: list[int] = field(default_factory=list)  # runs opened beyond the descriptor room
    lut: int | None = None  # luts.i32
    out: dict[Path, int] = field(default_factory=dict)  # store files written in place
    buckets_built: int = 0

    def close(self) -> None:
        fds = list(self.runs.values()) + self.spare + ([] if self.lut is None else [self.lut]) \
            + list(self.out.values())
        self.runs, self.spare, self.lut, self.out = {}, [], None, {}
        for fd in fds:
            os.close(fd)


@dataclass(frozen=True, eq=False)
class Pass2Context:
    """What every pass-2 worker needs (see :mod:`readtax.parallel` for how it reaches forked
    workers); ``files`` is the per-process state, private to each worker."""

    runs: list[tuple[str, int]]  # (path, unit) of every run
    runs_dir: Path
    table_total: np.ndarray  # every run's totals: the last row of its bucket table
    fd_room: int  # run files a process may keep open
    lut_offsets: np.ndarray  # where each unit's table starts in luts.i32 (units + 1)
    mapped: bool  # class keys are class indices of the mapping already
    shuffle: bool
    seed: int
    n_classes: int
    class_dtype: np.dtype
    class_file: str
    fixed_length: bool
    max_length: int
    out_dir: Path
    files: WorkerFiles = field(default_factory=WorkerFiles)


@dataclass
class Bucket:
    """What pass 2 returns for one bucket; its bases, classes, N runs, flags and offsets are
    already written in place (see :func:`write_at`), except the bytes of the bit-packed files
    it may share with its neighbours (``edges``: file -> [(byte, bits)], OR-ed by the caller)."""

    reads: int
    bases: int
    id_blocks: list[bytes]
    id_counts: list[int]
    class_row: np.ndarray
    edges: dict


def table_rows(lo: int, hi: int, ctx: Pass2Context) -> np.ndarray:
    """Rows ``lo..hi-1`` of the bucket-major run table: (hi - lo, runs, COLS)."""
    runs = len(ctx.runs)
    out = np.empty((hi - lo, runs, COLS), np.int64)
    path = ctx.runs_dir / F_TABLE
    fd = os.open(path, os.O_RDONLY)
    try:
        read_exact(fd, [memoryview(out).cast("B")], lo * runs * COLS * 8, str(path))
    finally:
        os.close(fd)
    return out


LUT_BLOCK = 256 << 10  # bytes of the units' class lookup tables read at a time in pass 2


def global_classes(keys: np.ndarray, units: list[int], at: list[int], ctx: Pass2Context
                   ) -> np.ndarray:
    """A bucket's class keys as global class indices: section i (``keys[at[i]:at[i + 1]]``)
    was found by unit ``units[i]`` (ascending) and goes through that unit's lookup table in
    ``luts.i32``.

    The tables are read a block of units at a time (``LUT_BLOCK`` bytes, or one unit's table
    if larger), so a worker holds O(classes) of them. All of them are units x classes x 4
    bytes, and every bucket has reads of every unit: gathering through a mapping of the file
    would touch nearly all of its pages each time, and those count on top of the worker's
    resident heap (its peak would grow with the number of units).
    """
    offs = ctx.lut_offsets
    path = ctx.runs_dir / "luts.i32"
    fd = ctx.files.lut
    if fd is None:
        fd = ctx.files.lut = os.open(path, os.O_RDONLY)
    out = np.empty(len(keys), np.int64)
    u = np.asarray(units, np.int64)
    ends = offs[u + 1]  # ascending, as the units are
    i = 0
    while i < len(units):
        first = int(offs[units[i]])
        # sections i..j-1: their units' tables fit in one block (at least one unit)
        j = max(i + 1, int(np.searchsorted(ends, first + LUT_BLOCK // 4, side="right")))
        block = np.empty(int(ends[j - 1]) - first, np.int32)
        read_exact(fd, [memoryview(block).cast("B")], 4 * first, str(path))
        lo, hi = at[i], at[j]
        base = np.repeat(offs[u[i:j]] - first, np.diff(at[i : j + 1]))
        out[lo:hi] = block[base + keys[lo:hi]]
        i = j
    return out


def load_sections(b: int, ctx: Pass2Context) -> dict:
    """Bucket b's records from every run, in input order, with global class indices.

    The sections are read straight into one array per field (no mapping, no joining copies);
    the bookkeeping is vectorised over runs, since a full-size input has thousands of them.
    """
    runs = ctx.runs
    total = ctx.table_total
    if ctx.shuffle:
        before, upto = table_rows(b, b + 2, ctx)
        row = upto - before
        which = np.flatnonzero(row[:, 0] > 0)
        row = row[which]
        start = section_start(total[which], upto[which]).tolist()
    else:  # one bucket per run
        which = np.array([b])
        row = total[b][None, :]
        start = [0]
    # Where each run's part of each field goes in the bucket's arrays.
    at = np.zeros((len(which) + 1, COLS), np.int64)
    np.cumsum(row, axis=0, out=at[1:])
    m, r, pk, hd = (int(x) for x in at[-1, :4])
    out = {k: np.empty(m, np.uint32) for k in ("cls", "len", "hlen")}
    out.update({k: np.empty(r, np.uint32) for k in ("rr", "rs", "rl")})
    out["packed"] = np.empty(pk, np.uint8)
    out["hdr"] = np.empty(hd, np.uint8)
    fields = [(memoryview(out[k]).cast("B"), col, item) for k, col, item in (
        ("cls", 0, 4), ("len", 0, 4), ("hlen", 0, 4), ("rr", 1, 4), ("rs", 1, 4), ("rl", 1, 4),
        ("packed", 2, 1), ("hdr", 3, 1))]
    bounds = at.tolist()
    for i, r_i in enumerate(which.tolist()):
        lo, hi = bounds[i], bounds[i + 1]
        views = [buf[item * lo[col] : item * hi[col]] for buf, col, item in fields
                 if hi[col] > lo[col]]
        read_exact(run_fd(r_i, ctx), views, start[i], runs[r_i][0])
    # Run read numbers count from their run's section; class keys become global indices.
    first_read = np.repeat(at[:-1, 0], row[:, 1])
    rr = out["rr"].astype(np.int64) + first_read
    if ctx.mapped or not ctx.lut_offsets[-1]:
        cls = out["cls"].astype(np.int64)  # class indices of the mapping already
    else:
        cls = global_classes(out["cls"], [runs[r_i][1] for r_i in which.tolist()],
                             at[:, 0].tolist(), ctx)
    lengths = out["len"].astype(np.int64)
    return {"cls": cls, "len": lengths, "rr": rr, "rs": out["rs"], "rl": out["rl"],
            "packed": Records(lengths, out["packed"], packed=True),
            "hdr": Records(out["hlen"], out["hdr"])}


def run_fd(r: int, ctx: Pass2Context) -> int:
    """A read descriptor of run ``r``, kept open for the next buckets (every bucket reads a
    section of every run: a full-size input opens each of its thousands of runs once per
    worker instead of once per bucket). Runs beyond what the descriptor limit leaves room
    for are opened per read."""
    files = ctx.files
    fd = files.runs.get(r)
    if fd is not None:
        return fd
    fd = os.open(ctx.runs[r][0], os.O_RDONLY)
    if len(files.runs) < ctx.fd_room:
        files.runs[r] = fd
    else:
        files.spare.append(fd)
        while len(files.spare) > 1:  # the one returned is in use until the next call
            os.close(files.spare.pop(0))
    return fd


def fd_room(runs: int) -> int:
    """How many run files pass 2 may keep open: raises the soft descriptor limit towards the
    hard one if the runs need it, and leaves half of it to everything else."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 2 * runs + 256
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
    except ImportError:  # not POSIX
        return 0
    return max(0, min(runs, soft // 2 - 64))


def build_bucket(task: tuple[int, int, int, int, int], ctx: Pass2Context) -> Bucket:
    """Pass 2 for pack bucket ``b``, which becomes bucket ``j`` of the store.

    Its reads are the store's reads ``read_start...``, its bases start at base ``base_start``
    and its N runs at run ``run_start``: every file offset follows, so the bucket's bytes are
    written in place, by whichever worker builds it.
    """
    b, j, read_start, base_start, run_start = task
    d = load_sections(b, ctx)
    cls = d["cls"]
    m = len(cls)
    lengths = d["len"].astype(np.int64)
    n_classes = ctx.n_classes
    # by_class: the records in class order; src[s]: the record at physical slot s (shuffled:
    # the class-order rank permute^-1(s); else the input order).
    by_class, src, lp = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
    phys_cls = np.empty(m, ctx.class_dtype)  # the classes in physical order
    if ctx.shuffle:
        keys, a, b_ = feistel_params(m, int(hash64(ctx.seed, TAG_LAYOUT, j)[0]))
    else:
        keys, a, b_ = np.zeros(0, np.uint64), 1, max(m, 1)
    _native.bucket_layout(cls=cls, n_classes=n_classes, keys=keys, a=a, b=b_, lengths=lengths,
                          by_class=by_class, src=src, phys_len=lp, phys_cls=phys_cls)
    if ctx.shuffle:
        id_src, order = by_class, None
    else:
        id_src, order = src, by_class.astype(np.uint32)
    local_off = np.zeros(m + 1, np.int64)
    np.cumsum(lp, out=local_off[1:])
    packed = repack(d["packed"], src, base_start & 3, lengths=lp,
                    fixed=ctx.max_length if ctx.fixed_length else None)
    # N runs: records are sorted by read; regroup them in physical order.
    rr = d["rr"]
    lead = read_start & 7
    bits = np.zeros(lead + m, np.uint8)
    if len(rr):
        run_count = np.bincount(rr, minlength=m)
        run_first = np.zeros(m, np.int64)
        np.cumsum(run_count[:-1], out=run_first[1:])
        count_src = run_count[src]
        runs, _ = ragged_index(run_first[src], count_src)
        slot_of_run = np.repeat(np.arange(m), count_src)
        nstart = (base_start + local_off[slot_of_run]
                  + d["rs"][runs].astype(np.int64)).astype(np.uint64)
        nlen = d["rl"][runs].astype(np.uint32)
        bits[lead:] = count_src > 0
    else:  # no read of the bucket has an N
        nstart, nlen = np.zeros(0, np.uint64), np.zeros(0, np.uint32)
    flags = np.packbits(bits, bitorder="little")
    tmp, files = ctx.out_dir, ctx.files
    write_at(tmp / ctx.class_file, read_start * ctx.class_dtype.itemsize, phys_cls, files)
    write_at(tmp / F_NSTART, run_start * 8, nstart, files)
    write_at(tmp / F_NLEN, run_start * 4, nlen, files)
    if not ctx.fixed_length:
        write_at(tmp / F_OFFSETS, read_start * 8, (base_start + local_off[:-1]).astype(np.uint64),
                 files)
    if order is not None:
        write_at(tmp / F_ORDER, read_start * 4, order, files)
    edges = {F_BASES: write_inner(tmp / F_BASES, base_start >> 2, packed, files),
             F_NFLAGS: write_inner(tmp / F_NFLAGS, read_start >> 3, flags, files)}
    blocks, counts = id_blocks(d["hdr"], id_src)
    class_row = np.bincount(cls, minlength=n_classes).astype(np.uint32)
    # The bucket's arrays are freed but not trimmed: the next bucket reuses the pages, where
    # giving them back costs a page fault per 4 KB. Buckets differ a little in size, though,
    # and the heap's free gaps keep their pages, so a worker's RSS would creep with the number
    # of buckets (see the scale rehearsal in benchmarks/RESULTS.md). Trimming every
    # TRIM_BUCKETS buckets bounds that creep for a fault per page once in that many buckets.
    files.buckets_built += 1
    if files.buckets_built % TRIM_BUCKETS == 0:
        release_memory()
    return Bucket(m, int(lp.sum()), blocks, counts, class_row, edges)


def write_at(path: Path, offset: int, data: np.ndarray, files: WorkerFiles) -> None:
    """Write ``data`` at byte ``offset`` of the (existing) file ``path`` (the descriptor
    stays open in ``files`` for the next bucket)."""
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    if not len(view):
        return
    fd = files.out.get(path)
    if fd is None:
        fd = files.out[path] = os.open(path, os.O_WRONLY)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def write_inner(path: Path, first: int, data: np.ndarray, files: WorkerFiles
                ) -> list[tuple[int, int]]:
    """Write the bytes of a bit-packed piece starting at byte ``first``, except its first and
    last byte, which it may share with the pieces before and after it: those are returned."""
    if not len(data):
        return []
    if len(data) > 2:
        write_at(path, first + 1, data[1:-1], files)
    return [(first, int(data[0])), (first + len(data) - 1, int(data[-1]))]


def id_blocks(hdr: Records, order: np.ndarray) -> tuple[list[bytes], list[int]]:
    """Compressed blocks of the headers in ``order`` (at most ID_BLOCK per block)."""
    blocks, counts = [], []
    # One front-coding buffer for every block: a block's ids take at most all of them.
    out = np.empty(2 * min(ID_BLOCK, len(order)) + len(hdr.flat), np.uint8)
    for lo in range(0, len(order), ID_BLOCK):
        sel = order[lo : lo + ID_BLOCK]
        blocks.append(encode_ids(hdr, sel, out=out))
        counts.append(len(sel))
    return blocks, counts


class SpentRuns:
    """Cuts the sections pass 2 has read off the run files as buckets complete.

    Results arrive in bucket order, so when bucket b is done every bucket up to b has been
    read, and those sections are the tail of each run file. Their pages go back to the system
    while the store is written, which then reuses them instead of touching fresh memory (the
    writes get faster by more than the truncating costs). A run is cut once at least
    ``CUT_BYTES`` of it are spent: a full-size input has thousands of runs and a thousand
    buckets, and a truncate per run per bucket would cost minutes.
    """

    CUT_BYTES = 1 << 20

    def __init__(self, ctx: Pass2Context) -> None:
        self.ctx = ctx
        self.runs = ctx.runs
        self.shuffle = ctx.shuffle
        self.total = ctx.table_total
        self.size = section_bytes(self.total)

    def done(self, b: int) -> None:
        if not self.shuffle:  # one bucket per run: the run is spent
            os.unlink(self.runs[b][0])
            return
        cut = section_start(self.total, table_rows(b + 1, b + 2, self.ctx)[0])
        for r in np.flatnonzero((cut == 0) & (self.size > 0)
                                | (self.size - cut >= self.CUT_BYTES)).tolist():
            path = self.runs[r][0]
            if cut[r] == 0:
                os.unlink(path)
            else:
                os.truncate(path, int(cut[r]))
            self.size[r] = cut[r]


