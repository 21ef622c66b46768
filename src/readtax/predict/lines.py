"""Per-read lines of a prediction run: the TSV format, the Kraken2 merge (which calls come from
Kraken2's own per-read output) and the merge of per-rank part files into input order.

(:mod:`readtax.outputs` makes files atomic; this module decides what goes into them.)
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, ReadtaxError
from ..kraken import KrakenReader, strip_mate
from ..labels import LabelMap
from .options import SOURCE_NAMES, Predictions


def tsv_header(label_map: LabelMap, top_k: int, with_source: bool) -> str:
    cols = ["read_id", "class_index", "label_name", "tax_id", "confidence"]
    for j in range(1, min(top_k, len(label_map)) + 1 if top_k > 1 else 1):
        cols += [f"top{j}_label", f"top{j}_conf"]
    if with_source:
        cols.append("source")
    return "\t".join(cols) + "\n"


def format_tsv(p: Predictions, label_map: LabelMap, top_k: int, with_source: bool) -> str:
    """Per-read TSV lines (no header) for a batch of predictions."""
    n = len(p)
    if not n:
        return ""
    names = np.array([*label_map.names, "unclassified"], dtype=object)
    conf = p.confidence.tolist()
    cols = [p.ids, p.class_index.tolist(), names[p.class_index].tolist(),
            np.append(label_map.tax_ids, 0)[p.class_index].tolist(), conf]
    fmts = ["%s", "%d", "%s", "%d", "%.4f"]
    if top_k > 1:
        na = np.array([*label_map.names, "NA"], dtype=object)
        for j in range(min(top_k, len(label_map), p.top_index.shape[1])):
            cols += [na[p.top_index[:, j]].tolist(), p.top_conf[:, j].tolist()]
            fmts += ["%s", "%.4f"]
    if with_source:
        cols.append(np.array(SOURCE_NAMES, dtype=object)[p.source].tolist())
        fmts.append("%s")
    if np.isnan(p.confidence).any():  # Kraken2's calls have no probability: write NA
        for j, f in enumerate(fmts):
            if f == "%.4f":
                cols[j] = ["NA" if v != v else f"{v:.4f}" for v in cols[j]]
                fmts[j] = "%s"
    # One %-format over the whole batch: faster than joining the fields of every line.
    line = "\t".join(fmts) + "\n"
    return (line * n) % tuple(itertools.chain.from_iterable(zip(*cols)))


class TaxLookup:
    """Tax id -> class index (the first class with that tax id), vectorised."""

    def __init__(self, label_map: LabelMap) -> None:
        tax = label_map.tax_ids
        order = np.argsort(tax, kind="stable")
        keys, first = np.unique(tax[order], return_index=True)
        self.keys = keys
        self.cls = order[first]

    def __call__(self, taxids: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.full(len(taxids), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, taxids), len(self.keys) - 1)
        hit = (self.keys[pos] == taxids) & (taxids > 0)
        return np.where(hit, self.cls[pos], -1)


class KrakenMerge:
    """Aligns a Kraken2 per-read output with the batches this process sees."""

    def __init__(self, path: str, label_map: LabelMap, batch_units: int) -> None:
        self.reader = KrakenReader(path)
        self.path = path
        self.lookup = TaxLookup(label_map)
        self.batch_units = batch_units

    def calls(self, batch_no: int, ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Class index per unit from Kraken2 (-1: not a label-map tax id, use the model), and
        each line's own fifth column (its k-mer runs)."""
        target = batch_no * self.batch_units
        self._skip_to(target)
        block = self.reader.read(len(ids))
        if len(block.ids) < len(ids):
            self._short(target + len(block.ids))
        for j, (kid, rid) in enumerate(zip(block.ids, ids)):
            if kid != strip_mate(rid):
                raise InputError(
                    f"read id {kid!r} does not match input read {target + j + 1} ({rid!r}); the "
                    "Kraken2 output must list the same reads in the same order",
                    self.path, line=block.first_line + j)
        return self.lookup(block.tax_ids), block.kmer_columns

    def _skip_to(self, line: int) -> None:
        if self.reader.line < line:
            self.reader.skip(line - self.reader.line)
            if self.reader.line < line:
                self._short(self.reader.line)

    def _short(self, lines: int):
        raise InputError(f"Kraken2 output ends after {lines} lines but the input has more "
                         "reads (or pairs)", self.path)

    def finish(self, total_units: int) -> None:
        """The file must not hold more lines than the input has units."""
        self._skip_to(total_units)
        if self.reader.skip(1):
            raise InputError(f"Kraken2 output has more lines than the input has reads or pairs "
                             f"({total_units})", self.path, line=total_units + 1)
        self.reader.close()


def part_path(out: Path, rank: int, world: int) -> Path:
    return out.parent / f".{out.name}.part{rank}of{world}"


def merge_parts(parts: list[Path], out: str | os.PathLike[str], batch_units: int,
                header: str = "") -> None:
    """Interleave per-rank part files batch by batch (batch b came from rank b mod world).

    Every batch holds exactly ``batch_units`` lines except the last one, so reading that many
    lines from each part in turn restores input order; the output is written atomically.
    """
    from ..outputs import atomic_open

    handles = [open(p, encoding="utf-8", newline="\n") for p in parts]  # noqa: SIM115
    try:
        with atomic_open(out) as fh:
            fh.write(header)
            for b in itertools.count():
                lines = list(itertools.islice(handles[b % len(handles)], batch_units))
                fh.writelines(lines)
                if len(lines) < batch_units:
                    break
            for h in handles:
                if h.readline():
                    raise ReadtaxError(f"internal error: part file {h.name} has lines left "
                                       "after the merge")
    finally:
        for h in handles:
            h.close()
