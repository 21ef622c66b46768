"""readtax pack: convert FASTA/FASTQ into a packed store for global-shuffle training."""

from __future__ import annotations

from . import add_label_arguments

HELP = "pack FASTA/FASTQ (plain or gzip) into a store directory: 2-bit bases, classes, ids"


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA/FASTQ files, plain or gzip")
    p.add_argument("-o", "--output", required=True, metavar="STORE", help="store directory to write")
    add_label_arguments(p, mapping_help="mapping TSV (class_id, label_name, tax_id) fixing the class order; default: the classes found, sorted by class id")
    p.add_argument("--seed", type=int, default=0, help="seed of the stored read order (default 0)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--no-shuffle", action="store_true",
                   help="keep the input order instead of a seeded global random order")
    p.add_argument("--force", action="store_true", help="replace an existing store")


def run(args) -> int:
    from ..errors import UsageError
    from ..labels import load_mapping
    from ..store import pack

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.labels == "none":
        raise UsageError("pack needs labels: a store records a class for every read")
    mapping = load_mapping(args.mapping) if args.mapping else None
    pack(args.inputs, args.output, mapping=mapping, labels=args.labels,
         skip_unknown=args.skip_unknown, skip_bad=args.skip_bad, seed=args.seed, workers=args.workers,
         shuffle=not args.no_shuffle, force=args.force)
    return 0
