"""Input units of a prediction run: how the inputs pair up, and units in batches.

A unit is a read, or a pair of mates (two files zipped in order, or one interleaved file).
:func:`plan_sources` decides how the inputs pair up, :func:`iter_batches` reads every source in
order and cuts the units into batches of exactly ``batch_units`` (the last: fewer), without
copying bases until someone needs them; :func:`unit_ids` checks that mates belong together.
Runs enter through :func:`readtax.sources.open_data` with ``purpose="predict"``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..batch import ReadBatch
from ..errors import InputError, UsageError
from ..fastx import FastxReader
from ..kraken import strip_mate

log = logging.getLogger("readtax.predict")


@dataclass
class InputSource:
    """One input unit stream: a single file, an interleaved file, or an R1/R2 pair of files."""

    paths: tuple[str, ...]
    mode: str  # "single" | "interleaved" | "pair"

    def describe(self) -> str:
        return " + ".join(self.paths)


@dataclass
class UnitChunk:
    """Units in input order; the reads of a pair are adjacent rows of ``reads``."""

    reads: ReadBatch
    nmates: np.ndarray  # int64 per unit: 1 or 2
    src: np.ndarray  # int64 per unit: index of its InputSource
    rec: np.ndarray  # int64 per unit: 0-based unit number within its source

    def __len__(self) -> int:
        return len(self.nmates)


def _slice_chunk(c: UnitChunk, a: int, b: int) -> UnitChunk:
    if a == 0 and b == len(c):
        return c
    uo = np.zeros(len(c) + 1, np.int64)
    np.cumsum(c.nmates, out=uo[1:])
    return UnitChunk(c.reads.slice(int(uo[a]), int(uo[b])), c.nmates[a:b], c.src[a:b],
                  c.rec[a:b])


def _concat_chunks(chunks: list[UnitChunk]) -> UnitChunk:
    if len(chunks) == 1:
        return chunks[0]
    return UnitChunk(ReadBatch.concat([c.reads for c in chunks]),
                  *(np.concatenate([getattr(c, f) for c in chunks]) for f in ("nmates", "src", "rec")))


def _first_ids(path: str, n: int) -> list[str]:
    """Ids of the first ``n`` records (from the first chunk only)."""
    for rb in FastxReader(path, chunk_size=1 << 16):
        return rb.read_ids()[:n]
    return []


def _mates(a: str, b: str) -> bool:
    if a.endswith("/1") and b.endswith("/2"):
        return a[:-2] == b[:-2]
    return a == b


def plan_sources(inputs: list[str], paired: str = "auto") -> list[InputSource]:
    """How the inputs pair up (see the module docstring)."""
    from ..parallel import check_inputs

    inputs = check_inputs(inputs)
    if paired == "off":
        return [InputSource((p,), "single") for p in inputs]
    if paired == "on":
        if len(inputs) == 2:
            return [InputSource((inputs[0], inputs[1]), "pair")]
        if len(inputs) == 1:
            return [InputSource((inputs[0],), "interleaved")]
        raise UsageError(f"--paired on expects one interleaved file or two files (R1 R2), "
                         f"got {len(inputs)} inputs")
    if len(inputs) == 2:
        a, b = _first_ids(inputs[0], 1), _first_ids(inputs[1], 1)
        if a and b and strip_mate(a[0]) == strip_mate(b[0]):
            log.info("pairing %s with %s (first read ids match)", inputs[0], inputs[1])
            return [InputSource((inputs[0], inputs[1]), "pair")]
    out = []
    for p in inputs:
        ids = _first_ids(p, 2)
        inter = len(ids) == 2 and _mates(ids[0], ids[1])
        if inter:
            log.info("%s: interleaved pairs (ids %s, %s)", p, ids[0], ids[1])
        out.append(InputSource((p,), "interleaved" if inter else "single"))
    return out


def _source_chunks(k: int, s: InputSource, chunk_size: int) -> Iterator[UnitChunk]:
    if s.mode == "single":
        for rb in FastxReader(s.paths[0], chunk_size=chunk_size):
            n = len(rb)
            start = rb.first_record
            yield UnitChunk(rb, np.ones(n, np.int64), np.full(n, k, np.int64),
                         np.arange(start, start + n, dtype=np.int64))
    elif s.mode == "interleaved":
        yield from _interleaved_chunks(k, s, chunk_size)
    else:
        yield from _pair_chunks(k, s, chunk_size)


def _interleaved_chunks(k: int, s: InputSource, chunk_size: int) -> Iterator[UnitChunk]:
    carry: ReadBatch | None = None
    done = 0  # pairs so far
    for rb in FastxReader(s.paths[0], chunk_size=chunk_size):
        if carry is not None:
            rb = ReadBatch.concat([carry, rb])
        even = len(rb) - len(rb) % 2
        carry = rb.slice(even, len(rb)) if even < len(rb) else None
        if even:
            n = even // 2
            yield UnitChunk(rb.slice(0, even), np.full(n, 2, np.int64),
                         np.full(n, k, np.int64), np.arange(done, done + n, dtype=np.int64))
            done += n
    if carry is not None:
        raise InputError("odd number of records in an interleaved paired file: the last mate "
                         f"{carry.read_ids()[0]!r} has no partner (use --paired off to classify "
                         "reads singly)", s.paths[0], record=2 * done + 1)


def _pair_chunks(k: int, s: InputSource, chunk_size: int) -> Iterator[UnitChunk]:
    p1, p2 = s.paths
    it1 = iter(FastxReader(p1, chunk_size=chunk_size))
    it2 = iter(FastxReader(p2, chunk_size=chunk_size))
    b1: ReadBatch | None = None
    b2: ReadBatch | None = None
    done = 0
    while True:
        if b1 is None or len(b1) == 0:
            b1 = next(it1, None)
        if b2 is None or len(b2) == 0:
            b2 = next(it2, None)
        if b1 is None or b2 is None:
            if b1 is None and b2 is None:
                return
            short, long_ = (p1, p2) if b1 is None else (p2, p1)
            raise InputError(f"mate files differ in length: {short} ends after {done} records "
                             f"but {long_} has more", long_, record=done + 1)
        m = min(len(b1), len(b2))
        both = ReadBatch.concat([b1.slice(0, m), b2.slice(0, m)])
        order = np.stack([np.arange(m), np.arange(m) + m], axis=1).ravel()
        yield UnitChunk(_lazy_take(both, order), np.full(m, 2, np.int64), np.full(m, k, np.int64),
                     np.arange(done, done + m, dtype=np.int64))
        done += m
        b1, b2 = b1.slice(m, len(b1)), b2.slice(m, len(b2))


def _lazy_take(rb: ReadBatch, order: np.ndarray) -> ReadBatch:
    """``rb.take(order)`` that gathers the bases only when they are first used."""
    from ..batch import gather_ragged

    hdr, hdr_off = gather_ragged(rb.headers, rb.header_offsets, order)
    lengths = rb.seq_offsets[order + 1] - rb.seq_offsets[order]
    seq_off = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lengths, out=seq_off[1:])

    def seq() -> np.ndarray:
        return gather_ragged(rb.seq, rb.seq_offsets, order)[0]

    return ReadBatch(seq, seq_off, hdr, hdr_off, None, rb.source, -1)


class UnitBatches:
    """The input units of a prediction run, in batches of exactly ``batch_units`` (the last one:
    fewer); each iteration reads the inputs again (see :func:`iter_batches`)."""

    def __init__(self, sources: list[InputSource], batch_units: int, chunk_size: int = 4 << 20
                 ) -> None:
        self.sources = sources
        self.batch_units = batch_units
        self.chunk_size = chunk_size

    def __iter__(self) -> Iterator[UnitChunk]:
        return iter_batches(self.sources, self.batch_units, self.chunk_size)

    def describe(self) -> str:
        return ", ".join(s.describe() for s in self.sources)


def iter_batches(sources: list[InputSource], batch_units: int, chunk_size: int = 4 << 20
                 ) -> Iterator[UnitChunk]:
    """All units of all sources in order, in batches of exactly ``batch_units`` (last: fewer)."""
    pending: list[UnitChunk] = []
    have = 0
    for k, s in enumerate(sources):
        for chunk in _source_chunks(k, s, chunk_size):
            if not len(chunk):
                continue
            if have + len(chunk) < batch_units:
                pending.append(chunk)
                have += len(chunk)
                continue
            # Complete the pending batch, then cut whole batches from this chunk without copies.
            need = batch_units - have
            yield _concat_chunks([*pending, _slice_chunk(chunk, 0, need)])
            pos = need
            while len(chunk) - pos >= batch_units:
                yield _slice_chunk(chunk, pos, pos + batch_units)
                pos += batch_units
            pending = [_slice_chunk(chunk, pos, len(chunk))] if pos < len(chunk) else []
            have = len(chunk) - pos
    if have:
        yield _concat_chunks(pending)


def unit_ids(c: UnitChunk, sources: list[InputSource]) -> list[str]:
    """Unit ids (pairs: without /1 /2), checking that mates belong together."""
    ids = c.reads.read_ids()
    if not (c.nmates == 2).any():
        return ids
    uo = np.zeros(len(c) + 1, np.int64)
    np.cumsum(c.nmates, out=uo[1:])
    out = []
    for u, (r, m) in enumerate(zip(uo[:-1].tolist(), c.nmates.tolist())):
        a = ids[r]
        if m == 2:
            b = ids[r + 1]
            if strip_mate(a) != strip_mate(b):
                s = sources[int(c.src[u])]
                n = int(c.rec[u])
                if s.mode == "pair":
                    raise InputError(f"mate ids differ: record {n + 1} is {b!r} here but {a!r} "
                                     f"in {s.paths[0]}", s.paths[1], record=n + 1)
                raise InputError(f"interleaved mates differ: {a!r} is followed by {b!r}",
                                 s.paths[0], record=2 * n + 2)
            a = strip_mate(a)
        out.append(a)
    return out
