"""readtax stats against seqkit stats on synthetic 150 bp FASTA at 1x and 4x size.

Prints wall times, the throughput ratio and readtax's peak RSS. Targets (issue 2): readtax at
>= 0.5x seqkit's throughput; peak RSS <= 200 MB and within 10% between the two sizes.
"""

from __future__ import annotations

import argparse
import sys

from common import DATA, machine, measure, need, now, readtax_cmd, table, warm
from synth import make_fasta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reads", type=int, default=6_000_000, help="reads at 1x (default 6M ≈ 1.1 GB)")
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    seqkit = need("seqkit")
    DATA.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in [int(s) for s in a.scales.split(",")]:
        n = a.reads * scale
        path = make_fasta(DATA / f"synth_{n}.fa", n)
        size = path.stat().st_size
        warm(path)
        t_seqkit = measure([seqkit, "stats", str(path)], repeat=3).wall
        t_rt, rss, _ = measure(readtax_cmd("stats", "--workers", str(a.workers), str(path)),
                               repeat=3)
        ratio = t_seqkit / t_rt
        rows.append([f"{scale}x", f"{n:,}", f"{size / 1e9:.2f}", f"{t_seqkit:.2f}",
                     f"{size / t_seqkit / 1e9:.2f}", f"{t_rt:.2f}", f"{size / t_rt / 1e9:.2f}",
                     f"{ratio:.2f}", f"{rss:.0f}"])
        print(f"{scale}x: seqkit {t_seqkit:.2f}s, readtax {t_rt:.2f}s, ratio {ratio:.2f}, "
              f"readtax peak RSS {rss:.0f} MB", file=sys.stderr)
    print(f"## stats ({now()}; {machine()}; readtax --workers {a.workers})\n")
    print(table(rows, ["size", "reads", "GB", "seqkit s", "seqkit GB/s", "readtax s",
                       "readtax GB/s", "throughput ratio (readtax/seqkit)", "readtax peak RSS MB"]))


if __name__ == "__main__":
    main()
