"""``readtax subset``, pass 1 and the plan: work units, reads per class per unit, and how many
train and validation reads each class gets."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from ..labels import Labeler, LabelMap, LabelScheme
from ..parallel import UNIT_BYTES, Unit, check_inputs, fixed_units
from .selection import MAX_UNITS
from .writing import record_sizes

log = logging.getLogger("readtax.subset")


@dataclass(frozen=True, eq=False)
class CountContext:
    """What every pass-1 worker needs besides its own unit (see :mod:`readtax.parallel`)."""

    scheme: LabelScheme
    label_map: LabelMap | None  # the mapping; None: classes are discovered
    skip_unknown: bool
    skip_bad: bool
    read_chunk: int  # reader batch bytes: fixed, so that batch boundaries never change


def plan_units(paths: Iterable[str | os.PathLike[str]], unit_bytes: int | None = None) -> list[Unit]:
    """Fixed-size byte ranges of plain files, whole gzip files; independent of worker count."""
    paths = check_inputs(paths)
    if unit_bytes is None:
        unit_bytes = max(UNIT_BYTES, -(-sum(os.path.getsize(p) for p in paths) // MAX_UNITS))
    return fixed_units(paths, unit_bytes)


@dataclass
class UnitCounts:
    """One unit's pass-1 result."""

    counts: np.ndarray
    keys: list | None  # class keys of ``counts`` when classes are discovered (no mapping)
    tax: list | None
    skipped: int
    skipped_bad: dict  # reason -> malformed records skipped (skip_bad)
    reads: int
    out_bytes: int


def count_unit(unit: Unit, ctx: CountContext) -> UnitCounts:
    """Pass 1 over one unit: its reads per class, reads and output bytes."""
    scheme, label_map, skip_bad = ctx.scheme, ctx.label_map, ctx.skip_bad
    labeler = Labeler(scheme, label_map, skip_unknown=ctx.skip_unknown, skip_bad=skip_bad)
    counts = np.zeros(len(label_map) if label_map is not None else 0, dtype=np.int64)
    reads = out_bytes = 0
    reader = unit.reader(ctx.read_chunk, skip_bad=skip_bad)
    for batch in reader:
        cls = labeler.classes(batch)
        bc = np.bincount(cls[cls >= 0], minlength=len(counts))
        if len(bc) > len(counts):
            bc[: len(counts)] += counts
            counts = bc
        else:
            counts += bc
        reads += len(batch)
        out_bytes += int(record_sizes(batch).sum())
    keys = tax = None
    if label_map is None:
        found = labeler.discovered_map()
        keys = found.class_ids.tolist() if scheme.numeric else list(found.names)
        tax = found.tax_ids.tolist()
        counts = np.concatenate([counts, np.zeros(len(keys) - len(counts), np.int64)])
    bad = dict(reader.skipped)
    if labeler.skipped_bad:
        bad["header does not fit the label scheme"] = labeler.skipped_bad
    return UnitCounts(counts, keys, tax, labeler.skipped, bad, reads, out_bytes)


class CountMerger:
    """Folds each unit's class counts in as it arrives (pass 1), in O(units x classes) int32.

    Units come in input order. Without a mapping a class key gets a column when first seen
    (its first-seen tax id stays); :meth:`finish` orders the columns as the label map. The
    units' own key and count lists are dropped as soon as they are folded in: held for every
    unit until the end, their Python objects would grow with the input.
    """

    def __init__(self, scheme: LabelScheme, label_map: LabelMap | None) -> None:
        self.scheme = scheme
        self.label_map = label_map
        self.column: dict = {}  # class key -> column, in order of discovery
        self.tax: list = []
        self.rows: list[np.ndarray] = []

    def add(self, p: UnitCounts) -> None:
        # A unit's reads bound each of its counts: int32 unless one (gzip) unit has 2^31 reads.
        dtype = np.int32 if p.reads < 2**31 else np.int64
        if p.keys is None:
            row = np.asarray(p.counts).astype(dtype)
        else:
            cols = np.empty(len(p.keys), np.int64)
            for i, (k, t) in enumerate(zip(p.keys, p.tax)):
                c = self.column.get(k)
                if c is None:
                    c = self.column[k] = len(self.tax)
                    self.tax.append(t)
                cols[i] = c
            row = np.zeros(len(self.tax), dtype)
            row[cols] = p.counts
        self.rows.append(row)
        p.counts = p.keys = p.tax = None

    def finish(self) -> tuple[LabelMap, np.ndarray]:
        """The class order (mapping, or discovered keys sorted) and the units x classes counts."""
        label_map, order = self.label_map, None
        if label_map is None:
            keys = sorted(self.column)
            tax = [self.tax[self.column[k]] for k in keys]
            if self.scheme.numeric:
                label_map = LabelMap.from_ids(keys, [str(k) for k in keys], tax)
            else:
                label_map = LabelMap.from_ids(np.arange(len(keys)), keys, tax)
            order = np.empty(len(keys), np.int64)  # column -> class index
            order[[self.column[k] for k in keys]] = np.arange(len(keys))
        wide = any(r.dtype == np.int64 for r in self.rows)
        counts = np.zeros((len(self.rows), len(label_map)), np.int64 if wide else np.int32)
        for u, row in enumerate(self.rows):
            if order is None:
                counts[u] = row
            else:
                counts[u, order[: len(row)]] = row
        self.rows = []
        return label_map, counts


def read_class_list(path: str | os.PathLike[str]) -> list[str]:
    """Class ids or names, one per line (first tab-separated column; '#' comments)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such class list")
    names = []
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            text = line.split("\t", 1)[0].strip()
            if text and not text.startswith("#"):
                names.append(text)
    if not names:
        raise InputError("class list names no classes", p)
    return names


def match_classes(names: list[str], label_map: LabelMap, numeric: bool) -> tuple[np.ndarray, list[str]]:
    """Mask of the listed classes (by class id when numeric, else or also by label name)."""
    keep = np.zeros(len(label_map), dtype=bool)
    unknown = []
    by_name = {n: i for i, n in enumerate(label_map.names)}
    for name in names:
        idx = -1
        if numeric and name.lstrip("-").isdigit():
            idx = int(label_map.index(np.array([int(name)], dtype=np.int64))[0])
        if idx < 0:
            idx = by_name.get(name, -1)
        if idx < 0:
            unknown.append(name)
        else:
            keep[idx] = True
    return keep, unknown


def quota(available: np.ndarray, per_species: int | None, fraction: float | None) -> np.ndarray:
    """Requested reads per class: N, round(F x available) (halves up), or the smaller of both."""
    req = np.full(len(available), np.iinfo(np.int64).max, dtype=np.int64)
    if per_species is not None:
        req[:] = per_species
    if fraction is not None:
        # Exact decimal arithmetic on F as written (0.3 x 5 is 1.5, which rounds to 2, not the
        # float 1.4999999999999998); one Python operation per class, not per read.
        f = Decimal(repr(float(fraction)))
        half = Decimal(1) / 2
        frac = [int((f * int(a) + half).to_integral_value(rounding=ROUND_FLOOR)) for a in available]
        req = np.minimum(req, np.array(frac, dtype=np.int64))
    return req


@dataclass
class ClassPlan:
    """Per class: status, requests and the reads train and validation take."""

    status: np.ndarray  # object array of status words
    requested: np.ndarray
    requested_val: np.ndarray
    take_train: np.ndarray
    take_val: np.ndarray
    unknown: list[str]
    below: list[str]
    short: int


def class_plan(label_map: LabelMap, available: np.ndarray, class_names: list[str] | None,
                has_mapping: bool, numeric_ids: bool, min_reads: int, per_species: int | None,
                fraction: float | None, val_per_species: int | None) -> ClassPlan:
    """Which classes are kept and how many train and validation reads each gets."""
    status = np.array(["kept"] * len(label_map), dtype=object)
    keep = np.ones(len(label_map), dtype=bool)
    unknown: list[str] = []
    if class_names is not None:
        listed, unknown = match_classes(class_names, label_map, numeric_ids)
        if unknown:
            where = "the mapping" if has_mapping else "the data"
            log.warning("--classes: %d name(s) not found in %s: %s", len(unknown), where,
                        short_list(unknown))
        status[~listed] = "excluded"
        keep &= listed
    low = keep & (available < min_reads)
    below = [label_map.names[i] for i in np.flatnonzero(low)]
    if below:
        log.info("dropping %d class(es) with fewer than %d reads: %s", len(below), min_reads,
                 short_list(below))
    status[low] = "below_min_reads"
    keep &= ~low
    requested = np.where(keep, quota(available, per_species, fraction), 0)
    take_train = np.minimum(requested, available)
    requested_val = np.where(keep, val_per_species or 0, 0)
    # Train is filled first; validation gets what is left, up to its request.
    take_val = np.minimum(requested_val, available - take_train)
    short = keep & ((take_train < requested) | (take_val < requested_val))
    status[short] = "short"
    return ClassPlan(status, requested, requested_val, take_train, take_val, unknown, below,
                      int(short.sum()))


def short_list(names: list[str], limit: int = 50) -> str:
    text = ", ".join(names[:limit])
    return text + (f" ... and {len(names) - limit} more" if len(names) > limit else "")
