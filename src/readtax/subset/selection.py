"""The exact selection core of ``readtax subset``: quotas split over blocks, and the reads of a
block chosen batch by batch, uniformly and exactly (also :func:`stratified_indices` on an array
of classes, for validation samples of a store)."""

from __future__ import annotations

import numpy as np

from .. import _native
from ..errors import UsageError

MAX_UNITS = 512  # bounds the units x classes count matrices (512 x 3,507 x 8 B = 14 MB)
STRATIFIED_CHUNK = 1 << 20
_HG_LIMIT = 10**9  # numpy's hypergeometric needs ngood, nbad below this

# Keys mixed into the seed so that independent decisions draw from independent streams.
KEY_QUOTA = 0
KEY_SELECT = 1
KEY_BUCKET = 2
KEY_SHUFFLE = 3


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
        bad = _native.select_reads(cls=np.ascontiguousarray(cls, dtype=np.int64), left=self.left,
                                   need_a=self.train, need_b=self.val, state=self.state, out=out)
        if bad >= 0:
            raise CountMismatch
        return out == 1, out == 2

    def done(self) -> bool:
        """True when every planned read was seen and chosen."""
        return not (self.left.any() or self.train.any() or self.val.any())


class CountMismatch(Exception):
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
    take = split_quota(counts, quota, np.random.default_rng([seed, KEY_QUOTA]))
    out = [np.zeros(0, dtype=np.int64)]
    for i, s in enumerate(starts):
        if not take[i].any():
            continue
        c = np.asarray(classes[s : s + chunk]).astype(np.int64, copy=False)
        sel = BlockSelector(counts[i], take[i], None, np.random.default_rng([seed, KEY_SELECT, i]))
        chosen, _ = sel.select(c)
        out.append(s + np.flatnonzero(chosen))
    return np.concatenate(out)

