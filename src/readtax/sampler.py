"""Stateless, resumable sampling: keyed permutations, batch slicing, class balance, RC flags.

Everything here is a pure function of integers (seed, epoch, batch number, position), computed
with whole-array numpy operations, so that

* an epoch's order needs no O(n) array: position ``i`` of epoch ``e`` holds read
  ``permute(i, n, key(seed, e))``, a keyed Feistel network with cycle-walking;
* ranks and DataLoader workers take disjoint, complete slices by arithmetic alone;
* a run resumes from ``(seed, epoch, batches consumed)``, also on another number of ranks as long
  as the global batch size (``batch_size * world_size``) is unchanged;
* randomised choices (class-balanced draws, reverse-complement flags) come from a counter-based
  hash of their coordinates, so a resumed run replays them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from . import _native
from .errors import UsageError
from .hashing import (
    M1,
    M2,
    MASK64,
    TAG_CLASS,
    TAG_EPOCH,
    TAG_READ,
    as_u64,
    hash64,
    splitmix64,
    splitmix_int,
    uniform,
)

ROUNDS = 6

# -- keyed permutation ---------------------------------------------------------------------


def _round(v: np.ndarray, key, modulus) -> np.ndarray:
    """Feistel round function: a hash of ``v ^ key`` scaled into ``[0, modulus)``.

    The top 32 bits of a multiply-xorshift hash are scaled by multiplication instead of a
    division (``modulus`` is below 2**32 because it is about sqrt(n)).
    """
    h = v ^ key
    h *= M1
    h ^= h >> np.uint64(32)
    h *= M2
    h >>= np.uint64(32)
    h *= modulus
    h >>= np.uint64(32)
    return h


def _radices(n):
    """(a, b) with a = ceil(sqrt(n)), b = ceil(n / a): a*b >= n and a*b - n < a."""
    if np.ndim(n) == 0:
        n = max(int(n), 1)
        a = math.isqrt(n - 1) + 1
        return np.uint64(a), np.uint64(-(-n // a))
    n = np.maximum(n, np.uint64(1))
    a = np.ceil(np.sqrt(n.astype(np.float64))).astype(np.uint64)
    a += (a * a < n).astype(np.uint64)  # float rounding near large squares
    a -= ((a > 1) & ((a - 1) * (a - 1) >= n)).astype(np.uint64)
    return a, (n + a - np.uint64(1)) // a


def _feistel(x, a, b, keys, inverse: bool) -> np.ndarray:
    """A Feistel network over the mixed-radix domain ``[0, a*b)``.

    The state is (L mod a, R mod b); a round maps it to (R, (L + F(R)) mod a), which swaps the
    radices, so an even number of rounds ends with the original ones. ``a``/``b``/``keys`` are
    scalars (one permutation) or arrays (one permutation per element).
    """
    left, right = x // b, x % b
    if not inverse:
        ma, mb = a, b
        for k in keys:
            f = _round(right, k, ma)
            f += left
            np.subtract(f, ma, out=f, where=f >= ma)
            left, right = right, f
            ma, mb = mb, ma
        return left * b + right
    cl, cr = a, b
    for k in reversed(keys):
        f = _round(left, k, cr)
        f = right + cr - f
        np.subtract(f, cr, out=f, where=f >= cr)
        left, right = f, left
        cl, cr = cr, cl
    return left * b + right


def permute(x, n, key, *, inverse: bool = False, rounds: int = ROUNDS) -> np.ndarray:
    """Keyed pseudo-random bijection of ``[0, n)`` applied elementwise to ``x``.

    ``x``, ``n`` and ``key`` broadcast together, so one call can apply a different permutation
    to each element (the store's per-bucket layouts). The network runs on ``[0, a*b)`` with
    ``a*b - n < sqrt(n) + 1``; the rare values that land outside ``[0, n)`` are cycle-walked
    (permuted again until they land inside), which keeps the map a bijection of ``[0, n)``.
    """
    x = as_u64(x)
    shape = np.broadcast_shapes(x.shape, np.shape(n), np.shape(key))
    if np.size(n) == 1 and np.size(key) == 1:  # one permutation: the compiled loop
        x = np.broadcast_to(x, shape).ravel().copy()
        nn = int(np.asarray(n).ravel()[0])
        if len(x) and int(x.max()) >= nn:
            raise ValueError("permute: values must lie in [0, n)")
        y = np.empty(len(x), np.int64)
        if len(x):
            keys, a, b = feistel_params(nn, int(as_u64(key).ravel()[0]), rounds)
            _native.feistel(x=x, n=nn, keys=keys, a=a, b=b, inverse=inverse, out=y)
        return y.reshape(shape)
    x, nn, kk = (np.ascontiguousarray(v.ravel()) for v in
                 np.broadcast_arrays(x, as_u64(n), as_u64(key)))
    if len(x) == 0:
        return x.astype(np.int64).reshape(shape)
    if (x >= nn).any():
        raise ValueError("permute: values must lie in [0, n)")
    keys = [splitmix64(kk ^ np.uint64(0x100 + r)) for r in range(rounds)]
    a, b = _radices(nn)
    y = _feistel(x, a, b, keys, inverse)
    todo = np.flatnonzero(y >= nn)
    while len(todo):
        z = _feistel(y[todo], a[todo], b[todo], [k[todo] for k in keys], inverse)
        y[todo] = z
        todo = todo[z >= nn[todo]]
    return y.astype(np.int64).reshape(shape)


def feistel_params(n: int, key: int, rounds: int = ROUNDS) -> tuple[np.ndarray, int, int]:
    """Round keys and radices of :func:`permute` over ``[0, n)`` with ``key``, for the
    compiled loops (``_native.feistel``, ``_native.bucket_layout``)."""
    keys = np.array([splitmix_int((key & MASK64) ^ (0x100 + r)) for r in range(rounds)],
                    np.uint64)
    a, b = _radices(n)
    return keys, int(a), int(b)


def epoch_key(seed: int, epoch: int) -> int:
    return int(hash64(seed, TAG_EPOCH, epoch)[0])


# -- class balance -------------------------------------------------------------------------


class ClassBalance:
    """Draw classes with weight ``count ** temperature`` and then a uniform read of the class.

    ``select(classes, ranks)`` returns the read index of the ``ranks[i]``-th read of class
    ``classes[i]`` (the store answers it from its per-bucket class tables). Temperature 0 gives
    every non-empty class the same weight; 1 reproduces the natural class frequencies.
    """

    def __init__(self, counts: np.ndarray, temperature: float,
                 select: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        if not np.isfinite(temperature) or temperature < 0:
            raise UsageError(f"balance temperature must be a number >= 0, got {temperature!r}")
        self.counts = np.asarray(counts, dtype=np.int64)
        present = self.counts > 0
        if not present.any():
            raise UsageError("class-balanced sampling needs at least one class with reads")
        w = np.zeros(len(self.counts), dtype=np.float64)
        w[present] = self.counts[present].astype(np.float64) ** float(temperature)
        self.weights = w / w.sum()
        self.cum = np.cumsum(self.weights)
        self.cum[-1] = 1.0
        self.temperature = float(temperature)
        self.select = select

    def draw(self, seed: int, epoch: int, slots: np.ndarray) -> np.ndarray:
        """Read indices for the global batch slots ``slots`` of ``epoch`` (pure function)."""
        slots = np.asarray(slots, dtype=np.uint64)
        u = uniform(seed, TAG_CLASS, epoch, slots)
        cls = np.searchsorted(self.cum, u, side="right")
        cls = np.minimum(cls, len(self.cum) - 1)
        # Guard against a zero-weight class at a float boundary: step to the next present one.
        empty = self.counts[cls] == 0
        if empty.any():
            cls[empty] = np.searchsorted(self.cum, self.cum[cls[empty]], side="right")
        v = uniform(seed, TAG_READ, epoch, slots)
        rank = np.minimum((v * self.counts[cls]).astype(np.int64), self.counts[cls] - 1)
        return np.asarray(self.select(cls.astype(np.int64), rank), dtype=np.int64)


# -- batches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a run stands: the next global batch to produce is ``batch`` of ``epoch``."""

    seed: int
    epoch: int
    batch: int


class BatchSampler:
    """Global batches of ``batch_size * world_size`` positions; rank r takes its share.

    Global batch t of an epoch covers epoch positions ``[t*G, min((t+1)*G, n))``; rank r takes
    the contiguous part ``[floor(r*m/R), floor((r+1)*m/R))`` of its m positions, so a final
    partial batch is split as evenly as possible and nothing is repeated or padded (ranks can
    then disagree about the number of batches by one: use ``drop_last`` for multi-rank training).
    Positions map to reads through the epoch permutation (``shuffle``), a class-balanced draw
    (``balance``), or the identity; ``indices`` restricts an epoch to a subset of reads.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 indices: np.ndarray | None = None, balance: ClassBalance | None = None) -> None:
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"rank {rank} is not in [0, world_size={world_size})")
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.n = int(n) if self.indices is None else len(self.indices)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.balance = balance
        self.global_batch_size = self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        """Global batches per epoch (the same on every rank)."""
        g = self.global_batch_size
        return self.n // g if self.drop_last else -(-self.n // g)

    def rank_range(self, t: int, rank: int | None = None) -> tuple[int, int]:
        """Epoch positions ``[lo, hi)`` of global batch ``t`` that ``rank`` takes."""
        r = self.rank if rank is None else rank
        start = t * self.global_batch_size
        m = max(0, min(self.global_batch_size, self.n - start))
        return start + r * m // self.world_size, start + (r + 1) * m // self.world_size

    def __len__(self) -> int:
        """Non-empty batches of this rank per epoch."""
        t = self.batches_per_epoch
        if t == 0:
            return 0
        lo, hi = self.rank_range(t - 1)
        return t if hi > lo else t - 1

    def batch_indices(self, epoch: int, t: int) -> np.ndarray:
        """Read indices of this rank's part of global batch ``t`` of ``epoch``."""
        lo, hi = self.rank_range(t)
        pos = np.arange(lo, hi, dtype=np.int64)
        if self.balance is not None:
            return self.balance.draw(self.seed, epoch, pos)
        if self.shuffle and len(pos):
            pos = permute(pos, self.n, epoch_key(self.seed, epoch))
        return pos if self.indices is None else self.indices[pos]

    def iter_batches(self, start: Position, epochs: int | None, worker: int = 0,
                     num_workers: int = 1) -> Iterator[tuple[int, int, np.ndarray]]:
        """(epoch, t, indices) from ``start`` on; worker w takes stream items k = w (mod W).

        k counts the batches this rank yields from ``start`` (across epochs), so a DataLoader
        that takes one batch from each worker in turn returns the same sequence for any W.
        """
        epoch, t = start.epoch, start.batch
        per_epoch = self.batches_per_epoch
        if per_epoch == 0:
            return
        if t >= per_epoch:
            epoch, t = epoch + 1, 0
        k = 0
        while epochs is None or epoch < epochs:
            while t < per_epoch:
                lo, hi = self.rank_range(t)
                if hi > lo:
                    if k % num_workers == worker:
                        yield epoch, t, self.batch_indices(epoch, t)
                    k += 1
                t += 1
            epoch, t = epoch + 1, 0
