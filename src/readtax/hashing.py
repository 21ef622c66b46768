"""One keyed hash for every random choice that must replay: splitmix64 over coordinates.

A choice keyed by its coordinates (seed, a domain tag, epoch, read number...) needs no state, so
any worker, rank or resumed run computes the same value. Each use has its own tag so that streams
never coincide. The compiled core uses the same finaliser (``splitmix64`` in ``csrc/readtax.h``)
for the pack bucket hash, and tests check the two agree.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
MASK64 = (1 << 64) - 1

# Domain separation tags: every use of the hash gets its own stream.
TAG_EPOCH = 0x5045524D  # epoch permutation key
TAG_LAYOUT = 0x4C41594F  # per-bucket layout permutation of a packed store
TAG_BUCKET = 0x42554B54  # bucket of a read while packing
TAG_CLASS = 0x434C4153  # class draw of a balanced batch slot
TAG_READ = 0x52454144  # read-within-class draw of a balanced batch slot
TAG_RC = 0x52455643  # reverse-complement flag


def as_u64(x) -> np.ndarray:
    """``x`` as a (at least 1-d) uint64 array; Python ints are reduced modulo 2**64."""
    if isinstance(x, int):
        x = x & MASK64
    return np.atleast_1d(np.asarray(x, dtype=np.uint64))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise (wrapping uint64 arithmetic)."""
    z = as_u64(x) + GOLDEN
    return _mix(z)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's mixing steps, in place on a fresh uint64 array."""
    z ^= z >> np.uint64(30)
    z *= M1
    z ^= z >> np.uint64(27)
    z *= M2
    z ^= z >> np.uint64(31)
    return z


def splitmix_int(x: int) -> int:
    """splitmix64 on a Python int (for scalar keys: no array round trip)."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def hash64(*parts) -> np.ndarray:
    """A 64-bit hash of the coordinates ``parts`` (ints or arrays, broadcast together)."""
    k = 0
    while k < len(parts) and isinstance(parts[k], int):
        k += 1
    if k:  # a leading run of Python ints is hashed without numpy (cheap scalar keys)
        h_int = splitmix_int(parts[0] & MASK64)
        for p in parts[1:k]:
            h_int = splitmix_int(h_int ^ (p & MASK64))
        h = np.array([h_int], dtype=np.uint64)
    else:
        h = splitmix64(parts[0])
        k = 1
    for p in parts[k:]:
        h = splitmix64(h ^ as_u64(p))
    return h


def uniform(*parts) -> np.ndarray:
    """Floats in [0, 1) keyed by ``parts`` (53 random bits each)."""
    return (hash64(*parts) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def rc_flags(seed: int, epoch: int, *where: np.ndarray) -> np.ndarray:
    """Reverse-complement flag per read, keyed by (seed, epoch) and the read's coordinates.

    A store keys a read by its index; a stream, which has no index, by (file, byte offset).
    """
    where = tuple(np.asarray(w).astype(np.uint64) for w in where)
    flags = (hash64(seed, TAG_RC, epoch, *where) & np.uint64(1)).astype(bool)
    return flags.reshape(np.broadcast_shapes(*(w.shape for w in where)))
