"""Work units over input files and a process pool that maps a function over them in order.

Plain files are cut into byte ranges (each reader resynchronises to a record start); gzip files
are one unit each. Results come back in input order, so outputs do not depend on scheduling.

How a verb's context reaches its workers: the verb builds one explicit object (a dataclass such
as the pack or subset context) and hands it to :func:`map_units` as an extra argument; the worker
function receives it as a parameter, ``fn(unit, context)``. The pool is forked after the call is
registered, so every worker inherits the function and its arguments and only the unit travels
per task (no pickling of contexts, whatever their size). Each forked worker has its own copy of
the context: state a worker keeps between its units (open descriptors, counters) lives on an
explicit object inside the context and is private to that worker. With one worker the calls
run in this process on the caller's object, which then holds that state for the caller to
release.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .fastx import FastxReader, is_gzip
from .progress import Progress

# Fixed work units: outputs must not depend on --workers, and a worker returns its free memory
# after each one, so peak memory does not grow with the input.
UNIT_BYTES = 64 << 20


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``path[start:end]`` (end None = to the end of the file)."""

    path: str
    start: int = 0
    end: int | None = None
    size: int = 0

    def reader(self, chunk_size: int | None = None, skip_bad: bool = False,
               two_bit: bool = False) -> FastxReader:
        kw = {} if chunk_size is None else {"chunk_size": chunk_size}
        return FastxReader(self.path, start=self.start, end=self.end, skip_bad=skip_bad,
                           two_bit=two_bit, **kw)


def check_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    out = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UsageError(f"{path}: no such file")
        if path.is_dir():
            raise UsageError(f"{path}: is a directory, expected a FASTA/FASTQ file")
        out.append(str(path))
    if not out:
        raise UsageError("no input files")
    return out


def fixed_units(paths: Iterable[str | os.PathLike[str]], unit_bytes: int) -> list[Unit]:
    """Plain files cut into equal parts of at most ``unit_bytes``; gzip files whole.

    Depends only on the inputs, never on the worker count, so that work that draws random
    numbers per unit gives the same result on any number of cores.
    """
    units: list[Unit] = []
    for p in check_inputs(paths):
        size = os.path.getsize(p)
        if size <= unit_bytes or is_gzip(p):
            units.append(Unit(p, 0, None, size))
            continue
        parts = -(-size // unit_bytes)
        bounds = [size * k // parts for k in range(parts + 1)]
        units.extend(Unit(p, bounds[k], bounds[k + 1], bounds[k + 1] - bounds[k])
                     for k in range(parts))
    return units


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def map_units(fn: Callable, units: list, workers: int, *args, window: int | None = None
              ) -> Iterator:
    """``fn(unit, *args)`` for every unit, results in unit order; in-process when workers == 1.

    At most ``window`` (default ``2 * workers``) units are in flight: ``Pool.imap`` would let
    finished results pile up in this process whenever the consumer is slower than the workers,
    so memory would grow with the number of units, that is with the input.
    """
    if workers <= 1 or len(units) <= 1:
        for u in units:
            yield fn(u, *args)
        return
    from collections import deque

    ctx = mp.get_context("fork")
    window = window or 2 * workers
    token = next(_TOKENS)
    # Registered before the fork: the workers inherit the call, and each task sends only the
    # token and the unit (see the module docstring).
    _FORKED_CALLS[token] = _Call(fn, args)
    try:
        with ctx.Pool(min(workers, len(units))) as pool:
            pending: deque = deque()
            it = iter(units)
            for u in it:
                pending.append(pool.apply_async(_run_forked, (token, u)))
                if len(pending) >= window:
                    break
            while pending:
                result = pending.popleft().get()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.apply_async(_run_forked, (token, nxt)))
                yield result
    finally:
        del _FORKED_CALLS[token]


def map_units_progress(fn: Callable, items: list, sizes: list[int], workers: int, *args,
                       desc: str, enabled: bool | None, unit: str = "bytes") -> Iterator:
    """:func:`map_units` with a progress bar that moves by ``sizes[i]`` as result i arrives."""
    bar = Progress(sum(sizes), desc, unit=unit, enabled=enabled)
    done = 0
    try:
        for size, result in zip(sizes, map_units(fn, items, workers, *args)):
            yield result
            done += size
            bar.update(done)
    finally:
        bar.close()


class _Call:
    def __init__(self, fn: Callable, args: tuple) -> None:
        self.fn = fn
        self.args = args

    def __call__(self, unit: Unit):
        return self.fn(unit, *self.args)


# The calls of the pools now running, by token; a forked worker finds its call here. A token
# per call keeps pools of interleaved map_units generators apart.
_FORKED_CALLS: dict[int, _Call] = {}
_TOKENS = itertools.count()


def _run_forked(token: int, unit):
    return _FORKED_CALLS[token](unit)


def release_memory() -> None:
    """Return freed heap memory to the system (glibc's malloc_trim; elsewhere nothing).

    A worker calls it after each unit: the allocator otherwise keeps every page the largest
    unit needed, and what is left behind, fragmented, grows with the number of units.
    """
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None

