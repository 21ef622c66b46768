"""Label schemes and the mapping TSV."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_fasta, write_mapping
from readtax.errors import InputError, LabelError, UsageError
from readtax.fastx import read_all
from readtax.labels import Labeler, LabelMap, LblScheme, load_mapping, make_scheme


def _batch(tmp_path, heads):
    return read_all(write_fasta(tmp_path / "x.fa", heads, ["ACGT"] * len(heads)))


def test_lbl_scheme_parses_class_and_tax(tmp_path):
    b = _batch(tmp_path, ["lbl|85|301|45|Pseudomonas-61537/2", "lbl|0|7|286|x/1",
                          "lbl|123456|99999999|0|name with|pipes"])
    cid, tax = LblScheme().fields(b)
    assert cid.tolist() == [85, 0, 123456]
    assert tax.tolist() == [301, 7, 99999999]


@pytest.mark.parametrize("head", ["lbl|x1|3|4|n", "lbl|1|3", "abc|1|2|3|n", "lbl||2|3|n",
                                  "lbl|-1|2|3|n", "plain_read_id"])
def test_lbl_scheme_rejects(tmp_path, head):
    b = _batch(tmp_path, ["lbl|1|2|3|ok", head])
    with pytest.raises(LabelError) as exc:
        LblScheme().keys(b)
    msg = str(exc.value)
    assert "record 2" in msg and head in msg


def test_regex_scheme(tmp_path):
    b = _batch(tmp_path, ["read1 species=Ecoli", "read2 species=Bsub"])
    keys = make_scheme(r"regex:species=(?P<label>\w+)").keys(b)
    assert keys.tolist() == ["Ecoli", "Bsub"]
    b2 = _batch(tmp_path, ["r_c12", "r_c3"])
    assert make_scheme(r"regex:_c(?P<class_id>\d+)").keys(b2).tolist() == [12, 3]
    with pytest.raises(UsageError, match="named group"):
        make_scheme(r"regex:(\d+)")


def test_tsv_scheme(tmp_path):
    t = tmp_path / "l.tsv"
    t.write_text("r1\t4\nr2\t7\n")
    b = _batch(tmp_path, ["r1", "r2/1"])
    assert make_scheme(f"tsv:{t}").keys(b).tolist() == [4, 7]
    b = _batch(tmp_path, ["r1", "r9"])
    with pytest.raises(LabelError, match="r9"):
        make_scheme(f"tsv:{t}").keys(b)


def test_mapping_load_and_index(tmp_path):
    m = load_mapping(write_mapping(tmp_path / "m.tsv", 4))
    assert len(m) == 4
    assert m.index(np.array([3, 0, 9])).tolist() == [3, 0, -1]
    assert m.index(np.array(["Species_2", "nope"], dtype=object)).tolist() == [2, -1]
    m.write_tsv(tmp_path / "m2.tsv")
    assert load_mapping(tmp_path / "m2.tsv") == m


@pytest.mark.parametrize("text,what", [
    ("1\tA\t10\n1\tB\t11\n", "duplicate class_id 1"),
    ("1\tA\t10\n2\tA\t11\n", "duplicate label_name"),
    ("1\tA\n", "expected 3 tab-separated columns"),
    ("x\tA\t1\n", "not an integer"),
    ("1\tA\tzz\n", "tax_id 'zz' is not an integer"),
    ("", "no classes"),
])
def test_mapping_errors(tmp_path, text, what):
    p = tmp_path / "m.tsv"
    p.write_text(text)
    with pytest.raises(InputError, match=what):
        load_mapping(p)


def test_labeler_missing_class_and_skip(tmp_path):
    m = LabelMap.from_ids([1, 2])
    b = _batch(tmp_path, ["lbl|1|0|0|a", "lbl|5|0|0|b", "lbl|2|0|0|c", "lbl|5|0|0|d"])
    with pytest.raises(LabelError, match="not in the mapping"):
        Labeler(LblScheme(), m).classes(b)
    lab = Labeler(LblScheme(), m, skip_unknown=True)
    assert lab.classes(b).tolist() == [0, -1, 1, -1]
    assert lab.skipped == 2 and lab.skipped_keys == {5: 2}


def test_labeler_discovers_classes(tmp_path):
    b = _batch(tmp_path, ["lbl|9|90|0|a", "lbl|4|40|0|b", "lbl|9|90|0|c"])
    lab = Labeler(LblScheme())
    assert lab.classes(b).tolist() == [1, 0, 1]
    found = lab.discovered_map()
    assert sorted(found.class_ids.tolist()) == [4, 9]
    assert dict(zip(found.class_ids.tolist(), found.tax_ids.tolist())) == {4: 40, 9: 90}
