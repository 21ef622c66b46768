"""readtax predict: reads/s of the fast baseline on CPU and peak RSS at 1x vs 10x input.

The model is a kmer-cnn (``init-model --arch kmer-cnn --size tiny``, random weights, 3,507
classes) wrapped as a run directory, or a trained run given with ``--run``. Inputs are synthetic
150 bp reads (synth.py). Each figure is one ``readtax predict`` process (wall time includes
start-up; ``steady reads/s`` subtracts a 1,000-read run's time). Peak RSS is the largest
process of the command's tree. Target (issue 8): peak RSS flat between 1x and 10x.

Defaults fit a 2-core box in a few minutes; ``--reads 1000000`` gives the 1M vs 10M figures.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import DATA, machine, measure, now, readtax_cmd, table, warm
from synth import make_fasta, make_mapping


def make_run(out: Path, classes: int) -> Path:
    """A run directory holding a random-initialised kmer-cnn tiny classifier (rebuilt each
    time: it takes a second, and a cached one may predate a change of the model code)."""
    import shutil

    init = out.parent / "kmer-cnn-tiny-init"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(init, ignore_errors=True)
    from readtax.labels import load_mapping
    from readtax.models import build_classifier, init_model, save_classifier

    mapping = make_mapping(out.parent / f"mapping_{classes}.tsv", classes)
    backbone = init_model("kmer-cnn", "tiny", init, seed=0)
    save_classifier(build_classifier(backbone, load_mapping(mapping), seed=0), out / "model")
    return out


def predict_cmd(run: Path, data: Path, out: Path, workers: int, batch: int, extra=()) -> list:
    return readtax_cmd("predict", str(run), str(data), "-o", str(out), "--force", "-q",
                       "--device", "cpu", "--num-workers", str(workers), "--batch-size",
                       str(batch), *extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reads", type=int, default=20_000, help="reads at 1x (default 20,000)")
    ap.add_argument("--classes", type=int, default=3507)
    ap.add_argument("--run", help="a trained run directory (default: random kmer-cnn tiny)")
    ap.add_argument("--workers", default="0,1", help="--num-workers values to time at 1x")
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    run = Path(a.run) if a.run else make_run(DATA / f"predict_run_{a.classes}", a.classes)
    out = DATA / "predict_out.tsv"
    workers = [int(w) for w in a.workers.split(",")]

    base = make_fasta(DATA / "synth_1000.fa", 1000, a.classes)
    t0, _, _ = measure(predict_cmd(run, base, out, workers[0], a.batch_size))
    rows = []
    for scale in (1, 10):
        n = a.reads * scale
        data = make_fasta(DATA / f"synth_{n}.fa", n, a.classes)
        warm(data)
        for w in workers if scale == 1 else workers[-1:]:
            t, rss, _ = measure(predict_cmd(run, data, out, w, a.batch_size,
                                         ["--kraken-out", str(out) + ".k",
                                          "--report", str(out) + ".r", "--top-k", "5"]))
            steady = (n - 1000) / max(t - t0, 1e-9)
            rows.append([f"{scale}x", f"{n:,}", w, f"{t:.1f}", f"{n / t:,.0f}",
                         f"{steady:,.0f}", f"{rss:.0f}"])
            print(f"{scale}x {n:,} reads, workers {w}: {t:.1f}s, {n / t:,.0f} reads/s, "
                  f"peak RSS {rss:.0f} MB", file=sys.stderr)
    rss1 = [float(r[-1]) for r in rows if r[0] == "1x" and r[2] == workers[-1]][0]
    rss10 = float(rows[-1][-1])
    print(f"## predict ({now()}; {machine()}; load average {os.getloadavg()[0]:.1f}; "
          f"CPU, batch {a.batch_size}, "
          f"{'run ' + str(run) if a.run else f'kmer-cnn tiny, {a.classes} classes'})\n")
    print(table(rows, ["size", "reads", "workers", "wall s", "reads/s", "steady reads/s",
                       "peak RSS MB"]))
    print(f"\npeak RSS 10x / 1x: {rss10 / rss1:.2f} (start-up run of 1,000 reads: {t0:.1f}s; "
          "outputs: TSV with top-5, Kraken2 per-read output and report)")


if __name__ == "__main__":
    main()
