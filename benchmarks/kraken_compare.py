"""Kraken2 on simulated reads: the k-mer baseline readtax is measured against.

Builds custom Kraken2 databases from genome FASTAs (default: the bundled demo genomes) with a
minimal taxonomy written into ``DB/taxonomy/`` (root -> genus -> species, genus taken from the
label name ``Genus_species``, or from a ``taxonomy.tsv`` beside the mapping), simulates reads with
``readtax simulate`` and classifies them, for two tasks:

1. ``same-genomes``: the database holds the whole genomes, the reads come from them too;
2. ``held-out-regions``: the database holds only the first ``--split`` (0.8) of every contig,
   the reads come from the rest (``readtax simulate --split region:0.8``, validation output) --
   what a classifier meets when a read comes from sequence it never saw.

Prints a Markdown table, one row per task: % of reads called at the right species, at a higher
rank of the true lineage (genus, root), at a wrong species of the right genus, in a wrong genus,
and unclassified; and the time to build and to classify. Library use (run_all.sh, tests of ``readtax predict --with-kraken``)::

    from kraken_compare import build_db, run_kraken, prepare_tasks, score
    db = build_db(genomes, mapping, "work/db")
    tax_ids = run_kraken(db, "reads.fa")          # one tax id per read, 0 = unclassified

Kraken2 comes from Debian (``apt-get install -y kraken2``, installed on first use when missing).
Database builds use ``--fast-build`` with one thread: seconds instead of minutes for small
genomes, and the hash table is the same on every run (the multi-threaded fast build is not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# -- installing and running Kraken2 ------------------------------------------------------------


def ensure_kraken2() -> str:
    """Path of ``kraken2``; installs the Debian package when it is missing (needs root)."""
    path = shutil.which("kraken2")
    if path:
        return path
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit("kraken2 is not installed and cannot be installed here: "
                         "run 'apt-get install -y kraken2' as root")
    print("installing kraken2 (apt-get)...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "kraken2"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(cmd, env=env, capture_output=True)
    path = shutil.which("kraken2")
    if not path:
        raise SystemExit("kraken2 could not be installed (apt-get install -y kraken2 failed)")
    return path


def kraken2_version() -> str:
    ensure_kraken2()
    out = subprocess.run(["kraken2", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "kraken2 (unknown version)"


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return res


# -- taxonomy ----------------------------------------------------------------------------------


def taxonomy_rows(mapping: str | os.PathLike[str], taxonomy: str | os.PathLike[str] | None = None
                  ) -> list[tuple[int, int, str, str]]:
    """(tax_id, parent, rank, name) rows: from ``taxonomy`` (a TSV ``tax_id, parent_tax_id, rank,
    name``), else built from the mapping: root(1) -> one genus per ``Genus_`` prefix -> species."""
    from common import load_tool

    from readtax.labels import load_mapping

    genus_of = load_tool("make_genomes").genus_of

    if taxonomy is not None:
        rows = []
        for line in Path(taxonomy).read_text(encoding="utf-8").splitlines()[1:]:
            if line.strip():
                t, p, rank, name = line.split("\t")[:4]
                rows.append((int(t), int(p), rank, name))
        return rows
    label_map = load_mapping(mapping)
    rows = [(1, 1, "no rank", "root")]
    next_id = max(int(label_map.tax_ids.max()), 1) + 1
    genus_ids: dict[str, int] = {}
    for name in label_map.names:
        genus = genus_of(name)
        if genus and genus not in genus_ids:
            genus_ids[genus] = next_id
            next_id += 1
            rows.append((genus_ids[genus], 1, "genus", genus))
    for name, tax in zip(label_map.names, label_map.tax_ids.tolist()):
        rows.append((int(tax), genus_ids.get(genus_of(name), 1), "species", name.replace("_", " ")))
    return rows


def write_taxdump(rows: list[tuple[int, int, str, str]], directory: str | os.PathLike[str]) -> Path:
    """``nodes.dmp`` and ``names.dmp`` in NCBI's ``\\t|\\t`` layout (what Kraken2 parses)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "nodes.dmp", "w", encoding="utf-8") as nodes, \
            open(out / "names.dmp", "w", encoding="utf-8") as names:
        for tax, parent, rank, name in rows:
            nodes.write(f"{tax}\t|\t{parent}\t|\t{rank}\t|\t\t|\n")
            names.write(f"{tax}\t|\t{name}\t|\t\t|\tscientific name\t|\n")
    return out


def parents_of(rows: list[tuple[int, int, str, str]]) -> dict[int, int]:
    return {t: p for t, p, _, _ in rows}


# -- database ----------------------------------------------------------------------------------


def build_db(genomes: list[str | os.PathLike[str]], mapping: str | os.PathLike[str],
             out_dir: str | os.PathLike[str], *, taxonomy: str | os.PathLike[str] | None = None,
             region: float | None = None, genome_map: str | os.PathLike[str] | None = None,
             kmer_len: int | None = None, minimizer_len: int | None = None,
             minimizer_spaces: int | None = None) -> Path:
    """Build a Kraken2 database in ``out_dir`` from genome FASTAs (one species per file, matched
    to the mapping as ``readtax simulate`` does). ``region``: keep only the first fraction of
    every contig (the training part of ``--split region:<fraction>``). Returns ``out_dir``."""
    from readtax.labels import load_mapping
    from readtax.simulate import load_genome_map, load_genomes

    ensure_kraken2()
    db = Path(out_dir)
    if db.exists():
        shutil.rmtree(db)
    db.mkdir(parents=True)
    if taxonomy is None and (Path(mapping).parent / "taxonomy.tsv").exists():
        taxonomy = Path(mapping).parent / "taxonomy.tsv"
    write_taxdump(taxonomy_rows(mapping, taxonomy), db / "taxonomy")
    label_map = load_mapping(mapping)
    gmap = load_genome_map(genome_map, label_map) if genome_map else None
    staging = db / "staging"
    staging.mkdir()
    for g in load_genomes(genomes, label_map, gmap):
        fna = staging / f"{g.class_id}.fna"
        with open(fna, "wb") as fh:
            for k in range(g.n_contigs):
                lo, hi = int(g.offsets[k]), int(g.offsets[k + 1])
                if region is not None:
                    # Same cut as readtax.simulate.regions: floor(length * fraction).
                    hi = lo + int(np.floor((hi - lo) * region))
                if hi <= lo:
                    continue
                fh.write(f">{g.name}_{k}|kraken:taxid|{g.tax_id}\n".encode())
                fh.write(g.seq[lo:hi].tobytes() + b"\n")
        _run(["kraken2-build", "--add-to-library", str(fna), "--db", str(db), "--no-masking"],
             "kraken2-build --add-to-library")
    shutil.rmtree(staging)
    cmd = ["kraken2-build", "--build", "--db", str(db), "--threads", "1", "--fast-build"]
    for flag, value in (("--kmer-len", kmer_len), ("--minimizer-len", minimizer_len),
                        ("--minimizer-spaces", minimizer_spaces)):
        if value is not None:
            cmd += [flag, str(value)]
    _run(cmd, "kraken2-build --build")
    return db


def run_kraken(db: str | os.PathLike[str], reads: str | os.PathLike[str] | list, *,
               output: str | os.PathLike[str] | None = None,
               report: str | os.PathLike[str] | None = None, threads: int = 2,
               paired: bool = False) -> np.ndarray:
    """Classify ``reads`` (a path, or two paths with ``paired``); one tax id per read or pair in
    input order (0 = unclassified). ``output``/``report`` keep Kraken2's own files."""
    ensure_kraken2()
    paths = [str(p) for p in (reads if isinstance(reads, (list, tuple)) else [reads])]
    with tempfile.TemporaryDirectory(prefix="kraken-") as tmp:
        out = str(output) if output is not None else os.path.join(tmp, "out.kraken")
        cmd = ["kraken2", "--db", str(db), "--threads", str(threads), "--output", out]
        if report is not None:
            cmd += ["--report", str(report)]
        if paired:
            cmd.append("--paired")
        _run(cmd + paths, "kraken2")
        return read_kraken_output(out)[1]


def read_kraken_output(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """(read ids, tax ids) of a Kraken2 per-read output file (columns 2 and 3)."""
    ids, tax = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            cols = line.split("\t", 4)
            ids.append(cols[1])
            tax.append(int(cols[2]))
    return ids, np.array(tax, dtype=np.int64)


# -- scoring -----------------------------------------------------------------------------------


def true_tax_ids(reads: str | os.PathLike[str]) -> np.ndarray:
    """Tax id of every read from its ``lbl`` header (field 3)."""
    from readtax.fastx import read_batches
    from readtax.labels import LblScheme

    scheme = LblScheme()
    parts = [scheme.fields(b)[1] for b in read_batches(reads)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _lineage(tax: int, parents: dict[int, int]) -> list[int]:
    """Ancestors of ``tax`` from its parent up to the root."""
    out, node = [], parents.get(tax, 1)
    while node not in out:
        out.append(node)
        node = parents.get(node, 1)
    return out


def score(truth: np.ndarray, called: np.ndarray, parents: dict[int, int]) -> dict[str, float]:
    """Fractions of reads in five exclusive groups: ``correct`` (the true species), ``higher``
    (an ancestor of it: its genus or the root), ``sibling`` (another taxon under the true
    species' parent: right genus, wrong species), ``wrong`` (anything else), ``unclassified``
    (tax id 0). ``wrong_species`` = sibling + wrong: called, and at the wrong species."""
    truth = np.asarray(truth, np.int64)
    called = np.asarray(called, np.int64)
    n = max(len(truth), 1)
    correct = called == truth
    unclassified = called == 0
    higher = np.zeros(len(truth), dtype=bool)
    sibling = np.zeros(len(truth), dtype=bool)
    called_parent = np.array([parents.get(c, 0) for c in called.tolist()], dtype=np.int64)
    for t in np.unique(truth).tolist():  # per species: its lineage is a few nodes
        lineage = _lineage(t, parents)
        sel = truth == t
        higher[sel] = np.isin(called[sel], lineage)
        # Under the species' parent (a genus), but not the species itself; root-level parents
        # would make everything a sibling, so they do not count.
        if lineage[0] != 1:
            sibling[sel] = (called_parent[sel] == lineage[0]) & ~correct[sel]
    wrong = ~(correct | unclassified | higher | sibling)
    groups = {"correct": correct, "higher": higher, "sibling": sibling, "wrong": wrong,
              "wrong_species": sibling | wrong, "unclassified": unclassified}
    return {"reads": int(len(truth)), **{k: float(v.sum() / n) for k, v in groups.items()}}


# -- the two tasks -----------------------------------------------------------------------------


@dataclass
class Task:
    """Reads a model may train on, reads to classify, and the Kraken2 database for the task."""

    name: str
    train_reads: Path
    test_reads: Path
    db: Path | None
    build_s: float = 0.0


def _simulate(args: list[str]) -> None:
    from readtax.cli import main

    code = main(["simulate", "-q", "--force", *args])
    if code != 0:
        raise RuntimeError(f"readtax simulate failed ({code}): {' '.join(args)}")


def prepare_tasks(work: str | os.PathLike[str], genomes: list | None = None,
                  mapping: str | os.PathLike[str] | None = None, *, reads_per_species: int = 2000,
                  train_reads_per_species: int | None = None, split: float = 0.8, seed: int = 0,
                  build: bool = True) -> list[Task]:
    """Simulate the reads of both tasks under ``work`` and (``build``) their databases."""
    from readtax.bundled import demo_genomes

    if genomes is None:
        genomes, mapping = demo_genomes()
    genomes = [str(g) for g in genomes]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    n_train = train_reads_per_species or reads_per_species
    common = [*genomes, "--mapping", str(mapping), "--seed", str(seed)]
    same_train, same_test = work / "same_train.fa", work / "same_test.fa"
    _simulate([*common, "-o", str(same_train), "--reads-per-species", str(n_train)])
    # A different seed stream for the test reads: same genomes, other reads.
    _simulate([*genomes, "--mapping", str(mapping), "--seed", str(seed + 1), "-o", str(same_test),
               "--reads-per-species", str(reads_per_species)])
    held_train, held_test = work / "heldout_train.fa", work / "heldout_test.fa"
    _simulate([*common, "-o", str(held_train), "--reads-per-species", str(n_train),
               "--split", f"region:{split}", "--val-output", str(held_test),
               "--val-reads-per-species", str(reads_per_species)])
    tasks = [Task("same-genomes", same_train, same_test, None),
             Task("held-out-regions", held_train, held_test, None)]
    if build:
        for task, region in zip(tasks, (None, split)):
            t0 = time.perf_counter()
            task.db = build_db(genomes, mapping, work / f"db_{task.name}", region=region)
            task.build_s = time.perf_counter() - t0
    return tasks


def compare(work: Path, *, reads_per_species: int, seed: int, threads: int,
            split: float = 0.8) -> list[dict]:
    from readtax.bundled import demo_genomes

    genomes, mapping = demo = demo_genomes()
    parents = parents_of(taxonomy_rows(mapping, demo.taxonomy))
    results = []
    for task in prepare_tasks(work, genomes, mapping, reads_per_species=reads_per_species,
                              split=split, seed=seed):
        t0 = time.perf_counter()
        called = run_kraken(task.db, task.test_reads, threads=threads,
                            output=work / f"{task.name}.kraken",
                            report=work / f"{task.name}.report")
        classify_s = time.perf_counter() - t0
        truth = true_tax_ids(task.test_reads)
        if len(called) != len(truth):
            raise RuntimeError(f"kraken2 returned {len(called)} calls for {len(truth)} reads")
        results.append({"task": task.name, **score(truth, called, parents),
                        "build_s": task.build_s, "classify_s": classify_s})
    return results


def format_table(results: list[dict], version: str) -> str:
    from common import machine, now

    lines = [
        f"## Kraken2 on simulated reads (bundled demo genomes; {now()}; {machine()}; "
        f"load average {os.getloadavg()[0]:.1f})",
        "",
        f"{version}, custom database from the same genomes, minimal taxonomy (root, 3 genera, "
        "10 species); reads: `readtax simulate`, 150 bp, hiseq errors. held-out-regions: "
        "database from the first 80% of every contig, reads from the last 20%.",
        "",
        "| task | reads | species correct % | genus or root % | wrong species, right genus % | "
        "wrong genus % | unclassified % | build s | classify s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['task']} | {r['reads']:,} | {100 * r['correct']:.2f} | {100 * r['higher']:.2f} | "
            f"{100 * r['sibling']:.2f} | {100 * r['wrong']:.2f} | {100 * r['unclassified']:.2f} | "
            f"{r['build_s']:.1f} | {r['classify_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reads", type=int, default=20_000,
                   help="reads per task, spread evenly over the species (default 20000)")
    p.add_argument("--threads", type=int, default=2, help="kraken2 threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="keep the reads, databases and Kraken2 outputs here")
    p.add_argument("--json", help="also write the results as JSON here")
    args = p.parse_args(argv)
    version = kraken2_version()
    from readtax.bundled import demo_genomes

    per_species = max(1, args.reads // len(demo_genomes().genomes))
    with tempfile.TemporaryDirectory(prefix="kraken-compare-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        results = compare(work, reads_per_species=per_species, seed=args.seed,
                          threads=args.threads)
    print(format_table(results, version))
    if args.json:
        Path(args.json).write_text(json.dumps({"kraken2": version, "machine": platform.node(),
                                               "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Task", "build_db", "compare", "ensure_kraken2", "parents_of", "prepare_tasks",
           "read_kraken_output", "run_kraken", "score", "taxonomy_rows", "true_tax_ids",
           "write_taxdump"]
