"""readtax subset: exact per-class random subsets (and a disjoint validation subset)."""

from __future__ import annotations

from . import add_label_arguments

HELP = "write exactly N random reads of every class (plus an optional disjoint validation set)"


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="FASTA/FASTQ files (plain or gzip), read as one data set")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output FASTA/FASTQ (format of the input; gzip when the name ends in .gz)")
    p.add_argument("--per-species", type=int, metavar="N",
                   help="reads per class: exactly min(N, available), chosen uniformly at random")
    p.add_argument("--fraction", type=float, metavar="F",
                   help="reads per class as a fraction of the class (rounded to nearest, halves "
                        "up); with --per-species the smaller of the two")
    p.add_argument("--val-output", metavar="V", help="disjoint validation output")
    p.add_argument("--val-per-species", type=int, metavar="M",
                   help="validation reads per class; train is filled first, so a class with "
                        "fewer than N + M reads gives min(N, available) to train, the rest to V")
    p.add_argument("--classes", metavar="FILE",
                   help="keep only these classes: one class id or label name per line")
    p.add_argument("--min-reads", type=int, default=0, metavar="K",
                   help="drop classes with fewer than K reads (listed in the log and summary)")
    add_label_arguments(p)
    p.add_argument("--shuffle", action="store_true",
                   help="shuffle the output (bounded memory) instead of keeping input order")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--summary", metavar="TSV", help="per-class summary table")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def run(args) -> int:
    from ..subset import subset

    subset(args.inputs, args.output, per_species=args.per_species, fraction=args.fraction,
           val_output=args.val_output, val_per_species=args.val_per_species,
           classes=args.classes, min_reads=args.min_reads, mapping=args.mapping,
           labels=args.labels, skip_unknown=args.skip_unknown, skip_bad=args.skip_bad,
           shuffle=args.shuffle,
           seed=args.seed, workers=args.workers, summary=args.summary, force=args.force)
    return 0
