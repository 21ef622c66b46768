"""``readtax subset``, pass 2: choose each unit's reads and write them, in input order or
through a bucket shuffle.

Records are written as the reader parsed them: one sequence line, bases upper-cased with IUPAC
codes other than ACGT as N (the form every readtax tool sees), headers and qualities unchanged.
In input order, each unit holds its records (:class:`HeldOutput`) until the units before it are
written, then appends them to the output (:class:`OutputTurn` orders forked workers). Shuffled,
each unit writes its records grouped by random bucket (:class:`BucketWriter`) and every bucket
is then permuted and appended (:func:`shuffle_pieces`).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..batch import ReadBatch, gather_ragged
from ..errors import InputError
from ..labels import Labeler, LabelMap, LabelScheme
from ..parallel import map_units
from .selection import KEY_BUCKET, KEY_SELECT, KEY_SHUFFLE, BlockSelector, CountMismatch

GZIP_LEVEL = 2

_GT, _AT, _NL, _PLUS = ord(">"), ord("@"), 10, ord("+")


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


class Piece:
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


class HeldOutput:
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


class OutputTurn:
    """Unit order for forked workers appending to the same output files.

    Made before the pool forks (its shared counter and condition reach the workers by
    inheritance, with the pass-2 context); the worker of unit ``u`` waits in :meth:`hold`
    until every unit before it has written.
    """

    def __init__(self) -> None:
        ctx = mp.get_context("fork")
        self.next_unit = ctx.Value("q", 0, lock=False)
        self.cond = ctx.Condition()

    @contextlib.contextmanager
    def hold(self, u: int) -> Iterator[None]:
        """Hold the output files while writing unit ``u`` (after every unit before it)."""
        value, cond = self.next_unit, self.cond
        with cond:
            cond.wait_for(lambda: value.value == u)
        try:
            yield
        finally:
            with cond:
                value.value = u + 1
                cond.notify_all()


@dataclass(eq=False)
class Plan:
    """What every pass-2 worker needs besides its own unit (see :mod:`readtax.parallel`)."""

    scheme: LabelScheme
    label_map: LabelMap
    skip_unknown: bool
    skip_bad: bool
    tmpdir: str
    seed: int
    compress: dict  # side ("train"/"val") -> gzip the pieces
    buckets: int  # 0 = keep input order
    read_chunk: int  # reader batch bytes: fixed, so that batch boundaries (and draws) never change
    run_bytes: int  # a shuffling worker buffers at most this much per side
    targets: dict = field(default_factory=dict)  # side -> file the units append to in order
    turn: OutputTurn | None = None  # None: the units run in this process, in order



@dataclass
class UnitResult:
    """One unit's pass-2 result: reads written per class, and its pieces when shuffling."""

    written_train: np.ndarray
    written_val: np.ndarray
    pieces: dict  # side -> piece path (input order) or (path, bucket offsets) when shuffling


def select_unit(item: tuple, plan: Plan) -> UnitResult:
    """Pass 2 over one unit: choose its planned reads and write them (held or bucketed)."""
    u, unit, available, train, val = item
    n_classes = len(plan.label_map)
    labeler = Labeler(plan.scheme, plan.label_map, skip_unknown=plan.skip_unknown,
                      skip_bad=plan.skip_bad)
    selector = BlockSelector(available, train, val, np.random.default_rng([plan.seed, KEY_SELECT, u]))
    sides = list(plan.compress)
    written = {s: np.zeros(n_classes, dtype=np.int64) for s in ("train", "val")}
    if plan.buckets:
        writer = BucketWriter(plan, u, sides)
    else:
        held = {s: HeldOutput(plan.compress[s]) for s in sides}
    try:
        for batch in unit.reader(plan.read_chunk, skip_bad=plan.skip_bad):
            cls = labeler.classes(batch)
            try:
                masks = dict(zip(("train", "val"), selector.select(cls)))
            except CountMismatch:
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
        return UnitResult(written["train"], written["val"], writer.finish())
    with plan.turn.hold(u) if plan.turn is not None else contextlib.nullcontext():
        for s in sides:
            held[s].append_to(plan.targets[s])
    return UnitResult(written["train"], written["val"], {})


def _rows(mask: np.ndarray) -> np.ndarray:
    """The mask itself when many reads are chosen (byte masks are cheapest), else indices
    (whose cost grows with the chosen reads only)."""
    return mask if 4 * np.count_nonzero(mask) >= len(mask) else np.flatnonzero(mask)


class BucketWriter:
    """Writes a unit's chosen reads grouped by random bucket, in bounded runs.

    Records are buffered (at most ``plan.run_bytes`` per side), then written as one *run*: bucket 0's
    records, bucket 1's, ... with the run's bucket offsets kept. Memory stays bounded and only
    one file per side and unit is open.
    """

    def __init__(self, plan: Plan, u: int, sides: list[str]) -> None:
        self.plan = plan
        self.sides = sides
        self.rngs = {s: np.random.default_rng([plan.seed, KEY_BUCKET, i, u])
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
        if self.pending_bytes[side] >= self.plan.run_bytes:
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


def shuffle_bucket(item: tuple, plan: Plan, fastq: bool) -> str:
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
    perm = np.random.default_rng([plan.seed, KEY_SHUFFLE, side_no, b]).permutation(len(ends))
    piece = Piece(Path(plan.tmpdir) / f"shuffled-{side}-{b:05d}", plan.compress[side])
    try:
        step = 1 << 13  # bounded gather: index arrays for this many records at a time
        for i in range(0, len(perm), step):
            piece.write(gather_ragged(buf, offsets, perm[i : i + step])[0])
    finally:
        piece.close()
    return str(piece.path)


def append_piece(dst, piece: str) -> None:
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


def shuffle_pieces(unit_pieces: list[dict], plan: Plan, workers: int, handles: dict,
                   fastq: bool) -> None:
    """Shuffle every side bucket by bucket (in parallel) and append the buckets in order."""
    for side, fh in handles.items():
        items = []
        for b in range(plan.buckets):
            segs = [(path, start + int(off[b]), start + int(off[b + 1]))
                    for path, runs in (p[side] for p in unit_pieces)
                    for start, off in runs if off[b + 1] > off[b]]
            items.append((side, b, segs))
        for piece in map_units(shuffle_bucket, items, workers, plan, fastq):
            append_piece(fh, piece)
        for p in unit_pieces:  # this side's unit files are no longer needed
            os.unlink(p[side][0])
