"""Scale rehearsal: the seed's workload (150M reads x 150 bp, 3,507 skewed classes) through
every verb on this machine, with wall time, CPU time, peak RSS and bytes written per step.

One command; not part of the test suite::

    python benchmarks/scale_rehearsal.py --reads 150000000 --data /work/scale-data

Steps (``--steps`` picks some): generate the labelled FASTA and a validation file (streaming,
seeded; reused when already there with the same parameters), ``stats``, ``subset
--per-species 1000 --val-per-species 200``, ``pack`` (default buckets and workers),
``verify``, one full shuffled epoch of the store loader (batch 1024, 2 DataLoader workers),
2,000 steps of default kmer-cnn training from the store, ``evaluate`` on 1M validation reads
and ``predict --report`` on the validation file. Peak RSS is given for the largest process
(exact, from the kernel) and for the whole process tree, and the largest process's anonymous
and file-mapped parts apart (sampled every 0.2 s), since mapped file pages are page cache.

Refuses (exit 2) before writing anything if the disk lacks room. Everything it generates is
deleted at the end unless ``--keep``; results are appended as JSON lines to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, measure_tree, now, readtax_cmd, table  # noqa: E402
from synth import make_mapping  # noqa: E402

STEPS = ("generate", "stats", "subset", "pack", "verify", "loader", "train", "evaluate",
         "predict")
FASTA_BYTES_PER_READ = 200  # a 150 bp read with its lbl header and newlines
STORE_BYTES_PER_READ = 46  # the store (~44 B/read) plus pass-1 run files while packing
HEADROOM = 2 << 30

LOADER = """
import sys, time
import torch
from torch.utils.data import DataLoader
from readtax.loader import StoreDataset
torch.set_num_threads(1)
ds = StoreDataset(sys.argv[1], batch_size=int(sys.argv[2]), seed=0, shuffle=True, epochs=1)
limit = int(sys.argv[4])
dl = DataLoader(ds, batch_size=None, num_workers=int(sys.argv[3]), collate_fn=lambda b: b,
                prefetch_factor=4)
t, reads, batches = time.perf_counter(), 0, 0
for b in dl:
    reads += len(b.labels)
    batches += 1
    if limit and batches >= limit:
        break
dt = time.perf_counter() - t
print(f"LOADER {reads} {batches} {dt:.3f}", file=sys.stderr)
"""


def need_bytes(reads: int, val_reads: int, steps: list[str], data: Path) -> int:
    """Bytes still to be written under ``data`` (files already there are reused)."""
    total = HEADROOM
    if "generate" in steps:
        for path, n in ((fasta_path(data, reads), reads), (val_path(data, val_reads), val_reads)):
            if not path.exists():
                total += n * FASTA_BYTES_PER_READ
    if "pack" in steps:
        total += 2 * reads * STORE_BYTES_PER_READ  # runs and store coexist during pass 2
    if "subset" in steps:
        total += 3507 * 1200 * FASTA_BYTES_PER_READ
    if "predict" in steps:
        total += val_reads * 120  # per-read TSV
    return total


def fasta_path(data: Path, reads: int) -> Path:
    return data / f"reads-{reads}.fa"


def val_path(data: Path, val_reads: int) -> Path:
    return data / f"val-{val_reads}.fa"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=150_000_000)
    ap.add_argument("--val-reads", type=int, default=10_000_000)
    ap.add_argument("--data", type=Path, default=Path("/work/scale-data"),
                    help="working directory for the generated data, store and runs")
    ap.add_argument("--steps", default=",".join(STEPS),
                    help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--loader-batches", type=int, default=0,
                    help="stop the loader after this many batches (default: a full epoch)")
    ap.add_argument("--train-steps", type=int, default=2000)
    ap.add_argument("--eval-reads", type=int, default=1_000_000)
    ap.add_argument("--results", type=Path, default=None,
                    help="JSON lines file to append results to (default: DATA/results.jsonl)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    ap.add_argument("--summary", type=Path, default=None, metavar="RESULTS_JSONL",
                    help="print Markdown tables of an earlier run's results and exit")
    a = ap.parse_args()
    if a.summary is not None:
        summary(a.summary)
        return
    steps = [s for s in a.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        sys.exit(f"scale_rehearsal: unknown step(s) {', '.join(unknown)}; known: {STEPS}")
    data = a.data
    data.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(data).free
    want = need_bytes(a.reads, a.val_reads, steps, data)
    if free < want:
        print(f"scale_rehearsal: {data} has {free / 2**30:.1f} GiB free, the run needs about "
              f"{want / 2**30:.1f} GiB (FASTA ~{FASTA_BYTES_PER_READ} B/read, store and runs "
              f"~{2 * STORE_BYTES_PER_READ} B/read, 2 GiB headroom); free space or use --data",
              file=sys.stderr)
        sys.exit(2)
    results = a.results or data / "results.jsonl"
    made: list[Path] = []
    try:
        run_steps(a, steps, data, results, made)
    finally:
        if not a.keep:
            for p in made:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                    Path(str(p) + ".params").unlink(missing_ok=True)


def run_steps(a, steps: list[str], data: Path, results: Path, made: list[Path]) -> None:
    n, tag = a.reads, f"{a.reads // 1_000_000}M"
    fa, val = fasta_path(data, n), val_path(data, a.val_reads)
    mapping = data / "mapping.tsv"
    store, sub, sub_val = data / f"store-{tag}", data / f"subset-{tag}.fa", data / f"subval-{tag}.fa"
    model, run, ev = data / "kmer-cnn", data / f"run-{tag}", data / f"eval-{tag}"
    pred, report = data / f"pred-{tag}.tsv", data / f"report-{tag}.txt"
    # Only what this run creates is removed at the end (data reused from an earlier --keep
    # run stays).
    made += [p for p in (fa, val, mapping, store, sub, sub_val, model, run, ev, pred, report,
                         data / "stats.json") if not p.exists()]
    rows = []

    def record(step: str, m, extra: dict | None = None) -> None:
        row = {"step": step, "reads": n, "when": now(), "load": os.getloadavg()[0],
               **m._asdict(), **(extra or {})}
        with open(results, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        rows.append([step, f"{m.wall:.1f}", f"{m.cpu:.1f}", f"{m.rss_max:.0f}",
                     f"{m.rss_tree:.0f}", f"{m.anon_max:.0f}", f"{m.file_max:.0f}",
                     f"{m.written / 1e9:.2f}", (extra or {}).get("note", "")])
        print(f"{step}: {m.wall:.1f} s wall, {m.cpu:.1f} CPU s, peak RSS {m.rss_max:.0f} MB "
              f"(tree {m.rss_tree:.0f}; anon {m.anon_max:.0f} + file {m.file_max:.0f}), "
              f"{m.written / 1e9:.2f} GB written {extra or ''}", flush=True)
        if m.rc != 0:
            raise SystemExit(f"scale_rehearsal: step {step} failed (exit {m.rc}); "
                             f"see {data / (step + '.log')}")

    def run_step(step: str, cmd: list[str], extra: dict | None = None):
        log = data / f"{step}-{tag}.log"
        if not log.exists():
            made.append(log)
        m = measure_tree(cmd, log=log)
        record(step, m, extra)
        return m, log

    print(f"scale rehearsal, {n:,} reads; {machine()}; {now()}", flush=True)
    if "generate" in steps:
        code = ("import sys; sys.path.insert(0, sys.argv[1]);"
                "from synth import stream_fasta, skewed_sizes, make_mapping;"
                "make_mapping(sys.argv[4]);"
                "stream_fasta(sys.argv[2], int(sys.argv[3]), seed=0);"
                "stream_fasta(sys.argv[5], int(sys.argv[6]), seed=1,"
                " sizes=skewed_sizes(int(sys.argv[6]), seed=0))")
        run_step("generate", [sys.executable, "-c", code, str(Path(__file__).parent), str(fa),
                              str(n), str(mapping), str(val), str(a.val_reads)])
        rows[-1][-1] = f"{fa.stat().st_size / 1e9:.1f} + {val.stat().st_size / 1e9:.1f} GB"
    if not mapping.exists():
        make_mapping(mapping)
    if "stats" in steps:
        run_step("stats", readtax_cmd("stats", "-q", str(fa), "--json", str(data / "stats.json")))
    if "subset" in steps:
        run_step("subset", readtax_cmd("subset", "-q", str(fa), "-o", str(sub), "--per-species",
                                       "1000", "--val-output", str(sub_val),
                                       "--val-per-species", "200", "--force"))
    if "pack" in steps:
        shutil.rmtree(store, ignore_errors=True)
        m, _ = run_step("pack", readtax_cmd("pack", "-q", str(fa), "-o", str(store)))
        size = sum(p.stat().st_size for p in store.iterdir())
        rows[-1][-1] = f"{size / 1e9:.2f} GB, {size / n:.1f} B/read"
    if "verify" in steps:
        run_step("verify", readtax_cmd("verify", "-q", str(store)))
    if "loader" in steps:
        m, log = run_step("loader", [sys.executable, "-c", LOADER, str(store), "1024", "2",
                                     str(a.loader_batches)])
        line = [x for x in log.read_text().splitlines() if x.startswith("LOADER")][-1].split()
        reads, batches, dt = int(line[1]), int(line[2]), float(line[3])
        rows[-1][-1] = f"{reads:,} reads in {batches:,} batches, {reads / dt / 1e6:.2f} M reads/s"
    if "train" in steps:
        if not model.exists():
            run_step("init-model", readtax_cmd("init-model", "-q", "--arch", "kmer-cnn", "-o",
                                               str(model)))
        m, _ = run_step("train", readtax_cmd("train", "-q", "--train", str(store), "--val",
                                             str(sub_val), "--model", str(model), "-o", str(run),
                                             "--max-steps", str(a.train_steps), "--force"))
        import yaml

        batch = int(yaml.safe_load((run / "config.yaml").read_text())["train"]["batch_size"])
        rows[-1][-1] = (f"{a.train_steps} steps x {batch}: "
                        f"{a.train_steps * batch / m.wall:,.0f} reads/s incl. start and evals")
    if "evaluate" in steps:
        m, _ = run_step("evaluate", readtax_cmd("evaluate", "-q", str(run), "--data", str(val),
                                                "--max-reads", str(a.eval_reads), "-o", str(ev),
                                                "--force"))
        acc = json.loads((ev / "metrics.json").read_text()).get("accuracy")
        rows[-1][-1] = f"{a.eval_reads:,} reads, {a.eval_reads / m.wall:,.0f} reads/s, accuracy {acc}"
    if "predict" in steps:
        m, _ = run_step("predict", readtax_cmd("predict", "-q", str(run), str(val), "-o",
                                               str(pred), "--report", str(report), "--force"))
        rows[-1][-1] = f"{a.val_reads:,} reads, {a.val_reads / m.wall:,.0f} reads/s"
    print()
    print(table(rows, ["step", "wall s", "CPU s", "peak RSS MB (largest)", "tree MB",
                       "anon MB", "file MB", "GB written", "notes"]))
    print(f"\n(load average at the end: {os.getloadavg()[0]:.2f}; {time.strftime('%H:%M')} UTC)")


def summary(path: Path) -> None:
    """The latest result of every (step, size) as one table, then peak RSS across sizes."""
    latest: dict[tuple[str, int], dict] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        latest[(row["step"], row["reads"])] = row
    sizes = sorted({n for _, n in latest})
    rows = []
    for (step, n), r in sorted(latest.items(), key=lambda kv: (kv[0][1], STEPS.index(kv[0][0])
                                                                if kv[0][0] in STEPS else -1)):
        rows.append([f"{n / 1e6:g}M", step, f"{r['wall']:.1f}", f"{r['cpu']:.1f}",
                     f"{r['rss_max']:.0f}", f"{r['anon_max']:.0f}", f"{r['file_max']:.0f}",
                     f"{r['rss_tree']:.0f}", f"{r['written'] / 1e9:.2f}", f"{r['load']:.1f}",
                     r["when"][11:16]])
    print(table(rows, ["reads", "step", "wall s", "CPU s", "peak RSS MB", "anon MB", "file MB",
                       "tree MB", "GB written", "load", "UTC"]))
    print()
    rows = []
    for step in ("pack", "subset", "loader"):
        got = [latest.get((step, n)) for n in sizes]
        if not any(got):
            continue
        base = got[0]["rss_max"] if got[0] else None
        cells = [f"{g['rss_max']:.0f} ({g['anon_max']:.0f} + {g['file_max']:.0f})" if g else "-"
                 for g in got]
        growth = (f"{100 * (got[-1]['rss_max'] / base - 1):+.0f}%" if base and got[-1]
                  else "-")
        rows.append([step, *cells, growth])
    print(table(rows, ["peak RSS MB (anon + file)", *[f"{n / 1e6:g}M" for n in sizes],
                       "largest vs smallest"]))


if __name__ == "__main__":
    main()
