"""readtax subset (--per-species 1000 --val-per-species 200) against seqkit stats, 1x and 4x.

Both passes and the writing of both outputs are timed as one child process; seqkit stats on the
same file in the same run is the yardstick. Targets (issue 3): wall time <= 2.5x seqkit's, peak
RSS <= 200 MB and flat between the two sizes. CPU seconds (user + system of the whole process
tree) are printed too: on a shared machine they vary far less than wall time.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from common import DATA, HERE, machine, measure, need, now, readtax_cmd, table, warm
from synth import make_fasta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reads", type=int, default=6_000_000, help="reads at 1x (default 6M ≈ 1.1 GB)")
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-species", type=int, default=1000)
    ap.add_argument("--val-per-species", type=int, default=200)
    a = ap.parse_args()
    seqkit = need("seqkit")
    DATA.mkdir(parents=True, exist_ok=True)
    out_dir = HERE / "out" / "subset"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for scale in [int(s) for s in a.scales.split(",")]:
            n = a.reads * scale
            path = make_fasta(DATA / f"synth_{n}.fa", n)
            size = path.stat().st_size
            warm(path)
            t_seqkit, _, c_seqkit = measure([seqkit, "stats", str(path)], repeat=3)
            train, val = out_dir / "train.fa", out_dir / "val.fa"

            def fresh(outs=(train, val)) -> None:
                # Fresh outputs: renaming over an existing file makes ext4 flush it to disk
                # first (auto_da_alloc), which would time the disk rather than readtax.
                for old in outs:
                    old.unlink(missing_ok=True)

            t_rt, rss, c_rt = measure(readtax_cmd(
                "subset", str(path), "-o", str(train), "--val-output", str(val),
                "--per-species", str(a.per_species), "--val-per-species", str(a.val_per_species),
                "--workers", str(a.workers), "--force", "--quiet"), repeat=3, before=fresh)
            written = train.stat().st_size + val.stat().st_size
            ratio = t_rt / t_seqkit
            rows.append([f"{scale}x", f"{n:,}", f"{size / 1e9:.2f}", f"{written / 1e9:.2f}",
                         f"{t_seqkit:.2f}", f"{t_rt:.2f}", f"{ratio:.2f}", f"{c_seqkit:.2f}",
                         f"{c_rt:.2f}", f"{rss:.0f}"])
            print(f"{scale}x: seqkit stats {t_seqkit:.2f}s ({c_seqkit:.2f} CPU s), readtax subset "
                  f"{t_rt:.2f}s ({c_rt:.2f} CPU s; {ratio:.2f}x wall), peak RSS {rss:.0f} MB",
                  file=sys.stderr)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    print(f"## subset ({now()}; {machine()}; readtax --workers {a.workers}, "
          f"--per-species {a.per_species} --val-per-species {a.val_per_species})\n")
    print(table(rows, ["size", "reads", "GB in", "GB written", "seqkit stats s",
                       "readtax subset s", "time ratio (readtax/seqkit, target <= 2.5)",
                       "seqkit CPU s", "readtax CPU s", "readtax peak RSS MB"]))


if __name__ == "__main__":
    main()
