"""The streaming loader: exactly-once coverage, shuffling, labels, augmentation and resume."""

from __future__ import annotations

import json
import logging
from collections import Counter
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch

from conftest import random_reads, write_fasta, write_fastq, write_mapping
from readtax import stream as stream_mod
from readtax.errors import FormatError, LabelError, UsageError
from readtax.fastx import FastxReader
from readtax.hashing import rc_flags
from readtax.labels import load_mapping
from readtax.stream import StreamDataset

N_READS = 240


def _identity(batch):
    return batch


@pytest.fixture(scope="module")
def reads():
    heads, seqs, classes = random_reads(N_READS, length=(1, 180), seed=3)
    return heads, seqs, classes


@pytest.fixture(scope="module")
def fixed_reads():
    """Equal-length reads: blocks take the 2-D fast path (one row gather per block)."""
    return random_reads(N_READS, length=30, seed=5)


@pytest.fixture
def label_map(tmp_path):
    return load_mapping(write_mapping(tmp_path / "map.tsv", 5))


def _write(tmp_path, reads, fmt="fasta", compress=False, files=1, name="r"):
    """Write the reads into ``files`` files (round-robin split); returns the paths."""
    heads, seqs, _ = reads
    paths = []
    for f in range(files):
        hs, ss = heads[f::files], seqs[f::files]
        suffix = (".fa" if fmt == "fasta" else ".fq") + (".gz" if compress else "")
        p = tmp_path / f"{name}{f}{suffix}"
        if fmt == "fasta":
            write_fasta(p, hs, ss, width=50, compress=compress)  # multi-line records
        else:
            write_fastq(p, hs, ss, compress=compress)
        paths.append(str(p))
    return paths


def _worker_batches(ds: StreamDataset, workers: int, w: int) -> list:
    info = SimpleNamespace(num_workers=workers, id=w)
    with mock.patch.object(stream_mod.torch_data, "get_worker_info", return_value=info):
        return list(iter(ds))


def _loader_order(ds: StreamDataset, workers: int = 1) -> list:
    """Batches in the order a DataLoader with ``workers`` workers returns them (round-robin
    over workers, skipping exhausted ones), without starting processes."""
    if workers <= 1:
        return list(iter(ds))
    per = [_worker_batches(ds, workers, w) for w in range(workers)]
    out, i = [], 0
    while any(per):
        if per[i % workers]:
            out.append(per[i % workers].pop(0))
        i += 1
    return out


def _reads_of(batches) -> list[tuple[str, str]]:
    return [rec for b in batches for rec in zip(b.ids, b.sequences())]


def _all_ranks(paths, ranks, workers, **kw):
    out = []
    for r in range(ranks):
        ds = StreamDataset(paths, rank=r, world_size=ranks, with_ids=True, **kw)
        out.extend(_loader_order(ds, workers))
    return out


def _expected(reads):
    heads, seqs, _ = reads
    return Counter(zip(heads, seqs))


# -- exactly once --------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_every_read_exactly_once(tmp_path, reads, compress, workers, ranks):
    # Tiny ranges force many records to straddle range boundaries; gzip files are whole units.
    paths = _write(tmp_path, reads, compress=compress, files=3 if compress else 2)
    batches = _all_ranks(paths, ranks, workers, batch_size=16, labels=None, range_size=700,
                         shuffle_buffer=40, open_ranges=3)
    assert Counter(_reads_of(batches)) == _expected(reads)
    assert all(len(b) <= 16 for b in batches)


@pytest.mark.parametrize("shuffle", [False, True])
def test_fastq_exactly_once(tmp_path, reads, shuffle):
    paths = _write(tmp_path, reads, fmt="fastq")
    batches = _all_ranks(paths, 2, 3, batch_size=10, labels=None, shuffle=shuffle,
                         range_size=500, shuffle_buffer=32)
    assert Counter(_reads_of(batches)) == _expected(reads)


@pytest.mark.parametrize("compress", [False, True])
def test_fewer_records_than_workers(tmp_path, compress):
    tiny = (["lbl|1|1|1|a", "lbl|2|2|2|b"], ["ACGT", "GGA"], None)
    paths = _write(tmp_path, tiny, compress=compress)
    batches = _all_ranks(paths, 3, 4, batch_size=8, labels=None)
    assert Counter(_reads_of(batches)) == _expected(tiny)


def test_unshuffled_single_stream_is_file_order(tmp_path, reads):
    paths = _write(tmp_path, reads, files=2)
    ds = StreamDataset(paths, batch_size=7, shuffle=False, labels=None, with_ids=True,
                       range_size=300)
    batches = list(ds)
    heads, seqs, _ = reads
    assert _reads_of(batches) == list(zip(heads[0::2], seqs[0::2])) + list(zip(heads[1::2],
                                                                               seqs[1::2]))
    assert [len(b) for b in batches] == [7] * (N_READS // 7) + [N_READS % 7]


def test_drop_last_and_batch_sizes(tmp_path, reads):
    paths = _write(tmp_path, reads)
    kw = dict(batch_size=32, labels=None, shuffle_buffer=50, range_size=400)
    ds = StreamDataset(paths, **kw)
    sizes = [len(b) for b in ds]
    assert sum(sizes) == N_READS and sizes[:-1] == [32] * (len(sizes) - 1)
    assert [len(b) for b in StreamDataset(paths, drop_last=True, **kw)] == [32] * (N_READS // 32)


def test_real_dataloader_matches_round_robin(tmp_path, reads, label_map):
    paths = _write(tmp_path, reads)
    kw = dict(batch_size=16, label_map=label_map, with_ids=True, range_size=600,
              shuffle_buffer=40, open_ranges=2, seed=5)
    want = _loader_order(StreamDataset(paths, **kw), 2)
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(StreamDataset(paths, **kw), batch_size=None,
                                             num_workers=workers, collate_fn=_identity)
        got = list(loader)
        if workers == 2:
            assert [b.ids for b in got] == [b.ids for b in want]
        assert Counter(_reads_of(got)) == _expected(reads)


# -- shuffling -----------------------------------------------------------------------------------


def test_shuffle_is_seeded_and_changes_with_epoch(tmp_path, reads):
    paths = _write(tmp_path, reads)
    kw = dict(batch_size=16, labels=None, with_ids=True, range_size=400, shuffle_buffer=64,
              epochs=2)
    a = _reads_of(StreamDataset(paths, seed=1, **kw))
    assert a == _reads_of(StreamDataset(paths, seed=1, **kw))
    assert a != _reads_of(StreamDataset(paths, seed=2, **kw))
    first, second = a[:N_READS], a[N_READS:]
    assert Counter(first) == Counter(second) == _expected(reads)
    assert first != second
    heads, seqs, _ = reads
    assert first != list(zip(heads, seqs))


def test_shuffle_mixes_a_class_sorted_file(tmp_path):
    heads, seqs, classes = random_reads(2000, length=20, n_classes=20, seed=4)
    order = np.argsort(classes, kind="stable")
    p = write_fasta(tmp_path / "sorted.fa", [heads[i] for i in order], [seqs[i] for i in order])
    lm = load_mapping(write_mapping(tmp_path / "m.tsv", 20))

    def distinct(**kw):
        ds = StreamDataset([str(p)], batch_size=50, label_map=lm, range_size=2000, **kw)
        return np.mean([len(np.unique(b.labels)) for b in ds])

    assert distinct(shuffle=False) < 2.5
    assert distinct(shuffle_buffer=500, open_ranges=16) > 10


# -- labels and ids ------------------------------------------------------------------------------


def test_labels_follow_the_map(tmp_path, reads, label_map):
    paths = _write(tmp_path, reads)
    ds = StreamDataset(paths, batch_size=20, label_map=label_map, with_ids=True, range_size=500)
    heads, _, classes = reads
    want = dict(zip(heads, classes.tolist()))
    for b in ds:
        assert b.labels.dtype == np.int64
        assert b.labels.tolist() == [want[i] for i in b.ids]
        assert b.index is None and b.meta["loader"] == "stream"
    assert ds.label_map is label_map


def test_labels_need_a_map_unless_disabled(tmp_path, reads):
    paths = _write(tmp_path, reads)
    with pytest.raises(UsageError, match="label map"):
        StreamDataset(paths, batch_size=8)
    ds = StreamDataset(paths, batch_size=500, labels=None)
    (b,) = list(ds)
    assert (b.labels == -1).all() and b.ids is None and len(ds.label_map) == 0


def test_skip_unknown_drops_and_counts(tmp_path, reads):
    paths = _write(tmp_path, reads)
    small = load_mapping(write_mapping(tmp_path / "m3.tsv", 3))  # classes 3 and 4 unknown
    _, _, classes = reads
    unknown = int((classes >= 3).sum())
    with pytest.raises(LabelError, match="not in the mapping"):
        list(StreamDataset(paths, batch_size=8, label_map=small))
    ds = StreamDataset(paths, batch_size=8, label_map=small, skip_unknown=True, range_size=500,
                       shuffle_buffer=30)
    got = []
    for b in ds:
        ds.observe(b)
        got.extend(b.labels.tolist())
    assert len(got) == N_READS - unknown and min(got) >= 0 and max(got) <= 2
    assert ds.skipped == unknown
    assert ds.state_dict()["skipped"] == unknown


def test_ids_are_first_header_word(tmp_path, label_map):
    p = write_fasta(tmp_path / "x.fa", ["lbl|1|2|3|a extra words", "lbl|2|2|3|b\tx"], ["AC", "G"])
    (b,) = list(StreamDataset([str(p)], batch_size=4, label_map=label_map, with_ids=True,
                              shuffle=False))
    assert b.ids == ["lbl|1|2|3|a", "lbl|2|2|3|b"]
    assert b.labels.tolist() == [1, 2]


# -- augmentation --------------------------------------------------------------------------------


def _revcomp(s: str) -> str:
    return s[::-1].translate(str.maketrans("ACGTN", "TGCAN"))


def test_reverse_complement_is_keyed_by_position(tmp_path, reads):
    paths = _write(tmp_path, reads, files=2)
    heads, seqs, _ = reads
    orig = dict(zip(heads, seqs))
    kw = dict(batch_size=16, labels=None, with_ids=True, augment_rc=True, range_size=500,
              epochs=2, shuffle_buffer=50)

    def flips(batches):
        out = {}
        for b in batches:
            for rid, s in zip(b.ids, b.sequences()):
                assert s in (orig[rid], _revcomp(orig[rid]))
                out[(b.meta["epoch"], rid)] = s != orig[rid] or s == _revcomp(s)
        assert len(out) == 2 * N_READS
        return out

    a = flips(list(StreamDataset(paths, seed=3, **kw)))
    # The decision depends on (seed, epoch, file, offset), not on workers or reading order.
    assert a == flips(_loader_order(StreamDataset(paths, seed=3, **kw), 3))
    assert a == flips(list(StreamDataset(paths, seed=3, shuffle=False, **kw)))
    n_flip = sum(a.values())
    assert 0.35 * len(a) < n_flip < 0.65 * len(a)
    epoch0 = {rid: v for (e, rid), v in a.items() if e == 0}
    epoch1 = {rid: v for (e, rid), v in a.items() if e == 1}
    assert epoch0 != epoch1
    assert a != flips(list(StreamDataset(paths, seed=4, **kw)))


@pytest.mark.parametrize("length", [30, 31])
@pytest.mark.parametrize("shuffle", [False, True])
def test_reverse_complement_of_equal_length_reads(tmp_path, length, shuffle):
    heads, seqs, classes = random_reads(N_READS, length=length, seed=6)
    paths = _write(tmp_path, (heads, seqs, classes), files=2)
    orig = dict(zip(heads, seqs))
    # Expected decisions straight from the keyed hash of (seed, epoch, file, byte offset).
    want = {}
    for f, p in enumerate(paths):
        for rb in FastxReader(p):
            flips = rc_flags(11, 0, np.full(len(rb), f), rb.byte_offsets)
            want.update(zip(rb.read_ids(), flips.tolist()))
    ds = StreamDataset(paths, batch_size=16, labels=None, with_ids=True, augment_rc=True,
                       seed=11, shuffle=shuffle, shuffle_buffer=50, range_size=600)
    got = {}
    for b in ds:
        assert b.lengths.tolist() == [length] * len(b)
        for rid, s in zip(b.ids, b.sequences()):
            got[rid] = s
    assert len(got) == N_READS
    assert got == {r: _revcomp(s) if want[r] else s for r, s in orig.items()}


# -- resume --------------------------------------------------------------------------------------


def _consume(ds, workers, stop=None):
    """Observe batches in DataLoader order; return (all batches, state after ``stop`` batches)."""
    batches = _loader_order(ds, workers)
    state = None
    for i, b in enumerate(batches):
        ds.observe(b)
        if i + 1 == stop:
            state = json.loads(json.dumps(ds.state_dict()))
    return batches, state


def _signature(batches):
    return [(tuple(b.ids), b.seq.tobytes(), b.labels.tobytes()) for b in batches]


@pytest.mark.parametrize(("compress", "shuffle", "fixed"), [
    (False, False, False), (False, True, False), (True, False, False), (True, True, False),
    (False, True, True)])
def test_resume_continues_exactly(tmp_path, reads, fixed_reads, label_map, compress, shuffle,
                                  fixed):
    paths = _write(tmp_path, fixed_reads if fixed else reads, files=2, compress=compress)
    kw = dict(batch_size=12, label_map=label_map, with_ids=True, range_size=450, shuffle=shuffle,
              shuffle_buffer=25, open_ranges=3, epochs=2, augment_rc=True, seed=9)
    full, _ = _consume(StreamDataset(paths, **kw), 2)
    assert len(full) > 30
    # Cut inside a block, at a batch spanning blocks, near an epoch end, and at the very end.
    for stop in (1, 5, 13, len(full) // 2 + 1, len(full) - 2, len(full)):
        _, state = _consume(StreamDataset(paths, **kw), 2, stop)
        ds = StreamDataset(paths, **kw)
        ds.load_state_dict(state)
        rest = _loader_order(ds, 2)
        assert _signature(rest) == _signature(full[stop:]), stop


@pytest.mark.parametrize(("fmt", "compress"), [("fasta", False), ("fastq", False),
                                               ("fastq", True)])
def test_small_chunks_within_ranges(tmp_path, reads, label_map, monkeypatch, fmt, compress):
    # Chunks far smaller than ranges: each range is read by many short-lived readers, each
    # resynchronising just past the last record parsed.
    monkeypatch.setattr(stream_mod, "CURSOR_MEMORY", 1)
    monkeypatch.setattr(stream_mod, "MIN_CHUNK", 4096)
    paths = _write(tmp_path, reads, fmt=fmt, files=2, compress=compress)
    kw = dict(batch_size=10, label_map=label_map, with_ids=True, range_size=20_000,
              shuffle_buffer=40, open_ranges=2, seed=1)
    full, state = _consume(StreamDataset(paths, **kw), 2, 9)
    assert Counter(_reads_of(full)) == _expected(reads)
    ds = StreamDataset(paths, **kw)
    ds.load_state_dict(state)
    assert _signature(_loader_order(ds, 2)) == _signature(full[9:])


def test_resume_with_other_worker_counts_loses_and_repeats_nothing(tmp_path, reads, label_map):
    paths = _write(tmp_path, reads, files=2)
    kw = dict(batch_size=10, label_map=label_map, with_ids=True, range_size=400,
              shuffle_buffer=30, open_ranges=2, seed=2)
    full, state = _consume(StreamDataset(paths, **kw), 3, 7)
    done = _reads_of(full[:7])
    for workers in (1, 2, 3, 5):
        ds = StreamDataset(paths, **kw)
        ds.load_state_dict(state)
        rest = _loader_order(ds, workers)
        assert Counter(done + _reads_of(rest)) == _expected(reads)
        if workers == 3:
            assert _signature(rest) == _signature(full[7:])


def test_resume_state_survives_a_second_checkpoint(tmp_path, reads, label_map):
    paths = _write(tmp_path, reads)
    kw = dict(batch_size=8, label_map=label_map, with_ids=True, range_size=300, seed=4,
              shuffle_buffer=20, skip_unknown=True)
    full, s1 = _consume(StreamDataset(paths, **kw), 2, 4)
    ds = StreamDataset(paths, **kw)
    ds.load_state_dict(s1)
    part = _loader_order(ds, 2)
    for b in part[:5]:
        ds.observe(b)
    s2 = json.loads(json.dumps(ds.state_dict()))
    ds2 = StreamDataset(paths, **kw)
    ds2.load_state_dict(s2)
    assert _signature(_loader_order(ds2, 2)) == _signature(full[9:])


def test_resume_with_real_dataloader(tmp_path, reads, label_map):
    paths = _write(tmp_path, reads)
    kw = dict(batch_size=16, label_map=label_map, with_ids=True, range_size=500, seed=7,
              shuffle_buffer=40)

    def loader(ds):
        return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                           collate_fn=_identity)

    ds = StreamDataset(paths, **kw)
    full = []
    state = None
    for b in loader(ds):
        ds.observe(b)
        full.append(b)
        if len(full) == 3:
            state = ds.state_dict()
    ds2 = StreamDataset(paths, **kw)
    ds2.load_state_dict(state)
    assert _signature(list(loader(ds2))) == _signature(full[3:])


def test_state_dict_is_json_and_checked(tmp_path, reads, label_map):
    paths = _write(tmp_path, reads)
    ds = StreamDataset(paths, batch_size=8, label_map=label_map)
    fresh = ds.state_dict()
    assert json.loads(json.dumps(fresh)) == fresh
    ds.load_state_dict(fresh)  # a state before any batch starts from the beginning
    assert len(_reads_of_ids(ds)) == N_READS
    for change, msg in [(dict(seed=1), "seed"), (dict(shuffle_buffer=7), "shuffle_buffer"),
                        (dict(world_size=2), "world_size")]:
        other = StreamDataset(paths, **{"batch_size": 8, "label_map": label_map, **change})
        with pytest.raises(UsageError, match=msg):
            other.load_state_dict(fresh)
    with pytest.raises(UsageError, match="input files"):
        StreamDataset(paths + _write(tmp_path, reads, name="more"), batch_size=8,
                      label_map=label_map).load_state_dict(fresh)
    with pytest.raises(UsageError, match="not a stream"):
        ds.load_state_dict({"format": "store"})
    with pytest.raises(UsageError, match="observe"):
        ds.observe(next(iter(StreamDataset(paths, batch_size=8, label_map=label_map))).take([0]))


def _reads_of_ids(ds):
    return [x for b in ds for x in b.sequences()]


# -- misc ----------------------------------------------------------------------------------------


def test_len_is_unknown(tmp_path, reads):
    ds = StreamDataset(_write(tmp_path, reads), batch_size=8, labels=None)
    with pytest.raises(TypeError):
        len(ds)


def test_bad_options(tmp_path, reads):
    paths = _write(tmp_path, reads)
    with pytest.raises(UsageError, match="batch_size.*rank"):
        StreamDataset(paths, batch_size=0, rank=2, world_size=2, labels=None)
    with pytest.raises(UsageError, match="no such file"):
        StreamDataset([str(tmp_path / "missing.fa")], batch_size=4, labels=None)
    empty = tmp_path / "empty.fa"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        StreamDataset([str(empty)], batch_size=4, labels=None)


def test_big_gzip_warns_once(tmp_path, reads, caplog):
    paths = _write(tmp_path, reads, compress=True)
    with caplog.at_level(logging.WARNING, logger="readtax.stream"):
        StreamDataset(paths, batch_size=8, labels=None, range_size=100)
        StreamDataset(paths, batch_size=8, labels=None, range_size=100)
    msgs = [r.getMessage() for r in caplog.records if "gzip" in r.getMessage()]
    assert len(msgs) == 1 and "readtax pack" in msgs[0] and "decompress" in msgs[0]
