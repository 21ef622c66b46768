"""readtax.predict: calls equal the model's own outputs; thresholds, top-k, pairs, Kraken2 merge,
torchrun merge, bounded memory; abundance; the CLI with a real saved model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers_predict import (
    TinyModel,
    direct_logp,
    direct_probs,
    label_map,
    random_seqs,
    read_tsv,
    write_big_fasta,
    write_reads,
)
from readtax.errors import InputError, UsageError
from readtax.predict import (
    PredictOptions,
    classify_sequences,
    iter_batches,
    merge_parts,
    plan_sources,
    predict,
)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model():
    return TinyModel(label_map(5))


def _reads(tmp_path, n=203, seed=0, name="r.fa", fastq=False):
    seqs = random_seqs(n, seed=seed)
    ids = [f"read{i} some description" for i in range(n)]
    return write_reads(tmp_path / name, ids, seqs, fastq=fastq), seqs


# -- calls -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers,batch,fastq", [(0, 64, False), (2, 50, True), (0, 1000, False)])
def test_predictions_equal_direct_model_calls(tmp_path, model, workers, batch, fastq):
    path, seqs = _reads(tmp_path, fastq=fastq)
    out = tmp_path / "pred.tsv"
    s = predict(model, [path], out, options=PredictOptions(batch_size=batch, num_workers=workers))
    head, rows = read_tsv(out)
    assert head == ["read_id", "class_index", "label_name", "tax_id", "confidence"]
    p = direct_probs(model, seqs)
    assert [r[0] for r in rows] == [f"read{i}" for i in range(len(seqs))]  # input order, 1st word
    assert [int(r[1]) for r in rows] == p.argmax(1).tolist()
    assert [r[2] for r in rows] == [f"Species_{c}" for c in p.argmax(1)]
    assert [int(r[3]) for r in rows] == (1000 + p.argmax(1)).tolist()
    np.testing.assert_allclose([float(r[4]) for r in rows], p.max(1), atol=6e-5)
    assert s.units == len(seqs) and s.classified == len(seqs) and s.unclassified == 0
    np.testing.assert_array_equal(s.counts[:-1], np.bincount(p.argmax(1), minlength=5))


def test_api_returns_the_same_as_streaming(tmp_path, model):
    path, seqs = _reads(tmp_path)
    out = tmp_path / "pred.tsv"
    predict(model, [path], out, options=PredictOptions(batch_size=32, top_k=3,
                                                       min_confidence=0.6))
    res = classify_sequences(model, seqs, ids=[f"read{i}" for i in range(len(seqs))],
                             top_k=3, min_confidence=0.6, batch_size=77)
    _, rows = read_tsv(out)
    assert res.ids == [r[0] for r in rows]
    assert res.class_index.tolist() == [int(r[1]) for r in rows]
    assert res.label_names(model.label_map) == [r[2] for r in rows]
    assert res.tax_ids(model.label_map).tolist() == [int(r[3]) for r in rows]
    assert [f"{c:.4f}" for c in res.confidence] == [r[4] for r in rows]
    assert res.top_index.shape == (len(seqs), 3)


def test_unclassified_threshold_and_margin(tmp_path, model):
    path, seqs = _reads(tmp_path)
    p = direct_probs(model, seqs)
    conf = p.max(1)
    srt = np.sort(p, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    x = float(np.median(conf))
    out = tmp_path / "p.tsv"
    s = predict(model, [path], out, options=PredictOptions(min_confidence=x))
    _, rows = read_tsv(out)
    expect_u = conf < x
    got_u = np.array([r[1] == "-1" for r in rows])
    # Values within float noise of the threshold may go either way.
    near = np.abs(conf - x) < 1e-6
    assert (got_u[~near] == expect_u[~near]).all()
    assert expect_u.sum() > 10 and (~expect_u).sum() > 10
    for r in rows:
        if r[1] == "-1":
            assert r[2:4] == ["unclassified", "0"] and float(r[4]) < x + 1e-4
    assert s.unclassified == got_u.sum()

    y = float(np.quantile(margin, 0.3))
    predict(model, [path], out, options=PredictOptions(min_margin=y), )
    _, rows = read_tsv(out)
    got_u = np.array([r[1] == "-1" for r in rows])
    ok = np.abs(margin - y) > 1e-6
    assert (got_u[ok] == (margin < y)[ok]).all()


def test_top_k_columns(tmp_path, model):
    path, seqs = _reads(tmp_path, n=40)
    out = tmp_path / "p.tsv"
    predict(model, [path], out, options=PredictOptions(top_k=3))
    head, rows = read_tsv(out)
    assert head[5:] == ["top1_label", "top1_conf", "top2_label", "top2_conf", "top3_label",
                        "top3_conf"]
    p = direct_probs(model, seqs)
    order = np.argsort(-p, axis=1, kind="stable")
    for r, o, pr in zip(rows, order, p):
        assert [r[5], r[7], r[9]] == [f"Species_{c}" for c in o[:3]]
        np.testing.assert_allclose([float(r[6]), float(r[8]), float(r[10])], pr[o[:3]], atol=6e-5)
        assert r[5] == r[2]
    # K above the number of classes is capped.
    predict(model, [path], out, options=PredictOptions(top_k=9))
    head, _ = read_tsv(out)
    assert head[-2:] == ["top5_label", "top5_conf"]


# -- pairs -----------------------------------------------------------------------------------


def _pair_files(tmp_path, n=61):
    r1, r2 = random_seqs(n, seed=1), random_seqs(n, seed=2)
    p1 = write_reads(tmp_path / "R1.fq", [f"p{i}/1" for i in range(n)], r1, fastq=True)
    p2 = write_reads(tmp_path / "R2.fq", [f"p{i}/2" for i in range(n)], r2, fastq=True)
    return p1, p2, r1, r2


def _expected_pairs(model, r1, r2):
    s = direct_logp(model, r1) + direct_logp(model, r2)
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_pairs_two_files_sum_mate_log_probs(tmp_path, model):
    p1, p2, r1, r2 = _pair_files(tmp_path)
    assert [s.mode for s in plan_sources([str(p1), str(p2)])] == ["pair"]
    out, kout = tmp_path / "p.tsv", tmp_path / "k.out"
    s = predict(model, [p1, p2], out, kraken_out=kout, options=PredictOptions(batch_size=16))
    _, rows = read_tsv(out)
    want = _expected_pairs(model, r1, r2)
    assert [r[0] for r in rows] == [f"p{i}" for i in range(len(r1))]
    assert [int(r[1]) for r in rows] == want.argmax(1).tolist()
    np.testing.assert_allclose([float(r[4]) for r in rows], want.max(1), atol=6e-5)
    assert s.units == s.pairs == len(r1)
    klines = kout.read_text().splitlines()
    assert klines[0].split("\t")[3] == f"{len(r1[0])}|{len(r2[0])}"
    assert " |:| " in klines[0].split("\t")[4]


def test_interleaved_pairs_equal_two_files(tmp_path, model):
    p1, p2, r1, r2 = _pair_files(tmp_path)
    ids = [f"p{i}/{m}" for i in range(len(r1)) for m in (1, 2)]
    seqs = [s for pair in zip(r1, r2) for s in pair]
    inter = write_reads(tmp_path / "i.fa", ids, seqs)
    assert [s.mode for s in plan_sources([str(inter)])] == ["interleaved"]
    predict(model, [p1, p2], tmp_path / "a.tsv", options=PredictOptions(batch_size=7))
    predict(model, [inter], tmp_path / "b.tsv", options=PredictOptions(batch_size=9,
                                                                       num_workers=2))
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()
    # --paired off classifies every mate singly.
    s = predict(model, [inter], tmp_path / "c.tsv", options=PredictOptions(paired="off"))
    assert s.units == 2 * len(r1) and s.pairs == 0


def test_pair_count_and_id_mismatch(tmp_path, model):
    p1, p2, r1, r2 = _pair_files(tmp_path, n=30)
    short = write_reads(tmp_path / "short.fq", [f"p{i}/2" for i in range(29)], r2[:29],
                        fastq=True)
    with pytest.raises(InputError, match=r"mate files differ in length.*ends after 29 records"):
        predict(model, [p1, short], tmp_path / "o.tsv", options=PredictOptions(paired="on"))
    ids = [f"p{i}/2" for i in range(30)]
    ids[17] = "other/2"
    bad = write_reads(tmp_path / "bad.fq", ids, r2, fastq=True)
    with pytest.raises(InputError, match=r"record 18.*mate ids differ.*'other/2'.*'p17/1'"):
        predict(model, [p1, bad], tmp_path / "o.tsv", options=PredictOptions(paired="on"))
    assert not (tmp_path / "o.tsv").exists()  # atomic: nothing left behind
    odd = write_reads(tmp_path / "odd.fa", ["a/1", "a/2", "b/1"], r1[:3])
    with pytest.raises(InputError, match="odd number of records"):
        predict(model, [odd], tmp_path / "o.tsv", options=PredictOptions(paired="on"))
    with pytest.raises(UsageError, match="one interleaved file or two files"):
        predict(model, [p1, p2, odd], tmp_path / "o.tsv", options=PredictOptions(paired="on"))


def test_batches_are_exact_across_files_and_chunks(tmp_path):
    a = write_reads(tmp_path / "a.fa", [f"a{i}" for i in range(37)], random_seqs(37))
    ids = [f"b{i}/{m}" for i in range(23) for m in (1, 2)]
    b = write_reads(tmp_path / "b.fa", ids, random_seqs(46, seed=3))
    sources = plan_sources([str(a), str(b)])
    assert [s.mode for s in sources] == ["single", "interleaved"]
    batches = list(iter_batches(sources, 8, chunk_size=1 << 12))
    assert [len(c) for c in batches] == [8] * 7 + [4]
    assert sum(int(c.nmates.sum()) for c in batches) == 37 + 46
    assert np.concatenate([c.nmates for c in batches]).tolist() == [1] * 37 + [2] * 23


# -- Kraken2 merge ---------------------------------------------------------------------------


def test_with_kraken_keeps_known_calls(tmp_path, model):
    path, seqs = _reads(tmp_path, n=50)
    p = direct_probs(model, seqs)
    lines = []
    for i in range(50):
        if i % 5 == 0:
            lines.append(f"C\tread{i}\t1003\t150\t1003:116")  # in the map: kept
        elif i % 5 == 1:
            lines.append(f"C\tread{i}\t561\t150\t561:116")  # a genus, not in the map: model
        elif i % 5 == 2:
            lines.append(f"C\tread{i}\tSpecies four (taxid 1004)\t150\t1004:116")  # --use-names
        else:
            lines.append(f"U\tread{i}\t0\t150\t0:116")
    k2 = tmp_path / "k2.out"
    k2.write_text("\n".join(lines) + "\n")
    out = tmp_path / "p.tsv"
    s = predict(model, [path], out, with_kraken=k2, options=PredictOptions(batch_size=7, top_k=2))
    head, rows = read_tsv(out)
    assert head[-1] == "source"
    for i, r in enumerate(rows):
        if i % 5 in (0, 2):
            assert r[1] == ("3" if i % 5 == 0 else "4") and r[-1] == "kraken2"
            assert r[4] == "NA" and r[5] == "NA"
        else:
            assert int(r[1]) == p[i].argmax() and r[-1] == "model"
    assert (s.from_kraken, s.from_model) == (20, 30)


def test_with_kraken_kept_calls_keep_kraken2_column_5(tmp_path, model):
    path, seqs = _reads(tmp_path, n=12)
    theirs = {0: "1003:3 0:9 1003:100 A:4 ", 4: "1001:20 0:96", 7: "1004:50 |:| 0:10"}
    lines = [f"C\tread{i}\t{1000 + i % 5}\t150\t{theirs[i]}" if i in theirs
             else f"U\tread{i}\t0\t150\t0:116" for i in range(12)]
    k2 = tmp_path / "k2.out"
    k2.write_text("\n".join(lines) + "\n")
    kout = tmp_path / "k.out"
    predict(model, [path], tmp_path / "p.tsv", with_kraken=k2, kraken_out=kout,
            options=PredictOptions(batch_size=5))
    _, rows = read_tsv(tmp_path / "p.tsv")
    ours = [ln.split("\t") for ln in kout.read_text().split("\n")[:-1]]
    assert len(ours) == 12
    for i, (row, line) in enumerate(zip(rows, ours)):
        if i in theirs:  # kept: Kraken2's k-mer runs verbatim, trailing space included
            assert row[-1] == "kraken2" and line[4] == theirs[i]
        else:  # the model's call: the documented placeholder, one run over all 35-mers
            assert row[-1] == "model"
            assert line[4] == f"{line[2]}:{max(len(seqs[i]) - 34, 0)}"


def test_with_kraken_bad_files(tmp_path, model):
    path, _ = _reads(tmp_path, n=10)
    k2 = tmp_path / "k2.out"
    good = [f"U\tread{i}\t0\t150\t0:116" for i in range(10)]
    cases = {
        "swap": (good[:3] + [good[4], good[3]] + good[5:], r"line 4.*'read4' does not match"),
        "short": (good[:8], r"ends after 8 lines"),
        "long": (good + ["U\textra\t0\t150\t0:116"], r"line 11.*more lines"),
        "junk": (good[:2] + ["garbage line"] + good[3:], r"line 3.*expected a Kraken2"),
        "taxid": (good[:2] + ["C\tread2\tx\t150\t0:1"] + good[3:], r"line 3.*not an integer"),
    }
    for name, (lines, msg) in cases.items():
        k2.write_text("\n".join(lines) + "\n")
        with pytest.raises(InputError, match=msg):
            predict(model, [path], tmp_path / f"{name}.tsv", with_kraken=k2,
                    options=PredictOptions(batch_size=3))
        assert not (tmp_path / f"{name}.tsv").exists()
    k2.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(InputError, match="cannot read Kraken2 output"):
        predict(model, [path], tmp_path / "gz.tsv", with_kraken=k2)


# -- reports and abundance through predict ---------------------------------------------------


def test_outputs_report_and_abundance(tmp_path, model):
    path, seqs = _reads(tmp_path, n=120)
    sizes = tmp_path / "sizes.tsv"
    sizes.write_text("tax_id\tgenome_size\n1000\t1000000\n1001\t2000000\nSpecies_2\t500000\n"
                     "1003\t4000000\n1004\t1000000\n9999\t5\n")
    out = tmp_path / "p.tsv"
    s = predict(model, [path], out, report=tmp_path / "r.txt", kraken_out=tmp_path / "k.out",
                abundance=tmp_path / "a.tsv", genome_sizes=sizes,
                abundance_plot=tmp_path / "a.png", options=PredictOptions(min_confidence=0.7))
    counts = s.counts
    report = (tmp_path / "r.txt").read_text().splitlines()
    total = s.units
    assert report[0] == f"{100 * counts[-1] / total:6.2f}\t{counts[-1]}\t{counts[-1]}\tU\t0\tunclassified"
    assert report[1] == f"{100 * s.classified / total:6.2f}\t{s.classified}\t0\tR\t1\troot"
    species = [ln.split("\t") for ln in report[2:]]
    assert [int(f[1]) for f in species] == sorted(counts[:-1][counts[:-1] > 0], reverse=True)
    assert all(f[3] == "S" and f[5].startswith("  Species_") for f in species)
    k = [ln.split("\t") for ln in (tmp_path / "k.out").read_text().splitlines()]
    _, rows = read_tsv(out)
    assert [f[1] for f in k] == [r[0] for r in rows]
    assert [f[2] for f in k] == [r[3] for r in rows]
    assert [f[0] for f in k] == ["U" if r[1] == "-1" else "C" for r in rows]
    assert [int(f[3]) for f in k] == [len(x) for x in seqs]
    head, arows = read_tsv(tmp_path / "a.tsv")
    assert head == ["label_name", "tax_id", "class_id", "reads", "fraction", "genome_size",
                    "abundance"]
    size_of = {1000: 1e6, 1001: 2e6, 1002: 5e5, 1003: 4e6, 1004: 1e6}
    per = {int(r[1]): int(r[3]) / size_of[int(r[1])] for r in arows}
    for r in arows:
        assert int(r[3]) == counts[int(r[2])]
        assert float(r[4]) == pytest.approx(int(r[3]) / s.classified, abs=1e-6)
        assert float(r[6]) == pytest.approx(per[int(r[1])] / sum(per.values()), abs=1e-6)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_report_with_taxonomy(tmp_path, model):
    from test_kraken import write_taxonomy

    nodes = [(1, 1, "no rank"), (2, 1, "superkingdom"), (10, 2, "genus"), (20, 2, "genus")]
    nodes += [(1000 + c, 10 if c < 3 else 20, "species") for c in range(5)]
    names = {t: f"taxon {t}" for t, _, _ in nodes}
    tax = write_taxonomy(tmp_path / "tax", nodes, names)
    path, _ = _reads(tmp_path, n=60)
    s = predict(model, [path], tmp_path / "p.tsv", report=tmp_path / "r.txt", taxonomy=tax)
    from readtax.kraken import read_report

    rows = read_report(tmp_path / "r.txt")
    assert [(r.rank, r.tax_id) for r in rows[:3]] == [("R", 1), ("D", 2), ("G", 10)]
    by_tax = {r.tax_id: r for r in rows}
    assert by_tax[10].clade == int(s.counts[:3].sum()) and by_tax[1].clade == s.units
    # One set of names per run: the label map's for its tax ids (as calls.tsv and the
    # abundance table), names.dmp's for the ancestors only.
    assert by_tax[1000].name == "Species_0" and by_tax[1000].depth == 3
    assert by_tax[10].name == "taxon 10" and by_tax[2].name == "taxon 2"
    (tax / "nodes.dmp").write_text("1\t|\t1\t|\tno rank\t|\n")
    with pytest.raises(InputError, match="5 tax id"):
        predict(model, [path], tmp_path / "q.tsv", report=tmp_path / "q.txt", taxonomy=tax)


def test_bad_inputs(tmp_path, model):
    path, _ = _reads(tmp_path, n=5)
    sizes = tmp_path / "sizes.tsv"
    sizes.write_text("1000\t10\n1001\t10\n")
    with pytest.raises(InputError, match=r"no genome size for 3 species: Species_2 \(1002\)"):
        predict(model, [path], tmp_path / "o.tsv", abundance=tmp_path / "a.tsv",
                genome_sizes=sizes)
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        predict(model, [empty], tmp_path / "o.tsv")
    with pytest.raises(UsageError, match="no such file"):
        predict(model, [tmp_path / "missing.fa"], tmp_path / "o.tsv")
    assert not (tmp_path / "o.tsv").exists()
    with pytest.raises(UsageError, match="min_confidence 1.5"):
        PredictOptions(min_confidence=1.5)


# -- distributed -----------------------------------------------------------------------------


def test_merge_parts_restores_input_order(tmp_path):
    # 11 units in batches of 3 over 2 ranks: rank 0 has batches 0, 2 (+ 3 lines), rank 1: 1, 3.
    lines = [f"u{i}\n" for i in range(11)]
    batches = [lines[i : i + 3] for i in range(0, 11, 3)]
    parts = []
    for r in range(2):
        p = tmp_path / f"part{r}"
        p.write_text("".join(ln for b in batches[r::2] for ln in b))
        parts.append(p)
    merge_parts(parts, tmp_path / "out.tsv", 3, "head\n")
    assert (tmp_path / "out.tsv").read_text() == "head\n" + "".join(lines)
    # Exactly a multiple of the batch size: the next part is simply empty.
    parts[0].write_text("u0\nu1\nu2\n")
    parts[1].write_text("u3\nu4\nu5\n")
    merge_parts(parts, tmp_path / "out2.tsv", 3)
    assert (tmp_path / "out2.tsv").read_text() == "".join(lines[:6])


def test_torchrun_two_ranks_equal_one_process(tmp_path, model):
    path, _ = _reads(tmp_path, n=157)
    kr = tmp_path / "k2.out"
    kr.write_text("".join(f"{'C' if i % 3 == 0 else 'U'}\tread{i}\t{1002 if i % 3 == 0 else 0}"
                          f"\t150\t0:1\n" for i in range(157)))
    common = {"options": {"batch_size": 10, "top_k": 2, "num_workers": 1}, "inputs": [str(path)],
              "with_kraken": str(kr)}
    single = {**common, "output": str(tmp_path / "one.tsv"),
              "kraken_out": str(tmp_path / "one.k"), "report": str(tmp_path / "one.r")}
    multi = {**common, "output": str(tmp_path / "two.tsv"),
             "kraken_out": str(tmp_path / "two.k"), "report": str(tmp_path / "two.r")}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    script = str(HERE / "helpers_predict.py")
    subprocess.run([sys.executable, script, json.dumps(single)], check=True, env=env)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", script, json.dumps(multi)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    for ext in ("tsv", "k", "r"):
        assert (tmp_path / f"one.{ext}").read_text() == (tmp_path / f"two.{ext}").read_text()
    assert not list(tmp_path.glob(".*part*"))


# -- memory ----------------------------------------------------------------------------------


_MEM_SCRIPT = """
import resource, sys
sys.path.insert(0, {here!r})
from helpers_predict import TinyModel, label_map
from readtax.predict import PredictOptions, predict
m = TinyModel(label_map(5))
predict(m, [sys.argv[1]], sys.argv[2], kraken_out=sys.argv[2] + ".k",
        options=PredictOptions(batch_size=512, chunk_size=1 << 20, top_k=2))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_flat_on_10x_input(tmp_path):
    small = write_big_fasta(tmp_path / "small.fa", 20_000)
    big = write_big_fasta(tmp_path / "big.fa", 200_000, seed=1)  # 33 MB of FASTA
    script = _MEM_SCRIPT.format(here=str(HERE))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def peak(path):
        out = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "o.tsv")],
                             capture_output=True, text=True, env=env, check=True)
        return int(out.stdout.split()[-1]) / 1024  # MB

    a, b = peak(small), peak(big)
    # Relative to the small run's peak (torch dominates it): holding the big input's reads, ids
    # or output lines would add well over 40 MB, more than 8% of that peak.
    assert b <= a * 1.08, (a, b)


# -- the CLI with a real saved model (kmer-cnn tiny) -----------------------------------------

FIXTURES = HERE / "fixtures" / "kraken2"
DEMO_MAP = ["Simulibacter_alpha", "Simulibacter_beta", "Simulibacter_gamma", "Simulibacter_delta",
            "Artefactomonas_alpha", "Artefactomonas_beta", "Artefactomonas_gamma",
            "Syntheticoccus_alpha", "Syntheticoccus_beta", "Syntheticoccus_gamma"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from readtax.labels import LabelMap
    from readtax.models import build_classifier, init_model, save_classifier

    root = tmp_path_factory.mktemp("run")
    lm = LabelMap(np.arange(10), DEMO_MAP, 10000001 + np.arange(10))
    backbone = init_model("kmer-cnn", "tiny", root / "init", seed=0)
    save_classifier(build_classifier(backbone, lm, seed=0), root / "run" / "model")
    return root / "run"


def test_cli_matches_direct_model_and_real_kraken2(tmp_path, run, run_dir):
    from readtax.predict import load_model

    model = load_model(run_dir)
    out = tmp_path / "p.tsv"
    fa = FIXTURES / "example.fa"
    r = run("predict", run_dir, fa, "-o", out, "--num-workers", "0", "--batch-size", "3")
    assert r.code == 0, r.err
    _, rows = read_tsv(out)
    seqs = [b.splitlines()[1] for b in fa.read_text().split(">")[1:]]
    p = direct_probs(model, seqs)
    assert [int(x[1]) for x in rows] == p.argmax(1).tolist()
    np.testing.assert_allclose([float(x[4]) for x in rows], p.max(1), atol=6e-5)
    # --with-kraken on the real tool's output: its six species calls are kept.
    r = run("predict", run_dir, fa, "-o", tmp_path / "k.tsv", "--with-kraken",
            FIXTURES / "example.kraken", "--report", tmp_path / "r.txt", "--kraken-out",
            tmp_path / "k.out")
    assert r.code == 0, r.err
    _, krows = read_tsv(tmp_path / "k.tsv")
    assert [x[-1] for x in krows] == ["kraken2"] * 6 + ["model"] * 2
    assert [x[3] for x in krows[:6]] == [ln.split("\t")[2] for ln in
                                          (FIXTURES / "example.kraken").read_text().splitlines()[:6]]
    assert krows[6:] == [x[:5] + ["model"] for x in rows[6:]]
    kl = (tmp_path / "k.out").read_text().splitlines()
    theirs = (FIXTURES / "example.kraken").read_text().splitlines()
    assert kl[:6] == theirs[:6]  # kept calls: every column as Kraken2 wrote it


def test_cli_bad_input_exit_2(tmp_path, run, run_dir):
    fa = FIXTURES / "example.fa"
    notrun = tmp_path / "notrun"
    notrun.mkdir()
    r = run("predict", notrun, fa, "-o", tmp_path / "o.tsv")
    assert r.code == 2 and "not a readtax run or model directory" in r.err
    assert len(r.err.strip().splitlines()) == 1
    r = run("predict", run_dir, FIXTURES / "example_1.fa", fa, "-o", tmp_path / "o.tsv",
            "--paired", "on")
    assert r.code == 2 and "mate" in r.err, r.err
    sizes = tmp_path / "s.tsv"
    sizes.write_text("Simulibacter_alpha\t1000\n")
    r = run("predict", run_dir, fa, "-o", tmp_path / "o.tsv", "--abundance", tmp_path / "a.tsv",
            "--genome-sizes", sizes)
    assert r.code == 2 and "no genome size for 9 species" in r.err
    bad = tmp_path / "bad.kraken"
    bad.write_text("C\tx\t1\n")
    r = run("predict", run_dir, fa, "-o", tmp_path / "o.tsv", "--with-kraken", bad)
    assert r.code == 2 and "bad.kraken: line 1" in r.err
    assert not (tmp_path / "o.tsv").exists()
    (tmp_path / "o.tsv").write_text("x")
    r = run("predict", run_dir, fa, "-o", tmp_path / "o.tsv")
    assert r.code == 2 and "--force" in r.err
    r = run("predict", run_dir, fa, "-o", tmp_path / "p.tsv", "--min-confidence", "2")
    assert r.code == 2


def test_cli_paired_files(tmp_path, run, run_dir):
    r = run("predict", run_dir, FIXTURES / "example_1.fa", FIXTURES / "example_2.fa",
            "-o", tmp_path / "p.tsv", "--kraken-out", tmp_path / "k.out",
            "--abundance", tmp_path / "a.tsv", "--abundance-plot", tmp_path / "a.png")
    assert r.code == 0, r.err
    _, rows = read_tsv(tmp_path / "p.tsv")
    theirs = (FIXTURES / "example_paired.kraken").read_text().splitlines()
    assert [x[0] for x in rows] == [ln.split("\t")[1] for ln in theirs]
    ours = (tmp_path / "k.out").read_text().splitlines()
    assert [ln.split("\t")[3] for ln in ours] == ["150|150"] * len(theirs)
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_help_documents_the_kraken_out_placeholder(run):
    r = run("predict", "--help")
    assert r.code == 0
    text = " ".join(r.out.split())
    assert "column 5 is a placeholder" in text
    assert "reads whose Kraken2 call is kept keep Kraken2's own column 5" in text
    readme = " ".join((HERE.parent / "README.md").read_text().split())
    assert "Column 5 of `--kraken-out`" in readme and "is a placeholder" in readme


def test_taxonomy_report_uses_the_label_map_names(tmp_path):
    from readtax.labels import LabelMap
    from test_kraken import _krakentools_check, _krakentools_rows, write_taxonomy

    lm = LabelMap(np.arange(3), ["Staphylococcus aureus", "Escherichia coli", "Bacillus subtilis"],
                  np.array([1280, 562, 1423]))
    nodes = [(1, 1, "no rank"), (2, 1, "superkingdom"), (1279, 2, "genus"), (1280, 1279, "species"),
             (561, 2, "genus"), (562, 561, "species"), (1386, 2, "genus"), (1423, 1386, "species")]
    names = {1: "root", 2: "Bacteria", 1279: "Staphylococcus", 561: "Escherichia",
             1386: "Bacillus", 1280: "Staphylococcus_aureus", 562: "Escherichia_coli",
             1423: "Bacillus_subtilis"}
    tax = write_taxonomy(tmp_path / "tax", nodes, names)
    path, _ = _reads(tmp_path, n=90)
    out = tmp_path / "p.tsv"
    predict(TinyModel(lm, seed=3), [path], out, report=tmp_path / "r.txt",
            abundance=tmp_path / "a.tsv", taxonomy=tax)
    _, calls = read_tsv(out)
    _, ab = read_tsv(tmp_path / "a.tsv")
    text = (tmp_path / "r.txt").read_text()
    rows = _krakentools_rows(text)
    species = {r[5]: r[1] for r in rows if r[3] == "S"}
    called = {r[2] for r in calls}
    assert len(called) >= 2 and called <= set(lm.names)
    assert species == {r[0]: int(r[3]) for r in ab if int(r[3])}
    assert set(species) == called
    # Ancestors, absent from the label map, take names.dmp's names.
    genera = {r[5] for r in rows if r[3] == "G"}
    assert genera == {n.split()[0] for n in called} and "Bacteria" in {r[5] for r in rows}
    _krakentools_check(text)


def test_predict_workers_start_with_tokenizer_threads_off(tmp_path, model, monkeypatch):
    import readtax.sources

    real = readtax.sources.quiet_tokenizer_threads

    def marked(worker_id: int) -> None:
        real(worker_id)
        (tmp_path / f"w{worker_id}-{os.getpid()}-{os.environ['TOKENIZERS_PARALLELISM']}").touch()

    monkeypatch.setattr(readtax.sources, "quiet_tokenizer_threads", marked)
    path, _ = _reads(tmp_path)
    predict(model, [path], tmp_path / "p.tsv", options=PredictOptions(batch_size=64, num_workers=2))
    marks = sorted(p.name.split("-") for p in tmp_path.glob("w*-*"))
    assert [m[0] for m in marks] == ["w0", "w1"]
    assert all(m[2] == "false" and int(m[1]) != os.getpid() for m in marks)
