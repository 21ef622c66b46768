"""Accuracy of readtax models against Kraken2 on simulated reads from the bundled genomes.

Two tasks (reads simulated by ``readtax simulate``, 150 bp, hiseq errors; see kraken_compare.py):

1. ``same-genomes``: training reads and test reads from the whole genomes (test reads with
   another seed); Kraken2's database holds the whole genomes;
2. ``held-out-regions``: ``--split region:0.8``: training reads (and Kraken2's database) from
   the first 80% of every contig, test reads from the last 20% -- sequence no model saw.

Rows: Kraken2 (custom database from the same genomes, ``kraken_compare.build_db``), the fast
baseline ``kmer-cnn`` (trained properly) and the tiny random-init stand-ins of each transformer
family (``metagene``, ``dnabert2``, ``dnabert`` k=6), trained briefly: their figures say whether
the pipeline learns at all, not what the real pretrained models would reach. Every model step
goes through the readtax CLI in-process (``readtax.cli.main``): init-model, pack, train,
evaluate. A validation sample for checkpoint selection is simulated separately (another seed,
from the training part of the genomes), so the test reads never influence training.

Prints one Markdown section; ``--json F`` also writes every figure. ``--quick`` is a ~2 minute
version on an idle 2-core machine; the default ~8 minutes (both grow with the load). Settings are printed.

    .venv/bin/python benchmarks/accuracy_compare.py [--quick] [--json F] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_note, machine  # noqa: E402
from common import readtax_in_process as readtax  # noqa: E402
from kraken_compare import (  # noqa: E402
    Task,
    kraken2_version,
    parents_of,
    prepare_tasks,
    run_kraken,
    score,
    taxonomy_rows,
    true_tax_ids,
)

TITLE = "## accuracy against Kraken2 (simulated reads, bundled genomes)"


@dataclass
class ModelSpec:
    """One model row: family, init-model extras, and its training settings."""

    arch: str
    label: str
    max_steps: int
    batch_size: int
    lr: float | None = None  # None: the family's default learning rate
    lora: bool | None = None  # None: the family's default
    init_args: list[str] = field(default_factory=list)


@dataclass
class Settings:
    train_per_species: int
    test_per_species: int
    val_per_species: int
    split: float
    seed: int
    threads: int
    models: list[ModelSpec]


def settings_for(quick: bool, args: argparse.Namespace) -> Settings:
    """Sizes chosen so that the run fits ~3 min (quick) / ~10 min (default) on 2 idle cores."""
    # kmer-cnn (a bag of canonical 8-mer embeddings) at lr 0.05: a few passes over 6,000 reads
    # per species reach 96% on same-genome reads (with 800 per species it plateaus near 70%);
    # at 2e-3 its loss hardly moves in a few hundred steps. The
    # transformer stand-ins cost 10-100x more per read on a CPU, so they get a short run at a
    # rate suited to random weights (their family defaults, 3e-5..1e-4, are fine-tuning rates
    # for pretrained weights and barely move random ones) and train fully (no LoRA: adapters
    # on a random backbone learn little).
    if quick:
        n_train, n_test, kmer_steps, tiny_steps = 2000, 200, 600, 100
    else:
        n_train, n_test, kmer_steps, tiny_steps = 6000, 500, 2000, 1000
    n_train = args.train_per_species or n_train
    n_test = args.test_per_species or n_test
    kmer_steps = args.kmer_steps or kmer_steps
    tiny_steps = args.tiny_steps if args.tiny_steps is not None else tiny_steps
    models = [ModelSpec("kmer-cnn", "kmer-cnn (fast baseline)", kmer_steps, 128,
                        lr=args.kmer_lr or None)]
    if tiny_steps > 0:
        for arch, label, extra in (("metagene", "metagene (tiny stand-in)", []),
                                   ("dnabert2", "dnabert2 (tiny stand-in)", []),
                                   ("dnabert", "dnabert k=6 (tiny stand-in)", ["--k", "6"])):
            models.append(ModelSpec(arch, label, tiny_steps, 32, lr=args.tiny_lr, lora=False,
                                    init_args=extra))
    if args.models:
        keep = set(args.models.split(","))
        models = [m for m in models if m.arch in keep]
    return Settings(n_train, n_test, args.val_per_species, args.split, args.seed, args.threads,
                    models)


# -- readtax CLI -------------------------------------------------------------------------------


def simulate_val(task: Task, genomes: list[str], mapping: str, s: Settings, out: Path) -> Path:
    """A validation sample for checkpoint selection, from the task's training part only."""
    args = ["simulate", "-q", "--force", *genomes, "--mapping", mapping, "-o", str(out),
            "--reads-per-species", str(s.val_per_species), "--seed", str(s.seed + 2)]
    if task.name == "held-out-regions":
        args += ["--split", f"region:{s.split}", "--val-reads-per-species", "0"]
    readtax(*args)
    return out


def predicted_tax_ids(pred_tsv: Path) -> np.ndarray:
    """Tax id per read (0 = unclassified) from ``readtax predict``'s per-read TSV."""
    with open(pred_tsv, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = header.index("tax_id")
        return np.array([int(line.split("\t")[col]) for line in fh], dtype=np.int64)


def genus_accuracy(truth: np.ndarray, called: np.ndarray, parents: dict[int, int]) -> float:
    """Fraction of reads called at the right genus: the true species, a species of its genus,
    or the genus itself (a call at the root or none is not right)."""
    def genus(tax: np.ndarray) -> np.ndarray:
        # A species' genus is its parent; a genus (child of the root) is its own genus.
        return np.array([t if parents.get(t) == 1 and t != 1 else parents.get(t, 0)
                         for t in tax.tolist()], dtype=np.int64)

    g_true = genus(truth)
    return float(((genus(called) == g_true) & (g_true > 1)).mean()) if len(truth) else 0.0


def train_and_evaluate(spec: ModelSpec, init_dir: Path, store: Path, val: Path, test: Path,
                       work: Path, s: Settings, parents: dict[int, int]) -> dict:
    """Train one model on one task, evaluate it (accuracy, macro-F1) and time ``readtax
    predict`` on the test reads (its calls are scored like Kraken2's)."""
    run = work / "run"
    # Evaluate (and checkpoint) four times per run so the best checkpoint is kept.
    every = max(1, spec.max_steps // 4)
    argv = ["train", "-q", "--train", str(store), "--val", str(val), "--model", str(init_dir),
            "-o", str(run), "--force", "--max-steps", str(spec.max_steps),
            "--batch-size", str(spec.batch_size), "--seed", str(s.seed), "--num-workers", "0",
            "--eval-steps", str(every), "--save-steps", str(every),
            "--val-per-class", str(s.val_per_species)]
    if spec.lr is not None:
        argv += ["--lr", str(spec.lr)]
    if spec.lora is not None:
        argv.append("--lora" if spec.lora else "--no-lora")
    train_s = readtax(*argv)
    eval_dir = work / "eval"
    readtax("evaluate", "-q", str(run), "--data", str(test), "-o", str(eval_dir), "--force",
            "--num-workers", "0")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    pred = work / "predictions.tsv"
    # One untimed call on the small validation file first: the first predict in a process pays
    # one-off imports and set-up that would dominate the timing of a few thousand reads.
    readtax("predict", "-q", str(run), str(val), "-o", str(work / "warmup.tsv"), "--force",
            "--num-workers", "0", "--paired", "off")
    predict_s = readtax("predict", "-q", str(run), str(test), "-o", str(pred), "--force",
                        "--num-workers", "0", "--paired", "off")
    truth = true_tax_ids(test)
    called = predicted_tax_ids(pred)
    if len(called) != len(truth):
        raise RuntimeError(f"readtax predict wrote {len(called)} calls for {len(truth)} reads")
    sc = score(truth, called, parents)
    if abs(sc["correct"] - float(metrics["accuracy"])) > 1e-9:
        raise RuntimeError(f"{spec.arch}: predict's accuracy {sc['correct']:.4f} differs from "
                           f"evaluate's {metrics['accuracy']:.4f}")
    trained = spec.max_steps * spec.batch_size
    return {**sc, "accuracy": float(metrics["accuracy"]), "macro_f1": float(metrics["macro_f1"]),
            "genus_accuracy": genus_accuracy(truth, called, parents),
            "train_s": train_s, "train_reads": trained, "train_reads_per_s": trained / train_s,
            "predict_s": predict_s, "test_reads": int(len(truth)),
            "predict_reads_per_s": len(truth) / predict_s,
            "evaluate_reads_per_s": float(metrics.get("reads_per_s", 0.0)),
            "steps": spec.max_steps, "batch_size": spec.batch_size}


# -- the benchmark -----------------------------------------------------------------------------


def run_benchmark(work: Path, s: Settings, log=print) -> dict:
    from readtax.bundled import demo_genomes

    demo = demo_genomes()
    genomes = [str(g) for g in demo.genomes]
    mapping = str(demo.mapping)
    parents = parents_of(taxonomy_rows(mapping, demo.taxonomy))
    t0 = time.perf_counter()
    tasks = prepare_tasks(work, genomes, mapping, reads_per_species=s.test_per_species,
                          train_reads_per_species=s.train_per_species, split=s.split, seed=s.seed)
    log(f"simulated reads, built 2 Kraken2 databases ({time.perf_counter() - t0:.0f} s)")
    results: dict[str, dict] = {"kraken2": {}}
    data: dict[str, tuple[Path, Path]] = {}
    for task in tasks:
        tdir = work / task.name
        tdir.mkdir(exist_ok=True)
        t = time.perf_counter()
        called = run_kraken(task.db, task.test_reads, threads=s.threads)
        classify_s = time.perf_counter() - t
        truth = true_tax_ids(task.test_reads)
        if len(called) != len(truth):
            raise RuntimeError(f"kraken2 returned {len(called)} calls for {len(truth)} reads")
        sc = score(truth, called, parents)
        results["kraken2"][task.name] = {
            **sc, "accuracy": sc["correct"], "genus_accuracy": genus_accuracy(truth, called, parents), "build_s": task.build_s, "predict_s": classify_s,
            "test_reads": int(len(truth)), "predict_reads_per_s": len(truth) / classify_s}
        val = simulate_val(task, genomes, mapping, s, tdir / "val.fa")
        store = tdir / "train.store"
        readtax("pack", "-q", str(task.train_reads), "-o", str(store), "--mapping", mapping,
                "--seed", str(s.seed), "--force")
        data[task.name] = (store, val)
        log(f"{task.name}: kraken2 {100 * sc['correct']:.1f}% correct; reads packed")
    for spec in s.models:
        init_dir = work / f"init-{spec.arch}"
        readtax("init-model", "-q", "--arch", spec.arch, "--size", "tiny", "-o", str(init_dir),
                "--seed", str(s.seed), "--force", *spec.init_args)
        results[spec.label] = {}
        for task in tasks:
            store, val = data[task.name]
            mdir = work / task.name / spec.arch
            r = train_and_evaluate(spec, init_dir, store, val, task.test_reads, mdir, s, parents)
            results[spec.label][task.name] = r
            log(f"{spec.label} / {task.name}: accuracy {100 * r['accuracy']:.1f}%, "
                f"macro-F1 {r['macro_f1']:.3f}, train {r['train_s']:.0f} s, "
                f"predict {r['predict_s']:.1f} s")
    return results


# -- report ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def format_report(results: dict, s: Settings, version: str, wall_s: float, load: str) -> str:
    tasks = ("same-genomes", "held-out-regions")
    lines = [
        TITLE, "",
        f"Machine: {machine()}; {version}; total wall time {wall_s / 60:.1f} min; {load}.",
        "",
        f"Reads: `readtax simulate`, 150 bp single-end, hiseq errors, 10 species (3 genera, "
        f"closest pairs 1.5-3% apart). Per species: {s.train_per_species} training reads, "
        f"{s.test_per_species} test reads, {s.val_per_species} validation reads (checkpoint "
        f"selection; simulated separately from the training part). **same genomes**: test reads "
        f"from the whole genomes with another seed. **held-out regions**: `--split "
        f"region:{s.split}`, training reads and Kraken2's database from the first "
        f"{100 * s.split:.0f}% of every contig, test reads from the rest. Seed {s.seed}.",
        "",
        "| method | same genomes: species % | genus % | other | held-out regions: species % "
        "| genus % | other |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for name, per_task in results.items():
        cells = []
        for t in tasks:
            r = per_task[t]
            if name == "kraken2":
                other = (f"unclassified {_pct(r['unclassified'])}%, genus/root only "
                         f"{_pct(r['higher'])}%, right genus wrong species {_pct(r['sibling'])}%")
            else:
                other = (f"macro-F1 {r['macro_f1']:.3f}, right genus wrong species "
                         f"{_pct(r['sibling'])}%")
            cells += [_pct(r["accuracy"]), _pct(r["genus_accuracy"]), other]
        label = "Kraken2 (custom DB of the training sequence)" if name == "kraken2" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Species % on held-out regions is near chance for every method by construction: "
              "a read from the held-out end of species A's contigs has no counterpart in A's "
              "training sequence, while the homologous stretch of its sister species (1.5-3% "
              "diverged, contigs cut elsewhere) usually is in the training data, so sequence "
              "matching calls the sister (Kraken2: 0% right species). Genus % is the informative "
              "figure there.",
              "", "Training and prediction time per model (prediction: `readtax predict` on the "
              "test reads, batch 256, in-process, model loading included; Kraken2: database "
              f"build and classification, {s.threads} threads):", "",
              "| method | task | settings | train s | train reads/s | predict s | "
              "predict reads/s |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    specs = {m.label: m for m in s.models}
    for name, per_task in results.items():
        for t in tasks:
            r = per_task[t]
            if name == "kraken2":
                lines.append(f"| Kraken2 | {t} | k=35, l=31, --fast-build | {r['build_s']:.1f} "
                             f"(build) | - | {r['predict_s']:.1f} | "
                             f"{r['predict_reads_per_s']:,.0f} |")
                continue
            m = specs[name]
            lr = f"lr {m.lr:g}" if m.lr is not None else "family default lr"
            lines.append(f"| {name} | {t} | {m.max_steps} steps x {m.batch_size}, {lr} | "
                         f"{r['train_s']:.1f} | {r['train_reads_per_s']:,.0f} | "
                         f"{r['predict_s']:.1f} | {r['predict_reads_per_s']:,.0f} |")
    lines += ["", "The transformer rows are tiny random-init stand-ins (`readtax init-model "
              "--size tiny`) trained for a few minutes on a CPU: they show that the pipeline "
              "trains every family, not what the real pretrained models reach. Train time "
              "includes start-up, validation and checkpoints; train reads/s = steps x batch / "
              "train s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller run (~3 min on 2 idle cores)")
    p.add_argument("--json", help="also write the figures as JSON here")
    p.add_argument("--work", help="keep reads, databases, stores and runs here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="kraken2 threads (default 2)")
    p.add_argument("--split", type=float, default=0.8, help="training fraction of every contig")
    p.add_argument("--train-per-species", type=int, help="training reads per species")
    p.add_argument("--test-per-species", type=int, help="test reads per species")
    p.add_argument("--val-per-species", type=int, default=50,
                   help="validation reads per species (default 50)")
    p.add_argument("--kmer-steps", type=int, help="kmer-cnn training steps")
    p.add_argument("--kmer-lr", type=float, default=0.05,
                   help="kmer-cnn learning rate (default 0.05; 0: the family's default)")
    p.add_argument("--tiny-steps", type=int, help="training steps of each tiny stand-in (0: skip)")
    p.add_argument("--tiny-lr", type=float, default=1e-3,
                   help="learning rate of the tiny stand-ins (default 1e-3)")
    p.add_argument("--models", help="comma-separated families to run (default: all)")
    args = p.parse_args(argv)
    s = settings_for(args.quick, args)
    version = kraken2_version()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    log("settings: " + json.dumps({k: v for k, v in asdict(s).items() if k != "models"}))
    for m in s.models:
        log(f"  {m.label}: {m.max_steps} steps x {m.batch_size}, lr {m.lr or 'family default'}, "
            f"lora {m.lora if m.lora is not None else 'family default'}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="accuracy-compare-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = run_benchmark(work, s, log)
    wall = time.perf_counter() - t0
    load = load_note()
    print(format_report(results, s, version, wall, load))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "kraken2": version, "machine": machine(), "wall_s": wall, "load": load,
            "quick": args.quick, "settings": asdict(s), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
