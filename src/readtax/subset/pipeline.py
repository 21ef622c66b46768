"""The ``readtax subset`` verb: arguments, the two passes over the work units, the summary.

Tunables live here and reach the workers through the passes' contexts
(:class:`~readtax.subset.counting.CountContext`, :class:`~readtax.subset.writing.Plan`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..fastx import sniff_format
from ..labels import LabelMap, load_mapping, make_scheme, report_skipped
from ..outputs import atomic_path, check_output_path, clean_stale, temp_name
from ..parallel import check_inputs, default_workers, map_units_progress
from .counting import (
    CountContext,
    CountMerger,
    class_plan,
    count_unit,
    plan_units,
    read_class_list,
)
from .selection import KEY_QUOTA, split_quota
from .writing import OutputTurn, Plan, select_unit, shuffle_pieces

log = logging.getLogger("readtax.subset")

READ_CHUNK = 4 << 20  # fixed so that batch boundaries (and so the draws) never change
SHUFFLE_BUCKET_BYTES = 32 << 20  # target bucket size (grows past MAX_BUCKETS x this)
MAX_BUCKETS = 1024
RUN_BYTES = 32 << 20  # a shuffling worker buffers at most this much per side


@dataclass
class SubsetSummary:
    """Per-class outcome of :func:`subset` (arrays follow ``label_map`` order)."""

    label_map: LabelMap
    available: np.ndarray
    requested: np.ndarray
    requested_val: np.ndarray
    written_train: np.ndarray
    written_val: np.ndarray
    status: list[str]
    numeric_ids: bool = True
    unknown_classes: list[str] = field(default_factory=list)
    below_min_reads: list[str] = field(default_factory=list)
    skipped_unknown: int = 0
    skipped_bad: dict = field(default_factory=dict)  # reason -> malformed records skipped
    output: str = ""
    val_output: str | None = None
    seed: int = 0

    @property
    def total_train(self) -> int:
        return int(self.written_train.sum())

    @property
    def total_val(self) -> int:
        return int(self.written_val.sum())

    def rows(self) -> list[dict]:
        lm = self.label_map
        return [
            {
                "class_id": int(lm.class_ids[i]) if self.numeric_ids else None,
                "label_name": lm.names[i],
                "available": int(self.available[i]),
                "requested": int(self.requested[i]),
                "written_train": int(self.written_train[i]),
                "written_val": int(self.written_val[i]),
                "requested_val": int(self.requested_val[i]),
                "status": self.status[i],
            }
            for i in range(len(lm))
        ]

    def write_tsv(self, path: str | os.PathLike[str]) -> None:
        from ..outputs import atomic_open

        cols = ["class_id", "label_name", "available", "requested", "written_train",
                "written_val", "requested_val", "status"]
        with atomic_open(path) as fh:
            fh.write("\t".join(cols) + "\n")
            for r in self.rows():
                fh.write("\t".join("" if r[c] is None else str(r[c]) for c in cols) + "\n")


def check_args(per_species, fraction, val_output, val_per_species, min_reads, seed, workers,
               labels) -> None:
    """UsageError for the first argument of :func:`subset` out of range."""
    def positive_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0

    if per_species is None and fraction is None:
        raise UsageError("give --per-species N and/or --fraction F")
    if per_species is not None and not positive_int(per_species):
        raise UsageError(f"--per-species must be a positive integer, got {per_species}")
    if fraction is not None and not (0 < fraction <= 1):
        raise UsageError(f"--fraction must be in (0, 1], got {fraction}")
    if (val_output is None) != (val_per_species is None):
        raise UsageError("--val-output and --val-per-species go together")
    if val_per_species is not None and not positive_int(val_per_species):
        raise UsageError(f"--val-per-species must be a positive integer, got {val_per_species}")
    if min_reads < 0:
        raise UsageError(f"--min-reads must not be negative, got {min_reads}")
    if seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if labels in (None, "none"):
        raise UsageError("subset needs class labels; choose a label scheme with --labels")


def input_format(paths: list[str]) -> str:
    """"fasta" or "fastq": what every non-empty input holds (UsageError for a mix)."""
    formats = {p: sniff_format(p) for p in paths if os.path.getsize(p) > 0}
    kinds = set(formats.values())
    if len(kinds) > 1:
        raise UsageError("inputs mix FASTA and FASTQ: " + ", ".join(
            f"{p} ({f})" for p, f in formats.items()))
    return kinds.pop() if kinds else "fasta"


def subset(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    per_species: int | None = None,
    fraction: float | None = None,
    val_output: str | os.PathLike[str] | None = None,
    val_per_species: int | None = None,
    classes: str | os.PathLike[str] | Iterable[str] | None = None,
    min_reads: int = 0,
    mapping: str | os.PathLike[str] | LabelMap | None = None,
    labels: str = "lbl",
    skip_unknown: bool = False,
    skip_bad: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    workers: int | None = None,
    summary: str | os.PathLike[str] | None = None,
    force: bool = False,
    unit_bytes: int | None = None,
    progress: bool | None = None,
) -> SubsetSummary:
    """Write exactly ``min(N, available)`` uniformly chosen reads of every class to ``out``.

    ``fraction`` asks for round(F x available) per class instead (halves rounded up; with both,
    the smaller). ``val_output`` gets a disjoint ``min(M, available - train)`` per class: train
    is filled first. ``classes`` (a file or names) keeps only the listed classes; ``min_reads``
    drops classes with fewer reads. Same inputs and seed give byte-identical outputs for any
    ``workers``; ``unit_bytes`` (tests only) changes the work units and so the draw.
    """
    check_args(per_species, fraction, val_output, val_per_species, min_reads, seed, workers,
                labels)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = check_inputs(inputs)
    out = check_output_path(out, force=force, inputs=paths)
    if val_output is not None:
        val_output = check_output_path(val_output, force=force, inputs=paths)
    if summary is not None:
        summary = check_output_path(summary, force=force, inputs=paths)
    named = [p for p in (out, val_output, summary) if p is not None]
    for p in named:
        if Path(p).is_dir():
            raise UsageError(f"output {p} is a directory, expected a file name")
    if len({Path(p).resolve() for p in named}) < len(named):
        raise UsageError("the output, --val-output and --summary must be different files")
    class_names = None
    if classes is not None:
        class_names = (read_class_list(classes) if isinstance(classes, (str, os.PathLike))
                       else [str(c) for c in classes])
    fmt = input_format(paths)
    scheme = make_scheme(labels)
    label_map = load_mapping(mapping) if isinstance(mapping, (str, os.PathLike)) else mapping
    workers = default_workers() if workers is None else workers
    units = plan_units(paths, unit_bytes)

    # Pass 1: reads per class per unit.
    t0 = time.monotonic()
    unit_sizes = [u.size for u in units]
    merger, parts = CountMerger(scheme, label_map), []
    counting = CountContext(scheme, label_map, skip_unknown, skip_bad, READ_CHUNK)
    for p in map_units_progress(count_unit, units, unit_sizes, workers, counting,
                                desc="subset: counting", enabled=progress):
        merger.add(p)
        parts.append(p)
    log.debug("pass 1 (count): %.2f s over %d units", time.monotonic() - t0, len(units))
    label_map, counts = merger.finish()
    numeric_ids = mapping is not None or scheme.numeric
    available = counts.sum(axis=0, dtype=np.int64)
    skipped = sum(p.skipped for p in parts)
    skipped_bad: dict[str, int] = {}
    for p in parts:
        for reason, n in p.skipped_bad.items():
            skipped_bad[reason] = skipped_bad.get(reason, 0) + n

    plan_c = class_plan(label_map, available, class_names, mapping is not None, numeric_ids,
                        min_reads, per_species, fraction, val_per_species)
    take_train, take_val = plan_c.take_train, plan_c.take_val
    rng = np.random.default_rng([seed, KEY_QUOTA])
    train_units = split_quota(counts, take_train, rng)
    counts -= train_units  # what is left for validation, in place: no fourth units x classes table
    val_units = split_quota(counts, take_val, rng)
    counts += train_units

    buckets = 0
    if shuffle:
        reads = np.array([max(p.reads, 1) for p in parts], dtype=np.float64)
        chosen = (train_units.sum(axis=1) + val_units.sum(axis=1)).astype(np.float64)
        est = float((np.array([p.out_bytes for p in parts]) * chosen / reads).sum())
        buckets = int(min(MAX_BUCKETS, max(1, math.ceil(est / SHUFFLE_BUCKET_BYTES))))

    # Pass 2: choose, write pieces, join them in order.
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    tmpdir = temp_name(out, "tmp")
    compress = {"train": str(out).endswith(".gz")}
    if val_output is not None:
        compress["val"] = str(val_output).endswith(".gz")
    items = [(u, unit, counts[u], train_units[u], val_units[u]) for u, unit in enumerate(units)]
    written_t = np.zeros(len(label_map), dtype=np.int64)
    written_v = np.zeros(len(label_map), dtype=np.int64)
    try:
        tmpdir.mkdir()  # inside the try: a Ctrl-C right after mkdir still removes it
        with contextlib.ExitStack() as stack:
            targets = {"train": stack.enter_context(atomic_path(out))}
            if val_output is not None:
                targets["val"] = stack.enter_context(atomic_path(val_output))
            for p in targets.values():
                open(p, "wb").close()  # units append to these in order
            # Forked workers appending in input order take turns; in this process units run in
            # order anyway.
            turn = OutputTurn() if workers > 1 and len(units) > 1 and not buckets else None
            plan = Plan(scheme, label_map, skip_unknown, skip_bad, str(tmpdir), seed, compress,
                        buckets, READ_CHUNK, RUN_BYTES, {s: str(p) for s, p in targets.items()},
                        turn)
            t0 = time.monotonic()
            unit_pieces = []
            for res in map_units_progress(select_unit, items, unit_sizes, workers, plan,
                                         desc="subset: selecting", enabled=progress):
                written_t += res.written_train
                written_v += res.written_val
                if buckets:
                    unit_pieces.append(res.pieces)
            log.debug("pass 2 (select, write): %.2f s", time.monotonic() - t0)
            if buckets:
                handles = {s: stack.enter_context(open(p, "ab", buffering=0))
                           for s, p in targets.items()}
                shuffle_pieces(unit_pieces, plan, workers, handles, fmt == "fastq")
                log.debug("shuffle (%d buckets): %.2f s", buckets, time.monotonic() - t0)
            if not (np.array_equal(written_t, take_train) and np.array_equal(written_v, take_val)):
                raise RuntimeError("subset wrote other counts than planned")  # pragma: no cover
            if buckets:
                for fh in handles.values():
                    fh.close()
            for s, p in targets.items():
                if compress[s] and os.path.getsize(p) == 0:
                    import gzip

                    with open(p, "wb") as fh:
                        fh.write(gzip.compress(b"", mtime=0))  # a valid, empty gzip file
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    result = SubsetSummary(label_map, available, plan_c.requested, plan_c.requested_val,
                           written_t, written_v, plan_c.status.tolist(), numeric_ids,
                           plan_c.unknown, plan_c.below, skipped, skipped_bad, str(out),
                           None if val_output is None else str(val_output), seed)
    if summary is not None:
        result.write_tsv(summary)
    n_short = plan_c.short
    log.info("%s: %d reads of %d classes%s", out, result.total_train, int((written_t > 0).sum()),
             f"; {val_output}: {result.total_val} reads" if val_output is not None else "")
    if n_short:
        log.info("%d class(es) had fewer reads than requested (all of them were taken)", n_short)
    report_skipped(skipped, skipped_bad)
    return result
