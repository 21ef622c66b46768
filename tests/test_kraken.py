"""Kraken2 per-read output and report: exact layout against the real tool's output.

``K2_OUT``/``K2_REPORT`` were written by kraken2 2.1.2 (Debian package) on a tiny database of
three random genomes with the taxonomy in ``NODES``/``NAMES`` (root > Bacteria > 2 genera > 3
species), for 20 reads from the genomes, 3 random reads, one 20 bp read and one chimera. That
build leaves the rank code of non-species taxa empty (upstream reports.cc prints R, D, G...,
which Bracken needs), so codes are compared only where it printed one.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from readtax.errors import InputError
from readtax.kraken import (
    KrakenReader,
    format_kraken_lines,
    format_report,
    load_taxonomy,
    read_report,
    report_rows,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kraken2"

K2_OUT = (
    "".join(f"C\tr{i}\t101\t150\t101:116\n" for i in range(10))
    + "".join(f"C\tr{i}\t102\t150\t102:116\n" for i in range(10, 15))
    + "".join(f"C\tr{i}\t201\t150\t201:116\n" for i in range(15, 20))
    + "".join(f"U\tr{i}\t0\t150\t0:116\n" for i in range(20, 23))
    + "U\tshort\t0\t20\t0:0\n"
    + "C\tmixed\t2\t200\t101:70 0:26 201:70\n"
)
K2_REPORT = (
    " 16.00\t4\t4\tU\t0\tunclassified\n"
    " 84.00\t21\t0\t\t1\troot\n"
    " 84.00\t21\t1\t\t2\t  Bacteria\n"
    " 60.00\t15\t0\t\t10\t    Genus A\n"
    " 40.00\t10\t10\tS\t101\t      Genus A alpha\n"
    " 20.00\t5\t5\tS\t102\t      Genus A beta\n"
    " 20.00\t5\t0\t\t20\t    Genus B\n"
    " 20.00\t5\t5\tS\t201\t      Genus B gamma\n"
)
K2_PAIRED_LINE = "C\tr0\t101\t150|150\t101:116 |:| 101:116"
NODES = [(1, 1, "no rank"), (2, 1, "superkingdom"), (10, 2, "genus"), (101, 10, "species"),
         (102, 10, "species"), (20, 2, "genus"), (201, 20, "species")]
NAMES = {1: "root", 2: "Bacteria", 10: "Genus A", 101: "Genus A alpha", 102: "Genus A beta",
         20: "Genus B", 201: "Genus B gamma"}


def write_taxonomy(d: Path, nodes=NODES, names=NAMES) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    tail = "\t|\t\t|\t0\t|\t1\t|\t11\t|\t1\t|\t0\t|\t1\t|\t1\t|\t0\t|\t\t|\n"
    (d / "nodes.dmp").write_text("".join(f"{t}\t|\t{p}\t|\t{r}{tail}" for t, p, r in nodes))
    (d / "names.dmp").write_text(
        "".join(f"{t}\t|\t{n}\t|\t\t|\tscientific name\t|\n" for t, n in names.items())
        + "2\t|\tEubacteria\t|\t\t|\tsynonym\t|\n")
    return d


def _same_layout(ours: str, theirs: str) -> None:
    """Identical except rank codes the Debian build left empty."""
    a, b = ours.splitlines(), theirs.splitlines()
    assert len(a) == len(b)
    for x, y in zip(a, b):
        fx, fy = x.split("\t"), y.split("\t")
        assert len(fx) == len(fy) == 6
        if fy[3]:
            assert fx == fy
        else:
            assert fx[:3] + fx[4:] == fy[:3] + fy[4:]


# -- per-read lines --------------------------------------------------------------------------


def test_per_read_lines_match_kraken2():
    lines = K2_OUT.splitlines()
    ids = ["r0", "r20", "short"]
    text = format_kraken_lines(ids, np.array([101, 0, 0]), np.array([150, 150, 20]))
    assert text.splitlines() == [lines[0], lines[20], lines[23]]
    paired = format_kraken_lines(["r0"], np.array([101]), np.array([150]), np.array([150]))
    assert paired == K2_PAIRED_LINE + "\n"
    mixed = format_kraken_lines(["a", "b"], np.array([5, 0]), np.array([40, 100]),
                                np.array([-1, 36]))
    assert mixed == "C\ta\t5\t40\t5:6\nU\tb\t0\t100|36\t0:66 |:| 0:2\n"
    assert format_kraken_lines([], np.zeros(0), np.zeros(0)) == ""


def test_reader_parses_kraken2_output(tmp_path):
    p = tmp_path / "k.out"
    p.write_text(K2_OUT)
    with KrakenReader(p) as r:
        a = r.read(3)
        assert a.ids == ["r0", "r1", "r2"] and a.first_line == 1
        assert r.skip(17) == 17
        b = r.read(100)
    assert b.first_line == 21 and b.ids == ["r20", "r21", "r22", "short", "mixed"]
    assert b.tax_ids.tolist() == [0, 0, 0, 0, 2]
    # --use-names output, paired ids with /1, gzip.
    g = tmp_path / "k.out.gz"
    g.write_bytes(gzip.compress(b"C\tp1/1\tEscherichia coli (taxid 562)\t150|150\t562:1 |:| 562:1\n"
                                b"U\tp2/1\tunclassified (taxid 0)\t150|150\t0:1 |:| 0:1\n"))
    blocks = list(KrakenReader(g))
    assert blocks[0].ids == ["p1", "p2"] and blocks[0].tax_ids.tolist() == [562, 0]


@pytest.mark.parametrize("line,msg", [
    ("X\tr\t1\t150\t1:1", "expected a Kraken2 per-read line"),
    ("C\tr\t1", "expected a Kraken2 per-read line"),
    ("C\tr\tone\t150\t1:1", "tax id 'one' is not an integer"),
])
def test_reader_errors_name_the_line(tmp_path, line, msg):
    p = tmp_path / "k.out"
    p.write_text("C\tr0\t1\t150\t1:1\n" + line + "\n")
    with pytest.raises(InputError, match=rf"k.out: line 2: {msg}"):
        KrakenReader(p).read(10)


# -- report ----------------------------------------------------------------------------------


def _direct_from_output(text: str) -> tuple[dict[int, int], int]:
    direct: dict[int, int] = {}
    unclassified = 0
    for line in text.splitlines():
        f = line.split("\t")
        if f[0] == "U":
            unclassified += 1
        else:
            direct[int(f[2])] = direct.get(int(f[2]), 0) + 1
    return direct, unclassified


def test_report_with_taxonomy_matches_kraken2(tmp_path):
    tax = load_taxonomy(write_taxonomy(tmp_path / "tax"), [101, 102, 201])
    direct, unclassified = _direct_from_output(K2_OUT)
    ours = format_report(direct, unclassified, {}, tax)
    _same_layout(ours, K2_REPORT)
    # Upstream rank codes: root R, superkingdom D, genus G.
    assert [r.rank for r in report_rows(direct, unclassified, {}, tax)] == \
        ["U", "R", "D", "G", "S", "S", "G", "S"]


def test_report_without_taxonomy_line_by_line():
    direct = {1004: 3, 1001: 7, 1003: 3, 1002: 0}
    names = {1001: "Escherichia coli", 1003: "Bacillus subtilis", 1004: "Listeria", 1002: "X"}
    assert format_report(direct, 2, names) == (
        " 13.33\t2\t2\tU\t0\tunclassified\n"
        " 86.67\t13\t0\tR\t1\troot\n"
        " 46.67\t7\t7\tS\t1001\t  Escherichia coli\n"
        " 20.00\t3\t3\tS\t1003\t  Bacillus subtilis\n"  # tie with 1004: tax id order
        " 20.00\t3\t3\tS\t1004\t  Listeria\n"
    )
    # No unclassified reads: no U line (as Kraken2); all unclassified: only the U line.
    assert format_report({7: 1}, 0, {7: "a"}).splitlines()[0] == "100.00\t1\t0\tR\t1\troot"
    assert format_report({7: 0}, 5, {7: "a"}) == "100.00\t5\t5\tU\t0\tunclassified\n"


def test_rank_codes_below_named_ranks(tmp_path):
    nodes = [(1, 1, "no rank"), (131567, 1, "no rank"), (2, 131567, "superkingdom"),
             (1224, 2, "phylum"), (561, 1224, "genus"), (562, 561, "species"),
             (83333, 562, "strain"), (9, 83333, "no rank")]
    names = {t: f"n{t}" for t, _, _ in nodes}
    tax = load_taxonomy(write_taxonomy(tmp_path / "t", nodes, names), [562, 83333, 9])
    rows = report_rows({562: 2, 83333: 1, 9: 1}, 0, {}, tax)
    assert [(r.rank, r.tax_id, r.depth, r.clade, r.direct) for r in rows] == [
        ("R", 1, 0, 4, 0), ("R1", 131567, 1, 4, 0), ("D", 2, 2, 4, 0), ("P", 1224, 3, 4, 0),
        ("G", 561, 4, 4, 0), ("S", 562, 5, 4, 2), ("S1", 83333, 6, 2, 1), ("S2", 9, 7, 1, 1)]


def test_taxonomy_errors(tmp_path):
    d = write_taxonomy(tmp_path / "tax")
    with pytest.raises(InputError, match=r"2 tax id\(s\) of the label map are not in the "
                                         r"taxonomy: 5, 7"):
        load_taxonomy(d, [101, 5, 7])
    (d / "nodes.dmp").write_text("1\t|\tone\t|\tno rank\t|\n")
    with pytest.raises(InputError, match="nodes.dmp: line 1"):
        load_taxonomy(d, [1])


def test_read_report_roundtrip(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text(K2_REPORT)
    rows = read_report(p)
    assert [(r.tax_id, r.depth, r.clade, r.direct) for r in rows][:3] == \
        [(0, 0, 4, 4), (1, 0, 21, 0), (2, 1, 21, 1)]
    assert "".join(r.line() for r in rows) == K2_REPORT


# -- fixtures made by the real tool (tests/fixtures/kraken2, see its README) -----------------


def _fasta_records(path: Path) -> list[tuple[str, int]]:
    out = []
    for block in path.read_text().split(">")[1:]:
        head, *seq = block.splitlines()
        out.append((head.split()[0], len("".join(seq))))
    return out


def _taxonomy_from_report(rows, d: Path) -> Path:
    """nodes.dmp/names.dmp for the tree a report shows (depth 1 = genus, 2 = species)."""
    nodes, names, stack = [], {}, []
    for r in rows:
        if r.tax_id == 0:
            continue
        stack = stack[: r.depth]
        parent = stack[-1] if stack else 1
        nodes.append((r.tax_id, parent, ("no rank", "genus", "species")[min(r.depth, 2)]))
        names[r.tax_id] = r.name
        stack.append(r.tax_id)
    return write_taxonomy(d, nodes, names)


def test_fixture_per_read_layout():
    lines = (FIXTURES / "example.kraken").read_text().splitlines()
    recs = _fasta_records(FIXTURES / "example.fa")
    tax = np.array([int(ln.split("\t")[2]) for ln in lines])
    ours = format_kraken_lines([r[0] for r in recs], tax, np.array([r[1] for r in recs]))
    for a, b in zip(ours.splitlines(), lines, strict=True):
        fa, fb = a.split("\t"), b.split("\t")
        assert len(fa) == len(fb) == 5 and fa[:4] == fb[:4]
        total = sum(int(x.split(":")[1]) for x in fb[4].split())  # k-mers per read
        assert fa[4].split(":") == [fb[2] if fb[0] == "C" else "0", str(total)]
        if fb[0] == "U":
            assert a == b
    # Pairs: one line per pair, id without /1, "150|150" (the tool's last line is its own bug).
    plines = (FIXTURES / "example_paired.kraken").read_text().splitlines()
    m1, m2 = _fasta_records(FIXTURES / "example_1.fa"), _fasta_records(FIXTURES / "example_2.fa")
    ptax = np.array([int(ln.split("\t")[2]) for ln in plines])
    ids = [a[0][:-2] for a in m1]
    ours = format_kraken_lines(ids, ptax, np.array([a[1] for a in m1]),
                               np.array([b[1] for b in m2])).splitlines()
    for a, b in zip(ours[:-1], plines[:-1], strict=True):
        assert a.split("\t")[:4] == b.split("\t")[:4] and " |:| " in a.split("\t")[4]


@pytest.mark.parametrize("name", ["example", "example_paired"])
def test_fixture_report_rebuilt_from_per_read_output(tmp_path, name):
    theirs = (FIXTURES / f"{name}.report").read_text()
    rows = read_report(FIXTURES / f"{name}.report")
    assert "".join(r.line() for r in rows) == theirs
    direct: dict[int, int] = {}
    unclassified = 0
    for block in KrakenReader(FIXTURES / f"{name}.kraken"):
        for t in block.tax_ids.tolist():
            if t:
                direct[t] = direct.get(t, 0) + 1
            else:
                unclassified += 1
    species = [r.tax_id for r in rows if r.depth == 2]
    tax = load_taxonomy(_taxonomy_from_report(rows, tmp_path / "tax"), species)
    _same_layout(format_report(direct, unclassified, {}, tax), theirs)
    # Without a taxonomy: the same species lines, directly under the root.
    flat = report_rows(direct, unclassified, {r.tax_id: r.name for r in rows})
    want = sorted(((r.clade, r.direct, r.tax_id, r.percent) for r in rows if r.depth == 2),
                  key=lambda x: (-x[0], x[2]))
    assert [(r.clade, r.direct, r.tax_id, r.percent) for r in flat if r.rank == "S"] == want
    assert all(r.depth == 1 for r in flat if r.rank == "S")


def test_fixture_paired_ids_are_mate_free():
    block = KrakenReader(FIXTURES / "example_paired.kraken").read(100)
    m1 = _fasta_records(FIXTURES / "example_1.fa")
    assert block.ids == [a[0][:-2] for a in m1]


# -- the report as KrakenTools reads it ------------------------------------------------------
# kreport2mpa and combine_kreports (KrakenTools) parse a report line by line: strip the line,
# split on tabs, skip lines whose second field is not an integer, take the rank code from the
# fourth field (third from the end), the tax id from the fifth, the depth from the name's
# leading spaces / 2, and rebuild the tree by walking up from the previous line until the depth
# is one more than the parent's (a jump of two levels loops or crashes there). Total reads are
# the sum of the direct counts. This re-implements those rules so that format drift is caught.

RANK_CODE = r"^[URDKPCOFGS][0-9]*$"


def _krakentools_rows(text: str) -> list[tuple[str, int, int, str, int, str, int]]:
    import re

    rows = []
    for line in text.splitlines():
        raw = line.rstrip("\n").split("\t")
        assert len(raw) == 6, f"expected 6 tab-separated columns: {line!r}"
        assert re.fullmatch(r"[ 0-9]{2}[0-9]\.[0-9]{2}", raw[0]), raw[0]  # C's %6.2f
        f = line.strip().split("\t")
        rank, name_field = f[-3], f[-1]
        assert re.fullmatch(RANK_CODE, rank), f"rank code {rank!r}"
        name = name_field.lstrip(" ")
        spaces = len(name_field) - len(name)
        assert spaces % 2 == 0 and name and name == name.rstrip(), repr(name_field)
        rows.append((raw[0], int(f[1]), int(f[2]), rank, int(f[-2]), name, spaces // 2))
    return rows


def _krakentools_check(text: str) -> list[str]:
    """Checks a report the way KrakenTools consumes it; returns kreport2mpa-style lines."""
    rows = _krakentools_rows(text)
    total = sum(r[2] for r in rows)
    body = [r for r in rows if r[3] != "U"]
    assert all(r[4] == 0 and r[6] == 0 for r in rows if r[3] == "U")
    assert body[0][4] == 1 and body[0][3] == "R" and body[0][6] == 0
    children: dict[int, list[int]] = {}
    path: list[int] = []  # row indices from the root to the previous line
    mpa = []
    for i, (pct, clade, _direct, rank, _tax, name, depth) in enumerate(body):
        assert pct == "%6.2f" % (100.0 * clade / total)  # noqa: UP031
        if i:
            assert 1 <= depth <= len(path), f"depth {depth} after {len(path) - 1}: {name}"
            del path[depth:]
            children.setdefault(path[-1], []).append(i)
        path.append(i)
        if rank[0] in "DKPCOFGS" and len(rank) == 1:
            levels = [body[j] for j in path[1:] if len(body[j][3]) == 1]
            mpa.append("|".join(("k" if r[3] == "D" else r[3].lower()) + "__" +
                                r[5].replace(" ", "_") for r in levels) + f"\t{clade}")
    for i, r in enumerate(body):  # clade = direct + the children's clades
        assert r[1] == r[2] + sum(body[j][1] for j in children.get(i, ()))
    return mpa


def test_report_parses_the_krakentools_way(tmp_path):
    direct, unclassified = _direct_from_output(K2_OUT)
    tax = load_taxonomy(write_taxonomy(tmp_path / "tax"), [101, 102, 201])
    assert _krakentools_check(format_report(direct, unclassified, {}, tax)) == [
        "k__Bacteria\t21", "k__Bacteria|g__Genus_A\t15", "k__Bacteria|g__Genus_A|s__Genus_A_alpha\t10",
        "k__Bacteria|g__Genus_A|s__Genus_A_beta\t5", "k__Bacteria|g__Genus_B\t5",
        "k__Bacteria|g__Genus_B|s__Genus_B_gamma\t5"]
    # Intermediate ranks (R1, S1, S2) and a flat species-only report.
    nodes = [(1, 1, "no rank"), (131567, 1, "no rank"), (2, 131567, "superkingdom"),
             (561, 2, "genus"), (562, 561, "species"), (83333, 562, "strain")]
    tax = load_taxonomy(write_taxonomy(tmp_path / "t", nodes, {t: f"n {t}" for t, _, _ in nodes}),
                        [562, 83333])
    assert _krakentools_check(format_report({562: 2, 83333: 1}, 3, {562: "E coli"}, tax)) == [
        "k__n_2\t3", "k__n_2|g__n_561\t3", "k__n_2|g__n_561|s__E_coli\t3"]
    flat = format_report({1001: 7, 1003: 3, 1004: 3}, 2, {1001: "A b", 1003: "C d", 1004: "E"})
    assert _krakentools_check(flat) == ["s__A_b\t7", "s__C_d\t3", "s__E\t3"]
