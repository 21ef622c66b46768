"""The packed store: exact round trips, determinism, layout, random access and bad stores."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import random_reads, write_fasta, write_fastq, write_mapping
from readtax.errors import InputError, StoreError, UsageError
from readtax.labels import load_mapping
from readtax.store import (
    ReadStore,
    Records,
    buckets,
    decode_ids,
    encode_ids,
    encode_reads,
    file_checksum,
    pack,
    repack,
    store_stats,
    unpack,
    unpack_bases,
    verify,
)


@pytest.fixture(autouse=True)
def _fresh_logging():
    """An earlier in-process CLI run leaves a log handler bound to that test's captured stderr."""
    logging.getLogger("readtax").handlers.clear()
    yield
    logging.getLogger("readtax").handlers.clear()


# Small buffers so that tiny inputs still exercise many units, runs and buckets.
SMALL = {"unit_bytes": 20_000, "bucket_bytes": 30_000, "run_bytes": 8_000}


def messy_reads(n: int, seed: int = 0, n_classes: int = 6):
    """Reads of 1..400 bp (a few up to 10,000) with N runs, lower case and IUPAC codes."""
    rng = np.random.default_rng(seed)
    heads, seqs, classes = random_reads(n, length=(1, 400), n_classes=n_classes, seed=seed)
    seqs = list(seqs)
    for i in rng.choice(n, n // 5, replace=False):
        s = list(seqs[i])
        for _ in range(rng.integers(1, 4)):
            a = int(rng.integers(0, len(s)))
            b = min(len(s), a + int(rng.integers(1, 12)))
            s[a:b] = "N" * (b - a)
        seqs[i] = "".join(s)
    seqs[0] = "N"
    seqs[1] = "acgtRYKMnnA"
    seqs[2] = "".join(rng.choice(list("ACGT"), 10_000))
    seqs[3] = "N" * 9_999 + "A"
    heads[4] = heads[4] + " a description\twith tab"
    return heads, seqs, classes


def expected(seqs):
    table = str.maketrans({c: "N" for c in "RYKMSWBDHVryksmwbdhvn"})
    return [s.translate(table).upper() for s in seqs]


def read_fasta(path: Path) -> list[tuple[str, str]]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines = data.decode().split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert all(h.startswith(">") for h in lines[0::2])
    return [(h[1:], s) for h, s in zip(lines[0::2], lines[1::2])]


def store_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    d = tmp_path_factory.mktemp("messy")
    heads, seqs, classes = messy_reads(1500, seed=3)
    fa = write_fasta(d / "r.fa", heads, seqs, width=60)
    return d, heads, seqs, classes, fa


@pytest.mark.parametrize("shuffle", [True, False])
def test_round_trip_exact(messy, tmp_path, shuffle):
    _, heads, seqs, classes, fa = messy
    st = tmp_path / "st"
    pack([fa], st, shuffle=shuffle, workers=2, **SMALL)
    verify(st)
    out = tmp_path / "o.fa"
    assert unpack(st, out) == len(heads)
    got = read_fasta(out)
    want = list(zip(heads, expected(seqs)))
    if shuffle:
        assert got != want  # the id order groups classes
        assert sorted(got) == sorted(want)
    else:
        assert got == want


def test_random_access(messy, tmp_path):
    _, heads, seqs, classes, fa = messy
    st = tmp_path / "st"
    pack([fa], st, **SMALL)
    s = ReadStore(st)
    want = dict(zip(heads, expected(seqs)))
    cls_of = dict(zip(heads, classes))
    assert len(s) == len(heads) and s.n_buckets > 3
    assert np.array_equal(s.class_counts, np.bincount(classes))
    idx = np.random.default_rng(0).permutation(len(s))
    b = s.batch(idx, with_ids=True)
    hdrs = s.headers(idx)
    assert [want[h] for h in hdrs] == b.sequences()
    assert [cls_of[h] for h in hdrs] == b.labels.tolist()
    assert b.ids == [h.split(None, 1)[0] for h in hdrs]
    assert np.array_equal(b.index, idx)
    rid, seq, c = s.read(int(idx[7]))
    assert (rid, seq, c) == (hdrs[7].split()[0], want[hdrs[7]], cls_of[hdrs[7]])
    # Equal-length batches take the rectangular fast path.
    fixed = [i for i in range(len(s)) if s.lengths([i])[0] == 150][:1] * 3
    if fixed:
        assert s.batch(fixed).sequences() == [want[s.headers([fixed[0]])[0]]] * 3
    with pytest.raises(IndexError):
        s.batch([len(s)])


def test_class_select_and_id_order(messy, tmp_path):
    *_, fa = messy
    for shuffle in (True, False):
        st = tmp_path / f"st{shuffle}"
        pack([fa], st, shuffle=shuffle, **SMALL)
        s = ReadStore(st)
        for c, count in enumerate(s.class_counts):
            idx = s.class_select(np.full(count, c), np.arange(count))
            assert (s.labels(idx) == c).all()
            assert len(np.unique(idx)) == count
        q = np.arange(len(s))
        assert np.array_equal(s.id_rank(s.physical(q)), q)
        with pytest.raises(IndexError):
            s.class_select([0], [s.class_counts[0]])


def test_many_buckets_some_empty(tmp_path):
    heads, seqs, classes = random_reads(60, n_classes=4, seed=2)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    man = pack([fa], tmp_path / "st", bucket_bytes=200)
    assert man["buckets"] < 60  # of 61 hash buckets some stayed empty and were dropped
    verify(tmp_path / "st")
    s = ReadStore(tmp_path / "st")
    for c, count in enumerate(s.class_counts):
        assert (s.labels(s.class_select(np.full(count, c), np.arange(count))) == c).all()
    assert sorted(zip(s.headers(np.arange(60)), s.batch(np.arange(60)).sequences())) == \
        sorted(zip(heads, seqs))


def test_multi_file_gzip_and_fastq(tmp_path):
    h1, s1, c1 = random_reads(300, length=(20, 200), n_classes=4, seed=1)
    h2, s2, c2 = random_reads(200, length=150, n_classes=4, seed=2)
    h2 = [h + "x" for h in h2]
    a = write_fasta(tmp_path / "a.fa.gz", h1, s1, compress=True)
    b = write_fastq(tmp_path / "b.fq", h2, s2)
    st = tmp_path / "st"
    pack([a, b], st, shuffle=False, workers=2, **SMALL)
    verify(st)
    unpack(st, tmp_path / "o.fa.gz")
    assert read_fasta(tmp_path / "o.fa.gz") == list(zip(h1 + h2, s1 + s2))
    m = json.loads((st / "manifest.json").read_text())
    assert m["read_count"] == 500 and m["fixed_length"] is None and not m["shuffled"]


def test_same_seed_same_bytes_any_workers(messy, tmp_path, monkeypatch):
    *_, fa = messy
    outs = []
    for i, workers in enumerate([1, 2, 3]):
        pack([fa], tmp_path / f"s{i}", seed=7, workers=workers, **SMALL)
        outs.append(store_files(tmp_path / f"s{i}"))
    assert outs[0] == outs[1] == outs[2]
    # Where the descriptor limit leaves room for one open run file, the others are opened per
    # read, and closed: the same bytes, no descriptor left open.
    monkeypatch.setattr(buckets, "fd_room", lambda runs: 1)
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    pack([fa], tmp_path / "few", seed=7, workers=1, **SMALL)
    assert store_files(tmp_path / "few") == outs[0]
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds
    pack([fa], tmp_path / "other", seed=8, **SMALL)
    other = store_files(tmp_path / "other")
    assert other["bases.2bit"] != outs[0]["bases.2bit"]


def test_fixed_length_store_and_size(tmp_path):
    heads, seqs, classes = random_reads(3000, length=150, n_classes=50, seed=5)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    st = tmp_path / "st"
    man = pack([fa], st)
    assert man["fixed_length"] == 150 and "offsets.u64" not in man["files"]
    assert man["files"]["bases.2bit"]["size"] == 3000 * 150 // 4
    per_read = sum(f["size"] for f in man["files"].values()) / 3000
    assert per_read < 45  # the budget, ids and class tables included
    s = ReadStore(st)
    idx = np.arange(0, 3000, 7)
    want = dict(zip(heads, seqs))
    assert s.batch(idx).sequences() == [want[h] for h in s.headers(idx)]


def test_labels_discovered_sorted_and_mapping(tmp_path):
    heads = [f"lbl|{c}|{900 + c}|1|x{i}" for i, c in enumerate([30, 7, 7, 12, 30, 7])]
    fa = write_fasta(tmp_path / "r.fa", heads, ["ACGT"] * 6)
    s = ReadStore(pack([fa], tmp_path / "a", shuffle=False) and tmp_path / "a")
    assert s.label_map.class_ids.tolist() == [7, 12, 30]
    assert s.label_map.tax_ids.tolist() == [907, 912, 930]
    assert s.labels(np.arange(6)).tolist() == [2, 0, 0, 1, 2, 0]
    m = write_mapping(tmp_path / "m.tsv", 40)
    mp = load_mapping(m)
    s2 = ReadStore(pack([fa], tmp_path / "b", mapping=mp) and tmp_path / "b", mapping=mp)
    assert len(s2.label_map) == 40 and s2.class_counts[[7, 12, 30]].tolist() == [3, 1, 2]
    with pytest.raises(StoreError, match="disagrees with the store's label map"):
        ReadStore(tmp_path / "a", mapping=mp)


def test_skip_unknown_and_regex_labels(tmp_path):
    heads, seqs, classes = random_reads(200, n_classes=5, seed=9)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    mp = load_mapping(write_mapping(tmp_path / "m.tsv", 3))
    with pytest.raises(InputError, match="not in the mapping"):
        pack([fa], tmp_path / "x", mapping=mp)
    assert not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".x.*"))
    man = pack([fa], tmp_path / "y", mapping=mp, skip_unknown=True)
    assert man["read_count"] == int((classes < 3).sum())
    assert man["skipped_unknown"] == int((classes >= 3).sum())
    man = pack([fa], tmp_path / "z", labels=r"regex:\|(?P<label>Sp\d+)-")
    assert [r["label_name"] for r in man["label_map"]] == [f"Sp{c}" for c in range(5)]


def test_store_stats(messy, tmp_path, run):
    _, heads, seqs, classes, fa = messy
    st = tmp_path / "st"
    pack([fa], st, **SMALL)
    stats = store_stats(ReadStore(st))
    exp = expected(seqs)
    assert stats.reads == len(seqs) and stats.bases == sum(map(len, exp))
    assert stats.non_acgt == sum(s.count("N") for s in exp)
    assert (stats.min_len, stats.max_len) == (1, 10_000)
    assert np.trim_zeros(stats.length_counts, "b").tolist() == \
        np.bincount([len(x) for x in exp]).tolist()
    assert stats.class_counts == {c: int((classes == c).sum()) for c in range(6)}
    r = run("stats", st)
    assert r.code == 0 and f"reads\t{len(seqs)}" in r.out


def test_cli_pack_verify_unpack(tmp_path, run):
    heads, seqs, _ = random_reads(100, n_classes=3, seed=4)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    st = tmp_path / "st"
    r = run("pack", fa, "-o", st, "--no-shuffle", "--workers", "2", "--seed", "3")
    assert r.code == 0, r.err
    r = run("verify", st)
    assert r.code == 0 and "ok: 100 reads, 3 classes" in r.out
    r = run("unpack", st, "-o", tmp_path / "o.fa")
    assert r.code == 0 and read_fasta(tmp_path / "o.fa") == list(zip(heads, seqs))
    r = run("pack", fa, "-o", st)
    assert r.code == 2 and "exists (use --force" in r.err
    assert run("pack", fa, "-o", st, "--force").code == 0
    r = run("unpack", st, "-o", tmp_path / "o.fa")
    assert r.code == 2 and "exists" in r.err
    r = run("pack", fa, "-o", tmp_path / "q", "--mapping", write_mapping(tmp_path / "m", 2))
    assert r.code == 2 and "not in the mapping" in r.err and r.err.count("\n") == 1


def _corrupt(st: Path, how: str) -> None:
    man = json.loads((st / "manifest.json").read_text())
    if how == "missing":
        (st / "classes.u16").unlink()
    elif how == "truncated":
        data = (st / "bases.2bit").read_bytes()
        (st / "bases.2bit").write_bytes(data[:-3])
    elif how == "checksum":
        data = bytearray((st / "bases.2bit").read_bytes())
        data[10] ^= 0xFF
        (st / "bases.2bit").write_bytes(bytes(data))
    elif how == "version":
        man["format_version"] = 99
        (st / "manifest.json").write_text(json.dumps(man))
    elif how == "json":
        (st / "manifest.json").write_text("{not json")
    elif how == "no-manifest":
        (st / "manifest.json").unlink()
    elif how == "unlisted":
        del man["files"]["classes.u16"]
        (st / "manifest.json").write_text(json.dumps(man))
    elif how == "inconsistent":
        # A valid checksum over wrong content: class 0 replaced by class 1 somewhere.
        cls = np.fromfile(st / "classes.u16", np.uint16)
        cls[np.flatnonzero(cls == 0)[0]] = 1
        cls.tofile(st / "classes.u16")
        man["files"]["classes.u16"]["crc32"] = file_checksum(st / "classes.u16")
        (st / "manifest.json").write_text(json.dumps(man))


def test_other_checksum_algorithm_is_a_clear_error(messy, tmp_path, run):
    """Manifests record CRC-32 only: one naming another algorithm gets one line from verify,
    unpack and open that names the file and the algorithm expected (not a checksum mismatch)."""
    st = tmp_path / "st"
    pack([messy[4]], st, **SMALL)
    man = json.loads((st / "manifest.json").read_text())
    for info in man["files"].values():
        info["blake2b"] = "0" * 64
        del info["crc32"]
    (st / "manifest.json").write_text(json.dumps(man))
    first = sorted(man["files"])[0]
    want = f"file {first} has a blake2b checksum in manifest.json; this readtax reads crc32"
    with pytest.raises(StoreError, match=want):
        verify(st)
    with pytest.raises(StoreError, match=want):
        ReadStore(st)
    for args in (("verify", st), ("unpack", st, "-o", tmp_path / "o.fa")):
        r = run(*args)
        assert r.code == 2 and want in r.err and r.err.count("\n") == 1 and str(st) in r.err


@pytest.mark.parametrize("how, message", [
    ("missing", "file classes.u16 is missing"),
    ("truncated", "file bases.2bit is truncated"),
    ("checksum", "checksum mismatch in bases.2bit"),
    ("version", "format version 99 is newer"),
    ("json", "not valid JSON"),
    ("no-manifest", "manifest.json is missing"),
    ("unlisted", "manifest.json does not list classes.u16"),
    ("inconsistent", "inconsistent store"),
])
def test_bad_store(tmp_path, run, how, message):
    heads, seqs, _ = random_reads(300, n_classes=3, seed=6)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    st = tmp_path / "st"
    pack([fa], st)
    _corrupt(st, how)
    r = run("verify", st)
    assert r.code == 2, r.err
    assert message in r.err and r.err.count("\n") == 1 and str(st) in r.err
    if how != "checksum" and how != "inconsistent":
        assert run("unpack", st, "-o", tmp_path / "o.fa").code == 2
        with pytest.raises(StoreError):
            ReadStore(st)


def test_not_a_store(tmp_path, run):
    r = run("verify", tmp_path / "nothing")
    assert r.code == 2 and "no such store" in r.err
    f = tmp_path / "file"
    f.write_text("x")
    assert "not a store directory" in run("verify", f).err


def test_interrupted_pack_leaves_nothing_and_rerun_works(tmp_path, monkeypatch):
    heads, seqs, _ = random_reads(400, n_classes=3, seed=8)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    st = tmp_path / "st"

    def boom(task, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(buckets, "build_bucket", boom)
    with pytest.raises(KeyboardInterrupt):
        pack([fa], st, workers=1)
    assert not st.exists() and not list(tmp_path.glob(".st.*"))
    monkeypatch.undo()
    # A pack killed outright leaves its temporary directory: not a store, removed next time.
    from readtax.outputs import HOST

    stale = tmp_path / f".st.{HOST}-999999999-deadbeef.tmp"
    stale.mkdir()
    (stale / "bases.2bit").write_bytes(b"x")
    with pytest.raises(StoreError):
        verify(stale)
    pack([fa], st)
    assert not stale.exists()
    verify(st)


def test_force_replaces_store_and_refuses_input(tmp_path):
    heads, seqs, _ = random_reads(50, n_classes=2, seed=1)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    st = tmp_path / "st"
    pack([fa], st, shuffle=False)
    heads2, seqs2, _ = random_reads(60, n_classes=2, seed=2)
    fa2 = write_fasta(tmp_path / "r2.fa", heads2, seqs2)
    pack([fa2], st, force=True)
    assert len(ReadStore(st)) == 60 and not list(tmp_path.glob("st.old-*"))
    with pytest.raises(UsageError, match="also an input"):
        pack([fa], fa, force=True)


def test_empty_after_skipping(tmp_path):
    fa = write_fasta(tmp_path / "r.fa", ["lbl|9|1|1|a"], ["ACGT"])
    mp = load_mapping(write_mapping(tmp_path / "m.tsv", 2))
    with pytest.raises(InputError, match="no reads to pack"):
        pack([fa], tmp_path / "st", mapping=mp, skip_unknown=True)


# -- the codecs ------------------------------------------------------------------------------


def test_two_bit_codecs_against_a_reference():
    rng = np.random.default_rng(1)
    for lengths in (rng.integers(1, 40, 300), np.full(50, 150), np.full(50, 3), np.full(7, 153)):
        seq = np.frombuffer("".join(rng.choice(list("ACGT"), lengths.sum())).encode(), np.uint8)
        packed = encode_reads(seq, lengths)
        assert len(packed) == ((lengths + 3) // 4).sum()
        recs = Records(lengths, packed, packed=True)
        order = rng.permutation(len(lengths))
        for lead in range(4):
            stream = repack(recs, order, lead)
            assert len(stream) == -(-(lead + lengths.sum()) // 4)
            # Reference: decode every base of the stream.
            starts = np.concatenate([[0], np.cumsum(lengths)])
            want = np.concatenate([seq[starts[i] : starts[i + 1]] for i in order])
            offs = lead + np.concatenate([[0], np.cumsum(lengths[order])[:-1]])
            got = unpack_bases(stream, offs, lengths[order])
            assert np.array_equal(got, want)
            # Bits before ``lead`` stay zero, so streams OR together at a shared byte.
            assert stream[0] & ((1 << (2 * lead)) - 1) == 0
            if (lengths == lengths[0]).all():  # rows found by arithmetic: the same stream
                fixed = repack(recs, order, lead, fixed=int(lengths[0]))
                assert np.array_equal(fixed, stream)


def test_ids_codec_round_trip():
    ids = [b"lbl|1|2|3|Sp-10/1", b"lbl|1|2|3|Sp-10/2", b"lbl|1|2|3|Sp-10/2", b"x", b"",
           b"lbl|1|2|3|Sp-11/1 desc", b"y" * 300, b"y" * 301, b"z"]
    lengths = np.array([len(i) for i in ids])
    recs = Records(lengths, np.frombuffer(b"".join(ids), np.uint8))
    raw, bounds = decode_ids(encode_ids(recs), len(ids))
    assert [raw[s:e] for s, e in bounds] == ids
    assert raw.count(b"\n") == len(ids)
    order = np.array([8, 1, 0, 6, 7])
    raw, bounds = decode_ids(encode_ids(recs, order), len(order))
    assert [raw[s:e] for s, e in bounds] == [ids[i] for i in order]


def test_unpack_to_gzip_is_reproducible(tmp_path):
    heads, seqs, _ = random_reads(80, n_classes=2, seed=3)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    pack([fa], tmp_path / "st")
    unpack(tmp_path / "st", tmp_path / "a.fa.gz")
    os.utime(tmp_path / "a.fa.gz", (0, 0))
    unpack(tmp_path / "st", tmp_path / "b.fa.gz")
    assert (tmp_path / "a.fa.gz").read_bytes() == (tmp_path / "b.fa.gz").read_bytes()
    shutil.rmtree(tmp_path / "st")


def _resident_kb(*name_parts: str) -> int:
    """Resident kB of this process's mappings of files whose path contains all ``name_parts``."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split(" ", 1)[0]
            if "-" in first and all(c in "0123456789abcdef-" for c in first):
                inside = all(part in line for part in name_parts)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
def test_pass2_holds_no_mapping_of_run_tables(messy, tmp_path, monkeypatch):
    """The run tables (runs x buckets, quadratic in the input) and the units' class lookup
    tables are read per bucket: after every bucket nothing of them stays resident in the
    process, and the store's bytes are those of any other worker count."""
    *_, fa = messy
    built, resident = buckets.build_bucket, []

    def build(task, ctx):
        bucket = built(task, ctx)
        resident.append(_resident_kb(str(tmp_path), "/runs/"))
        return bucket

    monkeypatch.setattr(buckets, "build_bucket", build)
    man = pack([fa], tmp_path / "st", seed=7, workers=1, **SMALL)
    assert man["buckets"] > 10 and len(resident) == man["buckets"]
    assert resident == [0] * len(resident)
    monkeypatch.undo()
    pack([fa], tmp_path / "two", seed=7, workers=2, **SMALL)
    assert store_files(tmp_path / "st") == store_files(tmp_path / "two")


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_pass2_reads_class_tables_a_unit_at_a_time(messy, tmp_path, monkeypatch):
    """The units' class lookup tables (units x classes, growing with the input) are never
    mapped in pass 2: each bucket reads them a block at a time (here one unit's table, at
    most classes x 4 bytes), so a worker's peak does not grow with the number of units.
    Same bytes with the default block and 2 workers."""
    *_, fa = messy
    loaded, lut_reads, maps = buckets.load_sections, [], []
    read_exact = buckets.read_exact

    def load(b, ctx):
        d = loaded(b, ctx)
        with open("/proc/self/maps") as fh:
            maps.append(sum(str(tmp_path) in line and "/runs/" in line for line in fh))
        return d

    def read(fd, views, offset, path):
        if path.endswith("luts.i32"):
            lut_reads.append(sum(len(v) for v in views))
        return read_exact(fd, views, offset, path)

    monkeypatch.setattr(buckets, "load_sections", load)
    monkeypatch.setattr(buckets, "read_exact", read)
    monkeypatch.setattr(buckets, "LUT_BLOCK", 8)
    man = pack([fa], tmp_path / "st", seed=7, workers=1, **SMALL)
    n_classes = len(man["label_map"])
    assert man["buckets"] > 10 and len(maps) == man["buckets"] and maps == [0] * len(maps)
    assert len(lut_reads) >= man["buckets"] and max(lut_reads) <= 4 * n_classes
    monkeypatch.undo()
    pack([fa], tmp_path / "two", seed=7, workers=2, **SMALL)
    assert store_files(tmp_path / "st") == store_files(tmp_path / "two")


@pytest.mark.parametrize("shuffle", [True, False])
def test_pread_gather_equals_mapped_gather(messy, tmp_path, shuffle):
    """The default batch gather (pread) returns exactly what the mapped gather returns: bases
    of every length (the ragged path included), N runs, labels and ids."""
    *_, fa = messy
    pack([fa], tmp_path / "st", seed=3, shuffle=shuffle, **SMALL)
    read, mapped = ReadStore(tmp_path / "st"), ReadStore(tmp_path / "st", gather="mmap")
    assert read.gather == "pread" and mapped.gather == "mmap"
    rng = np.random.default_rng(0)
    batches = [np.arange(len(read)), rng.permutation(len(read))[:257], np.array([0, 5, 5, 0]),
               np.array([len(read) - 1]), np.zeros(0, np.int64)]
    for idx in batches:
        a, b = read.batch(idx, with_ids=True), mapped.batch(idx, with_ids=True)
        assert np.array_equal(a.seq, b.seq) and np.array_equal(a.offsets, b.offsets)
        assert np.array_equal(a.labels, b.labels) and a.ids == b.ids
        assert a.labels.dtype == np.int64
    fixed = tmp_path / "fixed"
    heads, seqs, _ = random_reads(500, length=150, n_classes=3, seed=1)
    pack([write_fasta(tmp_path / "f.fa", heads, seqs)], fixed)
    idx = rng.integers(0, 500, 300)
    assert ReadStore(fixed).batch(idx).sequences() == \
        ReadStore(fixed, gather="mmap").batch(idx).sequences()
    with pytest.raises(UsageError, match="gather must be"):
        ReadStore(fixed, gather="mapped")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
def test_pread_gather_keeps_no_store_pages_resident(tmp_path):
    """A shuffled pass over the whole store leaves none of its bases, classes or N flags
    resident in the process by default; the mapped gather keeps what it touched."""
    heads, seqs, _ = random_reads(20_000, length=150, n_classes=5, seed=2)
    st = tmp_path / "st"
    pack([write_fasta(tmp_path / "r.fa", heads, seqs)], st)
    names = ["bases.2bit", "classes.u16", "nflags.bits"]
    for gather, expect_zero in (("pread", True), ("mmap", False)):
        s = ReadStore(st, gather=gather)
        for idx in np.array_split(np.random.default_rng(1).permutation(len(s)), 20):
            s.batch(idx)
        held = {n: _resident_kb(str(st), n) for n in names}
        assert (held == dict.fromkeys(names, 0)) == expect_zero, (gather, held)
        del s
