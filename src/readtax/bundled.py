"""The data sets shipped inside the package (``readtax/data/``), as paths.

Two sets: the synthetic demo genomes (``data/genomes/``, used by the tests and the Kraken2
comparison; ``tools/make_genomes.py`` generates them) and homologous fragments of two real
strains of 5 bacterial species (``data/real_genomes/``, used by ``readtax demo``). Each folder's
``mapping.tsv`` fixes the species order, and a ``taxonomy.tsv`` beside it gives the lineage.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple


class GenomeSet(NamedTuple):
    """Genome FASTA paths (one species each) and the mapping TSV; ``.taxonomy`` is the
    ``taxonomy.tsv`` beside the mapping (tax_id, parent_tax_id, rank, name)."""

    genomes: list[Path]
    mapping: Path

    @property
    def taxonomy(self) -> Path:
        return self.mapping.parent / "taxonomy.tsv"


class RealFragments(NamedTuple):
    """Homologous fragments of two real strains per species (``data/real_genomes/``): one to
    train on, one held out; ``.taxonomy`` is the NCBI lineage beside the mapping."""

    train: list[Path]
    heldout: list[Path]
    mapping: Path

    @property
    def taxonomy(self) -> Path:
        return self.mapping.parent / "taxonomy.tsv"


def _bundled(folder: str) -> tuple[Path, list[str]]:
    """A package data folder and the label names of its ``mapping.tsv``, in its order."""
    root = Path(str(resources.files("readtax").joinpath("data", folder)))
    rows = (root / "mapping.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return root, [line.split("\t")[1] for line in rows if line.strip()]


def demo_genomes() -> GenomeSet:
    """The bundled synthetic genomes: ``genomes, mapping = demo_genomes()``."""
    root, names = _bundled("genomes")
    return GenomeSet([root / f"{n}.fa" for n in names], root / "mapping.tsv")


def real_fragments() -> RealFragments:
    """The bundled real-genome fragments (5 species; see their README for the sources)."""
    root, names = _bundled("real_genomes")
    return RealFragments([root / "train" / f"{n}.fa.gz" for n in names],
                         [root / "heldout" / f"{n}.fa.gz" for n in names], root / "mapping.tsv")
