from __future__ import annotations

import numpy as np

from readtax.hashing import hash64, rc_flags, splitmix64, splitmix_int, uniform


def test_splitmix64_known_answer():
    # The first output of Vigna's splitmix64 generator seeded with 0.
    assert int(splitmix64(0)[0]) == 0xE220A8397B1DCDAF
    assert splitmix_int(0) == 0xE220A8397B1DCDAF
    assert splitmix_int(12345) == int(splitmix64(12345)[0])


def test_hash64_scalar_prefix_equals_array_path():
    # Leading Python ints take a scalar shortcut; the value must be the same as the array path.
    x = np.arange(5, dtype=np.uint64)
    by_array = splitmix64(splitmix64(splitmix64(np.uint64(1)) ^ np.uint64(2)) ^ x)
    assert np.array_equal(hash64(1, 2, x), by_array)
    assert hash64(1, 2, np.arange(3)).tolist() == [
        16613338946343043936, 13264548337748323810, 16803123258551283528]


def test_hash_and_uniform_are_deterministic():
    assert np.array_equal(hash64(1, 2, np.arange(5)), hash64(1, 2, np.arange(5)))
    u = uniform(7, np.arange(100_000))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


def test_rc_flags():
    idx = np.arange(20_000)
    f = rc_flags(1, 0, idx)
    assert f.dtype == bool and abs(f.mean() - 0.5) < 0.02
    assert np.array_equal(f, rc_flags(1, 0, idx))
    assert (f != rc_flags(1, 1, idx)).mean() > 0.4
    assert (f != rc_flags(2, 0, idx)).mean() > 0.4
    assert np.array_equal(rc_flags(1, 0, idx[::-1]), f[::-1])
    assert rc_flags(1, 0, np.arange(16)).astype(int).tolist() == [
        1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0]


def test_rc_flags_by_file_and_offset():
    # A stream keys a read by (file, byte offset): the same offset in another file differs.
    files = np.repeat(np.arange(2), 10_000)
    pos = np.tile(np.arange(10_000) * 151, 2)
    f = rc_flags(3, 0, files, pos)
    assert f.shape == (20_000,) and abs(f.mean() - 0.5) < 0.02
    assert (f[:10_000] != f[10_000:]).mean() > 0.4
    assert np.array_equal(f, rc_flags(3, 0, files, pos))
