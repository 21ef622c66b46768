"""SeqBatch: slicing and joining batches exactly."""

from __future__ import annotations

import numpy as np

from readtax.batch import SeqBatch


def _batch(n: int = 9, seed: int = 0) -> SeqBatch:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGTN"), int(k))) for k in rng.integers(0, 12, n)]
    b = SeqBatch.from_strings(seqs, labels=rng.integers(-1, 4, n))
    b.index = np.arange(100, 100 + n, dtype=np.int64)
    b.ids = [f"r{i}" for i in range(n)]
    b.meta = {"batch": 7}
    return b


def _fields(b: SeqBatch) -> tuple:
    return (b.seq.tobytes(), b.offsets.tolist(), b.labels.tolist(),
            None if b.index is None else b.index.tolist(), b.ids)


def test_slices_concat_back_to_the_batch():
    b = _batch()
    n = len(b)
    for cuts in [(), (0,), (3, 3), (1, 4, 8), (n,)]:
        bounds = [0, *cuts, n]
        parts = [b.slice(x, y) for x, y in zip(bounds, bounds[1:])]
        assert _fields(SeqBatch.concat(parts)) == _fields(b)
    assert b.slice(2, 5).sequences() == b.sequences()[2:5]
    assert np.shares_memory(b.slice(2, 5).seq, b.seq)


def test_concat_of_distinct_batches():
    a, c = _batch(4, seed=1), _batch(5, seed=2)
    a.meta, c.meta = {"pos": 1}, {"pos": 2}
    joined = SeqBatch.concat([a, c])
    assert joined.sequences() == a.sequences() + c.sequences()
    assert joined.labels.tolist() == a.labels.tolist() + c.labels.tolist()
    assert joined.ids == a.ids + c.ids
    assert joined.meta == {"pos": 2}  # the loader position after both


def test_index_and_ids_only_when_every_batch_has_them():
    a, c = _batch(3), _batch(2, seed=4)
    c.index, c.ids = None, None
    joined = SeqBatch.concat([a, c])
    assert joined.index is None and joined.ids is None
    assert joined.sequences() == a.sequences() + c.sequences()


def test_empty_slices_and_batches():
    b = _batch()
    empty = b.slice(4, 4)
    assert len(empty) == 0 and empty.offsets.tolist() == [0] and empty.ids == []
    assert _fields(SeqBatch.concat([empty, b, empty])) == _fields(b)
    none = SeqBatch.concat([])
    assert len(none) == 0 and none.offsets.tolist() == [0] and none.seq.dtype == np.uint8
    assert SeqBatch.concat([b]) is b
    assert b.slice(0, len(b)).meta is None  # a slice is no loader position
