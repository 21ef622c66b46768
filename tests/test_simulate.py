"""readtax simulate: counts, strands, coordinates, errors, split, bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from readtax.fastx import read_all
from readtax.labels import Labeler, load_mapping, make_scheme
from readtax.simulate import (
    PROFILES,
    SimOptions,
    ascii_ints,
    join_columns,
    load_genomes,
    prepend_rows,
    read_truth,
    simulate_reads,
)

_COMP = bytes.maketrans(b"ACGTN", b"TGCAN")


def _contigs(rng, lengths) -> list[str]:
    return ["".join(rng.choice(list("ACGT"), n)) for n in lengths]


@pytest.fixture
def genomes(tmp_path):
    """Three species: one contig; three contigs (one too short to read from); two contigs."""
    rng = np.random.default_rng(7)
    layout = {"Alpha_one": [5000], "Alpha_two": [3000, 100, 2500], "Beta_one": [1800, 4200]}
    paths, seqs = [], {}
    for name, lengths in layout.items():
        contigs = _contigs(rng, lengths)
        seqs[name] = contigs
        p = tmp_path / f"{name}.fa"
        p.write_text("".join(f">{name}_c{k} test\n{c}\n" for k, c in enumerate(contigs)))
        paths.append(p)
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text("class_id\tlabel_name\ttax_id\n3\tAlpha_one\t501\n5\tAlpha_two\t502\n"
                       "9\tBeta_one\t601\n")
    return paths, mapping, seqs


def _source(seqs, name, contig, start, end, reverse) -> str:
    s = seqs[name][contig][start:end]
    return s.translate(_COMP)[::-1] if reverse else s


def _reads(path):
    batch = read_all(path)
    return batch, read_truth(batch), batch.sequences()


NAMES = {3: "Alpha_one", 5: "Alpha_two", 9: "Beta_one"}


def test_exact_reads_counts_strands_contigs(tmp_path, run, genomes):
    paths, mapping, seqs = genomes
    out = tmp_path / "r.fa"
    res = run("simulate", *paths, "-o", out, "--mapping", mapping, "--reads-per-species", 2000,
              "--length", 100, "--error-profile", "none", "--seed", 3)
    assert res.code == 0, res.err
    batch, t, reads = _reads(out)
    assert len(batch) == 6000
    assert (batch.lengths == 100).all()
    assert {c: int((t["class_id"] == c).sum()) for c in NAMES} == {3: 2000, 5: 2000, 9: 2000}
    # Each species' reads are numbered 0..N-1 exactly once; mixed order (not sorted by species).
    for c in NAMES:
        assert sorted(t["number"][t["class_id"] == c]) == list(range(2000))
    assert (np.diff(t["class_id"]) != 0).sum() > 1000
    assert set(t["tax_id"]) == {501, 502, 601}
    assert 0.45 < t["reverse"].mean() < 0.55
    # Every read is an exact copy of its stated span, which lies inside one contig.
    for i in range(len(reads)):
        name = NAMES[int(t["class_id"][i])]
        contig = seqs[name][t["contig"][i]]
        assert t["start"][i] >= 0 and t["end"][i] <= len(contig)
        assert reads[i] == _source(seqs, name, t["contig"][i], t["start"][i], t["end"][i],
                                   t["reverse"][i])
    # The 100 bp contig of Alpha_two is shorter than a read window: skipped, and said so.
    assert not ((t["class_id"] == 5) & (t["contig"] == 1)).any()
    assert ((t["class_id"] == 5) & (t["contig"] == 2)).any()
    assert "Alpha_two.fa: skipped 1 of 3 contigs shorter than 104 bp" in res.err
    # Coverage roughly follows contig length (Beta_one: 1800 vs 4200 bp).
    beta = t["contig"][t["class_id"] == 9]
    assert 0.22 < (beta == 0).mean() < 0.35
    # The lbl label scheme reads these headers.
    labeler = Labeler(make_scheme("lbl"), load_mapping(mapping))
    assert (labeler.classes(batch) == np.searchsorted([3, 5, 9], t["class_id"])).all()


def test_deterministic_per_seed(tmp_path, run, genomes):
    paths, mapping, _ = genomes
    common = [*paths, "--mapping", mapping, "--reads-per-species", 300, "--paired"]
    for name, seed in (("a.fa.gz", 1), ("b.fa.gz", 1), ("c.fa.gz", 2)):
        assert run("simulate", *common, "-o", tmp_path / name, "--seed", seed).code == 0
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.fa.gz", "b.fa.gz", "c.fa.gz"))
    assert a == b
    assert a != c
    assert gzip.decompress(a).startswith(b">lbl|")


def test_sorted_and_small_chunks_keep_counts(genomes):
    paths, mapping, _ = genomes
    gs = load_genomes(paths, load_mapping(mapping))
    for sort in (False, True):
        opts = SimOptions(reads_per_species=1000, length=80, seed=5, sorted_by_species=sort)
        chunks = list(simulate_reads(gs, opts, chunk=333))
        species = np.concatenate([c.species for c in chunks])
        number = np.concatenate([c.number for c in chunks])
        assert len(chunks) > 3
        assert np.bincount(species).tolist() == [1000, 1000, 1000]
        for s in range(3):
            assert sorted(number[species == s]) == list(range(1000))
        if sort:
            assert (np.diff(species) >= 0).all()


def test_paired_insert_sizes_and_two_files(tmp_path, run, genomes):
    paths, mapping, seqs = genomes
    inter = tmp_path / "pairs.fa"
    args = [*paths, "--mapping", mapping, "--reads-per-species", 1500, "--paired",
            "--insert-mean", 400, "--insert-sd", 40, "--error-profile", "none", "--seed", 4]
    assert run("simulate", *args, "-o", inter).code == 0
    batch, t, reads = _reads(inter)
    assert len(batch) == 9000
    m1, m2 = slice(0, None, 2), slice(1, None, 2)
    assert (t["mate"][m1] == 1).all() and (t["mate"][m2] == 2).all()
    assert (t["number"][m1] == t["number"][m2]).all()
    assert (t["contig"][m1] == t["contig"][m2]).all()
    # Mates come from opposite strands; mate 1 is forward in about half of the pairs.
    assert (t["reverse"][m1] != t["reverse"][m2]).all()
    assert 0.45 < t["reverse"][m1].mean() < 0.55
    fwd_start = np.where(t["reverse"][m1], t["start"][m2], t["start"][m1])
    rev_end = np.where(t["reverse"][m1], t["end"][m1], t["end"][m2])
    insert = rev_end - fwd_start
    assert abs(insert.mean() - 400) < 3
    assert abs(insert.std() - 40) < 3
    assert insert.max() <= 400 + 4 * 40
    # Fragments never leave a contig: the 1800 bp contig of Beta_one still yields pairs.
    for i in range(0, 200):
        name = NAMES[int(t["class_id"][i])]
        assert reads[i] == _source(seqs, name, t["contig"][i], t["start"][i], t["end"][i],
                                   t["reverse"][i])
    # --output2 writes the same pairs split into two files.
    r1, r2 = tmp_path / "r1.fa", tmp_path / "r2.fa"
    assert run("simulate", *args, "-o", r1, "--output2", r2).code == 0
    assert read_all(r1).sequences() == reads[0::2]
    assert read_all(r2).sequences() == reads[1::2]


def test_region_split(tmp_path, run, genomes):
    paths, mapping, seqs = genomes
    train, val = tmp_path / "train.fq", tmp_path / "val.fa.gz"
    res = run("simulate", *paths, "-o", train, "--mapping", mapping, "--reads-per-species", 800,
              "--length", 60, "--split", "region:0.8", "--val-output", val, "--error-profile",
              "none", "--seed", 9)
    assert res.code == 0, res.err
    tb, tt, treads = _reads(train)
    vb, vt, vreads = _reads(val)
    assert tb.qual is not None and (tb.lengths == 60).all()
    assert len(tb) == 2400 and len(vb) == 600  # validation default: N/4 per species
    assert all(f"{NAMES[c]}-v" in vb.header(i) for i, c in enumerate(vt["class_id"]))
    for t, reads, part in ((tt, treads, "train"), (vt, vreads, "val")):
        for i in range(len(reads)):
            name = NAMES[int(t["class_id"][i])]
            cut = int(len(seqs[name][t["contig"][i]]) * 0.8)
            if part == "train":
                assert t["end"][i] <= cut
            else:
                assert t["start"][i] >= cut
            assert reads[i] == _source(seqs, name, t["contig"][i], t["start"][i], t["end"][i],
                                       t["reverse"][i])
        # Alpha_two's 3000 bp contig has a 600 bp held-out part: usable for validation too.
        assert ((t["class_id"] == 5) & (t["contig"] == 0)).any()


def test_error_rates_follow_hiseq_profile(genomes):
    paths, mapping, seqs = genomes
    gs = load_genomes(paths, load_mapping(mapping))
    opts = SimOptions(reads_per_species=8000, length=150, seed=11, error_profile="hiseq")
    b = next(iter(simulate_reads(gs, opts, chunk=24000)))
    profile = PROFILES["hiseq"]
    exact = (b.end - b.start) == 150  # reads without a net indel line up with their source
    # Indels: P(read has one) = 1 - (1 - 2e-4) ** 150 ~ 3%.
    assert 0.02 < 1 - exact.mean() < 0.04
    src = np.array([[ord(ch) for ch in _source(seqs, gs[s].name, c, a, e, r)]
                    for s, c, a, e, r in zip(b.species[exact], b.contig[exact], b.start[exact],
                                             b.end[exact], b.reverse[exact])], dtype=np.uint8)
    got = b.seq[exact]
    is_n = got == ord("N")
    sub = (got != src) & ~is_n
    rate = sub.mean(axis=0)
    expect = profile.substitution_rates(150)
    assert abs(rate.mean() - expect.mean()) < 0.1 * expect.mean()
    assert abs(rate[:30].mean() - expect[:30].mean()) < 0.3 * expect[:30].mean()
    assert abs(rate[-30:].mean() - expect[-30:].mean()) < 0.1 * expect[-30:].mean()
    assert rate[-30:].mean() > 5 * rate[:30].mean()
    assert 0.5 * profile.n_rate < is_n.mean() < 1.5 * profile.n_rate
    none = next(iter(simulate_reads(gs, SimOptions(reads_per_species=100, error_profile="none"))))
    assert ((none.end - none.start) == 150).all()
    assert not (none.seq == ord("N")).any()


def test_n_rate_option(genomes):
    paths, mapping, _ = genomes
    gs = load_genomes(paths, load_mapping(mapping))
    opts = SimOptions(reads_per_species=1000, length=100, error_profile="none", n_rate=0.01)
    b = next(iter(simulate_reads(gs, opts)))
    assert 0.008 < (b.seq == ord("N")).mean() < 0.012


def test_genome_map_and_gzip_genome(tmp_path, run, genomes):
    paths, mapping, _ = genomes
    gz = tmp_path / "renamed.fna.gz"
    gz.write_bytes(gzip.compress(paths[0].read_bytes()))
    gmap = tmp_path / "gmap.tsv"
    gmap.write_text("genome\tclass\nrenamed\tAlpha_one\nBeta_one.fa\t9\n")
    out = tmp_path / "r.fa"
    res = run("simulate", gz, paths[2], "-o", out, "--mapping", mapping, "--genome-map", gmap,
              "--reads-per-species", 10)
    assert res.code == 0, res.err
    assert sorted(set(read_truth(read_all(out))["class_id"])) == [3, 9]


@pytest.mark.parametrize("case", ["unmapped", "empty", "split-no-val", "too-short", "same-class",
                                  "bad-split", "exists"])
def test_bad_input_exit_2(tmp_path, run, genomes, case):
    paths, mapping, _ = genomes
    out = tmp_path / "out.fa"
    args = [*paths, "--mapping", mapping, "--reads-per-species", 10, "-o", out]
    if case == "unmapped":
        extra = tmp_path / "Gamma_x.fa"
        extra.write_text(">c\nACGT" * 100 + "\n")
        args = [extra, *args]
        want = "Gamma_x.fa: no mapping row has label_name 'Gamma_x'"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        empty = tmp_path / "empty" / "Alpha_one.fa"
        empty.write_text("")
        args = [empty, *args[1:]]
        want = "file is empty"
    elif case == "split-no-val":
        args += ["--split", "region:0.8"]
        want = "--split needs --val-output"
    elif case == "too-short":
        args += ["--length", 6000]
        want = "Alpha_one.fa: no contig has 6004 usable bases"
    elif case == "same-class":
        args = [paths[0], *args]
        want = "both map to class 'Alpha_one'"
    elif case == "bad-split":
        args += ["--split", "region:1.5", "--val-output", tmp_path / "v.fa"]
        want = "expected region:<fraction between 0 and 1>"
    else:
        out.write_text("keep me")
        want = "exists (use --force"
    res = run("simulate", *args)
    assert res.code == 2
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and want in lines[0], res.err
    # Nothing half-written is left behind.
    assert not out.exists() or out.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_formatting_helpers():
    flat, lens = ascii_ints(np.array([0, 7, 10, 99, 100, 123456789]))
    assert flat.tobytes() == b"071099100123456789"
    assert lens.tolist() == [1, 1, 2, 2, 3, 9]
    buf, row_len = join_columns([b">", (np.frombuffer(b"abcde", np.uint8), np.array([2, 3])),
                                 np.array([[49, 50], [51, 52]], np.uint8), b"\n"], 2)
    assert buf.tobytes() == b">ab12\n>cde34\n"
    assert row_len.tolist() == [6, 7]
    block = np.frombuffer(b"XYZW", np.uint8).reshape(2, 2)
    out = prepend_rows(np.frombuffer(b"abc", np.uint8), np.array([1, 2]), block)
    assert out.tobytes() == b"aXYbcZW"


def test_label_names_with_spaces_give_unique_read_ids(tmp_path, run):
    rng = np.random.default_rng(3)
    names = ["Lactobacillus fermentum", "Lactobacillus  fermentum subsp. x", "Bacillus subtilis"]
    paths = []
    for k in range(3):
        p = tmp_path / f"g{k}.fa"
        p.write_text(f">c0\n{_contigs(rng, [3000])[0]}\n")
        paths.append(p)
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text("".join(f"{k + 1}\t{n}\t{1600 + k}\n" for k, n in enumerate(names)))
    gmap = tmp_path / "gmap.tsv"
    gmap.write_text("".join(f"g{k}\t{k + 1}\n" for k in range(3)))
    out, out2 = tmp_path / "r_1.fq", tmp_path / "r_2.fq"
    res = run("simulate", *paths, "-o", out, "--output2", out2, "--mapping", mapping,
              "--genome-map", gmap, "--reads-per-species", 400, "--paired")
    assert res.code == 0, res.err
    for path in (out, out2):
        batch = read_all(path)
        ids = batch.read_ids()
        assert len(ids) == 1200 and len(set(ids)) == 1200
        heads = batch.headers.tobytes().decode()
        assert "|Lactobacillus_fermentum-0/" in heads
        assert "|Lactobacillus_fermentum_subsp._x-399/" in heads
        assert set(read_truth(batch)["class_id"].tolist()) == {1, 2, 3}
        classes = Labeler(make_scheme("lbl"), load_mapping(mapping)).classes(batch)
        assert np.bincount(classes).tolist() == [400] * 3
