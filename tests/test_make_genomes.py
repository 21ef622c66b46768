"""tools/make_genomes.py: the synthetic-genome generator behind ``readtax/data/genomes/``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from readtax.bases import reverse_complement
from readtax.labels import load_mapping

TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_genomes.py"


def _load_tool():
    """The tool as a module: tools are development scripts, not part of the installed package."""
    spec = importlib.util.spec_from_file_location("make_genomes", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


mg = _load_tool()


def _kmers(seq: np.ndarray, k: int = 21) -> set:
    """k-mers of both strands (inversions turn segments around)."""
    from numpy.lib.stride_tricks import sliding_window_view

    return {bytes(w) for s in (seq, reverse_complement(seq)) for w in sliding_window_view(s, k)}


def test_generate_is_deterministic_and_follows_the_tree(tmp_path):
    model = mg.EvolutionModel(ancestor_length=20_000, max_contigs=3)
    tree = "((A_a:0.01,A_b:0.01):0.1,B_c:0.11);"
    one = mg.generate(tree, seed=3, gc={"A": 0.6, "B": 0.4}, model=model)
    two = mg.generate(tree, seed=3, gc={"A": 0.6, "B": 0.4}, model=model)
    assert [g.name for g in one] == ["A_a", "A_b", "B_c"]
    assert all(np.array_equal(np.concatenate(a.contigs), np.concatenate(b.contigs))
               for a, b in zip(one, two))
    seqs = [np.concatenate(g.contigs) for g in one]
    assert all(set(np.unique(s).tobytes()) <= set(b"ACGT") for s in seqs)
    a = {bytes(w) for w in np.lib.stride_tricks.sliding_window_view(seqs[0], 21)[::5]}
    # 2% apart: most 21-mers shared (~0.98**21 = 65%); 22% apart: almost none.
    assert len(a & _kmers(seqs[1])) / len(a) > 0.5
    assert len(a & _kmers(seqs[2])) / len(a) < 0.1
    paths = mg.write_genomes(one, tmp_path)
    assert [p.name for p in paths] == ["A_a.fa", "A_b.fa", "B_c.fa"]
    assert load_mapping(tmp_path / "mapping.tsv").names == ["A_a", "A_b", "B_c"]


def test_newick():
    root = mg.parse_newick("((x:0.1,y:0.2):0.3,z:1);")
    assert [leaf.name for leaf in root.leaves()] == ["x", "y", "z"]
    assert root.children[0].length == 0.3 and root.children[0].children[1].length == 0.2
    with pytest.raises(ValueError):
        mg.parse_newick("(x:0.1,y:0.2")




def test_regenerates_the_bundled_genomes(tmp_path, capsys):
    """The shipped files are this tool's output (the same numpy gives the same draws): the
    sequences, the mapping and the taxonomy are reproduced byte for byte."""
    from readtax.bundled import demo_genomes

    assert mg.main(["-o", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    shipped = demo_genomes()
    for path in shipped.genomes:
        lines = [x for x in path.read_bytes().splitlines() if not x.startswith(b">")]
        again = [x for x in (tmp_path / path.name).read_bytes().splitlines()
                 if not x.startswith(b">")]
        assert lines == again, path.name
    for name in ("mapping.tsv", "taxonomy.tsv"):
        assert (tmp_path / name).read_bytes() == (shipped.mapping.parent / name).read_bytes()
