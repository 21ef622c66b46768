"""readtax subset and stratified_indices: exact counts, uniformity, determinism, outputs, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from conftest import random_reads, write_fasta, write_mapping
from readtax.errors import FormatError, LabelError, UsageError
from readtax.fastx import read_all
from readtax.labels import make_scheme
from readtax.subset import (
    BlockSelector,
    CountMismatch,
    pipeline,
    plan_units,
    split_quota,
    stratified_indices,
    subset,
    writing,
)
from readtax.subset.counting import CountMerger, UnitCounts

UNIT = 3000  # tiny work units so that small files are split into several


def write_fastq_varied(path: Path, heads, seqs, *, compress: bool = False) -> Path:
    """FASTQ with a quality string that differs per read (to check qualities travel along)."""
    alphabet = "!#%&+5?I"
    parts = []
    for i, (h, s) in enumerate(zip(heads, seqs)):
        q = "".join(alphabet[(i + j) % len(alphabet)] for j in range(len(s)))
        parts.append(f"@{h}\n{s}\n+\n{q}\n")
    data = "".join(parts).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def skewed_reads(seed: int = 0, sizes=(120, 45, 7, 30, 0, 3)):
    """Reads whose class sizes are known exactly (class 4 is empty), in shuffled order."""
    rng = np.random.default_rng(seed)
    classes = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(classes)
    lengths = rng.integers(60, 140, len(classes))
    seqs = ["".join(rng.choice(list("ACGT"), int(n))) for n in lengths]
    heads = [f"lbl|{c}|{1000 + c}|45|Sp{c}-{i} extra words" for i, c in enumerate(classes)]
    return heads, seqs, classes


def records(path) -> tuple[list[str], list[str], list[str] | None]:
    b = read_all(path)
    heads = [b.header(i) for i in range(len(b))]
    quals = None
    if b.qual is not None:
        quals = [b.qual[b.seq_offsets[i] : b.seq_offsets[i + 1]].tobytes().decode()
                 for i in range(len(b))]
    return heads, b.sequences(), quals


def class_of(head: str) -> int:
    return int(head.split("|")[1])


# -- the selection core ----------------------------------------------------------------------------


def test_split_quota_exact():
    counts = np.array([[5, 0, 3], [2, 4, 0], [0, 1, 9]])
    for seed in range(20):
        take = split_quota(counts, np.array([4, 5, 20]), np.random.default_rng(seed))
        assert take.sum(axis=0).tolist() == [4, 5, 12]  # capped at what exists
        assert (take >= 0).all() and (take <= counts).all()


def test_block_selector_exact_and_disjoint():
    rng = np.random.default_rng(1)
    cls = rng.integers(-1, 4, 1000)
    avail = np.bincount(cls[cls >= 0], minlength=4)
    train = np.array([10, 0, avail[2], 5])
    val = np.array([3, 7, 0, avail[3] - 5])
    sel = BlockSelector(avail, train, val, np.random.default_rng(2))
    got_t, got_v = [], []
    for part in np.array_split(cls, 7):
        t, v = sel.select(part)
        assert not (t & v).any()
        assert (part[t] >= 0).all() and (part[v] >= 0).all()
        got_t.append(part[t])
        got_v.append(part[v])
    assert sel.done()
    assert np.bincount(np.concatenate(got_t), minlength=4).tolist() == train.tolist()
    assert np.bincount(np.concatenate(got_v), minlength=4).tolist() == val.tolist()


def test_block_selector_detects_changed_input():
    sel = BlockSelector(np.array([2, 1]), np.array([1, 1]), None, np.random.default_rng(0))
    with pytest.raises(CountMismatch):
        sel.select(np.array([0, 0, 0]))


# -- stratified_indices -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_stratified_indices_exact(chunk):
    rng = np.random.default_rng(3)
    cls = rng.integers(0, 5, 400)
    cls[rng.random(400) < 0.1] = -1  # never chosen
    cls[cls == 4] = 3  # class 4 has no reads
    idx = stratified_indices(cls, 30, seed=5, num_classes=6, chunk_size=chunk)
    avail = np.bincount(cls[cls >= 0], minlength=6)
    assert idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)
    assert np.bincount(cls[idx], minlength=6).tolist() == np.minimum(30, avail).tolist()
    assert np.array_equal(idx, stratified_indices(cls, 30, seed=5, num_classes=6, chunk_size=chunk))
    assert not np.array_equal(idx, stratified_indices(cls, 30, seed=6, chunk_size=chunk))


def test_stratified_indices_memmap_and_per_class_array(tmp_path):
    cls = np.random.default_rng(0).integers(0, 3, 5000).astype(np.uint16)
    mm = np.memmap(tmp_path / "c.u16", dtype=np.uint16, mode="w+", shape=cls.shape)
    mm[:] = cls
    mm.flush()
    ro = np.memmap(tmp_path / "c.u16", dtype=np.uint16, mode="r", shape=cls.shape)
    a = stratified_indices(ro, np.array([5, 0, 10000]), seed=1, chunk_size=333)
    b = stratified_indices(cls, np.array([5, 0, 10000]), seed=1, chunk_size=333)
    assert np.array_equal(a, b)
    assert np.bincount(cls[a], minlength=3).tolist() == [5, 0, int((cls == 2).sum())]


def test_stratified_indices_uniform():
    cls = np.repeat([0, 1], [40, 25])
    np.random.default_rng(9).shuffle(cls)
    seeds = 600
    hits = np.zeros(len(cls))
    for s in range(seeds):
        hits[stratified_indices(cls, 10, seed=s, chunk_size=16)] += 1
    _assert_binomial(hits[cls == 0], seeds, 10 / 40)
    _assert_binomial(hits[cls == 1], seeds, 10 / 25)


def _assert_binomial(hits: np.ndarray, trials: int, p: float, z: float = 4.5) -> None:
    sd = np.sqrt(trials * p * (1 - p))
    worst = np.abs(hits - trials * p).max()
    assert worst <= z * sd, f"inclusion count off by {worst:.1f} (sd {sd:.1f}, expected {trials * p})"


# -- subset: counts, disjointness, order ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
@pytest.mark.parametrize("gz_in", [False, True])
@pytest.mark.parametrize("workers", [1, 2])
def test_exact_counts_disjoint_order(tmp_path, fmt, gz_in, workers):
    heads, seqs, classes = skewed_reads()
    name = "in.fa" if fmt == "fasta" else "in.fq"
    name += ".gz" if gz_in else ""
    if fmt == "fasta":
        inp = write_fasta(tmp_path / name, heads, seqs, width=50, compress=gz_in)
    else:
        inp = write_fastq_varied(tmp_path / name, heads, seqs, compress=gz_in)
    out = tmp_path / ("t.fa" if fmt == "fasta" else "t.fq")
    val = tmp_path / ("v.fa" if fmt == "fasta" else "v.fq")
    res = subset([inp], out, per_species=25, val_output=val, val_per_species=10, seed=4,
                 workers=workers, unit_bytes=UNIT)
    avail = np.bincount(classes, minlength=6)
    # Train first: min(25, available), then validation gets min(10, what is left).
    want_t = np.minimum(25, avail)
    want_v = np.minimum(10, avail - want_t)
    # Without a mapping the classes are those found in the data (class 4 has no reads).
    assert res.label_map.class_ids.tolist() == [0, 1, 2, 3, 5]
    present = avail > 0
    assert res.available.tolist() == avail[present].tolist()
    assert res.written_train.tolist() == want_t[present].tolist()
    assert res.written_val.tolist() == want_v[present].tolist()
    assert res.status == ["kept", "kept", "short", "short", "short"]

    src = {h: i for i, h in enumerate(heads)}
    t_heads, t_seqs, t_quals = records(out)
    v_heads, v_seqs, v_quals = records(val)
    for hs, ss in ((t_heads, t_seqs), (v_heads, v_seqs)):
        pos = [src[h] for h in hs]
        assert pos == sorted(pos)  # input order kept
        assert ss == [seqs[p] for p in pos]  # sequences unchanged (unwrapped)
    assert np.bincount([class_of(h) for h in t_heads], minlength=6).tolist() == want_t.tolist()
    assert np.bincount([class_of(h) for h in v_heads], minlength=6).tolist() == want_v.tolist()
    assert not set(t_heads) & set(v_heads)
    if fmt == "fastq":
        whole = dict(zip(*records(inp)[::2]))
        assert t_quals == [whole[h] for h in t_heads]
    else:
        assert t_quals is None
        assert out.read_bytes().startswith(b">")


def test_same_seed_identical_any_workers_different_seed_differs(tmp_path):
    heads, seqs, _ = random_reads(900, n_classes=7, seed=2)
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    outs = {}
    for name, seed, workers in (("a", 1, 1), ("b", 1, 2), ("c", 2, 2)):
        subset([inp], tmp_path / f"{name}.fa", per_species=30, val_output=tmp_path / f"{name}.v.fa",
               val_per_species=20, seed=seed, workers=workers, unit_bytes=UNIT)
        outs[name] = ((tmp_path / f"{name}.fa").read_bytes(), (tmp_path / f"{name}.v.fa").read_bytes())
    assert outs["a"] == outs["b"]
    assert outs["a"][0] != outs["c"][0] and outs["a"][1] != outs["c"][1]


def test_uniform_inclusion_over_seeds(tmp_path, monkeypatch):
    """Each read's inclusion frequency (train and validation) matches N/available."""
    # Several units and several batches per unit, so every level of the draw is exercised.
    monkeypatch.setattr(pipeline, "READ_CHUNK", 1 << 12)
    heads, seqs, classes = skewed_reads(seed=5, sizes=(48, 20))
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    units = plan_units([inp], 5000)
    batches = sum(len(list(u.reader(pipeline.READ_CHUNK))) for u in units)
    assert len(units) >= 2 and batches >= 2 * len(units)
    seeds = 240
    hit_t = np.zeros(len(heads))
    hit_v = np.zeros(len(heads))
    index = {h: i for i, h in enumerate(heads)}
    for s in range(seeds):
        subset([inp], tmp_path / "t.fa", per_species=8, val_output=tmp_path / "v.fa",
               val_per_species=4, seed=s, workers=1, unit_bytes=5000, force=True)
        hit_t[[index[h] for h in records(tmp_path / "t.fa")[0]]] += 1
        hit_v[[index[h] for h in records(tmp_path / "v.fa")[0]]] += 1
    assert not (hit_t + hit_v > seeds).any()
    for c, n in ((0, 48), (1, 20)):
        _assert_binomial(hit_t[classes == c], seeds, 8 / n)
        _assert_binomial(hit_v[classes == c], seeds, 4 / n)


def test_several_inputs_are_one_data_set(tmp_path):
    heads, seqs, classes = skewed_reads(seed=1, sizes=(30, 12))
    a = write_fasta(tmp_path / "a.fa", heads[:20], seqs[:20])
    b = write_fastq_varied(tmp_path / "b.fq", heads[20:], seqs[20:])
    with pytest.raises(UsageError, match="mix FASTA and FASTQ"):
        subset([a, b], tmp_path / "o.fa", per_species=5)
    b = write_fasta(tmp_path / "b.fa", heads[20:], seqs[20:], compress=False)
    res = subset([a, b], tmp_path / "o.fa", per_species=15, unit_bytes=UNIT)
    assert res.written_train.tolist() == [15, 12]
    got = records(tmp_path / "o.fa")[0]
    pos = [heads.index(h) for h in got]
    assert pos == sorted(pos)


def test_gzip_output_multi_member(tmp_path):
    heads, seqs, _ = random_reads(600, n_classes=3, seed=8)
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    subset([inp], tmp_path / "plain.fa", per_species=50, unit_bytes=UNIT, seed=3)
    subset([inp], tmp_path / "z.fa.gz", per_species=50, unit_bytes=UNIT, seed=3, workers=2)
    data = (tmp_path / "z.fa.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data) == (tmp_path / "plain.fa").read_bytes()
    assert records(tmp_path / "z.fa.gz")[0] == records(tmp_path / "plain.fa")[0]


def test_empty_selection_gzip_is_valid(tmp_path):
    heads, seqs, _ = random_reads(20, n_classes=2, seed=1)
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    res = subset([inp], tmp_path / "o.fa.gz", per_species=3, classes=["99"])
    assert res.total_train == 0 and res.unknown_classes == ["99"]
    assert gzip.decompress((tmp_path / "o.fa.gz").read_bytes()) == b""


# -- options -----------------------------------------------------------------------------------------


def test_fraction_rounding_and_cap(tmp_path):
    heads, seqs, _ = skewed_reads(sizes=(5, 7, 10, 1))
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    res = subset([inp], tmp_path / "o.fa", fraction=0.3)
    # 0.3 x 5 = 1.5 rounds up to 2; 2.1 -> 2; 3.0 -> 3; 0.3 -> 0.
    assert res.requested.tolist() == [2, 2, 3, 0]
    assert res.written_train.tolist() == [2, 2, 3, 0]
    res = subset([inp], tmp_path / "o2.fa", fraction=0.5, per_species=4)
    assert res.written_train.tolist() == [3, 4, 4, 1]


def test_classes_file_min_reads_and_summary(tmp_path, run):
    heads, seqs, _ = skewed_reads(sizes=(40, 12, 3, 25))
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    mapping = write_mapping(tmp_path / "m.tsv", 4)
    (tmp_path / "keep.txt").write_text("# wanted\n0\nSpecies_2\nSpecies_3\t(tab comment)\nNoSuch\n42\n")
    r = run("subset", inp, "-o", tmp_path / "o.fa", "--per-species", 10, "--mapping", mapping,
            "--classes", tmp_path / "keep.txt", "--min-reads", 5, "--val-output",
            tmp_path / "v.fa", "--val-per-species", 20, "--summary", tmp_path / "s.tsv")
    assert r.code == 0, r.err
    assert "2 name(s) not found in the mapping: NoSuch, 42" in r.err
    assert "fewer than 5 reads: Species_2" in r.err
    rows = (tmp_path / "s.tsv").read_text().splitlines()
    assert rows == [
        "class_id\tlabel_name\tavailable\trequested\twritten_train\twritten_val\trequested_val\tstatus",
        "0\tSpecies_0\t40\t10\t10\t20\t20\tkept",
        "1\tSpecies_1\t12\t0\t0\t0\t0\texcluded",
        "2\tSpecies_2\t3\t0\t0\t0\t0\tbelow_min_reads",
        "3\tSpecies_3\t25\t10\t10\t15\t20\tshort",
    ]
    assert sorted({class_of(h) for h in records(tmp_path / "o.fa")[0]}) == [0, 3]


def test_name_labels_without_mapping(tmp_path):
    heads, seqs, classes = skewed_reads(sizes=(9, 4))
    heads = [f"read{i} sp={'ecoli' if c == 0 else 'bsub'}" for i, c in enumerate(classes)]
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    res = subset([inp], tmp_path / "o.fa", per_species=5, labels=r"regex:sp=(?P<label>\w+)",
                 summary=tmp_path / "s.tsv", unit_bytes=400)
    assert res.label_map.names == ["bsub", "ecoli"]
    assert res.written_train.tolist() == [4, 5]
    assert (tmp_path / "s.tsv").read_text().splitlines()[1] == "\tbsub\t4\t5\t4\t0\t0\tshort"


def test_skip_unknown(tmp_path, run):
    heads, seqs, classes = skewed_reads(sizes=(10, 10, 10))
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    mapping = write_mapping(tmp_path / "m.tsv", 2)
    r = run("subset", inp, "-o", tmp_path / "o.fa", "--per-species", 4, "--mapping", mapping)
    assert r.code == 2 and "not in the mapping" in r.err
    assert not (tmp_path / "o.fa").exists()
    res = subset([inp], tmp_path / "o.fa", per_species=4, mapping=mapping, skip_unknown=True)
    assert res.skipped_unknown == 10
    assert res.written_train.tolist() == [4, 4]


@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
def test_shuffle(tmp_path, fmt, monkeypatch):
    monkeypatch.setattr(pipeline, "SHUFFLE_BUCKET_BYTES", 2000)  # several buckets
    monkeypatch.setattr(pipeline, "RUN_BYTES", 3000)  # several runs per unit
    heads, seqs, classes = skewed_reads(seed=3, sizes=(150, 80, 40))
    if fmt == "fasta":
        inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    else:
        inp = write_fastq_varied(tmp_path / "in.fq", heads, seqs)
    kw = dict(per_species=60, val_per_species=15, seed=2, unit_bytes=UNIT)
    subset([inp], tmp_path / "plain", val_output=tmp_path / "plain.v", **kw)
    subset([inp], tmp_path / "s1", val_output=tmp_path / "s1.v.gz", shuffle=True, workers=1, **kw)
    subset([inp], tmp_path / "s2", val_output=tmp_path / "s2.v.gz", shuffle=True, workers=2, **kw)
    assert (tmp_path / "s1").read_bytes() == (tmp_path / "s2").read_bytes()
    assert (tmp_path / "s1.v.gz").read_bytes() == (tmp_path / "s2.v.gz").read_bytes()
    plain = records(tmp_path / "plain")
    shuffled = records(tmp_path / "s1")
    assert plain[0] != shuffled[0]
    assert sorted(zip(*[x for x in plain if x is not None])) == sorted(
        zip(*[x for x in shuffled if x is not None]))
    assert sorted(records(tmp_path / "plain.v")[0]) == sorted(records(tmp_path / "s1.v.gz")[0])


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--per-species", "0"], "--per-species must be a positive integer, got 0"),
    (["--per-species", "-3"], "--per-species must be a positive integer"),
    ([], "give --per-species N and/or --fraction F"),
    (["--fraction", "1.5"], "--fraction must be in (0, 1]"),
    (["--per-species", "5", "--val-output", "v.fa"], "--val-output and --val-per-species go together"),
    (["--per-species", "5", "--val-output", "v.fa", "--val-per-species", "0"],
     "--val-per-species must be a positive integer"),
    (["--per-species", "5", "--labels", "none"], "subset needs class labels"),
    (["--per-species", "5", "--seed", "-1"], "--seed must be a non-negative integer"),
    (["--per-species", "5", "--classes", "nofile.txt"], "no such class list"),
    (["--per-species", "5", "--val-output", "o.fa", "--val-per-species", "2"], "must be different"),
])
def test_usage_errors(tmp_path, run, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    heads, seqs, _ = random_reads(20, n_classes=2)
    write_fasta(tmp_path / "in.fa", heads, seqs)
    r = run("subset", "in.fa", "-o", "o.fa", *argv)
    assert r.code == 2
    assert message in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "o.fa").exists()


def test_output_is_input_and_existing_output(tmp_path, run):
    heads, seqs, _ = random_reads(20, n_classes=2)
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    before = inp.read_bytes()
    r = run("subset", inp, "-o", inp, "--per-species", 3, "--force")
    assert r.code == 2 and "is also an input" in r.err
    assert inp.read_bytes() == before
    (tmp_path / "o.fa").write_text("old")
    r = run("subset", inp, "-o", tmp_path / "o.fa", "--per-species", 3)
    assert r.code == 2 and "exists (use --force" in r.err
    assert (tmp_path / "o.fa").read_text() == "old"
    r = run("subset", inp, "-o", tmp_path / "o.fa", "--per-species", 3, "--force")
    assert r.code == 0, r.err
    assert (tmp_path / "o.fa").read_text().count(">") == 6


def test_empty_input_and_directory_output(tmp_path, run):
    (tmp_path / "empty.fa").write_bytes(b"")
    r = run("subset", tmp_path / "empty.fa", "-o", tmp_path / "o.fa", "--per-species", 3)
    assert r.code == 2 and "empty.fa: file is empty" in r.err
    heads, seqs, _ = random_reads(20, n_classes=2)
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    (tmp_path / "d").mkdir()
    r = run("subset", inp, "-o", tmp_path / "d", "--per-species", 3, "--force")
    assert r.code == 2 and "is a directory" in r.err
    r = run("subset", tmp_path / "d", "-o", tmp_path / "o.fa", "--per-species", 3)
    assert r.code == 2 and "is a directory" in r.err


def test_bad_input_propagates_and_leaves_nothing(tmp_path, run):
    heads, seqs, _ = random_reads(30, n_classes=2)
    seqs[17] = seqs[17][:40] + "12" + seqs[17][40:]
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    r = run("subset", inp, "-o", tmp_path / "o.fa", "--per-species", 3)
    assert r.code == 2
    assert f"{inp}: line 36" in r.err and "invalid character '1'" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fa"]
    with pytest.raises(FormatError):
        subset([inp], tmp_path / "o.fa", per_species=3)
    bad = tmp_path / "bad.fa"
    bad.write_text(">nolabel\nACGT\n")
    with pytest.raises(LabelError, match="does not fit the label scheme"):
        subset([bad], tmp_path / "o.fa", per_species=3)


def test_interrupted_run_leaves_no_output(tmp_path, monkeypatch):
    heads, seqs, _ = random_reads(400, n_classes=3)
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    calls = {"n": 0}
    real = writing.format_records

    def flaky(batch, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(batch, rows)

    monkeypatch.setattr(writing, "format_records", flaky)
    with pytest.raises(KeyboardInterrupt):
        subset([inp], tmp_path / "o.fa", per_species=50, val_output=tmp_path / "v.fa",
               val_per_species=5, workers=1, unit_bytes=UNIT, summary=tmp_path / "s.tsv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fa"]


def test_cli_help_and_summary_log(tmp_path, run):
    r = run("subset", "--help")
    assert r.code == 0 and "--per-species" in r.out
    heads, seqs, _ = random_reads(60, n_classes=3, seed=1)
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    out = tmp_path / "new" / "dir" / "o.fa.gz"
    r = run("subset", inp, "-o", out, "--per-species", 5, "--seed", 7)
    assert r.code == 0, r.err
    assert "15 reads of 3 classes" in r.err
    assert gzip.decompress(out.read_bytes()).count(b">") == 15
    assert [p.name for p in out.parent.iterdir()] == ["o.fa.gz"]  # no temporary files left


def test_skip_bad_records(tmp_path, run):
    heads, seqs, classes = skewed_reads(sizes=(20, 20))
    seqs[3] = seqs[3][:10] + "12" + seqs[3][10:]
    heads[7] = "no-label-here"
    inp = write_fasta(tmp_path / "in.fa", heads, seqs)
    r = run("subset", inp, "-o", tmp_path / "o.fa", "--per-species", 30)
    assert r.code == 2
    res = subset([inp], tmp_path / "o.fa", per_species=30, skip_bad=True, unit_bytes=UNIT,
                 workers=2)
    want = np.bincount(np.delete(classes, [3, 7]), minlength=2)
    assert res.available.tolist() == res.written_train.tolist() == want.tolist()
    assert sum(res.skipped_bad.values()) == 2
    got = records(tmp_path / "o.fa")[0]
    assert heads[3] not in got and heads[7] not in got and len(got) == 38


def test_split_quota_keeps_int32_and_draws_the_same():
    """subset keeps its units x classes tables in int32 (the one table growing with the
    input): the draws are those of int64 tables, in the input's type."""
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 50, (30, 12))
    quota = rng.integers(0, 400, 12)
    wide = split_quota(counts.astype(np.int64), quota, np.random.default_rng(9))
    narrow = split_quota(counts.astype(np.int32), quota, np.random.default_rng(9))
    assert narrow.dtype == np.int32 and wide.dtype == np.int64
    assert np.array_equal(wide, narrow)
    assert np.array_equal(narrow.sum(axis=0), np.minimum(quota, counts.sum(axis=0)))


def test_subset_units_table_is_int32(tmp_path, monkeypatch):
    heads, seqs, _ = random_reads(400, n_classes=5, seed=3)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    seen = []
    real = pipeline.split_quota

    def spy(counts, quota, rng):
        seen.append(counts.dtype)
        return real(counts, quota, rng)

    monkeypatch.setattr(pipeline, "split_quota", spy)
    subset([fa], tmp_path / "o.fa", per_species=20, val_output=tmp_path / "v.fa",
                      val_per_species=5, unit_bytes=4_000, workers=1)
    assert seen == [np.int32, np.int32]
    assert len(records(tmp_path / "o.fa")[0]) == 100 and len(records(tmp_path / "v.fa")[0]) == 25


def test_count_merger_folds_units_as_they_arrive():
    """Pass-1 counts are folded in unit by unit: discovered keys sorted, the first-seen tax id
    kept, every unit's key lists dropped once folded, int32 rows."""
    U = UnitCounts
    parts = [U(np.array([3, 1]), [7, 2], [70, 20], 0, {}, 4, 100),
             U(np.array([5, 0, 2]), [9, 7, 2], [90, 71, 21], 0, {}, 7, 100),
             U(np.array([], np.int64), [], [], 0, {}, 0, 0)]
    merger = CountMerger(make_scheme("lbl"), None)
    for p in parts:
        merger.add(p)
        assert p.keys is None and p.counts is None
    label_map, counts = merger.finish()
    assert label_map.class_ids.tolist() == [2, 7, 9]
    assert label_map.tax_ids.tolist() == [20, 70, 90]
    assert counts.dtype == np.int32
    assert counts.tolist() == [[1, 3, 0], [2, 0, 5], [0, 0, 0]]
