"""Small generated training data for the training/evaluation tests.

``make_task`` writes an easy classification task: ``n_classes`` random "genomes" and reads
sampled from them (random strand), as a labelled FASTA (``lbl|class_id|tax_id|0|name``) plus
the mapping TSV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_COMP = str.maketrans("ACGT", "TGCA")


def make_genomes(n_classes: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(np.array(list("ACGT"))[rng.integers(0, 4, length)]) for _ in range(n_classes)]


def write_reads(path: Path, genomes: list[str], reads_per_class: int, read_len: int, seed: int,
                class_ids: list[int] | None = None, start_index: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    class_ids = class_ids or [10 + i for i in range(len(genomes))]
    recs = []
    for c, g in enumerate(genomes):
        starts = rng.integers(0, len(g) - read_len, reads_per_class)
        flips = rng.random(reads_per_class) < 0.5
        for j, (s, f) in enumerate(zip(starts, flips)):
            r = g[s:s + read_len]
            if f:
                r = r.translate(_COMP)[::-1]
            recs.append((c, j, r))
    order = rng.permutation(len(recs))  # mixed classes, as after a shuffle
    with open(path, "w") as fh:
        for i in order:
            c, j, r = recs[i]
            cid = class_ids[c]
            fh.write(f">lbl|{cid}|{1000 + cid}|0|sp{cid}_r{start_index + j}/1\n{r}\n")
    return path


def write_mapping(path: Path, class_ids: list[int]) -> Path:
    with open(path, "w") as fh:
        fh.write("class_id\tlabel_name\ttax_id\n")
        for cid in class_ids:
            fh.write(f"{cid}\tsp{cid}\t{1000 + cid}\n")
    return path


def make_task(d: Path, n_classes: int = 4, train_per_class: int = 400, val_per_class: int = 60,
              read_len: int = 100, genome_len: int = 3000, seed: int = 0) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    genomes = make_genomes(n_classes, genome_len, seed)
    ids = [10 + i for i in range(n_classes)]
    return {
        "train": write_reads(d / "train.fa", genomes, train_per_class, read_len, seed + 1, ids),
        "val": write_reads(d / "val.fa", genomes, val_per_class, read_len, seed + 2, ids,
                           start_index=10**6),
        "mapping": write_mapping(d / "mapping.tsv", ids),
    }
