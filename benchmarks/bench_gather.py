"""Store batch gather over a shuffled epoch: reads/s per CPU second and the loader's RSS.

Modes, each in a fresh process reading one shuffled epoch (a seeded bijection, batches of
1024 through ``ReadStore.batch``: bases unpacked, N runs restored, labels):

* ``pread``: ``ReadStore(gather="pread")``, the default;
* ``mmap``: ``ReadStore(gather="mmap")``, gathering from the mappings;
* ``drop-K``: the mapped gather in chunks of K reads, and after a chunk, once the process's
  file-mapped RSS (``/proc/self/statm``) has grown by more than ``--budget`` MB since the last
  drop, ``madvise(MADV_DONTNEED)`` on every store mapping (on a read-only file mapping that
  unmaps the pages; they stay page cache). K = 1024 drops between batches only.

Printed per mode: reads/s per CPU second and wall, the largest file-mapped RSS seen after a
batch, the kernel's exact peak RSS (``ru_maxrss``, what a memory limit sees, peaks inside a
batch included) and the number of drops. First, per store, how much of the bases mapping one
byte read from a random page makes resident (the kernel's fault-around: it sets what a drop
costs, since every later access faults again). Give a store and one several times its size
to see whether RSS grows with the store::

    python benchmarks/bench_gather.py STORE_1X STORE_5X [--reads-limit N] [--modes pread,mmap]

Stores: ``benchmarks/synth.py --streaming`` + ``readtax pack``. Linux only; not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

EPOCH = """
import json, mmap, os, resource, sys, time
import numpy as np
from readtax.sampler import permute
from readtax.store import ReadStore

path, mode, batch, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
chunk = int(mode.split("-")[1]) if mode.startswith("drop-") else batch
budget = int(sys.argv[5]) << 20
st = ReadStore(path, gather="pread" if mode == "pread" else "mmap")
maps = [a._mmap for a in (st.bases, st.offsets_, st.classes, st.nflags, st.nstart, st.nlen)
        if a is not None and hasattr(a, "_mmap")]
statm = os.open("/proc/self/statm", os.O_RDONLY)
page = os.sysconf("SC_PAGE_SIZE")

def file_rss():  # resident file-mapped + shared memory bytes: one read, a few microseconds
    return int(os.pread(statm, 200, 0).split()[2]) * page

n = min(len(st), limit) if limit else len(st)
file0 = floor = most = file_rss()
drops = 0
t, c = time.perf_counter(), time.process_time()
for lo in range(0, n, batch):  # the epoch order: a seeded bijection, no O(n) array
    order = permute(np.arange(lo, min(lo + batch, n)), len(st), 12345).astype(np.int64)
    for k in range(0, len(order), chunk):
        st.batch(order[k : k + chunk])
        if mode.startswith("drop-") and file_rss() - floor > budget:
            for m in maps:
                m.madvise(mmap.MADV_DONTNEED)
            drops += 1
            floor = file_rss()
    most = max(most, file_rss())
wall, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"reads": n, "wall": wall, "cpu": cpu, "file0": file0, "file_end": most,
                  "drops": drops,
                  "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

FOOTPRINT = """
import mmap, sys
import numpy as np

def rss_kb(name):
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split(" ", 1)[0]
            if "-" in first and all(ch in "0123456789abcdef-" for ch in first):
                inside = line.rstrip().endswith(name)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total

path = sys.argv[1]
rng = np.random.default_rng(0)
for advice in ((), ("MADV_RANDOM",), ("MADV_NOHUGEPAGE",)):
    a = np.memmap(path, np.uint8, mode="r")
    for name in advice:
        a._mmap.madvise(getattr(mmap, name))
    grown = []
    for _ in range(8):
        before = rss_kb(path)
        int(a[int(rng.integers(0, len(a)))])
        grown.append(rss_kb(path) - before)
    print(f"  one byte read from a random page of {path.split('/')[-1]} "
          f"({' '.join(advice) or 'no advice'}): mapping RSS +{min(grown)}..{max(grown)} kB")
    del a
"""

MODES = ("pread", "mmap", "drop-1024", "drop-64", "drop-16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--reads-limit", type=int, default=0, help="stop each epoch after N reads")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--budget", type=int, default=64,
                    help="drop-K: MB of file-mapped RSS growth that triggers a drop")
    a = ap.parse_args()
    for store in a.stores:
        man = json.loads((Path(store) / "manifest.json").read_text())
        size = sum(f["size"] for f in man["files"].values())
        print(f"store {store}: {man['read_count']:,} reads, {size / 1e6:.0f} MB")
        print(subprocess.run([sys.executable, "-c", FOOTPRINT, str(Path(store) / "bases.2bit")],
                             check=True, capture_output=True, text=True).stdout, end="")
        for mode in a.modes.split(","):
            out = subprocess.run([sys.executable, "-c", EPOCH, store, mode, str(a.batch),
                                  str(a.reads_limit), str(a.budget)], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"  {mode:9s} {r['reads'] / r['cpu'] / 1e6:5.2f} M reads/s per CPU s, "
                  f"{r['reads'] / r['wall'] / 1e6:5.2f} M wall; file-mapped RSS after batches "
                  f"<= {r['file_end'] / 2**20:5.0f} MB (at start {r['file0'] / 2**20:.0f}), "
                  f"peak RSS {r['maxrss'] / 1024:5.0f} MB; {r['drops']} drops", flush=True)


if __name__ == "__main__":
    main()
