"""readtax.bundled: the data sets shipped inside the package are there and consistent."""

from __future__ import annotations

from readtax.bundled import demo_genomes, real_fragments
from readtax.fastx import read_all
from readtax.labels import load_mapping
from readtax.simulate import Genome, load_genomes


def test_demo_genomes_bundled():
    genomes, mapping = demo_genomes()
    taxonomy = demo_genomes().taxonomy
    label_map = load_mapping(mapping)
    assert len(genomes) == len(label_map) == 10
    assert [g.stem for g in genomes] == label_map.names
    total = sum(g.stat().st_size for g in genomes)
    assert 500_000 < total < 1_500_000
    loaded = load_genomes(genomes, label_map)
    assert all(isinstance(g, Genome) and len(g.seq) > 50_000 for g in loaded)
    assert sum(g.n_contigs > 1 for g in loaded) >= 3  # draft assemblies with several contigs
    rows = [line.split("\t") for line in taxonomy.read_text().splitlines()[1:]]
    parents = {int(r[0]): int(r[1]) for r in rows}
    ranks = {int(r[0]): r[2] for r in rows}
    for tax in label_map.tax_ids:
        assert ranks[int(tax)] == "species" and ranks[parents[int(tax)]] == "genus"
        assert parents[parents[int(tax)]] == 1


def test_real_fragments_are_bundled():
    frags = real_fragments()
    lm = load_mapping(frags.mapping)
    assert lm.names == ["Escherichia_coli", "Helicobacter_pylori", "Staphylococcus_aureus",
                        "Vibrio_cholerae", "Klebsiella_pneumoniae"]
    assert lm.tax_ids.tolist() == [562, 210, 1280, 666, 573]
    paths = frags.train + frags.heldout
    assert sum(p.stat().st_size for p in paths) <= 1_500_000
    for p in paths:
        batch = read_all(p)
        assert len(batch) == 1 and batch.seq_offsets[-1] == 300_000, p
    rows = frags.taxonomy.read_text().splitlines()
    assert "562\t561\tspecies\tEscherichia coli" in rows
