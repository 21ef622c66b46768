"""StoreDataset: exactly-once epochs over ranks and DataLoader workers, resume, balance, RC."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import random_reads, write_fasta
from readtax.batch import reverse_complement
from readtax.errors import UsageError
from readtax.loader import StoreDataset, TwoBitCollator
from readtax.store import ReadStore, pack

N = 530


@pytest.fixture(autouse=True)
def _fresh_logging():
    logging.getLogger("readtax").handlers.clear()
    yield


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    heads, seqs, classes = random_reads(N, length=(30, 160), n_classes=5, seed=12)
    seqs[0] = "NNACGT" + seqs[0]
    fa = write_fasta(d / "r.fa", heads, seqs)
    pack([fa], d / "st", unit_bytes=10_000, bucket_bytes=20_000, run_bytes=5_000)
    return ReadStore(d / "st")


def _indices(batches) -> list[list[int]]:
    return [b.index.tolist() for b in batches]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_cover_every_read_once(store, world):
    seen = []
    for r in range(world):
        ds = StoreDataset(store, batch_size=16, seed=3, rank=r, world_size=world)
        batches = list(ds)
        assert len(batches) == len(ds)
        seen += [i for b in batches for i in b.index.tolist()]
    assert sorted(seen) == list(range(N))


def test_dataloader_order_is_independent_of_workers(store):
    ref = _indices(StoreDataset(store, batch_size=32, seed=1, epochs=2))
    assert len(ref) == 2 * -(-N // 32)
    for workers in (1, 2):
        ds = StoreDataset(store, batch_size=32, seed=1, epochs=2)
        dl = DataLoader(ds, batch_size=None, num_workers=workers)
        assert _indices(dl) == ref


def test_batches_hold_the_stored_reads(store):
    ds = StoreDataset(store, batch_size=50, seed=2, with_ids=True)
    b = next(iter(ds))
    assert b.sequences() == store.batch(b.index).sequences()
    assert b.ids == store.ids(b.index)
    assert b.labels.tolist() == store.labels(b.index).tolist()
    assert b.meta == {"loader": "store", "epoch": 0, "batch": 0, "rank": 0}


@pytest.mark.parametrize("k", [1, 4, 17])
def test_resume_after_k_batches(store, k):
    full = _indices(StoreDataset(store, batch_size=30, seed=5, epochs=2))
    ds = StoreDataset(store, batch_size=30, seed=5, epochs=2)
    for i, b in enumerate(ds):
        ds.observe(b)
        if i + 1 == k:
            break
    state = json.loads(json.dumps(ds.state_dict()))
    again = StoreDataset(store, batch_size=30, seed=5, epochs=2)
    again.load_state_dict(state)
    assert _indices(again) == full[k:]
    # Through a 2-worker DataLoader as well.
    again = StoreDataset(store, batch_size=30, seed=5, epochs=2)
    again.load_state_dict(state)
    assert _indices(DataLoader(again, batch_size=None, num_workers=2)) == full[k:]


def test_resume_on_more_ranks(store):
    full = _indices(StoreDataset(store, batch_size=24, seed=6))
    ds = StoreDataset(store, batch_size=12, seed=6, rank=0, world_size=2)
    it = iter(ds)
    for _ in range(3):
        ds.observe(next(it))
    state = ds.state_dict()
    by_t: dict[int, list[int]] = {}
    for r in range(4):  # in rank order, so each global batch is rebuilt in order
        d = StoreDataset(store, batch_size=6, seed=6, rank=r, world_size=4)
        d.load_state_dict(state)
        for b in d:
            by_t.setdefault(b.meta["batch"], []).extend(b.index.tolist())
    assert [by_t[t] for t in sorted(by_t)] == full[3:]


def test_resume_refuses_a_different_run(store):
    ds = StoreDataset(store, batch_size=8, seed=1)
    state = ds.state_dict()
    with pytest.raises(UsageError, match="global_batch_size"):
        StoreDataset(store, batch_size=16, seed=1).load_state_dict(state)
    with pytest.raises(UsageError, match="seed"):
        StoreDataset(store, batch_size=8, seed=2).load_state_dict(state)
    with pytest.raises(UsageError):
        StoreDataset(store, batch_size=8).load_state_dict({"format": "other"})
    with pytest.raises(UsageError):
        ds.observe(store.batch([0]))


def test_endless_epochs(store):
    ds = StoreDataset(store, batch_size=100, seed=0, epochs=None, drop_last=True)
    it = iter(ds)
    got = [next(it) for _ in range(12)]
    assert [b.meta["epoch"] for b in got] == [0] * 5 + [1] * 5 + [2] * 2
    e0 = sorted(i for b in got[:5] for i in b.index.tolist())
    assert len(e0) == 500 and len(set(e0)) == 500


def test_balanced_sampling(store):
    ds = StoreDataset(store, batch_size=500, seed=4, balance_temperature=0.0, epochs=8)
    labels = np.concatenate([b.labels for b in ds])
    freq = np.bincount(labels, minlength=5) / len(labels)
    assert np.abs(freq - 0.2).max() < 0.02
    natural = StoreDataset(store, batch_size=500, seed=4, balance_temperature=1.0, epochs=8)
    labels = np.concatenate([b.labels for b in natural])
    want = store.class_counts / store.class_counts.sum()
    assert np.abs(np.bincount(labels, minlength=5) / len(labels) - want).max() < 0.02
    # Resumable like the plain order.
    a = _indices(StoreDataset(store, batch_size=50, seed=4, balance_temperature=0.5))
    d = StoreDataset(store, batch_size=50, seed=4, balance_temperature=0.5)
    d.load_state_dict({**d.state_dict(), "batch": 3})
    assert _indices(d) == a[3:]


def test_subset_indices(store):
    sub = np.array([5, 9, 100, 200, 201, 529])
    ds = StoreDataset(store, batch_size=4, indices=sub, shuffle=False)
    assert _indices(ds) == [[5, 9, 100, 200], [201, 529]]
    bal = StoreDataset(store, batch_size=50, indices=sub, balance_temperature=0.0)
    assert set(np.concatenate([b.index for b in bal]).tolist()) <= set(sub.tolist())
    with pytest.raises(UsageError):
        StoreDataset(store, batch_size=4, indices=np.array([N]))


def test_reverse_complement_augmentation(store):
    plain = list(StoreDataset(store, batch_size=64, seed=9))
    aug = list(StoreDataset(store, batch_size=64, seed=9, augment_rc=True))
    flips = 0
    for p, a in zip(plain, aug):
        assert np.array_equal(p.index, a.index)
        for s, t in zip(p.sequences(), a.sequences()):
            rc = reverse_complement(type(p).from_strings([s]), np.array([True])).sequences()[0]
            assert t in (s, rc)
            flips += t != s
    assert 0.35 * N < flips < 0.65 * N
    again = list(StoreDataset(store, batch_size=64, seed=9, augment_rc=True))
    assert [b.sequences() for b in again] == [b.sequences() for b in aug]


def test_collator(store):
    first = [i for i in range(N) if store.read(i)[1].startswith("NNACGT")][0]
    b = store.batch([first, 1])
    out = TwoBitCollator(max_length=20)(b)
    assert out["input_ids"].shape == (2, 20) and out["input_ids"].dtype == torch.int64
    assert out["input_ids"][0, :6].tolist() == [4, 4, 0, 1, 2, 3]  # "NNACGT"
    assert out["attention_mask"].sum().item() == 40
    assert out["labels"].tolist() == store.labels([first, 1]).tolist()
    hot = TwoBitCollator(one_hot=True)(b)["inputs"]
    assert hot.shape[2] == 4 and hot[0, 2].tolist() == [1, 0, 0, 0] and hot[0, 0].sum() == 0
