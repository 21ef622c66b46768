"""``readtax pack``: FASTA/FASTQ into a store, in two passes over temporary run files.

Pass 1 (:mod:`readtax.store.runs`; parallel over fixed-size byte ranges of plain files, whole
gzip files) parses, labels and 2-bit encodes reads and writes them to temporary *run* files
grouped by bucket. Pass 2 (:mod:`readtax.store.buckets`; parallel over buckets, first to last)
loads one bucket from every run, maps class keys to the final label map, orders it and writes
its bytes in place; the main process writes the ids and small tables, cuts the sections read
so far off the runs' tails (their pages then serve the store's writes) and checksums the files
at the end. Bucket assignment and layouts depend only on the inputs and the seed, never on the
number of workers, so the output is byte-identical for any ``--workers``. Memory is one run
buffer per pass-1 worker and one bucket per pass-2 worker.

Each pass's workers receive an explicit context (:class:`~readtax.store.runs.Pass1Context`,
:class:`~readtax.store.buckets.Pass2Context`) through :func:`readtax.parallel.map_units`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError, UsageError
from ..fastx import is_gzip
from ..labels import LabelMap, LabelScheme, make_scheme, report_skipped
from ..parallel import (
    UNIT_BYTES,
    check_inputs,
    default_workers,
    fixed_units,
    map_units_progress,
    release_memory,
)
from . import buckets
from . import format as fmt
from .buckets import Bucket, Pass2Context, SpentRuns, WorkerFiles, write_at
from .runs import COLS, F_TABLE, Pass1, Pass1Context, pack_unit

log = logging.getLogger("readtax.store")

RUN_BYTES = 48 << 20  # pass-1 input bytes buffered per temporary run file
BUCKET_BYTES = 96 << 20  # input bytes per shuffle bucket (pass-2 memory is proportional)
GZIP_RATIO = 4  # assumed expansion of gzip input when sizing buckets
MAX_BUCKETS = 65535


class _Out:
    """An output file written in order, recording its size as it goes."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.size = 0

    def write(self, data) -> None:
        buf = memoryview(np.ascontiguousarray(data)).cast("B") if isinstance(data, np.ndarray) \
            else memoryview(data)
        self.fh.write(buf)
        self.size += len(buf)

    def close(self) -> None:
        self.fh.close()


class _Writer:
    """The final files: pass-2 workers write bucket data in place (sizes are known up front);
    this writes the shared edge bytes, the ids and the small tables, then sums up the files."""

    def __init__(self, tmp: Path, class_file: str, fixed: bool, shuffle: bool, n: int,
                 total_bases: int, n_runs: int, class_itemsize: int, files: WorkerFiles) -> None:
        self.tmp = tmp
        self.files = files  # this process's descriptors of the store files
        sizes = {fmt.F_BASES: -(-total_bases // 4), class_file: n * class_itemsize,
                 fmt.F_NFLAGS: -(-n // 8), fmt.F_NSTART: 8 * n_runs, fmt.F_NLEN: 4 * n_runs}
        if not fixed:
            sizes[fmt.F_OFFSETS] = 8 * (n + 1)
        if not shuffle:
            sizes[fmt.F_ORDER] = 4 * n
        for name, size in sizes.items():
            with open(tmp / name, "wb") as fh:
                fh.truncate(size)
        self.names = list(sizes)
        self.total_bases = total_bases
        self.n = n
        self.fixed = fixed
        self.edges: dict[str, dict[int, int]] = {fmt.F_BASES: {}, fmt.F_NFLAGS: {}}
        self.ids = _Out(tmp / fmt.F_IDS)
        self.class_rows = _Out(tmp / fmt.F_BCLASS)
        self.id_index: list[tuple[int, int]] = []
        self.id_pos = 0
        self.bucket_starts = [0]

    def add(self, bk: Bucket) -> None:
        for name, pairs in bk.edges.items():
            acc = self.edges[name]
            for at, bits in pairs:
                acc[at] = acc.get(at, 0) | bits
        for blob, count in zip(bk.id_blocks, bk.id_counts):
            self.id_index.append((self.id_pos, self.ids.size))
            self.ids.write(blob)
            self.id_pos += count
        self.bucket_starts.append(self.bucket_starts[-1] + bk.reads)
        self.class_rows.write(bk.class_row)

    def close(self) -> dict[str, dict]:
        for name, acc in self.edges.items():
            for at, bits in acc.items():
                write_at(self.tmp / name, at, np.array([bits], np.uint8), self.files)
        if not self.fixed:
            write_at(self.tmp / fmt.F_OFFSETS, 8 * self.n, np.array([self.total_bases], np.uint64),
                     self.files)
        self.id_index.append((self.id_pos, self.ids.size))
        self.ids.close()
        self.class_rows.close()
        for name, arr in ((fmt.F_IDINDEX, np.array(self.id_index, np.uint64)),
                          (fmt.F_BUCKETS, np.array(self.bucket_starts, np.uint64))):
            out = _Out(self.tmp / name)
            out.write(arr)
            out.close()
        names = self.names + [fmt.F_IDS, fmt.F_BCLASS, fmt.F_IDINDEX, fmt.F_BUCKETS]
        return {name: {"size": os.path.getsize(self.tmp / name),
                       fmt.CHECKSUM: fmt.file_checksum(self.tmp / name)} for name in sorted(names)}


# -- pack, orchestration --------------------------------------------------------------------


def pack(inputs: list[str | os.PathLike[str]], out: str | os.PathLike[str], *,
         mapping: LabelMap | None = None, labels: str | LabelScheme = "lbl",
         skip_unknown: bool = False, skip_bad: bool = False, seed: int = 0,
         workers: int | None = None, shuffle: bool = True, force: bool = False,
         progress: bool | None = None,
         unit_bytes: int = UNIT_BYTES, bucket_bytes: int = BUCKET_BYTES,
         run_bytes: int = RUN_BYTES) -> dict:
    """Pack FASTA/FASTQ ``inputs`` into the store directory ``out``; returns the manifest.

    Memory is bounded by the buffer sizes (``run_bytes`` per worker in pass 1, one bucket of
    about ``bucket_bytes`` of input per worker in pass 2), not by the input size. The result is
    byte-identical for the same inputs, options and ``seed`` whatever ``workers`` is.
    """
    from ..outputs import (
        check_output_path,
        clean_stale,
        no_space_as_error,
        output_lock,
        replace_dir,
        temp_name,
    )

    paths = check_inputs(inputs)
    out = check_output_path(out, force=force, inputs=paths)
    scheme = make_scheme(labels) if isinstance(labels, str) or labels is None else labels
    workers = default_workers() if workers is None else max(1, int(workers))
    if not 0 <= seed < 2**63:
        raise UsageError(f"seed must be in [0, 2**63), got {seed}")
    with output_lock(out), no_space_as_error(out):
        clean_stale(out)
        tmp = temp_name(out, "tmp")
        try:  # made inside the try: a Ctrl-C right after mkdir still removes it
            tmp.mkdir()
            manifest = _pack_into(tmp, paths, out, scheme, mapping, skip_unknown, skip_bad,
                                  seed, workers, shuffle, progress, unit_bytes, bucket_bytes,
                                  run_bytes)
            replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest


def _pack_into(tmp: Path, paths: list[str], out: Path, scheme: LabelScheme,
               mapping: LabelMap | None, skip_unknown: bool, skip_bad: bool, seed: int,
               workers: int,
               shuffle: bool, progress: bool | None, unit_bytes: int, bucket_bytes: int,
               run_bytes: int) -> dict:
    units = fixed_units(paths, unit_bytes)
    est = sum(u.size * (GZIP_RATIO if is_gzip(u.path) else 1) for u in units)
    n_buckets = min(MAX_BUCKETS, max(1, math.ceil(est / bucket_bytes))) if shuffle else 1
    runs_dir = tmp / "runs"
    runs_dir.mkdir()
    pass1 = Pass1Context(scheme=scheme, label_map=mapping, skip_unknown=skip_unknown,
                         skip_bad=skip_bad, seed=seed, n_buckets=n_buckets, runs_dir=runs_dir,
                         run_bytes=run_bytes)
    t0 = time.monotonic()
    acc = Pass1(runs_dir, scheme, mapping, n_buckets)
    for u, res in enumerate(map_units_progress(
            pack_unit, list(enumerate(units)), [unit.size for unit in units], workers, pass1,
            desc=f"pack {out.name}: reading", enabled=progress)):
        acc.add(u, res)
    log.debug("pack pass 1 (read, encode, runs): %.2f s", time.monotonic() - t0)

    label_map = acc.label_map()
    n_classes = len(label_map)
    class_counts, lut_offsets = acc.finish(label_map)
    n, skipped = acc.reads, acc.skipped
    if n == 0:
        raise InputError(f"no reads to pack ({skipped} skipped as unknown classes)", paths[0])
    min_len, max_len = acc.min_len, acc.max_len
    fixed = min_len == max_len
    class_dtype = "uint16" if n_classes < 65536 else "uint32"
    # Every run's totals (the last row of its table): O(runs), shared with forked workers.
    total = np.fromfile(runs_dir / F_TABLE, np.int64, count=len(acc.runs) * COLS,
                        offset=n_buckets * len(acc.runs) * COLS * 8).reshape(-1, COLS)
    sizes = acc.sizes if shuffle else total  # without shuffling, one bucket per run
    read_starts = np.concatenate([[0], np.cumsum(sizes[:, 0])])
    base_starts = np.concatenate([[0], np.cumsum(sizes[:, 4])])
    run_starts = np.concatenate([[0], np.cumsum(sizes[:, 1])])
    # Empty buckets are dropped: the store numbers the others 0, 1, ... and keys layouts by it.
    nonempty = np.flatnonzero(sizes[:, 0] > 0)
    tasks = [(int(b), j, int(read_starts[b]), int(base_starts[b]), int(run_starts[b]))
             for j, b in enumerate(nonempty)]
    class_file = "classes.u32" if class_dtype == "uint32" else "classes.u16"
    ctx = Pass2Context(runs=acc.runs, runs_dir=runs_dir, table_total=total,
                       fd_room=buckets.fd_room(len(acc.runs)), lut_offsets=lut_offsets,
                       mapped=mapping is not None, shuffle=shuffle, seed=seed,
                       n_classes=n_classes, class_dtype=np.dtype(class_dtype),
                       class_file=class_file, fixed_length=fixed, max_length=int(max_len),
                       out_dir=tmp)
    writer = _Writer(tmp, class_file, fixed, shuffle, n, int(base_starts[-1]),
                     int(run_starts[-1]), np.dtype(class_dtype).itemsize, ctx.files)
    t0 = time.monotonic()
    spent = SpentRuns(ctx)
    # Pass-2 workers fork from here and start with this process's resident heap: what pass 1
    # freed (one result per unit: hundreds at full size) goes back first.
    release_memory()
    try:
        for (b, *_), bk in zip(tasks, map_units_progress(
                buckets.build_bucket, tasks, [int(sizes[b, 0]) for b in nonempty], workers, ctx,
                desc=f"pack {out.name}: writing", unit="reads", enabled=progress)):
            writer.add(bk)
            spent.done(b)
        log.debug("pack pass 2 buckets: %.2f s", time.monotonic() - t0)
        files = writer.close()
    finally:
        ctx.files.close()  # those of this process (one worker); pool workers' close as they exit
    log.debug("pack pass 2 final files: %.2f s", time.monotonic() - t0)
    shutil.rmtree(runs_dir)
    log.debug("pack pass 2 (buckets, final files): %.2f s", time.monotonic() - t0)

    hist, skipped_keys, skipped_bad = acc.hist, acc.skipped_keys, acc.skipped_bad
    manifest = {
        "format": fmt.FORMAT,
        "format_version": fmt.FORMAT_VERSION,
        "created_by": f"readtax {__version__}",
        "read_count": n,
        "total_bases": int(writer.total_bases),
        "min_length": int(min_len),
        "max_length": int(max_len),
        "fixed_length": int(max_len) if fixed else None,
        "base_codes": "ACTG",
        "class_dtype": class_dtype,
        "label_scheme": getattr(scheme, "name", "lbl"),
        "label_map": label_map.to_rows(),
        "class_counts": class_counts.tolist(),
        "skipped_unknown": skipped,
        "skipped_unknown_classes": dict(sorted(skipped_keys.items())[:100]),
        "skipped_bad": dict(sorted(skipped_bad.items())),
        "seed": int(seed),
        "shuffled": bool(shuffle),
        "buckets": int(len(writer.bucket_starts) - 1),
        "id_block_reads": fmt.ID_BLOCK,
        "id_codec": "frontcoded-zlib",
        "stats": {
            "non_acgt": int(acc.non_acgt),
            "length_histogram": {str(i): int(c) for i, c in enumerate(hist) if c},
        },
        "inputs": [{"path": Path(p).name, "size": os.path.getsize(p)} for p in paths],
        "files": files,
    }
    (tmp / "manifest.json").write_text(fmt.manifest_text(manifest), encoding="utf-8")
    size = sum(f["size"] for f in files.values())
    log.info("packed %d reads of %d classes into %s: %.1f bytes per read", n, n_classes, out,
             size / n)
    report_skipped(skipped, skipped_bad)
    return manifest
