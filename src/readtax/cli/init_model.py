"""readtax init-model: write a randomly initialised local stand-in of a model family."""

from __future__ import annotations

import logging

from ..models.families import ARCHS, FAMILIES, SIZES

HELP = "write a random-weight stand-in of a model family (tiny for tests/demo, full for GPU checks)"

ARCH_CHOICES = ARCHS
SIZE_CHOICES = SIZES

log = logging.getLogger("readtax")


def add_arguments(p) -> None:
    p.add_argument("--arch", required=True, choices=ARCH_CHOICES,
                   help="model family (auto: a tiny generic transformers model)")
    p.add_argument("--size", default=None, choices=SIZE_CHOICES,
                   help="tiny dimensions, base (kmer-cnn only: the bag of 8-mers plus hashed "
                        "12-mers that trains well on real reads) or the real ones; default: "
                        f"{_default_sizes()}")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to create")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--k", type=int, default=6, help="k-mer size of a DNABERT model (3..6)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")


def _default_sizes() -> str:
    """Each family's default size in words: the exceptions, then the common one."""
    sizes = [f.default_size for f in FAMILIES.values()]
    common = max(set(sizes), key=sizes.count)
    rest = [f"{f.default_size} for {f.name}" for f in FAMILIES.values()
            if f.default_size != common]
    return ", ".join([*rest, f"{common} for the others"])


def run(args) -> int:
    from pathlib import Path

    from ..models import count_parameters, init_model
    from ..models.init import default_size
    from ..outputs import check_output_path

    out = Path(args.output)
    # An empty directory (made ahead by the user) is as good as none.
    empty_dir = out.is_dir() and not out.is_symlink() and not any(out.iterdir())
    check_output_path(out, force=args.force or empty_dir)
    if args.size is None:
        args.size = default_size(args.arch)
    n = count_parameters(args.arch, args.size, k=args.k)
    log.info("writing a %s %s stand-in (%s parameters) to %s", args.size, args.arch,
             f"{n:,}", out)
    init_model(args.arch, args.size, out, seed=args.seed, k=args.k, force=True)
    return 0
