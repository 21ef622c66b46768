"""Cut the demo's real-genome fragments (src/readtax/data/real_genomes/) from the Debian files.

Per species: a fragment of ``--length`` bases from the start of the held-out strain's first
chromosome (benchmarks/real_genomes.py's held-out strains), and the window of the same length
that shares the most canonical 21-mers with it in one other strain (the one sharing most), so
the two fragments are homologous. Writes ``train/<Species>.fa.gz`` (the other strain),
``heldout/<Species>.fa.gz``, ``mapping.tsv`` and ``taxonomy.tsv`` (NCBI tax ids) and prints
what it cut (the README's table).

    .venv/bin/python benchmarks/make_real_fragments.py -o src/readtax/data/real_genomes
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_genomes import SPECIES, _open, check_inputs, strain_of  # noqa: E402

K = 21
GENUS_TAXID = {"Escherichia": 561, "Helicobacter": 209, "Staphylococcus": 1279, "Vibrio": 662,
               "Klebsiella": 570}
_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _LUT[_c] = _i
    _LUT[_c + 32] = _i  # lower case


def first_record(path: Path) -> tuple[str, bytes]:
    """Header (without '>') and sequence of the file's first record (the main chromosome)."""
    header, seq = "", []
    with _open(path) as fh:
        for line in fh:
            if line.startswith(b">"):
                if header:
                    break
                header = line[1:].decode().strip()
            else:
                seq.append(line.strip())
    return header, b"".join(seq).upper()


def canonical_kmers(seq: bytes) -> np.ndarray:
    """Canonical K-mer code at every position (-1 where the window holds a non-ACGT base)."""
    b = _LUT[np.frombuffer(seq, np.uint8)].astype(np.int64)
    n = len(b) - K + 1
    fwd = np.zeros(n, np.int64)
    rev = np.zeros(n, np.int64)
    ok = np.ones(n, bool)
    for j in range(K):
        x = b[j : j + n]
        ok &= x != 255
        x = x & 3
        fwd = fwd * 4 + x
        rev = rev + (3 - x) * (4**j)
    return np.where(ok, np.minimum(fwd, rev), -1)


def best_window(query: np.ndarray, seq: bytes, length: int) -> tuple[int, float]:
    """Start of the ``length`` window of ``seq`` sharing most K-mers with ``query``, and the
    fraction of its K-mers found in ``query``."""
    codes = canonical_kmers(seq)
    hit = np.isin(codes, np.unique(query[query >= 0])).astype(np.int64)
    w = length - K + 1
    csum = np.concatenate([[0], np.cumsum(hit)])
    sums = csum[w:] - csum[:-w]
    start = int(np.argmax(sums))
    return start, float(sums[start] / w)


def write_fasta(path: Path, header: str, seq: bytes) -> None:
    # mtime 0: the same input gives the same bytes (no time stamp in the gzip header)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9,
                                                 mtime=0, filename="") as fh:
        fh.write(b">" + header.encode() + b"\n")
        for i in range(0, len(seq), 80):
            fh.write(seq[i : i + 80] + b"\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--length", type=int, default=300_000)
    args = p.parse_args(argv)
    check_inputs()
    out = Path(args.out)
    for sub in ("train", "heldout"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for sp in SPECIES:
        held_path = next(f for f in sp.files if strain_of(f) == sp.heldout)
        h_head, h_seq = first_record(held_path)
        frag = h_seq[: args.length]
        query = canonical_kmers(frag)
        best = None
        for f in sp.files:
            if f == held_path:
                continue
            head, seq = first_record(f)
            start, shared = best_window(query, seq, args.length)
            if best is None or shared > best[3]:
                best = (f, head, seq[start : start + args.length], shared, start)
        f, head, tseq, shared, start = best
        name = sp.name
        write_fasta(out / "heldout" / f"{name}.fa.gz",
                    f"{h_head.split()[0]} {strain_of(held_path)} 1-{len(frag)}", frag)
        write_fasta(out / "train" / f"{name}.fa.gz",
                    f"{head.split()[0]} {strain_of(f)} {start + 1}-{start + len(tseq)}", tseq)
        rows.append((name, sp.package, strain_of(f), head, start, strain_of(held_path), h_head,
                     shared))
    (out / "mapping.tsv").write_text("class_id\tlabel_name\ttax_id\n" + "".join(
        f"{i}\t{sp.name}\t{sp.tax_id}\n" for i, sp in enumerate(SPECIES)), encoding="utf-8")
    tax = ["tax_id\tparent_tax_id\trank\tname", "1\t1\tno rank\troot"]
    for sp in SPECIES:
        genus = sp.name.split("_")[0]
        tax.append(f"{GENUS_TAXID[genus]}\t1\tgenus\t{genus}")
    tax += [f"{sp.tax_id}\t{GENUS_TAXID[sp.name.split('_')[0]]}\tspecies\t"
            f"{sp.name.replace('_', ' ')}" for sp in SPECIES]
    (out / "taxonomy.tsv").write_text("\n".join(tax) + "\n", encoding="utf-8")
    for name, pkg, t_strain, t_head, start, h_strain, h_head, shared in rows:
        print(f"| {name.replace('_', ' ')} | {pkg} | train: {t_strain} `{t_head.split()[0]}` "
              f"{start + 1:,}-{start + args.length:,} | held out: {h_strain} "
              f"`{h_head.split()[0]}` 1-{args.length:,} | {100 * shared:.0f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
