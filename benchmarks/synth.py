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


# -- streaming generation (any size, memory independent of the read count) -----------------

STREAM_BLOCK = 1 << 20  # reads per generated block
ID_DIGITS = 10  # read numbers are zero-padded so that every header piece is fixed-width


def skewed_sizes(n_reads: int, n_classes: int = 3507, seed: int = 0,
                 sigma: float = 2.0) -> np.ndarray:
    """Exact class sizes summing to ``n_reads`` with a log-normal skew.

    With ``sigma`` = 2 over 3,507 classes the largest classes get a few percent of all reads
    each (millions at 150M+ reads) while the smallest get a few millionths (hundreds): the shape
    of the seed's training set, which a Zipf law over so many classes does not reach.
    """
    rng = np.random.default_rng([seed, 0x5CA1E])
    w = rng.lognormal(0.0, sigma, n_classes)
    base = 1 if n_reads >= n_classes else 0
    return (base + rng.multinomial(n_reads - base * n_classes, w / w.sum())).astype(np.int64)


def _header_table(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the header bytes before the read number, as a padded matrix and lengths."""
    heads = [f">lbl|{c}|{100000 + c}|45|Species_{c}-".encode() for c in range(n_classes)]
    width = max(len(h) for h in heads)
    mat = np.zeros((n_classes, width), np.uint8)
    for c, h in enumerate(heads):
        mat[c, : len(h)] = np.frombuffer(h, np.uint8)
    return mat, np.array([len(h) for h in heads], np.int64)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal ASCII of non-negative integers, one row per value."""
    out = np.empty((len(values), width), np.uint8)
    v = values.astype(np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = 48 + v % 10
        v //= 10
    return out


def stream_fasta(path: str | os.PathLike[str], n_reads: int, n_classes: int = 3507,
                 length: int = 150, seed: int = 0, sizes: np.ndarray | None = None) -> Path:
    """Write ``path`` block by block: ``n_reads`` random reads in the lbl header scheme whose
    class sizes are exactly ``sizes`` (default :func:`skewed_sizes`), in random class order.

    Each block draws its classes from what is left of every class without replacement
    (multivariate hypergeometric), so memory is one block whatever ``n_reads`` is and the file
    depends only on the arguments. Written under a temporary name and renamed.
    """
    path = Path(path)
    stamp = path.with_name(path.name + ".params")
    if sizes is None:
        sizes = skewed_sizes(n_reads, n_classes, seed)
    params = f"stream {n_reads} {n_classes} {length} {seed} {hash64_hex(sizes)}"
    if path.exists() and stamp.exists() and stamp.read_text() == params:
        return path
    if int(sizes.sum()) != n_reads or len(sizes) != n_classes:
        raise ValueError("class sizes must sum to n_reads, one per class")
    rng = np.random.default_rng([seed, 0xFA57A])
    hmat, hlen = _header_table(n_classes)
    left = sizes.astype(np.int64).copy()
    lut = np.frombuffer(b"ACGT", np.uint8)
    # Every 2-bit group of a random byte is one base: a byte gives four bases.
    quads = lut[(np.arange(256)[:, None] >> np.array([6, 4, 2, 0])) & 3]
    tail = ID_DIGITS + 4 + length  # digits, "/m\n", bases, "\n"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        for start in range(0, n_reads, STREAM_BLOCK):
            m = min(STREAM_BLOCK, n_reads - start)
            take = rng.multivariate_hypergeometric(left, m, method="marginals")
            left -= take
            lab = np.repeat(np.arange(n_classes), take)
            rng.shuffle(lab)
            ids = np.arange(start, start + m)
            nb = -(-length // 4)
            seqs = quads[rng.integers(0, 256, (m, nb), dtype=np.uint8)].reshape(m, 4 * nb)
            rows = np.empty((m, hmat.shape[1] + tail), np.uint8)
            rows[:, : hmat.shape[1]] = hmat[lab]
            lens = hlen[lab]
            # Fixed-width pieces after each class's prefix: shift them in place per prefix length.
            piece = np.empty((m, tail), np.uint8)
            piece[:, :ID_DIGITS] = _digits(ids, ID_DIGITS)
            piece[:, ID_DIGITS] = ord("/")
            piece[:, ID_DIGITS + 1] = np.where(ids % 2 == 0, ord("1"), ord("2"))
            piece[:, ID_DIGITS + 2] = 10
            piece[:, ID_DIGITS + 3 : ID_DIGITS + 3 + length] = seqs[:, :length]
            piece[:, -1] = 10
            for w in np.unique(lens).tolist():
                sel = lens == w
                rows[sel, w : w + tail] = piece[sel]
            keep = np.arange(rows.shape[1])[None, :] < (lens + tail)[:, None]
            fh.write(rows[keep].tobytes())
    os.replace(tmp, path)
    stamp.write_text(params)
    return path


def hash64_hex(a: np.ndarray) -> str:
    """A short digest of an array's bytes (identifies the class sizes in the reuse stamp)."""
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=8).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--reads", type=int, default=6_000_000)
    ap.add_argument("--classes", type=int, default=3507)
    ap.add_argument("--length", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sorted", action="store_true", help="reads sorted by class")
    ap.add_argument("--streaming", action="store_true",
                    help="generate block by block (memory independent of --reads) with the "
                         "seed's log-normal class skew; ignores --sorted")
    a = ap.parse_args()
    if a.streaming:
        stream_fasta(a.out, a.reads, a.classes, a.length, a.seed)
    else:
        make_fasta(a.out, a.reads, a.classes, a.length, a.seed, a.sorted)


if __name__ == "__main__":
    main()
