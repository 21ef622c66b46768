"""Sample composition from per-read calls: read fractions and length-normalised abundance.

Read fractions count classified reads (a pair counts once) per species and divide by all
classified reads. A species with a larger genome sheds more reads per cell, so with genome sizes
the abundance of species i is ``(reads_i / size_i) / sum_j (reads_j / size_j)``: the fraction of
genomes (cells, for one genome copy per cell) rather than of reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError, UsageError
from .labels import LabelMap


def load_genome_sizes(path: str | os.PathLike[str], label_map: LabelMap) -> np.ndarray:
    """Genome length per class from a TSV ``key<TAB>length`` (key: tax_id or label_name).

    A header line is allowed. Every class of the label map needs a size (checked before any
    read is classified, so a long run does not fail at the end); the error lists those missing.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such genome-size file")
    sizes = np.full(len(label_map), np.nan)
    by_tax: dict[int, list[int]] = {}
    for i, t in enumerate(label_map.tax_ids.tolist()):
        by_tax.setdefault(int(t), []).append(i)
    by_name = {n: i for i, n in enumerate(label_map.names)}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) < 2:
                raise InputError("expected 'tax_id or label_name<TAB>genome length'", path,
                                 line=lineno)
            key, value = cols[0].strip(), cols[1].strip()
            try:
                size = float(value)
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise InputError(f"genome length {value!r} is not a number", path,
                                 line=lineno) from None
            if not size > 0:
                raise InputError(f"genome length {value!r} must be positive", path, line=lineno)
            # Names win over tax ids; keys matching no class (other species) are ignored.
            if key in by_name:
                rows = [by_name[key]]
            elif key.isdigit():
                rows = by_tax.get(int(key), [])
            else:
                rows = []
            for r in rows:
                sizes[r] = size
    missing = np.flatnonzero(np.isnan(sizes))
    if len(missing):
        shown = ", ".join(f"{label_map.names[i]} ({int(label_map.tax_ids[i])})"
                          for i in missing[:10].tolist())
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise InputError(f"no genome size for {len(missing)} species: {shown}{more}", path)
    return sizes


def abundance_rows(counts: np.ndarray, label_map: LabelMap,
                   genome_sizes: np.ndarray | None = None) -> list[dict]:
    """One row per species with reads, most reads first (ties in class order)."""
    counts = np.asarray(counts, dtype=np.int64)[: len(label_map)]
    total = int(counts.sum())
    present = np.flatnonzero(counts)
    order = present[np.argsort(-counts[present], kind="stable")]
    norm = None
    if genome_sizes is not None:
        per_size = np.where(counts > 0, counts / np.asarray(genome_sizes, dtype=np.float64), 0.0)
        norm = per_size / per_size.sum() if per_size.sum() > 0 else per_size
    rows = []
    for i in order.tolist():
        row = {
            "label_name": label_map.names[i],
            "tax_id": int(label_map.tax_ids[i]),
            "class_id": int(label_map.class_ids[i]),
            "reads": int(counts[i]),
            "fraction": counts[i] / total,
        }
        if norm is not None:
            row["genome_size"] = int(genome_sizes[i])
            row["abundance"] = float(norm[i])
        rows.append(row)
    return rows


def write_abundance(path: str | os.PathLike[str], rows: list[dict]) -> None:
    """TSV: label_name, tax_id, class_id, reads, fraction [, genome_size, abundance]."""
    from .outputs import atomic_open

    sized = bool(rows) and "abundance" in rows[0]
    cols = ["label_name", "tax_id", "class_id", "reads", "fraction"]
    if sized:
        cols += ["genome_size", "abundance"]
    with atomic_open(path) as fh:
        fh.write("\t".join(cols) + "\n")
        for r in rows:
            vals = [r["label_name"], str(r["tax_id"]), str(r["class_id"]), str(r["reads"]),
                    f"{r['fraction']:.6f}"]
            if sized:
                vals += [str(r["genome_size"]), f"{r['abundance']:.6f}"]
            fh.write("\t".join(vals) + "\n")


def plot_abundance(path: str | os.PathLike[str], rows: list[dict], *, top: int = 20,
                   unclassified: int = 0) -> None:
    """Horizontal bar chart of the ``top`` species (by abundance when sizes were given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .outputs import atomic_path

    key = "abundance" if rows and "abundance" in rows[0] else "fraction"
    shown = sorted(rows, key=lambda r: -r[key])[:top]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(shown), 3) + 1.5))
    names = [r["label_name"] for r in shown][::-1]
    vals = [100.0 * r[key] for r in shown][::-1]
    ax.barh(range(len(shown)), vals, color="#3b7dd8")
    ax.set_yticks(range(len(shown)), names, fontsize=8)
    what = "length-normalised abundance" if key == "abundance" else "share of classified reads"
    ax.set_xlabel(f"{what} (%)")
    classified = sum(r["reads"] for r in rows)
    ax.set_title(f"Top {len(shown)} of {len(rows)} species; {classified:,} classified, "
                 f"{unclassified:,} unclassified", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
