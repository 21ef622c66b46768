"""Streaming loader (readtax.stream.StreamDataset) on synthetic 150 bp FASTA.

Prints:
  1. reads/s of one worker (in-process, labels parsed, no tokenisation) for file-order reading,
     the default shuffle (blocks of 65,536 reads from 128 open ranges) and shuffle + reverse-
     complement augmentation; target >= 1M reads/s per worker;
  2. reads/s through a torch DataLoader with 1 and 2 worker processes (scaling), next to the
     DataLoader's own ceiling for passing batches of 256 reads between processes;
  3. peak RSS of a child process streaming the whole file at 1x and 4x size (should be flat);
  4. batch class mixing on a class-sorted file: mean distinct classes per batch of 256 for the
     stream (several open_ranges / shuffle_buffer settings), file order, a true random
     permutation, and the packed store's global shuffle when readtax.store exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import DATA, machine, measure, now, readtax_cmd, table, warm
from synth import make_fasta, make_mapping

BATCH = 256


def _label_map():
    from readtax.labels import load_mapping

    return load_mapping(make_mapping(DATA / "mapping_3507.tsv"))


def _identity(batch):
    return batch


def throughput(path: Path, limit: int | None, **kw) -> tuple[int, float, float]:
    """(reads, wall s, CPU s) of iterating a StreamDataset in this process."""
    from readtax.stream import StreamDataset

    ds = StreamDataset([str(path)], batch_size=BATCH, label_map=_label_map(), **kw)
    n = 0
    t, c = time.perf_counter(), time.process_time()
    for b in ds:
        n += len(b)
        if limit and n >= limit:
            break
    return n, time.perf_counter() - t, time.process_time() - c


def reader_throughput(path: Path, limit: int | None) -> tuple[int, float, float]:
    """The floor: FastxReader + label parsing alone, sequentially, no batching or shuffling."""
    from readtax.fastx import FastxReader
    from readtax.labels import Labeler, make_scheme

    labeler = Labeler(make_scheme("lbl"), _label_map())
    n = 0
    t, c = time.perf_counter(), time.process_time()
    for rb in FastxReader(path):
        rb.seq  # noqa: B018 - the stream builds the bases too
        labeler.classes(rb)
        n += len(rb)
        if limit and n >= limit:
            break
    return n, time.perf_counter() - t, time.process_time() - c


def loader_throughput(path: Path, workers: int, limit: int | None) -> tuple[int, float]:
    from readtax.stream import StreamDataset

    ds = StreamDataset([str(path)], batch_size=BATCH, label_map=_label_map())
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                         collate_fn=_identity, prefetch_factor=4)
    n = 0
    t = time.perf_counter()
    for b in loader:
        n += len(b)
        if limit and n >= limit:
            break
    return n, time.perf_counter() - t


class ConstantBatches(torch.utils.data.IterableDataset):
    """One fixed batch of 150 bp reads, repeated: what the DataLoader alone costs per batch."""

    def __init__(self, n_batches: int) -> None:
        super().__init__()
        self.n_batches = n_batches

    def __iter__(self):
        from readtax.batch import SeqBatch

        info = torch.utils.data.get_worker_info()
        workers = 1 if info is None else info.num_workers
        batch = SeqBatch(np.full(BATCH * 150, 65, np.uint8),
                         np.arange(BATCH + 1, dtype=np.int64) * 150, np.zeros(BATCH, np.int64),
                         None, None, {"loader": "stream", "state": {"cursors": [[0, 0]] * 128}})
        for _ in range(self.n_batches // workers):
            yield batch


def ipc_ceiling(workers: int, n_batches: int = 4000) -> float:
    loader = torch.utils.data.DataLoader(ConstantBatches(n_batches), batch_size=None,
                                         num_workers=workers, collate_fn=_identity,
                                         prefetch_factor=4)
    t = time.perf_counter()
    n = sum(len(b) for b in loader)
    return n / (time.perf_counter() - t) / 1e6


def distinct_classes(batches) -> float:
    return float(np.mean([len(np.unique(b)) for b in batches]))


def _labels(ds, limit: int | None) -> list[np.ndarray]:
    """Label arrays of the dataset's batches, up to about ``limit`` reads."""
    labels, n = [], 0
    for b in ds:
        labels.append(b.labels)
        n += len(b)
        if limit and n >= limit:
            break
    return labels


def stream_mixing(path: Path, limit: int | None, **kw) -> float:
    from readtax.stream import StreamDataset

    ds = StreamDataset([str(path)], batch_size=BATCH, label_map=_label_map(), drop_last=True,
                       **kw)
    return distinct_classes(_labels(ds, limit))


def random_mixing(n_reads: int) -> float:
    """The same class sizes in a uniformly random order (what a global shuffle gives)."""
    from synth import class_sizes

    labels = np.repeat(np.arange(3507), class_sizes(n_reads, 3507, 0))
    labels = np.random.default_rng(1).permutation(labels)
    n = len(labels) // BATCH * BATCH
    return distinct_classes(labels[:n].reshape(-1, BATCH))


def store_mixing(path: Path, limit: int | None) -> str:
    """Distinct classes per batch from the packed store, if the store exists in this tree."""
    if importlib.util.find_spec("readtax.store") is None or importlib.util.find_spec(
            "readtax.loader") is None:
        return "n/a (readtax.store not built yet)"
    store = DATA / (path.stem + ".store")
    if not (store / "manifest.json").exists():
        cmd = readtax_cmd("pack", str(path), "-o", str(store), "--mapping",
                          str(DATA / "mapping_3507.tsv"), "--force")
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            cmd.remove("--force")
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                return f"n/a (readtax pack failed: {done.stderr.strip()[:80]})"
    from readtax.loader import StoreDataset

    ds = StoreDataset(str(store), batch_size=BATCH, seed=0, shuffle=True, drop_last=True)
    return f"{distinct_classes(_labels(ds, limit)):.1f}"


def child(path: str) -> None:
    """Stream the whole file once with the default settings (for the RSS measurement)."""
    n, dt, _ = throughput(Path(path), None)
    print(f"{n} reads in {dt:.1f}s", file=sys.stderr)


def speed(path: Path, limit: int | None) -> None:
    n, dt, cpu = reader_throughput(path, limit)
    rows = [["reference: FastxReader + labels alone", f"{n:,}", f"{n / dt / 1e6:.2f}",
             f"{n / cpu / 1e6:.2f}"]]
    for name, kw in [("file order (shuffle=False)", dict(shuffle=False)),
                     ("shuffle (defaults)", {}),
                     ("shuffle + augment_rc", dict(augment_rc=True))]:
        n, dt, cpu = throughput(path, limit, **kw)
        rows.append([name, f"{n:,}", f"{n / dt / 1e6:.2f}", f"{n / cpu / 1e6:.2f}"])
        print(f"{name}: {n / dt / 1e6:.2f}M reads/s", file=sys.stderr)
    print("### One worker, in process (labels parsed, no tokenisation)\n")
    print(table(rows, ["mode", "reads", "M reads/s (wall)", "M reads/s per CPU-second"]))


def scaling(path: Path, limit: int | None) -> None:
    rows = []
    base = None
    for workers in (1, 2):
        n, dt = loader_throughput(path, workers, limit)
        rate = n / dt / 1e6
        base = base or rate
        ceiling = ipc_ceiling(workers)
        rows.append([workers, f"{n:,}", f"{rate:.2f}", f"{rate / base:.2f}x", f"{ceiling:.2f}"])
        print(f"DataLoader {workers} workers: {rate:.2f}M reads/s (ceiling {ceiling:.2f})",
              file=sys.stderr)
    print("\n### DataLoader worker processes (default shuffle, batches of 256)\n")
    print(table(rows, ["workers", "reads", "M reads/s", "vs 1 worker",
                       "DataLoader ceiling, constant batch (M reads/s)"]))


def memory(reads: int, scales: str) -> None:
    rows = []
    for scale in [int(s) for s in scales.split(",")]:
        n = reads * scale
        p = make_fasta(DATA / f"synth_{n}.fa", n)
        warm(p)
        dt, rss, _ = measure([sys.executable, __file__, "--child", str(p)])
        rows.append([f"{scale}x", f"{n:,}", f"{p.stat().st_size / 1e9:.2f}", f"{dt:.1f}",
                     f"{n / dt / 1e6:.2f}", f"{rss:.0f}"])
        print(f"{scale}x: {dt:.1f}s, peak RSS {rss:.0f} MB", file=sys.stderr)
    print("\n### Whole file, one process, default shuffle\n")
    print(table(rows, ["size", "reads", "GB", "s", "M reads/s", "peak RSS MB"]))


def mixing(reads: int, limit: int | None) -> None:
    sorted_path = make_fasta(DATA / f"synth_sorted_{reads}.fa", reads, sorted_by_class=True)
    warm(sorted_path)
    rows = [["random permutation (ideal global shuffle)", f"{random_mixing(reads):.1f}"],
            ["packed store (readtax.loader.StoreDataset)", store_mixing(sorted_path, limit)]]
    for name, kw in [("stream, file order (shuffle=False)", dict(shuffle=False)),
                     ("stream, shuffle_buffer=0 (range order only)", dict(shuffle_buffer=0)),
                     ("stream, open_ranges=1", dict(open_ranges=1)),
                     ("stream, open_ranges=8", dict(open_ranges=8)),
                     ("stream, open_ranges=32", dict(open_ranges=32)),
                     ("stream, defaults (open_ranges=128, shuffle_buffer=65,536)", {}),
                     ("stream, open_ranges=512", dict(open_ranges=512)),
                     ("stream, shuffle_buffer=262,144", dict(shuffle_buffer=262144))]:
        value = stream_mixing(sorted_path, limit, **kw)
        rows.append([name, f"{value:.1f}"])
        print(f"mixing {name}: {value:.1f}", file=sys.stderr)
    print(f"\n### Class mixing on a class-sorted file ({reads:,} reads, 3,507 classes, "
          f"mean {reads / 3507:,.0f} reads per class)\n")
    print(table(rows, ["order", f"mean distinct classes per batch of {BATCH}"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=6_000_000, help="reads at 1x (6M ≈ 1.1 GB)")
    ap.add_argument("--scales", default="1,4", help="sizes for the RSS measurement")
    ap.add_argument("--limit", type=int, default=3_000_000,
                    help="reads per throughput/mixing run (0: whole file)")
    ap.add_argument("--parts", default="speed,scaling,memory,mixing",
                    help="which measurements to run (comma-separated)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return
    DATA.mkdir(parents=True, exist_ok=True)
    limit = a.limit or None
    parts = set(a.parts.split(","))
    path = make_fasta(DATA / f"synth_{a.reads}.fa", a.reads)
    warm(path)
    print(f"## stream ({now()}; {machine()}; load average {os.getloadavg()[0]:.1f})\n")
    if "speed" in parts:
        speed(path, limit)
    if "scaling" in parts:
        scaling(path, limit)
    if "memory" in parts:
        memory(a.reads, a.scales)
    if "mixing" in parts:
        mixing(a.reads, limit)


if __name__ == "__main__":
    main()
