"""Streaming batches straight from FASTA/FASTQ files (plan B): no index, no conversion.

:class:`StreamDataset` is a ``torch.utils.data.IterableDataset`` that yields :class:`SeqBatch`
objects read from one or many FASTA/FASTQ files, plain or gzip.

How work is split
    Plain files are cut into byte ranges (each reader resynchronises to the next record start,
    so a record belongs to the range holding its first byte); a gzip file is one range, read
    whole. Each epoch the ranges are dealt out to ``world_size * S`` *streams*, where ``S`` is
    the number of streams per rank (the number of DataLoader workers of the first run). A
    partition of the ranges means every read is produced exactly once per epoch across all
    ranks and workers. Worker ``w`` of ``W`` runs the streams ``w, w+W, ...`` of its rank and
    round-robins between them, so the DataLoader's round-robin over workers gives one fixed
    rank-level order of batches.

How reads are mixed (bounded memory)
    With ``shuffle`` the range order is a fresh seeded permutation every epoch, ranges are dealt
    to streams greedily by size, and each stream reads ``open_ranges`` ranges at once. A stream
    fills a *block* of ``shuffle_buffer`` reads by taking an equal share from each open range,
    permutes the block with a generator keyed by (seed, epoch, stream, block) and cuts it into
    batches. Memory is the block plus one read chunk per open range, independent of input size.
    On a file sorted by species, a block holds reads from about ``open_ranges`` places in the
    file: that, not the block size, limits how many species a batch sees (docs/streaming.md
    gives measured figures against a global shuffle).

What a checkpoint holds
    Every batch's ``meta`` carries its stream's position *after* the batch: the epoch, the block
    number, the byte offset of the next unread record in each open range, how many ranges of the
    stream's list were opened, and how many reads of the current block were already emitted.
    Resuming reopens the ranges at those offsets, refills the same block (it is a deterministic
    function of the offsets), applies the same permutation and skips the emitted reads, so a
    resumed run yields exactly the batches the uninterrupted run would have yielded, shuffle
    buffer included. Reads are never counted twice or lost. Gzip ranges are reopened by
    decompressing from the start and skipping to the recorded (uncompressed) offset.
"""

from __future__ import annotations

import copy
import heapq
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bases import reverse_complement_rows
from .batch import ReadBatch, SeqBatch, gather_ragged, reverse_complement
from .errors import FormatError, UsageError, require
from .fastx import FastxReader, is_gzip, sniff_format
from .hashing import MASK64, rc_flags
from .labels import Labeler, LabelMap, make_scheme
from .parallel import check_inputs

torch_data = require("torch.utils.data")

log = logging.getLogger(__name__)

RANGE_SIZE = 64 << 20  # largest byte range of a plain file
MIN_RANGE = 1 << 20  # ranges are made smaller (down to this) so every stream can open many
OPEN_RANGES = 128  # ranges a shuffling stream reads at once
CURSOR_MEMORY = 64 << 20  # read-chunk bytes per stream, shared by its open ranges
MIN_CHUNK = 64 << 10  # smallest read chunk (smaller ones cost more per read than they save)
SEQUENTIAL_BLOCK = 16384  # reads per block when not shuffling (only bounds resume work)
GZIP_WEIGHT = 3  # a gzip file holds about this many times its size in FASTA text
STATE_FORMAT = "readtax.stream/1"

_warned_gzip: set[str] = set()


@dataclass(frozen=True)
class _Range:
    """``path[start:end]`` of input file number ``file`` (end None: whole gzip file)."""

    file: int
    start: int
    end: int | None
    weight: int


@dataclass
class _Piece:
    """Reads ``lo:hi`` of a parsed chunk of input file ``file``, with their class indices."""

    reads: ReadBatch
    labels: np.ndarray
    lo: int
    hi: int
    file: int


@dataclass
class _Block:
    """A stream's block of reads as flat arrays, and the order in which to emit them.

    Batches take rows ``order[a:b]``, or rows ``a:b`` when ``order`` is None. Blocks of
    equal-length reads are put in emission order once (one 2-D row gather) so batches are
    slices; ragged blocks are gathered batch by batch, which keeps index arrays small.
    """

    seq: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    order: np.ndarray | None
    flip: np.ndarray | None
    headers: np.ndarray | None
    header_offsets: np.ndarray | None
    width: int  # the common read length, or 0 when lengths differ
    dropped: int

    def __post_init__(self) -> None:
        self.n = len(self.offsets) - 1 if self.order is None else len(self.order)

    def rows(self, a: int, b: int) -> np.ndarray | slice:
        return slice(a, b) if self.order is None else self.order[a:b]


class StreamDataset(torch_data.IterableDataset):
    """Batches of reads streamed from FASTA/FASTQ files; see the module docstring.

    ``labels`` is a label scheme (``lbl``, ``regex:...``, ``tsv:...``) and needs ``label_map``
    (classes cannot be discovered without reading everything first); ``labels=None`` gives
    label -1 for every read (prediction). ``skip_unknown`` drops reads whose class is not in the
    map and counts them (:attr:`skipped`). ``range_size`` caps the byte ranges plain files are cut
    into; ``open_ranges`` is how many ranges a shuffling stream reads at once.
    """

    def __init__(
        self,
        paths: list[str] | str | os.PathLike[str],
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 65536,
        rank: int = 0,
        world_size: int = 1,
        labels: str | None = "lbl",
        label_map: LabelMap | None = None,
        skip_unknown: bool = False,
        augment_rc: bool = False,
        epochs: int | None = 1,
        with_ids: bool = False,
        drop_last: bool = False,
        range_size: int = RANGE_SIZE,
        open_ranges: int = OPEN_RANGES,
    ) -> None:
        super().__init__()
        _check_options(batch_size=batch_size, shuffle_buffer=shuffle_buffer, rank=rank,
                       world_size=world_size, epochs=epochs, range_size=range_size,
                       open_ranges=open_ranges, seed=seed)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = check_inputs(paths)
        self.sizes = [os.path.getsize(p) for p in self.paths]
        self.gzipped = [is_gzip(p) for p in self.paths]
        for p, size in zip(self.paths, self.sizes):
            if size == 0:
                raise FormatError("file is empty, expected FASTA ('>') or FASTQ ('@') records", p)
            sniff_format(p)  # fail now, naming the file, rather than inside a worker
        if labels is not None and label_map is None:
            raise UsageError(
                "streaming labelled reads needs a label map: give --mapping TSV (class_id, "
                "label_name, tax_id) or train from a store, which carries its own (classes "
                "cannot be discovered without reading the whole input first)"
            )
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.labels = labels
        self.label_map = label_map if label_map is not None else LabelMap.from_ids([])
        self.skip_unknown = bool(skip_unknown) and labels is not None
        self.augment_rc = bool(augment_rc)
        self.epochs = None if epochs is None else int(epochs)
        self.with_ids = bool(with_ids)
        self.drop_last = bool(drop_last)
        self.range_size = int(range_size)
        self.open_ranges = int(open_ranges)
        self._scheme = None if labels is None else make_scheme(labels)
        # A shuffling stream interleaves several ranges and permutes blocks; otherwise one
        # range at a time in file order, in blocks that only bound the work of a resume.
        self._mixing = self.shuffle and self.shuffle_buffer > 0
        self._open = self.open_ranges if self._mixing else 1
        self._block_reads = self.shuffle_buffer if self._mixing else max(self.batch_size,
                                                                          SEQUENTIAL_BLOCK)
        self._resume: dict | None = None
        self._observed: dict[int, dict] = {}
        self._num_streams: int | None = None
        self._last_stream: int | None = None
        self._warn_gzip()

    # -- public protocol ------------------------------------------------------------------------

    def __len__(self) -> int:
        raise TypeError("a StreamDataset has no known length: the number of reads is only known "
                        "after reading the files (pack them into a store for a known length)")

    def __iter__(self) -> Iterator[SeqBatch]:
        info = torch_data.get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        state = self._resume
        n_streams = state["num_streams"] if state and state["num_streams"] else n_workers
        first = state["next_stream"] if state else 0
        # Rotate so that DataLoader worker 0 runs the stream whose batch comes next.
        order = [(first + j) % n_streams for j in range(n_streams)]
        mine = order[worker::n_workers]
        if worker == n_streams < n_workers:
            log.warning("resuming %d streams with %d DataLoader workers: %d workers stay idle "
                        "(use num_workers=%d to resume at full speed)", n_streams, n_workers,
                        n_workers - n_streams, n_streams)
        streams = state["streams"] if state else {}
        active = deque(self._stream(s, n_streams, streams.get(str(s))) for s in mine)
        while active:
            gen = active.popleft()
            batch = next(gen, None)
            if batch is None:
                continue
            yield batch
            active.append(gen)

    def observe(self, batch: SeqBatch) -> None:
        """Record that the consumer has used ``batch`` (call it in the main process)."""
        meta = batch.meta
        if not meta or meta.get("loader") != "stream":
            raise UsageError("observe() needs a batch yielded by this StreamDataset "
                             "(its meta holds the stream position)")
        self._num_streams = int(meta["num_streams"])
        self._observed[int(meta["stream"])] = meta
        self._last_stream = int(meta["stream"])

    @property
    def skipped(self) -> int:
        """Reads dropped by ``skip_unknown`` so far (in the batches observed)."""
        base = self._resume["streams"] if self._resume else {}
        total = {int(s): st["skipped_seen"] for s, st in base.items()}
        total.update({s: m["skipped"] for s, m in self._observed.items()})
        return int(sum(total.values()))

    def state_dict(self) -> dict:
        """JSON-serialisable position right after the last observed batch (of this rank)."""
        base = self._resume
        streams = dict(base["streams"]) if base else {}
        for s, meta in self._observed.items():
            streams[str(s)] = meta["state"]
        n_streams = self._num_streams or (base["num_streams"] if base else None)
        if self._last_stream is not None:
            next_stream = (self._last_stream + 1) % n_streams
        else:
            next_stream = base["next_stream"] if base else 0
        state = {"format": STATE_FORMAT, **self._identity(), "num_streams": n_streams,
                 "next_stream": next_stream, "streams": streams, "skipped": self.skipped}
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict) -> None:
        """Continue right after the position ``state`` records (call before iterating)."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UsageError(f"not a stream loader state (expected format {STATE_FORMAT!r})")
        mine = self._identity()
        problems = [
            f"{key} is {state.get(key)!r} in the checkpoint but {value!r} now"
            for key, value in mine.items()
            if key != "files" and state.get(key) != value
        ]
        saved = state.get("files") or []
        if [(Path(p).name, s) for p, s in saved] != [(Path(p).name, s) for p, s in mine["files"]]:
            problems.append("the input files (names or sizes) differ from the checkpoint's")
        if problems:
            raise UsageError("cannot resume the stream loader: " + "; ".join(problems))
        self._resume = copy.deepcopy(state)
        self._observed = {}
        self._num_streams = state["num_streams"]
        self._last_stream = None

    # -- layout ---------------------------------------------------------------------------------

    def _identity(self) -> dict:
        """What a saved position depends on (all of it must match to resume)."""
        return {"files": [[p, s] for p, s in zip(self.paths, self.sizes)], "seed": self.seed,
                "shuffle": self.shuffle, "shuffle_buffer": self.shuffle_buffer,
                "range_size": self.range_size, "open_ranges": self.open_ranges,
                "labels": self.labels, "skip_unknown": self.skip_unknown,
                "rank": self.rank, "world_size": self.world_size}

    def _warn_gzip(self) -> None:
        for p, size, gz in zip(self.paths, self.sizes, self.gzipped):
            if gz and size * GZIP_WEIGHT > self.range_size and p not in _warned_gzip:
                _warned_gzip.add(p)
                log.warning(
                    "%s: a gzip file cannot be split into byte ranges, so one worker reads it "
                    "whole; to read it in parallel, decompress it (plain files are split) or "
                    "convert it once with `readtax pack`", p)
        if all(self.gzipped) and len(self.paths) < self.world_size:
            log.warning("%d gzip file(s) for %d ranks: some ranks get no reads; decompress the "
                        "input or pack it with `readtax pack`", len(self.paths), self.world_size)

    def _ranges(self, total_streams: int) -> list[_Range]:
        """Byte ranges of all inputs (a fixed function of the files and the stream count)."""
        plain = sum(s for s, gz in zip(self.sizes, self.gzipped) if not gz)
        size = self.range_size
        if plain:
            # Enough ranges for every stream to open ``open_ranges`` of them, but not tiny ones;
            # and at least one range per stream whenever the files have the bytes for it.
            size = min(size, max(MIN_RANGE, -(-plain // (total_streams * self._open))))
            size = max(1, min(size, -(-plain // total_streams)))
        out: list[_Range] = []
        for f, (fsize, gz) in enumerate(zip(self.sizes, self.gzipped)):
            if gz:
                out.append(_Range(f, 0, None, fsize * GZIP_WEIGHT))
                continue
            parts = max(1, -(-fsize // size))
            bounds = [fsize * k // parts for k in range(parts + 1)]
            out.extend(_Range(f, bounds[k], bounds[k + 1], bounds[k + 1] - bounds[k])
                       for k in range(parts))
        return out

    def _assign(self, epoch: int, ranges: list[_Range], total_streams: int) -> list[list[int]]:
        """Range numbers of each global stream for ``epoch``: a partition of all ranges."""
        weights = np.array([r.weight for r in ranges], dtype=np.int64)
        out: list[list[int]] = [[] for _ in range(total_streams)]
        if not self.shuffle:
            # Contiguous runs of about equal bytes: file order within each stream.
            cum = np.cumsum(weights)
            total = max(int(cum[-1]), 1)
            mid = cum - weights // 2
            owner = np.minimum(mid * total_streams // total, total_streams - 1)
            for rid, s in enumerate(owner.tolist()):
                out[s].append(rid)
            return out
        order = np.random.default_rng([self.seed & MASK64, epoch, 0x52414E47]).permutation(
            len(ranges))
        # Deal in permuted order to the least-loaded stream (ties: lowest stream number).
        heap = [(0, s) for s in range(total_streams)]
        for rid in order.tolist():
            load, s = heapq.heappop(heap)
            out[s].append(rid)
            heapq.heappush(heap, (load + int(weights[rid]), s))
        return out

    # -- one stream -----------------------------------------------------------------------------

    def _stream(self, s: int, n_streams: int, state: dict | None) -> Iterator[SeqBatch]:
        """All batches of stream ``s`` of this rank, from ``state`` (None: the beginning)."""
        g = self.rank * n_streams + s
        total = self.world_size * n_streams
        ranges = self._ranges(total)
        labeler = None if self._scheme is None else Labeler(
            self._scheme, self.label_map, skip_unknown=self.skip_unknown)
        epoch = state["epoch"] if state else 0
        skipped = state["skipped"] if state else 0
        while self.epochs is None or epoch < self.epochs:
            rids = self._assign(epoch, ranges, total)[g]
            n_open = max(1, min(self._open, len(rids)))
            share = -(-self._block_reads // n_open)
            chunk = max(MIN_CHUNK, min(4 << 20, CURSOR_MEMORY // n_open))
            feed = _Feed(self, labeler, [ranges[r] for r in rids], n_open, chunk,
                         state["position"] if state else None)
            block_no = state["block"] if state else 0
            skip = state["emitted"] if state else 0
            state = None
            parts: list[tuple[_Block, int, int]] = []
            have = 0
            last: dict = {}
            try:
                while True:
                    position = feed.position()
                    skipped_before = skipped
                    pieces = feed.fill(share)
                    if not pieces:
                        break
                    block = self._make_block(pieces, epoch, g, block_no)
                    del pieces  # consumed chunks must not outlive the block
                    skipped += block.dropped
                    k, skip = skip, 0
                    while k < block.n:
                        take = min(self.batch_size - have, block.n - k)
                        parts.append((block, k, k + take))
                        k += take
                        have += take
                        last = {"epoch": epoch, "block": block_no, "emitted": k,
                                "position": position, "skipped": skipped_before,
                                "skipped_seen": skipped}
                        if have == self.batch_size:
                            yield self._make_batch(parts, s, n_streams, last, skipped)
                            parts, have = [], 0
                    block_no += 1
            finally:
                feed.close()
            if parts and not self.drop_last:
                yield self._make_batch(parts, s, n_streams, last, skipped)
            epoch += 1

    def _make_block(self, pieces: list[_Piece], epoch: int, g: int, block_no: int) -> _Block:
        """Concatenate pieces; choose the emission order (known classes, permuted); draw flips."""
        # A lone piece is copied too: the block must own its reads, so that the chunks they
        # came from are freed once consumed.
        reads = ReadBatch.concat([p.reads.slice(p.lo, p.hi, copy=len(pieces) == 1)
                                  for p in pieces])
        seq, offsets = reads.seq, reads.seq_offsets
        labels = np.concatenate([p.labels[p.lo:p.hi] for p in pieces])
        headers = header_offsets = None
        if self.with_ids:
            headers, header_offsets = reads.headers, reads.header_offsets
        flip = None
        if self.augment_rc:
            pos = reads.byte_offsets
            files = np.concatenate([np.full(p.hi - p.lo, p.file, np.int64) for p in pieces])
            # Keyed by where each read is in the input: (file, byte offset) identifies a read
            # without an index, and does not depend on workers, ranks or resume.
            flip = rc_flags(self.seed, epoch, files, pos)
        n = len(labels)
        order = np.flatnonzero(labels >= 0) if self.skip_unknown else None
        dropped = 0 if order is None else n - len(order)
        if self._mixing:
            rng = np.random.default_rng([self.seed & MASK64, epoch, g, block_no])
            order = rng.permutation(n) if order is None else order[rng.permutation(len(order))]
        lengths = np.diff(offsets)
        width = int(lengths[0]) if n and (lengths == lengths[0]).all() else 0
        if width and order is not None:
            # Equal lengths: one row gather puts the block in emission order, and batches
            # become plain slices of it (ragged blocks are gathered batch by batch instead).
            seq = np.take(seq.reshape(n, width), order, axis=0).reshape(-1)  # np.take: faster than [order]
            offsets = offsets[: len(order) + 1]
            labels = labels[order]
            flip = None if flip is None else flip[order]
            if headers is not None:
                headers, header_offsets = gather_ragged(headers, header_offsets, order)
            order = None
        return _Block(seq, offsets, labels, order, flip, headers, header_offsets, width, dropped)

    def _make_batch(self, parts: list[tuple[_Block, int, int]], s: int, n_streams: int,
                    state: dict, skipped: int) -> SeqBatch:
        joined = SeqBatch.concat([_gather(block, block.rows(a, b)) for block, a, b in parts])
        ids = None
        if self.with_ids:
            ids = []
            for block, a, b in parts:
                ids.extend(_first_words(block.headers, block.header_offsets, block.rows(a, b)))
        meta = {"loader": "stream", "rank": self.rank, "stream": s, "num_streams": n_streams,
                "epoch": state["epoch"], "state": state, "skipped": skipped}
        return SeqBatch(joined.seq, joined.offsets, joined.labels, None, ids, meta)


class _Cursor:
    """An open range and the parsed chunk holding its next unread record.

    Invariant: while ``live``, ``reads[i]`` is the next record, so ``offset()`` is exact.
    A plain range is read one chunk per short-lived reader, started just past the last record
    parsed (the reader resynchronises to the next record start): an idle range then holds only
    its parsed chunk, not the reader's raw buffers, which lets a stream keep many ranges open.
    A gzip file cannot be entered in the middle, so it keeps one reader open.
    """

    def __init__(self, ds: StreamDataset, labeler: Labeler | None, rng: _Range, slot_id: int,
                 offset: int | None, chunk: int) -> None:
        self.slot_id = slot_id  # the range's number in its stream's list (saved in positions)
        self.file = rng.file
        self._labeler = labeler
        self._path = ds.paths[rng.file]
        self._end = rng.end
        self._chunk = chunk
        self._next = rng.start if offset is None else offset
        self._gzip = None
        self._skip_before = 0
        if rng.end is None:  # gzip: decompress from the start, skip to the offset
            self._gzip = iter(FastxReader(self._path, chunk_size=chunk))
            self._skip_before = offset or 0
        self.reads: ReadBatch | None = None
        self.labels = np.zeros(0, np.int64)
        self.i = 0
        self._pull()

    @property
    def live(self) -> bool:
        return self.reads is not None

    def offset(self) -> int:
        return int(self.reads.byte_offsets[self.i])

    def _chunk_of_plain(self) -> ReadBatch | None:
        if self._next >= self._end:
            return None
        it = iter(FastxReader(self._path, start=self._next, end=self._end,
                              chunk_size=self._chunk))
        try:
            rb = next(it, None)
        finally:
            it.close()
        if rb is not None:
            self._next = int(rb.byte_offsets[-1]) + 1
        return rb

    def _chunk_of_gzip(self) -> ReadBatch | None:
        for rb in self._gzip:
            if self._skip_before:
                cut = int(np.searchsorted(rb.byte_offsets, self._skip_before))
                if cut == len(rb):
                    continue
                rb = rb.slice(cut, len(rb))
                self._skip_before = 0
            return rb
        return None

    def _pull(self) -> None:
        while True:
            rb = self._chunk_of_plain() if self._gzip is None else self._chunk_of_gzip()
            if rb is None:
                self.reads = None
                self.close()
                return
            if len(rb):
                break
        rb.seq  # noqa: B018 - build lazily parsed bases now, releasing the raw chunk
        rb.qual = None  # streaming never uses qualities
        self.reads, self.i = rb, 0
        if self._labeler is None:
            self.labels = np.full(len(rb), -1, dtype=np.int64)
        else:
            self.labels = self._labeler.classes(rb)

    def take(self, need: int) -> _Piece:
        lo = self.i
        hi = min(lo + need, len(self.reads))
        self.i = hi
        if hi < len(self.reads):
            return _Piece(self.reads, self.labels, lo, hi, self.file)
        # The chunk's last reads: copy them out so the chunk is freed before the next is read
        # (open ranges tend to reach their chunk ends in the same fill).
        piece = _Piece(self.reads.slice(lo, hi, copy=True), self.labels[lo:hi], 0, hi - lo,
                       self.file)
        self._pull()
        return piece

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()


class _Feed:
    """The open ranges of one stream in one epoch, and the ranges still to open."""

    def __init__(self, ds: StreamDataset, labeler: Labeler | None, ranges: list[_Range],
                 n_open: int, chunk: int, position: dict | None) -> None:
        self._ds = ds
        self._labeler = labeler
        self._ranges = ranges
        self._n_open = n_open
        self._chunk = chunk
        self.next = 0
        self.slots: list[_Cursor] = []
        if position is not None:
            self.next = int(position["next_range"])
            for rid, off in position["cursors"]:
                c = _Cursor(ds, labeler, ranges[rid], rid, int(off), chunk)
                if not c.live:
                    raise FormatError(f"no record at byte {off} where the checkpoint says one "
                                      "starts (was the file changed?)", ds.paths[c.file])
                self.slots.append(c)

    def position(self) -> dict:
        return {"next_range": self.next,
                "cursors": [[c.slot_id, c.offset()] for c in self.slots]}

    def _open_next(self) -> _Cursor | None:
        while self.next < len(self._ranges):
            rid = self.next
            self.next += 1
            c = _Cursor(self._ds, self._labeler, self._ranges[rid], rid, None, self._chunk)
            if c.live:
                return c
        return None

    def fill(self, share: int) -> list[_Piece]:
        """Take ``share`` reads from each open range (opening the next ones as ranges end)."""
        while len(self.slots) < self._n_open:
            c = self._open_next()
            if c is None:
                break
            self.slots.append(c)
        pieces: list[_Piece] = []
        dead: list[int] = []
        for i in range(len(self.slots)):
            need = share
            while need > 0:
                c = self.slots[i]
                piece = c.take(need)
                pieces.append(piece)
                need -= piece.hi - piece.lo
                if not c.live:
                    nxt = self._open_next()
                    if nxt is None:
                        dead.append(i)
                        break
                    self.slots[i] = nxt
        for i in reversed(dead):
            del self.slots[i]
        return pieces

    def close(self) -> None:
        for c in self.slots:
            c.close()
        self.slots = []


# -- helpers -----------------------------------------------------------------------------------


def _check_options(**kw) -> None:
    problems = []
    if kw["batch_size"] < 1:
        problems.append(f"batch_size must be >= 1, got {kw['batch_size']}")
    if kw["shuffle_buffer"] < 0:
        problems.append(f"shuffle_buffer must be >= 0, got {kw['shuffle_buffer']}")
    if kw["world_size"] < 1:
        problems.append(f"world_size must be >= 1, got {kw['world_size']}")
    elif not 0 <= kw["rank"] < kw["world_size"]:
        problems.append(f"rank must be in [0, {kw['world_size']}), got {kw['rank']}")
    if kw["epochs"] is not None and kw["epochs"] < 0:
        problems.append(f"epochs must be >= 0 or None (endless), got {kw['epochs']}")
    if kw["range_size"] < 1:
        problems.append(f"range_size must be >= 1 byte, got {kw['range_size']}")
    if kw["open_ranges"] < 1:
        problems.append(f"open_ranges must be >= 1, got {kw['open_ranges']}")
    if not isinstance(kw["seed"], (int, np.integer)):
        problems.append(f"seed must be an integer, got {kw['seed']!r}")
    if problems:
        raise UsageError("; ".join(problems))


def _first_words(headers: np.ndarray, offsets: np.ndarray, rows: np.ndarray | slice
                 ) -> list[str]:
    """Read ids (the header's first word) of the given rows."""
    if isinstance(rows, slice):
        rows = np.arange(rows.start, rows.stop)
    flat, off = gather_ragged(headers, offsets, rows)
    text = flat.tobytes().decode("utf-8", "replace")
    if len(text) != len(flat):  # multi-byte characters: offsets count bytes, not characters
        return [flat[off[i]:off[i + 1]].tobytes().decode("utf-8", "replace").split(" ", 1)[0]
                .split("\t", 1)[0] for i in range(len(rows))]
    o = off.tolist()
    return [text[o[i]:o[i + 1]].split(" ", 1)[0].split("\t", 1)[0] for i in range(len(rows))]


def _gather(block: _Block, rows: np.ndarray | slice) -> SeqBatch:
    """Bases, offsets and labels of ``rows`` of a block, reverse-complemented where flipped."""
    labels = block.labels[rows]
    flip = None if block.flip is None else block.flip[rows]
    if block.width:
        width = block.width
        mat = block.seq.reshape(-1, width)[rows]
        if flip is not None and flip.any():
            mat = np.array(mat)  # a copy: never write into the block
            reverse_complement_rows(mat, np.flatnonzero(flip))
        n = len(labels)
        return SeqBatch(mat.reshape(-1), np.arange(0, (n + 1) * width, width, dtype=np.int64),
                        labels)
    if isinstance(rows, slice):
        part = SeqBatch(block.seq, block.offsets, block.labels).slice(rows.start, rows.stop)
    else:
        part = SeqBatch(*gather_ragged(block.seq, block.offsets, rows), labels)
    if flip is not None and flip.any():
        part = reverse_complement(part, flip)
    return part

