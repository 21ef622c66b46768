"""The end-to-end demo on bundled genomes: simulate, stats, subset, pack, train, evaluate, predict.

Every step runs through the same CLI entry point a user types, so the demo exercises exactly
the public commands; it prints each command and where its outputs are.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ReadtaxError, UsageError

log = logging.getLogger("readtax")


@dataclass
class DemoSettings:
    reads_per_species: int = 6000
    heldout_per_species: int = 500
    train_per_species: int = 5000
    val_per_species: int = 500
    max_steps: int = 1500
    batch_size: int = 128
    seed: int = 1


def _step(title: str, argv: list[str]) -> None:
    from .cli import main

    print(f"\n== {title}\n$ readtax {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    t = time.perf_counter()
    code = main(argv)
    if code != 0:
        raise ReadtaxError(f"demo step '{title}' failed with exit code {code}")
    print(f"   ({time.perf_counter() - t:.1f} s)", flush=True)


def run_demo(out: str | Path, settings: DemoSettings | None = None, *, force: bool = False) -> dict:
    """Run the whole pipeline into ``out``; returns the paths of the main outputs."""
    from .genomes import demo_genomes
    from .outputs import check_writable_dir

    s = settings or DemoSettings()
    out = Path(out)
    check_writable_dir(out / "x", what="demo output directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"demo output directory {out} is not empty (use --force to reuse it)")
    out.mkdir(parents=True, exist_ok=True)
    genomes, mapping = demo_genomes()
    reads = out / "reads.fa.gz"
    heldout = out / "heldout.fa"
    seed = str(s.seed)
    _step("simulate reads (training regions: first 80% of every contig; held-out: last 20%)", [
        "simulate", *map(str, genomes), "-o", str(reads), "--mapping", str(mapping),
        "--reads-per-species", str(s.reads_per_species), "--length", "150",
        "--error-profile", "hiseq", "--split", "region:0.8", "--val-output", str(heldout),
        "--val-reads-per-species", str(s.heldout_per_species), "--seed", seed,
    ])
    _step("statistics", ["stats", str(reads), "--mapping", str(mapping),
                         "--json", str(out / "stats.json"), "--plot", str(out / "stats.png")])
    train_fa, val_fa = out / "train.fa", out / "val.fa"
    _step("exact per-species train/validation subsets", [
        "subset", str(reads), "-o", str(train_fa), "--per-species", str(s.train_per_species),
        "--val-output", str(val_fa), "--val-per-species", str(s.val_per_species),
        "--mapping", str(mapping), "--seed", seed, "--summary", str(out / "subset.tsv"), "--force",
    ])
    store = out / "train.store"
    _step("pack the training reads into a shuffled store", [
        "pack", str(train_fa), "-o", str(store), "--mapping", str(mapping), "--seed", seed,
        "--force",
    ])
    _step("verify the store", ["verify", str(store)])
    model_dir = out / "kmer-cnn-init"
    _step("initialise the fast baseline model", [
        "init-model", "--arch", "kmer-cnn", "--size", "tiny", "-o", str(model_dir), "--seed", seed,
    ])
    run = out / "run"
    _step("train", [
        "train", "--train", str(store), "--val", str(val_fa), "--model", str(model_dir),
        "-o", str(run), "--max-steps", str(s.max_steps), "--batch-size", str(s.batch_size),
        "--seed", seed, "--num-workers", "0",
    ])
    eval_seen = out / "eval-validation"
    _step("evaluate on validation reads (same genome regions as training, unseen reads)", [
        "evaluate", str(run), "--data", str(val_fa), "-o", str(eval_seen),
    ])
    eval_dir = out / "eval-heldout"
    _step("evaluate on reads from held-out genome regions (never seen in training)", [
        "evaluate", str(run), "--data", str(heldout), "-o", str(eval_dir),
    ])
    pred = out / "predictions.tsv"
    report = out / "report.kraken.txt"
    _step("predict with a Kraken-style report", [
        "predict", str(run), str(heldout), "-o", str(pred), "--report", str(report),
        "--kraken-out", str(out / "predictions.kraken"), "--abundance", str(out / "abundance.tsv"),
        "--top-k", "3",
    ])
    seen = json.loads((eval_seen / "metrics.json").read_text())
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    outputs = {
        "reads": reads, "heldout": heldout, "stats": out / "stats.json", "store": store,
        "run": run, "evaluation": eval_seen / "metrics.json",
        "evaluation_heldout": eval_dir / "metrics.json", "predictions": pred, "report": report,
    }
    print("\n== demo finished")
    print(f"validation accuracy {seen['accuracy']:.3f} (macro-F1 {seen['macro_f1']:.3f}) on "
          "reads from the regions the model trained on;")
    print(f"held-out accuracy {metrics['accuracy']:.3f} (macro-F1 {metrics['macro_f1']:.3f}) on "
          "regions it never saw. The bundled genomes are random sequences evolved from common "
          "ancestors, so unseen regions share little but base composition with the training "
          "regions: a k-mer model cannot do much there, and neither can Kraken2 "
          "(benchmarks/RESULTS.md).")
    for name, path in outputs.items():
        print(f"  {name:12s} {path}")
    sys.stdout.flush()
    return {k: str(v) for k, v in outputs.items()} | {
        "accuracy": seen["accuracy"], "heldout_accuracy": metrics["accuracy"]}
