"""readtax stats: exact counts, outputs, bad input through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import random_reads, write_fasta, write_fastq, write_mapping
from readtax.stats import compute_stats


@pytest.mark.parametrize("workers", [1, 2])
def test_exact_counts(tmp_path, workers):
    heads, seqs, classes = random_reads(500, length=(50, 200), n_classes=4, seed=2)
    seqs[3] = "ACGTNNRY" + seqs[3]
    p = write_fasta(tmp_path / "r.fa", heads, seqs)
    # Tiny ranges so that two workers really split the file.
    st = compute_stats([p], workers=workers, unit_bytes=1 << 12)
    lengths = np.array([len(s) for s in seqs])
    assert st.reads == 500
    assert st.bases == lengths.sum()
    assert (st.min_len, st.max_len) == (lengths.min(), lengths.max())
    assert st.non_acgt == 4
    assert st.class_counts == {c: int((classes == c).sum()) for c in range(4)}
    assert st.length_counts.sum() == 500
    assert st.length_counts[lengths.max()] == (lengths == lengths.max()).sum()


def test_cli_outputs(tmp_path, run):
    heads, seqs, classes = random_reads(120, n_classes=3, seed=4)
    p = write_fastq(tmp_path / "r.fq.gz", heads, seqs, compress=True)
    m = write_mapping(tmp_path / "m.tsv", 3)
    r = run("stats", p, "--mapping", m, "--json", tmp_path / "s.json", "--tsv",
            tmp_path / "s.tsv", "--plot", tmp_path / "s.png")
    assert r.code == 0, r.err
    assert "reads\t120" in r.out
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["reads"] == 120 and data["bases"] == 120 * 150
    assert [row["reads"] for row in data["per_class"]] == [int((classes == c).sum()) for c in range(3)]
    rows = (tmp_path / "s.tsv").read_text().splitlines()
    assert rows[0] == "class_index\tclass_id\tlabel_name\ttax_id\treads"
    assert rows[1].startswith("0\t0\tSpecies_0\t1000\t")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_unknown_class(tmp_path, run):
    heads, seqs, _ = random_reads(50, n_classes=5, seed=1)
    p = write_fasta(tmp_path / "r.fa", heads, seqs)
    m = write_mapping(tmp_path / "m.tsv", 3)
    r = run("stats", p, "--mapping", m)
    assert r.code == 2
    assert "not in the mapping" in r.err and str(p) in r.err and "record" in r.err
    assert len(r.err.strip().splitlines()) == 1
    r = run("stats", p, "--mapping", m, "--skip-unknown")
    assert r.code == 0 and "skipped_unknown_class" in r.out


@pytest.mark.parametrize("content,expect", [
    (b"", "empty"),
    (b"junk\n>a\nAC\n", "line 1"),
    (b">lbl|1|2|3|a\n>lbl|1|2|3|b\nAC\n", "no sequence"),
    (b">nolabel\nACGT\n", "label scheme"),
    (b"\x00\x01\x02\xff" * 20, "binary"),
])
def test_cli_bad_input_one_line(tmp_path, run, content, expect):
    p = tmp_path / "bad.fa"
    p.write_bytes(content)
    r = run("stats", p)
    assert r.code == 2
    assert expect in r.err and str(p) in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert "Traceback" not in r.err


def test_missing_file_and_usage(tmp_path, run):
    r = run("stats", tmp_path / "nope.fa")
    assert r.code == 2 and "no such file" in r.err
    assert run("stats").code == 2


def test_subprocess_entry_points(tmp_path):
    p = write_fasta(tmp_path / "r.fa", ["lbl|1|2|3|a"], ["ACGT"])
    out = subprocess.run([sys.executable, "-m", "readtax", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("readtax ")
    out = subprocess.run([sys.executable, "-m", "readtax", "stats", str(p)], capture_output=True, text=True)
    assert out.returncode == 0 and "reads\t1" in out.stdout
    bad = tmp_path / "bad.fa"
    bad.write_text("nonsense\n")
    out = subprocess.run([sys.executable, "-m", "readtax", "stats", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_skip_bad_counts_and_reports(tmp_path, run):
    p = tmp_path / "bad.fa"
    p.write_bytes(b">lbl|1|2|3|a\nACGT\n>lbl|1|2|3|b\n>lbl|1|2|3|c\nAC1T\n>junk\nACGT\n"
                  b">lbl|2|3|4|d\nGGGG\n")
    assert run("stats", p).code == 2
    r = run("stats", p, "--skip-bad", "--json", tmp_path / "s.json")
    assert r.code == 0, r.err
    assert "reads\t2" in r.out
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["reads"] == 2 and data["bases"] == 8
    assert data["skipped_bad_records"] == {
        "header with no sequence": 1,
        "invalid character in sequence": 1,
        "header does not fit the label scheme": 1,
    }
    assert "skipped 3 malformed records" in r.err


def test_skip_bad_fastq(tmp_path):
    from readtax.fastx import read_all

    p = tmp_path / "q.fq"
    p.write_bytes(b"@a\nACGT\n+\nIIII\n@b\nACGT\n+\nIII\n@c\nA-\x01T\n+\nIIII\n@d\nGG\n+\nII\n")
    from readtax.fastx import FastxReader

    reader = FastxReader(p, skip_bad=True)
    recs = [(i, s) for b in reader for i, s in zip(b.read_ids(), b.sequences())]
    assert recs == [("a", "ACGT"), ("d", "GG")]
    assert reader.skipped == {"quality length differs from sequence length": 1,
                              "invalid character in sequence": 1}
    with pytest.raises(Exception, match="quality length"):
        read_all(p)
