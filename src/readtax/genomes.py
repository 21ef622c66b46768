"""Synthetic genomes for the demo and the tests, made by a documented evolutionary model.

No installable package ships a set of real, openly licensed genomes of related species small
enough to bundle (Biopython's test files hold one chloroplast and one plasmid), so the demo
genomes are generated here and shipped as FASTA in ``readtax/data/genomes/``. The model, in
order (every random draw comes from one seeded ``numpy`` generator, so a seed gives the same
genomes; the shipped files were made with :data:`DEMO_SEED`):

1. **Ancestor.** A bacterial-like chromosome: genes (gamma-distributed lengths, mean ~950 bp, on
   either strand, 88% coding density) written in a codon-usage table drawn from a Dirichlet
   distribution, so the sequence has codon bias and 3-periodicity rather than flat k-mer
   statistics; AT-rich intergenic spacers; and a few copies of an insertion-sequence-like repeat.
2. **Tree.** Species evolve down a tree given in Newick (:data:`DEMO_TREE`) whose branch lengths
   are expected substitutions per site, so the pairwise divergence of two species is the sum of
   the branch lengths between them (1.5-3% for the closest pairs, ~40% between genera).
3. **Branch mutations**, applied in steps of at most 0.01 substitutions per site (so sites can be
   hit repeatedly): Kimura two-parameter substitutions (transition/transversion ratio
   ``kappa``) with directional GC pressure towards the genus' GC target (changes towards the
   favoured class are accepted more often, so genera drift apart in composition); short indels
   (geometric lengths); inversions of 0.5-8 kb; gain of new genes written in the genus' codon
   usage and loss of 0.8-3 kb segments.
4. **Assembly.** Each species' chromosome is cut into 1-6 contigs at random points (at least
   2 kb each), as a draft assembly would be.

Run ``python -m readtax.genomes -o DIR`` to regenerate the demo set.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .fastx import ragged_index

DEMO_SEED = 20240607
# Branch lengths in expected substitutions per site. Closest pairs: Simulibacter alpha/beta 2%,
# Artefactomonas alpha/beta 1.5%, Syntheticoccus alpha/beta 3%; genera ~40% apart.
DEMO_TREE = (
    "((((Simulibacter_alpha:0.01,Simulibacter_beta:0.01):0.03,Simulibacter_gamma:0.04):0.04,"
    "Simulibacter_delta:0.08):0.12,"
    "((Artefactomonas_alpha:0.0075,Artefactomonas_beta:0.0075):0.05,"
    "Artefactomonas_gamma:0.0575):0.14,"
    "((Syntheticoccus_alpha:0.015,Syntheticoccus_beta:0.015):0.045,"
    "Syntheticoccus_gamma:0.06):0.14);"
)
DEMO_GC = {"Simulibacter": 0.70, "Artefactomonas": 0.30, "Syntheticoccus": 0.55}
SPECIES_TAXID_BASE = 10_000_000  # species tax ids: BASE + class_id + 1 (clear of NCBI's range)
GENUS_TAXID_BASE = 10_001_000

BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_CODE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _CODE[_c] = _i
_STOPS = ("TAA", "TAG", "TGA")
_CODONS = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
_SENSE = np.array([c for c in _CODONS if c not in _STOPS and c != "ATG"])
_SENSE_BYTES = np.frombuffer("".join(_SENSE).encode(), dtype=np.uint8).reshape(-1, 3)
_STOP_BYTES = np.frombuffer("".join(_STOPS).encode(), dtype=np.uint8).reshape(-1, 3)
_COMP_CODE = np.array([3, 2, 1, 0], dtype=np.uint8)  # complement of A C G T codes


@dataclass
class EvolutionModel:
    """Parameters of the model described in the module docstring."""

    ancestor_length: int = 80_000
    ancestor_gc: float = 0.50
    coding_density: float = 0.88
    mean_gene_length: int = 950
    codon_concentration: float = 0.6  # Dirichlet alpha: lower = stronger codon bias
    repeat_length: int = 1_200
    repeat_copies: int = 4
    kappa: float = 4.0  # transition/transversion rate ratio
    indel_ratio: float = 0.08  # indel events per substitution
    max_indel: int = 20
    inversions_per_unit: float = 40.0  # events per substitution-per-site of branch length
    gains_per_unit: float = 40.0
    losses_per_unit: float = 40.0
    step: float = 0.01
    max_contigs: int = 6
    min_contig: int = 2_000


@dataclass
class Node:
    name: str = ""
    length: float = 0.0
    children: list[Node] = field(default_factory=list)

    def leaves(self) -> list[Node]:
        if not self.children:
            return [self]
        return [leaf for c in self.children for leaf in c.leaves()]


def parse_newick(text: str) -> Node:
    """Parse a Newick tree with leaf names and branch lengths (no quoting, no comments)."""
    tokens = re.findall(r"[(),;:]|[^(),;:\s]+", text) + [""]  # "" marks the end
    pos = 0

    def node() -> Node:
        nonlocal pos
        n = Node()
        if tokens[pos] == "(":
            pos += 1
            n.children.append(node())
            while tokens[pos] == ",":
                pos += 1
                n.children.append(node())
            if tokens[pos] != ")":
                raise ValueError(f"Newick: expected ')' at token {pos}, found {tokens[pos]!r}")
            pos += 1
        if tokens[pos] and tokens[pos] not in "(),;:":
            n.name = tokens[pos]
            pos += 1
        if pos < len(tokens) and tokens[pos] == ":":
            n.length = float(tokens[pos + 1])
            pos += 2
        return n

    root = node()
    if tokens[pos] != ";":
        raise ValueError("Newick: tree must end with ';'")
    return root


def genus_of(name: str) -> str:
    """The genus of a ``Genus_species`` or ``Genus species`` label name ('' if none)."""
    parts = re.split(r"[_ ]", name, maxsplit=1)
    return parts[0] if len(parts) == 2 and parts[0] else ""


# -- sequence building blocks (2-bit codes 0..3) ----------------------------------------------


def _codon_usage(rng: np.random.Generator, gc: float, concentration: float) -> np.ndarray:
    """Probabilities over the sense codons: Dirichlet noise around a GC-matched background."""
    gc_count = np.array([sum(ch in "GC" for ch in c) for c in _SENSE])
    base = (gc / 2) ** gc_count * ((1 - gc) / 2) ** (3 - gc_count)
    weights = rng.dirichlet(np.full(len(_SENSE), concentration)) * base
    return weights / weights.sum()


def _genes(rng: np.random.Generator, lengths: np.ndarray, usage: np.ndarray) -> list[np.ndarray]:
    """Coding sequences (ATG, sense codons, stop) of about ``lengths`` bp, on random strands."""
    n_codons = np.maximum(lengths // 3 - 2, 10)
    codons = rng.choice(len(_SENSE), size=int(n_codons.sum()), p=usage)
    body = _CODE[_SENSE_BYTES[codons].ravel()]
    stops = _CODE[_STOP_BYTES[rng.integers(0, 3, len(lengths))]]
    start = _CODE[np.frombuffer(b"ATG", np.uint8)]
    reverse = rng.random(len(lengths)) < 0.5
    out = []
    ends = np.cumsum(n_codons) * 3
    for i, (e, n) in enumerate(zip(ends, n_codons)):  # per gene (hundreds), not per base
        gene = np.concatenate([start, body[e - 3 * n : e], stops[i]])
        out.append(_COMP_CODE[gene[::-1]] if reverse[i] else gene)
    return out


def _random_bases(rng: np.random.Generator, n: int, gc: float) -> np.ndarray:
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    return rng.choice(4, size=n, p=p).astype(np.uint8)


def make_ancestor(rng: np.random.Generator, model: EvolutionModel) -> tuple[np.ndarray, np.ndarray]:
    """The ancestral chromosome (2-bit codes) and its codon usage table."""
    usage = _codon_usage(rng, model.ancestor_gc, model.codon_concentration)
    coding = int(model.ancestor_length * model.coding_density)
    n_genes = max(1, coding // model.mean_gene_length)
    lengths = np.maximum(rng.gamma(4.0, model.mean_gene_length / 4.0, n_genes).astype(np.int64), 150)
    genes = _genes(rng, lengths, usage)
    spacer_total = max(model.ancestor_length - sum(len(g) for g in genes), n_genes)
    spacers = rng.multinomial(spacer_total - n_genes, np.full(n_genes, 1.0 / n_genes)) + 1
    spacer_seq = _random_bases(rng, int(spacers.sum()), model.ancestor_gc - 0.08)
    repeat = _random_bases(rng, model.repeat_length, model.ancestor_gc)
    repeat_at = set(rng.choice(n_genes, size=min(model.repeat_copies, n_genes), replace=False).tolist())
    parts = []
    s0 = 0
    for i, gene in enumerate(genes):
        parts.append(gene)
        parts.append(spacer_seq[s0 : s0 + spacers[i]])
        s0 += spacers[i]
        if i in repeat_at:
            parts.append(repeat if rng.random() < 0.5 else _COMP_CODE[repeat[::-1]])
    return np.concatenate(parts).astype(np.uint8), usage


# -- mutation --------------------------------------------------------------------------------


def _substitute(rng: np.random.Generator, seq: np.ndarray, rate: float, gc_target: float,
                kappa: float) -> np.ndarray:
    """Kimura 2-parameter substitutions at ``rate`` per site, with GC pressure (vectorised)."""
    seq = seq.copy()
    strong = (seq == 1) | (seq == 2)
    gc_now = float(strong.mean()) if len(seq) else 0.5
    p_ts = kappa / (kappa + 2.0)
    top = max(gc_target, 1 - gc_target)
    acc_ws, acc_sw = gc_target / top, (1 - gc_target) / top
    # A transition always changes weak<->strong; a transversion does half the time.
    p_change = p_ts + (1 - p_ts) / 2
    mean_acc = (1 - p_change) + p_change * ((1 - gc_now) * acc_ws + gc_now * acc_sw)
    n = rng.poisson(rate * len(seq) / mean_acc)
    pos = rng.integers(0, len(seq), n)
    old = seq[pos]
    transition = rng.random(n) < p_ts
    # Codes: A0 C1 G2 T3. Transition partner: A<->G, C<->T is code ^ 2. Transversions: ^1 or ^3.
    other = np.where(rng.random(n) < 0.5, 1, 3).astype(np.uint8)
    new = np.where(transition, old ^ 2, old ^ other)
    old_strong = (old == 1) | (old == 2)
    new_strong = (new == 1) | (new == 2)
    accept = np.ones(n, dtype=bool)
    u = rng.random(n)
    ws = ~old_strong & new_strong
    sw = old_strong & ~new_strong
    accept[ws] = u[ws] < acc_ws
    accept[sw] = u[sw] < acc_sw
    seq[pos[accept]] = new[accept]
    return seq


def _indels(rng: np.random.Generator, seq: np.ndarray, events: float, gc: float,
            max_len: int) -> np.ndarray:
    """Short insertions and deletions: ``events`` expected in total, half of each."""
    n = rng.poisson(events)
    if n == 0 or len(seq) == 0:
        return seq
    lengths = np.minimum(rng.geometric(0.4, n), max_len)
    pos = rng.integers(0, len(seq), n)
    is_del = rng.random(n) < 0.5
    keep = np.ones(len(seq), dtype=bool)
    d_len = np.minimum(lengths[is_del], len(seq) - pos[is_del])
    idx, _ = ragged_index(pos[is_del], d_len)
    keep[idx] = False
    ins_pos = pos[~is_del]
    ins_len = lengths[~is_del]
    ins_bases = _random_bases(rng, int(ins_len.sum()), gc)
    # Insert before the original positions, then drop deleted originals (mask grows with inserts).
    order = np.argsort(ins_pos, kind="stable")
    at = np.repeat(ins_pos[order], ins_len[order])
    lens_sorted = ins_len[order]
    starts = np.concatenate([[0], np.cumsum(lens_sorted)[:-1]])
    gather, _ = ragged_index(starts, lens_sorted)
    out = np.insert(seq, at, ins_bases[gather])
    keep_out = np.insert(keep, at, True)
    return out[keep_out]


def _rearrange(rng: np.random.Generator, seq: np.ndarray, branch: float, model: EvolutionModel,
               usage: np.ndarray) -> np.ndarray:
    """Inversions, gene gains and segment losses along a branch (a handful of events)."""
    events = [("inv", k) for k in range(rng.poisson(branch * model.inversions_per_unit))]
    events += [("gain", k) for k in range(rng.poisson(branch * model.gains_per_unit))]
    events += [("loss", k) for k in range(rng.poisson(branch * model.losses_per_unit))]
    order = rng.permutation(len(events))
    for i in order:  # per event (a few per branch)
        kind = events[i][0]
        if kind == "inv":
            length = int(rng.integers(500, 8_000))
            if length >= len(seq):
                continue
            a = int(rng.integers(0, len(seq) - length))
            seq = np.concatenate([seq[:a], _COMP_CODE[seq[a : a + length][::-1]], seq[a + length :]])
        elif kind == "gain":
            gene = _genes(rng, np.array([int(rng.integers(800, 3_000))]), usage)[0]
            a = int(rng.integers(0, len(seq) + 1))
            seq = np.concatenate([seq[:a], gene, seq[a:]])
        else:
            length = int(rng.integers(800, 3_000))
            if length * 4 >= len(seq):
                continue
            a = int(rng.integers(0, len(seq) - length))
            seq = np.concatenate([seq[:a], seq[a + length :]])
    return seq


def evolve_branch(rng: np.random.Generator, seq: np.ndarray, branch: float, gc_target: float,
                  usage: np.ndarray, model: EvolutionModel) -> np.ndarray:
    """Mutate ``seq`` along a branch of ``branch`` substitutions per site."""
    steps = max(1, int(np.ceil(branch / model.step)))
    for _ in range(steps):
        rate = branch / steps
        seq = _substitute(rng, seq, rate, gc_target, model.kappa)
        seq = _indels(rng, seq, rate * model.indel_ratio * len(seq), gc_target, model.max_indel)
    return _rearrange(rng, seq, branch, model, usage)


def _assemble(rng: np.random.Generator, seq: np.ndarray, model: EvolutionModel) -> list[np.ndarray]:
    """Cut a chromosome into 1..max_contigs contigs of at least ``min_contig`` bp."""
    n = int(rng.integers(1, model.max_contigs + 1))
    n = max(1, min(n, len(seq) // model.min_contig))
    if n == 1:
        return [seq]
    free = len(seq) - n * model.min_contig
    cuts = np.sort(rng.integers(0, free + 1, n - 1)) + np.arange(1, n) * model.min_contig
    return np.split(seq, cuts)


@dataclass
class GeneratedGenome:
    name: str
    class_id: int
    tax_id: int
    genus: str
    contigs: list[np.ndarray]  # ASCII bytes

    @property
    def length(self) -> int:
        return sum(len(c) for c in self.contigs)

    @property
    def gc(self) -> float:
        seq = np.concatenate(self.contigs)
        return float(np.isin(seq, np.frombuffer(b"GC", np.uint8)).mean())


def generate(tree: str = DEMO_TREE, *, seed: int = DEMO_SEED, gc: dict[str, float] | None = None,
             model: EvolutionModel | None = None) -> list[GeneratedGenome]:
    """Evolve the leaves of ``tree`` from one random ancestor; class ids follow leaf order."""
    model = model or EvolutionModel()
    gc = DEMO_GC if gc is None else gc
    rng = np.random.Generator(np.random.PCG64(seed))
    root = parse_newick(tree)
    ancestor, anc_usage = make_ancestor(rng, model)
    genera = sorted({genus_of(leaf.name) for leaf in root.leaves()})
    # One codon-usage table per genus, for genes gained on its branches.
    usage = {g: _codon_usage(rng, gc.get(g, model.ancestor_gc), model.codon_concentration)
             for g in genera}
    leaves: dict[str, np.ndarray] = {}

    def walk(node: Node, seq: np.ndarray) -> None:
        names = {genus_of(leaf.name) for leaf in node.leaves()}
        genus = names.pop() if len(names) == 1 else ""
        target = gc.get(genus, model.ancestor_gc)
        seq = evolve_branch(rng, seq, node.length, target, usage.get(genus, anc_usage), model)
        if not node.children:
            leaves[node.name] = seq
        for child in node.children:
            walk(child, seq)

    walk(root, ancestor)
    out = []
    for class_id, leaf in enumerate(root.leaves()):
        contigs = [BASES[c] for c in _assemble(rng, leaves[leaf.name], model)]
        out.append(GeneratedGenome(leaf.name, class_id, SPECIES_TAXID_BASE + class_id + 1,
                                   genus_of(leaf.name), contigs))
    return out


# -- files -------------------------------------------------------------------------------------


def taxonomy_rows(genomes: list[GeneratedGenome]) -> list[tuple[int, int, str, str]]:
    """(tax_id, parent_tax_id, rank, name): root, one node per genus, one per species."""
    rows = [(1, 1, "no rank", "root")]
    genus_ids: dict[str, int] = {}
    for g in genomes:
        if g.genus and g.genus not in genus_ids:
            genus_ids[g.genus] = GENUS_TAXID_BASE + len(genus_ids) + 1
            rows.append((genus_ids[g.genus], 1, "genus", g.genus))
    for g in genomes:
        rows.append((g.tax_id, genus_ids.get(g.genus, 1), "species", g.name.replace("_", " ")))
    return rows


def write_genomes(genomes: list[GeneratedGenome], out_dir: str | Path, *, width: int = 80,
                  note: str = "") -> list[Path]:
    """Write ``<name>.fa`` per genome plus ``mapping.tsv`` and ``taxonomy.tsv``."""
    from .outputs import atomic_open

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for g in genomes:
        path = out / f"{g.name}.fa"
        with atomic_open(path, "wb") as fh:
            for k, contig in enumerate(g.contigs, start=1):
                fh.write(f">{g.name}_contig{k} synthetic{note}\n".encode())
                for a in range(0, len(contig), width):
                    fh.write(contig[a : a + width].tobytes() + b"\n")
        paths.append(path)
    with atomic_open(out / "mapping.tsv") as fh:
        fh.write("class_id\tlabel_name\ttax_id\n")
        for g in genomes:
            fh.write(f"{g.class_id}\t{g.name}\t{g.tax_id}\n")
    with atomic_open(out / "taxonomy.tsv") as fh:
        fh.write("tax_id\tparent_tax_id\trank\tname\n")
        for row in taxonomy_rows(genomes):
            fh.write("\t".join(map(str, row)) + "\n")
    return paths


class GenomeSet(NamedTuple):
    """Genome FASTA paths (one species each) and the mapping TSV; ``.taxonomy`` is the
    ``taxonomy.tsv`` beside the mapping (tax_id, parent_tax_id, rank, name)."""

    genomes: list[Path]
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
    """The bundled demo genomes: ``genomes, mapping = demo_genomes()``."""
    root, names = _bundled("genomes")
    return GenomeSet([root / f"{n}.fa" for n in names], root / "mapping.tsv")


class RealFragments(NamedTuple):
    """Homologous fragments of two real strains per species (``data/real_genomes/``): one to
    train on, one held out; ``.taxonomy`` is the NCBI lineage beside the mapping."""

    train: list[Path]
    heldout: list[Path]
    mapping: Path

    @property
    def taxonomy(self) -> Path:
        return self.mapping.parent / "taxonomy.tsv"


def real_fragments() -> RealFragments:
    """The bundled real-genome fragments (5 species; see their README for the sources)."""
    root, names = _bundled("real_genomes")
    return RealFragments([root / "train" / f"{n}.fa.gz" for n in names],
                         [root / "heldout" / f"{n}.fa.gz" for n in names], root / "mapping.tsv")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m readtax.genomes",
                                description="Generate the synthetic demo genomes.")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=DEMO_SEED)
    p.add_argument("--tree", default=DEMO_TREE, help="Newick tree (substitutions per site)")
    args = p.parse_args(argv)
    genomes = generate(args.tree, seed=args.seed)
    write_genomes(genomes, args.out, note=f" (readtax.genomes, seed {args.seed})")
    for g in genomes:
        print(f"{g.class_id}\t{g.name}\t{g.tax_id}\t{g.length}\t{len(g.contigs)}\t{g.gc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
