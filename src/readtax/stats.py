"""Read-set statistics in one streaming pass (in parallel over byte ranges of plain files)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .labels import Labeler, LabelMap, LabelScheme, make_scheme
from .parallel import (
    UNIT_BYTES,
    Unit,
    check_inputs,
    default_workers,
    fixed_units,
    map_units_progress,
    release_memory,
)

MAX_LEN_BIN = 100_000  # longer reads share the last histogram bin


@dataclass
class ReadStats:
    """Totals over a read set. ``class_counts`` maps a class key (class id or name) to reads."""

    reads: int = 0
    bases: int = 0
    non_acgt: int = 0
    min_len: int = 0
    max_len: int = 0
    length_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_counts: dict = field(default_factory=dict)
    class_tax: dict = field(default_factory=dict)
    skipped_unknown: int = 0
    skipped_bad: dict = field(default_factory=dict)  # reason -> records skipped (--skip-bad)
    files: list[str] = field(default_factory=list)

    @property
    def mean_len(self) -> float:
        return self.bases / self.reads if self.reads else 0.0

    def add_lengths(self, lengths: np.ndarray) -> None:
        if len(lengths) == 0:
            return
        lo, hi = int(lengths.min()), int(lengths.max())
        self.min_len = lo if self.reads == 0 else min(self.min_len, lo)
        self.max_len = max(self.max_len, hi)
        counts = np.bincount(np.minimum(lengths, MAX_LEN_BIN))
        if len(counts) > len(self.length_counts):
            counts[: len(self.length_counts)] += self.length_counts
            self.length_counts = counts
        else:
            self.length_counts[: len(counts)] += counts
        self.reads += len(lengths)
        self.bases += int(lengths.sum())

    def merge(self, other: ReadStats) -> None:
        if other.reads == 0:
            self.skipped_unknown += other.skipped_unknown
            for k, v in other.skipped_bad.items():
                self.skipped_bad[k] = self.skipped_bad.get(k, 0) + v
            return
        for k, v in other.skipped_bad.items():
            self.skipped_bad[k] = self.skipped_bad.get(k, 0) + v
        if self.reads == 0:
            self.min_len = other.min_len
        else:
            self.min_len = min(self.min_len, other.min_len)
        self.max_len = max(self.max_len, other.max_len)
        a, b = self.length_counts, other.length_counts
        if len(b) > len(a):
            a, b = b.copy(), a
        a[: len(b)] += b
        self.length_counts = a
        self.reads += other.reads
        self.bases += other.bases
        self.non_acgt += other.non_acgt
        self.skipped_unknown += other.skipped_unknown
        for k, v in other.class_counts.items():
            self.class_counts[k] = self.class_counts.get(k, 0) + v
        for k, v in other.class_tax.items():
            self.class_tax.setdefault(k, v)

    def length_quantile(self, q: float) -> int:
        if self.reads == 0:
            return 0
        cum = np.cumsum(self.length_counts)
        return int(np.searchsorted(cum, q * cum[-1], side="left"))

    def class_rows(self, label_map: LabelMap | None) -> list[dict]:
        """Per-class rows sorted by class order of the map (or by key), with read counts."""
        rows = []
        if label_map is not None:
            for i in range(len(label_map)):
                rows.append({
                    "class_index": i,
                    "class_id": int(label_map.class_ids[i]),
                    "label_name": label_map.names[i],
                    "tax_id": int(label_map.tax_ids[i]),
                    "reads": int(self.class_counts.get(i, 0)),
                })
            return rows
        for k in sorted(self.class_counts, key=lambda x: (isinstance(x, str), x)):
            rows.append({
                "class_index": len(rows),
                "class_id": k if not isinstance(k, str) else None,
                "label_name": str(k),
                "tax_id": self.class_tax.get(k, -1),
                "reads": int(self.class_counts[k]),
            })
        return rows

    def to_dict(self, label_map: LabelMap | None = None) -> dict:
        nz = np.flatnonzero(self.length_counts)
        return {
            "files": self.files,
            "reads": self.reads,
            "bases": self.bases,
            "min_length": self.min_len,
            "mean_length": round(self.mean_len, 3),
            "max_length": self.max_len,
            "median_length": self.length_quantile(0.5),
            "non_acgt_bases": self.non_acgt,
            "non_acgt_note": "IUPAC codes other than ACGT are counted (and stored) as N",
            "length_histogram": {str(int(k)): int(self.length_counts[k]) for k in nz},
            "classes": len(self.class_counts),
            "skipped_unknown_class": self.skipped_unknown,
            "skipped_bad_records": self.skipped_bad,
            "per_class": self.class_rows(label_map),
        }


def _stats_unit(unit: Unit, scheme: LabelScheme | None, label_map: LabelMap | None,
                skip_unknown: bool, skip_bad: bool = False) -> ReadStats:
    st = ReadStats()
    labeler = None if scheme is None else Labeler(scheme, label_map, skip_unknown=skip_unknown,
                                                  skip_bad=skip_bad)
    counts = np.zeros(len(label_map) if label_map is not None else 0, dtype=np.int64)
    reader = unit.reader(skip_bad=skip_bad)
    for batch in reader:
        if labeler is None:
            st.add_lengths(batch.lengths)
            st.non_acgt += batch.non_acgt
            continue
        cls = labeler.classes(batch)
        keep = cls >= 0
        if keep.all():
            st.add_lengths(batch.lengths)
            st.non_acgt += batch.non_acgt
        else:
            # Reads skipped for their label are left out of every count.
            kept = batch.take(np.flatnonzero(keep))
            st.add_lengths(kept.lengths)
            st.non_acgt += 0 if batch.non_acgt == 0 else int(np.count_nonzero(kept.seq == ord("N")))
        c = np.bincount(cls[keep])
        if len(c) > len(counts):
            c[: len(counts)] += counts
            counts = c
        else:
            counts[: len(c)] += c
    st.skipped_bad = dict(reader.skipped)
    if labeler is not None:
        if labeler.skipped_bad:
            st.skipped_bad["header does not fit the label scheme"] = labeler.skipped_bad
        st.skipped_unknown = labeler.skipped
        st.class_counts = {int(i): int(counts[i]) for i in np.flatnonzero(counts)}
        if label_map is None:
            # Translate this unit's discovery order into class keys so units merge by key.
            found = labeler.discovered_map()
            keys = (found.class_ids.tolist() if scheme.numeric else found.names)
            st.class_counts = {keys[i]: v for i, v in st.class_counts.items()}
            if scheme.numeric:
                st.class_tax = {keys[i]: int(found.tax_ids[i]) for i in range(len(keys))}
    release_memory()
    return st


def compute_stats(
    paths: list[str | os.PathLike[str]],
    *,
    scheme: str | LabelScheme | None = "lbl",
    label_map: LabelMap | None = None,
    skip_unknown: bool = False,
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool | None = None,
    unit_bytes: int = UNIT_BYTES,
) -> ReadStats:
    """Stream every read of ``paths`` once; memory depends on classes, not on reads.

    ``unit_bytes`` (tests) sizes the byte ranges the workers take; results never depend on it.
    """
    if isinstance(scheme, str):
        scheme = make_scheme(scheme)
    workers = default_workers() if workers is None else workers
    # About four units per worker (fewer readers to set up) but at most 1 GiB, so that progress
    # moves; each ends with the worker's free memory returned.
    paths = check_inputs(paths)
    total = sum(os.path.getsize(p) for p in paths)
    units = fixed_units(paths, max(unit_bytes, min(total // (4 * max(workers, 1)), 1 << 30)))
    result = ReadStats(files=[str(p) for p in paths])
    for st in map_units_progress(_stats_unit, units, [u.size for u in units], workers, scheme,
                                 label_map, skip_unknown, skip_bad, desc="stats",
                                 enabled=progress):
        result.merge(st)
    return result


def format_summary(st: ReadStats, label_map: LabelMap | None = None, top: int = 10) -> str:
    lines = [
        f"files\t{len(st.files)}",
        f"reads\t{st.reads}",
        f"bases\t{st.bases}",
        f"length_min\t{st.min_len}",
        f"length_mean\t{st.mean_len:.2f}",
        f"length_median\t{st.length_quantile(0.5)}",
        f"length_max\t{st.max_len}",
        f"non_acgt_bases\t{st.non_acgt}\t(IUPAC codes other than ACGT count as N)",
        f"classes\t{len(st.class_counts)}",
    ]
    if st.skipped_unknown:
        lines.append(f"skipped_unknown_class\t{st.skipped_unknown}")
    for reason, n in sorted(st.skipped_bad.items()):
        lines.append(f"skipped_bad_records\t{n}\t({reason})")
    rows = sorted(st.class_rows(label_map), key=lambda r: -r["reads"])
    if rows:
        lines.append(f"largest classes (of {len(rows)}):")
        for r in rows[:top]:
            lines.append(f"  {r['class_id']}\t{r['label_name']}\t{r['tax_id']}\t{r['reads']}")
        sizes = [r["reads"] for r in rows if r["reads"] > 0]
        if sizes:
            lines.append(f"class sizes: min {min(sizes)}, median {int(np.median(sizes))}, max {max(sizes)}")
    return "\n".join(lines) + "\n"


def write_json(st: ReadStats, path, label_map: LabelMap | None = None) -> None:
    from .outputs import atomic_open

    with atomic_open(path) as fh:
        json.dump(st.to_dict(label_map), fh, indent=1)
        fh.write("\n")


def write_class_tsv(st: ReadStats, path, label_map: LabelMap | None = None) -> None:
    from .outputs import atomic_open

    with atomic_open(path) as fh:
        fh.write("class_index\tclass_id\tlabel_name\ttax_id\treads\n")
        for r in st.class_rows(label_map):
            cid = "" if r["class_id"] is None else r["class_id"]
            fh.write(f"{r['class_index']}\t{cid}\t{r['label_name']}\t{r['tax_id']}\t{r['reads']}\n")


def plot_stats(st: ReadStats, path, label_map: LabelMap | None = None) -> None:
    """Class-size distribution (sorted, log scale) and the read-length histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .outputs import atomic_path

    sizes = np.array(sorted((r["reads"] for r in st.class_rows(label_map)), reverse=True))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if len(sizes):
        a1.plot(np.arange(1, len(sizes) + 1), np.maximum(sizes, 0.8), lw=1.2)
        a1.set_yscale("log")
    a1.set_xlabel("class rank")
    a1.set_ylabel("reads (log)")
    a1.set_title(f"{len(sizes)} classes, {st.reads:,} reads")
    nz = np.flatnonzero(st.length_counts)
    if len(nz):
        a2.bar(nz, st.length_counts[nz], width=max(1.0, (nz[-1] - nz[0]) / 100))
    a2.set_xlabel("read length (bp)")
    a2.set_ylabel("reads")
    a2.set_title(f"length min {st.min_len}, mean {st.mean_len:.1f}, max {st.max_len}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

