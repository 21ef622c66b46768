"""readtax.sources: one entry point from DATA to a dataset for every purpose; the label remap;
the validation sample of reads files (uniform, bounded, seeded)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import random_reads, write_fasta  # noqa: E402
from conftest import write_mapping as write_class_mapping  # noqa: E402
from helpers_train import make_genomes, make_task, write_mapping, write_reads  # noqa: E402
from readtax.errors import ModelError, StoreError, UsageError  # noqa: E402
from readtax.labels import LabelMap, load_mapping  # noqa: E402
from readtax.loader import StoreDataset  # noqa: E402
from readtax.sources import (  # noqa: E402
    SampleDataset,
    open_data,
    remap_lut,
    sample_reads_per_class,
)
from readtax.store import ReadStore, pack  # noqa: E402

N = 530


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    heads, seqs, _ = random_reads(N, length=(30, 160), n_classes=5, seed=12)
    fa = write_fasta(d / "r.fa", heads, seqs)
    pack([fa], d / "st", unit_bytes=10_000, bucket_bytes=20_000, run_bytes=5_000)
    return ReadStore(d / "st")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_task(tmp_path_factory.mktemp("task"))


def test_open_data(store, tmp_path):
    """One entry point: a store gives a StoreDataset, reads files a StreamDataset; a store must
    come alone and agree with the mapping; a directory without a manifest is refused."""
    ds = open_data(str(store.path), "train", batch_size=10, shuffle_buffer=99, labels="lbl")
    assert isinstance(ds.dataset, StoreDataset) and ds.kind == "store"
    assert len(ds.dataset) == N // 10 and ds.label_map == store.label_map  # drop_last
    heads, seqs, _ = random_reads(20, n_classes=2, seed=1)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    mp = load_mapping(write_class_mapping(tmp_path / "m.tsv", 2))
    stream = open_data([fa], "train", batch_size=10, label_map=mp, balance_temperature=1.0)
    assert type(stream.dataset).__name__ == "StreamDataset" and stream.kind == "reads"
    ev = open_data(store.path, "eval", batch_size=10, label_map=store.label_map)
    assert isinstance(ev.dataset, StoreDataset) and ev.lut is None
    assert len(ev.dataset) == -(-N // 10)
    with pytest.raises(UsageError, match="not a readtax store"):
        open_data(tmp_path, "train", batch_size=10)
    with pytest.raises(UsageError, match="only DATA"):
        open_data([store.path, fa], "eval", batch_size=10, label_map=mp)
    with pytest.raises(StoreError, match="disagrees"):
        open_data(store.path, "train", batch_size=10, label_map=mp)
    with pytest.raises(UsageError, match="purpose"):
        open_data(store.path, "guess", batch_size=10)


def test_open_data_for_prediction(tmp_path):
    """Prediction: units in input order, in batches of exactly batch_size (the last: fewer)."""
    heads, seqs, _ = random_reads(25, n_classes=2, seed=3)
    fa = write_fasta(tmp_path / "p.fa", heads, seqs)
    src = open_data(fa, "predict", batch_size=10, paired="off")
    assert src.kind == "reads" and src.label_map is None
    sizes = [len(c) for c in src.dataset]
    assert sizes == [10, 10, 5] and [len(c) for c in src.dataset] == sizes  # iterable again
    with pytest.raises(UsageError, match="is a directory"):
        open_data(tmp_path, "predict", batch_size=10)


def test_sample_dataset_splits_ranks_and_covers_the_sample(task):
    lm = load_mapping(task["mapping"])
    sample = sample_reads_per_class([str(task["val"])], lm, 7, seed=1)
    seen = []
    for rank in range(3):
        ds = SampleDataset(sample, lm, batch_size=5, rank=rank, world_size=3)
        batches = list(ds)
        assert len(batches) == len(ds)
        seen += [i for b in batches for i in b.index.tolist()]
    assert sorted(seen) == sorted(sample.index.tolist())


def test_remap_lut():
    model = LabelMap.from_ids([5, 6, 7], names=["a", "b", "c"])
    assert remap_lut(model, model) is None
    data = LabelMap.from_ids([7, 5], names=["c", "a"])
    assert remap_lut(data, model).tolist() == [2, 0]
    extra = LabelMap.from_ids([5, 9], names=["a", "z"])
    with pytest.raises(ModelError, match=r"z \(class_id 9\)"):
        remap_lut(extra, model, what="store S")
    assert remap_lut(extra, model, counts=np.array([3, 0])).tolist() == [0, -1]


def test_reads_file_validation_sample(task):
    lm = load_mapping(task["mapping"])
    a = sample_reads_per_class([str(task["val"])], lm, 7, seed=1)
    assert np.bincount(a.labels).tolist() == [7, 7, 7, 7]
    assert len(np.unique(a.index)) == 28
    b = sample_reads_per_class([str(task["val"])], lm, 7, seed=1)
    assert np.array_equal(a.index, b.index) and np.array_equal(a.seq, b.seq)
    c = sample_reads_per_class([str(task["val"])], lm, 7, seed=2)
    assert not np.array_equal(a.index, c.index)
    big = sample_reads_per_class([str(task["val"])], lm, 1000, seed=1)
    assert np.bincount(big.labels).tolist() == [60, 60, 60, 60]


def test_sample_is_uniform_within_class(tmp_path):
    """Every read of a class is equally likely to be drawn (chi-square over many seeds)."""
    fa = write_reads(tmp_path / "r.fa", make_genomes(2, 500, 0), 20, 50, 0, [1, 2])
    lm = load_mapping(write_mapping(tmp_path / "m.tsv", [1, 2]))
    counts = np.zeros(40, np.int64)
    for seed in range(300):
        counts[sample_reads_per_class([str(fa)], lm, 5, seed).index] += 1
    expected = 300 * 5 / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 80, chi2  # 39 degrees of freedom: p ~ 1e-4 at 80
