"""Packed-store benchmark: pack speed against `seqkit stats`, size, memory, loader speed, mixing.

Prints one figure per line. Default: 1M synthetic 150 bp reads (a few minutes on 2 cores);
``--reads 6000000`` gives the full 1.15 GB figure. Figures:

* pack wall time with 1 and 2 workers against ``seqkit stats`` on the same file (same run);
* bytes per read, in total and per file;
* peak RSS of the largest pack process on 1x and 4x the input (should be flat);
* loader: gather + 2-bit unpack of random batches of 1024 (one core), a StoreDataset in one
  process (sampler included), and a 2-worker DataLoader with a plain 2-bit collator;
* shuffle quality: distinct classes per batch of 256 when reading a store packed from a
  class-sorted input sequentially, and through the epoch permutation, against a true random
  permutation of the same labels;
* sequential against random batches with the store's pages evicted from the page cache
  (``posix_fadvise(DONTNEED)``, no root needed; it cannot evict pages other processes pin).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, readtax_cmd  # noqa: E402
from synth import make_fasta  # noqa: E402


class Clock:
    """Wall and CPU time of this process (CPU time is steadier on a shared machine)."""

    def __enter__(self) -> Clock:
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c

    def rates(self, reads: int) -> str:
        return (f"{reads / self.wall / 1e6:.2f} M reads/s wall, "
                f"{reads / self.cpu / 1e6:.2f} M reads/s per CPU second")


def seqkit_seconds(path: Path, threads: int) -> tuple[float, float] | None:
    """(wall s, CPU s) of ``seqkit stats``, median of five (the page cache is warm)."""
    exe = shutil.which("seqkit")
    if exe is None:
        return None
    m = measure([exe, "stats", "-j", str(threads), str(path)], repeat=5)
    return m.wall, m.cpu


def many_buckets(fa: Path, work: Path, size: int, ref) -> None:
    """Pack with buckets sized so that there are about 1,000, as a 100 GB input has: the
    per-bucket and per-(run, bucket) costs that a small input hides."""
    n_buckets = 1000
    code = ("import sys; from readtax.cli import _tune_allocator; _tune_allocator();"
            "from readtax.store import pack;"
            "pack([sys.argv[1]], sys.argv[2], workers=1, bucket_bytes=int(sys.argv[3]),"
            " force=True, progress=False)")
    out = work / "store_many"
    m = measure([sys.executable, "-c", code, str(fa), str(out), str(size // n_buckets + 1)],
                repeat=3, before=lambda: shutil.rmtree(out, ignore_errors=True))
    ratio = f"; {ref[0] / m.wall:.2f}x seqkit stats -j 1 wall" if ref else ""
    print(f"pack --workers 1 with {n_buckets} buckets (the count a 100 GB input gets): "
          f"{m.wall:.2f} s wall{ratio}")
    shutil.rmtree(out, ignore_errors=True)


def pack_cmd(inp: Path, out: Path, workers: int, *extra: str) -> list[str]:
    return readtax_cmd("pack", "-q", str(inp), "-o", str(out), "--workers", str(workers),
                       "--force", *extra)


def evict(path: Path) -> bool:
    ok = True
    for f in path.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            ok = False
        finally:
            os.close(fd)
    return ok


def distinct_per_batch(labels: np.ndarray, size: int = 256) -> float:
    m = len(labels) // size
    rows = np.sort(labels[: m * size].reshape(m, size), axis=1)
    return float(((np.diff(rows, axis=1) != 0).sum(axis=1) + 1).mean())


def loader_figures(store_path: Path, batch: int = 1024) -> None:
    from readtax.loader import StoreDataset, TwoBitCollator
    from readtax.store import ReadStore

    st = ReadStore(store_path)
    rng = np.random.default_rng(0)
    n_batches = max(20, min(300, len(st) // batch))
    idx = [rng.integers(0, len(st), batch) for _ in range(n_batches)]
    mapped = ReadStore(store_path, gather="mmap")
    for i in idx:  # map the pages once: later passes measure steady state
        mapped.batch(i)
    with Clock() as c:
        for i in idx:
            mapped.batch(i)
    print(f"gather+unpack from the mappings (gather='mmap'), random batches of {batch} "
          f"(1 process): {c.rates(n_batches * batch)}")
    if hasattr(mmap, "MADV_DONTNEED"):
        # The mapped gather with its pages unmapped after every batch, so that RSS stays
        # bounded: every batch faults its pages in again (benchmarks/bench_gather.py).
        maps = [a._mmap for a in (mapped.bases, mapped.offsets_, mapped.classes, mapped.nflags)
                if a is not None and hasattr(a, "_mmap")]
        with Clock() as c:
            for i in idx:
                mapped.batch(i)
                for m in maps:
                    m.madvise(mmap.MADV_DONTNEED)
        print(f"gather+unpack from the mappings, pages dropped after each batch "
              f"(madvise DONTNEED), random batches of {batch} (1 process): "
              f"{c.rates(n_batches * batch)}")
    with Clock() as c:
        for i in idx:
            st.batch(i)
    print(f"gather+unpack with pread (default), random batches of {batch} (1 process): "
          f"{c.rates(n_batches * batch)}")
    with Clock() as c:
        for k in range(n_batches):
            st.batch(np.arange(k * batch, (k + 1) * batch) % len(st))
    print(f"gather+unpack, sequential batches of {batch}: {c.rates(n_batches * batch)}")
    ds = StoreDataset(st, batch_size=batch, seed=1)
    with Clock() as c:
        reads = sum(len(b) for _, b in zip(range(n_batches), ds))
    print(f"StoreDataset, shuffled epoch, 1 process (sampler + gather): {c.rates(reads)}")
    bal = StoreDataset(st, batch_size=batch, seed=1, balance_temperature=0.5)
    with Clock() as c:
        reads = sum(len(b) for _, b in zip(range(n_batches), bal))
    print(f"StoreDataset, class-balanced (T=0.5), 1 process: {c.rates(reads)}")

    from torch.utils.data import DataLoader

    def keep(b):
        return b

    for name, collate in (("SeqBatch objects", keep),
                          ("2-bit collate to int64 tensors", TwoBitCollator(max_length=150))):
        dl = DataLoader(StoreDataset(st, batch_size=batch, seed=1, epochs=None),
                        batch_size=None, num_workers=2, collate_fn=collate, prefetch_factor=4)
        it = iter(dl)
        for _ in range(10):
            next(it)
        t = time.perf_counter()
        for _ in range(n_batches):
            next(it)
        dt = time.perf_counter() - t
        del it
        print(f"DataLoader, 2 workers, batch {batch}, {name}: "
              f"{n_batches * batch / dt / 1e6:.2f} M reads/s wall")


def shuffle_quality(path: Path, workdir: Path, n: int) -> None:
    from readtax.loader import StoreDataset
    from readtax.store import ReadStore

    sorted_fa = make_fasta(path, n, sorted_by_class=True)
    st_path = workdir / "sorted.store"
    subprocess.run(pack_cmd(sorted_fa, st_path, 2), check=True)
    st = ReadStore(st_path)
    seq_labels = np.asarray(st.classes, np.int64)
    rand = np.random.default_rng(5).permutation(seq_labels)
    ds = StoreDataset(st, batch_size=256, seed=3)
    epoch = np.concatenate([b.labels for _, b in zip(range(2000), ds)])
    base = distinct_per_batch(rand)
    for name, lab in (("store read sequentially", seq_labels),
                      ("epoch permutation (StoreDataset)", epoch)):
        got = distinct_per_batch(lab)
        print(f"shuffle quality, class-sorted input, {name}: {got:.2f} distinct classes per "
              f"batch of 256 vs {base:.2f} for a true random permutation "
              f"({100 * (got - base) / base:+.2f}%)")
    naive = distinct_per_batch(np.sort(seq_labels))
    print(f"  (the class-sorted input itself: {naive:.2f})")


def cold_cache(store_path: Path, batch: int = 1024) -> None:
    from readtax.store import ReadStore

    st = ReadStore(store_path)
    n_batches = max(10, min(200, len(st) // batch))
    rng = np.random.default_rng(1)
    for name in ("sequential", "random"):
        if not evict(store_path):
            print("cold cache: posix_fadvise not available; skipped")
            return
        st = ReadStore(store_path)
        with Clock() as c:
            for k in range(n_batches):
                if name == "sequential":
                    st.batch(np.arange(k * batch, (k + 1) * batch) % len(st))
                else:
                    st.batch(rng.integers(0, len(st), batch))
        print(f"cold page cache, {name} batches of {batch}: {c.rates(n_batches * batch)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--data", default=None, help="where synthetic FASTA files are kept/reused")
    ap.add_argument("--no-rss", action="store_true", help="skip the 4x memory run")
    a = ap.parse_args()
    work = Path(a.dir or tempfile.mkdtemp(prefix="bench_store."))
    work.mkdir(parents=True, exist_ok=True)
    data = Path(a.data) if a.data else work
    data.mkdir(parents=True, exist_ok=True)
    n = a.reads
    fa = make_fasta(data / f"reads_{n}.fa", n)
    size = fa.stat().st_size
    print(f"input: {n:,} reads x 150 bp, {size / 1e9:.3f} GB, 3,507 classes ({fa}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    sk = {j: seqkit_seconds(fa, j) for j in (1, 2)}
    for j, r in sk.items():
        if r is None:
            print("seqkit not found (apt-get install -y seqkit): no reference figure")
            break
        print(f"seqkit stats -j {j}: {r[0]:.2f} s wall ({size / r[0] / 1e9:.2f} GB/s), "
              f"{r[1]:.2f} CPU s")
    store = work / "store"
    rss = {}
    for workers in (1, 2):
        wall, rss[workers], cpu = measure(pack_cmd(fa, store, workers), repeat=5,
                                          before=lambda: shutil.rmtree(store, ignore_errors=True))
        ref = sk.get(1)
        ratio = (f"; {ref[0] / wall:.2f}x seqkit stats -j 1 wall, "
                 f"{ref[1] / cpu:.2f}x its CPU time") if ref else ""
        print(f"pack --workers {workers}: {wall:.2f} s wall ({size / wall / 1e6:.0f} MB/s), "
              f"{cpu:.2f} CPU s{ratio}; peak RSS {rss[workers]:.0f} MB (largest process)")
    man = json.loads((store / "manifest.json").read_text())
    total = sum(f["size"] for f in man["files"].values())
    print(f"store: {total / n:.2f} bytes per read ({total / 1e6:.1f} MB, "
          f"{man['buckets']} buckets)")
    for name, f in sorted(man["files"].items(), key=lambda kv: -kv[1]["size"]):
        print(f"  {name:20s} {f['size'] / n:7.3f} bytes per read")
    if not a.no_rss:
        fa4 = make_fasta(data / f"reads_{4 * n}.fa", 4 * n)
        wall4, rss4, _ = measure(pack_cmd(fa4, work / "store4", 2))
        print(f"peak RSS, pack --workers 2: {rss[2]:.0f} MB on 1x, {rss4:.0f} MB on 4x input "
              f"({4 * n:,} reads packed in {wall4:.1f} s)")
        shutil.rmtree(work / "store4", ignore_errors=True)
    many_buckets(fa, work, size, sk.get(1))
    loader_figures(store)
    shuffle_quality(data / f"reads_{n}.sorted.fa", work, n)
    cold_cache(store)


if __name__ == "__main__":
    main()
