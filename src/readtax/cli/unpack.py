"""readtax unpack: write a packed store back as FASTA."""

from __future__ import annotations

HELP = "write a packed store as FASTA (.gz compresses); ids and bases exactly as packed"


def add_arguments(p) -> None:
    p.add_argument("store", metavar="STORE", help="store directory made by 'readtax pack'")
    p.add_argument("-o", "--output", required=True, metavar="OUT.fa",
                   help="FASTA file to write (gzip if it ends in .gz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def run(args) -> int:
    from ..store import unpack

    unpack(args.store, args.output, force=args.force)
    return 0
