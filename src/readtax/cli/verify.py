"""readtax verify: check a packed store's files, checksums and internal consistency."""

from __future__ import annotations

import sys

HELP = "check a packed store: file sizes, checksums and internal consistency"


def add_arguments(p) -> None:
    p.add_argument("store", metavar="STORE", help="store directory made by 'readtax pack'")


def run(args) -> int:
    from ..store import verify

    info = verify(args.store)
    sys.stdout.write(f"{args.store}: ok: {info['reads']} reads, {info['classes']} classes, "
                     f"{info['bases']} bases, {info['bytes']} bytes "
                     f"({info['bytes_per_read']:.1f} per read)\n")
    return 0
