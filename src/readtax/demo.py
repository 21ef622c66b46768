"""The end-to-end demo on bundled real sequence: simulate, stats, subset, pack, train, evaluate,
predict.

Data: homologous ~300 kb fragments of two strains of each of 5 bacterial species
(``readtax/data/real_genomes/``, :func:`readtax.bundled.real_fragments`). The model trains on
reads from the first 80% of one strain's fragment and is tested three ways: unseen reads from
those regions (validation), reads from the last 20% (held-out region), and reads from the other
strain (held-out strain). Training uses the default kmer-cnn recipe (no step or batch flags).

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
    reads_per_species: int = 22_000
    heldout_per_species: int = 1000
    train_per_species: int = 20_000
    val_per_species: int = 1000
    max_steps: int | None = None  # None: the default recipe (one epoch)
    batch_size: int | None = None  # None: the family's default
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
    from .bundled import real_fragments
    from .outputs import check_writable_dir

    s = settings or DemoSettings()
    out = Path(out)
    check_writable_dir(out / "x", what="demo output directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"demo output directory {out} is not empty (use --force to reuse it)")
    out.mkdir(parents=True, exist_ok=True)
    frags = real_fragments()
    mapping = frags.mapping
    reads = out / "reads.fa.gz"
    heldout = out / "heldout.fa"
    strain = out / "heldout-strain.fa"
    seed = str(s.seed)
    _step("simulate reads (training regions: first 80% of every fragment; held-out: last 20%)", [
        "simulate", *map(str, frags.train), "-o", str(reads), "--mapping", str(mapping),
        "--reads-per-species", str(s.reads_per_species), "--length", "150",
        "--error-profile", "hiseq", "--split", "region:0.8", "--val-output", str(heldout),
        "--val-reads-per-species", str(s.heldout_per_species), "--seed", seed,
    ])
    _step("simulate reads from the held-out strain of each species", [
        "simulate", *map(str, frags.heldout), "-o", str(strain), "--mapping", str(mapping),
        "--reads-per-species", str(s.heldout_per_species), "--length", "150",
        "--error-profile", "hiseq", "--seed", str(s.seed + 1),
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
    _step("initialise the fast baseline model (kmer-cnn, its default size)", [
        "init-model", "--arch", "kmer-cnn", "-o", str(model_dir), "--seed", seed,
    ])
    run = out / "run"
    sizes = [] if s.max_steps is None else ["--max-steps", str(s.max_steps)]
    sizes += [] if s.batch_size is None else ["--batch-size", str(s.batch_size)]
    _step("train (the default recipe: one epoch)", [
        "train", "--train", str(store), "--val", str(val_fa), "--model", str(model_dir),
        "-o", str(run), *sizes, "--seed", seed, "--num-workers", "0",
    ])
    eval_seen = out / "eval-validation"
    _step("evaluate on validation reads (same genome regions as training, unseen reads)", [
        "evaluate", str(run), "--data", str(val_fa), "-o", str(eval_seen),
    ])
    eval_dir = out / "eval-heldout"
    _step("evaluate on reads from held-out genome regions (never seen in training)", [
        "evaluate", str(run), "--data", str(heldout), "-o", str(eval_dir),
    ])
    eval_strain = out / "eval-heldout-strain"
    _step("evaluate on reads from the held-out strain of each species", [
        "evaluate", str(run), "--data", str(strain), "-o", str(eval_strain),
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
    by_strain = json.loads((eval_strain / "metrics.json").read_text())
    outputs = {
        "reads": reads, "heldout": heldout, "heldout_strain": strain, "stats": out / "stats.json",
        "store": store, "run": run, "evaluation": eval_seen / "metrics.json",
        "evaluation_heldout": eval_dir / "metrics.json",
        "evaluation_strain": eval_strain / "metrics.json", "predictions": pred, "report": report,
    }
    print(f"\n== demo finished ({len(frags.train)} real species; chance is "
          f"{1 / len(frags.train):.2f})")
    print(f"validation accuracy      {seen['accuracy']:.3f} (macro-F1 {seen['macro_f1']:.3f}): "
          "unseen reads from the regions the model trained on")
    print(f"held-out region accuracy {metrics['accuracy']:.3f} (macro-F1 "
          f"{metrics['macro_f1']:.3f}): the last 20% of every fragment, never seen")
    print(f"held-out strain accuracy {by_strain['accuracy']:.3f} (macro-F1 "
          f"{by_strain['macro_f1']:.3f}): another strain of each species, never seen")
    print("Kraken2 and a 6-mer regression on whole genomes: benchmarks/real_genomes.py.")
    for name, path in outputs.items():
        print(f"  {name:18s} {path}")
    sys.stdout.flush()
    return {k: str(v) for k, v in outputs.items()} | {
        "accuracy": seen["accuracy"], "heldout_accuracy": metrics["accuracy"],
        "strain_accuracy": by_strain["accuracy"]}
