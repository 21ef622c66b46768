"""Species calls on reads from real bacterial genomes: readtax, Kraken2 and a 6-mer regression.

Genomes: 20 complete strains of 5 species from two Debian packages (NCBI sequences):

- ``ragout-examples``: E. coli (DH1, MG1655; both K-12), H. pylori (5), S. aureus (5),
  V. cholerae (4) under ``/usr/share/doc/ragout/examples/*/references/``;
- ``kleborate-examples``: K. pneumoniae (4) under ``/usr/share/doc/kleborate/examples/data/``.

Reads: ``readtax simulate`` (150 bp, hiseq errors, both strands). Three tasks:

1. ``same-genomes``: training and test reads from every strain (test reads with another seed);
2. ``held-out-strain``: one fixed strain per species never seen in training (E. coli DH1,
   H. pylori G27, S. aureus N315, V. cholerae O395, K. pneumoniae NTUH-K2044); test reads come
   from it only. E. coli's two strains are both K-12, so its held-out strain is nearly the
   training strain; the other four species test a genuinely new strain;
3. ``held-out-region``: one strain per species (the held-out strain's genome): training reads
   (and Kraken2's database) from the first 80% of every contig, test reads from the last 20%.
   One strain only: strains are not colinear (rotations, inversions), so another strain's first
   80% would hold much of this strain's last 20%.

Rows, each trained on the task's training sequence only, in the same run:

- ``readtax``: ``readtax init-model --arch kmer-cnn`` and ``readtax train --train --val --model``
  with no other flags (the default recipe); calls from ``readtax predict``;
- ``Kraken2``: a database built from the training sequence (``kraken_compare.build_db``);
- ``6-mer LR``: canonical 6-mer frequencies of each read, scikit-learn ``LogisticRegression``.

Paired rows (``readtax, pairs`` and ``Kraken2, pairs``): the same models on read pairs
(300 bp fragments) from the test sequence, classified together: readtax sums the mates'
log-probabilities (``readtax predict`` on two mate files), Kraken2 runs with ``--paired``; one
call per pair.

Columns: species accuracy (unclassified counts as wrong), macro-F1 over the 5 species,
per-species accuracy, % unclassified, training (database build) and prediction wall time.

    .venv/bin/python benchmarks/real_genomes.py [--quick] [--json F] [--work DIR]

``--quick``: 20,000 training reads per species (default 100,000); 2,000 test reads per species
either way. Needs ``apt-get install ragout-examples kleborate-examples kraken2`` and
scikit-learn (``pip install -e '.[bench]'``); it installs nothing itself.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import lzma
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_note, machine, table  # noqa: E402
from common import readtax_in_process as readtax  # noqa: E402
from kraken_compare import build_db, kraken2_version, run_kraken, true_tax_ids  # noqa: E402

TITLE = "## real genomes: readtax, Kraken2 and a 6-mer logistic regression"
RAGOUT = Path("/usr/share/doc/ragout/examples")
KLEBORATE = Path("/usr/share/doc/kleborate/examples/data")
SPLIT = 0.8


@dataclass(frozen=True)
class Species:
    name: str  # label name, Genus_species
    tax_id: int
    files: tuple[Path, ...]
    heldout: str  # file stem of the held-out strain
    package: str


SPECIES = (
    Species("Escherichia_coli", 562, tuple(RAGOUT / "E.Coli/references" / f"{s}.fasta.gz"
                                           for s in ("DH1", "MG1655-K12")),
            "DH1", "ragout-examples"),
    Species("Helicobacter_pylori", 210, tuple(
        RAGOUT / "H.Pylori/references" / f"{s}.fasta.gz"
        for s in ("ELS37", "G27", "Gambia94_24", "Puno120", "SJM180")), "G27", "ragout-examples"),
    Species("Staphylococcus_aureus", 1280, tuple(
        RAGOUT / "S.Aureus/references" / f"{s}.fasta.gz"
        for s in ("COL", "JKD6008", "N315", "RF122", "USA300_FPR3757")), "N315",
        "ragout-examples"),
    Species("Vibrio_cholerae", 666, tuple(
        RAGOUT / "V.Cholerae/references" / f"{s}.fasta.gz"
        for s in ("H1", "O1_Inaba", "O1_biovar", "O395")), "O395", "ragout-examples"),
    Species("Klebsiella_pneumoniae", 573, tuple(
        KLEBORATE / f"{s}.fna.xz" for s in ("Klebs_HS11286", "Klebs_Kp1084", "MGH78578",
                                            "NTUH-K2044")), "NTUH-K2044", "kleborate-examples"),
)
TASKS = ("same-genomes", "held-out-strain", "held-out-region")


def strain_of(path: Path) -> str:
    return path.name.split(".")[0]


def check_inputs() -> None:
    """Exit with the apt-get command when genome files are missing."""
    missing = sorted({sp.package for sp in SPECIES for f in sp.files if not f.is_file()})
    if missing:
        raise SystemExit(f"real genome files are missing: apt-get install -y {' '.join(missing)}")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise SystemExit("scikit-learn is missing: pip install -e '.[bench]'") from None


def _open(path: Path):
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def write_species_fastas(out: Path, *, exclude_heldout: bool) -> tuple[list[Path], Path]:
    """One FASTA per species (its strains' contigs, concatenated) and the mapping TSV."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for sp in SPECIES:
        path = out / f"{sp.name}.fa"
        with open(path, "wb") as fh:
            for f in sp.files:
                if exclude_heldout and strain_of(f) == sp.heldout:
                    continue
                with _open(f) as src:
                    for line in src:
                        # Contig names gain the strain so that they stay unique in one file.
                        fh.write(b">" + strain_of(f).encode() + b"_" + line[1:]
                                 if line.startswith(b">") else line)
        paths.append(path)
    mapping = out / "mapping.tsv"
    mapping.write_text("class_id\tlabel_name\ttax_id\n" + "".join(
        f"{i}\t{sp.name}\t{sp.tax_id}\n" for i, sp in enumerate(SPECIES)), encoding="utf-8")
    return paths, mapping


def write_heldout_fastas(out: Path) -> list[Path]:
    """The held-out strain of each species, one FASTA each."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for sp in SPECIES:
        src_path = next(f for f in sp.files if strain_of(f) == sp.heldout)
        path = out / f"{sp.name}.fa"
        with _open(src_path) as src, open(path, "wb") as fh:
            fh.write(src.read())
        paths.append(path)
    return paths


# -- readtax -----------------------------------------------------------------------------------


def simulate(genomes: list[Path], mapping: Path, out: Path, n: int, seed: int,
             *extra: str) -> Path:
    readtax("simulate", "-q", "--force", *map(str, genomes), "--mapping", str(mapping),
            "-o", str(out), "--reads-per-species", str(n), "--error-profile", "hiseq",
            "--seed", str(seed), *extra)
    return out


def predicted_tax_ids(pred_tsv: Path) -> np.ndarray:
    with open(pred_tsv, encoding="utf-8") as fh:
        col = fh.readline().rstrip("\n").split("\t").index("tax_id")
        return np.array([int(line.split("\t")[col]) for line in fh], dtype=np.int64)


def run_readtax(train: Path, val: Path, test: Path, mapping: Path, work: Path,
                seed: int) -> tuple[np.ndarray, float, float]:
    store, init, run = work / "train.store", work / "init", work / "run"
    readtax("pack", "-q", str(train), "-o", str(store), "--mapping", str(mapping),
            "--seed", str(seed), "--force")
    readtax("init-model", "-q", "--arch", "kmer-cnn", "-o", str(init), "--seed", str(seed),
            "--force")
    # The default recipe: nothing beyond --train/--val/--model (-q and --force only quieten
    # and allow reuse of the work directory).
    train_s = readtax("train", "-q", "--force", "--train", str(store), "--val", str(val),
                      "--model", str(init), "-o", str(run))
    pred = work / "predictions.tsv"
    predict_s = readtax("predict", "-q", "--force", str(run), str(test), "-o", str(pred))
    return predicted_tax_ids(pred), train_s, predict_s


def predict_pairs(run: Path, pairs: tuple[Path, Path], work: Path) -> tuple[np.ndarray, float]:
    pred = work / "pairs.tsv"
    s = readtax("predict", "-q", "--force", str(run), *map(str, pairs), "--paired", "on",
                "-o", str(pred))
    return predicted_tax_ids(pred), s


# -- canonical 6-mer logistic regression -------------------------------------------------------

K_LR = 6


def _canonical_columns(k: int) -> np.ndarray:
    codes = np.arange(4**k, dtype=np.int64)
    rc, x = np.zeros_like(codes), codes.copy()
    for _ in range(k):
        rc = rc * 4 + (3 - x % 4)
        x //= 4
    canon = np.minimum(codes, rc)
    return np.searchsorted(np.unique(canon), canon)


def kmer_features(path: Path, k: int = K_LR):
    """Sparse matrix of canonical k-mer frequencies (rows sum to 1) and the reads' tax ids."""
    from scipy import sparse

    from readtax.fastx import read_batches
    from readtax.labels import LblScheme

    lut = np.full(256, 255, dtype=np.uint8)
    for i, c in enumerate(b"ACGT"):
        lut[c] = i
    column = _canonical_columns(k)
    n_cols = int(column.max()) + 1
    mats, taxa = [], []
    scheme = LblScheme()
    for b in read_batches(path):
        taxa.append(scheme.fields(b)[1])
        base = lut[np.asarray(b.seq)]
        n = len(base)
        starts = np.asarray(b.seq_offsets[:-1], np.int64)
        ends = np.asarray(b.seq_offsets[1:], np.int64)
        read_of = np.repeat(np.arange(len(starts)), ends - starts)
        pos = np.arange(n - k + 1)
        ok = (pos + k <= ends[read_of[: len(pos)]])
        code = np.zeros(len(pos), np.int64)
        for j in range(k):
            bj = base[j : j + len(pos)]
            ok &= bj != 255
            code = code * 4 + (bj & 3)
        rows, cols = read_of[: len(pos)][ok], column[code[ok]]
        m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                              shape=(len(starts), n_cols))
        total = np.asarray(m.sum(axis=1)).ravel()
        mats.append(sparse.diags(1.0 / np.maximum(total, 1)).dot(m).tocsr())
    return sparse.vstack(mats).tocsr(), np.concatenate(taxa)


def run_lr(train: Path, test: Path, seed: int) -> tuple[np.ndarray, float, float]:
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    x, y = kmer_features(train)
    # Frequencies are ~1/145 each: a large C (weak regularisation) fits them (measured C 1..1e4).
    clf = LogisticRegression(C=1000.0, max_iter=300, random_state=seed)
    clf.fit(x, y)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    xt, _ = kmer_features(test)
    called = clf.predict(xt).astype(np.int64)
    return called, train_s, time.perf_counter() - t0


# -- scoring -----------------------------------------------------------------------------------


def scores(truth: np.ndarray, called: np.ndarray) -> dict:
    """Species accuracy, macro-F1 over the true species, per-species accuracy, unclassified."""
    per, f1s = {}, []
    for sp in SPECIES:
        t = truth == sp.tax_id
        c = called == sp.tax_id
        tp = float((t & c).sum())
        prec = tp / c.sum() if c.sum() else 0.0
        rec = tp / t.sum() if t.sum() else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        per[sp.name] = rec
    return {"accuracy": float((truth == called).mean()), "macro_f1": float(np.mean(f1s)),
            "per_class": per, "unclassified": float((called == 0).mean()),
            "reads": int(len(truth))}


# -- the benchmark -----------------------------------------------------------------------------


def prepare(work: Path, n_train: int, n_test: int, n_val: int, seed: int) -> dict[str, dict]:
    """Genome FASTAs and reads of every task."""
    every, mapping = write_species_fastas(work / "genomes-all", exclude_heldout=False)
    kept, _ = write_species_fastas(work / "genomes-train-strains", exclude_heldout=True)
    held = write_heldout_fastas(work / "genomes-heldout-strains")
    tasks: dict[str, dict] = {}
    for name, train_on, test_on in (("same-genomes", every, every),
                                    ("held-out-strain", kept, held)):
        d = work / name
        d.mkdir(exist_ok=True)
        tasks[name] = {
            "train": simulate(train_on, mapping, d / "train.fa", n_train, seed),
            "val": simulate(train_on, mapping, d / "val.fa", n_val, seed + 2),
            "test": simulate(test_on, mapping, d / "test.fa", n_test, seed + 1),
            "db_genomes": train_on, "region": None}
    d = work / "held-out-region"
    d.mkdir(exist_ok=True)
    split = f"region:{SPLIT}"
    train = simulate(held, mapping, d / "train.fa", n_train, seed, "--split", split,
                     "--val-output", str(d / "test.fa"), "--val-reads-per-species", str(n_test))
    # Validation reads for checkpoint selection come from the training part only.
    val = simulate(held, mapping, d / "val.fa", n_val, seed + 2, "--split", split,
                   "--val-reads-per-species", "0")
    tasks["held-out-region"] = {"train": train, "val": val, "test": d / "test.fa",
                                "db_genomes": held, "region": SPLIT}
    pair_opts = ("--paired", "--insert-mean", "300", "--insert-sd", "30")
    for name, t in tasks.items():
        t["mapping"] = mapping
        d = work / name
        r1, r2 = d / "pairs_1.fa", d / "pairs_2.fa"
        if name == "held-out-region":
            simulate(held, mapping, d / "pairs_train_1.fa", 1, seed + 3, *pair_opts,
                     "--output2", str(d / "pairs_train_2.fa"), "--split", split,
                     "--val-output", str(r1), "--val-output2", str(r2),
                     "--val-reads-per-species", str(n_test))
        else:
            genomes = held if name == "held-out-strain" else every
            simulate(genomes, mapping, r1, n_test, seed + 3, *pair_opts, "--output2", str(r2))
        t["pairs"] = (r1, r2)
    return tasks


def run_benchmark(work: Path, *, n_train: int, n_test: int, n_val: int, seed: int,
                  threads: int, log=print) -> dict:
    t0 = time.perf_counter()
    tasks = prepare(work, n_train, n_test, n_val, seed)
    log(f"genomes written, reads simulated ({time.perf_counter() - t0:.0f} s)")
    results: dict[str, dict] = {"readtax": {}, "Kraken2": {}, "6-mer LR": {},
                                "readtax, pairs": {}, "Kraken2, pairs": {}}
    for name, t in tasks.items():
        truth = true_tax_ids(t["test"])
        t1 = time.perf_counter()
        db = build_db(t["db_genomes"], t["mapping"], work / name / "kraken-db", region=t["region"])
        build_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        called = run_kraken(db, t["test"], threads=threads)
        results["Kraken2"][name] = {**scores(truth, called), "train_s": build_s,
                                    "predict_s": time.perf_counter() - t1}
        pair_truth = true_tax_ids(t["pairs"][0])
        t1 = time.perf_counter()
        called = run_kraken(db, list(t["pairs"]), threads=threads, paired=True)
        results["Kraken2, pairs"][name] = {**scores(pair_truth, called), "train_s": build_s,
                                           "predict_s": time.perf_counter() - t1}
        called, train_s, predict_s = run_lr(t["train"], t["test"], seed)
        results["6-mer LR"][name] = {**scores(truth, called), "train_s": train_s,
                                     "predict_s": predict_s}
        rdir = work / name / "readtax"
        rdir.mkdir(exist_ok=True)
        called, train_s, predict_s = run_readtax(t["train"], t["val"], t["test"], t["mapping"],
                                                 rdir, seed)
        results["readtax"][name] = {**scores(truth, called), "train_s": train_s,
                                    "predict_s": predict_s}
        called, predict_s = predict_pairs(rdir / "run", t["pairs"], rdir)
        results["readtax, pairs"][name] = {**scores(pair_truth, called), "train_s": train_s,
                                           "predict_s": predict_s}
        log(f"{name}: " + ", ".join(f"{tool} {100 * r[name]['accuracy']:.1f}%"
                                    for tool, r in results.items()))
    return results


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def format_report(results: dict, *, n_train: int, n_test: int, version: str, wall_s: float,
                  load: str) -> str:
    short = {sp.name: sp.name.split("_")[0][0] + ". " + sp.name.split("_")[1] for sp in SPECIES}
    header = ["task", "tool", "species acc %", "macro-F1", *short.values(), "unclassified %",
              "train s", "predict s"]
    rows = []
    for task in TASKS:
        for tool, r in results.items():
            x = r[task]
            rows.append([task, tool, _pct(x["accuracy"]), f"{x['macro_f1']:.3f}",
                         *(_pct(x["per_class"][n]) for n in short), _pct(x["unclassified"]),
                         f"{x['train_s']:.0f}", f"{x['predict_s']:.1f}"])
    held = ", ".join(f"{sp.name.replace('_', ' ')} {sp.heldout}" for sp in SPECIES)
    return "\n".join([
        TITLE, "",
        f"Machine: {machine()}; {load}. {version}. Whole run {wall_s / 60:.1f} min.", "",
        f"5 species, 20 strains (Debian ragout-examples, kleborate-examples); reads from "
        f"`readtax simulate` (150 bp, hiseq errors, both strands), {n_train:,} training and "
        f"{n_test:,} test reads (and {n_test:,} test pairs) per species. Held-out strains: {held} (both E. coli strains are "
        "K-12). Held-out region: the held-out strain of each species only, training sequence = "
        "first 80% of every contig, test reads from the last 20%. readtax: `init-model --arch kmer-cnn` + `train` with no flags beyond "
        "--train/--val/--model; Kraken2: database from the training sequence; 6-mer LR: "
        "canonical 6-mer frequencies, scikit-learn LogisticRegression. Per-species columns: "
        "accuracy on that species' reads; train s: training or database build.", "",
        table(rows, header), ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20,000 training reads per species")
    p.add_argument("--train-reads", type=int, help="training reads per species")
    p.add_argument("--test-reads", type=int, default=2000, help="test reads per species")
    p.add_argument("--val-reads", type=int, default=200, help="validation reads per species")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="Kraken2 threads")
    p.add_argument("--json", help="also write every figure here")
    p.add_argument("--work", help="keep intermediate files here (default: a temporary dir)")
    args = p.parse_args(argv)
    check_inputs()
    n_train = args.train_reads or (20_000 if args.quick else 100_000)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.work:
            work = Path(args.work)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="realgen-")))
        results = run_benchmark(work, n_train=n_train, n_test=args.test_reads,
                                n_val=args.val_reads, seed=args.seed, threads=args.threads,
                                log=lambda m: print(m, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(format_report(results, n_train=n_train, n_test=args.test_reads,
                        version=kraken2_version(), wall_s=wall, load=load_note()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
