"""Synthetic labelled FASTA for benchmarks: many 150 bp reads over 3,507 skewed classes.

Reads are random bases (content does not matter for I/O benchmarks); class sizes follow a
Zipf-like skew as in real metagenomic training sets. Generated with whole-array numpy
operations and reused when the file already exists with the same parameters.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

BLOCK = 200_000


def class_sizes(n_reads: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """Skewed class sizes summing to n_reads (every class gets at least one read if possible)."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_classes + 1) ** 0.8
    rng.shuffle(w)
    base = min(1, n_reads // n_classes)
    rest = n_reads - base * n_classes
    sizes = base + rng.multinomial(rest, w / w.sum())
    return sizes.astype(np.int64)


def make_mapping(path: str | os.PathLike[str], n_classes: int = 3507) -> Path:
    path = Path(path)
    with open(path, "w") as fh:
        fh.write("class_id\tlabel_name\ttax_id\n")
        for c in range(n_classes):
            fh.write(f"{c}\tSpecies_{c}\t{100000 + c}\n")
    return path


def make_fasta(path: str | os.PathLike[str], n_reads: int, n_classes: int = 3507,
               length: int = 150, seed: int = 0, sorted_by_class: bool = False) -> Path:
    """Write (or reuse) ``path``: ``n_reads`` reads in the lbl header scheme."""
    path = Path(path)
    stamp = path.with_suffix(path.suffix + ".params")
    params = f"{n_reads} {n_classes} {length} {seed} {sorted_by_class}"
    if path.exists() and stamp.exists() and stamp.read_text() == params:
        return path
    rng = np.random.default_rng(seed)
    sizes = class_sizes(n_reads, n_classes, seed)
    labels = np.repeat(np.arange(n_classes), sizes)
    if not sorted_by_class:
        rng.shuffle(labels)
    alphabet = np.frombuffer(b"ACGT", dtype=np.uint8)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        for start in range(0, n_reads, BLOCK):
            lab = labels[start : start + BLOCK]
            m = len(lab)
            seqs = alphabet[rng.integers(0, 4, size=(m, length), dtype=np.uint8)]
            # Header and sequence rows are built as one fixed-width byte matrix per block.
            ids = np.arange(start, start + m)
            heads = np.char.add(
                np.char.add(np.char.add(">lbl|", lab.astype("U")), "|"),
                np.char.add(np.char.add((lab + 100000).astype("U"), "|45|Species_"),
                            np.char.add(np.char.add(lab.astype("U"), "-"), ids.astype("U"))),
            )
            mate = np.where(ids % 2 == 0, "/1\n", "/2\n")
            heads = np.char.add(heads, mate).astype("S")
            hb = heads.tobytes()
            width = heads.dtype.itemsize
            hmat = np.frombuffer(hb, dtype=np.uint8).reshape(m, width)
            hlen = np.char.str_len(heads)
            body = np.concatenate([seqs, np.full((m, 1), 10, np.uint8)], axis=1)
            # Concatenate each header (without padding) followed by its sequence line.
            keep = np.arange(width)[None, :] < hlen[:, None]
            rows = np.concatenate([np.where(keep, hmat, 0), body], axis=1)
            mask = np.concatenate([keep, np.ones_like(body, dtype=bool)], axis=1)
            fh.write(rows[mask].tobytes())
    os.replace(tmp, path)
    stamp.write_text(params)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--reads", type=int, default=6_000_000)
    ap.add_argument("--classes", type=int, default=3507)
    ap.add_argument("--length", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sorted", action="store_true", help="reads sorted by class")
    a = ap.parse_args()
    make_fasta(a.out, a.reads, a.classes, a.length, a.seed, a.sorted)


if __name__ == "__main__":
    main()
