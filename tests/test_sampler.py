"""Keyed permutations, batch slicing over ranks and workers, resume, class balance, RC flags."""

from __future__ import annotations

import numpy as np
import pytest

from readtax.errors import UsageError
from readtax.sampler import (
    BatchSampler,
    ClassBalance,
    Position,
    permute,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 16, 17, 100, 1000, 4099, 65536, 99991])
def test_permute_is_a_bijection_with_inverse(n):
    x = np.arange(n)
    y = permute(x, n, 12345)
    assert np.array_equal(np.sort(y), x)
    assert np.array_equal(permute(y, n, 12345, inverse=True), x)


def test_permute_pinned_values():
    # The epoch order is part of what a checkpoint means: it must never change silently.
    assert permute(np.arange(10), 10, 3).tolist() == [9, 1, 5, 0, 4, 7, 2, 8, 3, 6]


def test_permute_elementwise_parameters():
    n = np.array([5, 7, 100, 3, 1, 2**40 + 7])
    key = np.array([1, 2, 3, 4, 5, 6])
    x = np.array([4, 6, 99, 2, 0, 2**40])
    y = permute(x, n, key)
    for i in range(len(n)):
        assert y[i] == permute(np.array([x[i]]), int(n[i]), int(key[i]))[0]
    assert np.array_equal(permute(y, n, key, inverse=True), x)


def test_permute_keys_differ_and_mix():
    n = 10_000
    a, b = permute(np.arange(n), n, 1), permute(np.arange(n), n, 2)
    assert (a != b).mean() > 0.99
    # Neighbouring positions land far apart: no visible structure.
    assert abs(np.corrcoef(np.arange(n), a)[0, 1]) < 0.05
    assert np.abs(np.diff(a)).mean() > n / 4


def test_permute_rejects_out_of_range():
    with pytest.raises(ValueError):
        permute(np.array([5]), 5, 0)


def _all_batches(sampler_args: dict, world: int, workers: int, epoch: int = 0,
                 start: int = 0) -> dict:
    """{(t): indices} over all ranks and workers; asserts no (rank, t) appears twice."""
    seen: dict[int, list[np.ndarray]] = {}
    for r in range(world):
        s = BatchSampler(rank=r, world_size=world, **sampler_args)
        got = set()
        for w in range(workers):
            for e, t, idx in s.iter_batches(Position(0, epoch, start), epoch + 1, w, workers):
                assert e == epoch and (r, t) not in got
                got.add((r, t))
                seen.setdefault(t, [None] * world)[r] = idx
    return seen


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_exactly_once(world, workers, shuffle):
    n, bs = 103, 4
    seen = _all_batches({"n": n, "batch_size": bs, "seed": 5, "shuffle": shuffle}, world, workers)
    flat = np.concatenate([i for parts in seen.values() for i in parts if i is not None])
    assert np.array_equal(np.sort(flat), np.arange(n))
    # The global sequence (global batch t = ranks 0..R-1) is the same for every world size.
    glob = np.concatenate([np.concatenate([i for i in seen[t] if i is not None])
                           for t in sorted(seen)])
    ref = BatchSampler(n, bs * world, seed=5, shuffle=shuffle)
    expect = np.concatenate([ref.batch_indices(0, t) for t in range(ref.batches_per_epoch)])
    assert np.array_equal(glob, expect)
    if not shuffle:
        assert np.array_equal(glob, np.arange(n))


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_drop_last(world):
    n, bs = 103, 5
    seen = _all_batches({"n": n, "batch_size": bs, "drop_last": True}, world, 2)
    g = bs * world
    assert sorted(seen) == list(range(n // g))
    flat = np.concatenate([i for parts in seen.values() for i in parts])
    assert len(flat) == (n // g) * g and len(np.unique(flat)) == len(flat)
    for parts in seen.values():
        assert all(len(i) == bs for i in parts)


def test_len_and_last_partial_batch():
    s = BatchSampler(10, 3)
    assert s.batches_per_epoch == 4 and len(s) == 4
    assert [s.rank_range(t) for t in range(4)] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    # Global batch 12 over 4 ranks: the last (1 read) batch goes to rank 3 only.
    ranks = [BatchSampler(13, 3, rank=r, world_size=4) for r in range(4)]
    assert [len(r) for r in ranks] == [1, 1, 1, 2]
    assert ranks[3].rank_range(1) == (12, 13)


def test_workers_reproduce_the_single_worker_order():
    args = {"n": 200, "batch_size": 7, "seed": 3}
    ref = [idx for _, _, idx in BatchSampler(**args).iter_batches(Position(3, 0, 0), 2)]
    for workers in (2, 3):
        s = BatchSampler(**args)
        per = [list(s.iter_batches(Position(3, 0, 0), 2, w, workers)) for w in range(workers)]
        merged = []  # the DataLoader's round-robin over workers
        while any(per):
            for p in per:
                if p:
                    merged.append(p.pop(0)[2])
        assert len(merged) == len(ref)
        assert all(np.array_equal(a, b) for a, b in zip(merged, ref))


def test_epochs_differ_and_repeat_exactly():
    s = BatchSampler(50, 50, seed=1)
    e0, e1 = s.batch_indices(0, 0), s.batch_indices(1, 0)
    assert not np.array_equal(e0, e1)
    assert np.array_equal(np.sort(e1), np.arange(50))
    assert np.array_equal(BatchSampler(50, 50, seed=1).batch_indices(1, 0), e1)


@pytest.mark.parametrize("k", [0, 1, 5, 14, 15, 16])
def test_resume_gives_the_remaining_batches(k):
    args = {"n": 90, "batch_size": 6, "seed": 9}
    full = [(e, t, idx) for e, t, idx in BatchSampler(**args).iter_batches(Position(9, 0, 0), 2)]
    e, t = full[k - 1][:2] if k else (0, -1)
    rest = list(BatchSampler(**args).iter_batches(Position(9, e, t + 1), 2))
    assert [(a, b) for a, b, _ in rest] == [(a, b) for a, b, _ in full[k:]]
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(rest, full[k:]))


def test_resume_on_another_world_size():
    # 2 ranks x 8 consumed 3 global batches; continue on 4 ranks x 4 (same global batch 16).
    n, k = 200, 3
    ref = BatchSampler(n, 16, seed=4)
    expect = [ref.batch_indices(0, t) for t in range(ref.batches_per_epoch)]
    got = []
    for t in range(k, ref.batches_per_epoch):
        parts = [BatchSampler(n, 4, seed=4, rank=r, world_size=4).batch_indices(0, t)
                 for r in range(4)]
        got.append(np.concatenate(parts))
    assert all(np.array_equal(a, b) for a, b in zip(got, expect[k:]))


def test_subset_indices():
    sub = np.array([3, 10, 11, 40, 77])
    s = BatchSampler(1000, 2, indices=sub, seed=2)
    out = np.concatenate([s.batch_indices(0, t) for t in range(s.batches_per_epoch)])
    assert sorted(out.tolist()) == sub.tolist()


def _members(counts):
    first = np.concatenate([[0], np.cumsum(counts)])

    def select(c, k):
        return first[c] + k

    return select


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0])
def test_class_balance_frequencies(temperature):
    counts = np.array([5000, 300, 20, 0, 1])
    bal = ClassBalance(counts, temperature, _members(counts))
    idx = bal.draw(11, 0, np.arange(40_000))
    cls = np.searchsorted(np.cumsum(counts), idx, side="right")
    freq = np.bincount(cls, minlength=len(counts)) / len(idx)
    w = np.where(counts > 0, counts.astype(float) ** temperature, 0.0)
    assert np.abs(freq - w / w.sum()).max() < 0.012
    assert freq[3] == 0
    # Within a class the reads are drawn uniformly.
    inside = idx[cls == 1] - 5000
    assert inside.min() >= 0 and inside.max() < 300
    obs = np.bincount(inside, minlength=300)
    chi2 = ((obs - obs.mean()) ** 2 / obs.mean()).sum()
    assert chi2 < 299 + 5 * np.sqrt(2 * 299)  # uniform within 5 sigma
    # Stateless: the same slots give the same reads; another epoch gives others.
    assert np.array_equal(bal.draw(11, 0, np.arange(100, 200)), idx[100:200])
    assert not np.array_equal(bal.draw(11, 1, np.arange(100)), idx[:100])


def test_balanced_batches_resume_and_split_over_ranks():
    counts = np.array([100, 50, 5])
    bal = ClassBalance(counts, 0.0, _members(counts))
    one = BatchSampler(155, 10, seed=3, balance=bal)
    two = [BatchSampler(155, 5, seed=3, balance=bal, rank=r, world_size=2) for r in range(2)]
    for t in range(one.batches_per_epoch):
        joined = np.concatenate([s.batch_indices(2, t) for s in two])
        assert np.array_equal(joined, one.batch_indices(2, t))


def test_bad_options():
    with pytest.raises(UsageError):
        BatchSampler(10, 0)
    with pytest.raises(UsageError):
        BatchSampler(10, 2, rank=2, world_size=2)
    with pytest.raises(UsageError):
        ClassBalance(np.array([1, 2]), -1.0, _members([1, 2]))
    with pytest.raises(UsageError):
        ClassBalance(np.array([0, 0]), 1.0, _members([0, 0]))
